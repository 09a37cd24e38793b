//! The front proxy chain over real TLS on 127.0.0.1: `front-proxy` authenticates users with a
//! token file and forwards to `mini-apiserver` in request-header mode (no token file, anonymous
//! off) with its front-proxy client certificate and `X-Remote-*` headers. Clients: reqwest
//! (HTTP/2 and HTTP/1.1) and kubectl 1.33.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use kube_authn_e2e::{
    FrontProxy, KUBECTL, Server, UNAUTHORIZED, client_trusting, client_with_identity, get_json,
    pod, tls_client_config, write_file, write_test_pki,
};
use reqwest::StatusCode;
use serde_json::{Value, json};

const TOKENS: &str = "token1,alice,uid-a,\"devs,qa\"\ntoken2,bob,uid-b\n";
const SSR_PATH: &str = "/apis/authentication.k8s.io/v1/selfsubjectreviews";
const SSR_BODY: &str =
    r#"{"kind":"SelfSubjectReview","apiVersion":"authentication.k8s.io/v1","metadata":{}}"#;

/// The whole chain: the API server (request-header mode only), the proxy in front of it, and
/// the PKI both use.
struct Chain {
    api: Server,
    proxy: FrontProxy,
    pki: PathBuf,
}

impl Chain {
    fn start() -> Chain {
        let dir = tempfile::tempdir().unwrap();
        let pki = write_test_pki(&dir.path().join("pki"));
        let f = |name: &str| pki.join(name).display().to_string();
        let api = Server::start_in(
            dir,
            &[
                &format!("--tls-cert-file={}", f("serving.crt")),
                &format!("--tls-private-key-file={}", f("serving.key")),
                &format!("--requestheader-client-ca-file={}", f("front-proxy-ca.crt")),
                "--requestheader-allowed-names=front-proxy-client",
                "--requestheader-username-headers=X-Remote-User",
                "--requestheader-uid-headers=X-Remote-Uid",
                "--requestheader-group-headers=X-Remote-Group",
                "--requestheader-extra-headers-prefix=X-Remote-Extra-",
                "--anonymous-auth=false",
            ],
        );
        let tokens = write_file(api.dir.path(), "proxy-tokens.csv", TOKENS);
        let proxy = FrontProxy::start(&[
            &format!("--tls-cert-file={}", f("serving.crt")),
            &format!("--tls-private-key-file={}", f("serving.key")),
            &format!("--token-auth-file={tokens}"),
            &format!("--client-ca-file={}", f("client-ca.crt")),
            &format!("--upstream={}", api.url()),
            &format!("--upstream-ca-file={}", f("root-ca.crt")),
            &format!("--proxy-client-cert-file={}", f("front-proxy-client.crt")),
            &format!("--proxy-client-key-file={}", f("front-proxy-client.key")),
        ]);
        Chain { api, proxy, pki }
    }

    fn file(&self, name: &str) -> PathBuf {
        self.pki.join(name)
    }

    /// The CA of both serving certificates.
    fn ca(&self) -> PathBuf {
        self.file("root-ca.crt")
    }

    /// A client without a certificate (HTTP/2 when the server offers it).
    fn client(&self) -> reqwest::Client {
        let tls = tls_client_config(&self.ca(), None, &[b"h2", b"http/1.1"]);
        reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap()
    }

    /// A client presenting `<name>.crt` of the PKI.
    fn client_with_cert(&self, name: &str) -> reqwest::Client {
        client_with_identity(
            &self.ca(),
            &self.file(&format!("{name}.crt")),
            &self.file(&format!("{name}.key")),
        )
    }
}

