//! Robustness at the connection level, below the gRPC services:
//!
//! - [`CatchPanicLayer`]: a panic in any handler becomes an `INTERNAL` status with a message
//!   (HTTP 200, `grpc-status` headers) instead of a reset stream and a `CANCELLED` client.
//! - [`Incoming`]: the accepted connections, capped ([`CoordinatorConfig::max_connections`],
//!   and never more than the open-file limit leaves room for); one over the cap is closed at
//!   once with a log line. A connection that sends nothing for
//!   [`CoordinatorConfig::connection_idle_timeout`] is closed (HTTP/2 keepalive pings, which a
//!   live client answers, keep a quiet but healthy connection open). When `accept` fails for
//!   want of file descriptors it backs off instead of spinning a core.

use crate::config::CoordinatorConfig;
use futures::FutureExt;
use futures::future::BoxFuture;
use std::any::Any;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};
use tokio_stream::Stream;
use tonic::Code;
use tonic::codegen::http;
use tonic::transport::server::{Connected, TcpConnectInfo, TcpIncoming};
use tower::{Layer, Service};

/// File descriptors kept free for everything but connections (journal, apps, input
/// metadata, the runtime's own) when the open-file limit caps the connections.
pub const FD_RESERVE: u64 = 64;

/// Pause after `accept` fails for want of file descriptors or memory.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Least time between two "connection refused" log lines (the count in between is logged).
const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(5);

/// Turns a panic of the inner service into gRPC `INTERNAL` with a message.
#[derive(Clone, Copy, Debug, Default)]
pub struct CatchPanicLayer;

impl<S> Layer<S> for CatchPanicLayer {
    type Service = CatchPanic<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CatchPanic { inner }
    }
}

/// See [`CatchPanicLayer`].
#[derive(Clone, Debug)]
pub struct CatchPanic<S> {
    inner: S,
}

impl<S, Req, B> Service<Req> for CatchPanic<S>
where
    S: Service<Req, Response = http::Response<B>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: Default + Send + 'static,
{
    type Response = http::Response<B>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Req) -> Self::Future {
        let future = match std::panic::catch_unwind(AssertUnwindSafe(|| self.inner.call(request))) {
            Ok(future) => future,
            Err(panic) => return futures::future::ready(Ok(panic_response(panic))).boxed(),
        };
        AssertUnwindSafe(future)
            .catch_unwind()
            .map(|result| result.unwrap_or_else(|panic| Ok(panic_response(panic))))
            .boxed()
    }
}

fn panic_response<B: Default>(panic: Box<dyn Any + Send>) -> http::Response<B> {
    let detail = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".into());
    tracing::error!(panic = %detail, "a request handler panicked; answered INTERNAL");
    crate::error::status(
        Code::Internal,
        format!(
            "internal error: the coordinator failed handling this call ({}); it goes on serving",
            crate::error::clip(&detail)
        ),
    )
    .into_http()
}

/// How many connections may be open at once: the configured cap, lowered to what the
/// open-file limit leaves after [`FD_RESERVE`].
pub fn connection_cap(configured: usize) -> usize {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one struct through a pointer to a live local.
    let known = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0;
    if !known || limit.rlim_cur == libc::RLIM_INFINITY {
        return configured.max(1);
    }
    let room = limit.rlim_cur.saturating_sub(FD_RESERVE).max(1);
    configured
        .min(usize::try_from(room).unwrap_or(usize::MAX))
        .max(1)
}

/// The accepted connections of the coordinator, as tonic's `serve_with_incoming` takes them.
pub struct Incoming {
    inner: TcpIncoming,
    slots: Arc<Semaphore>,
    cap: usize,
    idle_timeout: Duration,
    backoff: Option<Pin<Box<Sleep>>>,
    refused: u64,
    last_refusal_log: Option<Instant>,
}

impl Incoming {
    /// Accepts on `listener` with the limits and TCP keepalive of `config`.
    pub fn new(listener: TcpListener, config: &CoordinatorConfig) -> Self {
        let cap = connection_cap(config.max_connections);
        if cap < config.max_connections {
            tracing::info!(
                configured = config.max_connections,
                cap,
                "open-file limit lowers the connection cap"
            );
        }
        Self {
            inner: TcpIncoming::from(listener)
                .with_nodelay(Some(true))
                .with_keepalive(config.tcp_keepalive),
            slots: Arc::new(Semaphore::new(cap)),
            cap,
            idle_timeout: config.connection_idle_timeout,
            backoff: None,
            refused: 0,
            last_refusal_log: None,
        }
    }

