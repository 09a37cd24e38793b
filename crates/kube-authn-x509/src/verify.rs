//! Chain verification against one CA pool (rustls-webpki), with Go's `x509.Verify` semantics
//! for extended key usage, and the per-request validity check.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use rustls_pki_types::{CertificateDer, TrustAnchor, UnixTime};
use webpki::{
    EndEntityCert, ExtendedKeyUsageValidator, KeyPurposeId, KeyPurposeIdIter, KeyUsage,
    RequiredEkuNotFoundContext,
};

use crate::der::RawCert;
use crate::identity::Usages;
use crate::peer::{MemoKey, PeerCertificates};
use crate::pool::{CaBundle, CaPool};

const EKU_SERVER_AUTH: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x01];
const EKU_CLIENT_AUTH: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x02];
/// `anyExtendedKeyUsage` (2.5.29.37.0).
const EKU_ANY: &[u8] = &[0x55, 0x1d, 0x25, 0x00];

/// The extended key usage a client certificate chain must allow.
///
/// As Go's `x509.Verify` does, a certificate without the extended key usage extension, or with
/// `anyExtendedKeyUsage`, allows every usage, and the usage is checked on every certificate of
/// the chain (intermediates included).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum RequiredUsage {
    /// TLS client authentication (`1.3.6.1.5.5.7.3.2`): what Kubernetes requires.
    #[default]
    ClientAuth,
    /// TLS server authentication: what Go verifies when `VerifyOptions.KeyUsages` is empty.
    /// Only for porting tests; a client certificate authenticator should never use it.
    ServerAuth,
}

impl RequiredUsage {
    fn oid(self) -> &'static [u8] {
        match self {
            Self::ClientAuth => EKU_CLIENT_AUTH,
            Self::ServerAuth => EKU_SERVER_AUTH,
        }
    }

    pub(crate) fn memo_id(self) -> u8 {
        match self {
            Self::ClientAuth => 0,
            Self::ServerAuth => 1,
        }
    }

    fn webpki(self) -> KeyUsage {
        match self {
            Self::ClientAuth => KeyUsage::client_auth(),
            Self::ServerAuth => KeyUsage::server_auth(),
        }
    }
}

impl ExtendedKeyUsageValidator for RequiredUsage {
    fn validate(&self, iter: KeyPurposeIdIter<'_, '_>) -> Result<(), webpki::Error> {
        let wanted = KeyPurposeId::new(self.oid());
        let any = KeyPurposeId::new(EKU_ANY);
        let mut present = Vec::new();
        for id in iter {
            let id = id?;
            if id == wanted || id == any {
                return Ok(());
            }
            present.push(id.to_decoded_oid());
        }
        if present.is_empty() {
            // No extension (or, for webpki, an empty one): every usage is allowed.
            return Ok(());
        }
        Err(webpki::Error::RequiredEkuNotFoundContext(
            RequiredEkuNotFoundContext {
                required: self.webpki(),
                present,
            },
        ))
    }
}

/// The intersection of the validity periods of a chain, in seconds since the Unix epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Validity {
    pub(crate) not_before: i64,
    pub(crate) not_after: i64,
}

impl Validity {
    #[cfg(test)]
    pub(crate) const ALWAYS: Self = Self {
        not_before: i64::MIN,
        not_after: i64::MAX,
    };

    pub(crate) fn intersect(self, other: Self) -> Self {
        Self {
            not_before: self.not_before.max(other.not_before),
            not_after: self.not_after.min(other.not_after),
        }
    }

    /// Go's rule: invalid when `now` is before notBefore or after notAfter.
    pub(crate) fn check(self, now: UnixTime) -> Result<(), Reason> {
        let now = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
        if now < self.not_before {
            Err(Reason::NotYetValid {
                now,
                not_before: self.not_before,
            })
        } else if now > self.not_after {
            Err(Reason::Expired {
                now,
                not_after: self.not_after,
            })
        } else {
            Ok(())
        }
    }
}

/// Why a chain was refused. Displayed with Go's wording.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Reason {
    UnknownAuthority,
    /// Go's `UnknownAuthorityError` with its hint: what refused the candidate issuer it tried.
    UnknownAuthorityBecause {
        hint: Hint,
        candidate: String,
    },
    Expired {
        now: i64,
        not_after: i64,
    },
    NotYetValid {
        now: i64,
        not_before: i64,
    },
    IncompatibleUsage,
    Malformed,
    Other(webpki::Error),
}

