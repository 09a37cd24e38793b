//! Client certificates over real TLS on 127.0.0.1 against the mini API server started with
//! `--client-ca-file` and a serving certificate of the test PKI: kubectl 1.33, curl and the
//! Python client with a certificate, refusals (expired, server-only usage, unknown CA), a bad
//! certificate falling through to a bearer token, `X-Remote-User` spoofing, and rotation of
//! the serving certificate and of the client CA bundle under keep-alive load.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kube_authn_e2e::{KUBECTL, Server, UNAUTHORIZED, python, repo, write_file};
use kube_authn_testing::{Issued, TestPki};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const TOKENS: &str = "token1,alice,uid-a,\"devs\"\n";
const SSR_PATH: &str = "/apis/authentication.k8s.io/v1/selfsubjectreviews";
const SSR_BODY: &str =
    r#"{"kind":"SelfSubjectReview","apiVersion":"authentication.k8s.io/v1","metadata":{}}"#;
/// The window the issue gives for new certificates and CA bundles to take effect.
const WINDOW: Duration = Duration::from_secs(2);
/// How long the rotation test keeps the load running in each phase.
const PHASE: Duration = Duration::from_secs(1);

fn pki() -> &'static TestPki {
    TestPki::shared()
}

// ---------------------------------------------------------------------------------------------
// Servers

/// Starts the server with the test PKI written to `<dir>/pki`: `--client-ca-file` = the client
/// CA, the serving certificate signed by the root CA, a token file (`token1` = alice), and
/// `extra(pki dir)`.
fn start_with(extra: impl FnOnce(&Path) -> Vec<String>) -> Server {
    start_logging(extra, Server::start_in)
}

/// [`start_with`], started by `start` (with or without the test harness' `RUST_LOG`).
fn start_logging(
    extra: impl FnOnce(&Path) -> Vec<String>,
    start: fn(tempfile::TempDir, &[&str]) -> Server,
) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("pki");
    pki().write_to(&p).unwrap();
    let tokens = write_file(dir.path(), "tokens.csv", TOKENS);
    let mut args = vec![
        format!("--client-ca-file={}", p.join("client-ca.crt").display()),
        format!("--tls-cert-file={}", p.join("serving.crt").display()),
        format!("--tls-private-key-file={}", p.join("serving.key").display()),
        format!("--token-auth-file={tokens}"),
    ];
    args.extend(extra(&p));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    start(dir, &args)
}

fn start() -> Server {
    start_with(|_| Vec::new())
}

fn pki_file(s: &Server, name: &str) -> PathBuf {
    s.dir.path().join("pki").join(name)
}

/// Writes `content` next to `path` and renames it over `path` (an atomic replacement).
fn replace_by_rename(path: &Path, content: &str) {
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, content).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

// ---------------------------------------------------------------------------------------------
// A small keep-alive HTTP/1.1 client over rustls (one connection, requests in sequence)

/// A rustls client configuration trusting only the PKI's root CA, presenting `identity`
/// (chain and key) when given. Resumption is off, so every connection makes a full handshake
/// and `peer_certificates()` is the certificate served for *this* connection.
fn client_config(
    identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(pki().root_ca.cert_der()).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let mut config = match identity {
        Some((chain, key)) => builder.with_client_auth_cert(chain, key).unwrap(),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config.resumption = rustls::client::Resumption::disabled();
    Arc::new(config)
}

/// The configuration presenting `issued` with its intermediates (what clients send).
fn config_for(issued: Option<&Issued>) -> Arc<rustls::ClientConfig> {
    client_config(issued.map(|i| (i.chain(), i.key_der())))
}

struct Response {
    status: u16,
    head: String,
    body: String,
}

impl Response {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {} {}\n{}", self.status, self.head, self.body))
    }

    /// `status.userInfo.username` and `.groups` of a SelfSubjectReview.
    fn user(&self) -> (String, Value) {
        let v = self.json();
        let info = &v["status"]["userInfo"];
        (
            info["username"].as_str().unwrap_or_default().to_owned(),
            info["groups"].clone(),
        )
    }
}

