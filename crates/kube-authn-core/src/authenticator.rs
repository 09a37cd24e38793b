//! The authenticator traits, mirroring Kubernetes' `authenticator.Request`,
//! `authenticator.Token` and `authenticator.Password`.

use std::sync::Arc;

use http::request::Parts;

use crate::{AuthnError, AuthnFuture, UserInfo};

/// The audiences a request is made for, or that a token was authenticated for.
///
/// Cheap to clone. An empty list means "no audience information".
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Audiences(Arc<[String]>);

impl Audiences {
    /// No audiences.
    pub fn none() -> Self {
        Self::default()
    }

    /// The audiences as a slice.
    pub fn as_slice(&self) -> &[String] {
        &self.0
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The members of `other` (in `other`'s order) that are also in `self`
    /// (Kubernetes `Audiences.Intersect`).
    pub fn intersect(&self, other: &Audiences) -> Audiences {
        other
            .0
            .iter()
            .filter(|a| self.0.contains(a))
            .cloned()
            .collect()
    }
}

impl<S: Into<String>> FromIterator<S> for Audiences {
    fn from_iter<I: IntoIterator<Item = S>>(iter: I) -> Self {
        Self(iter.into_iter().map(Into::into).collect())
    }
}

/// A successful authentication: the user and the audiences the credential is valid for
/// (empty when the authenticator is audience agnostic).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Authenticated {
    /// Who made the request.
    pub user: UserInfo,
    /// The audiences the credential was authenticated for.
    pub audiences: Audiences,
}

impl Authenticated {
    /// An audience-agnostic authentication of `user`.
    pub fn new(user: UserInfo) -> Self {
        Self {
            user,
            audiences: Audiences::none(),
        }
    }
}

impl From<UserInfo> for Authenticated {
    fn from(user: UserInfo) -> Self {
        Self::new(user)
    }
}

/// The three outcomes of an authenticator, as in Kubernetes:
/// `Ok(Some(_))` authenticated, `Ok(None)` no credential of this kind (the next authenticator is
/// tried), `Err(_)` a credential was present and is bad.
pub type AuthnResult = Result<Option<Authenticated>, AuthnError>;

/// The request head as authenticators receive it: boxed, so handing it from one authenticator
/// to the next moves a pointer, not the whole head.
pub type RequestHead = Box<Parts>;

/// The outcome of a request authenticator: the request head (rewritten on success, for example
/// without the credential header) and the result.
///
/// Its `Debug` shows the method, the path and the header names of the head, never header values
/// or the query (they may hold the credential).
pub struct RequestOutcome {
    /// The request head.
    pub parts: RequestHead,
    /// What the authenticator decided.
    pub result: AuthnResult,
}

impl std::fmt::Debug for RequestOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.parts.headers.keys().map(|k| k.as_str()).collect();
        f.debug_struct("RequestOutcome")
            .field("method", &self.parts.method)
            .field("path", &self.parts.uri.path())
            .field("header_names", &names)
            .field("result", &self.result)
            .finish()
    }
}

impl RequestOutcome {
    /// Bundles a head and a result.
    pub fn new(parts: RequestHead, result: AuthnResult) -> Self {
        Self { parts, result }
    }

    /// "No credential of this kind".
    pub fn no_opinion(parts: RequestHead) -> Self {
        Self {
            parts,
            result: Ok(None),
        }
    }
}

/// Authenticates a request from its head (headers, URI, extensions such as peer certificates).
///
/// Takes the head by value and hands it back in the outcome, so an asynchronous strategy can
/// still rewrite headers once it knows the result (the bearer reader removes `Authorization`,
/// the websocket reader removes its protocol entry). A synchronous strategy returns
/// [`AuthnFuture::ready`] and allocates nothing.
pub trait AuthenticateRequest: Send + Sync + 'static {
    /// Authenticates the request.
    fn authenticate_request(&self, parts: crate::RequestHead) -> AuthnFuture<RequestOutcome>;

    /// A short name for logs and metrics.
    fn name(&self) -> &'static str {
        "custom"
    }
}

/// Authenticates a bearer token. Shared by the `Authorization: Bearer` and websocket readers.
///
/// Implementations must be cheap to call concurrently; `audiences` are the server's API
/// audiences for this request (empty when none are configured).
pub trait AuthenticateToken: Send + Sync + 'static {
    /// Authenticates `token`. `Ok(None)` means "not a token I know".
    fn authenticate_token(&self, token: &str, audiences: &Audiences) -> AuthnFuture<AuthnResult>;

    /// A short name for logs and metrics.
    fn name(&self) -> &'static str {
        "token"
    }
}

/// Authenticates a user name and password (HTTP basic).
pub trait AuthenticatePassword: Send + Sync + 'static {
    /// Authenticates the pair. `Ok(None)` means "unknown user or wrong password".
    fn authenticate_password(&self, username: &str, password: &str) -> AuthnFuture<AuthnResult>;

    /// A short name for logs and metrics.
    fn name(&self) -> &'static str {
        "password"
    }
}

macro_rules! forward_impls {
    ($($ptr:ident),*) => {$(
        impl<T: AuthenticateRequest + ?Sized> AuthenticateRequest for $ptr<T> {
            fn authenticate_request(&self, parts: crate::RequestHead) -> AuthnFuture<RequestOutcome> {
                (**self).authenticate_request(parts)
            }
            fn name(&self) -> &'static str {
                (**self).name()
            }
        }
        impl<T: AuthenticateToken + ?Sized> AuthenticateToken for $ptr<T> {
            fn authenticate_token(&self, token: &str, audiences: &Audiences) -> AuthnFuture<AuthnResult> {
                (**self).authenticate_token(token, audiences)
            }
            fn name(&self) -> &'static str {
                (**self).name()
            }
        }
        impl<T: AuthenticatePassword + ?Sized> AuthenticatePassword for $ptr<T> {
            fn authenticate_password(&self, username: &str, password: &str) -> AuthnFuture<AuthnResult> {
                (**self).authenticate_password(username, password)
            }
            fn name(&self) -> &'static str {
                (**self).name()
            }
        }
    )*};
}
forward_impls!(Arc, Box);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_of_an_outcome_shows_no_header_value_or_query() {
        let parts = http::Request::get("/api/v1/pods?access_token=q-secret")
            .header("Authorization", "Bearer s3cr3t-token")
            .header(
                "Sec-WebSocket-Protocol",
                "base64url.bearer.authorization.k8s.io.czNjcjN0",
            )
            .body(())
            .unwrap()
            .into_parts()
            .0;
        let outcome = RequestOutcome::new(Box::new(parts), Err(AuthnError::InvalidBearerToken));
        let shown = format!("{outcome:?} {outcome:#?}");
        for secret in ["s3cr3t", "czNjcjN0", "q-secret", "access_token"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        assert!(
            shown.contains("authorization") && shown.contains("/api/v1/pods"),
            "{shown}"
        );
    }

    #[test]
    fn intersect_keeps_the_order_of_the_argument() {
        let api: Audiences = ["a", "b", "c"].into_iter().collect();
        let tok: Audiences = ["c", "x", "a"].into_iter().collect();
        assert_eq!(api.intersect(&tok).as_slice(), ["c", "a"]);
        assert!(api.intersect(&Audiences::none()).is_empty());
    }
}
