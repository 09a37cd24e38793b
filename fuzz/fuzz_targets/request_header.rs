#![no_main]
//! The authenticating-proxy header reader on arbitrary headers, from a connection that proved
//! the proxy certificate. Input: a configuration selector byte, then `name:value` lines. The
//! user comes out or not, never a panic, and no configured header is left on the request.
use std::sync::OnceLock;

use kube_authn::AuthenticateRequest;
use kube_authn::x509::{
    CaBundle, PeerCertificates, RequestHeaderAuthenticator, RequestHeaderConfig,
};
use libfuzzer_sys::fuzz_target;

struct Setup {
    /// Each authenticator with the header names and extra prefixes it reads.
    auths: Vec<(
        RequestHeaderAuthenticator,
        Vec<&'static str>,
        Vec<&'static str>,
    )>,
    /// Shared by every run, as by every request of one connection: verified once.
    peers: PeerCertificates,
}

fn setup() -> &'static Setup {
    static SETUP: OnceLock<Setup> = OnceLock::new();
    SETUP.get_or_init(|| {
        let pki = kube_authn_testing::TestPki::shared();
        let ca = CaBundle::from_pem(
            "front-proxy-ca.crt",
            pki.front_proxy_ca.cert_pem().as_bytes(),
        )
        .unwrap();
        let standard = (
            RequestHeaderConfig::standard(),
            vec!["x-remote-user", "x-remote-uid", "x-remote-group"],
            vec!["x-remote-extra-"],
        );
        let custom = (
            RequestHeaderConfig::new()
                .username_headers(["X-User", "X-Remote-User", "x-a"])
                .uid_headers(["x-remote-uid", "x-uid"])
                .group_headers(["X-Group", "x-remote-group", "x-a"])
                .extra_headers_prefix(["X-Extra-", "x-remote-extra-", "x-", "x-extra-a"])
                .allowed_names(["front-proxy-client", "other"]),
            vec![
                "x-user",
                "x-remote-user",
                "x-a",
                "x-remote-uid",
                "x-uid",
                "x-group",
                "x-remote-group",
            ],
            vec!["x-extra-", "x-remote-extra-", "x-", "x-extra-a"],
        );
        let bare = (
            RequestHeaderConfig::new().username_headers(["u"]),
            vec!["u"],
            vec![],
        );
        let auths = [standard, custom, bare]
            .into_iter()
            .map(|(config, names, prefixes)| {
                (
                    RequestHeaderAuthenticator::new(ca.clone(), &config).unwrap(),
                    names,
                    prefixes,
                )
            })
            .collect();
        Setup {
            auths,
            peers: PeerCertificates::new(pki.proxy_client.chain()),
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((selector, data)) = data.split_first() else {
        return;
    };
    let setup = setup();
    let (auth, names, prefixes) = &setup.auths[usize::from(*selector) % setup.auths.len()];
    let mut parts = http::Request::new(()).into_parts().0;
    parts.extensions.insert(setup.peers.clone());
    for line in data.split(|b| *b == b'\n') {
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(&line[..colon]),
            http::HeaderValue::from_bytes(&line[colon + 1..]),
        ) else {
            continue;
        };
        parts.headers.append(name, value);
    }
    let Ok(outcome) = auth.authenticate_request(Box::new(parts)).into_ready() else {
        panic!("the request-header authenticator is synchronous");
    };
    match outcome.result {
        Ok(Some(a)) => {
            let _ = a.user.username.len();
        }
        Ok(None) => {}
        Err(e) => panic!("the proxy certificate was refused: {e}"),
    }
    for name in outcome.parts.headers.keys() {
        let name = name.as_str();
        assert!(!names.contains(&name), "{name} left on the request");
        assert!(
            !prefixes.iter().any(|p| name.starts_with(p)),
            "{name} left on the request"
        );
    }
});
