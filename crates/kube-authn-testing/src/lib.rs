//! Test helpers for kube-authn: a regenerable test PKI.
//!
//! [`TestPki::generate`] makes, with rcgen and the aws-lc-rs provider (ECDSA P-256 keys,
//! PKCS#8), every certificate the x509 and authenticating-proxy tests need: a root CA (it
//! signs the serving certificate), a client CA, an intermediate CA below the client CA, a
//! front-proxy CA and an unrelated CA, and the leaf certificates listed on [`TestPki`]. The
//! client certificate `jbeda-openssl` is what the Kubernetes documentation's commands make
//! (`openssl req -new -key jbeda.pem -subj "/CN=jbeda/O=app1/O=app2"`, signed with
//! `openssl x509 -req`: an X.509 version 1 certificate without extensions); `jbeda` is the same
//! subject as a version 3 certificate with the client-auth extended key usage.
//!
//! Keys are random, so every run makes a new PKI; validity dates are fixed (valid certificates
//! run from 2020-01-01 to 2120-01-01, the expired one ended in 2001, the not-yet-valid one
//! starts in 2200), so the outcomes never depend on the day the tests run.
//!
//! # Writing the PKI to files
//!
//! ```text
//! cargo run -p kube-authn-testing --bin kube-authn-test-pki -- crates/kube-authn-testing/test-pki
//! ```
//!
//! writes `<name>.crt` and `<name>.key` (PEM; keys are PKCS#8 `PRIVATE KEY`) for every entry of
//! [`TestPki::all`], plus `<name>-chain.crt` (leaf then intermediates) for certificates issued
//! below the intermediate CA. [`TestPki::write_to`] does the same from code.
//!
//! # Security
//! Test material only: the private keys are written unencrypted.

#![forbid(unsafe_code)]

use std::fmt;
use std::fs;
use std::io;
use std::path::Path;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, CustomExtension, DistinguishedName, DnType, DnValue,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose, SerialNumber,
    date_time_ymd,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// The Kubernetes X509 UID attribute OID (`1.3.6.1.4.1.57683.2`, CNCF private enterprise
/// number).
pub const UID_OID: &[u64] = &[1, 3, 6, 1, 4, 1, 57683, 2];

/// Why the PKI could not be generated.
#[derive(Debug)]
#[non_exhaustive]
pub enum PkiError {
    /// rcgen refused a certificate.
    Rcgen(rcgen::Error),
    /// A certificate could not be rewritten (internal DER patching).
    Patch(&'static str),
    /// Writing a file failed.
    Io(io::Error),
}

impl fmt::Display for PkiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Rcgen(e) => write!(f, "certificate generation failed: {e}"),
            Self::Patch(what) => write!(f, "certificate rewrite failed: {what}"),
            Self::Io(e) => write!(f, "writing the test pki failed: {e}"),
        }
    }
}

impl std::error::Error for PkiError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Rcgen(e) => Some(e),
            Self::Io(e) => Some(e),
            Self::Patch(_) => None,
        }
    }
}

impl From<rcgen::Error> for PkiError {
    fn from(e: rcgen::Error) -> Self {
        Self::Rcgen(e)
    }
}

impl From<io::Error> for PkiError {
    fn from(e: io::Error) -> Self {
        Self::Io(e)
    }
}

/// A certificate, its private key and the intermediates between it and its CA.
pub struct Issued {
    /// The file stem used by [`TestPki::write_to`].
    pub name: &'static str,
    cert: CertificateDer<'static>,
    key: KeyPair,
    /// Intermediates (issuer first), empty when the issuer is a root.
    intermediates: Vec<CertificateDer<'static>>,
    params: CertificateParams,
}

impl fmt::Debug for Issued {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Issued")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Issued {
    /// The certificate (DER).
    pub fn cert_der(&self) -> CertificateDer<'static> {
        self.cert.clone()
    }

    /// The certificate (PEM).
    pub fn cert_pem(&self) -> String {
        pem("CERTIFICATE", &self.cert)
    }

    /// The leaf followed by its intermediates (DER): what a client sends.
    pub fn chain(&self) -> Vec<CertificateDer<'static>> {
        let mut chain = vec![self.cert.clone()];
        chain.extend(self.intermediates.iter().cloned());
        chain
    }

    /// The leaf followed by its intermediates (PEM).
    pub fn chain_pem(&self) -> String {
        self.chain().iter().map(|c| pem("CERTIFICATE", c)).collect()
    }

    /// The private key (PKCS#8 DER).
    pub fn key_der(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key.serialize_der()))
    }

    /// The private key (PKCS#8 PEM, `PRIVATE KEY`).
    pub fn key_pem(&self) -> String {
        self.key.serialize_pem()
    }

    /// An `Issuer` for signing with this certificate (only meaningful for CAs).
    fn issuer(&self) -> Issuer<'_, &KeyPair> {
        Issuer::from_params(&self.params, &self.key)
    }
}