fn err(kind: io::ErrorKind, what: &str) -> io::Error {
    io::Error::new(kind, what.to_owned())
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

struct Conn {
    tls: tokio_rustls::client::TlsStream<TcpStream>,
    buf: Vec<u8>,
}

impl Conn {
    /// Connects and handshakes (at most 10 s).
    async fn open(port: u16, config: Arc<rustls::ClientConfig>) -> io::Result<Conn> {
        let connect = async {
            let tcp = TcpStream::connect(("127.0.0.1", port)).await?;
            tcp.set_nodelay(true)?;
            let name = ServerName::try_from("127.0.0.1").unwrap();
            let tls = tokio_rustls::TlsConnector::from(config)
                .connect(name, tcp)
                .await?;
            Ok(Conn {
                tls,
                buf: Vec::new(),
            })
        };
        tokio::time::timeout(Duration::from_secs(10), connect)
            .await
            .map_err(|_| err(io::ErrorKind::TimedOut, "connect and handshake timed out"))?
    }

    /// The leaf certificate the server presented on this connection.
    fn server_leaf(&self) -> CertificateDer<'static> {
        self.tls.get_ref().1.peer_certificates().unwrap()[0]
            .clone()
            .into_owned()
    }

    /// One request on the connection (at most 10 s); the connection stays open.
    async fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> io::Result<Response> {
        tokio::time::timeout(
            Duration::from_secs(10),
            self.exchange(method, path, headers, body),
        )
        .await
        .map_err(|_| err(io::ErrorKind::TimedOut, "no response within 10 s"))?
    }

    async fn exchange(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> io::Result<Response> {
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\n",
            body.len()
        );
        if !body.is_empty() {
            req.push_str("Content-Type: application/json\r\n");
        }
        for (name, value) in headers {
            req.push_str(&format!("{name}: {value}\r\n"));
        }
        req.push_str("\r\n");
        req.push_str(body);
        self.tls.write_all(req.as_bytes()).await?;
        self.tls.flush().await?;

        let head_end = loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                break i;
            }
            self.fill().await?;
        };
        let head = String::from_utf8_lossy(&self.buf[..head_end]).into_owned();
        self.buf.drain(..head_end + 4);
        let status = head
            .get(9..12)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| err(io::ErrorKind::InvalidData, "bad status line"))?;
        let lower = head.to_ascii_lowercase();
        let body = if lower.contains("\r\ntransfer-encoding: chunked") {
            let mut out = Vec::new();
            loop {
                let line_end = loop {
                    if let Some(i) = find(&self.buf, b"\r\n") {
                        break i;
                    }
                    self.fill().await?;
                };
                let line = String::from_utf8_lossy(&self.buf[..line_end]).into_owned();
                let size = usize::from_str_radix(line.split(';').next().unwrap_or("").trim(), 16)
                    .map_err(|_| err(io::ErrorKind::InvalidData, "bad chunk size"))?;
                self.buf.drain(..line_end + 2);
                while self.buf.len() < size + 2 {
                    self.fill().await?;
                }
                out.extend_from_slice(&self.buf[..size]);
                self.buf.drain(..size + 2);
                if size == 0 {
                    break;
                }
            }
            out
        } else {
            let len = lower
                .split("\r\n")
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            while self.buf.len() < len {
                self.fill().await?;
            }
            self.buf.drain(..len).collect()
        };
        Ok(Response {
            status,
            head,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    }

    async fn fill(&mut self) -> io::Result<()> {
        let mut chunk = [0u8; 16 * 1024];
        let n = self.tls.read(&mut chunk).await?;
        if n == 0 {
            return Err(err(
                io::ErrorKind::UnexpectedEof,
                "connection closed by the server",
            ));
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }

    /// `POST selfsubjectreviews` (what `kubectl auth whoami` does).
    async fn whoami(&mut self, headers: &[(&str, &str)]) -> io::Result<Response> {
        self.request("POST", SSR_PATH, headers, SSR_BODY).await
    }
}

/// A new connection presenting `issued` (with its intermediates), one whoami.
async fn whoami_once(port: u16, issued: Option<&Issued>, headers: &[(&str, &str)]) -> Response {
    let mut conn = Conn::open(port, config_for(issued)).await.unwrap();
    conn.whoami(headers).await.unwrap()
}

fn assert_unauthorized(r: &Response, what: &str) {
    assert_eq!(r.status, 401, "{what}: {}", r.body);
    assert_eq!(r.body, UNAUTHORIZED, "{what}");
}

fn assert_user(r: &Response, username: &str, groups: Value, what: &str) {
    assert_eq!(r.status, 201, "{what}: {}", r.body);
    assert_eq!(r.user(), (username.to_owned(), groups), "{what}");
}

// ---------------------------------------------------------------------------------------------
// 1. kubectl 1.33

/// Makes `<pki>/jbeda-seed.{crt,key}` with the seed's commands (the Kubernetes documentation's):
/// a key, a request for `/CN=jbeda/O=app1/O=app2`, signed by the client CA with
/// `openssl x509 -req` and no extension file, which makes an X.509 version 1 certificate.
fn seed_certificate(s: &Server) -> &'static str {
    let dir = s.dir.path().join("pki");
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl")
            .current_dir(&dir)
            .args(args)
            .output()
            .expect("openssl (installed by scripts/install-test-deps.sh)");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    };
    openssl(&["genrsa", "-out", "jbeda-seed.key", "2048"]);
    openssl(&[
        "req",
        "-new",
        "-key",
        "jbeda-seed.key",
        "-out",
        "jbeda-seed.csr",
        "-subj",
        "/CN=jbeda/O=app1/O=app2",
    ]);
    openssl(&[
        "x509",
        "-req",
        "-in",
        "jbeda-seed.csr",
        "-CA",
        "client-ca.crt",
        "-CAkey",
        "client-ca.key",
        "-CAcreateserial",
        "-out",
        "jbeda-seed.crt",
        "-days",
        "365",
    ]);
    let text = openssl(&["x509", "-in", "jbeda-seed.crt", "-noout", "-text"]);
    assert!(
        text.contains("Version: 1 (0x0)") && !text.contains("X509v3"),
        "expected a version 1 certificate without extensions:\n{text}"
    );
    "jbeda-seed"
}

