//! The identity in a client certificate (Kubernetes `CommonNameUserConversion`) and the
//! certificate identifier used in messages (`certificateIdentifier`).

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};

use kube_authn_core::{CREDENTIAL_ID_KEY, UserInfo};
use rustls_pki_types::CertificateDer;
use x509_parser::der_parser::asn1_rs::{Oid, Tag};
use x509_parser::prelude::{FromDer, ParsedExtension, X509Certificate, X509Name};

use crate::verify::Validity;

/// The Kubernetes X509 UID attribute (`1.3.6.1.4.1.57683.2`, CNCF private enterprise number).
const UID_OID: &[u64] = &[1, 3, 6, 1, 4, 1, 57683, 2];

/// Why the UID attribute of a certificate was refused (Kubernetes' messages).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum UidError {
    #[error("unable to parse UID into a string")]
    NotAString,
    #[error("expected 1 UID, but found multiple: [{}]", .0.join(" "))]
    Multiple(Vec<String>),
    #[error("UID cannot be an empty string")]
    Empty,
}

/// What the authenticators need from the leaf, parsed once per connection.
#[derive(Debug)]
pub(crate) struct LeafInfo {
    /// `SN=<decimal>, SKID=<AA:BB>, AKID=<AA:BB>`.
    pub(crate) identifier: String,
    /// The last common name (Go's `Subject.CommonName`), empty when there is none.
    pub(crate) common_name: String,
    /// The user, `None` when the common name is empty, or why the UID was refused.
    pub(crate) user: Result<Option<UserInfo>, UidError>,
    /// False when x509-parser could not read the certificate.
    pub(crate) parsed: bool,
    /// The leaf's own validity dates.
    pub(crate) validity: Option<Validity>,
}

impl LeafInfo {
    /// Parses a leaf certificate. Never fails: a certificate that cannot be read gets
    /// `parsed == false` and no identity.
    pub(crate) fn parse(der: &CertificateDer<'_>) -> Self {
        let Ok((_, cert)) = X509Certificate::from_der(der) else {
            return Self {
                identifier: Identifier::default().to_string(),
                common_name: String::new(),
                user: Ok(None),
                parsed: false,
                validity: None,
            };
        };
        let identifier = Identifier::of(&cert).to_string();
        let subject = cert.subject();
        // Go refuses a certificate with a name attribute, of its subject or its issuer, that it
        // cannot read as a string (`parseName`); skipping the attribute instead would let an
        // earlier CN stand in for it (allowed names). The UID attribute has its own error
        // (Kubernetes' `unable to parse UID into a string`, below).
        let uid_oid = Oid::from(UID_OID).ok();
        let readable = |a: &x509_parser::x509::AttributeTypeAndValue<'_>| {
            directory_string(a.attr_value().tag(), a.attr_value().data)
        };
        let parses = |a: &x509_parser::x509::AttributeTypeAndValue<'_>| {
            Some(a.attr_type()) == uid_oid.as_ref() || readable(a).is_some()
        };
        let names_readable =
            subject.iter_attributes().all(parses) && cert.issuer().iter_attributes().all(parses);
        if !names_readable {
            return Self {
                identifier,
                common_name: String::new(),
                user: Ok(None),
                parsed: false,
                validity: None,
            };
        }
        let common_name = subject
            .iter_common_name()
            .filter_map(&readable)
            .last()
            .unwrap_or_default();
        let user = if common_name.is_empty() {
            Ok(None)
        } else {
            uid(subject).map(|uid| {
                let groups = subject.iter_organization().filter_map(&readable).collect();
                let mut extra = BTreeMap::new();
                extra.insert(CREDENTIAL_ID_KEY.to_owned(), vec![credential_id(der)]);
                Some(UserInfo {
                    username: common_name.clone(),
                    uid: uid.unwrap_or_default(),
                    groups,
                    extra,
                })
            })
        };
        Self {
            identifier,
            common_name,
            user,
            parsed: true,
            validity: Some(Validity {
                not_before: cert.validity().not_before.timestamp(),
                not_after: cert.validity().not_after.timestamp(),
            }),
        }
    }
}

