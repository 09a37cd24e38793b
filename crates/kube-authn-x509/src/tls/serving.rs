//! The serving certificate (`--tls-cert-file`, `--tls-private-key-file`) with hot reload, and
//! the rustls `ServerConfig` builder.

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use arc_swap::ArcSwap;
use kube_authn_core::reload::{LoadError, Parse, ReloadOptions, ReloadStatus, Reloading};
use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::pool::CaBundle;
use crate::tls::RequestClientCert;

/// Why a serving certificate and key were refused. Messages name the files.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServingCertError {
    /// A file could not be read.
    #[error("unable to read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The certificate file holds no usable `CERTIFICATE` block.
    #[error("{}: no certificate found: {source}", path.display())]
    Certificate {
        /// The file.
        path: PathBuf,
        /// What the PEM reader said.
        #[source]
        source: rustls_pki_types::pem::Error,
    },
    /// The key file holds no usable private key.
    #[error("{}: no private key found: {source}", path.display())]
    KeyPem {
        /// The file.
        path: PathBuf,
        /// What the PEM reader said.
        #[source]
        source: rustls_pki_types::pem::Error,
    },
    /// The private key is not supported by the crypto provider, or does not match the
    /// certificate.
    #[error("{} and {}: {source}", cert.display(), key.display())]
    Key {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// What rustls said.
        #[source]
        source: rustls::Error,
    },
}

fn certified_key(
    provider: &CryptoProvider,
    cert_path: &Path,
    cert_pem: &[u8],
    key_path: &Path,
    key_pem: &[u8],
) -> Result<CertifiedKey, ServingCertError> {
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .and_then(|c| {
            if c.is_empty() {
                Err(rustls_pki_types::pem::Error::NoItemsFound)
            } else {
                Ok(c)
            }
        })
        .map_err(|source| ServingCertError::Certificate {
            path: cert_path.to_owned(),
            source,
        })?;
    let key =
        PrivateKeyDer::from_pem_slice(key_pem).map_err(|source| ServingCertError::KeyPem {
            path: key_path.to_owned(),
            source,
        })?;
    CertifiedKey::from_der(chain, key, provider).map_err(|source| ServingCertError::Key {
        cert: cert_path.to_owned(),
        key: key_path.to_owned(),
        source,
    })
}

/// A file's bytes, wiped when dropped: the key file is a secret.
fn read(path: &Path) -> Result<zeroize::Zeroizing<Vec<u8>>, ServingCertError> {
    fs::read(path)
        .map(zeroize::Zeroizing::new)
        .map_err(|source| ServingCertError::Read {
            path: path.to_owned(),
            source,
        })
}

/// Re-reads the pair when either file changes and stores it when it is valid.
///
/// Both files' watchers share one lock and read both files from disk under it, ignoring the
/// bytes their own watcher read earlier: the last reload to finish therefore stores what is on
/// disk at its time, never an older pair that a slower watcher read before a newer rotation.
struct PairParser {
    provider: Arc<CryptoProvider>,
    cert: PathBuf,
    key: PathBuf,
    target: Arc<ArcSwap<CertifiedKey>>,
    /// Which watcher this parser is for: 0 the certificate's, 1 the key's.
    file: usize,
    /// Held while a pair is read and stored (one at a time).
    pair: Arc<Mutex<PairErrors>>,
}

/// The refusals of the pair, by the watcher that read it: the last message each produced,
/// and whether it still holds. A pair stored by one watcher lifts the refusal the other one
/// made (the certificate refused for the old key is in force once the new key came).
#[derive(Default)]
struct PairErrors {
    produced: [Option<String>; 2],
    holds: [bool; 2],
}

impl Parse for PairParser {
    type Output = ();
    type Error = ServingCertError;

