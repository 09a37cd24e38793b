//! Unions: try authenticators in order, the first success wins, errors are collected
//! (Kubernetes `request/union` and `token/union`).

use std::sync::Arc;

use zeroize::Zeroizing;

use crate::error::{Aggregate, StrategyError};
use crate::{
    Audiences, AuthenticateRequest, AuthenticateToken, AuthnFuture, AuthnResult, RequestOutcome,
};

/// Request authenticators tried in order. The first that authenticates wins and earlier errors
/// are discarded; when none authenticates, the errors (if any) are returned as one aggregate.
#[derive(Clone)]
pub struct Union {
    members: Arc<[Arc<dyn AuthenticateRequest>]>,
}

impl Union {
    /// A union of `members`, tried in the given order.
    pub fn new(members: Vec<Arc<dyn AuthenticateRequest>>) -> Self {
        Self {
            members: members.into(),
        }
    }

    /// The number of members.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether the union has no member.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }
}

impl std::fmt::Debug for Union {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.members.iter().map(|m| m.name()))
            .finish()
    }
}

enum Step<T> {
    Done(T),
    Next(T),
}

fn request_step(
    name: &'static str,
    outcome: RequestOutcome,
    errors: &mut Vec<StrategyError>,
) -> Step<RequestOutcome> {
    match outcome.result {
        Ok(Some(_)) => Step::Done(outcome),
        Ok(None) => Step::Next(outcome),
        Err(error) => {
            errors.push(StrategyError {
                strategy: name,
                error,
            });
            Step::Next(RequestOutcome::no_opinion(outcome.parts))
        }
    }
}

impl AuthenticateRequest for Union {
    fn authenticate_request(&self, mut parts: crate::RequestHead) -> AuthnFuture<RequestOutcome> {
        let mut errors = Vec::new();
        for (i, member) in self.members.iter().enumerate() {
            match member.authenticate_request(parts).into_ready() {
                Ok(outcome) => match request_step(member.name(), outcome, &mut errors) {
                    Step::Done(outcome) => return AuthnFuture::ready(outcome),
                    Step::Next(outcome) => parts = outcome.parts,
                },
                Err(pending) => {
                    let members = Arc::clone(&self.members);
                    return AuthnFuture::boxed(async move {
                        let mut outcome = pending.await;
                        let mut next = i;
                        loop {
                            match request_step(members[next].name(), outcome, &mut errors) {
                                Step::Done(outcome) => return outcome,
                                Step::Next(o) => {
                                    next += 1;
                                    let Some(m) = members.get(next) else {
                                        return RequestOutcome::new(
                                            o.parts,
                                            Aggregate::from_errors(errors).map_or(Ok(None), Err),
                                        );
                                    };
                                    outcome = m.authenticate_request(o.parts).await;
                                }
                            }
                        }
                    });
                }
            }
        }
        AuthnFuture::ready(RequestOutcome::new(
            parts,
            Aggregate::from_errors(errors).map_or(Ok(None), Err),
        ))
    }

    fn name(&self) -> &'static str {
        "union"
    }
}

/// Token authenticators tried in order, with the semantics of [`Union`].
#[derive(Clone)]
pub struct TokenUnion {
    members: Arc<[Arc<dyn AuthenticateToken>]>,
}

impl TokenUnion {
    /// A union of `members`, tried in the given order.
    pub fn new(members: Vec<Arc<dyn AuthenticateToken>>) -> Self {
        Self {
            members: members.into(),
        }
    }

    /// The number of members.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether the union has no member.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }
}

impl std::fmt::Debug for TokenUnion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.members.iter().map(|m| m.name()))
            .finish()
    }
}

fn token_step(
    name: &'static str,
    result: AuthnResult,
    errors: &mut Vec<StrategyError>,
) -> Step<AuthnResult> {
    match result {
        Ok(Some(a)) => Step::Done(Ok(Some(a))),
        Ok(None) => Step::Next(Ok(None)),
        Err(error) => {
            errors.push(StrategyError {
                strategy: name,
                error,
            });
            Step::Next(Ok(None))
        }
    }
}

impl AuthenticateToken for TokenUnion {
    fn authenticate_token(&self, token: &str, audiences: &Audiences) -> AuthnFuture<AuthnResult> {
        let mut errors = Vec::new();
        for (i, member) in self.members.iter().enumerate() {
            match member.authenticate_token(token, audiences).into_ready() {
                Ok(result) => {
                    if let Step::Done(r) = token_step(member.name(), result, &mut errors) {
                        return AuthnFuture::ready(r);
                    }
                }
                Err(pending) => {
                    // Only this slow path copies the token (and wipes the copy when done).
                    let token = Zeroizing::new(token.to_owned());
                    let audiences = audiences.clone();
                    let members = Arc::clone(&self.members);
                    return AuthnFuture::boxed(async move {
                        let mut result = pending.await;
                        let mut next = i;
                        loop {
                            if let Step::Done(r) =
                                token_step(members[next].name(), result, &mut errors)
                            {
                                return r;
                            }
                            next += 1;
                            let Some(m) = members.get(next) else {
                                return Aggregate::from_errors(errors).map_or(Ok(None), Err);
                            };
                            result = m.authenticate_token(&token, &audiences).await;
                        }
                    });
                }
            }
        }
        AuthnFuture::ready(Aggregate::from_errors(errors).map_or(Ok(None), Err))
    }

