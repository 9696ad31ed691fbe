//! One client connection: TLS handshake, then HTTP/1.1 under deadlines.
//!
//! hyper alone bounds only the time to read request headers; a client that
//! sends headers announcing a body and then goes silent holds its
//! connection (and the handler waiting for the body) forever. So the
//! deadlines live under hyper, in the byte stream ([`TimedIo`]), driven by
//! a per-connection [`Clock`]:
//!
//! ```text
//! waiting ──first byte──▶ reading ──body complete──▶ busy ──answer ready──▶ waiting
//!  (idle timeout;          (request timeout from       (no deadline: the
//!   request timeout on      the first byte, for         server's own work)
//!   a new connection)       headers and body)
//! ```
//!
//! Reads and writes that would block past the deadline fail, hyper closes
//! the connection, and everything it held is freed. A handler is never
//! cancelled by a deadline once it has its whole request.

use std::future::Future as _;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use axum::response::IntoResponse;
use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::api::Peer;
use crate::gate::Slot;
use crate::limits::{Limits, Source};
use crate::throttle::{Ask, Throttle};

/// Largest read buffer hyper may grow for one connection: request headers
/// beyond it are refused (431), so a connection costs a bounded amount.
const MAX_BUF: usize = 64 * 1024;

/// Where a connection is in its request cycle, and its deadline.
#[derive(Clone, Copy, Debug)]
enum Phase {
    /// Between requests (or before the first): the next must start by then.
    Waiting(Instant),
    /// A request has begun: it must be read whole by then.
    Reading(Instant),
    /// The request is read; the server is working on it.
    Busy,
}

/// The deadlines of one connection, shared by its stream and its requests.
#[derive(Debug)]
pub(crate) struct Clock {
    state: Mutex<State>,
    request: std::time::Duration,
    idle: std::time::Duration,
}

#[derive(Debug)]
struct State {
    phase: Phase,
    /// The task blocked on the stream: woken when the deadline moves, since
    /// hyper does not poll a blocked read again on its own after answering
    /// and the timer armed for the old deadline would fire too late.
    waker: Option<Waker>,
}

