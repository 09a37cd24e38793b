//! The serving certificate: the given files, or a CA and a certificate generated once into
//! `--cert-dir`. Serving itself (rustls, the accept loop, the hot-reloaded certificate, client
//! certificates) is `kube_authn::x509`.

use std::io;
use std::path::{Path, PathBuf};

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