    /// The address accepted on.
    pub fn local_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.inner.local_addr()
    }

    fn refuse(&mut self, stream: TcpStream) {
        self.refused += 1;
        let now = Instant::now();
        if self
            .last_refusal_log
            .is_none_or(|at| now.duration_since(at) >= REFUSAL_LOG_EVERY)
        {
            tracing::warn!(
                peer = ?stream.peer_addr().ok(),
                cap = self.cap,
                refused = self.refused,
                "too many open connections: closing new ones (--max-connections)"
            );
            self.refused = 0;
            self.last_refusal_log = Some(now);
        }
        drop(stream);
    }
}

impl Stream for Incoming {
    type Item = Result<Conn, std::io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if let Some(backoff) = &mut this.backoff {
                ready!(backoff.as_mut().poll(cx));
                this.backoff = None;
            }
            match ready!(Pin::new(&mut this.inner).poll_next(cx)) {
                None => return Poll::Ready(None),
                Some(Ok(stream)) => match this.slots.clone().try_acquire_owned() {
                    Ok(permit) => {
                        return Poll::Ready(Some(Ok(Conn::new(stream, permit, this.idle_timeout))));
                    }
                    Err(_) => this.refuse(stream),
                },
                Some(Err(error)) => {
                    let exhausted = matches!(
                        error.raw_os_error(),
                        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
                    );
                    if exhausted {
                        tracing::warn!(%error, "cannot accept a connection; retrying shortly");
                        this.backoff = Some(Box::pin(tokio::time::sleep(ACCEPT_BACKOFF)));
                    } else {
                        // The peer gave up before the accept (ECONNABORTED and the like).
                        tracing::debug!(%error, "accept failed");
                    }
                }
            }
        }
    }
}

/// An accepted connection: holds its slot under the cap, and ends itself when the peer sends
/// nothing for the idle timeout.
pub struct Conn {
    stream: TcpStream,
    _slot: OwnedSemaphorePermit,
    idle_timeout: Duration,
    last_read: Instant,
    idle: Pin<Box<Sleep>>,
}

impl Conn {
    fn new(stream: TcpStream, slot: OwnedSemaphorePermit, idle_timeout: Duration) -> Self {
        let now = Instant::now();
        Self {
            stream,
            _slot: slot,
            idle_timeout,
            last_read: now,
            idle: Box::pin(tokio::time::sleep_until(now + idle_timeout)),
        }
    }

    /// `Ready` with an error once the peer has been silent for the idle timeout.
    fn poll_idle(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Error> {
        loop {
            ready!(self.idle.as_mut().poll(cx));
            let due = self.last_read + self.idle_timeout;
            if Instant::now() >= due {
                tracing::debug!(
                    peer = ?self.stream.peer_addr().ok(),
                    idle = ?self.idle_timeout,
                    "closing an idle connection"
                );
                return Poll::Ready(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "connection idle for too long",
                ));
            }
            self.idle.as_mut().reset(due);
        }
    }
}

impl Connected for Conn {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.stream.connect_info()
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.stream).poll_read(cx, buf) {
            Poll::Ready(result) => {
                if buf.filled().len() > before {
                    self.last_read = Instant::now();
                }
                Poll::Ready(result)
            }
            Poll::Pending => match self.poll_idle(cx) {
                Poll::Ready(error) => Poll::Ready(Err(error)),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;

    /// A service that panics inside its future, or in `call` itself.
    #[derive(Clone)]
    struct Panicky {
        in_call: bool,
    }

    impl Service<http::Request<()>> for Panicky {
        type Response = http::Response<tonic::body::Body>;
        type Error = Infallible;
        type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _: http::Request<()>) -> Self::Future {
            assert!(!self.in_call, "boom in call");
            async { panic!("boom in the handler") }.boxed()
        }
    }

    #[tokio::test]
    async fn a_panicking_handler_answers_internal_with_a_message() {
        for in_call in [false, true] {
            let mut service = CatchPanicLayer.layer(Panicky { in_call });
            let response = service
                .call(http::Request::new(()))
                .await
                .expect("infallible");
            assert_eq!(
                response.status(),
                http::StatusCode::OK,
                "gRPC errors are HTTP 200"
            );
            let status = tonic::Status::from_header_map(response.headers()).expect("grpc-status");
            assert_eq!(status.code(), Code::Internal);
            assert!(status.message().contains("boom"), "{}", status.message());
        }
    }

    #[test]
    fn the_connection_cap_is_at_least_one() {
        assert_eq!(connection_cap(0), 1);
        assert_eq!(connection_cap(1), 1);
    }
}
