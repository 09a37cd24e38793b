//! `Authorization: Bearer <token>` (Kubernetes `request/bearertoken`).

use http::header::AUTHORIZATION;
use http::request::Parts;

use super::{finish, request_audiences};
use crate::{AuthenticateRequest, AuthenticateToken, AuthnError, AuthnFuture, RequestOutcome};

/// Reads `Authorization: Bearer <token>` and authenticates the token.
///
/// Kubernetes rules: only the first `Authorization` header counts; it is trimmed, split on single
/// spaces into at most three parts, the scheme compared case-insensitively; an empty token is no
/// credential; anything after the token is ignored. A token no authenticator accepts is the error
/// `invalid bearer token`. On success the `Authorization` header is removed, so the inner service
/// never sees the token.
#[derive(Clone, Debug)]
pub struct BearerToken<T> {
    tokens: T,
}

impl<T> BearerToken<T> {
    /// Reads bearer tokens for `tokens`.
    pub fn new(tokens: T) -> Self {
        Self { tokens }
    }
}

/// What the `Authorization` header holds, read on its bytes as Go does.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Bearer<'a> {
    /// Not a bearer credential (or an empty token).
    None,
    /// `Bearer  token`: an empty token after an extra space; ignored with a warning.
    ExtraSpace,
    /// A token.
    Token(&'a str),
    /// A token that is not UTF-8: it can match no token, so it is a bad credential.
    NotUtf8,
}

/// The warning Kubernetes attaches when a bearer token is ignored because of an extra space.
pub const EXTRA_SPACE_WARNING: &str = "the provided Authorization header contains extra space before the bearer token, and is ignored";

pub(crate) fn bearer_token(value: &[u8]) -> Bearer<'_> {
    let value = super::trim_space(value);
    // `strings.SplitN(auth, " ", 3)`: the scheme, the token, and whatever follows.
    let Some(rest) = value.strip_prefix(b"Bearer ").or_else(|| {
        (value.len() > 7 && value[..7].eq_ignore_ascii_case(b"bearer ")).then(|| &value[7..])
    }) else {
        return Bearer::None;
    };
    let token = match memchr::memchr(b' ', rest) {
        Some(end) => &rest[..end],
        None => rest,
    };
    if token.is_empty() {
        // `Bearer  x`: SplitN gives an empty token and a third part.
        return if rest.len() > token.len() {
            Bearer::ExtraSpace
        } else {
            Bearer::None
        };
    }
    match std::str::from_utf8(token) {
        Ok(token) => Bearer::Token(token),
        Err(_) => Bearer::NotUtf8,
    }
}

impl<T: AuthenticateToken> AuthenticateRequest for BearerToken<T> {
    fn authenticate_request(&self, mut parts: crate::RequestHead) -> AuthnFuture<RequestOutcome> {
        let Some(value) = parts.headers.get(AUTHORIZATION) else {
            return AuthnFuture::ready(RequestOutcome::no_opinion(parts));
        };
        let token = match bearer_token(value.as_bytes()) {
            Bearer::Token(token) => token,
            Bearer::None => return AuthnFuture::ready(RequestOutcome::no_opinion(parts)),
            Bearer::ExtraSpace => {
                crate::warning::add_warning(&mut parts, EXTRA_SPACE_WARNING);
                return AuthnFuture::ready(RequestOutcome::no_opinion(parts));
            }
            Bearer::NotUtf8 => {
                return AuthnFuture::ready(RequestOutcome::new(
                    parts,
                    Err(AuthnError::InvalidBearerToken),
                ));
            }
        };
        let audiences = request_audiences(&parts);
        let inner = self.tokens.authenticate_token(token, &audiences);
        finish(
            parts,
            inner,
            || AuthnError::InvalidBearerToken,
            |parts: &mut Parts| {
                parts.headers.remove(AUTHORIZATION);
            },
        )
    }

    fn name(&self) -> &'static str {
        "bearer"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{Outcome, TokenFn, parts_with};

    fn auth(outcome: Outcome) -> BearerToken<TokenFn> {
        BearerToken::new(TokenFn::expecting("token", outcome))
    }

