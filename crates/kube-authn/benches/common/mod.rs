//! What both request-path benches share: a no-op inner service, a one-poll call, and the
//! measurement of one case.

#![allow(dead_code)]

use std::convert::Infallible;
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use criterion::measurement::WallTime;
use criterion::{BatchSize, BenchmarkGroup};
use http::{Request, Response};
use tower::Service;

pub(crate) type Body = http_body_util::Full<bytes::Bytes>;

pub(crate) fn inner() -> impl Service<
    Request<()>,
    Response = Response<Body>,
    Error = Infallible,
    Future = std::future::Ready<Result<Response<Body>, Infallible>>,
> + Clone {
    tower::service_fn(|_req: Request<()>| {
        std::future::ready(Ok::<_, Infallible>(Response::new(Body::default())))
    })
}

/// Calls the service and polls its future once: the synchronous path.
pub(crate) fn call<S, B>(svc: &mut S, req: Request<()>) -> u16
where
    S: Service<Request<()>, Response = Response<B>>,
    S::Error: std::fmt::Debug,
{
    let mut cx = Context::from_waker(Waker::noop());
    assert!(svc.poll_ready(&mut cx).is_ready());
    let fut = pin!(svc.call(req));
    match fut.poll(&mut cx) {
        Poll::Ready(Ok(resp)) => resp.status().as_u16(),
        _ => panic!("synchronous strategies complete in one poll"),
    }
}

/// Measures `svc` on one request shape: each iteration calls it with a fresh request from
/// `request`, built outside the measured closure.
pub(crate) fn bench_calls<S, B>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    svc: &mut S,
    request: impl FnMut() -> Request<()>,
) where
    S: Service<Request<()>, Response = Response<B>>,
    S::Error: std::fmt::Debug,
{
    let mut request = request;
    group.bench_function(name, |b| {
        b.iter_batched(
            &mut request,
            |req| std::hint::black_box(call(svc, req)),
            BatchSize::SmallInput,
        )
    });
}
