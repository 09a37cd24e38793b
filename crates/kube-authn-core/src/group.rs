//! `system:authenticated` for every authenticated user (Kubernetes `AuthenticatedGroupAdder`).

use crate::user::{ANONYMOUS_USER, AUTHENTICATED_GROUP, UNAUTHENTICATED_GROUP};
use crate::{AuthenticateRequest, AuthnFuture, AuthnResult, RequestOutcome};

/// Wraps a request authenticator and adds `system:authenticated` to the groups of every user
/// it authenticates, unless the user is `system:anonymous` or already carries
/// `system:authenticated` or `system:unauthenticated`.
#[derive(Clone, Debug)]
pub struct AuthenticatedGroupAdder<A> {
    inner: A,
}

impl<A> AuthenticatedGroupAdder<A> {
    /// Wraps `inner`.
    pub fn new(inner: A) -> Self {
        Self { inner }
    }
}

/// Adds `system:authenticated` as [`AuthenticatedGroupAdder`] does.
pub fn add_authenticated_group(result: &mut AuthnResult) {
    if let Ok(Some(auth)) = result {
        let user = &mut auth.user;
        if user.username == ANONYMOUS_USER
            || user
                .groups
                .iter()
                .any(|g| g == AUTHENTICATED_GROUP || g == UNAUTHENTICATED_GROUP)
        {
            return;
        }
        user.groups.push(AUTHENTICATED_GROUP.to_owned());
    }
}

impl<A: AuthenticateRequest> AuthenticateRequest for AuthenticatedGroupAdder<A> {
    fn authenticate_request(&self, parts: crate::RequestHead) -> AuthnFuture<RequestOutcome> {
        match self.inner.authenticate_request(parts).into_ready() {
            Ok(mut outcome) => {
                add_authenticated_group(&mut outcome.result);
                AuthnFuture::ready(outcome)
            }
            Err(pending) => AuthnFuture::boxed(async move {
                let mut outcome = pending.await;
                add_authenticated_group(&mut outcome.result);
                outcome
            }),
        }
    }

    fn name(&self) -> &'static str {
        self.inner.name()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Authenticated, UserInfo};

    // Kubernetes authenticated_group_adder_test.go
    #[test]
    fn group_adder_table() {
        let cases: &[(&str, &str, &[&str], &[&str])] = &[
            (
                "TestAuthenticatedGroupAdder",
                "user",
                &["some-group"],
                &["some-group", "system:authenticated"],
            ),
            (
                "TestAuthenticatedGroupAdderAlreadyAdded",
                "user",
                &["system:authenticated", "some-group"],
                &["system:authenticated", "some-group"],
            ),
            (
                "TestAuthenticatedGroupAdderSystemAnonymous",
                "system:anonymous",
                &["some-group"],
                &["some-group"],
            ),
            (
                "TestAuthenticatedGroupAdderSystemUnauthenticated",
                "user",
                &["system:unauthenticated", "some-group"],
                &["system:unauthenticated", "some-group"],
            ),
        ];
        for (case, name, groups, want) in cases {
            let mut r = Ok(Some(Authenticated::new(
                UserInfo::new(*name).with_groups(groups.iter().copied()),
            )));
            add_authenticated_group(&mut r);
            assert_eq!(r.unwrap().unwrap().user.groups, *want, "{case}");
        }
    }
}