    // Kubernetes bearertoken_test.go, case names kept.
    #[tokio::test]
    async fn bearer_token_table() {
        use Outcome::*;
        let cases: &[(&str, &[&str], Outcome, Expect)] = &[
            (
                "TestAuthenticateRequest",
                &["Bearer token"],
                User("user"),
                Expect::Ok("user"),
            ),
            (
                "TestAuthenticateRequestIncludingValueAfterToken/1",
                &["Bearer token a"],
                User("user"),
                Expect::Ok("user"),
            ),
            (
                "TestAuthenticateRequestIncludingValueAfterToken/2",
                &["Bearer token a b c"],
                User("user"),
                Expect::Ok("user"),
            ),
            (
                "TestAuthenticateRequestIncludingValueAfterToken/3",
                &["Bearer token   a"],
                User("user"),
                Expect::Ok("user"),
            ),
            (
                "TestAuthenticateRequestTokenInvalid",
                &["Bearer token"],
                NoOpinion,
                Expect::Err("invalid bearer token"),
            ),
            (
                "TestAuthenticateRequestTokenInvalidCustomError",
                &["Bearer token"],
                Error("custom"),
                Expect::Err("custom"),
            ),
            (
                "TestAuthenticateRequestTokenError",
                &["Bearer token"],
                Error("error"),
                Expect::Err("error"),
            ),
            (
                "TestAuthenticateRequestBadValue/none",
                &[],
                MustNotBeCalled,
                Expect::NoOpinion,
            ),
            (
                "TestAuthenticateRequestBadValue/Bearer",
                &["Bearer"],
                MustNotBeCalled,
                Expect::NoOpinion,
            ),
            (
                "TestAuthenticateRequestBadValue/bear token",
                &["bear token"],
                MustNotBeCalled,
                Expect::NoOpinion,
            ),
            (
                "TestAuthenticateRequestBadValue/Bearer: token",
                &["Bearer: token"],
                MustNotBeCalled,
                Expect::NoOpinion,
            ),
        ];
        for (case, headers, outcome, expect) in cases {
            let out = auth(*outcome)
                .authenticate_request(parts_with(AUTHORIZATION, headers))
                .await;
            expect.check(case, &out.result);
        }
    }

    // Kubernetes bearertoken_test.go TestBearerToken: the header afterwards.
    #[allow(clippy::type_complexity)] // a test table
    #[tokio::test]
    async fn bearer_token_header_afterwards() {
        use Outcome::*;
        let cases: &[(&str, &[&str], Outcome, bool, Option<&[&str]>)] = &[
            ("no header", &[], MustNotBeCalled, false, Some(&[])),
            ("empty header", &[""], MustNotBeCalled, false, Some(&[""])),
            (
                "non-bearer header",
                &["Basic 123"],
                MustNotBeCalled,
                false,
                Some(&["Basic 123"]),
            ),
            (
                "empty bearer token",
                &["Bearer "],
                MustNotBeCalled,
                false,
                Some(&["Bearer "]),
            ),
            (
                "extra space before bearer token",
                &["Bearer  token"],
                MustNotBeCalled,
                false,
                Some(&["Bearer  token"]),
            ),
            (
                "valid bearer token removing header",
                &["Bearer 123"],
                UserAny("myuser"),
                true,
                Some(&[]),
            ),
            (
                "invalid bearer token",
                &["Bearer 123"],
                NoOpinion,
                false,
                Some(&["Bearer 123"]),
            ),
            (
                "error bearer token",
                &["Bearer 123"],
                ErrorAny("error"),
                false,
                Some(&["Bearer 123"]),
            ),
        ];
        for (case, headers, outcome, ok, after) in cases {
            let a = BearerToken::new(TokenFn::any(*outcome));
            let out = a
                .authenticate_request(parts_with(AUTHORIZATION, headers))
                .await;
            assert_eq!(matches!(out.result, Ok(Some(_))), *ok, "{case}");
            if let (Outcome::UserAny(name), Ok(Some(auth))) = (outcome, &out.result) {
                assert_eq!(auth.user.username, *name, "{case}");
            }
            if let Some(after) = after {
                let got: Vec<_> = out
                    .parts
                    .headers
                    .get_all(AUTHORIZATION)
                    .iter()
                    .map(|v| v.to_str().unwrap())
                    .collect();
                assert_eq!(got, *after, "{case}");
            }
        }
    }