/// The whole test PKI. See the [crate documentation](crate) for how to write it to files.
#[derive(Debug)]
#[non_exhaustive]
pub struct TestPki {
    /// `CN=kube-authn test root CA`: signs the serving certificates (what clients trust).
    pub root_ca: Issued,
    /// `CN=kube-authn test client CA`: the `--client-ca-file`.
    pub client_ca: Issued,
    /// `CN=kube-authn test intermediate CA`, signed by the client CA.
    pub intermediate_ca: Issued,
    /// `CN=kube-authn test front-proxy CA`: the `--requestheader-client-ca-file`.
    pub front_proxy_ca: Issued,
    /// `CN=kube-authn test other CA`: trusted by nobody.
    pub other_ca: Issued,

    /// `CN=jbeda, O=app1, O=app2`, client auth, signed by the client CA: the Kubernetes docs'
    /// certificate as an X.509 version 3 certificate with the client-auth usage (what rustls
    /// clients can present; [`Self::jbeda_openssl`] is the seed's exact form).
    pub jbeda: Issued,
    /// `CN=jbeda, O=app1, O=app2`, signed by the client CA, exactly as the seed's commands make
    /// it (`openssl req -new -key jbeda.pem -subj "/CN=jbeda/O=app1/O=app2"`, then
    /// `openssl x509 -req` without an extension file): an X.509 version 1 certificate with no
    /// extension at all (so no extended key usage, which Go reads as any usage). rustls clients
    /// refuse to present it (they read version 3 only); Go, curl and Python do.
    pub jbeda_openssl: Issued,
    /// `CN=jbeda-via-intermediate, O=app3`, client auth, signed by the intermediate CA.
    pub via_intermediate: Issued,
    /// `CN=expired`, client auth, valid 2000-01-01 to 2001-01-01, signed by the client CA.
    pub expired: Issued,
    /// `CN=not-yet-valid`, client auth, valid from 2200-01-01, signed by the client CA.
    pub not_yet_valid: Issued,
    /// `CN=127.0.0.1, O=My Org`, server auth only, signed by the client CA (Kubernetes'
    /// `serverCert`).
    pub server_only: Issued,
    /// `CN=other-ca-client, O=app1`, client auth, signed by the other CA.
    pub other_ca_client: Issued,
    /// `CN=front-proxy-client`, client auth, signed by the front-proxy CA.
    pub proxy_client: Issued,
    /// `CN=not-allowed-proxy`, client auth, signed by the front-proxy CA.
    pub proxy_not_allowed: Issued,
    /// Serving certificate for `localhost` and `127.0.0.1`, signed by the root CA.
    pub serving: Issued,
    /// A second serving certificate (same names, new key): for rotation tests.
    pub serving_rotated: Issued,

    /// Kubernetes' `clientCNCert`: serial 1, `C=US, ST=My State, L=My City, O=My Org,
    /// OU=My Unit, CN=client_cn2, CN=client_cn, UID=client_id`, client auth, client CA.
    pub client_cn: Issued,
    /// `clientCNCert` with an empty UID attribute.
    pub empty_uid: Issued,
    /// `clientCNCert` with a UID attribute that is not a string type Go reads
    /// (a `UniversalString`).
    pub non_string_uid: Issued,
    /// `CN=multi-uid` with two UID attributes (`uid-1`, `uid-2`), client CA.
    pub multi_uid: Issued,
    /// Self-signed CA `O=My Org, O=My Org 1, O=My Org 2, CN=ROOT CA WITH GROUPS`
    /// (Kubernetes' `caWithGroups`).
    pub ca_with_groups: Issued,
    /// Self-signed `CN=self1` (Kubernetes' `selfSignedCert`).
    pub self_signed: Issued,
    /// `CN=no-eku`: no extended key usage extension, client CA.
    pub no_eku: Issued,
    /// `CN=any-eku`: only `anyExtendedKeyUsage`, client CA.
    pub any_eku: Issued,
    /// `CN=no-cn, O=app1`: no common name, client auth, client CA.
    pub no_cn: Issued,
}

fn valid_params() -> CertificateParams {
    let mut p = CertificateParams::default();
    p.not_before = date_time_ymd(2020, 1, 1);
    p.not_after = date_time_ymd(2120, 1, 1);
    p
}

