//! The authenticating proxy (kube-apiserver `--requestheader-*`, Kubernetes
//! `pkg/authentication/request/headerrequest` behind `x509.Verifier`).
//!
//! # Security
//! Identity headers are trusted only from a connection whose client certificate chain
//! verifies against the request-header CA (client-auth usage) and, when allowed names are
//! configured, whose common name is one of them. Whatever the outcome, the configured headers
//! (username, uid, group headers and every header with an extra prefix) are removed from the
//! request before it goes on, so no handler behind the layer ever sees an `X-Remote-User` sent
//! by a client that did not prove the proxy certificate. Kubernetes leaves them in place when
//! the certificate is missing and relies on its filter to strip them after authentication;
//! [`ClearAuthenticationHeaders`] is that filter step for chains without this authenticator.

mod config;
mod extract;

use std::fmt;
use std::sync::Arc;

use http::request::Parts;
use kube_authn_core::{
    AuthenticateRequest, Authenticated, AuthnError, AuthnFuture, AuthnResult, RequestHead,
    RequestOutcome,
};

use config::Compiled;
pub use config::{
    RequestHeaderConfig, RequestHeaderConfigError, RequestHeaderConfigWarning,
    STANDARD_EXTRA_PREFIX, STANDARD_GROUP_HEADER, STANDARD_UID_HEADER, STANDARD_USERNAME_HEADER,
};

use crate::peer::PeerCertificates;
use crate::pool::CaBundle;
use crate::verify::{ChainPolicy, Clock, RequiredUsage};

/// Authenticates requests forwarded by an authenticating proxy (front proxy, API
/// aggregation): the user comes from headers, trusted because the connection proved the
/// proxy's client certificate.
///
/// Per request:
/// 1. no client certificate: the configured headers are removed, no credential of this kind;
/// 2. the chain must verify against the request-header [`CaBundle`] with the client-auth usage
///    (verified once per connection and CA generation, dates checked every request), else an
///    error with Go's reason (`x509: certificate signed by unknown authority`, ...);
/// 3. with allowed names configured, the leaf's common name must be one of them, else
///    `x509: subject with cn=<cn> is not in the allowed list`;
/// 4. user name: the first non-empty username header (first value only); uid likewise;
///    groups: every non-empty value of every group header, in order, not split on commas;
///    extra: for each prefix, each header starting with it, key = the rest of the name
///    lower-cased and URL-path-unescaped (kept raw when unescaping fails), all values kept;
///    no user name: no credential of this kind;
/// 5. the configured headers are removed, whatever the outcome.
///
/// Bytes that are not UTF-8, in header values or unescaped extra keys, become U+FFFD (Go keeps
/// them, and writes U+FFFD wherever it writes them as JSON).
#[derive(Clone)]
pub struct RequestHeaderAuthenticator {
    policy: ChainPolicy,
    config: Arc<Compiled>,
}

impl RequestHeaderAuthenticator {
    /// An authenticator trusting proxies with certificates of `ca`, reading the headers of
    /// `config`.
    ///
    /// Like Kubernetes' `headerrequest.New`, this only refuses empty or invalid header names;
    /// call [`RequestHeaderConfig::validate`] first for kube-apiserver's flag rules (the
    /// standard `X-Remote-Uid` requirement). Configuration warnings are logged.
    pub fn new(
        ca: CaBundle,
        config: &RequestHeaderConfig,
    ) -> Result<Self, RequestHeaderConfigError> {
        let (compiled, warnings) = config.compile()?;
        for warning in warnings {
            tracing::warn!(target: "kube_authn::requestheader", %warning, "request-header configuration");
        }
        Ok(Self {
            policy: ChainPolicy::new(ca),
            config: Arc::new(compiled),
        })
    }

    /// The extended key usage the proxy chain must allow (default
    /// [`RequiredUsage::ClientAuth`]).
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

    /// The request-header CA bundle.
    pub fn ca(&self) -> &CaBundle {
        &self.policy.ca
    }

    /// How many chain verifications were performed (one per connection and CA generation).
    pub fn verifications(&self) -> u64 {
        self.policy.verifications()
    }