#[test]
fn kubectl_auth_whoami_with_a_client_certificate() {
    let s = start();
    for name in ["jbeda", seed_certificate(&s)] {
        kubectl_whoami_with(&s, name);
    }
}

/// `kubectl auth whoami` (JSON and table) with `<pki>/<name>.{crt,key}`: jbeda in app1, app2.
fn kubectl_whoami_with(s: &Server, name: &str) {
    let home = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let out = Command::new(KUBECTL)
            .env("HOME", home.path())
            .env("KUBECONFIG", home.path().join("no-kubeconfig"))
            .arg(format!("--server={}", s.url()))
            .arg(format!(
                "--certificate-authority={}",
                pki_file(s, "root-ca.crt").display()
            ))
            .arg(format!(
                "--client-certificate={}",
                pki_file(s, &format!("{name}.crt")).display()
            ))
            .arg(format!(
                "--client-key={}",
                pki_file(s, &format!("{name}.key")).display()
            ))
            .arg("--request-timeout=20s")
            .args(args)
            .output()
            .expect("kubectl 1.33 is preinstalled on this machine");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            out.status.success(),
            "kubectl {args:?} with {name}: {stderr}\n{stdout}"
        );
        stdout
    };

    let out = run(&["auth", "whoami", "-o", "json"]);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["kind"], "SelfSubjectReview", "{out}");
    assert_eq!(v["status"]["userInfo"]["username"], "jbeda", "{out}");
    assert_eq!(
        v["status"]["userInfo"]["groups"],
        json!(["app1", "app2", "system:authenticated"]),
        "{out}"
    );

    let table = run(&["auth", "whoami"]);
    let row = table
        .lines()
        .find(|l| l.starts_with("Username"))
        .unwrap_or_else(|| panic!("no Username row:\n{table}"));
    assert!(row.split_whitespace().any(|w| w == "jbeda"), "{table}");
    assert!(
        table.contains("[app1 app2 system:authenticated]"),
        "{table}"
    );
}

// ---------------------------------------------------------------------------------------------
// 2. curl (Debian's, OpenSSL 3)

/// `curl --cacert root --cert CERT --key KEY -X POST selfsubjectreviews`: (status, body).
fn curl_whoami(s: &Server, cert: &str, key: &str) -> (u16, Value) {
    // HTTP/1.1: over HTTP/2 a 401 sent before the 2-byte body was read ends the stream with
    // RST_STREAM(NO_ERROR) (RFC 9113 §8.1), which curl 7.88 sometimes reports as error 92.
    let out = Command::new("curl")
        .args(["-sS", "--http1.1", "--max-time", "20", "--cacert"])
        .arg(pki_file(s, "root-ca.crt"))
        .arg("--cert")
        .arg(pki_file(s, cert))
        .arg("--key")
        .arg(pki_file(s, key))
        .args(["-X", "POST", "-H", "Content-Type: application/json"])
        .args(["--data", SSR_BODY, "-w", "\n%{http_code}"])
        .arg(format!("{}{SSR_PATH}", s.url()))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "curl --cert {cert}: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (body, code) = stdout.rsplit_once('\n').unwrap();
    let body = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    (code.trim().parse().unwrap(), body)
}