/// The subject key identifier of Kubernetes' `clientCNCert` (given to [`TestPki::client_cn`]).
pub const CLIENT_CN_SKID: [u8; 20] = [
    0x64, 0x84, 0x5E, 0xB7, 0x37, 0xA2, 0x82, 0xF9, 0x62, 0x1A, 0x01, 0x00, 0xFE, 0x1B, 0xB4, 0x4B,
    0xF4, 0x18, 0x92, 0xF6,
];
/// The authority key identifier of Kubernetes' `clientCNCert` (given to the subject key
/// identifier of [`TestPki::client_ca`], so that it is the AKID of the certificates it signs).
pub const CLIENT_CN_AKID: [u8; 20] = [
    0x48, 0x70, 0x75, 0xD4, 0xED, 0x6B, 0x49, 0x3B, 0x53, 0xDB, 0xE9, 0xA6, 0xF9, 0x9C, 0x55, 0x92,
    0x51, 0xBD, 0x96, 0xE6,
];

fn ca_params(cn: &str) -> CertificateParams {
    let mut p = valid_params();
    p.not_before = date_time_ymd(1999, 1, 1);
    p.not_after = date_time_ymd(2299, 1, 1);
    p.distinguished_name.push(DnType::CommonName, cn);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p
}

fn client_params(dn: &[(DnType, DnValue)]) -> CertificateParams {
    let mut p = valid_params();
    p.distinguished_name = DistinguishedName::new();
    for (t, v) in dn {
        p.distinguished_name.push(t.clone(), v.clone());
    }
    p.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    p.use_authority_key_identifier_extension = true;
    p
}

fn cn(v: &str) -> (DnType, DnValue) {
    (DnType::CommonName, v.into())
}

fn o(v: &str) -> (DnType, DnValue) {
    (DnType::OrganizationName, v.into())
}

/// A second attribute of an already used type: rcgen keeps one value per `DnType`, but a
/// custom type with the same OID is a different key.
fn again(oid: &[u64], v: &str) -> (DnType, DnValue) {
    (DnType::CustomDnType(oid.to_vec()), v.into())
}

const CN_OID: &[u64] = &[2, 5, 4, 3];
const O_OID: &[u64] = &[2, 5, 4, 10];
/// Stand-ins encoded with the same length as the OIDs they replace (see [`patch_and_resign`]).
const O_PLACEHOLDER: &[u64] = &[2, 5, 4, 120];
const UID_PLACEHOLDER: &[u64] = &[1, 3, 6, 1, 4, 1, 57683, 3];
const O_DER: &[u8] = &[0x06, 0x03, 0x55, 0x04, 0x0a];
const O_PLACEHOLDER_DER: &[u8] = &[0x06, 0x03, 0x55, 0x04, 0x78];
const UID_DER: &[u8] = &[
    0x06, 0x09, 0x2b, 0x06, 0x01, 0x04, 0x01, 0x83, 0xc2, 0x53, 0x02,
];
const UID_PLACEHOLDER_DER: &[u8] = &[
    0x06, 0x09, 0x2b, 0x06, 0x01, 0x04, 0x01, 0x83, 0xc2, 0x53, 0x03,
];

fn issue(
    name: &'static str,
    params: CertificateParams,
    issuer: Option<&Issued>,
) -> Result<Issued, PkiError> {
    let key = KeyPair::generate()?;
    let cert = match issuer {
        Some(ca) => params.signed_by(&key, &ca.issuer())?,
        None => params.self_signed(&key)?,
    };
    let mut intermediates = Vec::new();
    if let Some(ca) = issuer {
        // An issuer that has intermediates of its own is itself an intermediate.
        if !ca.intermediates.is_empty() || ca.name == "intermediate-ca" {
            intermediates.push(ca.cert.clone());
            intermediates.extend(ca.intermediates.iter().cloned());
        }
    }
    Ok(Issued {
        name,
        cert: cert.der().clone(),
        key,
        intermediates,
        params,
    })
}

