//! Anonymous requests (Kubernetes `request/anonymous` and the fail-on-error union in front of it).

use std::sync::Arc;

use http::request::Parts;

use crate::{AuthenticateRequest, Authenticated, AuthnFuture, RequestOutcome, UserInfo};

/// Authenticates every request (or every request to one of the allowed paths) as
/// `system:anonymous` in `system:unauthenticated`.
#[derive(Clone, Debug, Default)]
pub struct Anonymous {
    paths: Arc<[String]>,
}

impl Anonymous {
    /// Anonymous for every path.
    pub fn new() -> Self {
        Self::default()
    }

    /// Anonymous only for requests whose path is exactly one of `paths`
    /// (Kubernetes `anonymous.conditions`); an empty list means every path.
    ///
    /// The path is compared as the request sent it, not percent-decoded as Kubernetes' decoded
    /// `URL.Path` is: `/heal%74hz` is not `/healthz` here. Routers such as axum's match the raw
    /// path too, so a decoded match could let anonymous requests reach a route the condition
    /// did not name; the only difference is a 401 for a spelling no client sends.
    ///
    /// It is the path as the layer sees it. In axum, a layer inside a `Router::nest("/api",
    /// ..)` sees `/healthz` for a request to `/api/healthz`, so a condition `/healthz` there
    /// also opens `/api/healthz` (and `/api/healthz` never matches). Mount the layer on the
    /// outermost router, as kube-apiserver runs authentication before any routing, for the
    /// conditions to name the paths clients send.
    pub fn with_paths<I, S>(paths: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            paths: paths.into_iter().map(Into::into).collect(),
        }
    }

    fn allows(&self, parts: &Parts) -> bool {
        self.paths.is_empty() || self.paths.iter().any(|p| p == parts.uri.path())
    }
}

impl AuthenticateRequest for Anonymous {
    fn authenticate_request(&self, parts: crate::RequestHead) -> AuthnFuture<RequestOutcome> {
        let result = if self.allows(&parts) {
            let audiences = parts
                .extensions
                .get::<crate::Audiences>()
                .cloned()
                .unwrap_or_default();
            Ok(Some(Authenticated {
                user: UserInfo::anonymous(),
                audiences,
            }))
        } else {
            Ok(None)
        };
        AuthnFuture::ready(RequestOutcome::new(parts, result))
    }

    fn name(&self) -> &'static str {
        "anonymous"
    }
}

/// Runs `inner`; when it has no opinion (no credential at all), falls back to [`Anonymous`].
/// An error from `inner` is final: a bad credential is 401 even with anonymous enabled
/// (Kubernetes `union.NewFailOnError(chain, anonymous)`).
#[derive(Clone, Debug)]
pub struct WithAnonymous<A> {
    inner: A,
    anonymous: Anonymous,
}

impl<A> WithAnonymous<A> {
    /// `inner`, then `anonymous`.
    pub fn new(inner: A, anonymous: Anonymous) -> Self {
        Self { inner, anonymous }
    }
}

impl<A: AuthenticateRequest> AuthenticateRequest for WithAnonymous<A> {
    fn authenticate_request(&self, parts: crate::RequestHead) -> AuthnFuture<RequestOutcome> {
        match self.inner.authenticate_request(parts).into_ready() {
            Ok(outcome) => match outcome.result {
                Ok(None) => self.anonymous.authenticate_request(outcome.parts),
                _ => AuthnFuture::ready(outcome),
            },
            Err(pending) => {
                let anonymous = self.anonymous.clone();
                AuthnFuture::boxed(async move {
                    let outcome = pending.await;
                    match outcome.result {
                        Ok(None) => anonymous.authenticate_request(outcome.parts).await,
                        _ => outcome,
                    }
                })
            }
        }
    }

    fn name(&self) -> &'static str {
        self.inner.name()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::AuthnError;

    fn parts(uri: &str) -> crate::RequestHead {
        http::Request::get(uri)
            .body(())
            .unwrap()
            .into_parts()
            .0
            .into()
    }

    #[tokio::test]
    async fn anonymous_without_conditions_allows_every_request() {
        let out = Anonymous::new()
            .authenticate_request(parts("/anything"))
            .await;
        let user = out.result.unwrap().unwrap().user;
        assert_eq!(user.username, "system:anonymous");
        assert_eq!(user.groups, ["system:unauthenticated"]);
    }

    // Kubernetes anonymous_test.go TestAnonymous with conditions
    #[tokio::test]
    async fn anonymous_with_conditions_matches_exact_paths() {
        let anon = Anonymous::with_paths(["/healthz", "/readyz", "/livez"]);
        for (uri, allowed) in [
            ("https://123.123.123.123/healthz", true),
            ("https://123.123.123.123/readyz", true),
            ("https://123.123.123.123/livez", true),
            ("https://123.123.123.123/api", false),
            ("https://123.123.123.123/healthz/", false),
            ("https://123.123.123.123/healthz?verbose", true),
        ] {
            let out = anon.authenticate_request(parts(uri)).await;
            assert_eq!(out.result.unwrap().is_some(), allowed, "{uri}");
        }
    }

    struct Failing;
    impl AuthenticateRequest for Failing {
        fn authenticate_request(&self, parts: crate::RequestHead) -> AuthnFuture<RequestOutcome> {
            AuthnFuture::ready(RequestOutcome::new(
                parts,
                Err(AuthnError::InvalidBearerToken),
            ))
        }
    }

    // Kubernetes unionauth_test.go TestAuthenticateRequestFailEarly (`NewFailOnError`, which
    // `WithAnonymous` is for the chain and anonymous): the first member's error is final and
    // the second member never answers.
    #[tokio::test]
    async fn a_bad_credential_is_not_turned_into_anonymous() {
        let chain = WithAnonymous::new(Failing, Anonymous::new());
        let out = chain.authenticate_request(parts("/")).await;
        assert!(matches!(out.result, Err(AuthnError::InvalidBearerToken)));
    }
}
