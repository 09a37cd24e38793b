//! The facade over real HTTP and TLS on 127.0.0.1: `layer`, `route_layer`, the extractor, the 401 body.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::net::SocketAddr;

use axum::routing::get;
use axum::{Json, Router};
use kube_authn::{AuthnLayer, UserInfo};

#[path = "../examples/per_route.rs"]
#[allow(dead_code)]
mod per_route;

/// A TLS test server on 127.0.0.1 (self-signed certificate for 127.0.0.1).
struct Tls {
    addr: SocketAddr,
    connector: tokio_rustls::TlsConnector,
}

async fn serve(app: Router) -> Tls {
    use std::sync::Arc;
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            rustls_pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let (acceptor, app) = (acceptor.clone(), app.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hyper_util::service::TowerToHyperService::new(app);
                let _ = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                )
                .serve_connection_with_upgrades(hyper_util::rt::TokioIo::new(tls), service)
                .await;
            });
        }
    });
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.der().clone()).unwrap();
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Tls {
        addr,
        connector: tokio_rustls::TlsConnector::from(Arc::new(client)),
    }
}

/// A minimal HTTP/1.1 client over TLS: sends one request, returns status, head and body.
async fn get_raw(server: &Tls, path: &str, headers: &[(&str, &str)]) -> (u16, String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let mut s = server.connector.connect(name, tcp).await.unwrap();
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out).await;
    let text = String::from_utf8(out).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head[9..12].parse().unwrap();
    (status, head.to_owned(), body.to_owned())
}

fn files() -> (tempfile::TempDir, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let ops = dir.path().join("ops.csv");
    let tokens = dir.path().join("tokens.csv");
    std::fs::write(&ops, "ops-token,operator,1,\"system:monitoring\"\n").unwrap();
    std::fs::write(&tokens, "user-token,alice,2,\"devs,qa\"\n").unwrap();
    (dir, ops.display().to_string(), tokens.display().to_string())
}

#[tokio::test]
async fn route_layer_applies_a_policy_per_route() {
    let (_dir, ops, tokens) = files();
    let addr = serve(per_route::app(&ops, &tokens).unwrap()).await;

    // /metrics takes only the operator token
    let (s, _, body) = get_raw(&addr, "/metrics", &[("Authorization", "Bearer ops-token")]).await;
    assert_eq!((s, body.as_str()), (200, "# metrics for operator\n"));
    let (s, head, body) =
        get_raw(&addr, "/metrics", &[("Authorization", "Bearer user-token")]).await;
    assert_eq!(s, 401);
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/json"),
        "{head}"
    );
    assert_eq!(body, kube_authn::status::UNAUTHORIZED_BODY);
    // no anonymous on /metrics
    assert_eq!(get_raw(&addr, "/metrics", &[]).await.0, 401);

    // the API takes either token, and anonymous
    let (s, _, body) = get_raw(
        &addr,
        "/api/whoami",
        &[("Authorization", "Bearer user-token")],
    )
    .await;
    assert_eq!(s, 200);
    let user: UserInfo = serde_json::from_str(&body).unwrap();
    assert_eq!(
        user,
        UserInfo::new("alice")
            .with_uid("2")
            .with_groups(["devs", "qa", "system:authenticated"])
    );
    let (_, _, body) = get_raw(
        &addr,
        "/api/whoami",
        &[("Authorization", "Bearer ops-token")],
    )
    .await;
    assert!(body.contains("\"username\":\"operator\""), "{body}");
    let (s, _, body) = get_raw(&addr, "/api/whoami", &[]).await;
    assert_eq!(s, 200);
    assert_eq!(
        serde_json::from_str::<UserInfo>(&body).unwrap(),
        UserInfo::anonymous()
    );
    // a bad credential is 401 even with anonymous on
    assert_eq!(
        get_raw(&addr, "/api/whoami", &[("Authorization", "Bearer wrong")])
            .await
            .0,
        401
    );

    // unprotected route
    assert_eq!(
        get_raw(&addr, "/healthz", &[("Authorization", "Bearer wrong")])
            .await
            .0,
        200
    );
    // route_layer: unknown routes are 404, not 401
    assert_eq!(get_raw(&addr, "/nope", &[]).await.0, 404);
}

#[tokio::test]
async fn the_extractor_is_500_without_the_layer() {
    let app = Router::new().route("/whoami", get(|u: UserInfo| async move { Json(u) }));
    let (s, _, body) = get_raw(&serve(app).await, "/whoami", &[]).await;
    assert_eq!(s, 500);
    assert!(body.contains("authentication layer"), "{body}");
}