impl TestPki {
    /// Generates a new PKI (random keys, fixed dates).
    pub fn generate() -> Result<Self, PkiError> {
        let root_ca = issue("root-ca", ca_params("kube-authn test root CA"), None)?;
        // The key identifiers of Kubernetes' `clientCNCert` (its SKID, and its issuer's as its
        // AKID), so that messages naming a certificate read as upstream's.
        let mut p = ca_params("kube-authn test client CA");
        p.key_identifier_method = KeyIdMethod::PreSpecified(CLIENT_CN_AKID.to_vec());
        let client_ca = issue("client-ca", p, None)?;
        let intermediate_ca = issue(
            "intermediate-ca",
            ca_params("kube-authn test intermediate CA"),
            Some(&client_ca),
        )?;
        let front_proxy_ca = issue(
            "front-proxy-ca",
            ca_params("kube-authn test front-proxy CA"),
            None,
        )?;
        let other_ca = issue("other-ca", ca_params("kube-authn test other CA"), None)?;

        let jbeda = issue(
            "jbeda",
            client_params(&[cn("jbeda"), o("app1"), again(O_OID, "app2")]),
            Some(&client_ca),
        )?;
        let jbeda_openssl = to_version1(
            issue(
                "jbeda-openssl",
                client_params(&[cn("jbeda"), o("app1"), again(O_OID, "app2")]),
                Some(&client_ca),
            )?,
            &client_ca,
        )?;
        let via_intermediate = issue(
            "jbeda-via-intermediate",
            client_params(&[cn("jbeda-via-intermediate"), o("app3")]),
            Some(&intermediate_ca),
        )?;
        let mut p = client_params(&[cn("expired")]);
        p.not_before = date_time_ymd(2000, 1, 1);
        p.not_after = date_time_ymd(2001, 1, 1);
        let expired = issue("expired", p, Some(&client_ca))?;
        let mut p = client_params(&[cn("not-yet-valid")]);
        p.not_before = date_time_ymd(2200, 1, 1);
        p.not_after = date_time_ymd(2201, 1, 1);
        let not_yet_valid = issue("not-yet-valid", p, Some(&client_ca))?;
        let mut p = client_params(&[o("My Org"), cn("127.0.0.1")]);
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server_only = issue("server-only", p, Some(&client_ca))?;
        let other_ca_client = issue(
            "other-ca-client",
            client_params(&[cn("other-ca-client"), o("app1")]),
            Some(&other_ca),
        )?;
        let proxy_client = issue(
            "front-proxy-client",
            client_params(&[cn("front-proxy-client")]),
            Some(&front_proxy_ca),
        )?;
        let proxy_not_allowed = issue(
            "not-allowed-proxy",
            client_params(&[cn("not-allowed-proxy")]),
            Some(&front_proxy_ca),
        )?;
        let serving = issue("serving", serving_params()?, Some(&root_ca))?;
        let serving_rotated = issue("serving-rotated", serving_params()?, Some(&root_ca))?;

        let client_cn_dn = |uid: DnValue| {
            vec![
                (DnType::CountryName, "US".into()),
                (DnType::StateOrProvinceName, "My State".into()),
                (DnType::LocalityName, "My City".into()),
                o("My Org"),
                (DnType::OrganizationalUnitName, "My Unit".into()),
                cn("client_cn2"),
                again(CN_OID, "client_cn"),
                (DnType::CustomDnType(UID_OID.to_vec()), uid),
            ]
        };
        let mut p = client_params(&client_cn_dn("client_id".into()));
        p.serial_number = Some(SerialNumber::from(1u64));
        // rcgen writes a subject key identifier for CAs only: as an extension here.
        let mut skid = vec![0x04, 20];
        skid.extend_from_slice(&CLIENT_CN_SKID);
        p.custom_extensions
            .push(CustomExtension::from_oid_content(&[2, 5, 29, 14], skid));
        let client_cn = issue("client-cn", p, Some(&client_ca))?;
        let empty_uid = issue(
            "empty-uid",
            client_params(&client_cn_dn("".into())),
            Some(&client_ca),
        )?;
        let universal = rcgen::string::UniversalString::try_from("client_id")
            .map_err(|_| PkiError::Patch("universal string"))?;
        let non_string_uid = issue(
            "non-string-uid",
            client_params(&client_cn_dn(DnValue::UniversalString(universal))),
            Some(&client_ca),
        )?;

        let p = client_params(&[
            cn("multi-uid"),
            again(UID_OID, "uid-1"),
            again(UID_PLACEHOLDER, "uid-2"),
        ]);
        let mut multi_uid = issue("multi-uid", p, Some(&client_ca))?;
        multi_uid.cert = patch_and_resign(
            &multi_uid.cert,
            UID_PLACEHOLDER_DER,
            UID_DER,
            &client_ca.key,
        )?;

        let mut p = ca_params("x");
        p.distinguished_name = DistinguishedName::new();
        p.distinguished_name
            .push(DnType::OrganizationName, "My Org");
        p.distinguished_name
            .push(DnType::CustomDnType(O_OID.to_vec()), "My Org 1");
        p.distinguished_name
            .push(DnType::CustomDnType(O_PLACEHOLDER.to_vec()), "My Org 2");
        p.distinguished_name
            .push(DnType::CommonName, "ROOT CA WITH GROUPS");
        let mut ca_with_groups = issue("ca-with-groups", p, None)?;
        let resigned = patch_and_resign(
            &ca_with_groups.cert,
            O_PLACEHOLDER_DER,
            O_DER,
            &ca_with_groups.key,
        )?;
        ca_with_groups.cert = resigned;

        let mut p = valid_params();
        p.distinguished_name.push(DnType::CommonName, "self1");
        let self_signed = issue("self-signed", p, None)?;

        let mut p = client_params(&[cn("no-eku")]);
        p.extended_key_usages.clear();
        let no_eku = issue("no-eku", p, Some(&client_ca))?;
        let mut p = client_params(&[cn("any-eku")]);
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::Any];
        let any_eku = issue("any-eku", p, Some(&client_ca))?;
        let no_cn = issue("no-cn", client_params(&[o("app1")]), Some(&client_ca))?;

