//! [`serve`]: a TLS accept loop for hyper/axum services that puts the peer certificates and
//! address into every request; [`Acceptor`]: its connection-level half, for servers with their
//! own accept loop.

use std::error::Error as StdError;
use std::future::{Future, IntoFuture};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use kube_authn_core::CloseConnection;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tower_service::Service;

use super::TlsSource;
use crate::peer::PeerCertificates;

type BoxError = Box<dyn StdError + Send + Sync>;

/// How long a client may take to send a request head on HTTP/1.1, and to bring its first
/// request after the TLS handshake on any protocol.
pub(crate) const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// The HTTP/2 `SETTINGS_MAX_HEADER_LIST_SIZE` Go's server derives from kube-apiserver's
/// `MaxHeaderBytes` (1 MiB), plus 32 bytes of overhead for 10 typical fields: a bearer token
/// of an OIDC provider that puts many groups in it passes hyper's default, 16 KiB. (HTTP/1.1
/// keeps hyper's read buffer of ~400 KiB: it bounds the head, and also what a connection
/// buffers of a body, which Go reads through 4 KiB.)
const H2_MAX_HEADER_LIST_SIZE: u32 = (1 << 20) + 10 * 32;

/// Serves `service` over TLS on `listener`: one task per connection, a handshake timeout
/// (default 10 s), HTTP/1.1 and HTTP/2 (with upgrades, for websockets) through
/// `hyper_util`'s auto builder.
///
/// Every request of a connection carries, in its extensions, the peer's `SocketAddr` and,
/// when the client sent a certificate, the connection's [`PeerCertificates`] (also after TLS
/// session resumption: rustls restores the chain of the original handshake). The TLS
/// handshake runs in the connection's task, so a client that never finishes it does not
/// block others.
///
/// Idle connections do not pile up: a client that completes the handshake but brings no whole
/// request head within the header read timeout (default 30 s) is dropped, whatever it sent
/// (nothing, or part of the HTTP/2 preface: hyper's own timers only start once the protocol is
/// known), as is an HTTP/1.1 client that takes longer for any later request head. Request
/// heads may be as large as kube-apiserver takes (1 MiB) over HTTP/2, ~400 KiB over HTTP/1.1.
///
/// Await the returned value to run the loop (it only returns on a fatal accept error).
///
/// ```no_run
/// # async fn run(tls: std::sync::Arc<rustls::ServerConfig>) -> std::io::Result<()> {
/// use http::{Request, Response};
/// use hyper::body::Incoming;
/// use kube_authn_x509::PeerCertificates;
///
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:6443").await?;
/// let svc = tower::service_fn(|req: Request<Incoming>| async move {
///     let certs = req.extensions().get::<PeerCertificates>().map_or(0, |p| p.chain().len());
///     Ok::<_, std::convert::Infallible>(Response::new(format!("{certs} certificates")))
/// });
/// kube_authn_x509::serve(listener, tls, svc).await
/// # }
/// ```
pub fn serve<S>(listener: TcpListener, tls: impl Into<TlsSource>, service: S) -> Serve<S> {
    Serve {
        listener,
        tls: tls.into(),
        service,
        handshake_timeout: Duration::from_secs(10),
        header_read_timeout: HEADER_READ_TIMEOUT,
        closing: Closing {
            enabled: true,
            hard_cap: GOAWAY_HARD_CAP,
        },
    }
}

/// The accept loop returned by [`serve`]; await it to run.
#[must_use = "the server does nothing until awaited"]
pub struct Serve<S> {
    listener: TcpListener,
    tls: TlsSource,
    service: S,
    handshake_timeout: Duration,
    header_read_timeout: Duration,
    closing: Closing,
}

/// How unauthenticated HTTP/2 connections are closed.
#[derive(Clone, Copy, Debug)]
struct Closing {
    /// Whether they are (`UnauthenticatedHTTP2DOSMitigation`).
    enabled: bool,
    /// [`GOAWAY_HARD_CAP`], shorter in tests.
    hard_cap: Duration,
}

impl<S> std::fmt::Debug for Serve<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Serve")
            .field("listener", &self.listener)
            .field("handshake_timeout", &self.handshake_timeout)
            .field("header_read_timeout", &self.header_read_timeout)
            .field("close_unauthenticated_http2", &self.closing.enabled)
            .finish_non_exhaustive()
    }
}