/// Kubernetes' credential id of a certificate: `X509SHA256=<lowercase hex sha256 of the DER>`.
pub fn credential_id(der: &[u8]) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der);
    let mut out = String::with_capacity(11 + 64);
    out.push_str("X509SHA256=");
    for b in digest.as_ref() {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// The UID attributes of the subject (Go: `parseUIDFromCert`).
fn uid(subject: &X509Name<'_>) -> Result<Option<String>, UidError> {
    let oid = Oid::from(UID_OID).map_err(|_| UidError::NotAString)?;
    let mut uids = Vec::new();
    for attr in subject.iter_attributes() {
        if attr.attr_type() == &oid {
            let value = attr.attr_value();
            uids.push(directory_string(value.tag(), value.data).ok_or(UidError::NotAString)?);
        }
    }
    match uids.len() {
        0 => Ok(None),
        1 if uids[0].is_empty() => Err(UidError::Empty),
        1 => Ok(uids.pop()),
        _ => Err(UidError::Multiple(uids)),
    }
}

/// An attribute value as Go's certificate parser reads it (`parseASN1String` of
/// `crypto/x509`): a PrintableString of Go's printable characters (with `*` and `&`, which
/// certificates use), a valid UTF8String, an ASCII IA5String, a NumericString of digits and
/// spaces, a T61String read as Latin-1 (byte for byte, whatever it looks like), and a
/// BMPString (UCS-2: a trailing NUL dropped, surrogates and noncharacters refused). Anything
/// else is not a string (Go refuses the whole certificate).
fn directory_string(tag: Tag, data: &[u8]) -> Option<String> {
    let ascii = |ok: fn(u8) -> bool| {
        data.iter()
            .all(|b| ok(*b))
            .then(|| data.iter().map(|b| char::from(*b)).collect())
    };
    match tag {
        Tag::PrintableString => ascii(|b| {
            b.is_ascii_alphanumeric()
                || (b'\''..=b')').contains(&b)
                || (b'+'..=b'/').contains(&b)
                || matches!(b, b' ' | b':' | b'=' | b'?' | b'*' | b'&')
        }),
        Tag::Utf8String => std::str::from_utf8(data).ok().map(str::to_owned),
        Tag::Ia5String => ascii(|b| b.is_ascii()),
        Tag::NumericString => ascii(|b| b.is_ascii_digit() || b == b' '),
        Tag::T61String => Some(data.iter().map(|b| char::from(*b)).collect()),
        Tag::BmpString => {
            if !data.len().is_multiple_of(2) {
                return None;
            }
            let data = data.strip_suffix(&[0, 0]).unwrap_or(data);
            data.chunks_exact(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]))
                .map(|unit| match unit {
                    0xfffe | 0xffff | 0xfdd0..=0xfdef | 0xd800..=0xdfff => None,
                    unit => char::from_u32(u32::from(unit)),
                })
                .collect()
        }
        _ => None,
    }
}

/// The validity period of a certificate, `None` when it cannot be parsed.
pub(crate) fn validity_of(der: &[u8]) -> Option<Validity> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    let v = cert.validity();
    Some(Validity {
        not_before: v.not_before.timestamp(),
        not_after: v.not_after.timestamp(),
    })
}

/// How Go's `UnknownAuthorityError` names a candidate issuer: its last common name, else its
/// first organization, else `serial:<decimal>`. `None` when the certificate cannot be read.
pub(crate) fn go_cert_name(der: &[u8]) -> Option<String> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    let subject = cert.subject();
    let text = |a: &x509_parser::x509::AttributeTypeAndValue<'_>| {
        directory_string(a.attr_value().tag(), a.attr_value().data)
    };
    let common_name = subject.iter_common_name().filter_map(text).last();
    if let Some(cn) = common_name.filter(|cn| !cn.is_empty()) {
        return Some(cn);
    }
    if let Some(org) = subject.iter_organization().find_map(text) {
        return Some(org);
    }
    Some(format!("serial:{}", decimal(cert.raw_serial())))
}

/// The error Go's signature check gives for a signature that the key of `issuer_der` did not
/// make (by the key's algorithm).
pub(crate) fn go_signature_failure(issuer_der: &[u8]) -> &'static str {
    const RSA: &[u64] = &[1, 2, 840, 113_549, 1, 1, 1];
    const EC: &[u64] = &[1, 2, 840, 10045, 2, 1];
    const ED25519: &[u64] = &[1, 3, 101, 112];
    let Ok((_, cert)) = X509Certificate::from_der(issuer_der) else {
        return "x509: signature verification failure";
    };
    let algorithm = &cert.public_key().algorithm.algorithm;
    let is = |arcs: &[u64]| Oid::from(arcs).is_ok_and(|oid| *algorithm == oid);
    if is(RSA) {
        "crypto/rsa: verification error"
    } else if is(EC) {
        "x509: ECDSA verification failure"
    } else if is(ED25519) {
        "x509: Ed25519 verification failure"
    } else {
        "x509: signature verification failure"
    }
}

