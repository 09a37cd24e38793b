//! CA bundles (`--client-ca-file`, `--requestheader-client-ca-file`): parsing and hot reload.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use kube_authn_core::reload::{LoadError, ReloadOptions, ReloadStatus, Reloading};
use rustls::DistinguishedName;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, TrustAnchor};

use crate::identity::Usages;
use crate::verify::Validity;

/// Every successfully parsed pool gets a new generation, so per-connection verification
/// results are never reused across different pools or reloads.
static NEXT_GENERATION: AtomicU64 = AtomicU64::new(1);

/// Why a CA bundle was refused. Messages follow Kubernetes'
/// (`dynamiccertificates.DynamicFileCAContent`) and name the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CaBundleError {
    /// The file is empty.
    #[error("missing content for CA bundle \"{}\"", path.display())]
    Empty {
        /// The bundle's name in messages: its file, or `<purpose>::<file>` for bundles
        /// named by purpose ([`CaBundle::load_for`], [`CaBundle::watch_for`]).
        path: PathBuf,
    },
    /// The file holds no `CERTIFICATE` PEM block.
    #[error(
        "error loading CA bundle for \"{}\": data does not contain any valid RSA or ECDSA certificates",
        path.display()
    )]
    NoCertificates {
        /// The bundle's name in messages: its file, or `<purpose>::<file>` for bundles
        /// named by purpose ([`CaBundle::load_for`], [`CaBundle::watch_for`]).
        path: PathBuf,
    },
    /// A certificate could not be used as a trust anchor.
    #[error(
        "error loading CA bundle for \"{}\": certificate {index}: {source}",
        path.display()
    )]
    InvalidCertificate {
        /// The bundle's name in messages: its file, or `<purpose>::<file>` for bundles
        /// named by purpose ([`CaBundle::load_for`], [`CaBundle::watch_for`]).
        path: PathBuf,
        /// The position of the certificate in the file (1-based).
        index: usize,
        /// What webpki said.
        #[source]
        source: webpki::Error,
    },
    /// A certificate's validity period could not be read.
    #[error(
        "error loading CA bundle for \"{}\": certificate {index}: malformed validity",
        path.display()
    )]
    InvalidValidity {
        /// The bundle's name in messages: its file, or `<purpose>::<file>` for bundles
        /// named by purpose ([`CaBundle::load_for`], [`CaBundle::watch_for`]).
        path: PathBuf,
        /// The position of the certificate in the file (1-based).
        index: usize,
    },
    /// A certificate's extended key usage extension does not parse.
    #[error(
        "error loading CA bundle for \"{}\": certificate {index}: malformed extended key usage",
        path.display()
    )]
    InvalidUsages {
        /// The bundle's name in messages: its file, or `<purpose>::<file>` for bundles
        /// named by purpose ([`CaBundle::load_for`], [`CaBundle::watch_for`]).
        path: PathBuf,
        /// The position of the certificate in the file (1-based).
        index: usize,
    },
}

/// The `CERTIFICATE` blocks of `pem` without PEM headers, in order, as Go's `pem.Decode` loop
/// in `cert.ParseCertsPEM` finds them: a block starts with a line `-----BEGIN <type>-----` and
/// ends at the next `-----END ` line; a block whose body does not decode is skipped; a `BEGIN`
/// without an `END` ends the search; text between blocks is ignored.
fn certificate_blocks(pem: &[u8]) -> Vec<CertificateDer<'static>> {
    const BEGIN: &[u8] = b"-----BEGIN ";
    const END: &[u8] = b"\n-----END ";
    let find = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).position(|w| w == needle);
    let mut certificates = Vec::new();
    let mut rest = pem;
    loop {
        // A BEGIN line starts the data or a line.
        let start = if rest.starts_with(BEGIN) {
            0
        } else {
            match find(rest, b"\n-----BEGIN ") {
                Some(i) => i + 1,
                None => break,
            }
        };
        let block = &rest[start..];
        let Some(end) = find(block, END) else { break };
        let after = block[end + 1..]
            .iter()
            .position(|b| *b == b'\n')
            .map_or(block.len(), |i| end + 1 + i + 1);
        let (section, next) = block.split_at(after);
        rest = next;
        // The line after BEGIN holds a `:` only when the block has headers (`Proc-Type: ...`):
        // base64 never does.
        let has_headers = section
            .split(|b| *b == b'\n')
            .nth(1)
            .is_some_and(|line| line.contains(&b':'));
        if has_headers {
            continue;
        }
        // Another type of block, or one that does not decode: skipped.
        if let Ok(cert) = CertificateDer::from_pem_slice(section) {
            certificates.push(cert.into_owned());
        }
    }
    certificates
}

