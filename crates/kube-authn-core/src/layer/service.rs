use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use http::{Request, Response};
use tower_service::Service;

use super::{ResponseBody, ResponseFuture, Settings};
use crate::AuthenticateRequest;

/// The service produced by [`AuthnLayer`](super::AuthnLayer).
#[derive(Debug)]
pub struct AuthnService<S, A> {
    pub(crate) inner: S,
    pub(crate) auth: Arc<A>,
    pub(crate) settings: Arc<Settings>,
}

impl<S: Clone, A> Clone for AuthnService<S, A> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            auth: Arc::clone(&self.auth),
            settings: Arc::clone(&self.settings),
        }
    }
}

impl<S, A> AuthnService<S, A> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S, A, ReqBody, ResBody> Service<Request<ReqBody>> for AuthnService<S, A>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    A: AuthenticateRequest,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S, ReqBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let (mut parts, body) = request.into_parts();
        if let Some(audiences) = &self.settings.audiences {
            parts.extensions.insert(audiences.clone());
        }
        match self.auth.authenticate_request(Box::new(parts)).into_ready() {
            // Synchronous strategies: decide now and call the service that was made ready.
            Ok(outcome) => match self.settings.decide(outcome, None) {
                Ok((parts, after)) => {
                    ResponseFuture::called(self.inner.call(Request::from_parts(parts, body)), after)
                }
                Err(rejection) => ResponseFuture::rejected(rejection.response()),
            },
            Err(pending) => {
                // Take the ready service into the future; keep a fresh clone here.
                let clone = self.inner.clone();
                let ready = std::mem::replace(&mut self.inner, clone);
                ResponseFuture::authenticating(
                    pending,
                    body,
                    ready,
                    Arc::clone(&self.settings),
                    Some(Instant::now()),
                )
            }
        }
    }
}