impl Clock {
    fn new(limits: &Limits) -> Self {
        Self {
            // A new connection has the request timeout to begin its first request.
            state: Mutex::new(State {
                phase: Phase::Waiting(Instant::now() + limits.request_timeout),
                waker: None,
            }),
            request: limits.request_timeout,
            idle: limits.idle_timeout,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A plain enum and a waker: a panic elsewhere cannot leave them inconsistent.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The deadline now, remembering who to wake when it moves.
    fn deadline(&self, waker: &Waker) -> Option<Instant> {
        let mut st = self.lock();
        if !st.waker.as_ref().is_some_and(|w| w.will_wake(waker)) {
            st.waker = Some(waker.clone());
        }
        match st.phase {
            Phase::Waiting(d) | Phase::Reading(d) => Some(d),
            Phase::Busy => None,
        }
    }

    /// Move to the phase `f` gives (if any) and wake the stream's task so
    /// that it arms the new deadline.
    fn set(&self, f: impl FnOnce(Phase) -> Option<Phase>) {
        let mut st = self.lock();
        if let Some(next) = f(st.phase) {
            st.phase = next;
            if let Some(w) = st.waker.take() {
                w.wake();
            }
        }
    }

    /// Request bytes arrived (or hyper found a request already buffered).
    fn request_begun(&self) {
        let limit = self.request;
        self.set(|p| match p {
            Phase::Waiting(_) => Some(Phase::Reading(Instant::now() + limit)),
            _ => None,
        });
    }

    /// The request's body has been read to its end.
    fn request_read(&self) {
        self.set(|p| match p {
            Phase::Busy => None,
            _ => Some(Phase::Busy),
        });
    }

    /// The answer is ready: writing it and waiting for the next request
    /// share the idle timeout.
    fn answered(&self) {
        let limit = self.idle;
        self.set(|_| Some(Phase::Waiting(Instant::now() + limit)));
    }
}

/// A byte stream whose reads and writes fail once they would block past
/// the connection's deadline.
pub(crate) struct TimedIo<T> {
    inner: T,
    clock: Arc<Clock>,
    sleep: Pin<Box<Sleep>>,
    armed: Option<Instant>,
}

impl<T> TimedIo<T> {
    fn new(inner: T, clock: Arc<Clock>) -> Self {
        Self {
            inner,
            clock,
            sleep: Box::pin(tokio::time::sleep_until(Instant::now())),
            armed: None,
        }
    }

    /// The inner stream would block: fail if the deadline has passed, else
    /// make sure the task wakes up when it does.
    fn pending<R>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<R>> {
        let Some(deadline) = self.clock.deadline(cx.waker()) else {
            return Poll::Pending;
        };
        if self.armed != Some(deadline) {
            self.sleep.as_mut().reset(deadline);
            self.armed = Some(deadline);
        }
        match self.sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client took too long (request or idle timeout)",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for TimedIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    this.clock.request_begun();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => this.pending(cx),
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for TimedIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_write(cx, buf) {
            Poll::Pending => this.pending(cx),
            r => r,
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_write_vectored(cx, bufs) {
            Poll::Pending => this.pending(cx),
            r => r,
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_flush(cx) {
            Poll::Pending => this.pending(cx),
            r => r,
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_shutdown(cx) {
            Poll::Pending => this.pending(cx),
            r => r,
        }
    }
}

/// A request body that tells the clock when it has been read to its end.
struct WatchedBody {
    inner: Incoming,
    clock: Arc<Clock>,
}

impl Body for WatchedBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let r = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(r, Poll::Ready(None)) || self.inner.is_end_stream() {
            self.clock.request_read();
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// What every connection shares.
pub(crate) struct Shared {
    pub(crate) acceptor: TlsAcceptor,
    pub(crate) router: axum::Router,
    pub(crate) limits: Limits,
    pub(crate) throttle: Throttle,
}

/// Serve one accepted connection; `slot` is its place under the caps,
/// given back when this returns.
pub(crate) async fn serve(tcp: TcpStream, addr: SocketAddr, slot: Slot, shared: Arc<Shared>) {
    let _slot = slot;
    let tls =
        match tokio::time::timeout(shared.limits.handshake_timeout, shared.acceptor.accept(tcp))
            .await
        {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                tracing::debug!(peer = %addr, error = %e, "TLS handshake failed");
                return;
            }
            Err(_) => {
                tracing::debug!(peer = %addr, "TLS handshake timed out");
                return;
            }
        };
    let cert = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| Arc::new(c.to_vec()));
    let source = Source::of(addr.ip());
    let authenticated = cert.is_some();
    let peer = Peer { addr, cert };
    let clock = Arc::new(Clock::new(&shared.limits));
    let io = TimedIo::new(tls, clock.clone());
    let svc_shared = shared.clone();
    let svc = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        let (shared, clock) = (svc_shared.clone(), clock.clone());
        clock.request_begun();
        if req.body().is_end_stream() {
            clock.request_read();
        }
        let ask = Ask {
            source,
            authenticated,
            join: req.uri().path() == "/v1/join",
        };
        req.extensions_mut().insert(peer.clone());
        async move {
            if let Err(refusal) = shared.throttle.admit(ask) {
                clock.answered();
                return Ok::<_, std::convert::Infallible>(refusal.into_response());
            }
            let req = req.map(|inner| {
                axum::body::Body::new(WatchedBody {
                    inner,
                    clock: clock.clone(),
                })
            });
            let answer = shared.router.clone().oneshot(req).await?;
            shared.throttle.answered(ask, &answer);
            clock.answered();
            Ok(answer)
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        // The clock above bounds the whole request, headers included.
        .header_read_timeout(None)
        .max_buf_size(MAX_BUF)
        .keep_alive(true)
        .serve_connection(TokioIo::new(io), svc);
    if let Err(e) = conn.await {
        tracing::debug!(peer = %addr, error = %e, "connection ended with an error");
    }
}
