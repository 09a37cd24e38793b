//! [`AuthnFuture`]: the one future type every authenticator returns.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// The result of an authenticator call: ready at once (synchronous strategies, no allocation)
/// or one boxed future (strategies that call out, such as a webhook or a key fetch).
///
/// Being one concrete type keeps the authenticator traits object safe, so a union can hold
/// `Arc<dyn AuthenticateToken>` without boxing the futures of synchronous strategies.
#[must_use = "futures do nothing unless polled"]
pub struct AuthnFuture<T> {
    kind: Kind<T>,
}

enum Kind<T> {
    Ready(Option<T>),
    Boxed(Pin<Box<dyn Future<Output = T> + Send + 'static>>),
}

// The value is moved out with `Option::take`, never pinned, so the future is `Unpin` for any `T`.
impl<T> Unpin for AuthnFuture<T> {}

impl<T> AuthnFuture<T> {
    /// A future that is already complete.
    pub fn ready(value: T) -> Self {
        Self {
            kind: Kind::Ready(Some(value)),
        }
    }

    /// Boxes an asynchronous computation.
    pub fn boxed<F>(future: F) -> Self
    where
        F: Future<Output = T> + Send + 'static,
    {
        Self {
            kind: Kind::Boxed(Box::pin(future)),
        }
    }

    /// The value, if the future was created ready and not yet polled; otherwise the future back.
    pub fn into_ready(self) -> Result<T, Self> {
        match self.kind {
            Kind::Ready(Some(v)) => Ok(v),
            kind => Err(Self { kind }),
        }
    }

    /// Whether the future was created ready.
    pub fn is_ready(&self) -> bool {
        matches!(self.kind, Kind::Ready(Some(_)))
    }
}

impl<T> Future for AuthnFuture<T> {
    type Output = T;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        match &mut self.get_mut().kind {
            Kind::Ready(v) => match v.take() {
                Some(v) => Poll::Ready(v),
                None => panic!("AuthnFuture polled after completion"),
            },
            Kind::Boxed(f) => f.as_mut().poll(cx),
        }
    }
}

impl<T> fmt::Debug for AuthnFuture<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.kind {
            Kind::Ready(Some(_)) => "ready",
            Kind::Ready(None) => "done",
            Kind::Boxed(_) => "boxed",
        };
        f.debug_tuple("AuthnFuture").field(&state).finish()
    }
}
