//! Real TLS on 127.0.0.1: `serve`, a rustls client with a client certificate, and a tower
//! service behind the authentication layer.

use std::convert::Infallible;
use std::future::IntoFuture;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use kube_authn_core::{AuthnLayer, UserInfo};
use kube_authn_testing::{Issued, TestPki};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, HandshakeKind, RootCertStore};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tower::{ServiceBuilder, service_fn};

use super::serve::HEADER_READ_TIMEOUT;
use super::*;
use crate::{CaBundle, PeerCertificates, X509Authenticator};

/// Answers `<user> <groups> certs=<n> peer=<bool>`.
async fn whoami(req: Request<Incoming>) -> Result<Response<String>, Infallible> {
    let user = req
        .extensions()
        .get::<UserInfo>()
        .cloned()
        .unwrap_or_default();
    let certs = req
        .extensions()
        .get::<PeerCertificates>()
        .map_or(0, |p| p.chain().len());
    let peer = req.extensions().get::<SocketAddr>().is_some();
    Ok(Response::new(format!(
        "{} {} certs={certs} peer={peer}",
        user.username,
        user.groups.join(",")
    )))
}

/// The test server's TLS configuration: the serving certificate, `auth`'s CA advertised.
fn server_config(auth: &X509Authenticator) -> rustls::ServerConfig {
    let pki = TestPki::shared();
    let serving = ServingCert::from_pem(
        pki.serving.cert_pem().as_bytes(),
        pki.serving.key_pem().as_bytes(),
    )
    .unwrap();
    TlsConfigBuilder::new(serving)
        .advertise_client_ca(auth.ca())
        .build()
        .unwrap()
}

async fn start(auth: X509Authenticator) -> SocketAddr {
    start_with(auth, HEADER_READ_TIMEOUT).await
}

/// [`start`] with a header read timeout of `header_read`.
async fn start_with(auth: X509Authenticator, header_read: Duration) -> SocketAddr {
    let tls = server_config(&auth);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let svc = ServiceBuilder::new()
        .layer(AuthnLayer::new(auth))
        .service(service_fn(whoami));
    tokio::spawn(
        serve(listener, Arc::new(tls), svc)
            .handshake_timeout(Duration::from_secs(60))
            .header_read_timeout(header_read)
            .into_future(),
    );
    addr
}

fn client(cert: Option<&Issued>) -> TlsConnector {
    let pki = TestPki::shared();
    let mut roots = RootCertStore::empty();
    roots.add(pki.root_ca.cert_der()).unwrap();
    let builder = ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots);
    // The default client config keeps a session cache: a second connection resumes.
    let config = match cert {
        Some(c) => builder
            .with_client_auth_cert(c.chain(), c.key_der())
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    TlsConnector::from(Arc::new(config))
}

async fn connect(connector: &TlsConnector, addr: SocketAddr) -> TlsStream<TcpStream> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap()
}

/// Sends one HTTP/1.1 request on a kept-alive connection and reads the response.
async fn get(stream: &mut TlsStream<TcpStream>, extra: &str) -> (u16, String) {
    let request = format!("GET / HTTP/1.1\r\nHost: localhost\r\n{extra}\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "connection closed early");
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let head = &text[..end];
            let len: usize = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())
                        .flatten()
                })
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                let status = head[9..12].parse().unwrap();
                let body = String::from_utf8_lossy(&buf[end + 4..end + 4 + len]).into_owned();
                return (status, body);
            }
        }
    }
}

fn authenticator() -> X509Authenticator {
    let pki = TestPki::shared();
    X509Authenticator::new(
        CaBundle::from_pem("client-ca.crt", pki.client_ca.cert_pem().as_bytes()).unwrap(),
    )
}

#[tokio::test]
async fn client_certificate_over_tls_with_keep_alive_and_resumption() {
    let pki = TestPki::shared();
    let auth = authenticator();
    let addr = start(auth.clone()).await;
    let connector = client(Some(&pki.jbeda));

    let mut first = connect(&connector, addr).await;
    assert_eq!(
        first.get_ref().1.handshake_kind(),
        Some(HandshakeKind::Full)
    );
    for _ in 0..5 {
        let (status, body) = get(&mut first, "").await;
        assert_eq!(status, 200);
        assert_eq!(body, "jbeda app1,app2 certs=1 peer=true");
    }
    assert_eq!(
        auth.verifications(),
        1,
        "one chain verification per connection"
    );
    drop(first);

    // The second connection resumes the TLS session and still carries the client chain.
    let mut second = connect(&connector, addr).await;
    assert_eq!(
        second.get_ref().1.handshake_kind(),
        Some(HandshakeKind::Resumed)
    );
    let (status, body) = get(&mut second, "").await;
    assert_eq!(status, 200);
    assert_eq!(body, "jbeda app1,app2 certs=1 peer=true");
    assert_eq!(auth.verifications(), 2);
}