/// `POST selfsubjectreviews` at `base` with `headers`: the status and the JSON (or text) body.
async fn whoami(
    client: &reqwest::Client,
    base: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, Value) {
    let mut req = client
        .post(format!("{base}{SSR_PATH}"))
        .header("Content-Type", "application/json")
        .body(SSR_BODY);
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn user_info(body: &Value) -> &Value {
    &body["status"]["userInfo"]
}

// (a)
#[tokio::test]
async fn whoami_through_the_proxy_is_the_token_user() {
    let chain = Chain::start();
    let c = chain.client();
    let (status, body) = whoami(
        &c,
        &chain.proxy.url(),
        &[("Authorization", "Bearer token1")],
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["kind"], "SelfSubjectReview");
    assert_eq!(
        *user_info(&body),
        json!({"username": "alice", "uid": "uid-a", "groups": ["devs", "qa", "system:authenticated"]}),
        "{body}"
    );

    let (status, body) = whoami(
        &c,
        &chain.proxy.url(),
        &[("Authorization", "Bearer token2")],
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(
        *user_info(&body),
        json!({"username": "bob", "uid": "uid-b", "groups": ["system:authenticated"]})
    );

    // The proxy itself refuses what it cannot authenticate, with the Kubernetes Status body,
    // before anything reaches the upstream.
    for headers in [&[][..], &[("Authorization", "Bearer wrong")][..]] {
        let resp = c
            .post(format!("{}{SSR_PATH}", chain.proxy.url()))
            .headers(
                headers
                    .iter()
                    .map(|(n, v)| (n.parse().unwrap(), v.parse().unwrap()))
                    .collect(),
            )
            .body(SSR_BODY)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(resp.text().await.unwrap(), UNAUTHORIZED);
    }
    // The upstream (anonymous off) logs every request it rejects, with its path, under
    // kube_authn::rejected: nothing of the above may have arrived there. The control: the
    // same request sent to the upstream directly leaves that line; its server's stderr is one
    // ordered stream, and anything the proxy had passed on was answered (so logged) before
    // the proxy answered, so once the control's line is there the log is complete: one line.
    let resp = c
        .post(format!("{}{SSR_PATH}", chain.api.url()))
        .body(SSR_BODY)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let log = chain.api.wait_for_stderr(SSR_PATH, Duration::from_secs(30));
    let lines: Vec<&str> = log.lines().filter(|l| l.contains(SSR_PATH)).collect();
    assert_eq!(lines.len(), 1, "{log}");
    assert!(lines[0].contains("kube_authn::rejected"), "{log}");
}

/// A user of the proxy's `--client-ca-file` reaches the upstream with its groups and its
/// extra (`authentication.kubernetes.io/credential-id`, a key that must be escaped in a header
/// name: `X-Remote-Extra-authentication.kubernetes.io%2Fcredential-id`).
#[tokio::test]
async fn a_client_certificate_user_arrives_with_groups_and_extra() {
    let chain = Chain::start();
    let c = chain.client_with_cert("jbeda");
    let (status, body) = whoami(&c, &chain.proxy.url(), &[]).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let der = std::fs::read(chain.file("jbeda.crt")).unwrap();
    let der = {
        use rustls_pki_types::pem::PemObject;
        rustls_pki_types::CertificateDer::from_pem_slice(&der).unwrap()
    };
    let sha256 = rustls::crypto::aws_lc_rs::cipher_suite::TLS13_AES_128_GCM_SHA256
        .tls13()
        .unwrap()
        .common
        .hash_provider
        .hash(&der);
    let hex: String = sha256.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(
        *user_info(&body),
        json!({
            "username": "jbeda",
            "groups": ["app1", "app2", "system:authenticated"],
            "extra": {"authentication.kubernetes.io/credential-id": [format!("X509SHA256={hex}")]},
        }),
        "{body}"
    );
}

// (b)
#[tokio::test]
async fn the_token_sent_directly_to_the_api_server_is_401() {
    let chain = Chain::start();
    let (status, body) = whoami(
        &chain.client(),
        &chain.api.url(),
        &[("Authorization", "Bearer token1")],
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body, serde_json::from_str::<Value>(UNAUTHORIZED).unwrap());
}

// (c)
#[tokio::test]
async fn identity_headers_count_only_with_the_allowed_proxy_certificate() {
    let chain = Chain::start();
    let spoof = [
        ("X-Remote-User", "admin"),
        ("X-Remote-Group", "system:masters"),
    ];

    // No certificate: anonymous is off, so 401.
    let (status, body) = whoami(&chain.client(), &chain.api.url(), &spoof).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    // A certificate of the front-proxy CA whose CN is not in --requestheader-allowed-names.
    let c = chain.client_with_cert("not-allowed-proxy");
    let (status, body) = whoami(&c, &chain.api.url(), &spoof).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    // A client certificate of another CA (the client CA, not configured on this server).
    let c = chain.client_with_cert("jbeda");
    let (status, body) = whoami(&c, &chain.api.url(), &spoof).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");

    // Control: the front-proxy client certificate makes the very same headers count.
    let c = chain.client_with_cert("front-proxy-client");
    let (status, body) = whoami(&c, &chain.api.url(), &spoof).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(
        *user_info(&body),
        json!({"username": "admin", "groups": ["system:masters", "system:authenticated"]})
    );
}

// (d)
#[tokio::test]
async fn identity_headers_sent_to_the_proxy_are_dropped() {
    let chain = Chain::start();
    let c = chain.client();
    let spoof = [
        ("X-Remote-User", "admin"),
        ("x-remote-uid", "0"),
        ("X-Remote-Group", "system:masters"),
        ("X-Remote-Extra-Scopes", "everything"),
        ("X-REMOTE-EXTRA-example.com%2Fteam", "red"),
    ];
    let mut headers = vec![("Authorization", "Bearer token2")];
    headers.extend(spoof);
    let (status, body) = whoami(&c, &chain.proxy.url(), &headers).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(
        *user_info(&body),
        json!({"username": "bob", "uid": "uid-b", "groups": ["system:authenticated"]}),
        "the client's own identity headers reached the upstream: {body}"
    );

    // Without a credential the proxy does not pass the request on at all (the upstream logs
    // every request it rejects, with its path; see whoami_through_the_proxy_is_the_token_user).
    let (status, _) = whoami(&c, &chain.proxy.url(), &spoof).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // The control, sent to the upstream directly, is the only request it rejected (its log is
    // ordered, and a request passed on would have been logged before the proxy answered).
    let marker = "/api/v1/namespaces/control-marker/pods";
    let resp = c
        .get(format!("{}{marker}", chain.api.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let log = chain.api.wait_for_stderr(marker, Duration::from_secs(30));
    let rejected: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("kube_authn::rejected"))
        .collect();
    assert_eq!(rejected.len(), 1, "{log}");
    assert!(rejected[0].contains(marker), "{log}");
}

// (e)
#[tokio::test]
async fn watch_and_log_follow_stream_through_the_proxy() {
    let chain = Chain::start();
    let c = chain.client();
    let base = format!("{}/api/v1/namespaces/team/pods", chain.proxy.url());
    let auth = "Bearer token1";

    let list: Value = get_json(&c, &base, auth).await;
    assert_eq!(list["kind"], "PodList", "{list}");
    let rv = list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_owned();
    let watch = c
        .get(format!("{base}?watch=true&resourceVersion={rv}"))
        .header("Authorization", auth)
        .send()
        .await
        .unwrap();
    assert_eq!(watch.status(), StatusCode::OK);
    let mut events = watch.bytes_stream();

    // Created while the watch is open.
    let created = c
        .post(&base)
        .header("Authorization", auth)
        .json(&pod("web"))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);

    let mut seen = String::new();
    let added = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(chunk) = events.next().await {
            seen.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
            for line in seen.lines() {
                let Ok(event) = serde_json::from_str::<Value>(line) else {
                    continue;
                };
                if event["type"] == "ADDED" && event["object"]["metadata"]["name"] == "web" {
                    return event;
                }
            }
        }
        panic!("the watch ended without an ADDED event: {seen}");
    })
    .await
    .expect("no ADDED event through the proxy within 10 s");
    assert_eq!(added["object"]["kind"], "Pod");

    // Log follow: lines keep arriving on one open response.
    let logs = c
        .get(format!("{base}/web/log?follow=true"))
        .header("Authorization", auth)
        .send()
        .await
        .unwrap();
    assert_eq!(logs.status(), StatusCode::OK);
    let mut stream = logs.bytes_stream();
    let mut text = String::new();
    tokio::time::timeout(Duration::from_secs(10), async {
        while text.lines().count() < 2 {
            let chunk = stream.next().await.expect("log stream ended").unwrap();
            text.push_str(&String::from_utf8_lossy(&chunk));
        }
    })
    .await
    .expect("no two log lines through the proxy within 10 s");
}

