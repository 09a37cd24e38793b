#![no_main]
//! The client-certificate authenticator on an arbitrary leaf (DER): the identity reader
//! (common name, organizations, UID attribute, serial and key identifiers for messages) runs
//! on the leaf before the chain is verified. An error or no opinion, never a panic.
use std::sync::OnceLock;
use std::time::Duration;

use kube_authn::AuthenticateRequest;
use kube_authn::x509::{CaBundle, PeerCertificates, X509Authenticator, credential_id};
use libfuzzer_sys::fuzz_target;
use rustls_pki_types::{CertificateDer, UnixTime};

struct Setup {
    auth: X509Authenticator,
    intermediate: CertificateDer<'static>,
}

fn setup() -> &'static Setup {
    static SETUP: OnceLock<Setup> = OnceLock::new();
    SETUP.get_or_init(|| {
        let pki = kube_authn_testing::TestPki::shared();
        let ca = CaBundle::from_pem("ca.crt", pki.client_ca.cert_pem().as_bytes()).unwrap();
        // 2030-01-01: inside the test PKI's validity, and the same on every run.
        let now = UnixTime::since_unix_epoch(Duration::from_secs(1_893_456_000));
        Setup {
            auth: X509Authenticator::new(ca).clock(std::sync::Arc::new(move || now)),
            intermediate: pki.intermediate_ca.cert_der(),
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let setup = setup();
    let _ = credential_id(data);
    let leaf = CertificateDer::from(data.to_vec());
    for chain in [vec![leaf.clone()], vec![leaf, setup.intermediate.clone()]] {
        let mut parts = http::Request::new(()).into_parts().0;
        parts.extensions.insert(PeerCertificates::new(chain));
        if let Ok(outcome) = setup
            .auth
            .authenticate_request(Box::new(parts))
            .into_ready()
        {
            match outcome.result {
                Ok(Some(user)) => assert!(!user.user.username.is_empty()),
                Ok(None) => {}
                Err(e) => drop(e.to_string()),
            }
        }
    }
});