    #[tokio::test]
    async fn only_the_first_authorization_header_counts_and_the_scheme_is_case_insensitive() {
        let a = auth(Outcome::User("user"));
        let out = a
            .authenticate_request(parts_with(AUTHORIZATION, &["BEARER token"]))
            .await;
        assert!(matches!(out.result, Ok(Some(_))));
        let out = a
            .authenticate_request(parts_with(AUTHORIZATION, &["Basic x", "Bearer token"]))
            .await;
        assert!(matches!(out.result, Ok(None)));
        let out = a
            .authenticate_request(parts_with(AUTHORIZATION, &["  Bearer token  "]))
            .await;
        assert!(matches!(out.result, Ok(Some(_))));
        // a tab is not a separator
        let out = a
            .authenticate_request(parts_with(AUTHORIZATION, &["Bearer\ttoken"]))
            .await;
        assert!(matches!(out.result, Ok(None)));
    }

    #[tokio::test]
    async fn asynchronous_token_authenticators_still_remove_the_header() {
        let a = BearerToken::new(TokenFn::any(Outcome::UserAny("u")).asynchronous());
        let fut = a.authenticate_request(parts_with(AUTHORIZATION, &["Bearer 123"]));
        assert!(!fut.is_ready());
        let out = fut.await;
        assert!(matches!(out.result, Ok(Some(_))));
        assert!(out.parts.headers.get(AUTHORIZATION).is_none());
    }

    #[test]
    fn bytes_are_read_as_go_reads_them() {
        assert_eq!(bearer_token(b"Bearer token \xff"), Bearer::Token("token"));
        assert_eq!(bearer_token(b"  Bearer \xff"), Bearer::NotUtf8);
        assert_eq!(bearer_token(b"Bearer  \xff"), Bearer::ExtraSpace);
        assert_eq!(bearer_token(b"\xff token"), Bearer::None);
        assert_eq!(bearer_token(b"Bearer"), Bearer::None);
        assert_eq!(
            bearer_token("\u{a0}Bearer token\u{85}".as_bytes()),
            Bearer::Token("token")
        );
        // Go's TrimSpace also trims the white space beyond Latin-1.
        assert_eq!(
            bearer_token("\u{2003}Bearer token\u{3000}".as_bytes()),
            Bearer::Token("token")
        );
    }

    #[tokio::test]
    async fn extra_space_is_ignored_with_the_kubernetes_warning() {
        let a = BearerToken::new(TokenFn::any(Outcome::MustNotBeCalled));
        let out = a
            .authenticate_request(parts_with(AUTHORIZATION, &["Bearer  token"]))
            .await;
        assert!(matches!(out.result, Ok(None)));
        let warnings = out.parts.extensions.get::<crate::AuthnWarnings>().unwrap();
        assert_eq!(warnings.messages(), [EXTRA_SPACE_WARNING]);
        let out = a
            .authenticate_request(parts_with(AUTHORIZATION, &["Bearer "]))
            .await;
        assert!(out.parts.extensions.get::<crate::AuthnWarnings>().is_none());
    }

    #[tokio::test]
    async fn non_utf8_bearer_header_is_a_bad_credential() {
        let a = BearerToken::new(TokenFn::any(Outcome::MustNotBeCalled));
        let mut parts = parts_with(AUTHORIZATION, &[]);
        parts.headers.insert(
            AUTHORIZATION,
            http::HeaderValue::from_bytes(b"Bearer \xff\xfe").unwrap(),
        );
        let out = a.authenticate_request(parts).await;
        assert!(matches!(out.result, Err(AuthnError::InvalidBearerToken)));
        let mut parts = parts_with(AUTHORIZATION, &[]);
        parts.headers.insert(
            AUTHORIZATION,
            http::HeaderValue::from_bytes(b"Other \xff").unwrap(),
        );
        assert!(matches!(
            a.authenticate_request(parts).await.result,
            Ok(None)
        ));
    }

    enum Expect {
        Ok(&'static str),
        NoOpinion,
        Err(&'static str),
    }

    impl Expect {
        fn check(&self, case: &str, r: &crate::AuthnResult) {
            match (self, r) {
                (Expect::Ok(name), Ok(Some(a))) => assert_eq!(a.user.username, *name, "{case}"),
                (Expect::NoOpinion, Ok(None)) => {}
                (Expect::Err(msg), Err(e)) => assert_eq!(e.to_string(), *msg, "{case}"),
                _ => panic!("{case}: unexpected {r:?}"),
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn never_panics_on_any_header(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..64)) {
            if let Ok(v) = http::HeaderValue::from_bytes(&bytes) {
                let a = BearerToken::new(TokenFn::any(Outcome::NoOpinion));
                let mut parts = parts_with(AUTHORIZATION, &[]);
                parts.headers.insert(AUTHORIZATION, v);
                let _ = a.authenticate_request(parts).into_ready();
            }
        }
    }
}