    fn parse(&self, _path: &Path, _bytes: &[u8]) -> Result<(), ServingCertError> {
        let mut errors = self.pair.lock().unwrap_or_else(PoisonError::into_inner);
        let pair = (|| {
            certified_key(
                &self.provider,
                &self.cert,
                &read(&self.cert)?,
                &self.key,
                &read(&self.key)?,
            )
        })();
        match pair {
            Ok(pair) => {
                self.target.store(Arc::new(pair));
                errors.holds = [false; 2];
                Ok(())
            }
            Err(e) => {
                let errors = &mut *errors;
                if let (Some(produced), Some(holds)) = (
                    errors.produced.get_mut(self.file),
                    errors.holds.get_mut(self.file),
                ) {
                    *produced = Some(e.to_string());
                    *holds = true;
                }
                Err(e)
            }
        }
    }
}

/// The server's certificate chain and key, kept current: a [`ResolvesServerCert`] that hands
/// rustls the pair in force (one lock-free load per handshake).
///
/// With [`watch`](Self::watch), both files are watched; whenever either changes the pair is
/// read again and used for new handshakes if the key matches the certificate. A bad or
/// mismatched pair (for example mid-rotation, the certificate written before the key) keeps
/// the previous pair; established connections are not affected.
#[derive(Clone)]
pub struct ServingCert {
    current: Arc<ArcSwap<CertifiedKey>>,
    watchers: Arc<[Reloading<()>]>,
    pair: Arc<Mutex<PairErrors>>,
}

impl ServingCert {
    /// A fixed pair from PEM in memory.
    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<Self, ServingCertError> {
        let provider = rustls::crypto::aws_lc_rs::default_provider();
        let pair = certified_key(
            &provider,
            Path::new("<certificate>"),
            cert_pem,
            Path::new("<key>"),
            key_pem,
        )?;
        Ok(Self {
            current: Arc::new(ArcSwap::from_pointee(pair)),
            watchers: Arc::new([]),
            pair: Arc::default(),
        })
    }

    /// Reads the files once.
    pub fn load(
        cert: impl Into<PathBuf>,
        key: impl Into<PathBuf>,
    ) -> Result<Self, ServingCertError> {
        let (cert, key) = (cert.into(), key.into());
        let provider = rustls::crypto::aws_lc_rs::default_provider();
        let pair = certified_key(&provider, &cert, &read(&cert)?, &key, &read(&key)?)?;
        Ok(Self {
            current: Arc::new(ArcSwap::from_pointee(pair)),
            watchers: Arc::new([]),
            pair: Arc::default(),
        })
    }

    /// Reads the files (this first read must succeed) and keeps the pair current until the
    /// last clone is dropped.
    pub fn watch(
        cert: impl Into<PathBuf>,
        key: impl Into<PathBuf>,
        options: ReloadOptions,
    ) -> Result<Self, LoadError<ServingCertError>> {
        let (cert, key) = (cert.into(), key.into());
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let pair = certified_key(
            &provider,
            &cert,
            &read(&cert).map_err(LoadError::Parse)?,
            &key,
            &read(&key).map_err(LoadError::Parse)?,
        )
        .map_err(LoadError::Parse)?;
        let current = Arc::new(ArcSwap::from_pointee(pair));
        let errors = Arc::new(Mutex::new(PairErrors::default()));
        let parser = |file| PairParser {
            provider: Arc::clone(&provider),
            cert: cert.clone(),
            key: key.clone(),
            target: Arc::clone(&current),
            file,
            pair: Arc::clone(&errors),
        };
        let cert_watch = Reloading::watch(&cert, parser(0), options.clone())?;
        let key_watch = Reloading::watch(&key, parser(1), options)?;
        Ok(Self {
            current,
            watchers: Arc::new([cert_watch, key_watch]),
            pair: errors,
        })
    }

    /// The pair in force.
    pub fn current(&self) -> Arc<CertifiedKey> {
        self.current.load_full()
    }

    /// Reload counters of the certificate and the key file (zero when not watched), and the
    /// refusal that still holds, if any: a pair refused when one file changed (the
    /// certificate written before its key) and stored when the other one did is in force,
    /// not refused.
    pub fn status(&self) -> ReloadStatus {
        let errors = self.pair.lock().unwrap_or_else(PoisonError::into_inner);
        let mut status = ReloadStatus::default();
        for (file, watcher) in self.watchers.iter().enumerate() {
            let s = watcher.status();
            status.reloads += s.reloads;
            status.failures += s.failures;
            // The watcher's last refusal, unless it is the pair refusal it made and a pair
            // was stored since (an unreadable file is said as the watcher says it).
            let lifted = s.last_error.is_some()
                && s.last_error == errors.produced.get(file).cloned().flatten()
                && errors.holds.get(file) == Some(&false);
            if s.last_error.is_some() && !lifted {
                status.last_error = s.last_error;
            }
        }
        status
    }
}