/// A parsed set of trusted CA certificates, immutable. Cheap to share behind an `Arc`.
pub struct CaPool {
    certificates: Vec<CertificateDer<'static>>,
    anchors: Vec<TrustAnchor<'static>>,
    validity: Vec<Validity>,
    /// The extended key usages of each anchor's own certificate: Go checks them along the
    /// whole chain, the root included; webpki's trust anchors do not keep them.
    usages: Vec<Usages>,
    subjects: Vec<DistinguishedName>,
    generation: u64,
}

impl CaPool {
    /// Parses PEM as Kubernetes' `cert.ParseCertsPEM` does: every `CERTIFICATE` block without
    /// PEM headers is a trust anchor; other blocks, blocks with headers and blocks Go's
    /// `pem.Decode` cannot decode are skipped; at least one certificate is required, and one
    /// that does not parse refuses the bundle. `path` is only used in messages.
    pub fn from_pem(path: impl AsRef<Path>, pem: &[u8]) -> Result<Self, CaBundleError> {
        let path = path.as_ref();
        if pem.is_empty() {
            return Err(CaBundleError::Empty {
                path: path.to_owned(),
            });
        }
        Self::from_der(path, certificate_blocks(pem))
    }

    /// Builds a pool from DER certificates. `path` is only used in messages.
    pub fn from_der(
        path: impl AsRef<Path>,
        certificates: Vec<CertificateDer<'static>>,
    ) -> Result<Self, CaBundleError> {
        let path = path.as_ref();
        if certificates.is_empty() {
            return Err(CaBundleError::NoCertificates {
                path: path.to_owned(),
            });
        }
        let mut anchors = Vec::with_capacity(certificates.len());
        let mut validity = Vec::with_capacity(certificates.len());
        let mut subjects = Vec::with_capacity(certificates.len());
        let mut usages = Vec::with_capacity(certificates.len());
        for (i, cert) in certificates.iter().enumerate() {
            let anchor = webpki::anchor_from_trusted_cert(cert)
                .map_err(|source| CaBundleError::InvalidCertificate {
                    path: path.to_owned(),
                    index: i + 1,
                    source,
                })?
                .to_owned();
            let v = crate::identity::validity_of(cert).ok_or_else(|| {
                CaBundleError::InvalidValidity {
                    path: path.to_owned(),
                    index: i + 1,
                }
            })?;
            let u = Usages::of(cert).ok_or_else(|| CaBundleError::InvalidUsages {
                path: path.to_owned(),
                index: i + 1,
            })?;
            subjects.push(DistinguishedName::in_sequence(anchor.subject.as_ref()));
            anchors.push(anchor);
            validity.push(v);
            usages.push(u);
        }
        Ok(Self {
            certificates,
            anchors,
            validity,
            usages,
            subjects,
            generation: NEXT_GENERATION.fetch_add(1, Ordering::Relaxed),
        })
    }

    /// The certificates, in file order.
    pub fn certificates(&self) -> &[CertificateDer<'static>] {
        &self.certificates
    }

    /// The subjects of the certificates (what a TLS server advertises as acceptable CAs).
    pub fn subjects(&self) -> &[DistinguishedName] {
        &self.subjects
    }

    /// The number of certificates.
    pub fn len(&self) -> usize {
        self.certificates.len()
    }

    /// Whether the pool is empty (never true for a parsed pool).
    pub fn is_empty(&self) -> bool {
        self.certificates.is_empty()
    }

    /// A number unique to this parse of the bundle: a reload gets a new one.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    pub(crate) fn anchors(&self) -> &[TrustAnchor<'static>] {
        &self.anchors
    }

    pub(crate) fn anchor_validity(&self, index: usize) -> Option<Validity> {
        self.validity.get(index).copied()
    }

    pub(crate) fn anchor_usages(&self, index: usize) -> Option<Usages> {
        self.usages.get(index).copied()
    }
}

impl fmt::Debug for CaPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CaPool")
            .field("certificates", &self.certificates.len())
            .field("generation", &self.generation)
            .finish()
    }
}

fn parse(path: &Path, bytes: &[u8]) -> Result<CaPool, CaBundleError> {
    CaPool::from_pem(path, bytes)
}