impl<S> Serve<S> {
    /// How long a client has to complete the TLS handshake (default 10 s).
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// How long a client has, after the handshake, to bring its first request, and on HTTP/1.1
    /// to complete each request head (default 30 s). A connection without a request by then is
    /// closed.
    pub fn header_read_timeout(mut self, timeout: Duration) -> Self {
        self.header_read_timeout = timeout;
        self
    }

    /// Whether an HTTP/2 connection is closed once it got a `401` or served an anonymous
    /// user (default: yes). This is Kubernetes' `UnauthenticatedHTTP2DOSMitigation` feature
    /// gate, on by default since 1.29: one unauthenticated client cannot keep a multiplexed
    /// connection, and its resources, for many requests. A server with public pages served to
    /// HTTP/2 clients (browsers) can turn it off, as kube-apiserver's
    /// `--feature-gates=UnauthenticatedHTTP2DOSMitigation=false` does; its anonymous users then
    /// keep their connections as authenticated ones do. HTTP/1.1 is never affected.
    pub fn close_unauthenticated_http2(mut self, enabled: bool) -> Self {
        self.closing.enabled = enabled;
        self
    }

    /// The hard cap of closing connections ([`GOAWAY_HARD_CAP`]), shortened by tests.
    #[cfg(test)]
    pub(crate) fn goaway_hard_cap(mut self, cap: Duration) -> Self {
        self.closing.hard_cap = cap;
        self
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }
}

impl<S, B> IntoFuture for Serve<S>
where
    S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    type Output = io::Result<()>;
    type IntoFuture = Pin<Box<dyn Future<Output = io::Result<()>> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.run())
    }
}

impl<S> Serve<S> {
    async fn run<B>(self) -> io::Result<()>
    where
        S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError>,
        B: http_body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        // A client that sends no (complete) request head within this time is dropped, so idle
        // sockets do not pile up after the handshake.
        builder
            .http1()
            .timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(self.header_read_timeout);
        builder
            .http2()
            .timer(hyper_util::rt::TokioTimer::new())
            .keep_alive_interval(Some(Duration::from_secs(30)))
            .max_header_list_size(H2_MAX_HEADER_LIST_SIZE);
        loop {
            let (stream, addr) = match self.listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) if is_connection_error(&e) => continue,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::error!(target: "kube_authn::serve", error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let (handshaken, watch) = tokio::sync::oneshot::channel();
            // Never sent: dropped when the connection ends (or is aborted).
            let (alive, ended) = tokio::sync::oneshot::channel::<()>();
            let known = ProtocolKnown::default();
            let task = tokio::spawn(connection(
                stream,
                addr,
                Acceptor {
                    tls: self.tls.clone(),
                    handshake_timeout: self.handshake_timeout,
                },
                self.service.clone(),
                builder.clone(),
                Watched {
                    handshaken,
                    alive,
                    known: known.clone(),
                },
                self.closing,
            ));
            // The first-request watchdog runs beside the connection, so that the connection's
            // own polling carries no timer.
            tokio::spawn(watchdog(
                watch,
                ended,
                self.header_read_timeout,
                known,
                task.abort_handle(),
                addr,
            ));
        }
    }
}

fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// Closes a connection that has not brought a request `timeout` after its TLS handshake.
///
/// hyper's timers start late: the auto builder reads bytes until it knows the protocol, and a
/// client may send nothing, or the first bytes of the HTTP/2 preface, and stop; an HTTP/2
/// connection has no timer before its first request at all. Once an HTTP/1.1 connection's
/// protocol is known, its header read timeout runs for every request head, the first included;
/// an HTTP/2 connection is let go once a request's headers are complete. A slow handler or a
/// long upload is never cut here.
/// Ends with the connection, so that short connections leave no watchdog waiting behind them.
async fn watchdog(
    handshaken: tokio::sync::oneshot::Receiver<()>,
    ended: tokio::sync::oneshot::Receiver<()>,
    timeout: Duration,
    known: ProtocolKnown,
    connection: tokio::task::AbortHandle,
    addr: SocketAddr,
) {
    if handshaken.await.is_err() {
        return; // the handshake failed or the connection already ended
    }
    if tokio::time::timeout(timeout, ended).await.is_ok() {
        return; // the connection ended first
    }
    if !known.yes() && !connection.is_finished() {
        tracing::debug!(target: "kube_authn::serve", %addr, "no request within the header read timeout; closing");
        connection.abort();
    }
}