// (f)
#[test]
fn kubectl_auth_whoami_through_the_proxy() {
    let chain = Chain::start();
    let home = tempfile::tempdir().unwrap();
    let out = Command::new(KUBECTL)
        .env("HOME", home.path())
        .env("KUBECONFIG", home.path().join("no-kubeconfig"))
        .arg(format!("--server={}", chain.proxy.url()))
        .arg(format!("--certificate-authority={}", chain.ca().display()))
        .arg("--token=token1")
        .arg("--request-timeout=20s")
        .args(["auth", "whoami", "-o", "json"])
        .output()
        .expect("kubectl 1.33 is preinstalled on this machine");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "kubectl failed: {stdout}\n{}\nproxy:\n{}",
        String::from_utf8_lossy(&out.stderr),
        chain.proxy.stderr()
    );
    let review: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(review["kind"], "SelfSubjectReview");
    assert_eq!(
        *user_info(&review),
        json!({"username": "alice", "uid": "uid-a", "groups": ["devs", "qa", "system:authenticated"]})
    );

    // Straight to the API server, the same token is refused.
    let out = Command::new(KUBECTL)
        .env("HOME", home.path())
        .env("KUBECONFIG", home.path().join("no-kubeconfig"))
        .arg(format!("--server={}", chain.api.url()))
        .arg(format!("--certificate-authority={}", chain.ca().display()))
        .arg("--token=token1")
        .arg("--request-timeout=20s")
        .args(["auth", "whoami", "-o", "json"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("Unauthorized"), "{stderr}");
}