/// Anonymous conditions match the path as the layer sees it (documented on
/// `Anonymous::with_paths`): inside `Router::nest` it has lost the nest's prefix; on the
/// outermost router it is the path the client sent.
#[tokio::test]
async fn anonymous_conditions_match_the_path_the_layer_sees() {
    let (_dir, ops, _) = files();
    let layer = |path: &str| {
        AuthnLayer::builder()
            .token_file(&ops)
            .anonymous_paths([path])
            .build()
            .unwrap()
    };
    let healthz = || Router::new().route("/healthz", get(|| async { "ok" }));
    // Inside the nest: `/healthz` opens `/api/healthz`, `/api/healthz` matches nothing.
    let nested = serve(Router::new().nest("/api", healthz().layer(layer("/healthz")))).await;
    assert_eq!(get_raw(&nested, "/api/healthz", &[]).await.0, 200);
    let nested = serve(Router::new().nest("/api", healthz().layer(layer("/api/healthz")))).await;
    assert_eq!(get_raw(&nested, "/api/healthz", &[]).await.0, 401);
    // Outermost: the conditions name the paths clients send.
    let outer = serve(
        Router::new()
            .nest("/api", healthz())
            .layer(layer("/api/healthz")),
    )
    .await;
    assert_eq!(get_raw(&outer, "/api/healthz", &[]).await.0, 200);
    let outer = serve(
        Router::new()
            .nest("/api", healthz())
            .layer(layer("/healthz")),
    )
    .await;
    assert_eq!(get_raw(&outer, "/api/healthz", &[]).await.0, 401);
}

#[tokio::test]
async fn curl_gets_the_pretty_status() {
    let (_dir, ops, _) = files();
    let app = Router::new()
        .route("/x", get(|| async { "x" }))
        .layer(AuthnLayer::builder().token_file(&ops).build().unwrap());
    let (s, _, body) = get_raw(&serve(app).await, "/x", &[("User-Agent", "curl/8.5.0")]).await;
    assert_eq!(s, 401);
    assert_eq!(body, kube_authn::status::UNAUTHORIZED_BODY_PRETTY);
}

#[tokio::test]
async fn from_config_refuses_a_missing_file_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = kube_authn::AuthnConfig::from_yaml(
        dir.path().join("a.yaml"),
        "tokenAuthFile: missing.csv\n",
    )
    .unwrap();
    let err = AuthnLayer::from_config(&cfg).await.unwrap_err().to_string();
    assert!(err.contains("missing.csv"), "{err}");
}

/// An empty configuration (no strategy, anonymous off) is refused with the reason rather than
/// refusing every request, or opening every route as kube-apiserver's "authentication
/// disabled" would; anonymous alone is a configuration.
#[tokio::test]
async fn an_empty_configuration_is_refused_with_the_reason() {
    let cfg = kube_authn::AuthnConfig::from_yaml("a.yaml", "").unwrap();
    let err = AuthnLayer::from_config(&cfg).await.unwrap_err().to_string();
    assert!(
        err.starts_with(
            "no authentication strategy is configured and anonymous access is disabled"
        ),
        "{err}"
    );
    assert!(AuthnLayer::builder().build().is_err());
    assert!(AuthnLayer::builder().anonymous(true).build().is_ok());
}

/// The handler reports the credential headers it sees.
async fn seen_headers(headers: http::HeaderMap) -> Json<serde_json::Value> {
    let all = |name: &str| -> Vec<String> {
        headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap_or("<bytes>").to_owned())
            .collect()
    };
    Json(serde_json::json!({
        "authorization": all("authorization"),
        "sec-websocket-protocol": all("sec-websocket-protocol"),
        "x-remote-user": all("x-remote-user"),
        "x-remote-extra-scopes": all("x-remote-extra-scopes"),
    }))
}

#[tokio::test]
async fn the_inner_service_never_sees_the_credential() {
    let (_dir, ops, _) = files();
    let app = Router::new()
        .route("/echo", get(seen_headers))
        .layer(AuthnLayer::builder().token_file(&ops).build().unwrap());
    let addr = serve(app).await;

    // bearer: Authorization removed, and spoofable front-proxy headers too
    let (s, _, body) = get_raw(
        &addr,
        "/echo",
        &[
            ("Authorization", "Bearer ops-token"),
            ("X-Remote-User", "admin"),
            ("X-Remote-Extra-Scopes", "all"),
        ],
    )
    .await;
    assert_eq!(s, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["authorization"], serde_json::json!([]));
    assert_eq!(v["x-remote-user"], serde_json::json!([]));
    assert_eq!(v["x-remote-extra-scopes"], serde_json::json!([]));

    // websocket: only the remaining protocols, joined by ","
    let (s, _, body) = get_raw(
        &addr,
        "/echo",
        &[
            ("Connection", "Upgrade"),
            ("Upgrade", "websocket"),
            (
                "Sec-WebSocket-Protocol",
                "base64url.bearer.authorization.k8s.io.b3BzLXRva2Vu, base64.binary.k8s.io",
            ),
            ("Sec-WebSocket-Protocol", "binary.k8s.io"),
        ],
    )
    .await;
    assert_eq!(s, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        v["sec-websocket-protocol"],
        serde_json::json!(["base64.binary.k8s.io,binary.k8s.io"])
    );

    // a rejected request never reaches the handler at all
    let (s, _, body) = get_raw(&addr, "/echo", &[("Authorization", "Bearer wrong")]).await;
    assert_eq!(
        (s, body.as_str()),
        (401, kube_authn::status::UNAUTHORIZED_BODY)
    );
}