/// Why a candidate issuer was refused while a chain was built.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Hint {
    /// Its validity dates.
    Dates(Box<Reason>),
    /// Its key did not make the signature (Go's message for the key's algorithm).
    Signature(&'static str),
}

impl fmt::Display for Hint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Dates(reason) => reason.fmt(f),
            Self::Signature(message) => f.write_str(message),
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownAuthority => f.write_str("x509: certificate signed by unknown authority"),
            Self::UnknownAuthorityBecause { hint, candidate } => write!(
                f,
                "x509: certificate signed by unknown authority (possibly because of {:?} while \
                 trying to verify candidate authority certificate {candidate:?})",
                hint.to_string()
            ),
            Self::Expired { now, not_after } => write!(
                f,
                "x509: certificate has expired or is not yet valid: current time {} is after {}",
                Rfc3339(*now),
                Rfc3339(*not_after)
            ),
            Self::NotYetValid { now, not_before } => write!(
                f,
                "x509: certificate has expired or is not yet valid: current time {} is before {}",
                Rfc3339(*now),
                Rfc3339(*not_before)
            ),
            Self::IncompatibleUsage => {
                f.write_str("x509: certificate specifies an incompatible key usage")
            }
            Self::Malformed => f.write_str("x509: malformed certificate"),
            Self::Other(webpki::Error::CaUsedAsEndEntity) => {
                f.write_str("x509: a CA certificate cannot be used as a client certificate")
            }
            Self::Other(e) => write!(f, "x509: certificate is not valid: {e}"),
        }
    }
}

impl From<webpki::Error> for Reason {
    #[allow(deprecated)]
    fn from(e: webpki::Error) -> Self {
        use webpki::Error as E;
        match e {
            E::UnknownIssuer => Self::UnknownAuthority,
            E::CertExpired { time, not_after } => Self::Expired {
                now: secs(time),
                not_after: secs(not_after),
            },
            E::CertNotValidYet { time, not_before } => Self::NotYetValid {
                now: secs(time),
                not_before: secs(not_before),
            },
            E::RequiredEkuNotFound | E::RequiredEkuNotFoundContext(_) => Self::IncompatibleUsage,
            E::BadDer | E::BadDerTime | E::TrailingData(_) => Self::Malformed,
            e => Self::Other(e),
        }
    }
}

fn secs(t: UnixTime) -> i64 {
    i64::try_from(t.as_secs()).unwrap_or(i64::MAX)
}

fn unix(secs: i64) -> UnixTime {
    UnixTime::since_unix_epoch(std::time::Duration::from_secs(secs.max(0).unsigned_abs()))
}

/// The memoizable outcome of verifying a chain against a pool.
#[derive(Debug)]
pub(crate) enum ChainResult {
    /// A path to a trust anchor exists; the chain's dates still have to be checked per request.
    Verified(Validity),
    /// No acceptable path.
    Rejected(Reason),
}

impl ChainResult {
    /// Whether the result holds for the rest of the connection (for this CA generation).
    /// Time-dependent refusals do not (a not-yet-valid chain may become valid during the
    /// connection): the memo reuses them briefly only.
    pub(crate) fn is_cacheable(&self) -> bool {
        !matches!(
            self,
            Self::Rejected(
                Reason::Expired { .. }
                    | Reason::NotYetValid { .. }
                    | Reason::UnknownAuthorityBecause {
                        hint: Hint::Dates(_),
                        ..
                    }
            )
        )
    }
}

