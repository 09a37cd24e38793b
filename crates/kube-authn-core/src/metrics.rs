//! Authentication metrics with the Kubernetes names, through the `metrics` facade:
//! `authentication_attempts{result}`, `authentication_duration_seconds{result}` (for
//! authentications that waited on an asynchronous strategy) and
//! `authenticated_user_requests{username}` (user names compressed as Kubernetes does).

use std::time::Instant;

use metrics::{Counter, Histogram};

use crate::UserInfo;

const KNOWN_USERS: [&str; 5] = [
    "admin",
    "client",
    "kube_proxy",
    "kubelet",
    "system:serviceaccount:kube-system:default",
];

/// Handles registered once per layer, so the request path does no registry lookup.
#[derive(Clone)]
pub(crate) struct AuthnMetrics {
    attempts: [Counter; 3],
    durations: [Histogram; 3],
    known_users: [Counter; 5],
    email_users: Counter,
    other_users: Counter,
}

const SUCCESS: usize = 0;
const FAILURE: usize = 1;
const ERROR: usize = 2;

impl AuthnMetrics {
    pub(crate) fn new() -> Self {
        let results = ["success", "failure", "error"];
        Self {
            attempts: results.map(|r| metrics::counter!("authentication_attempts", "result" => r)),
            durations: results
                .map(|r| metrics::histogram!("authentication_duration_seconds", "result" => r)),
            known_users: KNOWN_USERS
                .map(|u| metrics::counter!("authenticated_user_requests", "username" => u)),
            email_users: metrics::counter!("authenticated_user_requests", "username" => "email_id"),
            other_users: metrics::counter!("authenticated_user_requests", "username" => "other"),
        }
    }

    /// Counts an attempt; its duration is observed only for authentications that waited
    /// (`start` is set on the asynchronous path): synchronous strategies answer in well under a
    /// microsecond, below the first bucket, and two clock reads per request would cost more
    /// than the lookup itself.
    fn record(&self, result: usize, start: Option<Instant>) {
        self.attempts[result].increment(1);
        if let Some(start) = start {
            self.durations[result].record(start.elapsed().as_secs_f64());
        }
    }

    pub(crate) fn record_success(&self, start: Option<Instant>, user: &UserInfo) {
        self.record(SUCCESS, start);
        let counter = match KNOWN_USERS.iter().position(|u| *u == user.username) {
            Some(i) => &self.known_users[i],
            None if user.username.contains('@') => &self.email_users,
            None => &self.other_users,
        };
        counter.increment(1);
    }

    pub(crate) fn record_failure(&self, start: Option<Instant>) {
        self.record(FAILURE, start);
    }

    pub(crate) fn record_error(&self, start: Option<Instant>) {
        self.record(ERROR, start);
    }
}

impl std::fmt::Debug for AuthnMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuthnMetrics")
    }
}