        Ok(Self {
            root_ca,
            client_ca,
            intermediate_ca,
            front_proxy_ca,
            other_ca,
            jbeda,
            jbeda_openssl,
            via_intermediate,
            expired,
            not_yet_valid,
            server_only,
            other_ca_client,
            proxy_client,
            proxy_not_allowed,
            serving,
            serving_rotated,
            client_cn,
            empty_uid,
            non_string_uid,
            multi_uid,
            ca_with_groups,
            self_signed,
            no_eku,
            any_eku,
            no_cn,
        })
    }

    /// One PKI shared by all tests of a process (generated on first use).
    ///
    /// # Panics
    /// When generation fails (a bug in this crate or in rcgen).
    #[allow(clippy::expect_used)]
    pub fn shared() -> &'static TestPki {
        static PKI: OnceLock<TestPki> = OnceLock::new();
        PKI.get_or_init(|| TestPki::generate().expect("test pki generation"))
    }

    /// Every certificate of the PKI.
    pub fn all(&self) -> Vec<&Issued> {
        vec![
            &self.root_ca,
            &self.client_ca,
            &self.intermediate_ca,
            &self.front_proxy_ca,
            &self.other_ca,
            &self.jbeda,
            &self.jbeda_openssl,
            &self.via_intermediate,
            &self.expired,
            &self.not_yet_valid,
            &self.server_only,
            &self.other_ca_client,
            &self.proxy_client,
            &self.proxy_not_allowed,
            &self.serving,
            &self.serving_rotated,
            &self.client_cn,
            &self.empty_uid,
            &self.non_string_uid,
            &self.multi_uid,
            &self.ca_with_groups,
            &self.self_signed,
            &self.no_eku,
            &self.any_eku,
            &self.no_cn,
        ]
    }

    /// Writes every certificate and key as PEM into `dir` (created if missing):
    /// `<name>.crt`, `<name>.key` and, for certificates with intermediates, `<name>-chain.crt`.
    pub fn write_to(&self, dir: impl AsRef<Path>) -> Result<(), PkiError> {
        let dir = dir.as_ref();
        fs::create_dir_all(dir)?;
        for issued in self.all() {
            fs::write(dir.join(format!("{}.crt", issued.name)), issued.cert_pem())?;
            fs::write(dir.join(format!("{}.key", issued.name)), issued.key_pem())?;
            if !issued.intermediates.is_empty() {
                fs::write(
                    dir.join(format!("{}-chain.crt", issued.name)),
                    issued.chain_pem(),
                )?;
            }
        }
        Ok(())
    }

    /// A client certificate (client-auth usage) signed by `signer`, whose subject is a common
    /// name followed by a second common name encoded as a UniversalString: a name Go cannot
    /// read as a string, which must make the certificate unusable (not fall back to the first).
    pub fn issue_with_unreadable_cn(
        &self,
        name: &'static str,
        signer: &Issued,
        first_cn: &str,
    ) -> Result<Issued, PkiError> {
        let universal = rcgen::string::UniversalString::try_from("x")?;
        let p = client_params(&[
            cn(first_cn),
            (
                DnType::CustomDnType(CN_OID.to_vec()),
                DnValue::UniversalString(universal),
            ),
        ]);
        issue(name, p, Some(signer))
    }

    /// A client certificate (client-auth usage, CN `jbeda`) signed by `signer`, with an
    /// organizational unit encoded as a UniversalString: an attribute Go cannot read as a
    /// string, which makes Go refuse the whole certificate, whichever attribute it is.
    pub fn issue_with_unreadable_ou(
        &self,
        name: &'static str,
        signer: &Issued,
    ) -> Result<Issued, PkiError> {
        let universal = rcgen::string::UniversalString::try_from("unit")?;
        let p = client_params(&[
            cn("jbeda"),
            (
                DnType::OrganizationalUnitName,
                DnValue::UniversalString(universal),
            ),
        ]);
        issue(name, p, Some(signer))
    }

    /// A CA whose own certificate restricts its extended key usage to server authentication,
    /// and a client-auth certificate (CN `eku-client`) it signed. Go refuses the client
    /// certificate: every certificate of a chain, the root included, must allow the usage.
    pub fn server_only_ca_with_client(&self) -> Result<(Issued, Issued), PkiError> {
        let mut p = ca_params("server-only-ca");
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let ca = issue("server-only-ca", p, None)?;
        let client = issue(
            "server-only-ca-client",
            client_params(&[cn("eku-client")]),
            Some(&ca),
        )?;
        Ok((ca, client))
    }

    /// Two roots with the same name and key, the first restricted to server authentication,
    /// the second unrestricted, and a client certificate (CN `twin-client`) that chains to
    /// either. Go accepts the client when any chain passes (a bundle during a CA re-issue).
    pub fn twin_roots_with_client(&self) -> Result<(Issued, Issued, Issued), PkiError> {
        let key = KeyPair::generate()?;
        let mut restricted = ca_params("twin-ca");
        restricted.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let unrestricted = ca_params("twin-ca");
        let root = |name, params: CertificateParams| -> Result<Issued, PkiError> {
            let key = KeyPair::from_pem(&key.serialize_pem())?;
            Ok(Issued {
                name,
                cert: params.self_signed(&key)?.der().clone(),
                key,
                intermediates: Vec::new(),
                params,
            })
        };
        let restricted = root("twin-ca-restricted", restricted)?;
        let unrestricted = root("twin-ca-unrestricted", unrestricted)?;
        let client = issue(
            "twin-client",
            client_params(&[cn("twin-client")]),
            Some(&unrestricted),
        )?;
        Ok((restricted, unrestricted, client))
    }

    /// A client certificate (CN `impostor-client`) signed by an impostor of the client CA: a
    /// CA with the client CA's name and a key of its own. Go refuses it as signed by an unknown
    /// authority, the client CA (its candidate issuer) not having made the signature.
    pub fn impostor_client(&self) -> Result<Issued, PkiError> {
        let impostor = issue("impostor-ca", ca_params("kube-authn test client CA"), None)?;
        issue(
            "impostor-client",
            client_params(&[cn("impostor-client")]),
            Some(&impostor),
        )
    }

    /// A certificate (CN `other-server`) for server authentication only, signed by the other
    /// CA: refused for its unknown authority before its usage, as Go builds chains first.
    pub fn other_ca_server_only(&self) -> Result<Issued, PkiError> {
        let mut p = client_params(&[cn("other-server")]);
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        issue("other-ca-server-only", p, Some(&self.other_ca))
    }

    /// An intermediate CA (CN `expired intermediate CA`) signed by the client CA and valid
    /// 2000-01-01 to 2001-01-01, and a valid client certificate (CN `below-expired`) it signed
    /// (the chain holds both).
    pub fn expired_intermediate_with_client(&self) -> Result<Issued, PkiError> {
        let mut p = ca_params("expired intermediate CA");
        p.not_before = date_time_ymd(2000, 1, 1);
        p.not_after = date_time_ymd(2001, 1, 1);
        let intermediate = issue("expired-intermediate-ca", p, Some(&self.client_ca))?;
        let mut client = issue(
            "below-expired",
            client_params(&[cn("below-expired")]),
            Some(&intermediate),
        )?;
        client.intermediates = vec![intermediate.cert.clone()];
        Ok(client)
    }

    /// A root CA (CN `expired root CA`) valid 2000-01-01 to 2001-01-01, and a valid client
    /// certificate (CN `below-expired-root`) it signed.
    pub fn expired_root_with_client(&self) -> Result<(Issued, Issued), PkiError> {
        let mut p = ca_params("expired root CA");
        p.not_before = date_time_ymd(2000, 1, 1);
        p.not_after = date_time_ymd(2001, 1, 1);
        let root = issue("expired-root-ca", p, None)?;
        let client = issue(
            "below-expired-root",
            client_params(&[cn("below-expired-root")]),
            Some(&root),
        )?;
        Ok((root, client))
    }

    /// A client certificate (CN `two-paths`) below an intermediate CA issued twice by the
    /// client CA with the same name and key, valid until `first_until` (the copy sent first)
    /// and until 2120: two paths to the client CA, the first ending before the second (a
    /// renewed intermediate sent along with the old one).
    pub fn client_with_two_intermediate_paths(
        &self,
        first_until: SystemTime,
    ) -> Result<Issued, PkiError> {
        let key = KeyPair::generate()?;
        let since = |t: SystemTime| t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
        let copy = |not_after| -> Result<Issued, PkiError> {
            let mut p = ca_params("two-paths intermediate CA");
            p.not_before = date_time_ymd(2020, 1, 1);
            p.not_after = not_after;
            let key = KeyPair::from_pem(&key.serialize_pem())?;
            Ok(Issued {
                name: "two-paths-intermediate",
                cert: p.signed_by(&key, &self.client_ca.issuer())?.der().clone(),
                key,
                intermediates: Vec::new(),
                params: p,
            })
        };
        let short = copy(date_time_ymd(1970, 1, 1) + since(first_until))?;
        let long = copy(date_time_ymd(2120, 1, 1))?;
        let mut client = issue("two-paths", client_params(&[cn("two-paths")]), Some(&long))?;
        client.intermediates = vec![short.cert.clone(), long.cert.clone()];
        Ok(client)
    }

    /// A new client certificate signed by the client CA with the given subject and validity
    /// (at most two organizations), client-auth usage.
    pub fn issue_client(
        &self,
        name: &'static str,
        common_name: &str,
        organizations: &[&str],
        not_before: SystemTime,
        not_after: SystemTime,
    ) -> Result<Issued, PkiError> {
        self.issue_client_by(
            &self.client_ca,
            name,
            common_name,
            organizations,
            not_before,
            not_after,
        )
    }

    /// [`Self::issue_client_by`] as an X.509 version 1 certificate without extensions, as
    /// `openssl x509 -req` makes it without an extension file.
    pub fn issue_client_v1_by(
        &self,
        issuer: &Issued,
        name: &'static str,
        common_name: &str,
        organizations: &[&str],
        not_before: SystemTime,
        not_after: SystemTime,
    ) -> Result<Issued, PkiError> {
        let issued = self.issue_client_by(
            issuer,
            name,
            common_name,
            organizations,
            not_before,
            not_after,
        )?;
        to_version1(issued, issuer)
    }

    /// [`Self::issue_client`] signed by `issuer` (for example the front-proxy CA).
    pub fn issue_client_by(
        &self,
        issuer: &Issued,
        name: &'static str,
        common_name: &str,
        organizations: &[&str],
        not_before: SystemTime,
        not_after: SystemTime,
    ) -> Result<Issued, PkiError> {
        let mut p = client_params(&[cn(common_name)]);
        for (i, org) in organizations.iter().enumerate() {
            // rcgen keeps one value per type; extra organisations go through placeholders.
            if i == 0 {
                p.distinguished_name.push(DnType::OrganizationName, *org);
            } else if i == 1 {
                p.distinguished_name
                    .push(DnType::CustomDnType(O_OID.to_vec()), *org);
            } else {
                return Err(PkiError::Patch("at most two organizations"));
            }
        }
        let since = |t: SystemTime| t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
        p.not_before = date_time_ymd(1970, 1, 1) + since(not_before);
        p.not_after = date_time_ymd(1970, 1, 1) + since(not_after);
        issue(name, p, Some(issuer))
    }
}