/// What a connection tells its watchdog: that the handshake is done, that the connection
/// ended (by dropping `alive`), and whether the protocol is known.
struct Watched {
    handshaken: tokio::sync::oneshot::Sender<()>,
    alive: tokio::sync::oneshot::Sender<()>,
    known: ProtocolKnown,
}

async fn connection<S, B>(
    stream: TcpStream,
    addr: SocketAddr,
    acceptor: Acceptor,
    service: S,
    builder: auto::Builder<TokioExecutor>,
    watched: Watched,
    closing: Closing,
) where
    S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let _ = stream.set_nodelay(true);
    let Ok(accepted) = acceptor.accept(stream, addr).await else {
        return;
    };
    let Watched {
        handshaken,
        alive,
        known,
    } = watched;
    let _ = handshaken.send(());
    let (io, service) = accepted.serve(service);
    let state = Arc::new(ConnState::default());
    let mut io = known.watching(io.into_inner());
    io.progress = Some(Arc::clone(&state));
    let io = TokioIo::new(io);
    let service = CloseOnMark {
        inner: service,
        state: Arc::clone(&state),
        enabled: closing.enabled,
    };
    let conn = builder.serve_connection_with_upgrades(io, TowerToHyperService::new(service));
    let mut conn = std::pin::pin!(conn);
    let hard_cap = closing.hard_cap;
    let mut closing = false;
    let mut ended_by_hyper = false;
    let mut wind_down: Option<WindDown> = None;
    // One load per poll of the connection while it is open: the flag is set before the marked
    // response goes to the connection, whose sending wakes this task (HTTP/2 streams run as
    // tasks of their own and hand their responses to it).
    let result = std::future::poll_fn(|cx| {
        if !closing && state.closing.load(Ordering::Acquire) {
            closing = true;
            tracing::debug!(target: "kube_authn::serve", %addr, "closing the connection of an unauthenticated HTTP/2 client");
            // GOAWAY now, as Go sends it with the marked answer (before its headers): a client
            // reading the answer has the GOAWAY first and takes its next request elsewhere;
            // streams it opened after it are refused (REFUSED_STREAM, as the streams past
            // Go's GOAWAY are ignored), so an unauthenticated client that keeps sending gets one
            // answer per connection (the streams it had already opened are answered, as Go
            // finishes them). hyper's graceful shutdown keeps the streams under way, the marked
            // one included.
            state.shut.store(true, Ordering::Release);
            conn.as_mut().graceful_shutdown();
        }
        // The connection first: what it has to write goes out before its time is looked at
        // (a task starved past the linger must not drop answers it has not flushed yet).
        if let Poll::Ready(result) = conn.as_mut().poll(cx) {
            ended_by_hyper = true;
            return Poll::Ready(result);
        }
        if closing {
            let wind_down = wind_down.get_or_insert_with(|| WindDown::new(hard_cap));
            // The answers are out and nothing was written for a second (or the time is up): a
            // client that winds down after the GOAWAY has ended the connection itself; this one
            // has not (hyper's final GOAWAY waits for a PING answer it may never send).
            if wind_down.poll(&state, cx).is_ready() {
                return Poll::Ready(Ok(()));
            }
        }
        Poll::Pending
    })
    .await;
    if let Err(e) = result {
        tracing::debug!(target: "kube_authn::serve", %addr, error = %e, "connection ended with an error");
    }
    if closing && ended_by_hyper {
        // hyper ends a connection as soon as the client answered its GOAWAY's PING and the
        // streams are done, which with the GOAWAY at the mark can be right after the answer
        // was written. Closing the socket then, with bytes of the client still unread (a
        // window update, a settings ack), makes the kernel reset the connection, and a client
        // that had not read its answer yet loses it. Go waits too (`goAwayTimeout`): the
        // socket stays open (and idle) for a second before it is closed.
        tokio::time::sleep(GOAWAY_LINGER).await;
    }
    drop(alive);
}

/// How long a connection being closed stays once its last request is answered and nothing
/// more is written (Go's `goAwayTimeout`).
const GOAWAY_LINGER: Duration = Duration::from_secs(1);
/// How long at most writes can extend that (a slow reader draining its last answer), from
/// the moment the last request was answered: pings answered do not keep a connection forever.
const GOAWAY_CAP: Duration = Duration::from_secs(10);
/// How long at most a marked answer (a 401, an anonymous user's) may stay under way after the
/// mark: a client that never opens its flow-control window keeps its answer from ever ending
/// (Go's server has that gap); an anonymous watch over HTTP/2 ends then too. Authenticated
/// streams of the connection are not cut by it.
const GOAWAY_HARD_CAP: Duration = Duration::from_secs(30);