#[test]
fn curl_with_client_certificates() {
    let s = start();
    let status_401: Value = serde_json::from_str(UNAUTHORIZED).unwrap();

    for name in ["jbeda", seed_certificate(&s)] {
        let (code, v) = curl_whoami(&s, &format!("{name}.crt"), &format!("{name}.key"));
        assert_eq!(code, 201, "{name}: {v}");
        assert_eq!(v["status"]["userInfo"]["username"], "jbeda");
        assert_eq!(
            v["status"]["userInfo"]["groups"],
            json!(["app1", "app2", "system:authenticated"])
        );
    }

    // Refused certificates: 401 with the Kubernetes Status body (curl gets it pretty-printed),
    // and the precise reason in the server's log.
    for (name, reason) in [
        (
            "expired",
            "x509: certificate has expired or is not yet valid: current time",
        ),
        (
            "server-only",
            "x509: certificate specifies an incompatible key usage",
        ),
        (
            "other-ca-client",
            "x509: certificate signed by unknown authority",
        ),
    ] {
        let (code, v) = curl_whoami(&s, &format!("{name}.crt"), &format!("{name}.key"));
        assert_eq!(code, 401, "{name}: {v}");
        assert_eq!(v, status_401, "{name}");
        let log = s.wait_for_stderr(reason, Duration::from_secs(5));
        assert!(
            log.lines()
                .any(|l| l.contains("client certificate refused") && l.contains(reason)),
            "{name}: {log}"
        );
    }

    // Via the intermediate CA, the chain sent by curl: authenticated.
    let (code, v) = curl_whoami(
        &s,
        "jbeda-via-intermediate-chain.crt",
        "jbeda-via-intermediate.key",
    );
    assert_eq!(code, 201, "{v}");
    assert_eq!(
        v["status"]["userInfo"]["username"],
        "jbeda-via-intermediate"
    );
    assert_eq!(
        v["status"]["userInfo"]["groups"],
        json!(["app3", "system:authenticated"])
    );
    // The same leaf without its intermediate cannot be verified (Go verifies with the
    // intermediates the peer sent, never with ones it cached).
    let (code, v) = curl_whoami(
        &s,
        "jbeda-via-intermediate.crt",
        "jbeda-via-intermediate.key",
    );
    assert_eq!(code, 401, "{v}");
    assert_eq!(v, status_401);
}

#[test]
fn the_default_log_filter_shows_why_a_certificate_was_refused() {
    // No RUST_LOG: what an operator running the server sees.
    let s = start_logging(|_| Vec::new(), Server::start_with_default_log);
    let (code, _) = curl_whoami(&s, "expired.crt", "expired.key");
    assert_eq!(code, 401);
    let log = s.wait_for_stderr("client certificate refused", Duration::from_secs(30));
    let line = log
        .lines()
        .find(|l| l.contains("client certificate refused"))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(
        line.contains("x509: certificate has expired or is not yet valid: current time"),
        "{line}"
    );
    // The 401 itself is explained too, with the reason and never with the credential (the
    // certificate's bytes, its key).
    let log = s.wait_for_stderr(
        "unable to authenticate the request",
        Duration::from_secs(30),
    );
    let line = log
        .lines()
        .find(|l| l.contains("unable to authenticate the request"))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(line.contains("has expired or is not yet valid"), "{line}");
    let pem = std::fs::read_to_string(pki_file(&s, "expired.crt")).unwrap();
    let body = pem.lines().find(|l| !l.starts_with("-----")).unwrap();
    assert!(
        !line.contains("BEGIN") && !line.contains(&body[..32]),
        "{line}"
    );
}

// ---------------------------------------------------------------------------------------------
// 3. The Python kubernetes client

fn py_whoami(s: &Server, name: &str) -> (i32, Value) {
    let out = Command::new(python())
        .arg(repo().join("tests/peers/py_client.py"))
        .arg(format!("--server={}", s.url()))
        .arg(format!("--ca={}", pki_file(s, "root-ca.crt").display()))
        .arg(format!(
            "--cert={}",
            pki_file(s, &format!("{name}.crt")).display()
        ))
        .arg(format!(
            "--key={}",
            pki_file(s, &format!("{name}.key")).display()
        ))
        .arg("--timeout=20")
        .arg("whoami")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let v = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("{e}: {stdout}\n{}", String::from_utf8_lossy(&out.stderr)));
    (out.status.code().unwrap_or(-1), v)
}

#[test]
fn python_client_with_a_client_certificate() {
    let s = start();
    for name in ["jbeda", seed_certificate(&s)] {
        let (code, v) = py_whoami(&s, name);
        assert_eq!(code, 0, "{name}: {v}");
        assert_eq!(v["username"], "jbeda");
        assert_eq!(v["groups"], json!(["app1", "app2", "system:authenticated"]));
    }

    let (code, v) = py_whoami(&s, "expired");
    assert_eq!(code, 1, "{v}");
    assert_eq!(v["status"], 401, "{v}");
    assert_eq!(v["body"]["reason"], "Unauthorized", "{v}");
}