/// Verifies `chain` (leaf first, intermediates after) against `pool` at `now`.
///
/// On success the result holds the intersection of the validity periods of every certificate
/// of the path that was found, the trust anchor's own certificate included (Go checks the
/// root's dates and extended key usages too; webpki does not).
pub(crate) fn verify_chain(
    pool: &CaPool,
    chain: &[CertificateDer<'_>],
    now: UnixTime,
    usage: RequiredUsage,
) -> ChainResult {
    let Some(leaf) = chain.first() else {
        return ChainResult::Rejected(Reason::Malformed);
    };
    let Some(mut validity) = crate::identity::validity_of(leaf) else {
        return ChainResult::Rejected(Reason::Malformed);
    };
    let Some(raw) = RawCert::parse(leaf) else {
        return ChainResult::Rejected(Reason::Malformed);
    };
    // Go checks the leaf's own dates before it looks for an issuer.
    if let Err(reason) = validity.check(now) {
        return ChainResult::Rejected(reason);
    }
    if raw.version1 {
        // webpki reads version 3 only; Go accepts what `openssl x509 -req` makes.
        return verify_direct(pool, leaf, &raw, validity, now, usage);
    }
    let end_entity = match EndEntityCert::try_from(leaf) {
        Ok(ee) => ee,
        Err(webpki::Error::CaUsedAsEndEntity) => {
            return verify_direct(pool, leaf, &raw, validity, now, usage);
        }
        Err(e) => return ChainResult::Rejected(e.into()),
    };
    let intermediates = chain.get(1..).unwrap_or_default();
    let path = match find_path(pool, &end_entity, intermediates, now, Some(usage)) {
        Ok(path) => path,
        // Go verifies a CA certificate presented as the client certificate like any other.
        Err(webpki::Error::CaUsedAsEndEntity) => {
            return verify_direct(pool, leaf, &raw, validity, now, usage);
        }
        Err(e) => {
            return ChainResult::Rejected(go_refusal(
                pool,
                &end_entity,
                &raw,
                intermediates,
                now,
                e,
            ));
        }
    };
    for cert in path.intermediate_certificates() {
        match crate::identity::validity_of(&cert.der()) {
            Some(v) => validity = validity.intersect(v),
            None => return ChainResult::Rejected(Reason::Malformed),
        }
    }
    // The root's dates also bound the per-request check (a root can expire mid-connection).
    let Some(anchor) = anchor_index(pool, &path) else {
        return ChainResult::Rejected(Reason::UnknownAuthority);
    };
    if let Some(v) = pool.anchor_validity(anchor) {
        validity = validity.intersect(v);
    }
    match validity.check(now) {
        Ok(()) => ChainResult::Verified(validity),
        Err(reason) => ChainResult::Rejected(reason),
    }
}

/// The usage a path must allow, or any usage (`None`: to learn whether a chain exists at all).
struct PathUsage(Option<RequiredUsage>);

impl ExtendedKeyUsageValidator for PathUsage {
    fn validate(&self, iter: KeyPurposeIdIter<'_, '_>) -> Result<(), webpki::Error> {
        match self.0 {
            Some(usage) => usage.validate(iter),
            None => Ok(()),
        }
    }
}

/// The index in `pool` of the trust anchor `path` ends at.
fn anchor_index(pool: &CaPool, path: &webpki::VerifiedPath<'_>) -> Option<usize> {
    let anchor = path.anchor();
    pool.anchors().iter().position(|a| std::ptr::eq(a, anchor))
}

/// A path from `end_entity` to one of `pool`'s anchors through `intermediates`, allowing
/// `usage` (any usage when `None`).
///
/// Go accepts a chain when any of the paths it can build passes, and checks the usages and
/// dates of every certificate, the root's included; webpki's trust anchors keep neither, so
/// they are checked on each path found, and refusing one makes webpki try the next (another
/// root with the same name).
fn find_path<'p>(
    pool: &'p CaPool,
    end_entity: &'p EndEntityCert<'p>,
    intermediates: &'p [CertificateDer<'p>],
    now: UnixTime,
    usage: Option<RequiredUsage>,
) -> Result<webpki::VerifiedPath<'p>, webpki::Error> {
    let anchor_ok = |path: &webpki::VerifiedPath<'_>| -> Result<(), webpki::Error> {
        // webpki hands back a reference into the anchors it was given; should that ever
        // change, refuse rather than skip the root's checks.
        let Some(i) = anchor_index(pool, path) else {
            return Err(webpki::Error::UnknownIssuer);
        };
        if let Some(usage) = usage
            && pool.anchor_usages(i).is_some_and(|u| !u.allows(usage))
        {
            #[allow(deprecated)]
            return Err(webpki::Error::RequiredEkuNotFound);
        }
        match pool.anchor_validity(i).map(|v| v.check(now)) {
            Some(Err(Reason::Expired { not_after, .. })) => Err(webpki::Error::CertExpired {
                time: now,
                not_after: unix(not_after),
            }),
            Some(Err(Reason::NotYetValid { not_before, .. })) => {
                Err(webpki::Error::CertNotValidYet {
                    time: now,
                    not_before: unix(not_before),
                })
            }
            _ => Ok(()),
        }
    };
    end_entity.verify_for_usage(
        webpki::ALL_VERIFICATION_ALGS,
        pool.anchors(),
        intermediates,
        now,
        PathUsage(usage),
        None,
        Some(&anchor_ok),
    )
}