/// kube-apiserver's purpose of the `--client-ca-file` bundle, in its messages.
pub const CLIENT_CA_PURPOSE: &str = "client-ca-bundle";
/// kube-apiserver's purpose of the `--requestheader-client-ca-file` bundle, in its messages.
pub const REQUEST_HEADER_PURPOSE: &str = "request-header";

/// A parser naming the bundle `<purpose>::<file>` in its messages.
fn named(
    purpose: &'static str,
) -> impl Fn(&Path, &[u8]) -> Result<CaPool, CaBundleError> + Send + Sync + 'static {
    move |path, bytes| CaPool::from_pem(format!("{purpose}::{}", path.display()), bytes)
}

/// A CA bundle file kept current: the pool an authenticator verifies client chains against.
///
/// Clones share the pool (and the watcher). A changed file that does not parse never replaces
/// the pool in force; [`status`](Self::status) says why. Rewriting a file with the same bytes
/// keeps the pool (and its [`generation`](CaPool::generation)).
#[derive(Clone, Debug)]
pub struct CaBundle {
    pool: Reloading<CaPool>,
}

impl CaBundle {
    /// A fixed bundle from PEM in memory; `path` is only used in messages.
    pub fn from_pem(path: impl AsRef<Path>, pem: &[u8]) -> Result<Self, CaBundleError> {
        Ok(Self::from_pool(CaPool::from_pem(path, pem)?))
    }

    /// A fixed bundle.
    pub fn from_pool(pool: CaPool) -> Self {
        Self {
            pool: Reloading::fixed(pool),
        }
    }

    /// Reads the file once.
    pub fn load(path: impl Into<PathBuf>) -> Result<Self, LoadError<CaBundleError>> {
        Ok(Self {
            pool: Reloading::load(path, parse)?,
        })
    }

    /// [`Self::load`], the bundle named `<purpose>::<file>` in messages as Kubernetes names its
    /// CA bundles ([`CLIENT_CA_PURPOSE`], [`REQUEST_HEADER_PURPOSE`]).
    pub fn load_for(
        purpose: &'static str,
        path: impl Into<PathBuf>,
    ) -> Result<Self, LoadError<CaBundleError>> {
        Ok(Self {
            pool: Reloading::load(path, named(purpose))?,
        })
    }

    /// [`Self::watch`], the bundle named `<purpose>::<file>` in messages as Kubernetes names
    /// its CA bundles ([`CLIENT_CA_PURPOSE`], [`REQUEST_HEADER_PURPOSE`]).
    pub fn watch_for(
        purpose: &'static str,
        path: impl Into<PathBuf>,
        options: ReloadOptions,
    ) -> Result<Self, LoadError<CaBundleError>> {
        Ok(Self {
            pool: Reloading::watch(path, named(purpose), options)?,
        })
    }

    /// Reads the file (this first read must succeed) and keeps the pool current as the file
    /// changes, until the last clone is dropped.
    pub fn watch(
        path: impl Into<PathBuf>,
        options: ReloadOptions,
    ) -> Result<Self, LoadError<CaBundleError>> {
        Ok(Self {
            pool: Reloading::watch(path, parse, options)?,
        })
    }

    /// The pool in force (one lock-free load).
    pub fn current(&self) -> Arc<CaPool> {
        self.pool.snapshot()
    }

    pub(crate) fn guard(&self) -> arc_swap::Guard<Arc<CaPool>> {
        self.pool.current()
    }

    /// Reload counters and the last refused change.
    pub fn status(&self) -> ReloadStatus {
        self.pool.status()
    }

