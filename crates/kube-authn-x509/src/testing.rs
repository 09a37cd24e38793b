//! Helpers shared by the unit tests.

use std::sync::Arc;
use std::time::Duration;

use http::request::Parts;
use rustls_pki_types::UnixTime;

use crate::peer::PeerCertificates;
use crate::x509::Clock;

/// The head of a `GET /` request carrying `peers`, if any.
pub(crate) fn request_with(peers: Option<PeerCertificates>) -> Box<Parts> {
    let (mut parts, ()) = http::Request::get("/").body(()).unwrap().into_parts();
    if let Some(p) = peers {
        parts.extensions.insert(p);
    }
    Box::new(parts)
}

/// A clock stopped at `secs` seconds after the Unix epoch.
pub(crate) fn at(secs: u64) -> Clock {
    Arc::new(move || UnixTime::since_unix_epoch(Duration::from_secs(secs)))
}

/// Upstream's `client-expired.pem` below the valid intermediate: a client certificate
/// (CN `expired-via-intermediate`) of the intermediate CA that ended on 1990-12-31T23:59:59Z.
pub(crate) fn expired_below_the_intermediate(
    pki: &kube_authn_testing::TestPki,
) -> kube_authn_testing::Issued {
    let time = |secs| std::time::UNIX_EPOCH + Duration::from_secs(secs);
    pki.issue_client_by(
        &pki.intermediate_ca,
        "expired-via-intermediate",
        "expired-via-intermediate",
        &["app3"],
        time(315_532_800),
        time(662_687_999),
    )
    .unwrap()
}
