#![no_main]
//! The CA bundle parser on arbitrary bytes: as PEM (`--client-ca-file`), and as the DER of one
//! certificate (the anchor, validity and extended key usage readers). A pool that parses is
//! then used to verify a client chain: an error or a user, never a panic.
use std::sync::OnceLock;

use kube_authn::AuthenticateRequest;
use kube_authn::x509::{CaBundle, CaPool, PeerCertificates, X509Authenticator};
use libfuzzer_sys::fuzz_target;
use rustls_pki_types::CertificateDer;

fn client_chain() -> &'static Vec<CertificateDer<'static>> {
    static CHAIN: OnceLock<Vec<CertificateDer<'static>>> = OnceLock::new();
    CHAIN.get_or_init(|| kube_authn_testing::TestPki::shared().jbeda.chain())
}

fn check(pool: CaPool) {
    assert!(!pool.is_empty());
    assert_eq!(pool.subjects().len(), pool.len());
    let _ = format!("{pool:?}");
    let auth = X509Authenticator::new(CaBundle::from_pool(pool));
    let mut parts = http::Request::new(()).into_parts().0;
    parts
        .extensions
        .insert(PeerCertificates::new(client_chain().clone()));
    let _ = auth.authenticate_request(Box::new(parts)).into_ready();
}

fuzz_target!(|data: &[u8]| {
    match CaPool::from_pem("fuzz.crt", data) {
        Ok(pool) => check(pool),
        Err(e) => drop(e.to_string()),
    }
    match CaPool::from_der("fuzz.der", vec![CertificateDer::from(data.to_vec())]) {
        Ok(pool) => check(pool),
        Err(e) => drop(e.to_string()),
    }
});