fn serving_params() -> Result<CertificateParams, PkiError> {
    let mut p = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])?;
    p.not_before = date_time_ymd(2020, 1, 1);
    p.not_after = date_time_ymd(2120, 1, 1);
    p.distinguished_name.push(DnType::CommonName, "localhost");
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    p.use_authority_key_identifier_extension = true;
    Ok(p)
}

fn pem(label: &str, der: &[u8]) -> String {
    const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut b64 = String::with_capacity(der.len() * 4 / 3 + 4);
    for chunk in der.chunks(3) {
        let n = chunk.len();
        let v = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= n {
                b64.push(char::from(B64[((v >> (18 - 6 * i)) & 63) as usize]));
            } else {
                b64.push('=');
            }
        }
    }
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// Reads one DER TLV header at the start of `der`: (header length, content length).
fn tlv(der: &[u8]) -> Result<(usize, usize), PkiError> {
    let first = *der.get(1).ok_or(PkiError::Patch("truncated"))?;
    if first < 0x80 {
        return Ok((2, usize::from(first)));
    }
    let n = usize::from(first & 0x7f);
    let bytes = der.get(2..2 + n).ok_or(PkiError::Patch("truncated"))?;
    let len = bytes
        .iter()
        .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
    Ok((2 + n, len))
}