// ---------------------------------------------------------------------------------------------
// 4. A bad certificate falls through to the bearer token

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_certificate_falls_through_to_a_valid_token() {
    let s = start();
    let p = pki();
    let token = [("Authorization", "Bearer token1")];
    let alice = json!(["devs", "system:authenticated"]);
    for (name, bad) in [
        ("expired", &p.expired),
        ("server-only", &p.server_only),
        ("other CA", &p.other_ca_client),
        ("not yet valid", &p.not_yet_valid),
    ] {
        // Alone the certificate is refused...
        assert_unauthorized(&whoami_once(s.port, Some(bad), &[]).await, name);
        // ...with a valid token the token user wins, as in Kubernetes' union authenticator.
        let r = whoami_once(s.port, Some(bad), &token).await;
        assert_user(&r, "alice", alice.clone(), name);
        // ...and with a bad token too it stays 401.
        let r = whoami_once(s.port, Some(bad), &[("Authorization", "Bearer nope")]).await;
        assert_unauthorized(&r, name);
    }
    // A valid certificate comes before the token in Kubernetes' order (x509, then tokens).
    let r = whoami_once(s.port, Some(&p.jbeda), &token).await;
    assert_user(
        &r,
        "jbeda",
        json!(["app1", "app2", "system:authenticated"]),
        "valid cert and token",
    );
    // On one keep-alive connection: every request falls through again.
    let mut conn = Conn::open(s.port, config_for(Some(&p.expired)))
        .await
        .unwrap();
    for _ in 0..3 {
        assert_unauthorized(&conn.whoami(&[]).await.unwrap(), "expired, keep-alive");
        let r = conn.whoami(&token).await.unwrap();
        assert_user(&r, "alice", alice.clone(), "expired + token, keep-alive");
    }
}

// ---------------------------------------------------------------------------------------------
// 5. X-Remote-User spoofing

const SPOOF: [(&str, &str); 3] = [
    ("X-Remote-User", "admin"),
    ("X-Remote-Group", "system:masters"),
    ("X-Remote-Extra-Scopes", "all"),
];
const SPOOF_LOWER: [(&str, &str); 2] = [
    ("x-remote-user", "admin"),
    ("x-remote-group", "system:masters"),
];