/// The extended key usages a certificate allows, as Go's chain check reads them: a certificate
/// without the extension allows every usage, as does `anyExtendedKeyUsage`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Usages {
    restricted: bool,
    any: bool,
    client_auth: bool,
    server_auth: bool,
}

impl Usages {
    /// The usages of `der`; `None` when the certificate or its extension does not parse.
    pub(crate) fn of(der: &[u8]) -> Option<Self> {
        let (_, cert) = X509Certificate::from_der(der).ok()?;
        Some(match cert.extended_key_usage().ok()? {
            None => Self {
                restricted: false,
                any: true,
                client_auth: true,
                server_auth: true,
            },
            // Go reads an empty list as no restriction at all.
            Some(ext) => {
                let u = ext.value;
                Self {
                    restricted: u.any
                        || u.server_auth
                        || u.client_auth
                        || u.code_signing
                        || u.email_protection
                        || u.time_stamping
                        || u.ocsp_signing
                        || !u.other.is_empty(),
                    any: u.any,
                    client_auth: u.client_auth,
                    server_auth: u.server_auth,
                }
            }
        })
    }

    /// Whether `usage` is allowed.
    pub(crate) fn allows(self, usage: crate::RequiredUsage) -> bool {
        !self.restricted
            || self.any
            || match usage {
                crate::RequiredUsage::ClientAuth => self.client_auth,
                crate::RequiredUsage::ServerAuth => self.server_auth,
            }
    }
}

/// Kubernetes' `certificateIdentifier`: serial number in decimal and the key identifiers in
/// upper-case colon-separated hex.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Identifier {
    /// The serial number's DER content (two's complement, big endian); `None` prints `<nil>`.
    pub(crate) serial: Option<Vec<u8>>,
    pub(crate) subject_key_id: Vec<u8>,
    pub(crate) authority_key_id: Vec<u8>,
}

impl Identifier {
    fn of(cert: &X509Certificate<'_>) -> Self {
        let mut id = Self {
            serial: Some(cert.tbs_certificate.raw_serial().to_vec()),
            ..Self::default()
        };
        for ext in cert.extensions() {
            match ext.parsed_extension() {
                ParsedExtension::SubjectKeyIdentifier(k) => id.subject_key_id = k.0.to_vec(),
                ParsedExtension::AuthorityKeyIdentifier(a) => {
                    if let Some(k) = &a.key_identifier {
                        id.authority_key_id = k.0.to_vec();
                    }
                }
                _ => {}
            }
        }
        id
    }
}

impl fmt::Display for Identifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SN=")?;
        match &self.serial {
            Some(serial) => f.write_str(&decimal(serial))?,
            None => f.write_str("<nil>")?,
        }
        f.write_str(", SKID=")?;
        colon_hex(f, &self.subject_key_id)?;
        f.write_str(", AKID=")?;
        colon_hex(f, &self.authority_key_id)
    }
}

fn colon_hex(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    for (i, b) in bytes.iter().enumerate() {
        if i > 0 {
            f.write_str(":")?;
        }
        write!(f, "{b:02X}")?;
    }
    Ok(())
}

/// Serial numbers longer than this (RFC 5280 allows 20 octets) are not converted to decimal:
/// the conversion is quadratic and a client chooses its own certificate before any check.
const MAX_DECIMAL_SERIAL: usize = 32;

