//! The request-time error: a credential was present and could not be accepted.

use std::borrow::Cow;
use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;

/// Why a request's credential was not accepted.
///
/// Every variant turns into `401 Unauthorized` with the Kubernetes Status body; the message is
/// only logged. Messages never contain the credential.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthnError {
    /// A bearer token (header or websocket protocol) that no token authenticator accepted.
    #[error("invalid bearer token")]
    InvalidBearerToken,
    /// HTTP basic credentials that the password authenticator did not accept.
    #[error("invalid username/password combination")]
    InvalidUsernamePassword,
    /// More than one `base64url.bearer.authorization.k8s.io.` websocket protocol entry.
    #[error("multiple base64.bearer.authorization tokens specified")]
    MultipleWebSocketTokens,
    /// The websocket protocol token is not unpadded base64url.
    #[error("invalid base64.bearer.authorization token encoding")]
    InvalidWebSocketTokenEncoding,
    /// The websocket protocol token does not decode to UTF-8.
    #[error("invalid base64.bearer.authorization token")]
    InvalidWebSocketToken,
    /// A websocket bearer token was sent without any other subprotocol.
    #[error("missing additional subprotocol")]
    MissingAdditionalSubprotocol,
    /// The authenticated audiences do not intersect the server's API audiences.
    #[error("unable to match the audience")]
    AudienceMismatch,
    /// A strategy-specific rejection of a credential (expired, wrong issuer, unknown CA, ...).
    #[error("{reason}")]
    Invalid {
        /// What was wrong with the credential (never the credential itself).
        reason: Cow<'static, str>,
    },
    /// The credential could not be checked for a reason that is not the caller's fault (an
    /// upstream webhook or key set is unreachable).
    #[error("{context}: {source}")]
    Unavailable {
        /// What was being contacted.
        context: Cow<'static, str>,
        /// The underlying failure.
        #[source]
        source: Arc<dyn StdError + Send + Sync>,
    },
    /// An authenticator failed unexpectedly.
    #[error("authentication failed unexpectedly")]
    Internal,
    /// Several authenticators rejected the request.
    #[error(transparent)]
    Aggregate(Aggregate),
}

/// The broad class of an [`AuthnError`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The credential is bad.
    InvalidCredential,
    /// The credential could not be checked (upstream failure).
    Unavailable,
    /// An internal failure.
    Internal,
}

impl AuthnError {
    /// A strategy-specific rejection with a fixed reason.
    pub fn invalid(reason: impl Into<Cow<'static, str>>) -> Self {
        Self::Invalid {
            reason: reason.into(),
        }
    }

    /// An upstream failure.
    pub fn unavailable(
        context: impl Into<Cow<'static, str>>,
        source: impl StdError + Send + Sync + 'static,
    ) -> Self {
        Self::Unavailable {
            context: context.into(),
            source: Arc::new(source),
        }
    }

    /// The broad class of this error (for an aggregate, the most severe of its members).
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Unavailable { .. } => ErrorKind::Unavailable,
            Self::Internal => ErrorKind::Internal,
            Self::Aggregate(agg) => agg
                .errors()
                .iter()
                .map(|e| e.error.kind())
                .max_by_key(|k| match k {
                    ErrorKind::InvalidCredential => 0,
                    ErrorKind::Unavailable => 1,
                    ErrorKind::Internal => 2,
                })
                .unwrap_or(ErrorKind::InvalidCredential),
            _ => ErrorKind::InvalidCredential,
        }
    }
}

/// An error tagged with the strategy that produced it.
#[derive(Clone, Debug)]
pub struct StrategyError {
    /// The strategy's name (`AuthenticateRequest::name`).
    pub strategy: &'static str,
    /// What it said.
    pub error: AuthnError,
}

/// The errors of several authenticators, formatted as Kubernetes' `utilerrors.NewAggregate`:
/// one message alone, several de-duplicated and joined as `[a, b]`.
#[derive(Clone, Debug)]
pub struct Aggregate(Vec<StrategyError>);

impl Aggregate {
    /// Builds an aggregate; `None` when there is no error, the error itself when there is one.
    pub fn from_errors(mut errors: Vec<StrategyError>) -> Option<AuthnError> {
        match errors.len() {
            0 => None,
            1 => errors.pop().map(|e| e.error),
            _ => Some(AuthnError::Aggregate(Aggregate(errors))),
        }
    }

    /// The member errors in the order the strategies ran.
    pub fn errors(&self) -> &[StrategyError] {
        &self.0
    }
}

impl Aggregate {
    /// The messages of the members, nested aggregates flattened (Go's `aggregate.visit`), each
    /// once.
    fn messages(&self, messages: &mut Vec<String>) {
        for e in &self.0 {
            match &e.error {
                AuthnError::Aggregate(nested) => nested.messages(messages),
                error => {
                    let m = error.to_string();
                    if !messages.contains(&m) {
                        messages.push(m);
                    }
                }
            }
        }
    }
}

impl fmt::Display for Aggregate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut messages: Vec<String> = Vec::with_capacity(self.0.len());
        self.messages(&mut messages);
        if messages.len() == 1 {
            return f.write_str(&messages[0]);
        }
        f.write_str("[")?;
        for (i, m) in messages.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            f.write_str(m)?;
        }
        f.write_str("]")
    }
}

impl StdError for Aggregate {}

#[cfg(test)]
mod tests {
    use super::*;

    fn tagged(e: AuthnError) -> StrategyError {
        StrategyError {
            strategy: "t",
            error: e,
        }
    }

    #[test]
    fn aggregate_formats_like_kubernetes() {
        assert!(Aggregate::from_errors(vec![]).is_none());
        let one = Aggregate::from_errors(vec![tagged(AuthnError::invalid("first"))]).unwrap();
        assert_eq!(one.to_string(), "first");
        let two = Aggregate::from_errors(vec![
            tagged(AuthnError::invalid("first")),
            tagged(AuthnError::invalid("second")),
        ])
        .unwrap();
        assert_eq!(two.to_string(), "[first, second]");
        let dup = Aggregate::from_errors(vec![
            tagged(AuthnError::InvalidBearerToken),
            tagged(AuthnError::InvalidBearerToken),
        ])
        .unwrap();
        assert_eq!(dup.to_string(), "invalid bearer token");
        // Nested aggregates are flattened before duplicates go (Go's `visit`).
        let nested = Aggregate::from_errors(vec![
            tagged(
                Aggregate::from_errors(vec![
                    tagged(AuthnError::invalid("a")),
                    tagged(AuthnError::invalid("b")),
                ])
                .unwrap(),
            ),
            tagged(AuthnError::invalid("a")),
        ])
        .unwrap();
        assert_eq!(nested.to_string(), "[a, b]");
        let all_same = Aggregate::from_errors(vec![
            tagged(
                Aggregate::from_errors(vec![
                    tagged(AuthnError::invalid("a")),
                    tagged(AuthnError::invalid("a")),
                ])
                .unwrap(),
            ),
            tagged(AuthnError::invalid("a")),
        ])
        .unwrap();
        assert_eq!(all_same.to_string(), "a");
    }

    #[test]
    fn kind_of_an_aggregate_is_the_most_severe() {
        let io = std::io::Error::other("connection refused");
        let agg = Aggregate::from_errors(vec![
            tagged(AuthnError::InvalidBearerToken),
            tagged(AuthnError::unavailable("webhook", io)),
        ])
        .unwrap();
        assert_eq!(agg.kind(), ErrorKind::Unavailable);
        assert_eq!(
            AuthnError::InvalidBearerToken.kind(),
            ErrorKind::InvalidCredential
        );
    }
}