/// The end of a connection marked for closing.
///
/// The GOAWAY goes out at the mark, and new streams are refused from then on (`CloseOnMark`).
/// A client that winds down ends the connection itself; one that does not (hyper's final
/// GOAWAY waits for a PING answer) loses it once the last answer is out and nothing was written
/// for 1 s (h2 may still be sending the answers: a slow reader is not cut while it reads). All
/// of it within 10 s of the last answer, whatever the client does; a client that sent requests
/// after the mark gets no extension; and 30 s after the mark at the latest while a marked
/// answer is still under way.
struct WindDown {
    /// Fires [`GOAWAY_HARD_CAP`] after the mark.
    hard: Pin<Box<tokio::time::Sleep>>,
    /// Fires [`GOAWAY_LINGER`] after the last write seen.
    linger: Option<Pin<Box<tokio::time::Sleep>>>,
    /// The bytes written when `linger` was last armed.
    at: usize,
    /// Fires [`GOAWAY_CAP`] after the last request was answered.
    cap: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl WindDown {
    fn new(hard_cap: Duration) -> Self {
        Self {
            hard: Box::pin(tokio::time::sleep(hard_cap)),
            linger: None,
            at: 0,
            cap: None,
        }
    }

    /// Ready when the connection has been quiet for [`GOAWAY_LINGER`] after its last answer,
    /// or has had its time ([`GOAWAY_CAP`], [`GOAWAY_HARD_CAP`]).
    fn poll(&mut self, state: &ConnState, cx: &mut Context<'_>) -> Poll<()> {
        // Registered before the count is read: a request ending in another task after the
        // read wakes this one (see `InFlight`'s drop).
        state.register(cx.waker());
        // The hard cap is for marked answers (a 401, an anonymous user's) that never end;
        // authenticated streams under way on the connection finish as they would in Go.
        if self.hard.as_mut().poll(cx).is_ready() && state.marked.load(Ordering::Acquire) != 0 {
            return Poll::Ready(());
        }
        if state.in_flight.load(Ordering::Acquire) != 0 {
            return Poll::Pending;
        }
        let written = state.written.load(Ordering::Relaxed);
        let now = tokio::time::Instant::now();
        let cap = self
            .cap
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(now + GOAWAY_CAP)));
        if cap.as_mut().poll(cx).is_ready() {
            return Poll::Ready(());
        }
        let patient = !state.refused.load(Ordering::Relaxed);
        match &mut self.linger {
            None => {
                self.linger = Some(Box::pin(tokio::time::sleep_until(now + GOAWAY_LINGER)));
                self.at = written;
            }
            Some(linger) if written != self.at && patient => {
                linger.as_mut().reset(now + GOAWAY_LINGER);
                self.at = written;
            }
            Some(_) => {}
        }
        match &mut self.linger {
            Some(linger) => linger.as_mut().poll(cx),
            None => Poll::Pending,
        }
    }
}

/// A connection's closing state: whether a response asked for its end, and how many of its
/// requests are under way (from the call to the end of the response body).
#[derive(Default)]
struct ConnState {
    closing: AtomicBool,
    /// Whether the GOAWAY was sent: later requests are refused.
    shut: AtomicBool,
    in_flight: AtomicUsize,
    /// Marked answers (401s, anonymous users') under way.
    marked: AtomicUsize,
    /// Bytes written to the connection since it was marked for closing (wrapping: only
    /// changes are looked at).
    written: AtomicUsize,
    /// Whether a request came after the close mark (and was refused).
    refused: AtomicBool,
    /// The connection task, once the connection is closing: woken when its last request ends.
    waker: std::sync::Mutex<Option<std::task::Waker>>,
}

impl ConnState {
    fn register(&self, waker: &std::task::Waker) {
        let mut slot = self
            .waker
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !slot.as_ref().is_some_and(|w| w.will_wake(waker)) {
            *slot = Some(waker.clone());
        }
    }

    /// Counts bytes written, once the connection is closing (nothing to count before).
    fn wrote(&self, n: usize) {
        if self.closing.load(Ordering::Relaxed) {
            self.written.fetch_add(n, Ordering::Relaxed);
        }
    }
}

