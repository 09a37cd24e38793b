//! Test doubles shared by the unit tests of this crate.

use http::HeaderName;

use crate::{
    Audiences, AuthenticateToken, Authenticated, AuthnError, AuthnFuture, AuthnResult, UserInfo,
};

/// A request head with the given values of one header.
pub(crate) fn parts_with(name: HeaderName, values: &[&str]) -> crate::RequestHead {
    let mut b = http::Request::get("/");
    for v in values {
        b = b.header(name.clone(), *v);
    }
    b.body(()).unwrap().into_parts().0.into()
}

/// What a [`TokenFn`] answers.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Outcome {
    /// Authenticates as this user (after asserting the expected token).
    User(&'static str),
    /// Authenticates any token as this user.
    UserAny(&'static str),
    /// Does not know the token.
    NoOpinion,
    /// Fails with this message (after asserting the expected token).
    Error(&'static str),
    /// Fails with this message for any token.
    ErrorAny(&'static str),
    /// Panics when called.
    MustNotBeCalled,
}

/// A token authenticator with a fixed answer.
pub(crate) struct TokenFn {
    expected: Option<&'static str>,
    outcome: Outcome,
    asynchronous: bool,
}

impl TokenFn {
    pub(crate) fn expecting(token: &'static str, outcome: Outcome) -> Self {
        Self {
            expected: Some(token),
            outcome,
            asynchronous: false,
        }
    }

    pub(crate) fn any(outcome: Outcome) -> Self {
        Self {
            expected: None,
            outcome,
            asynchronous: false,
        }
    }

    pub(crate) fn asynchronous(mut self) -> Self {
        self.asynchronous = true;
        self
    }
}

impl AuthenticateToken for TokenFn {
    fn authenticate_token(&self, token: &str, _: &Audiences) -> AuthnFuture<AuthnResult> {
        let check = |t: &str| {
            if let Some(expected) = self.expected {
                assert_eq!(t, expected, "token passed to the token authenticator");
            }
        };
        let result = match self.outcome {
            Outcome::User(name) => {
                check(token);
                Ok(Some(Authenticated::new(UserInfo::new(name))))
            }
            Outcome::UserAny(name) => Ok(Some(Authenticated::new(UserInfo::new(name)))),
            Outcome::NoOpinion => Ok(None),
            Outcome::Error(msg) => {
                check(token);
                Err(AuthnError::invalid(msg))
            }
            Outcome::ErrorAny(msg) => Err(AuthnError::invalid(msg)),
            Outcome::MustNotBeCalled => panic!("token authenticator must not be called"),
        };
        if self.asynchronous {
            AuthnFuture::boxed(async move {
                tokio::task::yield_now().await;
                result
            })
        } else {
            AuthnFuture::ready(result)
        }
    }
}