/// Requests with spoofed identity headers from a client without a proxy certificate: no
/// certificate is anonymous (403 on whoami, naming `system:anonymous`; 403 on creating a
/// pod), a client-CA certificate is jbeda; never admin.
async fn assert_spoofing_ignored(s: &Server, what: &str) {
    let p = pki();
    for headers in [&SPOOF[..], &SPOOF_LOWER[..]] {
        let r = whoami_once(s.port, None, headers).await;
        assert_eq!(r.status, 403, "{what}: {}", r.body);
        let v = r.json();
        assert_eq!(v["reason"], "Forbidden", "{what}: {v}");
        let msg = v["message"].as_str().unwrap();
        assert!(msg.contains("User \"system:anonymous\""), "{what}: {msg}");
        assert!(!msg.contains("admin"), "{what}: {msg}");

        let mut conn = Conn::open(s.port, config_for(None)).await.unwrap();
        let pod = kube_authn_e2e::pod("spoofed").to_string();
        let r = conn
            .request("POST", "/api/v1/namespaces/default/pods", headers, &pod)
            .await
            .unwrap();
        assert_eq!(r.status, 403, "{what}: pod creation as admin? {}", r.body);

        let r = whoami_once(s.port, Some(&p.jbeda), headers).await;
        assert_user(
            &r,
            "jbeda",
            json!(["app1", "app2", "system:authenticated"]),
            what,
        );
        assert!(
            r.json()["status"]["userInfo"]["extra"]
                .get("scopes")
                .is_none()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spoofed_remote_user_headers_are_ignored() {
    let p = pki();
    // Without a request-header CA at all, anonymous on.
    let s = start_with(|_| vec!["--anonymous-auth=true".to_owned()]);
    assert_spoofing_ignored(&s, "no --requestheader-client-ca-file").await;
    drop(s);

    // With a request-header CA: only its allowed certificate may assert users.
    let s = start_with(|dir| {
        vec![
            "--anonymous-auth=true".to_owned(),
            format!(
                "--requestheader-client-ca-file={}",
                dir.join("front-proxy-ca.crt").display()
            ),
            "--requestheader-allowed-names=front-proxy-client".to_owned(),
            "--requestheader-username-headers=X-Remote-User".to_owned(),
            "--requestheader-group-headers=X-Remote-Group".to_owned(),
            "--requestheader-extra-headers-prefix=X-Remote-Extra-".to_owned(),
        ]
    });
    assert_spoofing_ignored(&s, "with --requestheader-client-ca-file").await;
    // The control: the proxy's certificate does assert the headers' user, so the refusals
    // above are not a server that ignores the headers altogether.
    let r = whoami_once(s.port, Some(&p.proxy_client), &SPOOF).await;
    assert_user(
        &r,
        "admin",
        json!(["system:masters", "system:authenticated"]),
        "front proxy",
    );
    assert_eq!(
        r.json()["status"]["userInfo"]["extra"]["scopes"],
        json!(["all"])
    );
    // A front-proxy certificate whose name is not allowed: refused (an error, so 401 even with
    // anonymous on, as Kubernetes' FailOnError union does), never admin.
    let r = whoami_once(s.port, Some(&p.proxy_not_allowed), &SPOOF).await;
    assert_unauthorized(&r, "proxy not in allowed names");
    // Separate pools: the proxy certificate is not a user certificate (and a client-CA
    // certificate is not a proxy certificate, shown by assert_spoofing_ignored above).
    let r = whoami_once(s.port, Some(&p.proxy_client), &[]).await;
    assert_unauthorized(&r, "proxy certificate without headers");
}

// ---------------------------------------------------------------------------------------------
// 6. Rotation of the serving certificate and of the client CA bundle under keep-alive load

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// jbeda's certificate (the old client CA, revoked in the last step).
    OldCa,
    /// The other CA's client certificate (the new CA, trusted from step b).
    NewCa,
    /// No client certificate, a bearer token.
    Token,
}

#[derive(Default)]
struct Stats {
    created: AtomicU64,
    unauthorized: AtomicU64,
    reconnects: AtomicU64,
    /// Connection errors of an old-CA worker after the revocation (allowed, reported).
    errors_after_revocation: AtomicU64,
    first_401: Mutex<Option<Instant>>,
    /// Anything that must not happen (an unexpected status or user, a connection error on a
    /// connection that does not use the revoked CA, a 201 after a 401).
    problems: Mutex<Vec<String>>,
}

impl Stats {
    fn requests(&self) -> u64 {
        self.created.load(Ordering::SeqCst) + self.unauthorized.load(Ordering::SeqCst)
    }

    fn problem(&self, p: String) {
        let mut all = self.problems.lock().unwrap();
        if all.len() < 20 {
            all.push(p);
        }
    }
}

struct Worker {
    kind: Kind,
    stats: Arc<Stats>,
    task: tokio::task::JoinHandle<()>,
}

/// Sends whoami requests in a loop on one keep-alive connection until `stop`; reconnects only
/// after a connection error (counted).
fn spawn_worker(port: u16, kind: Kind, stop: Arc<AtomicBool>, revoked: Arc<AtomicBool>) -> Worker {
    let stats = Arc::new(Stats::default());
    let st = Arc::clone(&stats);
    let task = tokio::spawn(async move {
        let p = pki();
        let (config, headers, user): (_, &[(&str, &str)], _) = match kind {
            Kind::OldCa => (config_for(Some(&p.jbeda)), &[], "jbeda"),
            Kind::NewCa => (config_for(Some(&p.other_ca_client)), &[], "other-ca-client"),
            Kind::Token => (
                config_for(None),
                &[("Authorization", "Bearer token1")],
                "alice",
            ),
        };
        let mut conn = Conn::open(port, Arc::clone(&config)).await.unwrap();
        while !stop.load(Ordering::SeqCst) {
            let result = conn.whoami(headers).await;
            // Read after the answer: a 401 can only follow the revocation, which follows the
            // flag.
            let revoked_now = kind == Kind::OldCa && revoked.load(Ordering::SeqCst);
            match result {
                Ok(r) if r.status == 201 => {
                    let (got, _) = r.user();
                    if got != user {
                        st.problem(format!("{kind:?}: 201 as {got:?}, want {user:?}"));
                    }
                    if st.first_401.lock().unwrap().is_some() {
                        st.problem(format!("{kind:?}: 201 after a 401"));
                    }
                    st.created.fetch_add(1, Ordering::SeqCst);
                }
                Ok(r) if r.status == 401 => {
                    if !revoked_now {
                        st.problem(format!("{kind:?}: 401 on a trusted certificate"));
                    }
                    if r.body != UNAUTHORIZED {
                        st.problem(format!("{kind:?}: 401 body {:?}", r.body));
                    }
                    st.first_401
                        .lock()
                        .unwrap()
                        .get_or_insert_with(Instant::now);
                    st.unauthorized.fetch_add(1, Ordering::SeqCst);
                }
                Ok(r) => st.problem(format!("{kind:?}: status {} {}", r.status, r.body)),
                Err(e) => {
                    if revoked_now {
                        st.errors_after_revocation.fetch_add(1, Ordering::SeqCst);
                    } else {
                        st.problem(format!("{kind:?}: connection error: {e}"));
                    }
                    loop {
                        if stop.load(Ordering::SeqCst) {
                            return;
                        }
                        match Conn::open(port, Arc::clone(&config)).await {
                            Ok(c) => {
                                conn = c;
                                break;
                            }
                            Err(e) => {
                                st.problem(format!("{kind:?}: reconnect failed: {e}"));
                                tokio::time::sleep(Duration::from_millis(50)).await;
                            }
                        }
                    }
                    st.reconnects.fetch_add(1, Ordering::SeqCst);
                }
            }
        }
    });
    Worker { kind, stats, task }
}

/// Waits until every worker made `more` requests beyond `since` (at most 10 s: a liveness
/// bound, not a timing assertion).
async fn progressed(workers: &[Worker], since: &[u64], more: u64, what: &str) {
    let start = Instant::now();
    loop {
        let behind: Vec<_> = workers
            .iter()
            .zip(since)
            .filter(|(w, s)| w.stats.requests() < *s + more)
            .map(|(w, _)| w.kind)
            .collect();
        if behind.is_empty() {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{what}: workers {behind:?} stopped making progress; problems: {:?}",
            workers
                .iter()
                .map(|w| w.stats.problems.lock().unwrap().clone())
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Keeps the load running for `d`, then checks that every worker still makes progress.
async fn hold(workers: &[Worker], d: Duration, what: &str) {
    let since = counts(workers);
    tokio::time::sleep(d).await;
    progressed(workers, &since, 5, what).await;
}

fn counts(workers: &[Worker]) -> Vec<u64> {
    workers.iter().map(|w| w.stats.requests()).collect()
}

/// Polls `probe` every 20 ms until it returns true; fails after the 2 s window.
async fn within_window<F, Fut>(what: &str, since: Instant, mut probe: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    loop {
        if probe().await {
            return since.elapsed();
        }
        assert!(since.elapsed() < WINDOW, "{what}: not within {WINDOW:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn pem_bundle(cas: &[&Issued]) -> String {
    cas.iter().map(|c| c.cert_pem()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_of_serving_cert_and_client_ca_under_load() {
    let p = pki();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_owned();
    let bundle = d.join("client-ca-bundle.crt");
    let cert = d.join("serving.crt");
    let key = d.join("serving.key");
    std::fs::write(&bundle, pem_bundle(&[&p.client_ca])).unwrap();
    std::fs::write(&cert, p.serving.cert_pem()).unwrap();
    std::fs::write(&key, p.serving.key_pem()).unwrap();
    let tokens = write_file(&d, "tokens.csv", TOKENS);
    let s = Server::start_in(
        dir,
        &[
            &format!("--client-ca-file={}", bundle.display()),
            &format!("--tls-cert-file={}", cert.display()),
            &format!("--tls-private-key-file={}", key.display()),
            &format!("--token-auth-file={tokens}"),
        ],
    );
    let port = s.port;
    let jbeda_groups = json!(["app1", "app2", "system:authenticated"]);

    let stop = Arc::new(AtomicBool::new(false));
    let revoked = Arc::new(AtomicBool::new(false));
    let mut workers: Vec<Worker> = (0..4)
        .map(|_| spawn_worker(port, Kind::OldCa, stop.clone(), revoked.clone()))
        .collect();
    workers.push(spawn_worker(
        port,
        Kind::Token,
        stop.clone(),
        revoked.clone(),
    ));
    hold(&workers, PHASE, "warm-up").await;

    // (a) The serving certificate and key replaced by rename (key first: the certificate alone
    //     would not match the old key, and the server keeps the old pair until both match).
    let before = Conn::open(port, config_for(None)).await.unwrap();
    assert_eq!(before.server_leaf(), p.serving.cert_der());
    let rotated = p.serving_rotated.cert_der();
    replace_by_rename(&key, &p.serving_rotated.key_pem());
    replace_by_rename(&cert, &p.serving_rotated.cert_pem());
    let rotated_at = Instant::now();
    let took = within_window("the rotated serving certificate", rotated_at, || async {
        // Every new connection must handshake (with the old or the new certificate) and
        // authenticate.
        let mut c = Conn::open(port, config_for(Some(&p.jbeda))).await.unwrap();
        let r = c.whoami(&[]).await.unwrap();
        assert_user(&r, "jbeda", jbeda_groups.clone(), "during serving rotation");
        c.server_leaf() == rotated
    })
    .await;
    eprintln!("(a) new connections get the rotated serving certificate after {took:?}");
    // The connections opened before keep working (no reconnect is checked at the end).
    hold(&workers, PHASE, "after the serving rotation").await;
    drop(before);

    // (b) The bundle now holds the old and a new CA. A connection with the new CA's
    //     certificate opened before the change starts working on the same connection.
    let mut pending = Conn::open(port, config_for(Some(&p.other_ca_client)))
        .await
        .unwrap();
    assert_unauthorized(
        &pending.whoami(&[]).await.unwrap(),
        "new CA before it is trusted",
    );
    replace_by_rename(&bundle, &pem_bundle(&[&p.client_ca, &p.other_ca]));
    let added_at = Instant::now();
    let new_groups = json!(["app1", "system:authenticated"]);
    let took = loop {
        let r = pending.whoami(&[]).await.unwrap();
        if r.status != 401 {
            assert_user(
                &r,
                "other-ca-client",
                new_groups.clone(),
                "added CA, same connection",
            );
            break added_at.elapsed();
        }
        assert!(
            added_at.elapsed() < WINDOW,
            "a certificate of the added CA: not within {WINDOW:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    eprintln!("(b) the added CA works after {took:?}");
    drop(pending);
    assert_user(
        &whoami_once(port, Some(&p.other_ca_client), &[]).await,
        "other-ca-client",
        new_groups.clone(),
        "added CA, new connection",
    );
    assert_user(
        &whoami_once(port, Some(&p.jbeda), &[]).await,
        "jbeda",
        jbeda_groups.clone(),
        "old CA still in the bundle",
    );
    for _ in 0..2 {
        workers.push(spawn_worker(
            port,
            Kind::NewCa,
            stop.clone(),
            revoked.clone(),
        ));
    }
    hold(&workers, PHASE, "with both CAs").await;

    // (c) The bundle holds only the new CA: jbeda (old CA) gets 401, on new connections and on
    //     the connections already open; everybody else keeps working.
    revoked.store(true, Ordering::SeqCst);
    replace_by_rename(&bundle, &pem_bundle(&[&p.other_ca]));
    let revoked_at = Instant::now();
    let took = within_window("revocation of the old CA", revoked_at, || async {
        let r = whoami_once(port, Some(&p.jbeda), &[]).await;
        if r.status == 201 {
            return false;
        }
        assert_unauthorized(&r, "revoked CA");
        true
    })
    .await;
    eprintln!("(c) the old CA is refused on new connections after {took:?}");
    let old: Vec<&Worker> = workers.iter().filter(|w| w.kind == Kind::OldCa).collect();
    let start = Instant::now();
    while old
        .iter()
        .any(|w| w.stats.first_401.lock().unwrap().is_none())
        && start.elapsed() < Duration::from_secs(10)
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for (i, w) in old.iter().enumerate() {
        let first = w
            .stats
            .first_401
            .lock()
            .unwrap()
            .expect("a 401 after the revocation");
        let after = first.saturating_duration_since(revoked_at);
        assert!(
            after <= WINDOW,
            "keep-alive connection {i} of the old CA got its first 401 {after:?} after the revocation"
        );
    }
    assert_user(
        &whoami_once(port, Some(&p.other_ca_client), &[]).await,
        "other-ca-client",
        new_groups,
        "new CA after the revocation",
    );
    hold(&workers, PHASE, "after the revocation").await;

    stop.store(true, Ordering::SeqCst);
    let mut report = Vec::new();
    for w in workers {
        w.task.await.unwrap();
        let st = &w.stats;
        let problems = st.problems.lock().unwrap().clone();
        let line = format!(
            "{:?}: 201 x{}, 401 x{}, reconnects {}, errors after revocation {}, problems {problems:?}",
            w.kind,
            st.created.load(Ordering::SeqCst),
            st.unauthorized.load(Ordering::SeqCst),
            st.reconnects.load(Ordering::SeqCst),
            st.errors_after_revocation.load(Ordering::SeqCst),
        );
        eprintln!("{line}");
        report.push((w.kind, Arc::clone(&w.stats), line));
    }
    for (kind, st, line) in &report {
        assert!(st.problems.lock().unwrap().is_empty(), "{line}");
        match kind {
            Kind::OldCa => {
                assert!(st.unauthorized.load(Ordering::SeqCst) > 0, "{line}");
            }
            Kind::NewCa | Kind::Token => {
                // Never revoked: never a 401, never a dropped connection.
                assert_eq!(st.unauthorized.load(Ordering::SeqCst), 0, "{line}");
                assert_eq!(st.reconnects.load(Ordering::SeqCst), 0, "{line}");
            }
        }
    }
}

#[test]
fn client_certificate_expiration_is_observed_in_metrics() {
    let s = start();
    let (code, v) = curl_whoami(&s, "jbeda.crt", "jbeda.key");
    assert_eq!(code, 201, "{v}");
    let out = Command::new("curl")
        .args(["-sS", "--http1.1", "--max-time", "20", "--cacert"])
        .arg(pki_file(&s, "root-ca.crt"))
        .arg("--cert")
        .arg(pki_file(&s, "jbeda.crt"))
        .arg("--key")
        .arg(pki_file(&s, "jbeda.key"))
        .arg(format!("{}/metrics", s.url()))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    // The value of one series (exporters print registered series even at 0: read the number).
    let value = |series: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {series} in\n{text}"))
    };
    // Two requests with jbeda's certificate so far (whoami, then this one, which the server
    // authenticates before it renders the metrics): both observed.
    assert!(
        value("apiserver_client_certificate_expiration_seconds_count") >= 2.0,
        "{text}"
    );
    assert!(
        value("apiserver_client_certificate_expiration_seconds_bucket{le=\"+Inf\"}") >= 2.0,
        "{text}"
    );
    // jbeda's certificate is valid for years: no observation in the 1-year bucket.
    assert_eq!(
        value("apiserver_client_certificate_expiration_seconds_bucket{le=\"31104000\"}"),
        0.0,
        "{text}"
    );
    assert!(
        value("authentication_attempts{result=\"success\"}") >= 2.0,
        "{text}"
    );
}