/// One request under way, counted in its connection's [`ConnState`] until dropped.
struct InFlight {
    state: Arc<ConnState>,
    /// Whether the answer was marked (counted in `marked` too).
    marked: bool,
}

impl InFlight {
    fn new(state: &Arc<ConnState>) -> Self {
        state.in_flight.fetch_add(1, Ordering::AcqRel);
        Self {
            state: Arc::clone(state),
            marked: false,
        }
    }

    /// The answer asks for the connection's end.
    fn mark(&mut self) {
        if !self.marked {
            self.marked = true;
            self.state.marked.fetch_add(1, Ordering::AcqRel);
        }
        self.state.closing.store(true, Ordering::Release);
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.marked {
            self.state.marked.fetch_sub(1, Ordering::AcqRel);
        }
        // The last request of a closing connection: the connection task may be waiting for
        // it (hyper drops the body after it has woken that task for the stream's end).
        if self.state.in_flight.fetch_sub(1, Ordering::AcqRel) == 1
            && self.state.closing.load(Ordering::Acquire)
        {
            let waker = self
                .state
                .waker
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .take();
            if let Some(waker) = waker {
                waker.wake();
            }
        }
    }
}

/// Passes requests on to `inner`; a response marked [`CloseConnection`] (the authentication
/// layer's HTTP/2 mitigation: a 401, or an anonymous user) tells the connection to end, and
/// the requests that come after it on that connection are refused (hyper resets their
/// streams), as Go ignores the streams past its GOAWAY.
#[derive(Clone)]
struct CloseOnMark<S> {
    inner: S,
    state: Arc<ConnState>,
    /// [`Serve::close_unauthenticated_http2`].
    enabled: bool,
}

impl<S, R, B> Service<Request<R>> for CloseOnMark<S>
where
    S: Service<Request<R>, Response = Response<B>>,
    S::Error: Into<BoxError>,
{
    type Response = Response<Tracked<B>>;
    type Error = BoxError;
    type Future = MarkFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Request<R>) -> Self::Future {
        // Only HTTP/2 responses are marked: HTTP/1.1 requests are not looked at.
        if req.version() != http::Version::HTTP_2 || !self.enabled {
            return MarkFuture::Calling {
                inner: self.inner.call(req),
                state: None,
                guard: None,
            };
        }
        // Past the GOAWAY, as Go ignores the streams past it (before it, a request is served:
        // the client could not know).
        if self.state.shut.load(Ordering::Acquire) {
            self.state.refused.store(true, Ordering::Relaxed);
            return MarkFuture::Refused;
        }
        // A CONNECT's tunnel outlives its response body: not counted as under way (its mark
        // is still honoured, through `state`).
        let (state, guard) = if req.method() == http::Method::CONNECT {
            (Some(Arc::clone(&self.state)), None)
        } else {
            (None, Some(InFlight::new(&self.state)))
        };
        MarkFuture::Calling {
            inner: self.inner.call(req),
            state,
            guard,
        }
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`CloseOnMark`].
    #[project = MarkProj]
    enum MarkFuture<F> {
        Calling {
            #[pin]
            inner: F,
            // The connection's state, for an HTTP/2 CONNECT (other requests reach it through
            // their guard).
            state: Option<Arc<ConnState>>,
            guard: Option<InFlight>,
        },
        Refused,
    }
}

impl<F, B, E> Future for MarkFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    E: Into<BoxError>,
{
    type Output = Result<Response<Tracked<B>>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            MarkProj::Calling {
                inner,
                state,
                guard,
            } => {
                let response = std::task::ready!(inner.poll(cx)).map_err(Into::into)?;
                if (guard.is_some() || state.is_some())
                    && response.extensions().get::<CloseConnection>().is_some()
                {
                    match (guard.as_mut(), state.as_ref()) {
                        (Some(guard), _) => guard.mark(),
                        (None, Some(state)) => state.closing.store(true, Ordering::Release),
                        (None, None) => {}
                    }
                }
                let guard = guard.take();
                Poll::Ready(Ok(response.map(|inner| Tracked { inner, guard })))
            }
            // REFUSED_STREAM, as for streams past a GOAWAY: the request was not processed, and
            // clients retry it on a new connection (INTERNAL_ERROR, hyper's default for a
            // service error, they do not).
            MarkProj::Refused => {
                Poll::Ready(Err(Box::new(h2::Error::from(h2::Reason::REFUSED_STREAM))))
            }
        }
    }
}

