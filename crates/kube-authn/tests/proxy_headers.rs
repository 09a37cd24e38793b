//! Authenticating-proxy headers over real TLS with client certificates: a client that did not
//! prove the proxy certificate can send `X-Remote-User` all it likes; it is never trusted and
//! never reaches the handler.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::net::SocketAddr;
use std::sync::Arc;

use axum::routing::get;
use axum::{Json, Router};
use kube_authn::x509::{CaBundle, RequestHeaderConfig, ServingCert, TlsConfigBuilder};
use kube_authn::{AuthnLayer, UserInfo};
use kube_authn_testing::{Issued, TestPki};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The handler reports who it was told the user is and every identity header it still sees.
async fn echo(user: UserInfo, headers: http::HeaderMap) -> Json<serde_json::Value> {
    let leaked: Vec<String> = headers
        .keys()
        .map(|k| k.as_str().to_owned())
        .filter(|k| k.starts_with("x-remote-") || k == "authorization")
        .collect();
    Json(serde_json::json!({"user": user, "leaked": leaked}))
}

async fn server(pki: &TestPki) -> SocketAddr {
    let proxy_ca = CaBundle::from_pem(
        "front-proxy-ca.crt",
        pki.front_proxy_ca.cert_pem().as_bytes(),
    )
    .unwrap();
    let client_ca =
        CaBundle::from_pem("client-ca.crt", pki.client_ca.cert_pem().as_bytes()).unwrap();
    let headers = RequestHeaderConfig::new()
        .username_headers(["X-Remote-User"])
        .group_headers(["X-Remote-Group"])
        .extra_headers_prefix(["X-Remote-Extra-"])
        .allowed_names(["front-proxy-client"]);
    let layer = AuthnLayer::builder()
        .request_header(proxy_ca.clone(), headers)
        .client_ca(client_ca.clone())
        .anonymous(true)
        .build()
        .unwrap();
    let app = Router::new().route("/echo", get(echo)).layer(layer);
    let serving = ServingCert::from_pem(
        pki.serving.chain_pem().as_bytes(),
        pki.serving.key_pem().as_bytes(),
    )
    .unwrap();
    let tls = TlsConfigBuilder::new(serving)
        .advertise_client_ca(&proxy_ca)
        .advertise_client_ca(&client_ca)
        .build()
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(kube_authn::x509::serve(listener, Arc::new(tls), app).into_future());
    addr
}

/// GET /echo with the spoofed identity headers, as `identity` (or without a certificate).
async fn spoof(pki: &TestPki, addr: SocketAddr, identity: Option<&Issued>) -> (u16, String) {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(pki.root_ca.cert_der()).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let mut config = match identity {
        Some(id) => builder
            .with_client_auth_cert(id.chain(), id.key_der())
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let mut s = connector.connect(name, tcp).await.unwrap();
    let request = "GET /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
        X-Remote-User: admin\r\nx-remote-group: system:masters\r\nX-Remote-Extra-Scopes: all\r\n\r\n";
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out).await;
    let text = String::from_utf8(out).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    (head[9..12].parse().unwrap(), body.to_owned())
}

fn seen(body: &str) -> (String, Vec<String>, serde_json::Value) {
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    let leaked = v["leaked"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap().to_owned())
        .collect();
    (
        v["user"]["username"].as_str().unwrap().to_owned(),
        leaked,
        v["user"].clone(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spoofed_identity_headers_are_ignored_and_never_reach_the_handler() {
    let pki = TestPki::shared();
    let addr = server(pki).await;

    // no certificate: anonymous, and the handler sees none of the headers
    let (code, body) = spoof(pki, addr, None).await;
    assert_eq!(code, 200, "{body}");
    let (user, leaked, _) = seen(&body);
    assert_eq!(user, "system:anonymous");
    assert!(leaked.is_empty(), "{leaked:?}");

    // a user certificate (client CA): that user, not the header's
    let (code, body) = spoof(pki, addr, Some(&pki.jbeda)).await;
    assert_eq!(code, 200, "{body}");
    let (user, leaked, info) = seen(&body);
    assert_eq!(user, "jbeda");
    assert!(leaked.is_empty(), "{leaked:?}");
    assert_eq!(
        info["groups"],
        serde_json::json!(["app1", "app2", "system:authenticated"])
    );

    // a certificate of the proxy CA whose name is not allowed: rejected, never anonymous
    let (code, body) = spoof(pki, addr, Some(&pki.proxy_not_allowed)).await;
    assert_eq!(code, 401, "{body}");

    // control: the allowed proxy certificate is trusted, and the headers are still removed
    // before the handler
    let (code, body) = spoof(pki, addr, Some(&pki.proxy_client)).await;
    assert_eq!(code, 200, "{body}");
    let (user, leaked, info) = seen(&body);
    assert_eq!(user, "admin");
    assert!(leaked.is_empty(), "{leaked:?}");
    assert_eq!(
        info["groups"],
        serde_json::json!(["system:masters", "system:authenticated"])
    );
    assert_eq!(info["extra"]["scopes"], serde_json::json!(["all"]));
}
