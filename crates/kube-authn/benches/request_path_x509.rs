//! The request path of the certificate strategies on a kept-alive connection, as a ratio to
//! the same service without authentication.
//!
//! `cargo bench -p kube-authn --bench request_path_x509`
//!
//! Every request carries the connection's `PeerCertificates` (one value per connection, as
//! `x509::serve` inserts it), so after the first request the chain verification is memoized and
//! what is measured is the per-request work: the memo lookup, the date check and the identity
//! (x509), plus reading and removing the identity headers (authenticating proxy).

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::convert::Infallible;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use http::{Request, Response};
use kube_authn::x509::{CaBundle, PeerCertificates, RequestHeaderConfig};
use kube_authn::{AuthnLayer, UserInfo};
use kube_authn_testing::{Issued, TestPki};
use tower::Layer;

mod common;
use common::{Body, bench_calls, call, inner};

/// The user the layer hands to the inner service for `req`, and the `x-remote-*` headers
/// left on the request: checks that each case measures what it claims to.
fn identity(layer: &AuthnLayer, req: Request<()>) -> (UserInfo, usize) {
    let seen = std::sync::Arc::new(std::sync::Mutex::new(None));
    let sink = seen.clone();
    let mut svc = layer.layer(tower::service_fn(move |req: Request<()>| {
        let left = req
            .headers()
            .keys()
            .filter(|name| name.as_str().starts_with("x-remote-"))
            .count();
        *sink.lock().unwrap() = req
            .extensions()
            .get::<UserInfo>()
            .cloned()
            .map(|u| (u, left));
        std::future::ready(Ok::<_, Infallible>(Response::new(Body::default())))
    }));
    assert_eq!(call(&mut svc, req), 200);
    seen.lock().unwrap().take().expect("a user")
}

fn bundle(ca: &Issued) -> CaBundle {
    CaBundle::from_pem("ca.crt", ca.cert_pem().as_bytes()).unwrap()
}

/// A request of the connection that presented `peers`, with `headers`.
fn request(peers: &PeerCertificates, headers: &[(&str, &str)]) -> Request<()> {
    let mut builder = Request::get("/api");
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let mut req = builder.body(()).unwrap();
    req.extensions_mut().insert(peers.clone());
    req
}

fn request_path_x509(c: &mut Criterion) {
    let pki = TestPki::shared();
    let client = PeerCertificates::new(pki.jbeda.chain());
    let unknown = PeerCertificates::new(pki.other_ca_client.chain());
    let proxy = PeerCertificates::new(pki.proxy_client.chain());
    let proxy_headers: &[(&str, &str)] = &[
        ("x-remote-user", "alice"),
        ("x-remote-group", "devs"),
        ("x-remote-group", "qa"),
        ("x-remote-extra-scopes", "view"),
    ];

    let mut group = c.benchmark_group("request_path_x509");
    group.throughput(Throughput::Elements(1));

    let mut baseline = inner();
    bench_calls(&mut group, "no_authentication", &mut baseline, || {
        request(&client, &[])
    });

    let layer = AuthnLayer::builder()
        .client_ca(bundle(&pki.client_ca))
        .build()
        .unwrap();
    let (user, _) = identity(&layer, request(&client, &[]));
    assert_eq!(user.username, "jbeda");
    assert_eq!(user.groups, ["app1", "app2", "system:authenticated"]);
    let mut svc = layer.layer(inner());
    bench_calls(&mut group, "x509_client_certificate", &mut svc, || {
        request(&client, &[])
    });
    assert_eq!(call(&mut svc, request(&unknown, &[])), 401);
    bench_calls(&mut group, "x509_unknown_ca_401", &mut svc, || {
        request(&unknown, &[])
    });

    let layer = AuthnLayer::builder()
        .request_header(
            bundle(&pki.front_proxy_ca),
            RequestHeaderConfig::standard().allowed_names(["front-proxy-client"]),
        )
        .build()
        .unwrap();
    let (user, left) = identity(&layer, request(&proxy, proxy_headers));
    assert_eq!(user.username, "alice");
    assert_eq!(user.groups, ["devs", "qa", "system:authenticated"]);
    assert_eq!(user.extra["scopes"], ["view"]);
    assert_eq!(left, 0, "the identity headers are removed");
    let mut svc = layer.layer(inner());
    bench_calls(&mut group, "request_header_proxy", &mut svc, || {
        request(&proxy, proxy_headers)
    });
    group.finish();
}

criterion_group!(benches, request_path_x509);
criterion_main!(benches);