/// Reads one websocket frame sent by a server (unmasked): its opcode and payload.
async fn read_frame(io: &mut (impl tokio::io::AsyncRead + Unpin)) -> (u8, Vec<u8>) {
    use tokio::io::AsyncReadExt;
    let mut head = [0u8; 2];
    io.read_exact(&mut head).await.unwrap();
    let len = match head[1] & 0x7f {
        126 => usize::from(io.read_u16().await.unwrap()),
        127 => usize::try_from(io.read_u64().await.unwrap()).unwrap(),
        n => usize::from(n),
    };
    let mut payload = vec![0u8; len];
    io.read_exact(&mut payload).await.unwrap();
    (head[0] & 0x0f, payload)
}

/// A `101` switching to the websocket `protocol`, and the first frame after it.
async fn first_frame(resp: reqwest::Response, protocol: &str) -> (u8, Vec<u8>) {
    assert_eq!(resp.status(), StatusCode::SWITCHING_PROTOCOLS);
    assert_eq!(resp.headers()["sec-websocket-protocol"], protocol);
    let mut io = resp.upgrade().await.unwrap();
    read_frame(&mut io).await
}

/// Websocket (and any HTTP/1.1 upgrade) through the proxy: the upstream's `101` comes back and
/// the connections are joined; the token entry of the subprotocols authenticates to the proxy
/// and is not passed on.
#[tokio::test]
async fn websocket_upgrades_are_proxied() {
    let chain = Chain::start();
    let base = format!("{}/api/v1/namespaces/team/pods", chain.proxy.url());
    let created = chain
        .client()
        .post(&base)
        .header("Authorization", "Bearer token1")
        .json(&pod("web"))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let tls = tls_client_config(&chain.ca(), None, &[b"http/1.1"]);
    let c = reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .http1_only()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let upgrade = |path: &str| {
        c.get(format!("{base}{path}"))
            .header("Connection", "Upgrade")
            .header("Upgrade", "websocket")
            .header("Sec-WebSocket-Version", "13")
            .header("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
    };

    // Bearer token to the proxy, no subprotocol: binary frames of log lines.
    let resp = upgrade("/web/log?follow=true")
        .header("Authorization", "Bearer token1")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SWITCHING_PROTOCOLS);
    assert_eq!(
        resp.headers()["sec-websocket-accept"],
        "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    );
    let mut io = resp.upgrade().await.unwrap();
    let (opcode, payload) = read_frame(&mut io).await;
    assert_eq!(opcode, 2, "a binary frame");
    let line = String::from_utf8(payload).unwrap();
    assert!(line.contains(" web: line "), "{line:?}");

    // The token as the browser sends it, with base64.binary.k8s.io: the upstream chose that
    // protocol (it never saw the token entry) and sends base64 text frames.
    let token = "base64url.bearer.authorization.k8s.io.dG9rZW4x";
    let resp = upgrade("/web/log?follow=true")
        .header(
            "Sec-WebSocket-Protocol",
            format!("{token}, base64.binary.k8s.io"),
        )
        .send()
        .await
        .unwrap();
    let (opcode, payload) = first_frame(resp, "base64.binary.k8s.io").await;
    assert_eq!(opcode, 1, "a text frame");
    use base64::Engine;
    let line = base64::engine::general_purpose::STANDARD
        .decode(payload)
        .unwrap();
    assert!(
        String::from_utf8(line).unwrap().contains(" web: line "),
        "a log line"
    );

    // Authenticated by the Authorization header, with a token entry as well: the entry is a
    // credential for the proxy and is not passed on (the upstream's watch would refuse two
    // subprotocols).
    let resp = upgrade("?watch=true&timeoutSeconds=1")
        .header("Authorization", "Bearer token1")
        .header(
            "Sec-WebSocket-Protocol",
            format!("{token}, dashboard.example"),
        )
        .send()
        .await
        .unwrap();
    let (opcode, payload) = first_frame(resp, "dashboard.example").await;
    assert_eq!(opcode, 1, "a text frame");
    let event: Value = serde_json::from_slice(&payload).unwrap();
    assert_eq!(event["type"], "ADDED");

    // An upgrade the upstream refuses comes back as its answer.
    let resp = upgrade("/nope/log")
        .header("Authorization", "Bearer token1")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["reason"], "NotFound");

    // Without a credential for the proxy: 401, and nothing reaches the upstream.
    let resp = upgrade("/web/log").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(resp.text().await.unwrap(), UNAUTHORIZED);
}