/// Go's reason for a chain webpki refused (the leaf's own dates passed).
///
/// webpki checks each certificate's usages and dates before it looks for the certificate's
/// issuer; Go builds the chains first, reporting an issuer refused for its dates or its
/// signature as the hint of an unknown authority, and checks the usages on the chains it
/// found. So a usage refusal is Go's only when a chain exists for any usage, and a date or
/// signature refusal (of a certificate other than the leaf) is an unknown authority.
fn go_refusal(
    pool: &CaPool,
    end_entity: &EndEntityCert<'_>,
    leaf: &RawCert<'_>,
    intermediates: &[CertificateDer<'_>],
    now: UnixTime,
    error: webpki::Error,
) -> Reason {
    use webpki::Error as E;
    #[allow(deprecated)]
    let error = match error {
        E::RequiredEkuNotFound | E::RequiredEkuNotFoundContext(_) => {
            match find_path(pool, end_entity, intermediates, now, None) {
                Ok(_) => return Reason::IncompatibleUsage,
                Err(other) => other,
            }
        }
        other => other,
    };
    #[allow(deprecated)]
    match error {
        E::CertExpired { not_after, .. } => {
            let not_after = secs(not_after);
            dated_candidate(pool, intermediates, now, |v| v.not_after == not_after)
        }
        E::CertNotValidYet { not_before, .. } => {
            let not_before = secs(not_before);
            dated_candidate(pool, intermediates, now, |v| v.not_before == not_before)
        }
        E::InvalidSignatureForPublicKey
        | E::UnsupportedSignatureAlgorithmForPublicKey
        | E::UnsupportedSignatureAlgorithmForPublicKeyContext(_) => {
            signature_candidate(pool, leaf, intermediates)
        }
        // Refusals of the chain's usages are Go's too.
        E::RequiredEkuNotFound | E::RequiredEkuNotFoundContext(_) => Reason::IncompatibleUsage,
        other => other.into(),
    }
}

/// An unknown authority whose hint is the dates of the first issuer certificate (one the
/// client sent, then one of the pool) that `matches` the refused dates and is invalid `now`.
fn dated_candidate(
    pool: &CaPool,
    intermediates: &[CertificateDer<'_>],
    now: UnixTime,
    matches: impl Fn(Validity) -> bool,
) -> Reason {
    intermediates
        .iter()
        .chain(pool.certificates())
        .find_map(|der| {
            let validity = crate::identity::validity_of(der).filter(|v| matches(*v))?;
            let reason = validity.check(now).err()?;
            Some(Reason::UnknownAuthorityBecause {
                hint: Hint::Dates(Box::new(reason)),
                candidate: crate::identity::go_cert_name(der)?,
            })
        })
        .unwrap_or(Reason::UnknownAuthority)
}

/// An unknown authority whose hint is a signature the leaf's candidate issuer (a certificate
/// named as the leaf's issuer: one the client sent, then one of the pool) did not make.
fn signature_candidate(
    pool: &CaPool,
    leaf: &RawCert<'_>,
    intermediates: &[CertificateDer<'_>],
) -> Reason {
    let sent = intermediates
        .iter()
        .filter(|der| RawCert::parse(der).is_some_and(|c| c.subject == leaf.issuer));
    let trusted = pool
        .anchors()
        .iter()
        .zip(pool.certificates())
        .filter(|(anchor, _)| anchor.subject.as_ref() == leaf.issuer)
        .map(|(_, der)| der);
    sent.chain(trusted)
        .find_map(|der| {
            Some(Reason::UnknownAuthorityBecause {
                hint: Hint::Signature(crate::identity::go_signature_failure(der)),
                candidate: crate::identity::go_cert_name(der)?,
            })
        })
        .unwrap_or(Reason::UnknownAuthority)
}

/// Verifies, without webpki, a leaf webpki will not take as an end entity (an X.509 version 1
/// certificate, a CA certificate) but Go's `x509.Verify` accepts: the leaf must be one of the
/// pool's certificates itself, or be signed directly by one of them (same issuer name, the
/// signature checked with the CA's key). Longer paths through intermediates are refused
/// (unknown authority), as is an issuing CA with name constraints (webpki would have enforced
/// them). Usages and dates are checked on the leaf and the CA as on any other path.
fn verify_direct(
    pool: &CaPool,
    leaf: &CertificateDer<'_>,
    raw: &RawCert<'_>,
    leaf_validity: Validity,
    now: UnixTime,
    usage: RequiredUsage,
) -> ChainResult {
    let Some(leaf_usages) = Usages::of(leaf) else {
        return ChainResult::Rejected(Reason::Malformed);
    };
    // As Go: the candidate issuers first (one refused for its signature or dates is the hint of
    // an unknown authority), the usages on the chains found.
    let mut refusal = Reason::UnknownAuthority;
    for (i, (anchor, cert)) in pool.anchors().iter().zip(pool.certificates()).enumerate() {
        let is_the_anchor = cert.as_ref() == leaf.as_ref();
        if !is_the_anchor {
            if anchor.subject.as_ref() != raw.issuer || anchor.name_constraints.is_some() {
                continue;
            }
            if !signed_by(raw, anchor) {
                if let Some(candidate) = crate::identity::go_cert_name(cert) {
                    refusal = Reason::UnknownAuthorityBecause {
                        hint: Hint::Signature(crate::identity::go_signature_failure(cert)),
                        candidate,
                    };
                }
                continue;
            }
        }
        let anchor_validity = pool.anchor_validity(i);
        if let Some(Err(reason)) = anchor_validity.map(|v| v.check(now)) {
            refusal = match crate::identity::go_cert_name(cert) {
                // The leaf itself is the anchor: its own dates (checked before) refuse it.
                Some(_) if is_the_anchor => reason,
                Some(candidate) => Reason::UnknownAuthorityBecause {
                    hint: Hint::Dates(Box::new(reason)),
                    candidate,
                },
                None => Reason::UnknownAuthority,
            };
            continue;
        }
        if !leaf_usages.allows(usage) || pool.anchor_usages(i).is_some_and(|u| !u.allows(usage)) {
            refusal = Reason::IncompatibleUsage;
            continue;
        }
        let validity = anchor_validity.map_or(leaf_validity, |v| leaf_validity.intersect(v));
        return ChainResult::Verified(validity);
    }
    ChainResult::Rejected(refusal)
}

/// Whether `anchor`'s key made the signature of `raw`, with the algorithm `raw` names.
fn signed_by(raw: &RawCert<'_>, anchor: &TrustAnchor<'_>) -> bool {
    let spki = webpki::spki_for_anchor(anchor);
    let Ok(key) = webpki::RawPublicKeyEntity::try_from(&spki) else {
        return false;
    };
    webpki::ALL_VERIFICATION_ALGS
        .iter()
        .filter(|alg| alg.signature_alg_id().as_ref() == raw.signature_alg)
        .any(|alg| key.verify_signature(*alg, raw.tbs, raw.signature).is_ok())
}

/// A source of the current time (tests move it).
pub type Clock = Arc<dyn Fn() -> UnixTime + Send + Sync>;

pub(crate) fn system_clock() -> Clock {
    Arc::new(UnixTime::now)
}

/// What both certificate authenticators share: their own CA bundle, the usage the chain must
/// allow, the clock and the count of chain verifications (shared by clones).
#[derive(Clone)]
pub(crate) struct ChainPolicy {
    pub(crate) ca: CaBundle,
    pub(crate) usage: RequiredUsage,
    pub(crate) clock: Clock,
    verifications: Arc<AtomicU64>,
}

impl ChainPolicy {
    pub(crate) fn new(ca: CaBundle) -> Self {
        Self {
            ca,
            usage: RequiredUsage::ClientAuth,
            clock: system_clock(),
            verifications: Arc::new(AtomicU64::new(0)),
        }
    }

    pub(crate) fn now(&self) -> UnixTime {
        (self.clock)()
    }

    /// Verifies the connection's chain against the current pool at `now` (memoized per
    /// connection and CA generation; dates checked every time).
    pub(crate) fn check(&self, peers: &PeerCertificates, now: UnixTime) -> Result<(), Reason> {
        check_peer(
            peers,
            &self.ca.guard(),
            self.usage,
            now,
            &self.verifications,
        )
    }

    pub(crate) fn verifications(&self) -> u64 {
        self.verifications.load(Ordering::Relaxed)
    }
}

pub(crate) fn check_peer(
    peers: &PeerCertificates,
    pool: &CaPool,
    usage: RequiredUsage,
    now: UnixTime,
    counter: &AtomicU64,
) -> Result<(), Reason> {
    let key = MemoKey {
        generation: pool.generation(),
        usage: usage.memo_id(),
    };
    let verify = || {
        counter.fetch_add(1, Ordering::Relaxed);
        verify_chain(pool, peers.chain(), now, usage)
    };
    let result = peers.memoized(key, verify);
    let reason = match &*result {
        ChainResult::Verified(validity) => match validity.check(now) {
            Ok(()) => return Ok(()),
            Err(reason) => reason,
        },
        ChainResult::Rejected(reason) => return Err(reason.clone()),
    };
    // The path found earlier is out of its dates. When that is the leaf's own, no other path
    // can help; otherwise an intermediate or root of it expired (or is not valid yet), and Go,
    // which verifies on every request, would take another path if there is one (a
    // cross-signed intermediate the client also sent, a renewed root of the pool).
    let leaf_valid = peers
        .leaf_info()
        .and_then(|info| info.validity)
        .is_some_and(|v| v.check(now).is_ok());
    if !leaf_valid {
        return Err(reason);
    }
    match &*peers.reverified(key, &result, verify) {
        ChainResult::Verified(validity) => validity.check(now),
        ChainResult::Rejected(reason) => Err(reason.clone()),
    }
}

/// Formats seconds since the Unix epoch as RFC 3339 UTC (`2001-01-01T00:00:00Z`), as Go's
/// `time.Time.Format(time.RFC3339)` does for UTC times.
pub(crate) struct Rfc3339(pub(crate) i64);

impl fmt::Display for Rfc3339 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let days = self.0.div_euclid(86_400);
        let rem = self.0.rem_euclid(86_400);
        // Howard Hinnant's civil_from_days.
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + i64::from(month <= 2);
        write!(
            f,
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
            rem / 3600,
            rem % 3600 / 60,
            rem % 60
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339() {
        assert_eq!(Rfc3339(0).to_string(), "1970-01-01T00:00:00Z");
        assert_eq!(Rfc3339(662_687_940).to_string(), "1990-12-31T23:59:00Z");
        assert_eq!(Rfc3339(951_782_400).to_string(), "2000-02-29T00:00:00Z");
        assert_eq!(Rfc3339(4_102_444_800).to_string(), "2100-01-01T00:00:00Z");
        assert_eq!(Rfc3339(-1).to_string(), "1969-12-31T23:59:59Z");
    }

    #[test]
    fn validity_check_is_inclusive_like_go() {
        let v = Validity {
            not_before: 10,
            not_after: 20,
        };
        assert!(
            v.check(UnixTime::since_unix_epoch(std::time::Duration::from_secs(
                10
            )))
            .is_ok()
        );
        assert!(
            v.check(UnixTime::since_unix_epoch(std::time::Duration::from_secs(
                20
            )))
            .is_ok()
        );
        assert!(matches!(
            v.check(UnixTime::since_unix_epoch(std::time::Duration::from_secs(
                21
            ))),
            Err(Reason::Expired { .. })
        ));
        assert!(matches!(
            v.check(UnixTime::since_unix_epoch(std::time::Duration::from_secs(
                9
            ))),
            Err(Reason::NotYetValid { .. })
        ));
    }

    #[test]
    fn time_refusals_are_not_memoized() {
        assert!(
            !ChainResult::Rejected(Reason::Expired {
                now: 0,
                not_after: 0
            })
            .is_cacheable()
        );
        assert!(ChainResult::Rejected(Reason::UnknownAuthority).is_cacheable());
        // An issuer refused for its dates may become valid too; one refused for its signature
        // will not.
        let expired = Reason::Expired {
            now: 10,
            not_after: 5,
        };
        assert!(
            !ChainResult::Rejected(Reason::UnknownAuthorityBecause {
                hint: Hint::Dates(Box::new(expired)),
                candidate: "ca".into(),
            })
            .is_cacheable()
        );
        assert!(
            ChainResult::Rejected(Reason::UnknownAuthorityBecause {
                hint: Hint::Signature("x509: ECDSA verification failure"),
                candidate: "ca".into(),
            })
            .is_cacheable()
        );
    }
}