    /// The file, unless the bundle came from memory.
    pub fn path(&self) -> Option<&Path> {
        self.pool.path()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube_authn_testing::TestPki;
    use std::fs;
    use std::time::{Duration, Instant};

    #[test]
    fn kubernetes_messages() {
        let err = CaPool::from_pem("ca.crt", b"").unwrap_err();
        assert_eq!(err.to_string(), "missing content for CA bundle \"ca.crt\"");
        let err = CaPool::from_pem("ca.crt", b"not pem at all\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "error loading CA bundle for \"ca.crt\": data does not contain any valid RSA or ECDSA certificates"
        );
        let key_only = TestPki::shared().client_ca.key_pem();
        let err = CaPool::from_pem("ca.crt", key_only.as_bytes()).unwrap_err();
        assert!(matches!(err, CaBundleError::NoCertificates { .. }), "{err}");
        let garbage = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        let err = CaPool::from_pem("ca.crt", garbage.as_bytes()).unwrap_err();
        assert!(
            matches!(err, CaBundleError::InvalidCertificate { index: 1, .. }),
            "{err}"
        );
        assert!(std::error::Error::source(&err).is_some());
    }

    /// Blocks with PEM headers and blocks that do not decode are skipped, as Go's
    /// `cert.ParseCertsPEM` skips them; a `BEGIN` without `END` ends the bundle.
    #[test]
    fn blocks_go_skips_are_skipped() {
        let pki = TestPki::shared();
        let with_headers = pki.root_ca.cert_pem().replacen(
            "-----\n",
            "-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00\n\n",
            1,
        );
        let pem = format!(
            "comment\n{with_headers}-----BEGIN CERTIFICATE-----\n!!not base64!!\n-----END CERTIFICATE-----\n{}-----BEGIN CERTIFICATE-----\nMIIB\n",
            pki.client_ca.cert_pem()
        );
        let pool = CaPool::from_pem("ca.crt", pem.as_bytes()).unwrap();
        assert_eq!(pool.len(), 1);
        assert_eq!(pool.certificates()[0], pki.client_ca.cert_der());
        // Only blocks Go skips: no certificate.
        let err = CaPool::from_pem("ca.crt", with_headers.as_bytes()).unwrap_err();
        assert!(matches!(err, CaBundleError::NoCertificates { .. }), "{err}");
    }

    #[test]
    fn files_are_named_by_purpose_as_kubernetes_names_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.crt");
        fs::write(&path, "").unwrap();
        let err = CaBundle::load_for(CLIENT_CA_PURPOSE, &path).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "missing content for CA bundle \"client-ca-bundle::{}\"",
                path.display()
            )
        );
        fs::write(&path, "no certificate\n").unwrap();
        let err = CaBundle::load_for(REQUEST_HEADER_PURPOSE, &path).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "error loading CA bundle for \"request-header::{}\": data does not contain any valid RSA or ECDSA certificates",
                path.display()
            )
        );
    }

    #[test]
    fn other_blocks_are_ignored_and_generations_differ() {
        let pki = TestPki::shared();
        let pem = format!(
            "{}{}{}",
            pki.client_ca.key_pem(),
            pki.client_ca.cert_pem(),
            pki.root_ca.cert_pem()
        );
        let a = CaPool::from_pem("ca.crt", pem.as_bytes()).unwrap();
        let b = CaPool::from_pem("ca.crt", pem.as_bytes()).unwrap();
        assert_eq!(a.len(), 2);
        assert_eq!(a.subjects().len(), 2);
        assert_ne!(a.generation(), b.generation());
        assert!(format!("{a:?}").contains("certificates: 2"));
    }

    /// A bad bundle keeps the old pool; a good one replaces it with a new generation.
    #[test]
    fn reload_keeps_the_old_pool_on_a_bad_file() {
        let pki = TestPki::shared();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.crt");
        fs::write(&path, pki.client_ca.cert_pem()).unwrap();
        let options = ReloadOptions::default()
            .debounce(Duration::from_millis(20))
            .poll_interval(Duration::from_millis(50));
        let bundle = CaBundle::watch(&path, options).unwrap();
        let first = bundle.current().generation();

        fs::write(&path, "").unwrap();
        wait_for(|| bundle.status().failures >= 1);
        assert_eq!(bundle.current().generation(), first);
        assert!(
            bundle
                .status()
                .last_error
                .unwrap()
                .starts_with("missing content for CA bundle")
        );

        fs::write(&path, "garbage\n").unwrap();
        wait_for(|| bundle.status().failures >= 2);
        assert_eq!(bundle.current().generation(), first);

        fs::write(&path, pki.front_proxy_ca.cert_pem()).unwrap();
        wait_for(|| bundle.status().reloads >= 1);
        assert_ne!(bundle.current().generation(), first);
        assert_eq!(
            bundle.current().certificates()[0],
            pki.front_proxy_ca.cert_der()
        );
    }

    /// Two CA certificates, as a `--client-ca-file` bundle holds them.
    fn two_ca_bundle() -> Vec<u8> {
        let pki = TestPki::shared();
        format!(
            "{}{}",
            pki.client_ca.cert_pem(),
            pki.front_proxy_ca.cert_pem()
        )
        .into_bytes()
    }

    /// Whatever the bytes, parsing returns: an error, or a pool of at least one certificate.
    fn parses_without_panic(bytes: &[u8]) {
        if let Ok(pool) = CaPool::from_pem("ca.crt", bytes) {
            assert_ne!(pool.len(), 0, "a parsed pool has a certificate");
            assert!(!pool.is_empty());
            assert_eq!(pool.certificates().len(), pool.len());
            assert_eq!(pool.subjects().len(), pool.len());
        }
    }

    /// One edit of a bundle: `pos` is taken modulo the current length.
    #[derive(Clone, Debug)]
    enum Edit {
        Replace(usize, u8),
        Insert(usize, u8),
        Delete(usize),
        Truncate(usize),
        /// Copies a slice of the bundle to another place (duplicated or split PEM blocks).
        Splice {
            from: usize,
            len: usize,
            to: usize,
        },
    }

    impl Edit {
        fn apply(&self, bytes: &mut Vec<u8>) {
            let n = bytes.len();
            match *self {
                Self::Replace(pos, b) if n > 0 => bytes[pos % n] = b,
                Self::Insert(pos, b) => bytes.insert(pos % (n + 1), b),
                Self::Delete(pos) if n > 0 => {
                    bytes.remove(pos % n);
                }
                Self::Truncate(pos) => bytes.truncate(pos % (n + 1)),
                Self::Splice { from, len, to } if n > 0 => {
                    let from = from % n;
                    let end = (from + len).min(n);
                    let piece = bytes[from..end].to_vec();
                    let to = to % (n + 1);
                    bytes.splice(to..to, piece);
                }
                _ => {}
            }
        }
    }

    /// A byte a mutation writes: mostly base64 characters (so that the PEM still decodes and
    /// the DER below changes), sometimes PEM syntax, sometimes anything.
    fn edit_byte() -> impl proptest::strategy::Strategy<Value = u8> {
        use proptest::prelude::*;
        prop_oneof![
            4 => proptest::sample::select(
                b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".to_vec()
            ),
            1 => proptest::sample::select(b"-=\n\r :".to_vec()),
            1 => proptest::num::u8::ANY,
        ]
    }

    fn edit() -> impl proptest::strategy::Strategy<Value = Edit> {
        use proptest::prelude::*;
        prop_oneof![
            6 => (any::<usize>(), edit_byte()).prop_map(|(p, b)| Edit::Replace(p, b)),
            2 => (any::<usize>(), edit_byte()).prop_map(|(p, b)| Edit::Insert(p, b)),
            2 => any::<usize>().prop_map(Edit::Delete),
            1 => any::<usize>().prop_map(Edit::Truncate),
            1 => (any::<usize>(), 0usize..200, any::<usize>())
                .prop_map(|(from, len, to)| Edit::Splice { from, len, to }),
        ]
    }

    #[test]
    fn the_unmutated_bundle_parses() {
        assert_eq!(
            CaPool::from_pem("ca.crt", &two_ca_bundle()).unwrap().len(),
            2
        );
    }

    proptest::proptest! {
        /// Arbitrary bytes never panic the parser.
        #[test]
        fn never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..1024)) {
            parses_without_panic(&bytes);
        }

        /// Arbitrary bytes inside a `CERTIFICATE` block (the PEM reader's and then the DER
        /// parsers' input) never panic either.
        #[test]
        fn never_panics_inside_a_certificate_block(
            body in proptest::collection::vec(edit_byte(), 0..1024)
        ) {
            let mut pem = b"-----BEGIN CERTIFICATE-----\n".to_vec();
            pem.extend_from_slice(&body);
            pem.extend_from_slice(b"\n-----END CERTIFICATE-----\n");
            parses_without_panic(&pem);
        }

        /// Edits of a valid two-CA bundle (bytes replaced, inserted, deleted, truncated,
        /// slices copied elsewhere) never panic the parser.
        #[test]
        fn never_panics_on_a_mutated_bundle(edits in proptest::collection::vec(edit(), 1..8)) {
            let mut bytes = two_ca_bundle();
            for edit in &edits {
                edit.apply(&mut bytes);
            }
            parses_without_panic(&bytes);
        }
    }

    fn wait_for(mut f: impl FnMut() -> bool) {
        let start = Instant::now();
        while !f() {
            assert!(start.elapsed() < Duration::from_secs(10), "timed out");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}