    fn name(&self) -> &'static str {
        "token-union"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Authenticated, AuthnError, UserInfo};
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A request authenticator with a fixed answer, optionally asynchronous.
    struct Fixed {
        result: Result<Option<&'static str>, &'static str>,
        asynchronous: bool,
        calls: AtomicUsize,
    }

    fn fixed(result: Result<Option<&'static str>, &'static str>, asynchronous: bool) -> Arc<Fixed> {
        Arc::new(Fixed {
            result,
            asynchronous,
            calls: AtomicUsize::new(0),
        })
    }

    impl Fixed {
        fn result(&self) -> AuthnResult {
            match self.result {
                Ok(Some(name)) => Ok(Some(Authenticated::new(UserInfo::new(name)))),
                Ok(None) => Ok(None),
                Err(msg) => Err(AuthnError::invalid(msg)),
            }
        }
    }

    impl AuthenticateRequest for Fixed {
        fn authenticate_request(&self, parts: crate::RequestHead) -> AuthnFuture<RequestOutcome> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let outcome = RequestOutcome::new(parts, self.result());
            if self.asynchronous {
                AuthnFuture::boxed(async move {
                    tokio::task::yield_now().await;
                    outcome
                })
            } else {
                AuthnFuture::ready(outcome)
            }
        }
    }

    impl AuthenticateToken for Fixed {
        fn authenticate_token(&self, _token: &str, _a: &Audiences) -> AuthnFuture<AuthnResult> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let r = self.result();
            if self.asynchronous {
                AuthnFuture::boxed(async move { r })
            } else {
                AuthnFuture::ready(r)
            }
        }
    }

    fn parts() -> crate::RequestHead {
        Box::new(http::Request::new(()).into_parts().0)
    }

    fn name(r: &AuthnResult) -> Option<&str> {
        r.as_ref()
            .ok()
            .and_then(|a| a.as_ref())
            .map(|a| a.user.username.as_str())
    }

    // Kubernetes unionauth_test.go, with user1 = fresh_ferret and user2 = elegant_sheep; every
    // case runs with synchronous and with asynchronous members.
    #[allow(clippy::type_complexity)] // a test table
    #[tokio::test]
    async fn union_table() {
        type R = Result<Option<&'static str>, &'static str>;
        let cases: &[(&str, &[R], Result<Option<&str>, &str>)] = &[
            (
                "TestAuthenticateRequestSecondPasses",
                &[Ok(None), Ok(Some("elegant_sheep"))],
                Ok(Some("elegant_sheep")),
            ),
            (
                "TestAuthenticateRequestFirstPasses",
                &[Ok(Some("fresh_ferret")), Ok(None)],
                Ok(Some("fresh_ferret")),
            ),
            (
                "TestAuthenticateRequestSuppressUnnecessaryErrors",
                &[Err("first"), Ok(Some("elegant_sheep"))],
                Ok(Some("elegant_sheep")),
            ),
            ("TestAuthenticateRequestNoAuthenticators", &[], Ok(None)),
            (
                "TestAuthenticateRequestNonePass",
                &[Ok(None), Ok(None)],
                Ok(None),
            ),
            (
                "TestAuthenticateRequestAdditiveErrors",
                &[Err("first"), Err("second")],
                Err("[first, second]"),
            ),
        ];
        for (case, members, want) in cases {
            for asynchronous in [false, true] {
                for mixed in [false, true] {
                    let ms: Vec<Arc<Fixed>> = members
                        .iter()
                        .enumerate()
                        .map(|(i, r)| fixed(*r, asynchronous && (!mixed || i == 0)))
                        .collect();
                    let union = Union::new(
                        ms.iter()
                            .map(|m| m.clone() as Arc<dyn AuthenticateRequest>)
                            .collect(),
                    );
                    let out = union.authenticate_request(parts()).await;
                    let tunion = TokenUnion::new(
                        ms.iter()
                            .map(|m| m.clone() as Arc<dyn AuthenticateToken>)
                            .collect(),
                    );
                    let tout = tunion.authenticate_token("t", &Audiences::none()).await;
                    for (what, got) in [("request", &out.result), ("token", &tout)] {
                        match want {
                            Ok(w) => {
                                assert_eq!(name(got), *w, "{case} {what} async={asynchronous}")
                            }
                            Err(msg) => assert_eq!(
                                got.as_ref().unwrap_err().to_string(),
                                *msg,
                                "{case} {what}"
                            ),
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn synchronous_members_give_a_ready_future_and_stop_at_the_first_success() {
        let a = fixed(Ok(Some("fresh_ferret")), false);
        let b = fixed(Ok(Some("elegant_sheep")), false);
        let union = Union::new(vec![a.clone(), b.clone()]);
        let fut = union.authenticate_request(parts());
        assert!(fut.is_ready());
        let outcome = fut.into_ready().ok().unwrap();
        assert_eq!(name(&outcome.result), Some("fresh_ferret"));
        assert_eq!(a.calls.load(Ordering::SeqCst), 1);
        assert_eq!(b.calls.load(Ordering::SeqCst), 0);
    }
}