/// A DER INTEGER (two's complement, big endian) in decimal, as Go's `big.Int.String()`; an
/// oversized one as `0x<hex>` (truncated), since the client controls it.
fn decimal(twos_complement: &[u8]) -> String {
    if twos_complement.len() > MAX_DECIMAL_SERIAL {
        let hex: String = twos_complement
            .iter()
            .take(MAX_DECIMAL_SERIAL)
            .map(|b| format!("{b:02x}"))
            .collect();
        return format!("0x{hex}...({} octets)", twos_complement.len());
    }
    let negative = twos_complement.first().is_some_and(|b| b & 0x80 != 0);
    let mut magnitude: Vec<u8> = if negative {
        // Negate: invert and add one.
        let mut m: Vec<u8> = twos_complement.iter().map(|b| !b).collect();
        for b in m.iter_mut().rev() {
            let (v, carry) = b.overflowing_add(1);
            *b = v;
            if !carry {
                break;
            }
        }
        m
    } else {
        twos_complement.to_vec()
    };
    let mut digits = Vec::new();
    while magnitude.iter().any(|b| *b != 0) {
        let mut rem = 0u32;
        for b in &mut magnitude {
            let cur = (rem << 8) | u32::from(*b);
            *b = (cur / 10) as u8;
            rem = cur % 10;
        }
        digits.push(b'0' + rem as u8);
    }
    if digits.is_empty() {
        digits.push(b'0');
    }
    if negative {
        digits.push(b'-');
    }
    digits.reverse();
    String::from_utf8(digits).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    use kube_authn_testing::{CLIENT_CN_AKID as AKID, CLIENT_CN_SKID as SKID, TestPki};
    const SKID_S: &str = "64:84:5E:B7:37:A2:82:F9:62:1A:01:00:FE:1B:B4:4B:F4:18:92:F6";
    const AKID_S: &str = "48:70:75:D4:ED:6B:49:3B:53:DB:E9:A6:F9:9C:55:92:51:BD:96:E6";

    /// The identifier is read from the certificate: upstream's `clientCNCert` case on the test
    /// PKI's `client_cn` (serial 1 and upstream's key identifiers) and on a certificate whose
    /// identifiers rcgen derived from its keys (the issuer's SKID is the leaf's AKID).
    #[test]
    fn the_identifier_is_read_from_the_certificate() {
        let pki = TestPki::shared();
        assert_eq!(
            LeafInfo::parse(&pki.client_cn.cert_der()).identifier,
            format!("SN=1, SKID={SKID_S}, AKID={AKID_S}")
        );
        // A certificate without a SKID (rcgen writes one for CAs only) under the intermediate:
        // its AKID is the intermediate's SKID.
        let leaf = LeafInfo::parse(&pki.via_intermediate.cert_der()).identifier;
        let issuer = LeafInfo::parse(&pki.intermediate_ca.cert_der()).identifier;
        let field = |id: &str, name: &str| {
            id.split(", ")
                .find_map(|f| f.strip_prefix(name))
                .map(str::to_owned)
        };
        assert_eq!(field(&leaf, "SKID="), Some(String::new()), "{leaf}");
        let issuer_skid = field(&issuer, "SKID=");
        assert_eq!(issuer_skid.as_ref().map(String::len), Some(59), "{issuer}");
        assert_eq!(field(&leaf, "AKID="), issuer_skid, "{leaf} / {issuer}");
    }

    /// Kubernetes `TestCertificateIdentifier`. The upstream cases modify parsed certificates;
    /// here the identifier is built from the same fields (serial, SKID, AKID) directly.
    #[test]
    fn test_certificate_identifier() {
        let client_cn = Identifier {
            serial: Some(vec![1]),
            subject_key_id: SKID.to_vec(),
            authority_key_id: AKID.to_vec(),
        };
        let cases: Vec<(&str, Identifier, String)> = vec![
            (
                "client cert",
                client_cn.clone(),
                format!("SN=1, SKID={SKID_S}, AKID={AKID_S}"),
            ),
            (
                "nil serial",
                Identifier {
                    serial: None,
                    ..client_cn.clone()
                },
                format!("SN=<nil>, SKID={SKID_S}, AKID={AKID_S}"),
            ),
            (
                "empty SKID",
                Identifier {
                    subject_key_id: vec![],
                    ..client_cn.clone()
                },
                format!("SN=1, SKID=, AKID={AKID_S}"),
            ),
            (
                "empty AKID",
                Identifier {
                    authority_key_id: vec![],
                    ..client_cn.clone()
                },
                format!("SN=1, SKID={SKID_S}, AKID="),
            ),
            (
                "self-signed",
                Identifier {
                    // 654708847004117259890317394342561449606220871090
                    serial: Some(vec![
                        0x72, 0xae, 0x28, 0xf9, 0xb7, 0x7f, 0x16, 0x0a, 0x89, 0xa7, 0x9c, 0xa1,
                        0xa3, 0x88, 0x15, 0x4b, 0x20, 0xeb, 0xf5, 0xb2,
                    ]),
                    subject_key_id: hex("56A555028C97FD1EA0B8DEEF5E95F0ACA6236F16"),
                    authority_key_id: hex("56A555028C97FD1EA0B8DEEF5E95F0ACA6236F16"),
                },
                "SN=654708847004117259890317394342561449606220871090, SKID=56:A5:55:02:8C:97:FD:1E:A0:B8:DE:EF:5E:95:F0:AC:A6:23:6F:16, AKID=56:A5:55:02:8C:97:FD:1E:A0:B8:DE:EF:5E:95:F0:AC:A6:23:6F:16".to_owned(),
            ),
        ];
        for (name, id, want) in cases {
            assert_eq!(id.to_string(), want, "{name}");
        }
    }

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn decimal_serials() {
        assert_eq!(decimal(&[]), "0");
        assert_eq!(decimal(&[0]), "0");
        assert_eq!(decimal(&[0x01, 0x00]), "256");
        assert_eq!(decimal(&[0x00, 0xff]), "255");
        assert_eq!(decimal(&[0xff]), "-1");
        assert_eq!(decimal(&[0x80]), "-128");
        assert_eq!(decimal(&[0xff, 0x00]), "-256");
    }

    #[test]
    fn oversized_serials_are_not_converted() {
        // Shown as hex, not converted (a decimal conversion is quadratic in the length).
        let huge = vec![0x7f; 60_000];
        let s = decimal(&huge);
        assert!(s.starts_with("0x7f7f"), "{s}");
        assert!(s.ends_with("(60000 octets)"), "{s}");
        assert_eq!(decimal(&[0x01]), "1");
        assert_eq!(decimal(&[0xff]), "-1");
    }

    #[test]
    fn directory_strings() {
        assert_eq!(
            directory_string(Tag::Utf8String, b"a").as_deref(),
            Some("a")
        );
        assert_eq!(directory_string(Tag::Utf8String, b"\xff"), None);
        // T61String is Latin-1, byte for byte, even when the bytes are also UTF-8.
        assert_eq!(
            directory_string(Tag::T61String, &[0xe9]).as_deref(),
            Some("é")
        );
        assert_eq!(
            directory_string(Tag::T61String, "é".as_bytes()).as_deref(),
            Some("\u{c3}\u{a9}")
        );
        assert_eq!(
            directory_string(Tag::BmpString, &[0, b'h', 0, b'i']).as_deref(),
            Some("hi")
        );
        // A trailing NUL terminator is dropped; surrogates and noncharacters are refused.
        assert_eq!(
            directory_string(Tag::BmpString, &[0, b'a', 0, 0]).as_deref(),
            Some("a")
        );
        assert_eq!(
            directory_string(Tag::BmpString, &[0xd8, 0x3d, 0xde, 0x00]),
            None
        );
        assert_eq!(directory_string(Tag::BmpString, &[0xff, 0xfe]), None);
        assert_eq!(directory_string(Tag::BmpString, &[0]), None);
        // PrintableString: Go's set, with '*' and '&'.
        assert_eq!(
            directory_string(Tag::PrintableString, b"My Org (1), a-b.c/d+e:f=g?*&'").as_deref(),
            Some("My Org (1), a-b.c/d+e:f=g?*&'")
        );
        for bad in [&b"a_b"[..], b"a@b", b"a;b", "é".as_bytes()] {
            assert_eq!(directory_string(Tag::PrintableString, bad), None, "{bad:?}");
        }
        assert_eq!(
            directory_string(Tag::Ia5String, b"a@b_c").as_deref(),
            Some("a@b_c")
        );
        assert_eq!(directory_string(Tag::Ia5String, "é".as_bytes()), None);
        assert_eq!(
            directory_string(Tag::NumericString, b"12 34").as_deref(),
            Some("12 34")
        );
        assert_eq!(directory_string(Tag::NumericString, b"12a"), None);
        assert_eq!(directory_string(Tag::Sequence, b"x"), None);
    }

    #[test]
    fn uid_error_messages() {
        assert_eq!(
            UidError::Multiple(vec!["a".into(), "b".into()]).to_string(),
            "expected 1 UID, but found multiple: [a b]"
        );
    }

    #[test]
    fn unparseable_leaf_has_no_identity() {
        let info = LeafInfo::parse(&CertificateDer::from(vec![0x30, 0x03, 1, 2, 3]));
        assert!(!info.parsed);
        assert_eq!(info.identifier, "SN=<nil>, SKID=, AKID=");
        assert_eq!(info.user, Ok(None));
    }

    proptest::proptest! {
        /// Certificate parsing never panics, whatever the bytes.
        #[test]
        fn parsing_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let der = CertificateDer::from(bytes.clone());
            let _ = LeafInfo::parse(&der);
            let _ = validity_of(&bytes);
            let _ = decimal(&bytes);
        }

        /// Mutating a real certificate never panics the parser either.
        #[test]
        fn parsing_mutated_certificates_never_panics(pos in 0usize..2000, byte in proptest::num::u8::ANY) {
            let mut der = kube_authn_testing::TestPki::shared().client_cn.cert_der().to_vec();
            let i = pos % der.len();
            der[i] = byte;
            let _ = LeafInfo::parse(&CertificateDer::from(der.clone()));
            let _ = validity_of(&der);
        }
    }
}