pin_project_lite::pin_project! {
    /// A response body that keeps its request counted as under way until it is dropped.
    struct Tracked<B> {
        #[pin]
        inner: B,
        guard: Option<InFlight>,
    }
}

impl<B: http_body::Body> http_body::Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        self.project().inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// The HTTP/2 connection preface: the auto builder reads until the bytes leave it (HTTP/1.1)
/// or complete it (HTTP/2).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Whether a connection is past the point where hyper's own timers bound it: an HTTP/1.1
/// connection once its protocol is known (the header read timeout then runs), an HTTP/2 one
/// once a request's headers are complete (hyper has no HTTP/2 timer before a request; its
/// keep-alive pings are answered by any client library).
#[derive(Clone, Default)]
struct ProtocolKnown(std::sync::Arc<std::sync::atomic::AtomicBool>);

impl ProtocolKnown {
    fn yes(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// `io`, telling this when its bytes get that far.
    fn watching<T>(&self, io: T) -> Detecting<T> {
        Detecting {
            inner: io,
            state: Detect::Preface(0),
            known: self.clone(),
            progress: None,
        }
    }
}

/// Where a [`Detecting`] stream is in the bytes read.
#[derive(Clone, Copy)]
enum Detect {
    /// This many bytes of the HTTP/2 preface read.
    Preface(usize),
    /// HTTP/2 frames: `have` bytes of a 9-byte frame header, or `skip` payload bytes to pass.
    Frames {
        header: [u8; 9],
        have: usize,
        skip: usize,
    },
    /// Nothing more to follow.
    Known,
}

/// HTTP/2 frame types that carry a header block, and the END_HEADERS flag.
const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
const END_HEADERS: u8 = 0x4;

/// A stream that follows the bytes read (the HTTP/2 preface, then frame headers) and says in
/// its [`ProtocolKnown`] when hyper's timers take over.
struct Detecting<T> {
    inner: T,
    state: Detect,
    known: ProtocolKnown,
    /// The connection's closing state, counting the bytes written once it is closing.
    progress: Option<Arc<ConnState>>,
}

impl<T> Detecting<T> {
    fn follow(&mut self, mut read: &[u8]) {
        while !read.is_empty() {
            let (state, used) = step(self.state, read);
            self.state = state;
            read = read.get(used..).unwrap_or_default();
            if matches!(self.state, Detect::Known) {
                self.known
                    .0
                    .store(true, std::sync::atomic::Ordering::Relaxed);
                return;
            }
        }
    }
}

/// One step of [`Detect`] over `read` (not empty): the next state and the bytes used.
fn step(state: Detect, read: &[u8]) -> (Detect, usize) {
    match state {
        Detect::Preface(matched) => {
            let Some((&b, _)) = read.split_first() else {
                return (state, 0);
            };
            if H2_PREFACE.get(matched) != Some(&b) {
                return (Detect::Known, 1); // not HTTP/2: HTTP/1.1's timers run
            }
            if matched + 1 == H2_PREFACE.len() {
                let frames = Detect::Frames {
                    header: [0; 9],
                    have: 0,
                    skip: 0,
                };
                return (frames, 1);
            }
            (Detect::Preface(matched + 1), 1)
        }
        Detect::Frames { header, have, skip } if skip > 0 => {
            let n = skip.min(read.len());
            let frames = Detect::Frames {
                header,
                have,
                skip: skip - n,
            };
            (frames, n)
        }
        Detect::Frames {
            mut header,
            have,
            skip: _,
        } => {
            let Some((&b, _)) = read.split_first() else {
                return (state, 0);
            };
            if let Some(slot) = header.get_mut(have) {
                *slot = b;
            }
            if have + 1 < header.len() {
                let frames = Detect::Frames {
                    header,
                    have: have + 1,
                    skip: 0,
                };
                return (frames, 1);
            }
            let [l0, l1, l2, kind, flags, ..] = header;
            if matches!(kind, HEADERS | CONTINUATION) && flags & END_HEADERS != 0 {
                return (Detect::Known, 1); // a request's headers are complete
            }
            let len = usize::from(l0) << 16 | usize::from(l1) << 8 | usize::from(l2);
            let frames = Detect::Frames {
                header: [0; 9],
                have: 0,
                skip: len,
            };
            (frames, 1)
        }
        Detect::Known => (Detect::Known, read.len()),
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Detecting<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let result = Pin::new(&mut this.inner).poll_read(cx, buf);
        if !matches!(this.state, Detect::Known) {
            let read = buf.filled().get(before..).unwrap_or_default();
            this.follow(read);
        }
        result
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Detecting<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = std::task::ready!(Pin::new(&mut this.inner).poll_write(cx, buf))?;
        if let Some(state) = &this.progress {
            state.wrote(written);
        }
        Poll::Ready(Ok(written))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = std::task::ready!(Pin::new(&mut this.inner).poll_write_vectored(cx, bufs))?;
        if let Some(state) = &this.progress {
            state.wrote(written);
        }
        Poll::Ready(Ok(written))
    }
}

/// The connection-level half of [`serve`], for servers that run their own accept loop: the
/// TLS handshake (with a timeout) on an accepted socket, then the connection's data (peer
/// certificates, peer address) put into every request of the connection.
///
/// The idle timeouts are the loop's business: hyper's HTTP/1.1 header timeout and HTTP/2
/// keep-alive start only once the auto builder knows the protocol, which a client can put off
/// forever (nothing sent, or part of the HTTP/2 preface), so bound the time to the first
/// request yourself ([`serve`] closes a connection without a request within its header read
/// timeout).
///
/// ```no_run
/// # async fn run(tls: std::sync::Arc<rustls::ServerConfig>) -> std::io::Result<()> {
/// use http::{Request, Response};
/// use hyper::body::Incoming;
/// use hyper_util::rt::TokioExecutor;
/// use hyper_util::server::conn::auto;
/// use hyper_util::service::TowerToHyperService;
/// use kube_authn_x509::{Acceptor, PeerCertificates};
///
/// // Your router (an axum `Router` works the same), usually behind an `AuthnLayer`.
/// let app = tower::service_fn(|req: Request<Incoming>| async move {
///     let certs = req.extensions().get::<PeerCertificates>().map_or(0, |p| p.chain().len());
///     Ok::<_, std::convert::Infallible>(Response::new(format!("{certs} certificates")))
/// });
/// let acceptor = Acceptor::new(tls).handshake_timeout(std::time::Duration::from_secs(5));
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:6443").await?;
/// loop {
///     let (tcp, addr) = listener.accept().await?;
///     let (acceptor, app) = (acceptor.clone(), app.clone());
///     tokio::spawn(async move {
///         // The handshake runs in the connection's task: a slow client blocks no other.
///         let Ok(accepted) = acceptor.accept(tcp, addr).await else { return };
///         // `app` sees `PeerCertificates` and the `SocketAddr` in every request's extensions.
///         let (io, service) = accepted.serve(app);
///         let _ = auto::Builder::new(TokioExecutor::new())
///             .serve_connection_with_upgrades(io, TowerToHyperService::new(service))
///             .await;
///     });
/// }
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct Acceptor {
    tls: TlsSource,
    handshake_timeout: Duration,
}

impl Acceptor {
    /// An acceptor taking each connection's configuration from `tls` (a `ServerConfig`, for
    /// example from [`TlsConfigBuilder`](super::TlsConfigBuilder), or a
    /// [`ReloadingServerConfig`](super::ReloadingServerConfig)); handshake timeout 10 s.
    pub fn new(tls: impl Into<TlsSource>) -> Self {
        Self {
            tls: tls.into(),
            handshake_timeout: Duration::from_secs(10),
        }
    }

