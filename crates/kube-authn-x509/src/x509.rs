//! The client-certificate authenticator (kube-apiserver `--client-ca-file`, Kubernetes
//! `pkg/authentication/request/x509`).

use std::fmt;

use http::request::Parts;
use kube_authn_core::{
    AuthenticateRequest, Authenticated, AuthnError, AuthnFuture, AuthnResult, RequestHead,
    RequestOutcome,
};

use crate::peer::PeerCertificates;
use crate::pool::CaBundle;
pub use crate::verify::Clock;
use crate::verify::{ChainPolicy, RequiredUsage};

/// Authenticates requests by the client certificate of their connection.
///
/// Reads the [`PeerCertificates`] extension (no extension or an empty chain: no credential of
/// this kind). The chain (leaf first, then the intermediates the client sent) must lead to a
/// certificate of this authenticator's own [`CaBundle`] and allow TLS client authentication
/// ([`RequiredUsage`]); then the leaf's last common name is the user name, each organization
/// (`O`) a group, the UID attribute (`1.3.6.1.4.1.57683.2`) the uid, and the extra
/// `authentication.kubernetes.io/credential-id` is `X509SHA256=<hex sha256 of the leaf>`. A
/// certificate without a common name is no credential of this kind.
///
/// The chain is verified once per connection and CA generation (the result is kept in the
/// connection's [`PeerCertificates`]); the validity dates of every certificate of the verified
/// path (the CA's own included) are checked on every request, so a certificate that expires
/// during a long connection stops working.
///
/// Failures are errors with Kubernetes' message,
/// `verifying certificate SN=<decimal>, SKID=<hex>, AKID=<hex> failed: <reason>`, where the
/// reason is Go's: `x509: certificate signed by unknown authority`,
/// `x509: certificate has expired or is not yet valid: current time ... is after ...`,
/// `x509: certificate specifies an incompatible key usage`, ...
///
/// # Metrics
/// Every request with a client certificate observes how long the leaf remains valid in the
/// histogram `apiserver_client_certificate_expiration_seconds` (Kubernetes' name and
/// behaviour), through the `metrics` recorder installed when the authenticator is built. A
/// recorder that buffers observations, such as `metrics-exporter-prometheus` installed with
/// `install_recorder`, must be drained periodically (`PrometheusHandle::run_upkeep`) or scraped.
///
/// # Differences from Go's `x509.Verify`
/// Verification is rustls-webpki's: certificates with unknown critical extensions are refused;
/// name constraints are enforced as webpki does; signature algorithms are those of aws-lc-rs
/// (RSA >= 2048 bits, ECDSA P-256/P-384/P-521, Ed25519). Extended key usage follows Go (no
/// extension or `anyExtendedKeyUsage` allows client authentication, checked along the whole
/// chain), and, as in Go, the trust anchor's own validity dates are checked.
///
/// Two kinds of leaf webpki will not take are verified here as Go does, on a short path only:
/// X.509 version 1 certificates (what `openssl x509 -req` makes without an extension file, as
/// in the Kubernetes documentation) and CA certificates presented as the client certificate
/// (Kubernetes' own test passes a self-signed CA of the pool). Such a leaf must be a
/// certificate of the bundle itself or be signed directly by one; below an intermediate it is
/// refused as signed by an unknown authority, as it is when the issuing CA carries name
/// constraints.
#[derive(Clone)]
pub struct X509Authenticator {
    policy: ChainPolicy,
    /// `apiserver_client_certificate_expiration_seconds` (notAfter − now of each presented
    /// leaf); taken from the `metrics` recorder installed when the authenticator is built.
    expiration: metrics::Histogram,
}

impl X509Authenticator {
    /// An authenticator trusting `ca` (requires the client-auth usage).
    pub fn new(ca: CaBundle) -> Self {
        Self {
            policy: ChainPolicy::new(ca),
            expiration: metrics::histogram!("apiserver_client_certificate_expiration_seconds"),
        }
    }

    /// The extended key usage the chain must allow (default [`RequiredUsage::ClientAuth`]).
    #[must_use]
    pub fn required_usage(mut self, usage: RequiredUsage) -> Self {
        self.policy.usage = usage;
        self
    }