#[tokio::test]
async fn an_unreachable_upstream_is_502_with_a_status_body() {
    let dir = tempfile::tempdir().unwrap();
    let pki = write_test_pki(&dir.path().join("pki"));
    let f = |name: &str| pki.join(name).display().to_string();
    let tokens = write_file(dir.path(), "tokens.csv", TOKENS);
    // A port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let proxy = FrontProxy::start(&[
        &format!("--tls-cert-file={}", f("serving.crt")),
        &format!("--tls-private-key-file={}", f("serving.key")),
        &format!("--token-auth-file={tokens}"),
        &format!("--upstream=https://127.0.0.1:{port}"),
        &format!("--upstream-ca-file={}", f("root-ca.crt")),
        &format!("--proxy-client-cert-file={}", f("front-proxy-client.crt")),
        &format!("--proxy-client-key-file={}", f("front-proxy-client.key")),
    ]);
    let c = client_trusting(&pki.join("root-ca.crt"));
    let (status, body) = whoami(&c, &proxy.url(), &[("Authorization", "Bearer token1")]).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert_eq!(body["kind"], "Status");
    assert_eq!(body["code"], 502);
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("error trying to reach the upstream"),
        "{body}"
    );
}

#[test]
fn bad_flags_and_files_are_refused_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let pki = write_test_pki(&dir.path().join("pki"));
    let f = |name: &str| pki.join(name).display().to_string();
    let tokens = write_file(dir.path(), "tokens.csv", TOKENS);
    let bad_tokens = write_file(dir.path(), "bad-tokens.csv", "only-one-column\n");
    let missing = dir.path().join("missing.crt").display().to_string();
    // A working command line, flag by flag; each case replaces or removes some.
    let good = |flag: &str| -> Option<String> {
        Some(match flag {
            "--tls-cert-file" => f("serving.crt"),
            "--tls-private-key-file" => f("serving.key"),
            "--token-auth-file" => tokens.clone(),
            "--upstream-ca-file" => f("root-ca.crt"),
            "--proxy-client-cert-file" => f("front-proxy-client.crt"),
            "--proxy-client-key-file" => f("front-proxy-client.key"),
            _ => return None,
        })
    };
    const FLAGS: [&str; 6] = [
        "--tls-cert-file",
        "--tls-private-key-file",
        "--token-auth-file",
        "--upstream-ca-file",
        "--proxy-client-cert-file",
        "--proxy-client-key-file",
    ];
    // (flag, value: None removes it, the message must contain)
    let cases: [(&str, Option<String>, &str); 7] = [
        ("--token-auth-file", None, "no way to authenticate users"),
        ("--upstream-ca-file", None, "--upstream-ca-file"),
        ("--upstream", Some("http://127.0.0.1:6443".into()), "https"),
        ("--token-auth-file", Some(bad_tokens), "bad-tokens.csv"),
        ("--tls-cert-file", Some(missing.clone()), "missing.crt"),
        ("--upstream-ca-file", Some(missing), "--upstream-ca-file"),
        (
            "--proxy-client-key-file",
            Some(f("not-allowed-proxy.key")),
            "not-allowed-proxy.key",
        ),
    ];
    for (flag, value, needle) in cases {
        let mut args: Vec<String> = FLAGS
            .iter()
            .filter(|&&name| name != flag)
            .map(|name| format!("{name}={}", good(name).unwrap()))
            .collect();
        if let Some(value) = value {
            args.push(format!("{flag}={value}"));
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (status, stderr) = FrontProxy::run_to_exit(&args);
        assert!(!status.success(), "accepted {args:?}");
        assert!(stderr.contains(needle), "{needle:?} not in: {stderr}");
    }
}