    /// How long a client has to complete the TLS handshake (default 10 s).
    #[must_use]
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// Runs the TLS handshake on `io` (a socket accepted from `addr`) with the current
    /// configuration. Fails when the handshake fails or times out (`TimedOut`); the failure is
    /// logged at debug level under `kube_authn::serve`.
    pub async fn accept<IO>(&self, io: IO, addr: SocketAddr) -> io::Result<Accepted<IO>>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        let acceptor = TlsAcceptor::from(self.tls.current());
        let stream = match tokio::time::timeout(self.handshake_timeout, acceptor.accept(io)).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => {
                tracing::debug!(target: "kube_authn::serve", %addr, error = %e, "tls handshake failed");
                return Err(e);
            }
            Err(_) => {
                tracing::debug!(target: "kube_authn::serve", %addr, "tls handshake timed out");
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "tls handshake timed out",
                ));
            }
        };
        let peers = stream
            .get_ref()
            .1
            .peer_certificates()
            .filter(|chain| !chain.is_empty())
            .map(PeerCertificates::from_slice);
        Ok(Accepted {
            stream,
            peers,
            addr,
        })
    }
}

/// A connection whose TLS handshake is done: hand it to hyper with [`Accepted::serve`].
pub struct Accepted<IO> {
    stream: TlsStream<IO>,
    peers: Option<PeerCertificates>,
    addr: SocketAddr,
}