    /// Whether the connection proved a proxy certificate: `Ok(false)` without a certificate.
    fn proxy_proven(&self, parts: &Parts) -> Result<bool, AuthnError> {
        let Some(peers) = parts.extensions.get::<PeerCertificates>() else {
            return Ok(false);
        };
        let Some(info) = peers.leaf_info() else {
            return Ok(false);
        };
        let now = self.policy.now();
        if let Err(reason) = self.policy.check(peers, now) {
            tracing::debug!(
                target: "kube_authn::requestheader",
                certificate = %info.identifier,
                %reason,
                "proxy certificate refused"
            );
            return Err(AuthnError::invalid(reason.to_string()));
        }
        if !info.parsed {
            return Err(AuthnError::invalid("x509: malformed certificate"));
        }
        let allowed = &self.config.allowed_names;
        if !allowed.is_empty() && !allowed.contains(&info.common_name) {
            return Err(AuthnError::invalid(format!(
                "x509: subject with cn={} is not in the allowed list",
                info.common_name
            )));
        }
        Ok(true)
    }

    fn authenticate(&self, parts: &mut Parts) -> AuthnResult {
        let proven = self.proxy_proven(parts);
        let result = match proven {
            Ok(true) => Ok(
                extract::user_from_headers(&parts.headers, &self.config).map(Authenticated::new)
            ),
            Ok(false) => Ok(None),
            Err(e) => Err(e),
        };
        extract::strip(&mut parts.headers, &self.config);
        result
    }
}

impl AuthenticateRequest for RequestHeaderAuthenticator {
    fn authenticate_request(&self, mut parts: RequestHead) -> AuthnFuture<RequestOutcome> {
        let result = self.authenticate(&mut parts);
        AuthnFuture::ready(RequestOutcome::new(parts, result))
    }

    fn name(&self) -> &'static str {
        "requestheader"
    }
}

impl fmt::Debug for RequestHeaderAuthenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestHeaderAuthenticator")
            .field("ca", &self.policy.ca)
            .field("config", &self.config)
            .field("usage", &self.policy.usage)
            .finish_non_exhaustive()
    }
}

/// Removes the authenticating-proxy headers after the wrapped authenticator, whatever its
/// outcome: the standard ones (`X-Remote-User`, `X-Remote-Uid`, `X-Remote-Group`,
/// `X-Remote-Extra-*`) and those of a [`RequestHeaderConfig`] (Kubernetes' authentication
/// filter, `ClearAuthenticationHeaders`, does this after every successful authentication).
///
/// Wrap the whole chain in it so that a request authenticated by another strategy (a token,
/// a client certificate, anonymous) cannot carry proxy headers to the handlers.
#[derive(Clone, Debug)]
pub struct ClearAuthenticationHeaders<A> {
    inner: A,
    standard: Arc<Compiled>,
    configured: Option<Arc<Compiled>>,
}

impl<A> ClearAuthenticationHeaders<A> {
    /// Wraps `inner`, removing the standard headers and those of `config`, if any.
    pub fn new(
        inner: A,
        config: Option<&RequestHeaderConfig>,
    ) -> Result<Self, RequestHeaderConfigError> {
        let standard = RequestHeaderConfig::standard().compile()?.0;
        let configured = config
            .map(|c| c.compile().map(|c| Arc::new(c.0)))
            .transpose()?;
        Ok(Self {
            inner,
            standard: Arc::new(standard),
            configured,
        })
    }

    /// Removes the headers from `headers`.
    pub fn clear(&self, headers: &mut http::HeaderMap) {
        clear(headers, &self.standard, self.configured.as_deref());
    }
}

fn clear(headers: &mut http::HeaderMap, standard: &Compiled, configured: Option<&Compiled>) {
    extract::strip(headers, standard);
    if let Some(c) = configured {
        extract::strip(headers, c);
    }
}

impl<A: AuthenticateRequest> AuthenticateRequest for ClearAuthenticationHeaders<A> {
    fn authenticate_request(&self, parts: RequestHead) -> AuthnFuture<RequestOutcome> {
        match self.inner.authenticate_request(parts).into_ready() {
            Ok(mut outcome) => {
                self.clear(&mut outcome.parts.headers);
                AuthnFuture::ready(outcome)
            }
            Err(pending) => {
                let standard = Arc::clone(&self.standard);
                let configured = self.configured.clone();
                AuthnFuture::boxed(async move {
                    let mut outcome = pending.await;
                    clear(&mut outcome.parts.headers, &standard, configured.as_deref());
                    outcome
                })
            }
        }
    }

    fn name(&self) -> &'static str {
        self.inner.name()
    }
}

#[cfg(test)]
mod tests;
