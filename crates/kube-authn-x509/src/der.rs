//! Just enough DER to take a certificate apart where rustls-webpki will not: the signed bytes,
//! the signature and its algorithm, the issuer and the public key of X.509 version 1
//! certificates (what `openssl x509 -req` makes without an extension file).

/// One DER element at the start of an input.
struct Element<'a> {
    tag: u8,
    contents: &'a [u8],
    /// The whole element, header included.
    whole: &'a [u8],
    /// What follows it.
    rest: &'a [u8],
}

/// Reads the element at the start of `input`. Definite lengths only (DER), up to four
/// length bytes.
fn element(input: &[u8]) -> Option<Element<'_>> {
    let tag = *input.first()?;
    let first = *input.get(1)?;
    let (header, len) = if first < 0x80 {
        (2, usize::from(first))
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return None;
        }
        let bytes = input.get(2..2 + n)?;
        let len = bytes
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (2 + n, len)
    };
    let end = header.checked_add(len)?;
    let whole = input.get(..end)?;
    Some(Element {
        tag,
        contents: whole.get(header..)?,
        whole,
        rest: input.get(end..)?,
    })
}

/// [`element`], requiring `tag`: (contents, whole element, what follows).
fn expect(input: &[u8], tag: u8) -> Option<(&[u8], &[u8], &[u8])> {
    let e = element(input)?;
    (e.tag == tag).then_some((e.contents, e.whole, e.rest))
}

const SEQUENCE: u8 = 0x30;
const INTEGER: u8 = 0x02;
const BIT_STRING: u8 = 0x03;
const VERSION: u8 = 0xa0;

/// The parts of a certificate a signature check needs.
#[derive(Debug)]
pub(crate) struct RawCert<'a> {
    /// The whole `tbsCertificate` element: the signed message.
    pub(crate) tbs: &'a [u8],
    /// The contents of the outer `signatureAlgorithm` (what
    /// `SignatureVerificationAlgorithm::signature_alg_id` holds).
    pub(crate) signature_alg: &'a [u8],
    /// The signature (the bit string without its unused-bits byte).
    pub(crate) signature: &'a [u8],
    /// No `version` field: an X.509 version 1 certificate.
    pub(crate) version1: bool,
    /// The contents of the issuer name (what a trust anchor's `subject` holds).
    pub(crate) issuer: &'a [u8],
    /// The contents of the subject name.
    pub(crate) subject: &'a [u8],
    /// The whole `subjectPublicKeyInfo` element.
    pub(crate) spki: &'a [u8],
}

impl<'a> RawCert<'a> {
    /// Parses `der`; `None` when it is not a well-formed certificate, when the inner and outer
    /// signature algorithms differ (Go refuses that too), or when a version 1 certificate
    /// carries fields of later versions.
    pub(crate) fn parse(der: &'a [u8]) -> Option<Self> {
        let (cert, _, rest) = expect(der, SEQUENCE)?;
        if !rest.is_empty() {
            return None;
        }
        let (tbs_contents, tbs, rest) = expect(cert, SEQUENCE)?;
        let (signature_alg, _, rest) = expect(rest, SEQUENCE)?;
        let (bits, _, rest) = expect(rest, BIT_STRING)?;
        if !rest.is_empty() {
            return None;
        }
        let (&unused, signature) = bits.split_first()?;
        if unused != 0 {
            return None;
        }

        let mut fields = tbs_contents;
        let version1 = fields.first() != Some(&VERSION);
        if !version1 {
            fields = expect(fields, VERSION)?.2;
        }
        let (_, _, fields) = expect(fields, INTEGER)?;
        let (inner_alg, _, fields) = expect(fields, SEQUENCE)?;
        if inner_alg != signature_alg {
            return None;
        }
        let (issuer, _, fields) = expect(fields, SEQUENCE)?;
        let (_, _, fields) = expect(fields, SEQUENCE)?; // validity
        let (subject, _, fields) = expect(fields, SEQUENCE)?;
        let (_, spki, fields) = expect(fields, SEQUENCE)?;
        if version1 && !fields.is_empty() {
            return None;
        }
        Some(Self {
            tbs,
            signature_alg,
            signature,
            version1,
            issuer,
            subject,
            spki,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube_authn_testing::TestPki;
    use proptest::prelude::*;

    #[test]
    fn reads_version_1_and_version_3_certificates() {
        let pki = TestPki::shared();
        let v1 = pki.jbeda_openssl.cert_der();
        let raw = RawCert::parse(&v1).unwrap();
        assert!(raw.version1);
        assert!(!raw.signature.is_empty());
        let v3 = pki.jbeda.cert_der();
        let raw = RawCert::parse(&v3).unwrap();
        assert!(!raw.version1);
        assert!(RawCert::parse(&[0x30, 0x00]).is_none());
        let mut trailing = v3.to_vec();
        trailing.push(0);
        assert!(RawCert::parse(&trailing).is_none());
    }

    #[test]
    fn the_issuer_is_the_anchor_subject_of_the_issuing_ca() {
        let pki = TestPki::shared();
        let ca = pki.client_ca.cert_der();
        let anchor = webpki::anchor_from_trusted_cert(&ca).unwrap();
        let leaf = pki.jbeda_openssl.cert_der();
        assert_eq!(
            RawCert::parse(&leaf).unwrap().issuer,
            anchor.subject.as_ref()
        );
    }

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = RawCert::parse(&bytes);
        }

        #[test]
        fn never_panics_on_a_damaged_certificate(at in 0usize..400, byte in any::<u8>()) {
            let mut der = TestPki::shared().jbeda_openssl.cert_der().to_vec();
            let i = at % der.len();
            der[i] = byte;
            let _ = RawCert::parse(&der);
        }
    }
}