#[tokio::test]
async fn intermediates_unknown_ca_and_no_certificate_over_tls() {
    let pki = TestPki::shared();
    let addr = start(authenticator()).await;

    let mut via = connect(&client(Some(&pki.via_intermediate)), addr).await;
    let (status, body) = get(&mut via, "").await;
    assert_eq!(status, 200);
    assert_eq!(body, "jbeda-via-intermediate app3 certs=2 peer=true");

    for cert in [Some(&pki.other_ca_client), Some(&pki.expired), None] {
        let mut stream = connect(&client(cert), addr).await;
        let (status, body) = get(&mut stream, "").await;
        assert_eq!(status, 401);
        assert!(body.contains("\"reason\":\"Unauthorized\""), "{body}");
    }
}

#[tokio::test]
async fn a_silent_client_does_not_block_others() {
    let pki = TestPki::shared();
    let addr = start(authenticator()).await;
    // Connect without ever sending a ClientHello.
    let _silent = TcpStream::connect(addr).await.unwrap();
    // Well inside the server's handshake timeout (60 s): a server that handshakes in its accept
    // loop would still be waiting for the silent client here.
    let (status, _) = tokio::time::timeout(Duration::from_secs(30), async {
        let mut stream = connect(&client(Some(&pki.jbeda)), addr).await;
        get(&mut stream, "").await
    })
    .await
    .expect("the second client was held up by the silent one");
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_client_without_a_request_after_the_handshake_is_closed() {
    let pki = TestPki::shared();
    let addr = start_with(authenticator(), Duration::from_secs(1)).await;
    // For both protocols the auto builder can choose between: it waits for the first bytes.
    for alpn in [&b"h2"[..], b"http/1.1"] {
        let mut connector = client(Some(&pki.jbeda));
        let mut config = (*connector.config().clone()).clone();
        config.alpn_protocols = vec![alpn.to_vec()];
        connector = TlsConnector::from(Arc::new(config));
        let mut silent = connect(&connector, addr).await;
        let started = std::time::Instant::now();
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(10), silent.read(&mut byte))
            .await
            .expect("the silent connection was not closed");
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
        // Not before the timeout (a timer never fires early, however slow the machine).
        assert!(started.elapsed() >= Duration::from_millis(950));
    }
    // Part of a request, then silence: the first byte of the HTTP/2 preface (the auto builder
    // waits for the rest to choose the protocol), part of an HTTP/1.1 request head.
    // And a whole HTTP/2 preface with settings but no request (hyper's HTTP/2 keep-alive
    // pings would keep it forever).
    let preface_and_settings =
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";
    for partial in [
        &b"P"[..],
        b"PRI * HTTP/2.0\r\n",
        b"GET / HTT",
        preface_and_settings,
    ] {
        let mut stream = connect(&client(Some(&pki.jbeda)), addr).await;
        stream.write_all(partial).await.unwrap();
        stream.flush().await.unwrap();
        // Read (the server may send its HTTP/2 settings) until the connection ends.
        let closed = tokio::time::timeout(Duration::from_secs(10), async {
            let mut chunk = [0u8; 512];
            loop {
                match stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await;
        assert!(closed.is_ok(), "{partial:?}: the connection was not closed");
    }
    // A client that talks in time is served, and keeps its connection between requests sent
    // within the timeout, for longer than the timeout in all (a watchdog that closed every
    // connection at the timeout would cut it).
    let mut stream = connect(&client(Some(&pki.jbeda)), addr).await;
    for _ in 0..8 {
        let (status, body) = get(&mut stream, "").await;
        assert_eq!(status, 200, "{body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Short connections leave no task behind: each connection's watchdog ends with it, not at the
/// header read timeout (30 s here).
#[tokio::test]
async fn watchdogs_end_with_their_connections() {
    let pki = TestPki::shared();
    let addr = start(authenticator()).await;
    let alive = || {
        tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks()
    };
    // One connection first: the accept loop and anything it starts once are running.
    let mut stream = connect(&client(Some(&pki.jbeda)), addr).await;
    get(&mut stream, "Connection: close\r\n").await;
    drop(stream);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = alive();
    for _ in 0..20 {
        let mut stream = connect(&client(Some(&pki.jbeda)), addr).await;
        let (status, _) = get(&mut stream, "Connection: close\r\n").await;
        assert_eq!(status, 200);
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while alive() > before && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        alive() <= before,
        "{} tasks alive, {before} before",
        alive()
    );
}

/// The watchdog only waits for the protocol to be known: a handler slower than the header read
/// timeout, with nothing written meanwhile, is not cut.
#[tokio::test]
async fn a_slow_answer_is_not_cut_by_the_watchdog() {
    let pki = TestPki::shared();
    let auth = authenticator();
    let tls = server_config(&auth);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let svc = service_fn(|_req: Request<Incoming>| async {
        tokio::time::sleep(Duration::from_millis(900)).await;
        Ok::<_, Infallible>(Response::new("late".to_owned()))
    });
    tokio::spawn(
        serve(listener, Arc::new(tls), svc)
            .header_read_timeout(Duration::from_millis(300))
            .into_future(),
    );
    let mut stream = connect(&client(Some(&pki.jbeda)), addr).await;
    let (status, body) = get(&mut stream, "").await;
    assert_eq!((status, body.as_str()), (200, "late"));
}

/// A client certificate resolver that records the CA names the server advertised.
#[derive(Debug, Default)]
struct RecordHints(std::sync::Mutex<Vec<Vec<Vec<u8>>>>);

impl rustls::client::ResolvesClientCert for RecordHints {
    fn resolve(
        &self,
        root_hint_subjects: &[&[u8]],
        _sigschemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        let hints = root_hint_subjects.iter().map(|h| h.to_vec()).collect();
        self.0.lock().unwrap().push(hints);
        None
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// The CA names a fresh connection is offered.
async fn advertised(pki: &TestPki, addr: SocketAddr) -> Vec<Vec<u8>> {
    let mut roots = RootCertStore::empty();
    roots.add(pki.root_ca.cert_der()).unwrap();
    let record = Arc::new(RecordHints::default());
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_cert_resolver(record.clone());
    config.resumption = rustls::client::Resumption::disabled();
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let _ = TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .unwrap();
    record
        .0
        .lock()
        .unwrap()
        .pop()
        .expect("the server requested a certificate")
}

fn subject_of(issued: &Issued) -> Vec<u8> {
    let pool = crate::CaPool::from_pem("ca.crt", issued.cert_pem().as_bytes()).unwrap();
    pool.subjects()[0].as_ref().to_vec()
}

#[tokio::test]
async fn advertised_ca_names_follow_a_reloaded_bundle() {
    let pki = TestPki::shared();
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.crt");
    std::fs::write(&ca_file, pki.client_ca.cert_pem()).unwrap();
    let options = kube_authn_core::reload::ReloadOptions::default()
        .debounce(Duration::from_millis(10))
        .poll_interval(Duration::from_millis(50));
    let bundle = CaBundle::watch(&ca_file, options).unwrap();
    let serving = ServingCert::from_pem(
        pki.serving.chain_pem().as_bytes(),
        pki.serving.key_pem().as_bytes(),
    )
    .unwrap();
    let tls = TlsConfigBuilder::new(serving)
        .advertise_client_ca(&bundle)
        .build_reloading()
        .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let svc = service_fn(|_req: Request<Incoming>| async {
        Ok::<_, Infallible>(Response::new(String::new()))
    });
    tokio::spawn(serve(listener, tls, svc).into_future());

    assert_eq!(
        advertised(pki, addr).await,
        vec![subject_of(&pki.client_ca)]
    );

    let tmp = dir.path().join("ca.tmp");
    std::fs::write(&tmp, pki.other_ca.cert_pem()).unwrap();
    std::fs::rename(&tmp, &ca_file).unwrap();
    let start = std::time::Instant::now();
    loop {
        if advertised(pki, addr).await == vec![subject_of(&pki.other_ca)] {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the new CA name was never advertised"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Presents `chain` with `key`, whether or not they belong together (rustls' own
/// `with_client_auth_cert` refuses a mismatched pair and version 1 certificates).
#[derive(Debug)]
struct Present(Arc<rustls::sign::CertifiedKey>);

impl rustls::client::ResolvesClientCert for Present {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(Arc::clone(&self.0))
    }

    fn has_certs(&self) -> bool {
        true
    }
}

fn presenting(
    chain: Vec<rustls::pki_types::CertificateDer<'static>>,
    key: &Issued,
    version: &'static rustls::SupportedProtocolVersion,
) -> TlsConnector {
    let pki = TestPki::shared();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let signer = provider
        .key_provider
        .load_private_key(key.key_der())
        .unwrap();
    let certified = rustls::sign::CertifiedKey::new(chain, signer);
    let mut roots = RootCertStore::empty();
    roots.add(pki.root_ca.cert_der()).unwrap();
    let config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[version])
        .unwrap()
        .with_root_certificates(roots)
        .with_client_cert_resolver(Arc::new(Present(Arc::new(certified))));
    TlsConnector::from(Arc::new(config))
}

/// The response to one request, or `None` when the handshake or the connection failed.
async fn try_get(connector: &TlsConnector, addr: SocketAddr) -> Option<(u16, String)> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let mut stream = connector.connect(name, tcp).await.ok()?;
    // With TLS 1.3 the client finishes its side of the handshake before the server has read
    // the client's certificate proof: a refusal arrives as an alert on the first read.
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .ok()?;
    let mut buf = Vec::new();
    stream.read_to_end(&mut buf).await.ok()?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text.get(9..12)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n")?.1.to_owned();
    Some((status, body))
}

const VERSIONS: [&rustls::SupportedProtocolVersion; 2] =
    [&rustls::version::TLS12, &rustls::version::TLS13];

#[tokio::test]
async fn the_client_must_prove_it_holds_the_certificate_key() {
    let pki = TestPki::shared();
    let auth = authenticator();
    let addr = start(auth.clone()).await;
    for version in VERSIONS {
        for cert in [&pki.jbeda, &pki.jbeda_openssl] {
            // With its own key: authenticated.
            let own = presenting(cert.chain(), cert, version);
            let got = try_get(&own, addr).await;
            assert_eq!(
                got,
                Some((200, "jbeda app1,app2 certs=1 peer=true".to_owned())),
                "{version:?} {}",
                cert.name
            );
            // The same certificate signed for with another key (of the same type): the
            // handshake fails, nothing reaches the service.
            let stolen = presenting(cert.chain(), &pki.client_cn, version);
            let got = try_get(&stolen, addr).await;
            assert_eq!(got, None, "{version:?} {}", cert.name);
        }
    }
    // Only the connections that proved their key were verified: two per protocol version.
    assert_eq!(auth.verifications(), 4);
}

#[tokio::test]
async fn a_version_1_certificate_of_another_ca_is_refused_after_the_handshake() {
    let pki = TestPki::shared();
    let addr = start(authenticator()).await;
    let year = |y: u64| std::time::UNIX_EPOCH + Duration::from_secs((y - 1970) * 31_556_952);
    let other = pki
        .issue_client_v1_by(
            &pki.other_ca,
            "v1-other",
            "v1-other",
            &[],
            year(2020),
            year(2120),
        )
        .unwrap();
    for version in VERSIONS {
        let connector = presenting(other.chain(), &other, version);
        let (status, body) = try_get(&connector, addr).await.expect("handshake");
        assert_eq!(status, 401, "{version:?}");
        assert!(body.contains("\"reason\":\"Unauthorized\""), "{body}");
    }
}

#[tokio::test]
async fn the_acceptor_in_a_hand_written_accept_loop() {
    use hyper_util::rt::TokioExecutor;
    use hyper_util::server::conn::auto;
    use hyper_util::service::TowerToHyperService;

    let pki = TestPki::shared();
    let auth = authenticator();
    let tls = server_config(&auth);
    let acceptor = Acceptor::new(Arc::new(tls)).handshake_timeout(Duration::from_millis(300));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = ServiceBuilder::new()
        .layer(AuthnLayer::new(auth.clone()))
        .service(service_fn(whoami));
    // What each accept returned: the length of the client's chain, or the error kind.
    let accepted = Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = Arc::clone(&accepted);
    tokio::spawn(async move {
        loop {
            let (tcp, peer) = listener.accept().await.unwrap();
            let (acceptor, app, log) = (acceptor.clone(), app.clone(), Arc::clone(&log));
            tokio::spawn(async move {
                let accepted = match acceptor.accept(tcp, peer).await {
                    Ok(accepted) => accepted,
                    Err(e) => return log.lock().unwrap().push(Err(e.kind())),
                };
                assert_eq!(accepted.peer_addr(), peer);
                let certs = accepted.peer_certificates().map_or(0, |p| p.chain().len());
                log.lock().unwrap().push(Ok(certs));
                let (io, service) = accepted.serve(app);
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection_with_upgrades(io, TowerToHyperService::new(service))
                    .await;
            });
        }
    });

    let connector = client(Some(&pki.via_intermediate));
    for kind in [HandshakeKind::Full, HandshakeKind::Resumed] {
        let mut stream = connect(&connector, addr).await;
        assert_eq!(stream.get_ref().1.handshake_kind(), Some(kind));
        let (status, body) = get(&mut stream, "").await;
        assert_eq!(status, 200, "{kind:?}");
        assert_eq!(body, "jbeda-via-intermediate app3 certs=2 peer=true");
    }
    let mut anonymous = connect(&client(None), addr).await;
    assert_eq!(get(&mut anonymous, "").await.0, 401);

    // A client that never sends a ClientHello: the acceptor gives up after its timeout.
    let _silent = TcpStream::connect(addr).await.unwrap();
    let start = std::time::Instant::now();
    while accepted.lock().unwrap().len() < 4 && start.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let log = accepted.lock().unwrap().clone();
    assert_eq!(
        log,
        vec![Ok(2), Ok(2), Ok(0), Err(std::io::ErrorKind::TimedOut)]
    );
    assert_eq!(auth.verifications(), 2, "one verification per connection");
}

/// An HTTP/2 client connection (hyper's) to `addr`, with `cert` as client certificate: its
/// sender and the task driving it.
async fn h2_connect<B>(
    addr: SocketAddr,
    cert: Option<&Issued>,
) -> (
    hyper::client::conn::http2::SendRequest<B>,
    tokio::task::JoinHandle<Result<(), hyper::Error>>,
)
where
    B: http_body::Body + Unpin + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let mut config = (*client(cert).config().clone()).clone();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let stream = connect(&TlsConnector::from(Arc::new(config)), addr).await;
    let (sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    (sender, tokio::spawn(conn))
}

/// A server of `whoami` that authenticates client certificates and lets anonymous users reach
/// `/anonymous` only (401 elsewhere without a certificate), with the HTTP/2 mitigation on or off.
async fn start_anonymous_on_one_path(close_unauthenticated_http2: bool) -> SocketAddr {
    use kube_authn_core::{Anonymous, WithAnonymous};

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let auth = WithAnonymous::new(authenticator(), Anonymous::with_paths(["/anonymous"]));
    let svc = ServiceBuilder::new()
        .layer(AuthnLayer::new(auth))
        .service(service_fn(whoami));
    let tls = server_config(&authenticator());
    tokio::spawn(
        serve(listener, Arc::new(tls), svc)
            .close_unauthenticated_http2(close_unauthenticated_http2)
            .into_future(),
    );
    addr
}

/// Kubernetes' HTTP/2 mitigation (`UnauthenticatedHTTP2DOSMitigation`): an HTTP/2 connection
/// whose request is answered 401, or served as an anonymous user, ends once the response is
/// sent (GOAWAY); an authenticated user keeps the connection; HTTP/1.1 is left alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_http2_connections_are_closed() {
    use http_body_util::Empty;
    use hyper::body::Bytes;
    use hyper::client::conn::http2::SendRequest;

    let pki = TestPki::shared();
    let addr = start_anonymous_on_one_path(true).await;

    let h2 = |cert: Option<&'static Issued>| h2_connect(addr, cert);
    let status = |sender: &mut SendRequest<Empty<Bytes>>, path: &str| {
        let request = Request::get(format!("https://localhost{path}"))
            .body(Empty::new())
            .unwrap();
        let response = sender.send_request(request);
        async move { response.await.map(|r| r.status().as_u16()) }
    };
    // Whether the connection ended (bounded: a live connection would hold this for 30 s).
    let ended = |conn: tokio::task::JoinHandle<Result<(), hyper::Error>>| async move {
        tokio::time::timeout(Duration::from_secs(30), conn)
            .await
            .is_ok()
    };

    // An authenticated user: requests after requests on one connection.
    let (mut sender, conn) = h2(Some(&pki.jbeda)).await;
    for _ in 0..3 {
        assert_eq!(status(&mut sender, "/").await.unwrap(), 200);
    }
    assert!(!conn.is_finished());

    // 401: the response arrives, then the connection ends and takes no more requests.
    let (mut sender, conn) = h2(None).await;
    assert_eq!(status(&mut sender, "/").await.unwrap(), 401);
    assert!(ended(conn).await, "the connection of a 401 stayed open");
    assert!(status(&mut sender, "/").await.is_err());

    // Anonymous: served, then the same.
    let (mut sender, conn) = h2(None).await;
    assert_eq!(status(&mut sender, "/anonymous").await.unwrap(), 200);
    assert!(
        ended(conn).await,
        "the connection of an anonymous user stayed open"
    );

    // HTTP/1.1 keeps its connection after a 401, as in Kubernetes.
    let mut stream = connect(&client(None), addr).await;
    for _ in 0..2 {
        let (status, _) = get(&mut stream, "").await;
        assert_eq!(status, 401);
    }
}

/// HTTP/2 frame types of the raw client.
const H2_DATA: u8 = 0x0;
const H2_HEADERS: u8 = 0x1;
const H2_RST_STREAM: u8 = 0x3;
const H2_SETTINGS: u8 = 0x4;
const H2_PING: u8 = 0x6;
const H2_GOAWAY: u8 = 0x7;
const H2_WINDOW_UPDATE: u8 = 0x8;

/// One HTTP/2 frame.
fn h2_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len();
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// A GET of `path` on `stream` (HPACK: static entries 2 and 7, `:path` as a literal with the
/// indexed name 4), END_STREAM | END_HEADERS.
fn h2_get(stream: u32, path: &str) -> Vec<u8> {
    let mut block = vec![0x82, 0x87, 0x04, path.len() as u8];
    block.extend_from_slice(path.as_bytes());
    h2_frame(H2_HEADERS, 0x5, stream, &block)
}

/// An HTTP/2 client of raw frames over TLS, without a client certificate: it answers SETTINGS
/// (the caller decides about PINGs and WINDOW_UPDATEs).
struct RawH2 {
    stream: TlsStream<TcpStream>,
    buf: Vec<u8>,
}

/// A frame received: type, flags, stream and payload.
struct H2Frame {
    kind: u8,
    flags: u8,
    id: u32,
    payload: Vec<u8>,
}

impl RawH2 {
    /// Connects with ALPN h2 and sends the preface and empty SETTINGS.
    async fn connect(addr: SocketAddr) -> Self {
        Self::connect_with_settings(addr, &[]).await
    }

    /// Connects with ALPN h2 and sends the preface and SETTINGS holding `settings`.
    async fn connect_with_settings(addr: SocketAddr, settings: &[u8]) -> Self {
        let mut config = (*client(None).config().clone()).clone();
        config.alpn_protocols = vec![b"h2".to_vec()];
        let mut stream = connect(&TlsConnector::from(Arc::new(config)), addr).await;
        let mut hello = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        hello.extend(h2_frame(H2_SETTINGS, 0, 0, settings));
        stream.write_all(&hello).await.unwrap();
        Self {
            stream,
            buf: Vec::new(),
        }
    }

    async fn send(&mut self, bytes: &[u8]) {
        // The server may have closed: what follows says so.
        self.stream.write_all(bytes).await.ok();
    }

    /// The next frame (SETTINGS acknowledged on the way), or `None` once the connection has
    /// ended.
    async fn next(&mut self) -> Option<H2Frame> {
        loop {
            if self.buf.len() >= 9 {
                let b = &self.buf;
                let len = usize::from(b[0]) << 16 | usize::from(b[1]) << 8 | usize::from(b[2]);
                if b.len() >= 9 + len {
                    let frame = H2Frame {
                        kind: b[3],
                        flags: b[4],
                        id: u32::from_be_bytes([b[5], b[6], b[7], b[8]]) & 0x7fff_ffff,
                        payload: b[9..9 + len].to_vec(),
                    };
                    self.buf.drain(..9 + len);
                    if frame.kind == H2_SETTINGS && frame.flags & 1 == 0 {
                        self.send(&h2_frame(H2_SETTINGS, 1, 0, &[])).await;
                    }
                    return Some(frame);
                }
            }
            let mut chunk = [0u8; 16384];
            match self.stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }
}

/// A client that never answers the PING of hyper's GOAWAY (which would otherwise keep taking
/// new streams until it does) gets no more answers after its 401: later requests are reset
/// with REFUSED_STREAM (not processed: clients retry them elsewhere), and the connection ends
/// about a second after that answer (Go: streams past the GOAWAY are ignored, the connection
/// closed 1 s after the last one).
#[tokio::test]
async fn an_http2_client_ignoring_the_goaway_ping_is_cut_off() {
    const REFUSED_STREAM: u32 = 0x7;
    let addr = start(authenticator()).await;
    let mut h2 = RawH2::connect(addr).await;
    h2.send(&h2_get(1, "/")).await;
    let (mut answered_1, mut goaway, mut ping) = (false, false, false);
    let started = tokio::time::timeout(Duration::from_secs(30), async {
        while !(answered_1 && goaway && ping) {
            let f = h2.next().await.expect("closed early");
            match (f.kind, f.flags & 1, f.id) {
                (H2_HEADERS, _, 1) => answered_1 = true,
                (H2_GOAWAY, _, 0) => goaway = true,
                (H2_PING, 0, 0) => ping = true, // never acknowledged
                _ => {}
            }
        }
    })
    .await;
    assert!(started.is_ok(), "no answer, GOAWAY and PING for the 401");

    // New requests now: none is answered, each is refused, and the connection ends (1 s
    // after the answer: well before the 30 s hard cap, which must not be what ends it).
    let mut next = 3;
    let mut refused = 0;
    let ended = tokio::time::timeout(Duration::from_secs(8), async {
        loop {
            h2.send(&h2_get(next, "/")).await;
            next += 2;
            let read = tokio::time::timeout(Duration::from_millis(200), h2.next()).await;
            match read {
                Ok(None) => return,
                Ok(Some(f)) if f.kind == H2_HEADERS => {
                    panic!("stream {} answered after the 401", f.id)
                }
                Ok(Some(f)) if f.kind == H2_RST_STREAM => {
                    let code = u32::from_be_bytes(f.payload[..4].try_into().unwrap());
                    assert_eq!(code, REFUSED_STREAM, "stream {}", f.id);
                    refused += 1;
                }
                Ok(Some(_)) | Err(_) => {}
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the connection stayed open");
    assert!(refused >= 1, "no request was refused");
}

/// The second after which a closing connection ends counts from the last byte written, not
/// from the hand-over of the last response: a client reading a large anonymous answer slowly
/// (a window of 64 KiB every 300 ms for 1 MiB, ~5 s) gets all of it.
#[tokio::test]
async fn a_slow_reader_of_an_anonymous_http2_answer_gets_all_of_it() {
    use kube_authn_core::{Anonymous, WithAnonymous};
    const SIZE: usize = 1 << 20;
    let tls = server_config(&authenticator());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let auth = WithAnonymous::new(authenticator(), Anonymous::new());
    let svc = ServiceBuilder::new()
        .layer(AuthnLayer::new(auth))
        .service(service_fn(|_: Request<Incoming>| async {
            Ok::<_, Infallible>(Response::new(http_body_util::Full::new(
                hyper::body::Bytes::from(vec![b'x'; SIZE]),
            )))
        }));
    tokio::spawn(serve(listener, Arc::new(tls), svc).into_future());

    let mut h2 = RawH2::connect(addr).await;
    h2.send(&h2_get(1, "/big")).await;
    let mut received = 0;
    let done = tokio::time::timeout(Duration::from_secs(60), async {
        let mut window = tokio::time::interval(Duration::from_millis(300));
        loop {
            tokio::select! {
                frame = h2.next() => {
                    let f = frame.expect("the connection ended before the answer did");
                    if f.kind == H2_DATA && f.id == 1 {
                        received += f.payload.len();
                        if f.flags & 1 == 1 {
                            return;
                        }
                    }
                }
                _ = window.tick() => {
                    let increment = 65_535u32.to_be_bytes();
                    h2.send(&h2_frame(H2_WINDOW_UPDATE, 0, 0, &increment)).await;
                    h2.send(&h2_frame(H2_WINDOW_UPDATE, 0, 1, &increment)).await;
                }
            }
        }
    })
    .await;
    assert!(done.is_ok(), "the answer did not end");
    assert_eq!(received, SIZE);
}

/// PINGs (each answered: a write) do not keep a closing connection for ever: the writes
/// extend its last second at most 10 s after its last answer. On the multi-thread runtime,
/// where the connection and its streams run on different workers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pings_do_not_keep_a_closing_http2_connection() {
    let addr = start(authenticator()).await;
    let mut h2 = RawH2::connect(addr).await;
    h2.send(&h2_get(1, "/")).await;
    // 10 s and a margin, below the 30 s hard cap; without the bound, hyper's own timers end
    // it after ~50 s.
    let ended = tokio::time::timeout(Duration::from_secs(22), async {
        let mut ping = tokio::time::interval(Duration::from_millis(300));
        loop {
            tokio::select! {
                frame = h2.next() => if frame.is_none() { return },
                _ = ping.tick() => h2.send(&h2_frame(H2_PING, 0, 0, &[7; 8])).await,
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the connection stayed open");
}

/// An unauthenticated CONNECT (whose tunnel, when there is one, is not counted as under way)
/// closes its connection all the same.
#[tokio::test]
async fn an_unauthenticated_http2_connect_closes_the_connection() {
    let addr = start(authenticator()).await;
    let mut h2 = RawH2::connect(addr).await;
    // :method CONNECT, :authority x:443 (literals with the indexed names 2 and 1), END_HEADERS.
    let mut block = vec![0x02, 7];
    block.extend_from_slice(b"CONNECT");
    block.extend_from_slice(&[0x01, 5]);
    block.extend_from_slice(b"x:443");
    h2.send(&h2_frame(H2_HEADERS, 0x4, 1, &block)).await;
    let (mut answered, mut goaway) = (false, false);
    let ended = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(f) = h2.next().await {
            match (f.kind, f.id) {
                (H2_HEADERS, 1) => answered = true,
                (H2_GOAWAY, 0) => goaway = true,
                _ => {}
            }
        }
    })
    .await;
    assert!(answered && goaway, "answered {answered}, GOAWAY {goaway}");
    assert!(ended.is_ok(), "the connection stayed open");
}

/// A client that grants no flow-control window (its 401 body can never be sent) and answers
/// every PING still loses the connection: at most 30 s after the mark.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_granting_no_window_loses_a_closing_connection() {
    let addr = start(authenticator()).await;
    // SETTINGS_INITIAL_WINDOW_SIZE (0x4) = 0.
    let mut h2 = RawH2::connect_with_settings(addr, &[0, 4, 0, 0, 0, 0]).await;
    h2.send(&h2_get(1, "/")).await;
    let ended = tokio::time::timeout(Duration::from_secs(90), async {
        while let Some(f) = h2.next().await {
            if f.kind == H2_PING && f.flags & 1 == 0 {
                h2.send(&h2_frame(H2_PING, 1, 0, &f.payload)).await;
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the connection stayed open");
}

/// `n` chunks of `tick\n`, one every `every`.
struct Ticks {
    left: u32,
    every: tokio::time::Interval,
}

impl http_body::Body for Ticks {
    type Data = hyper::body::Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Infallible>>> {
        if self.left == 0 {
            return std::task::Poll::Ready(None);
        }
        std::task::ready!(self.every.poll_tick(cx));
        self.left -= 1;
        let tick = hyper::body::Bytes::from_static(b"tick\n");
        std::task::Poll::Ready(Some(Ok(http_body::Frame::data(tick))))
    }
}

/// Authenticates the bearer token `good` as `alice`; any other token is an error.
struct GoodToken;

impl kube_authn_core::AuthenticateToken for GoodToken {
    fn authenticate_token(
        &self,
        token: &str,
        _: &kube_authn_core::Audiences,
    ) -> kube_authn_core::AuthnFuture<kube_authn_core::AuthnResult> {
        kube_authn_core::AuthnFuture::ready(if token == "good" {
            Ok(Some(kube_authn_core::Authenticated::new(UserInfo {
                username: "alice".into(),
                ..UserInfo::default()
            })))
        } else {
            Err(kube_authn_core::AuthnError::invalid("unknown token"))
        })
    }
}

/// The hard cap of a closing connection is for its marked answers only: an authenticated
/// stream under way on the connection when another request got its 401 runs to its end past
/// the cap (as in Go, which lets the streams before its GOAWAY finish), and the connection
/// ends after it. The cap is 1 s here (30 s in use); the stream lasts about 3 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_authenticated_stream_outlives_the_hard_cap() {
    use http_body_util::{BodyExt, Empty};

    const TICKS: u32 = 12;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let svc = ServiceBuilder::new()
        .layer(AuthnLayer::new(kube_authn_core::BearerToken::new(
            GoodToken,
        )))
        .service(service_fn(|req: Request<Incoming>| async move {
            let left = if req.uri().path() == "/stream" {
                TICKS
            } else {
                0
            };
            let every = tokio::time::interval(Duration::from_millis(250));
            Ok::<_, Infallible>(Response::new(Ticks { left, every }))
        }));
    let tls = server_config(&authenticator());
    tokio::spawn(
        serve(listener, Arc::new(tls), svc)
            .goaway_hard_cap(Duration::from_secs(1))
            .into_future(),
    );

    let (mut sender, conn) = h2_connect(addr, None).await;
    let request = |path: &str, token: &str| {
        Request::get(format!("https://localhost{path}"))
            .header("authorization", format!("Bearer {token}"))
            .body(Empty::<hyper::body::Bytes>::new())
            .unwrap()
    };

    let streaming = sender
        .send_request(request("/stream", "good"))
        .await
        .unwrap();
    assert_eq!(streaming.status(), 200);
    let rejected = sender.send_request(request("/", "bad")).await.unwrap();
    assert_eq!(rejected.status(), 401);
    rejected.into_body().collect().await.unwrap();

    // All of the stream, well past the cap (the 401 marked the connection about 3 s before
    // its last tick).
    let body = streaming.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "tick\n".repeat(TICKS as usize).as_bytes());
    // Then the connection ends (GOAWAY after its quiet second).
    let ended = tokio::time::timeout(Duration::from_secs(30), conn).await;
    assert!(ended.is_ok(), "the connection stayed open");
}

/// With the mitigation off (`--feature-gates=UnauthenticatedHTTP2DOSMitigation=false`), an
/// HTTP/2 connection keeps serving after a 401 and after an anonymous answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http2_mitigation_can_be_turned_off() {
    use http_body_util::Empty;

    let addr = start_anonymous_on_one_path(false).await;
    let (mut sender, conn) = h2_connect(addr, None).await;
    for (path, expected) in [("/", 401), ("/anonymous", 200), ("/", 401)] {
        let request = Request::get(format!("https://localhost{path}"))
            .body(Empty::<hyper::body::Bytes>::new())
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        assert_eq!(response.status(), expected, "{path}");
        // Past the quiet second after which a marked connection gets its GOAWAY.
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
    assert!(!conn.is_finished(), "the connection ended");
}

/// A client that keeps sending on a connection whose request got a 401 is not served again:
/// the GOAWAY comes with the marked answer, as from Go, and the streams opened after it are
/// refused (REFUSED_STREAM), so an unauthenticated client that keeps sending gets one answer
/// per connection (an adversarial probe kept one connection for ~1,000 anonymous answers over
/// 10 s when the GOAWAY waited for a quiet second).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_after_a_marked_answer_are_refused() {
    const REFUSED_STREAM: u32 = 0x7;
    let addr = start(authenticator()).await;
    let mut h2 = RawH2::connect(addr).await;
    h2.send(&h2_get(1, "/")).await;
    // Requests sent as soon as the answer is in (not waiting for anything else).
    let mut goaway = false;
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let f = h2.next().await.expect("closed early");
            match (f.kind, f.id) {
                (H2_HEADERS, 1) => return,
                (H2_GOAWAY, 0) => goaway = true,
                _ => {}
            }
        }
    })
    .await
    .expect("no answer to the 401");
    let mut refused = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), async {
        for id in [3, 5, 7] {
            h2.send(&h2_get(id, "/")).await;
            loop {
                let f = h2.next().await.expect("closed early");
                match (f.kind, f.id) {
                    (H2_GOAWAY, 0) => goaway = true,
                    (H2_HEADERS, got) if got > 1 => panic!("stream {got} was answered"),
                    (H2_RST_STREAM, got) if got == id => {
                        refused.push(u32::from_be_bytes(f.payload[..4].try_into().unwrap()));
                        break;
                    }
                    _ => {}
                }
            }
        }
    })
    .await
    .expect("the requests were neither answered nor refused");
    assert_eq!(refused, [REFUSED_STREAM; 3]);
    assert!(goaway, "no GOAWAY before the refusals");
}