fn encode_len(out: &mut Vec<u8>, len: usize) {
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
}

/// Replaces every occurrence of `from` (an encoded OID) by `to` (same length) in the
/// to-be-signed part of `cert` and signs it again with `key`.
///
/// rcgen writes one attribute per type; this is how the PKI gets several `O` or UID
/// attributes into one name.
fn patch_and_resign(
    cert: &[u8],
    from: &[u8],
    to: &[u8],
    key: &KeyPair,
) -> Result<CertificateDer<'static>, PkiError> {
    if from.len() != to.len() {
        return Err(PkiError::Patch("replacement of another length"));
    }
    let (mut tbs, alg) = split(cert)?;
    let mut found = 0;
    let mut i = 0;
    while i + from.len() <= tbs.len() {
        if &tbs[i..i + from.len()] == from {
            tbs[i..i + from.len()].copy_from_slice(to);
            found += 1;
            i += from.len();
        } else {
            i += 1;
        }
    }
    if found == 0 {
        return Err(PkiError::Patch("placeholder not found"));
    }
    sign(tbs, alg, key)
}

/// The to-be-signed part of `cert` (whole element) and its signature algorithm (whole element).
fn split(cert: &[u8]) -> Result<(Vec<u8>, &[u8]), PkiError> {
    let (outer_header, _) = tlv(cert)?;
    let body = cert
        .get(outer_header..)
        .ok_or(PkiError::Patch("truncated"))?;
    let (tbs_header, tbs_len) = tlv(body)?;
    let tbs_end = tbs_header + tbs_len;
    let tbs = body
        .get(..tbs_end)
        .ok_or(PkiError::Patch("truncated"))?
        .to_vec();
    let rest = &body[tbs_end..];
    let (alg_header, alg_len) = tlv(rest)?;
    let alg = rest
        .get(..alg_header + alg_len)
        .ok_or(PkiError::Patch("truncated"))?;
    Ok((tbs, alg))
}