impl<IO> std::fmt::Debug for Accepted<IO> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Accepted")
            .field("addr", &self.addr)
            .field("peers", &self.peers)
            .finish_non_exhaustive()
    }
}

impl<IO> Accepted<IO> {
    /// The client's certificate chain, if it sent one (not verified: that is the
    /// authenticators' job).
    pub fn peer_certificates(&self) -> Option<&PeerCertificates> {
        self.peers.as_ref()
    }

    /// The client's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The TLS stream (ALPN, protocol version, ...).
    pub fn tls(&self) -> &TlsStream<IO> {
        &self.stream
    }

    /// The stream for hyper and `service` wrapped so that every request of this connection
    /// carries the connection's [`PeerCertificates`] (when the client sent a chain) and its
    /// `SocketAddr` in its extensions.
    pub fn serve<S>(self, service: S) -> (TokioIo<TlsStream<IO>>, ConnectionService<S>) {
        (
            TokioIo::new(self.stream),
            ConnectionService {
                inner: service,
                peers: self.peers,
                addr: self.addr,
            },
        )
    }
}

/// Inserts the connection's data into each request, then calls the wrapped service (made by
/// [`Accepted::serve`]).
#[derive(Clone)]
pub struct ConnectionService<S> {
    inner: S,
    peers: Option<PeerCertificates>,
    addr: SocketAddr,
}

impl<S> std::fmt::Debug for ConnectionService<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionService")
            .field("addr", &self.addr)
            .field("peers", &self.peers)
            .finish_non_exhaustive()
    }
}

impl<S, B> Service<Request<B>> for ConnectionService<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let extensions = req.extensions_mut();
        extensions.insert(self.addr);
        if let Some(peers) = &self.peers {
            extensions.insert(peers.clone());
        }
        self.inner.call(req)
    }
}

#[cfg(test)]
mod detect_tests {
    use super::*;

    /// Feeds `bytes` to a fresh detector in pieces of `piece` bytes: whether it is done.
    fn known_after(bytes: &[u8], piece: usize) -> bool {
        let known = ProtocolKnown::default();
        let mut d = known.watching(());
        for chunk in bytes.chunks(piece) {
            d.follow(chunk);
        }
        known.yes()
    }

    fn frame(kind: u8, flags: u8, payload: &[u8]) -> Vec<u8> {
        let len = payload.len();
        let mut f = vec![
            (len >> 16) as u8,
            (len >> 8) as u8,
            len as u8,
            kind,
            flags,
            0,
            0,
            0,
            1,
        ];
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn http1_is_known_at_its_first_byte_http2_at_a_complete_header_block() {
        for piece in 1..=40 {
            assert!(known_after(b"GET / HTTP/1.1\r\n", piece));
            assert!(known_after(b"PX", piece), "leaves the preface");
            assert!(!known_after(b"", piece));
            assert!(
                !known_after(b"PRI * HTTP/2.0\r\n", piece),
                "part of the preface"
            );
            let mut h2 = H2_PREFACE.to_vec();
            assert!(!known_after(&h2, piece), "the preface alone");
            // SETTINGS, PING, WINDOW_UPDATE, and a HEADERS frame still waiting for its
            // CONTINUATION: no request yet. Payloads hold bytes that look like frame headers.
            h2.extend(frame(0x4, 0, &[0, 3, 0, 0, 0, 100]));
            h2.extend(frame(0x6, 0, &[1, 0x4, 0, 0, 0, 0, 0, 0]));
            h2.extend(frame(0x8, 0, &[0, 0, 1, 0]));
            h2.extend(frame(HEADERS, 0, &[0x82, 0x86]));
            assert!(!known_after(&h2, piece), "no complete header block");
            let mut continued = h2.clone();
            continued.extend(frame(CONTINUATION, END_HEADERS, &[0x84]));
            assert!(
                known_after(&continued, piece),
                "CONTINUATION ends the block"
            );
            let mut whole = H2_PREFACE.to_vec();
            whole.extend(frame(HEADERS, END_HEADERS | 0x1, &[0x82]));
            assert!(known_after(&whole, piece), "one HEADERS frame");
        }
    }
}
