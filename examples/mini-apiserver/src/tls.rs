//! Serving TLS: the certificates (loaded or generated) and the accept loop.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

/// How long a client may take to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client may take to send a request head (HTTP/1.1).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// The serving certificate files, and the CA to trust when they were generated.
pub(crate) struct ServingCert {
    pub(crate) cert_file: PathBuf,
    pub(crate) key_file: PathBuf,
    pub(crate) ca_file: Option<PathBuf>,
}

pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Uses the given files, or generates (once) a CA and a serving certificate for
/// 127.0.0.1/localhost into `cert_dir`, as kube-apiserver does for `--cert-dir`.
pub(crate) fn serving_cert(
    cert: Option<&Path>,
    key: Option<&Path>,
    cert_dir: &Path,
) -> Result<ServingCert, BoxError> {
    match (cert, key) {
        (Some(c), Some(k)) => Ok(ServingCert {
            cert_file: c.to_owned(),
            key_file: k.to_owned(),
            ca_file: None,
        }),
        (Some(_), None) | (None, Some(_)) => {
            Err("--tls-cert-file and --tls-private-key-file must be given together".into())
        }
        (None, None) => generate(cert_dir),
    }
}

fn generate(dir: &Path) -> Result<ServingCert, BoxError> {
    let ca_file = dir.join("ca.crt");
    let cert_file = dir.join("apiserver.crt");
    let key_file = dir.join("apiserver.key");
    if ca_file.exists() && cert_file.exists() && key_file.exists() {
        return Ok(ServingCert {
            cert_file,
            key_file,
            ca_file: Some(ca_file),
        });
    }
    std::fs::create_dir_all(dir)
        .map_err(|e| format!("unable to create --cert-dir {}: {e}", dir.display()))?;

    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "mini-apiserver-ca");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    let ca_key = rcgen::KeyPair::generate()?;
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = rcgen::Issuer::new(ca_params, ca_key);

    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()])?;
    params
        .subject_alt_names
        .push(rcgen::SanType::IpAddress("127.0.0.1".parse()?));
    params
        .subject_alt_names
        .push(rcgen::SanType::IpAddress("::1".parse()?));
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "localhost");
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::DigitalSignature,
        rcgen::KeyUsagePurpose::KeyEncipherment,
    ];
    let key = rcgen::KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer)?;

    write_private(&key_file, key.serialize_pem().as_bytes())?;
    std::fs::write(&cert_file, format!("{}{}", cert.pem(), ca_cert.pem()))?;
    std::fs::write(&ca_file, ca_cert.pem())?;
    Ok(ServingCert {
        cert_file,
        key_file,
        ca_file: Some(ca_file),
    })
}

pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)?;
        f.write_all(bytes)
    }
    #[cfg(not(unix))]
    std::fs::write(path, bytes)
}

/// A rustls server configuration (aws-lc-rs, TLS 1.2+, ALPN h2 and http/1.1).
pub(crate) fn server_config(cert: &ServingCert) -> Result<Arc<ServerConfig>, BoxError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert.cert_file)
        .map_err(|e| {
            format!(
                "unable to read --tls-cert-file {}: {e}",
                cert.cert_file.display()
            )
        })?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("invalid certificate in {}: {e}", cert.cert_file.display()))?;
    if certs.is_empty() {
        return Err(format!("no certificate in {}", cert.cert_file.display()).into());
    }
    let key = PrivateKeyDer::from_pem_file(&cert.key_file).map_err(|e| {
        format!(
            "unable to read --tls-private-key-file {}: {e}",
            cert.key_file.display()
        )
    })?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("serving certificate and key do not match: {e}"))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Accepts connections forever: one task per connection, the handshake bounded by a timeout,
/// so a silent client never blocks the others.
pub(crate) async fn serve(
    listener: TcpListener,
    tls: Arc<ServerConfig>,
    app: Router,
) -> io::Result<()> {
    let acceptor = TlsAcceptor::from(tls);
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(conn) => conn,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let acceptor = acceptor.clone();
        let app = app.clone();
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            let service =
                hyper::service::service_fn(move |mut req: http::Request<hyper::body::Incoming>| {
                    req.extensions_mut().insert(Peer(peer));
                    app.clone().oneshot(req)
                });
            let mut builder = auto::Builder::new(TokioExecutor::new());
            builder
                .http1()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT);
            builder
                .http2()
                .timer(hyper_util::rt::TokioTimer::new())
                .keep_alive_interval(Some(Duration::from_secs(30)));
            if let Err(e) = builder
                .serve_connection_with_upgrades(TokioIo::new(tls), service)
                .await
            {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
}

/// The client's address, in every request's extensions.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Peer(#[allow(dead_code)] pub(crate) SocketAddr);