    /// The clock validity dates are checked against (default: the system clock).
    #[must_use]
    pub fn clock(mut self, clock: Clock) -> Self {
        self.policy.clock = clock;
        self
    }

    /// The CA bundle.
    pub fn ca(&self) -> &CaBundle {
        &self.policy.ca
    }

    /// How many chain verifications this authenticator (and its clones) performed so far: one
    /// per connection and CA generation, however many requests the connection carries.
    pub fn verifications(&self) -> u64 {
        self.policy.verifications()
    }

    fn authenticate(&self, parts: &Parts) -> AuthnResult {
        let Some(peers) = parts.extensions.get::<PeerCertificates>() else {
            return Ok(None);
        };
        let Some(info) = peers.leaf_info() else {
            return Ok(None);
        };
        let now = self.policy.now();
        // Kubernetes observes how long the presented certificate remains valid, per request.
        if let Some(not_after) = info.validity.map(|v| v.not_after) {
            let secs = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
            self.expiration
                .record(not_after.saturating_sub(secs) as f64);
        }
        if let Err(reason) = self.policy.check(peers, now) {
            tracing::debug!(
                target: "kube_authn::x509",
                certificate = %info.identifier,
                %reason,
                "client certificate refused"
            );
            return Err(AuthnError::invalid(format!(
                "verifying certificate {} failed: {reason}",
                info.identifier
            )));
        }
        if !info.parsed {
            return Err(AuthnError::invalid(format!(
                "verifying certificate {} failed: x509: malformed certificate",
                info.identifier
            )));
        }
        match &info.user {
            Ok(Some(user)) => Ok(Some(Authenticated::new(user.clone_with_group_room()))),
            Ok(None) => Ok(None),
            Err(e) => Err(AuthnError::invalid(e.to_string())),
        }
    }
}

impl AuthenticateRequest for X509Authenticator {
    fn authenticate_request(&self, parts: RequestHead) -> AuthnFuture<RequestOutcome> {
        let result = self.authenticate(&parts);
        AuthnFuture::ready(RequestOutcome::new(parts, result))
    }

    fn name(&self) -> &'static str {
        "x509"
    }
}