/// An HTTP/2 `:path` that does not start with `/` (here `?query`, which `http` accepts) is
/// refused with 400 and a Status body rather than glued to the upstream's address; the
/// connection goes on serving. (reqwest cannot send such a path: this speaks HTTP/2 with h2.)
#[tokio::test]
async fn an_http2_path_that_is_not_absolute_is_refused() {
    let chain = Chain::start();
    let tls = tls_client_config(&chain.ca(), None, &[b"h2"]);
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", chain.proxy.port))
        .await
        .unwrap();
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let stream = tokio_rustls::TlsConnector::from(Arc::new(tls))
        .connect(name, tcp)
        .await
        .unwrap();
    let (mut h2, connection) = h2::client::handshake(stream).await.unwrap();
    tokio::spawn(connection);
    let send = |h2: &mut h2::client::SendRequest<bytes::Bytes>, uri: http::Uri| {
        let request = http::Request::get(uri)
            .header("authorization", "Bearer token1")
            .body(())
            .unwrap();
        h2.send_request(request, true).unwrap().0
    };
    // Without scheme and authority, h2 sends the path as it is.
    let mut parts = http::uri::Parts::default();
    parts.path_and_query = Some(http::uri::PathAndQuery::from_static("?watch=true"));
    let response = send(&mut h2, http::Uri::from_parts(parts).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let mut body = response.into_body();
    let mut text = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.unwrap();
        text.extend_from_slice(&chunk);
        let _ = body.flow_control().release_capacity(chunk.len());
    }
    let status: Value = serde_json::from_slice(&text).unwrap();
    assert_eq!(status["kind"], "Status");
    assert_eq!(status["code"], 400);
    let message = status["message"].as_str().unwrap();
    assert!(message.contains("is not an absolute path"), "{status}");

    let uri = format!("https://127.0.0.1:{}/version", chain.proxy.port);
    let response = send(&mut h2, uri.parse().unwrap()).await.unwrap();
    assert_eq!(response.status(), 200);
}
