//! Per-call limits, as tower layers around a gRPC service:
//!
//! - [`GuardLayer`]: a call whose response has not started within the deadline is
//!   answered `DEADLINE_EXCEEDED` and its handler dropped (a long poll answers within its
//!   own, shorter wait, and a stream's deadline covers its opening only); and, with
//!   [`GuardLayer::shedding`], at most so many calls in flight: one more is answered
//!   `UNAVAILABLE` at once, saying so (load shedding). Shedding wraps the job API only, so
//!   that a flood of users' calls cannot take the runtime and the blocking pool from the
//!   workers' calls, which have no such cap.
//! - [`SpanLayer`] (on the gRPC and the HTTP server alike): every request runs in a
//!   `request` span naming its path (a gRPC method) and the peer, so
//!   that the handler's log lines (and the scheduler's, with their `job_id`, `task`,
//!   `attempt` and `worker`) say which call they belong to. At debug level
//!   (`RUST_LOG=mr_coordinator::guard=debug`), so that the default log stays as terse.

use futures::FutureExt;
use futures::future::BoxFuture;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::Semaphore;
use tonic::Code;
use tonic::codegen::http;
use tonic::server::NamedService;
use tower::{Layer, Service};

/// See the module doc: a deadline for every call and, optionally, a cap on calls in
/// flight.
#[derive(Clone, Debug)]
pub struct GuardLayer {
    deadline: Duration,
    shed: Option<Shed>,
}

/// The cap on calls in flight, and the flag that sets it (for the refusal's message).
#[derive(Clone, Debug)]
struct Shed {
    permits: Arc<Semaphore>,
    limit: usize,
    setting: &'static str,
}

impl GuardLayer {
    /// Calls not answered within `deadline` are answered `DEADLINE_EXCEEDED`.
    pub fn deadline(deadline: Duration) -> Self {
        Self {
            deadline,
            shed: None,
        }
    }

    /// And at most `limit` calls in flight: one more is answered `UNAVAILABLE` at once.
    pub fn shedding(mut self, limit: usize, setting: &'static str) -> Self {
        let limit = limit.max(1);
        self.shed = Some(Shed {
            permits: Arc::new(Semaphore::new(limit)),
            limit,
            setting,
        });
        self
    }
}

impl<S> Layer<S> for GuardLayer {
    type Service = Guarded<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Guarded {
            inner,
            layer: self.clone(),
        }
    }
}

/// See [`GuardLayer`].
#[derive(Clone, Debug)]
pub struct Guarded<S> {
    inner: S,
    layer: GuardLayer,
}

impl<S, Req, B> Service<Req> for Guarded<S>
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
        let permit = match &self.layer.shed {
            None => None,
            Some(shed) => match shed.permits.clone().try_acquire_owned() {
                Ok(permit) => Some(permit),
                Err(_) => {
                    let message = format!(
                        "the coordinator is busy: {} job API calls are in flight, the most it \
                         takes at once ({}); retry shortly",
                        shed.limit, shed.setting
                    );
                    let refusal = crate::error::status(Code::Unavailable, message).into_http();
                    return futures::future::ready(Ok(refusal)).boxed();
                }
            },
        };
        let deadline = self.layer.deadline;
        tokio::time::timeout(deadline, self.inner.call(request))
            .map(move |result| {
                drop(permit);
                result.unwrap_or_else(|_| {
                    tracing::warn!(
                        ?deadline,
                        "a call passed its deadline; answered DEADLINE_EXCEEDED"
                    );
                    let message = format!(
                        "the coordinator did not answer within {deadline:?} (--call-timeout)"
                    );
                    Ok(crate::error::status(Code::DeadlineExceeded, message).into_http())
                })
            })
            .boxed()
    }
}

impl<S: NamedService> NamedService for Guarded<S> {
    const NAME: &'static str = S::NAME;
}

/// See the module doc.
#[derive(Clone, Copy, Debug, Default)]
pub struct SpanLayer;

impl<S> Layer<S> for SpanLayer {
    type Service = Spanned<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Spanned { inner }
    }
}

/// See [`SpanLayer`].
#[derive(Clone, Debug)]
pub struct Spanned<S> {
    inner: S,
}

impl<S, B> Service<http::Request<B>> for Spanned<S>
where
    S: Service<http::Request<B>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        use tracing::Instrument;
        let peer = request
            .extensions()
            .get::<tonic::transport::server::TcpConnectInfo>()
            .and_then(|info| info.remote_addr())
            .or_else(|| {
                request
                    .extensions()
                    .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
                    .map(|info| info.0)
            });
        let span = tracing::debug_span!(
            "request",
            path = request.uri().path(),
            peer = peer.map(|p| p.to_string()).unwrap_or_default()
        );
        let future = span.in_scope(|| self.inner.call(request));
        future.instrument(span).boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;
    use tower::ServiceExt;

    type Response = http::Response<String>;

    /// A service whose calls wait until `release` is closed.
    fn waiting(
        release: Arc<Semaphore>,
    ) -> impl Service<
        (),
        Response = Response,
        Error = Infallible,
        Future = BoxFuture<'static, Result<Response, Infallible>>,
    > + Clone {
        tower::service_fn(move |()| {
            let release = release.clone();
            async move {
                let _ = release.acquire().await;
                Ok::<_, Infallible>(http::Response::new("done".to_string()))
            }
            .boxed()
        })
    }

    fn grpc_status(response: &Response) -> Option<&str> {
        response
            .headers()
            .get("grpc-status")
            .and_then(|v| v.to_str().ok())
    }

    #[tokio::test]
    async fn calls_past_the_cap_are_shed_at_once_and_a_freed_slot_serves_again() {
        let release = Arc::new(Semaphore::new(0));
        let service = GuardLayer::deadline(Duration::from_secs(60))
            .shedding(2, "--max-job-calls")
            .layer(waiting(release.clone()));
        let first = tokio::spawn(service.clone().oneshot(()));
        let second = tokio::spawn(service.clone().oneshot(()));
        tokio::task::yield_now().await;
        let shed = service.clone().oneshot(()).await.expect("infallible");
        assert_eq!(grpc_status(&shed), Some("14"), "UNAVAILABLE");
        let message = shed.headers().get("grpc-message").expect("a message");
        assert!(message.to_str().unwrap_or("").contains("--max-job-calls"));
        release.close();
        for call in [first, second] {
            let response = call.await.expect("join").expect("infallible");
            assert_eq!(response.into_body(), "done");
        }
        let again = service.oneshot(()).await.expect("infallible");
        assert_eq!(grpc_status(&again), None, "served");
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_past_its_deadline_is_answered_deadline_exceeded() {
        let release = Arc::new(Semaphore::new(0));
        let service = GuardLayer::deadline(Duration::from_secs(60)).layer(waiting(release));
        let response = service.oneshot(()).await.expect("infallible");
        assert_eq!(grpc_status(&response), Some("4"), "DEADLINE_EXCEEDED");
    }
}