impl fmt::Debug for X509Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("X509Authenticator")
            .field("ca", &self.policy.ca)
            .field("usage", &self.policy.usage)
            .field("verifications", &self.verifications())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls_pki_types::UnixTime;
    use std::sync::Arc;
    use std::sync::atomic::Ordering;
    use std::time::{Duration, UNIX_EPOCH};

    /// 1990-01-01: UnixTime cannot go 100 years back from now as upstream's "future cert"
    /// does; any time before the certificates' 2020 notBefore is equivalent.
    const BEFORE_2020: u64 = 631_152_000;
    use crate::pool::CaPool;
    use crate::testing::{at, request_with};
    use kube_authn_core::{CREDENTIAL_ID_KEY, UserInfo};
    use kube_authn_testing::{Issued, TestPki};
    use rustls_pki_types::CertificateDer;

    fn bundle(cas: &[&Issued]) -> CaBundle {
        CaBundle::from_pool(
            CaPool::from_der("ca.crt", cas.iter().map(|c| c.cert_der()).collect()).unwrap(),
        )
    }

    fn run(auth: &X509Authenticator, chain: Option<Vec<CertificateDer<'static>>>) -> AuthnResult {
        auth.authenticate_request(request_with(chain.map(PeerCertificates::new)))
            .into_ready()
            .ok()
            .unwrap()
            .result
    }

    fn credential(issued: &Issued) -> String {
        crate::identity::credential_id(&issued.cert_der())
    }

    fn user(name: &str, uid: &str, groups: &[&str], issued: &Issued) -> UserInfo {
        let mut u = UserInfo::new(name)
            .with_uid(uid)
            .with_groups(groups.iter().copied());
        u.extra
            .insert(CREDENTIAL_ID_KEY.to_owned(), vec![credential(issued)]);
        u
    }

    enum Want {
        NoOpinion,
        User(UserInfo),
        Error(&'static str),
    }

    #[test]
    fn an_unreadable_common_name_makes_the_certificate_unusable() {
        let pki = TestPki::shared();
        let odd = pki
            .issue_with_unreadable_cn("odd-cn", &pki.client_ca, "jbeda")
            .unwrap();
        let auth = X509Authenticator::new(bundle(&[&pki.client_ca]));
        let err = run(&auth, Some(odd.chain())).unwrap_err();
        assert!(err.to_string().contains("malformed certificate"), "{err}");
    }

    #[test]
    fn an_unreadable_attribute_of_any_kind_makes_the_certificate_unusable() {
        let pki = TestPki::shared();
        let odd = pki
            .issue_with_unreadable_ou("odd-ou", &pki.client_ca)
            .unwrap();
        let auth = X509Authenticator::new(bundle(&[&pki.client_ca]));
        let err = run(&auth, Some(odd.chain())).unwrap_err();
        assert!(err.to_string().contains("malformed certificate"), "{err}");
    }

    #[test]
    fn a_root_restricted_to_other_usages_refuses_client_certificates() {
        let pki = TestPki::shared();
        let (ca, client) = pki.server_only_ca_with_client().unwrap();
        let auth = X509Authenticator::new(bundle(&[&ca]));
        let err = run(&auth, Some(client.chain())).unwrap_err().to_string();
        assert!(
            err.ends_with("failed: x509: certificate specifies an incompatible key usage"),
            "{err}"
        );
    }

    /// Go builds the chains before it checks their usages, and reports an issuer refused for
    /// its dates or its signature as the hint of an unknown authority; webpki checks each
    /// certificate's dates and usages before it looks for the issuer. The leaf's own dates
    /// come first in both.
    #[test]
    fn refusals_give_the_reason_go_gives() {
        let pki = TestPki::shared();
        let reason = |cas: &[&Issued], chain: Vec<CertificateDer<'static>>| {
            let auth = X509Authenticator::new(bundle(cas));
            let err = run(&auth, Some(chain)).unwrap_err().to_string();
            match err.split_once(" failed: ") {
                Some((_, reason)) => reason.to_owned(),
                None => err,
            }
        };
        let client_ca = &[&pki.client_ca][..];

        let impostor = pki.impostor_client().unwrap();
        assert_eq!(
            reason(client_ca, impostor.chain()),
            "x509: certificate signed by unknown authority (possibly because of \"x509: ECDSA \
             verification failure\" while trying to verify candidate authority certificate \
             \"kube-authn test client CA\")"
        );

        let server_only = pki.other_ca_server_only().unwrap();
        assert_eq!(
            reason(client_ca, server_only.chain()),
            "x509: certificate signed by unknown authority"
        );
        assert_eq!(
            reason(client_ca, pki.server_only.chain()),
            "x509: certificate specifies an incompatible key usage"
        );

        let below = pki.expired_intermediate_with_client().unwrap();
        let got = reason(client_ca, below.chain());
        assert!(
            got.starts_with(
                "x509: certificate signed by unknown authority (possibly because of \"x509: \
                 certificate has expired or is not yet valid: current time "
            ) && got.ends_with(
                " is after 2001-01-01T00:00:00Z\" while trying to verify candidate authority \
                 certificate \"expired intermediate CA\")"
            ),
            "{got}"
        );

        let (root, client) = pki.expired_root_with_client().unwrap();
        let got = reason(&[&root], client.chain());
        assert!(
            got.starts_with("x509: certificate signed by unknown authority (possibly because of")
                && got.ends_with("candidate authority certificate \"expired root CA\")"),
            "{got}"
        );

        // The leaf's own dates first, whoever signed it.
        let got = reason(&[&pki.other_ca], pki.expired.chain());
        assert!(
            got.starts_with("x509: certificate has expired or is not yet valid: current time"),
            "{got}"
        );
    }

    #[test]
    fn any_root_that_allows_the_usage_will_do() {
        let pki = TestPki::shared();
        let (restricted, unrestricted, client) = pki.twin_roots_with_client().unwrap();
        // Only the restricted twin: refused for its usage.
        let auth = X509Authenticator::new(bundle(&[&restricted]));
        let err = run(&auth, Some(client.chain())).unwrap_err().to_string();
        assert!(err.ends_with("incompatible key usage"), "{err}");
        // Both, the restricted one first: the path through the other root is found.
        let auth = X509Authenticator::new(bundle(&[&restricted, &unrestricted]));
        let user = run(&auth, Some(client.chain())).unwrap().unwrap().user;
        assert_eq!(user.username, "twin-client");
    }

    /// Kubernetes `TestX509`. Certificates come from the test PKI: `rootCACert` is the client
    /// CA, `clientCNCert` is `pki.client_cn` (same subject, serial 1, UID attribute), the
    /// testdata chain is client CA -> intermediate CA -> leaf, and "multi-level, expired" is a
    /// leaf that ended on 1990-12-31 below the valid intermediate, as upstream's
    /// `client-expired.pem`. The credential ids upstream are hashes of the upstream
    /// certificates; here they are computed from ours. "expired cert" moves the clock 100
    /// years ahead as upstream does; "future cert" sets it to 1990 (upstream goes 100 years
    /// back, which `UnixTime` cannot). Upstream's two feature-gate cases and its custom user
    /// conversions have no equivalent here (the UID gate is on, as in Kubernetes 1.33, and the
    /// conversion is fixed).
    #[test]
    fn test_x509() {
        let pki = TestPki::shared();
        let default = bundle(&[&pki.client_ca]);
        let hundred_years = 100 * 365 * 86_400;
        let now = UnixTime::now().as_secs();
        let year = |y: u64| UNIX_EPOCH + Duration::from_secs((y - 1970) * 31_556_952);
        let v1 = |issuer, name, (from, to)| {
            pki.issue_client_v1_by(issuer, name, name, &["app1"], year(from), year(to))
                .unwrap()
        };
        let v1_other_ca = v1(&pki.other_ca, "v1-other-ca", (2020, 2120));
        let v1_expired = v1(&pki.client_ca, "v1-expired", (2000, 2001));
        let v1_via_intermediate = v1(&pki.intermediate_ca, "v1-via-intermediate", (2020, 2120));
        let (server_only_ca, _) = pki.server_only_ca_with_client().unwrap();
        let v1_server_only_ca = v1(&server_only_ca, "v1-server-only-ca", (2020, 2120));
        let expired_via_intermediate = crate::testing::expired_below_the_intermediate(pki);
        let mut v1_bad_signature = pki.jbeda_openssl.cert_der().to_vec();
        let last = v1_bad_signature.len() - 1;
        v1_bad_signature[last] ^= 1;
        let cases: Vec<(
            &str,
            X509Authenticator,
            Option<Vec<CertificateDer<'static>>>,
            Want,
        )> = vec![
            (
                "non-tls",
                X509Authenticator::new(default.clone()),
                None,
                Want::NoOpinion,
            ),
            (
                "tls, no certs",
                X509Authenticator::new(default.clone()),
                Some(vec![]),
                Want::NoOpinion,
            ),
            (
                "self signed",
                X509Authenticator::new(default.clone()),
                Some(pki.self_signed.chain()),
                Want::Error("x509: certificate signed by unknown authority"),
            ),
            (
                "server cert",
                X509Authenticator::new(default.clone()),
                Some(pki.server_only.chain()),
                Want::Error("x509: certificate specifies an incompatible key usage"),
            ),
            (
                "server cert allowing non-client usages",
                X509Authenticator::new(default.clone()).required_usage(RequiredUsage::ServerAuth),
                Some(pki.server_only.chain()),
                Want::User(user("127.0.0.1", "", &["My Org"], &pki.server_only)),
            ),
            (
                "common name and UID",
                X509Authenticator::new(default.clone()),
                Some(pki.client_cn.chain()),
                Want::User(user("client_cn", "client_id", &["My Org"], &pki.client_cn)),
            ),
            (
                "UID attribute set to empty string",
                X509Authenticator::new(default.clone()),
                Some(pki.empty_uid.chain()),
                Want::Error("UID cannot be an empty string"),
            ),
            (
                "UID attribute is not a string",
                X509Authenticator::new(default.clone()),
                Some(pki.non_string_uid.chain()),
                Want::Error("unable to parse UID into a string"),
            ),
            (
                "multiple UIDs",
                X509Authenticator::new(default.clone()),
                Some(pki.multi_uid.chain()),
                Want::Error("expected 1 UID, but found multiple: [uid-1 uid-2]"),
            ),
            (
                "multiple O",
                X509Authenticator::new(bundle(&[&pki.ca_with_groups])),
                Some(pki.ca_with_groups.chain()),
                // Upstream passes the self-signed CA of the pool as the client certificate.
                Want::User(user(
                    "ROOT CA WITH GROUPS",
                    "",
                    &["My Org", "My Org 1", "My Org 2"],
                    &pki.ca_with_groups,
                )),
            ),
            (
                "future cert",
                X509Authenticator::new(default.clone()).clock(at(BEFORE_2020)),
                Some(pki.client_cn.chain()),
                Want::Error("x509: certificate has expired or is not yet valid: current time"),
            ),
            (
                "expired cert",
                X509Authenticator::new(default.clone()).clock(at(now + hundred_years)),
                Some(pki.client_cn.chain()),
                Want::Error("is after 2120-01-01T00:00:00Z"),
            ),
            (
                "multi-level, valid",
                X509Authenticator::new(default.clone()),
                Some(pki.via_intermediate.chain()),
                Want::User(user(
                    "jbeda-via-intermediate",
                    "",
                    &["app3"],
                    &pki.via_intermediate,
                )),
            ),
            (
                "multi-level, expired",
                X509Authenticator::new(default.clone()),
                Some(expired_via_intermediate.chain()),
                Want::Error("is after 1990-12-31T23:59:59Z"),
            ),
            // Beyond the upstream table.
            (
                "multi-level, every certificate of the chain expired",
                X509Authenticator::new(default.clone()).clock(at(now + hundred_years)),
                Some(pki.via_intermediate.chain()),
                Want::Error("x509: certificate has expired or is not yet valid"),
            ),
            (
                "kubernetes docs certificate",
                X509Authenticator::new(default.clone()),
                Some(pki.jbeda.chain()),
                Want::User(user("jbeda", "", &["app1", "app2"], &pki.jbeda)),
            ),
            (
                "openssl x509 -req certificate (version 1, no extensions)",
                X509Authenticator::new(default.clone()),
                Some(pki.jbeda_openssl.chain()),
                Want::User(user("jbeda", "", &["app1", "app2"], &pki.jbeda_openssl)),
            ),
            (
                "version 1 certificate of another CA",
                X509Authenticator::new(default.clone()),
                Some(v1_other_ca.chain()),
                Want::Error("x509: certificate signed by unknown authority"),
            ),
            (
                "version 1 certificate, expired",
                X509Authenticator::new(default.clone()),
                Some(v1_expired.chain()),
                Want::Error("x509: certificate has expired or is not yet valid: current time"),
            ),
            (
                "version 1 certificate below an intermediate (not supported)",
                X509Authenticator::new(default.clone()),
                Some(v1_via_intermediate.chain()),
                Want::Error("x509: certificate signed by unknown authority"),
            ),
            (
                "version 1 certificate with a damaged signature",
                X509Authenticator::new(default.clone()),
                Some(vec![CertificateDer::from(v1_bad_signature)]),
                Want::Error("x509: certificate signed by unknown authority"),
            ),
            (
                "version 1 certificate of a CA restricted to server usage",
                X509Authenticator::new(bundle(&[&server_only_ca])),
                Some(v1_server_only_ca.chain()),
                Want::Error("x509: certificate specifies an incompatible key usage"),
            ),
            (
                "a CA certificate signed by the pool's CA as the client certificate",
                X509Authenticator::new(default.clone()),
                Some(vec![pki.intermediate_ca.cert_der()]),
                Want::User(user(
                    "kube-authn test intermediate CA",
                    "",
                    &[],
                    &pki.intermediate_ca,
                )),
            ),
            (
                "the pool's own CA certificate as the client certificate",
                X509Authenticator::new(default.clone()),
                Some(pki.client_ca.chain()),
                Want::User(user("kube-authn test client CA", "", &[], &pki.client_ca)),
            ),
            (
                "a CA certificate of another CA as the client certificate",
                X509Authenticator::new(default.clone()),
                Some(pki.other_ca.chain()),
                Want::Error("x509: certificate signed by unknown authority"),
            ),
            (
                "expired leaf",
                X509Authenticator::new(default.clone()),
                Some(pki.expired.chain()),
                Want::Error("is after 2001-01-01T00:00:00Z"),
            ),
            (
                "not yet valid leaf",
                X509Authenticator::new(default.clone()),
                Some(pki.not_yet_valid.chain()),
                Want::Error("is before 2200-01-01T00:00:00Z"),
            ),
            (
                "other CA",
                X509Authenticator::new(default.clone()),
                Some(pki.other_ca_client.chain()),
                Want::Error("x509: certificate signed by unknown authority"),
            ),
            (
                "intermediate missing from the chain",
                X509Authenticator::new(default.clone()),
                Some(vec![pki.via_intermediate.cert_der()]),
                Want::Error("x509: certificate signed by unknown authority"),
            ),
            (
                "no EKU is any usage",
                X509Authenticator::new(default.clone()),
                Some(pki.no_eku.chain()),
                Want::User(user("no-eku", "", &[], &pki.no_eku)),
            ),
            (
                "anyExtendedKeyUsage",
                X509Authenticator::new(default.clone()),
                Some(pki.any_eku.chain()),
                Want::User(user("any-eku", "", &[], &pki.any_eku)),
            ),
            (
                "no common name",
                X509Authenticator::new(default.clone()),
                Some(pki.no_cn.chain()),
                Want::NoOpinion,
            ),
            (
                "garbage",
                X509Authenticator::new(default.clone()),
                Some(vec![CertificateDer::from(vec![0x30, 0x00])]),
                Want::Error("verifying certificate SN=<nil>, SKID=, AKID= failed: x509:"),
            ),
        ];
        for (name, auth, chain, want) in cases {
            let got = run(&auth, chain);
            match (want, got) {
                (Want::NoOpinion, Ok(None)) => {}
                (Want::User(u), Ok(Some(a))) => assert_eq!(a.user, u, "{name}"),
                (Want::Error(msg), Err(e)) => {
                    let e = e.to_string();
                    assert!(e.contains(msg), "{name}: {e}");
                }
                (_, got) => panic!("{name}: unexpected {got:?}"),
            }
        }
    }

    #[test]
    fn error_message_names_the_certificate() {
        let pki = TestPki::shared();
        let auth = X509Authenticator::new(bundle(&[&pki.client_ca]));
        let err = run(&auth, Some(pki.server_only.chain()))
            .unwrap_err()
            .to_string();
        let (head, reason) = err.split_once(" failed: ").unwrap();
        // The client CA's SKID is upstream's AKID of `clientCNCert`; rcgen leaves have no SKID.
        let serial = head
            .strip_prefix("verifying certificate SN=")
            .and_then(|h| {
                h.strip_suffix(
                    ", SKID=, AKID=48:70:75:D4:ED:6B:49:3B:53:DB:E9:A6:F9:9C:55:92:51:BD:96:E6",
                )
            });
        assert!(
            serial.is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())),
            "{head}"
        );
        assert_eq!(
            reason,
            "x509: certificate specifies an incompatible key usage"
        );
    }

    /// The chain is verified once per connection and CA generation; dates every request.
    #[test]
    fn verification_is_memoized_per_connection_and_generation() {
        let pki = TestPki::shared();
        let auth = X509Authenticator::new(bundle(&[&pki.client_ca]));
        let conn = PeerCertificates::new(pki.jbeda.chain());
        for _ in 0..100 {
            let out = auth
                .authenticate_request(request_with(Some(conn.clone())))
                .into_ready()
                .ok()
                .unwrap();
            assert_eq!(out.result.unwrap().unwrap().user.username, "jbeda");
        }
        assert_eq!(auth.verifications(), 1);

        // A second connection with the same certificate verifies once more.
        let conn2 = PeerCertificates::new(pki.jbeda.chain());
        for _ in 0..10 {
            run_with(&auth, &conn2).unwrap();
        }
        assert_eq!(auth.verifications(), 2);

        // A new CA generation (same content, new parse) is verified again, once.
        let mut reloaded = auth.clone();
        reloaded.policy.ca = bundle(&[&pki.client_ca]);
        for _ in 0..10 {
            run_with(&reloaded, &conn).unwrap();
        }
        assert_eq!(auth.verifications(), 3);

        // Refusals are memoized too.
        let bad = PeerCertificates::new(pki.other_ca_client.chain());
        for _ in 0..10 {
            run_with(&auth, &bad).unwrap_err();
        }
        assert_eq!(auth.verifications(), 4);
    }

    fn run_with(auth: &X509Authenticator, conn: &PeerCertificates) -> AuthnResult {
        auth.authenticate_request(request_with(Some(conn.clone())))
            .into_ready()
            .ok()
            .unwrap()
            .result
    }

    /// A certificate that expires during a connection stops working at once, without a new
    /// chain verification.
    /// A clock at the current time that the test moves through the returned counter.
    fn movable_clock() -> (Arc<std::sync::atomic::AtomicU64>, Clock) {
        let now = Arc::new(std::sync::atomic::AtomicU64::new(UnixTime::now().as_secs()));
        let clock_now = Arc::clone(&now);
        let clock: Clock = Arc::new(move || {
            UnixTime::since_unix_epoch(Duration::from_secs(clock_now.load(Ordering::Relaxed)))
        });
        (now, clock)
    }

    #[test]
    fn a_path_that_expires_during_a_connection_gives_way_to_another() {
        use std::time::{Duration, SystemTime};
        let pki = TestPki::shared();
        let start = SystemTime::now();
        let client = pki
            .client_with_two_intermediate_paths(start + Duration::from_secs(3600))
            .unwrap();
        let (now, clock) = movable_clock();
        let auth = X509Authenticator::new(bundle(&[&pki.client_ca])).clock(clock);
        let conn = PeerCertificates::new(client.chain());
        assert_eq!(
            run_with(&auth, &conn).unwrap().unwrap().user.username,
            "two-paths"
        );
        assert_eq!(auth.verifications(), 1);
        // The first intermediate expires: the chain is verified again, through the second.
        now.fetch_add(7200, Ordering::Relaxed);
        assert_eq!(
            run_with(&auth, &conn).unwrap().unwrap().user.username,
            "two-paths"
        );
        assert_eq!(auth.verifications(), 2);
        // The new path is memoized as the first was.
        run_with(&auth, &conn).unwrap().unwrap();
        assert_eq!(auth.verifications(), 2);

        // With the first intermediate only, the chain is refused as Go refuses it.
        let only_first = PeerCertificates::new(client.chain()[..2].to_vec());
        now.fetch_sub(7200, Ordering::Relaxed);
        run_with(&auth, &only_first).unwrap().unwrap();
        now.fetch_add(7200, Ordering::Relaxed);
        let err = run_with(&auth, &only_first).unwrap_err().to_string();
        assert!(
            err.contains("x509: certificate signed by unknown authority (possibly because of")
                && err.contains("candidate authority certificate \"two-paths intermediate CA\""),
            "{err}"
        );
    }

    #[test]
    fn expiry_is_checked_on_every_request() {
        use std::time::{Duration, SystemTime};
        let pki = TestPki::shared();
        let start = SystemTime::now();
        let short = pki
            .issue_client(
                "short",
                "short-lived",
                &["app1"],
                start - Duration::from_secs(60),
                start + Duration::from_secs(3600),
            )
            .unwrap();
        let (now, clock) = movable_clock();
        let auth = X509Authenticator::new(bundle(&[&pki.client_ca])).clock(clock);
        let conn = PeerCertificates::new(short.chain());
        assert_eq!(
            run_with(&auth, &conn).unwrap().unwrap().user.username,
            "short-lived"
        );
        now.fetch_add(7200, Ordering::Relaxed);
        let err = run_with(&auth, &conn).unwrap_err().to_string();
        assert!(err.contains("x509: certificate has expired"), "{err}");
        assert_eq!(
            auth.verifications(),
            1,
            "dates are checked without re-verifying"
        );
        now.fetch_sub(7200, Ordering::Relaxed);
        run_with(&auth, &conn).unwrap().unwrap();

        // A chain refused for its dates is reused for a second only (time may lift it; see
        // peer::tests for the window): back-to-back requests cost one verification.
        let early = PeerCertificates::new(pki.not_yet_valid.chain());
        let first = run_with(&auth, &early).unwrap_err().to_string();
        assert!(first.contains("not yet valid"), "{first}");
        run_with(&auth, &early).unwrap_err();
        assert_eq!(auth.verifications(), 2);
    }

    #[test]
    fn debug_shows_no_certificate_bytes() {
        let pki = TestPki::shared();
        let auth = X509Authenticator::new(bundle(&[&pki.client_ca]));
        let s = format!("{auth:?}");
        assert!(s.starts_with("X509Authenticator"), "{s}");
        assert_eq!(auth.name(), "x509");
    }
}