impl ResolvesServerCert for ServingCert {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// Shows the files, never the key.
impl fmt::Debug for ServingCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServingCert")
            .field("watchers", &self.watchers)
            .finish_non_exhaustive()
    }
}

/// Builds the rustls `ServerConfig` of an API server: aws-lc-rs provider, TLS 1.2 and 1.3,
/// ALPN `h2` and `http/1.1`, the hot-reloaded [`ServingCert`], and [`RequestClientCert`]
/// (client certificates requested, not required).
#[derive(Debug)]
pub struct TlsConfigBuilder {
    serving: ServingCert,
    verifier: RequestClientCert,
    client_auth: bool,
    advertised: Vec<CaBundle>,
}

impl TlsConfigBuilder {
    /// A builder serving `serving`.
    pub fn new(serving: ServingCert) -> Self {
        Self {
            serving,
            verifier: RequestClientCert::new(),
            client_auth: true,
            advertised: Vec::new(),
        }
    }

    /// Advertises the subjects of `bundle`'s current pool as acceptable client certificate
    /// issuers (default: none). Call it for the client CA and the request-header CA.
    #[must_use]
    pub fn advertise_client_ca(mut self, bundle: &CaBundle) -> Self {
        self.verifier = self.verifier.advertise(&bundle.current());
        self.advertised.push(bundle.clone());
        self
    }

    /// Whether to request client certificates at all (default true; false when no
    /// certificate-based authenticator is configured, as kube-apiserver does).
    #[must_use]
    pub fn request_client_certificates(mut self, request: bool) -> Self {
        self.client_auth = request;
        self
    }

    /// A configuration that follows the advertised CA bundles: rebuilt, for new connections,
    /// when one of them is reloaded (see [`ReloadingServerConfig`](super::ReloadingServerConfig)).
    /// Without client certificates requested it never changes.
    pub fn build_reloading(self) -> Result<super::TlsSource, rustls::Error> {
        if !self.client_auth {
            return self.build().map(Into::into);
        }
        super::ReloadingServerConfig::new(self.advertised, Arc::new(self.serving)).map(Into::into)
    }

    /// The configuration (the advertised CA names are those of the bundles now; see
    /// [`TlsConfigBuilder::build_reloading`] to follow their reloads).
    pub fn build(self) -> Result<ServerConfig, rustls::Error> {
        let builder = config_builder()?;
        let builder = if self.client_auth {
            builder.with_client_cert_verifier(self.verifier.into_arc())
        } else {
            builder.with_no_client_auth()
        };
        let mut config = builder.with_cert_resolver(Arc::new(self.serving));
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(config)
    }
}