/// Rewrites `issued` as an X.509 version 1 certificate: no `version` field and no extensions
/// (what `openssl x509 -req` makes without an extension file), signed again by `issuer`.
fn to_version1(mut issued: Issued, issuer: &Issued) -> Result<Issued, PkiError> {
    let (tbs, alg) = split(&issued.cert)?;
    let (header, len) = tlv(&tbs)?;
    let mut fields = tbs
        .get(header..header + len)
        .ok_or(PkiError::Patch("truncated"))?;
    let mut kept = Vec::new();
    while !fields.is_empty() {
        let (h, l) = tlv(fields)?;
        let field = fields.get(..h + l).ok_or(PkiError::Patch("truncated"))?;
        // [0] version, [1] issuerUniqueID, [2] subjectUniqueID, [3] extensions.
        if !matches!(field[0], 0xa0 | 0x81 | 0x82 | 0xa1 | 0xa2 | 0xa3) {
            kept.extend_from_slice(field);
        }
        fields = &fields[h + l..];
    }
    let mut v1 = vec![0x30];
    encode_len(&mut v1, kept.len());
    v1.extend_from_slice(&kept);
    issued.cert = sign(v1, alg, &issuer.key)?;
    Ok(issued)
}

/// A certificate of `tbs` (whole element) signed by `key` with the algorithm `alg` (whole
/// element, as the issuer's key uses it).
fn sign(tbs: Vec<u8>, alg: &[u8], key: &KeyPair) -> Result<CertificateDer<'static>, PkiError> {
    use rcgen::SigningKey;
    let signature = key.sign(&tbs)?;

    let mut bit_string = vec![0x03];
    encode_len(&mut bit_string, signature.len() + 1);
    bit_string.push(0);
    bit_string.extend_from_slice(&signature);

    let mut content = tbs;
    content.extend_from_slice(alg);
    content.extend_from_slice(&bit_string);
    let mut out = vec![0x30];
    encode_len(&mut out, content.len());
    out.extend_from_slice(&content);
    Ok(CertificateDer::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generates_and_writes() {
        let pki = TestPki::shared();
        let dir = std::env::temp_dir().join(format!("kube-authn-pki-{}", std::process::id()));
        pki.write_to(&dir).unwrap();
        let jbeda = fs::read_to_string(dir.join("jbeda.crt")).unwrap();
        assert!(jbeda.starts_with("-----BEGIN CERTIFICATE-----\n"));
        let key = fs::read_to_string(dir.join("jbeda.key")).unwrap();
        assert!(key.starts_with("-----BEGIN PRIVATE KEY-----"));
        let chain = fs::read_to_string(dir.join("jbeda-via-intermediate-chain.crt")).unwrap();
        assert_eq!(chain.matches("BEGIN CERTIFICATE").count(), 2);
        assert_eq!(pki.via_intermediate.chain().len(), 2);
        assert_eq!(pki.jbeda.chain().len(), 1);
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn pem_matches_rcgen() {
        let pki = TestPki::shared();
        // rcgen's own PEM of a freshly generated certificate uses the same layout.
        let p = valid_params();
        let key = KeyPair::generate().unwrap();
        let cert = p.self_signed(&key).unwrap();
        assert_eq!(
            pem("CERTIFICATE", cert.der()),
            cert.pem().replace("\r\n", "\n")
        );
        assert!(pki.multi_uid.cert_pem().contains("BEGIN CERTIFICATE"));
    }

    #[test]
    fn patched_names_have_repeated_attributes() {
        let pki = TestPki::shared();
        let groups = pki.ca_with_groups.cert_der();
        assert_eq!(
            count(&groups, O_DER),
            2 * 3,
            "subject and issuer each hold three O"
        );
        assert_eq!(count(&pki.multi_uid.cert_der(), UID_DER), 2);
        assert_eq!(count(&pki.jbeda.cert_der(), O_DER), 2);
    }

    fn count(hay: &[u8], needle: &[u8]) -> usize {
        hay.windows(needle.len()).filter(|w| *w == needle).count()
    }
}
