//! [`RequestClientCert`]: the client-certificate policy of kube-apiserver's TLS listener
//! (Go's `tls.RequestClientCert`), for rustls.

use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use rustls_pki_types::{CertificateDer, SubjectPublicKeyInfoDer, UnixTime};

use crate::der::RawCert;
use crate::pool::CaPool;

/// Requests a client certificate without requiring one, and proves key possession.
///
/// - The server asks for a certificate (`offer_client_auth`), a client may send none
///   (`client_auth_mandatory` is false).
/// - Any chain whose leaf parses is accepted at the handshake: chain verification is the job
///   of each authenticator, against its own pool (the client CA and the request-header CA are
///   different pools), per request. The chain reaches them as
///   [`PeerCertificates`](crate::PeerCertificates).
/// - The handshake signature (`CertificateVerify`) is verified with the aws-lc-rs
///   algorithms, so a client that sends a certificate proves it holds its private key.
/// - The subjects of the configured CA pools are advertised as acceptable issuers (optional;
///   clients such as browsers and curl use them to pick a certificate). They are taken when
///   the verifier is built.
#[derive(Debug)]
pub struct RequestClientCert {
    algorithms: WebPkiSupportedAlgorithms,
    hints: Vec<DistinguishedName>,
}

impl Default for RequestClientCert {
    fn default() -> Self {
        Self::new()
    }
}

impl RequestClientCert {
    /// A verifier using the aws-lc-rs provider's signature algorithms, advertising no CA.
    pub fn new() -> Self {
        Self::with_provider(&rustls::crypto::aws_lc_rs::default_provider())
    }

    /// A verifier using `provider`'s signature algorithms.
    pub fn with_provider(provider: &CryptoProvider) -> Self {
        Self {
            algorithms: provider.signature_verification_algorithms,
            hints: Vec::new(),
        }
    }

    /// Also advertises the subjects of `pool` as acceptable issuers (default: none).
    #[must_use]
    pub fn advertise(mut self, pool: &CaPool) -> Self {
        for subject in pool.subjects() {
            if !self.hints.iter().any(|h| h.as_ref() == subject.as_ref()) {
                self.hints.push(subject.clone());
            }
        }
        self
    }

    /// Wraps the verifier for `ServerConfig::builder().with_client_cert_verifier`.
    pub fn into_arc(self) -> Arc<dyn ClientCertVerifier> {
        Arc::new(self)
    }
}

impl ClientCertVerifier for RequestClientCert {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.hints
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        // Refuse what cannot even be parsed (Go's TLS stack does the same); the chain itself
        // is verified by the authenticators.
        let bad = || rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding);
        match version1_key(end_entity) {
            Some(spki) => {
                webpki::RawPublicKeyEntity::try_from(&spki).map_err(|_| bad())?;
            }
            None => {
                webpki::EndEntityCert::try_from(end_entity).map_err(|_| bad())?;
            }
        }
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let Some(spki) = version1_key(cert) else {
            return rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms);
        };
        // rustls reads the key of version 3 certificates only; this is its TLS 1.2 rule (every
        // algorithm of the scheme is tried) over the key of a version 1 certificate.
        let key = webpki::RawPublicKeyEntity::try_from(&spki).map_err(|_| {
            rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding)
        })?;
        let algorithms = self
            .algorithms
            .mapping
            .iter()
            .find(|(scheme, _)| *scheme == dss.scheme)
            .map(|(_, algorithms)| *algorithms)
            .ok_or(rustls::PeerMisbehaved::SignedHandshakeWithUnadvertisedSigScheme)?;
        if algorithms
            .iter()
            .any(|alg| key.verify_signature(*alg, message, dss.signature()).is_ok())
        {
            Ok(HandshakeSignatureValid::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::BadSignature,
            ))
        }
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        match version1_key(cert) {
            Some(spki) => rustls::crypto::verify_tls13_signature_with_raw_key(
                message,
                &spki,
                dss,
                &self.algorithms,
            ),
            None => rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms),
        }
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// The public key of an X.509 version 1 certificate (what `openssl x509 -req` makes without
/// an extension file: Go takes them, rustls and webpki read version 3 only); `None` for any
/// other certificate.
fn version1_key<'a>(cert: &'a CertificateDer<'_>) -> Option<SubjectPublicKeyInfoDer<'a>> {
    let raw = RawCert::parse(cert)?;
    raw.version1
        .then(|| SubjectPublicKeyInfoDer::from(raw.spki))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube_authn_testing::TestPki;

    #[test]
    fn requests_but_does_not_require() {
        let pki = TestPki::shared();
        let pool = CaPool::from_der(
            "ca",
            vec![pki.client_ca.cert_der(), pki.front_proxy_ca.cert_der()],
        )
        .unwrap();
        let v = RequestClientCert::new().advertise(&pool).advertise(&pool);
        assert!(v.offer_client_auth());
        assert!(!v.client_auth_mandatory());
        assert_eq!(v.root_hint_subjects().len(), 2);
        assert!(!v.supported_verify_schemes().is_empty());
        // Any parseable chain is accepted, even one of an unknown CA.
        v.verify_client_cert(&pki.other_ca_client.cert_der(), &[], UnixTime::now())
            .unwrap();
        v.verify_client_cert(&CertificateDer::from(vec![0x30, 0]), &[], UnixTime::now())
            .unwrap_err();
    }
}