/// The protocol part of every configuration: aws-lc-rs, TLS 1.3 and 1.2.
pub(crate) fn config_builder()
-> Result<rustls::ConfigBuilder<ServerConfig, rustls::WantsVerifier>, rustls::Error> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube_authn_testing::TestPki;
    use std::time::{Duration, Instant};

    #[test]
    fn mismatched_pair_is_refused() {
        let pki = TestPki::shared();
        let err = ServingCert::from_pem(
            pki.serving.cert_pem().as_bytes(),
            pki.serving_rotated.key_pem().as_bytes(),
        )
        .unwrap_err();
        assert!(matches!(err, ServingCertError::Key { .. }), "{err}");
        let err = ServingCert::from_pem(b"", pki.serving.key_pem().as_bytes()).unwrap_err();
        assert!(matches!(err, ServingCertError::Certificate { .. }), "{err}");
        ServingCert::from_pem(
            pki.serving.cert_pem().as_bytes(),
            pki.serving.key_pem().as_bytes(),
        )
        .unwrap();
    }

    /// Rotation: a half-written pair keeps the old one, the complete new pair replaces it.
    #[test]
    fn rotation_keeps_the_old_pair_until_the_new_one_matches() {
        let pki = TestPki::shared();
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
        fs::write(&cert, pki.serving.cert_pem()).unwrap();
        fs::write(&key, pki.serving.key_pem()).unwrap();
        let options = ReloadOptions::default()
            .debounce(Duration::from_millis(20))
            .poll_interval(Duration::from_millis(50));
        let serving = ServingCert::watch(&cert, &key, options).unwrap();
        assert_eq!(serving.current().cert[0], pki.serving.cert_der());

        fs::write(&cert, pki.serving_rotated.cert_pem()).unwrap();
        wait_for(|| serving.status().failures >= 1);
        assert_eq!(serving.current().cert[0], pki.serving.cert_der());

        let refusal = serving.status().last_error.unwrap();
        assert!(refusal.contains("tls.crt"), "{refusal}");

        fs::write(&key, pki.serving_rotated.key_pem()).unwrap();
        wait_for(|| serving.current().cert[0] == pki.serving_rotated.cert_der());
        // The certificate's refusal (made for the old key) no longer holds (at once: the pair
        // was stored under the lock `status` takes; the reload is counted just after).
        assert_eq!(serving.status().last_error, None);
        wait_for(|| serving.status().reloads >= 1);
        let status = serving.status();
        assert_eq!(status.last_error, None, "{status:?}");
        assert!(status.failures >= 1, "{status:?}");

        // A refusal of the new pair holds again.
        fs::write(&cert, pki.serving.cert_pem()).unwrap();
        wait_for(|| serving.status().last_error.is_some());
        assert_eq!(serving.current().cert[0], pki.serving_rotated.cert_der());
    }

    /// A reload that was triggered by an older version of a file (a slow watcher, a rotation
    /// right after another) stores the pair on disk now, not the bytes it was handed.
    #[test]
    fn a_late_reload_stores_the_pair_on_disk_not_an_older_one() {
        let pki = TestPki::shared();
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
        fs::write(&cert, pki.serving_rotated.cert_pem()).unwrap();
        fs::write(&key, pki.serving_rotated.key_pem()).unwrap();
        let target = Arc::new(ArcSwap::from_pointee(
            certified_key(
                &Arc::new(rustls::crypto::aws_lc_rs::default_provider()),
                &cert,
                pki.serving.cert_pem().as_bytes(),
                &key,
                pki.serving.key_pem().as_bytes(),
            )
            .unwrap(),
        ));
        let parser = PairParser {
            provider: Arc::new(rustls::crypto::aws_lc_rs::default_provider()),
            cert: cert.clone(),
            key,
            target: Arc::clone(&target),
            file: 0,
            pair: Arc::default(),
        };
        // The certificate watcher read the old certificate before the rotation was written.
        parser
            .parse(&cert, pki.serving.cert_pem().as_bytes())
            .unwrap();
        assert_eq!(target.load().cert[0], pki.serving_rotated.cert_der());
    }

    /// ALPN only: that the config requests client certificates and advertises the CA names is
    /// shown over real TLS in `tls::tests` (advertised_ca_names_follow_a_reloaded_bundle and
    /// the client-certificate tests).
    #[test]
    fn server_config_offers_h2_and_http1() {
        let pki = TestPki::shared();
        let serving = ServingCert::from_pem(
            pki.serving.cert_pem().as_bytes(),
            pki.serving.key_pem().as_bytes(),
        )
        .unwrap();
        let ca = CaBundle::from_pem("ca", pki.client_ca.cert_pem().as_bytes()).unwrap();
        let config = TlsConfigBuilder::new(serving)
            .advertise_client_ca(&ca)
            .build()
            .unwrap();
        assert_eq!(
            config.alpn_protocols,
            [b"h2".to_vec(), b"http/1.1".to_vec()]
        );
    }

    fn wait_for(mut f: impl FnMut() -> bool) {
        let start = Instant::now();
        while !f() {
            assert!(start.elapsed() < Duration::from_secs(10), "timed out");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}
