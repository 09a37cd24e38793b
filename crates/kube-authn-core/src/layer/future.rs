use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Instant;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use pin_project_lite::pin_project;
use tower_service::Service;

use super::{After, ResponseBody, Settings};
use crate::{AuthnFuture, RequestOutcome};

pin_project! {
    /// The response future of [`AuthnService`](super::AuthnService).
    pub struct ResponseFuture<S, B>
    where
        S: Service<Request<B>>,
    {
        #[pin]
        state: State<S, B>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, B>
    where
        S: Service<Request<B>>,
    {
        Authenticating {
            auth: AuthnFuture<RequestOutcome>,
            pending: Option<(B, S)>,
            settings: Arc<Settings>,
            start: Option<Instant>,
        },
        Called {
            #[pin]
            future: S::Future,
            after: After,
        },
        Rejected {
            response: Option<Response<Full<Bytes>>>,
        },
    }
}

impl<S: Service<Request<B>>, B> ResponseFuture<S, B> {
    pub(crate) fn called(future: S::Future, after: After) -> Self {
        Self {
            state: State::Called { future, after },
        }
    }

    pub(crate) fn rejected(response: Response<Full<Bytes>>) -> Self {
        Self {
            state: State::Rejected {
                response: Some(response),
            },
        }
    }

    pub(crate) fn authenticating(
        auth: AuthnFuture<RequestOutcome>,
        body: B,
        service: S,
        settings: Arc<Settings>,
        start: Option<Instant>,
    ) -> Self {
        Self {
            state: State::Authenticating {
                auth,
                pending: Some((body, service)),
                settings,
                start,
            },
        }
    }
}

impl<S, B, ResBody> Future for ResponseFuture<S, B>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
{
    type Output = Result<Response<ResponseBody<ResBody>>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Authenticating {
                    auth,
                    pending,
                    settings,
                    start,
                } => {
                    let outcome = ready!(Pin::new(auth).poll(cx));
                    let decision = settings.decide(outcome, *start);
                    let Some((body, mut service)) = pending.take() else {
                        panic!("ResponseFuture polled after completion");
                    };
                    match decision {
                        Ok((parts, after)) => {
                            let future = service.call(Request::from_parts(parts, body));
                            this.state.set(State::Called { future, after });
                        }
                        Err(rejection) => {
                            return Poll::Ready(Ok(rejection.response().map(ResponseBody::status)));
                        }
                    }
                }
                StateProj::Called { future, after } => {
                    let mut response = ready!(future.poll(cx))?;
                    after.apply(&mut response);
                    return Poll::Ready(Ok(response.map(ResponseBody::inner)));
                }
                StateProj::Rejected { response } => {
                    let Some(response) = response.take() else {
                        panic!("ResponseFuture polled after completion");
                    };
                    return Poll::Ready(Ok(response.map(ResponseBody::status)));
                }
            }
        }
    }
}
