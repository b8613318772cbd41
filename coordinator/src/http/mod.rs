//! The coordinator's HTTP side, on its own address (`--http-listen`, off by default): a
//! status page for people, the JSON it is drawn from, and Prometheus `/metrics`.
//!
//! | route | what |
//! | --- | --- |
//! | `/` | jobs (newest first: state, progress per phase, duration) and workers |
//! | `/jobs/{id}` | one job: summary, counters, a Gantt chart of its attempts per worker, errors |
//! | `/api/jobs`, `/api/jobs/{id}`, `/api/workers` | the JSON the page polls every second |
//! | `/metrics` | Prometheus metrics ([`metrics`]) |
//! | `/assets/…` | the page's script and style sheet, compiled in ([`page`]) |
//!
//! With a token (`--auth-token`), everything but the assets needs it, as the gRPC job API
//! does: `Authorization: Bearer <token>` (programs, Prometheus), or, for a browser, the page
//! opened once with `?token=<token>`, which answers with an HttpOnly cookie (derived from the
//! token, not the token itself) and a redirect to the same page without it. Both are compared
//! in constant time ([`crate::auth::BearerAuth`]). The server is plain HTTP: outside a trusted
//! network, keep it on loopback or behind a TLS proxy.
//!
//! Connections go through [`crate::edge::Incoming`] as the gRPC ones do (a cap, an idle
//! timeout), with a cap of their own ([`MAX_HTTP_CONNECTIONS`]). Every read of the
//! scheduler runs on the blocking pool (it takes the scheduler's lock).

pub(crate) mod api;
pub(crate) mod metrics;
pub(crate) mod page;

use crate::auth::BearerAuth;
use crate::config::CoordinatorConfig;
use crate::edge;
use crate::scheduler::Scheduler;
use crate::workers::Workers;
use axum::Router;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::StreamExt;
use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::transport::server::Connected;

pub(crate) use metrics::RequestMetricsLayer;

/// Most HTTP connections open at once (under the gRPC server's own cap).
pub const MAX_HTTP_CONNECTIONS: usize = 256;

/// The cookie a browser keeps after `?token=`.
const COOKIE: &str = "mr_session";

/// What the handlers share.
pub(crate) struct HttpState {
    scheduler: Arc<Scheduler>,
    workers: Arc<Workers>,
    /// The token, from `Authorization: Bearer` or `?token=`.
    token: BearerAuth,
    /// The cookie value `?token=` hands out, and its check.
    cookie: Option<(String, BearerAuth)>,
}

impl HttpState {
    pub(crate) fn new(
        scheduler: Arc<Scheduler>,
        workers: Arc<Workers>,
        token: Option<&str>,
    ) -> Self {
        let token = token.filter(|t| !t.is_empty());
        let cookie = token.map(|t| {
            let value = cookie_value(t);
            let check = BearerAuth::new(Some(&value));
            (value, check)
        });
        Self {
            scheduler,
            workers,
            token: BearerAuth::new(token),
            cookie,
        }
    }
}

/// The cookie for `token`: a digest of it, so the cookie jar never holds the token itself
/// (which also opens the gRPC API).
fn cookie_value(token: &str) -> String {
    let mut hash = Sha256::new();
    hash.update(b"mr status page session\0");
    hash.update(token.trim().as_bytes());
    hex::encode(hash.finalize())
}

/// Serves the HTTP side on `listener` until `stop` turns true.
pub(crate) async fn serve(
    listener: TcpListener,
    config: &CoordinatorConfig,
    state: HttpState,
    mut stop: watch::Receiver<bool>,
) {
    let addr = match listener.local_addr() {
        Ok(addr) => addr,
        Err(error) => {
            tracing::error!(%error, "the HTTP listener has no address");
            return;
        }
    };
    let limits = CoordinatorConfig {
        max_connections: config.max_connections.min(MAX_HTTP_CONNECTIONS),
        ..config.clone()
    };
    let incoming = HttpIncoming {
        inner: edge::Incoming::new(listener, &limits),
        addr,
    };
    tracing::info!(%addr, auth_token = state.token.enabled(), "status page and /metrics listening");
    let served = axum::serve(incoming, router(Arc::new(state)))
        .with_graceful_shutdown(async move {
            let _ = stop.wait_for(|stopped| *stopped).await;
        })
        .await;
    if let Err(error) = served {
        tracing::error!(%error, "the HTTP server failed");
    }
}

/// Every route, the token check, the request metrics and the request span.
fn router(state: Arc<HttpState>) -> Router {
    let guarded = Router::new()
        .route("/", get(index))
        .route("/jobs/{id}", get(job_page))
        .route("/api/jobs", get(api_jobs))
        .route("/api/jobs/{id}", get(api_job))
        .route("/api/workers", get(api_workers))
        .route("/metrics", get(metrics_text))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    Router::new()
        .route("/assets/{name}", get(asset))
        .merge(guarded)
        .fallback(not_found)
        .layer(RequestMetricsLayer::http())
        .layer(crate::guard::SpanLayer)
        .with_state(state)
}

/// The accepted connections, as axum takes them.
struct HttpIncoming {
    inner: edge::Incoming,
    addr: SocketAddr,
}

impl axum::serve::Listener for HttpIncoming {
    type Io = edge::Conn;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.inner.next().await {
                Some(Ok(conn)) => {
                    let peer = conn.connect_info().remote_addr().unwrap_or(self.addr);
                    return (conn, peer);
                }
                // `Incoming` logs and backs off by itself; it yields no errors.
                Some(Err(_)) => continue,
                None => std::future::pending().await,
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.addr)
    }
}

/// Lets a request through with the token (or its cookie); answers `?token=` with the cookie.
async fn require_token(
    State(state): State<Arc<HttpState>>,
    request: Request,
    next: Next,
) -> Response {
    let Some((cookie, cookie_check)) = &state.cookie else {
        return next.run(request).await;
    };
    let path = request.uri().path().to_string();
    let html = !(path.starts_with("/api/") || path == "/metrics");
    if let Some(value) = request.headers().get(header::AUTHORIZATION) {
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer ").or(v.strip_prefix("bearer ")));
        return match token {
            Some(token) if state.token.accepts(token) => next.run(request).await,
            Some(_) => page::unauthorized(html, "invalid bearer token"),
            None => page::unauthorized(html, "the Authorization header is not 'Bearer <token>'"),
        };
    }
    if let Some(token) = query_token(request.uri().query()) {
        if !state.token.accepts(&token) {
            return page::unauthorized(html, "invalid token");
        }
        // Keep the token out of the address bar, history and logs: same page, no query.
        let location = HeaderValue::from_str(&path).unwrap_or(HeaderValue::from_static("/"));
        let set_cookie = format!("{COOKIE}={cookie}; Path=/; HttpOnly; SameSite=Lax");
        let Ok(set_cookie) = HeaderValue::from_str(&set_cookie) else {
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        };
        return (
            StatusCode::SEE_OTHER,
            [
                (header::LOCATION, location),
                (header::SET_COOKIE, set_cookie),
                (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            ],
        )
            .into_response();
    }
    match session_cookie(request.headers()) {
        Some(value) if cookie_check.accepts(&value) => next.run(request).await,
        Some(_) => page::unauthorized(
            html,
            "the session cookie is not valid for this coordinator's token",
        ),
        None => page::unauthorized(html, "missing token"),
    }
}

/// The value of `token=` in a query string, percent-decoded (`+` is kept as it is: tokens
/// are often base64).
fn query_token(query: Option<&str>) -> Option<String> {
    let value = query?
        .split('&')
        .find_map(|pair| pair.strip_prefix("token="))?;
    percent_decode(value)
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The value of the session cookie, if the request has one.
fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (name, value) = pair.trim().split_once('=')?;
            (name == COOKIE).then(|| value.trim_matches('"').to_string())
        })
}

/// Runs `f` on the blocking pool (it takes the scheduler's lock); a panic there is a 500.
async fn blocking<R: Send + 'static>(
    f: impl FnOnce() -> R + Send + 'static,
) -> Result<R, Response> {
    tokio::task::spawn_blocking(f).await.map_err(|error| {
        tracing::error!(%error, "an HTTP handler failed");
        (StatusCode::INTERNAL_SERVER_ERROR, "internal error\n").into_response()
    })
}

fn json<T: serde::Serialize>(status: StatusCode, value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => (
            status,
            [
                (
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                ),
                (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            ],
            body,
        )
            .into_response(),
        Err(error) => {
            tracing::error!(%error, "encoding JSON failed");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

async fn index() -> Response {
    page::index()
}

async fn job_page(State(state): State<Arc<HttpState>>, Path(id): Path<String>) -> Response {
    let scheduler = state.scheduler.clone();
    let lookup = id.clone();
    match blocking(move || scheduler.contains(&lookup)).await {
        Ok(true) => page::job(&id),
        Ok(false) => page::unknown_job(&id),
        Err(response) => response,
    }
}

async fn api_jobs(State(state): State<Arc<HttpState>>) -> Response {
    let scheduler = state.scheduler.clone();
    match blocking(move || api::jobs(&scheduler)).await {
        Ok(list) => json(StatusCode::OK, &list),
        Err(response) => response,
    }
}

async fn api_job(State(state): State<Arc<HttpState>>, Path(id): Path<String>) -> Response {
    let scheduler = state.scheduler.clone();
    let lookup = id.clone();
    match blocking(move || api::job(&scheduler, &lookup)).await {
        Ok(Some(detail)) => json(StatusCode::OK, &detail),
        Ok(None) => json(
            StatusCode::NOT_FOUND,
            &serde_json::json!({ "error": format!("no job {id:?}") }),
        ),
        Err(response) => response,
    }
}

async fn api_workers(State(state): State<Arc<HttpState>>) -> Response {
    let lost_after = state.scheduler.config().task_timeout;
    json(StatusCode::OK, &api::workers(&state.workers, lost_after))
}

async fn metrics_text(State(state): State<Arc<HttpState>>, headers: HeaderMap) -> Response {
    let openmetrics =
        metrics::wants_openmetrics(headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()));
    let (scheduler, workers) = (state.scheduler.clone(), state.workers.clone());
    match blocking(move || metrics::render(&scheduler, &workers, openmetrics)).await {
        Ok((content_type, body)) => (
            [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))],
            body,
        )
            .into_response(),
        Err(response) => response,
    }
}

async fn asset(Path(name): Path<String>) -> Response {
    page::asset(&name)
}

async fn not_found() -> Response {
    page::not_found()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_token_is_found_and_decoded() {
        assert_eq!(query_token(Some("token=abc")), Some("abc".into()));
        assert_eq!(query_token(Some("x=1&token=a%2Bb+c")), Some("a+b+c".into()));
        assert_eq!(query_token(Some("x=1")), None);
        assert_eq!(query_token(None), None);
        assert_eq!(query_token(Some("token=%zz")), None);
    }

    #[test]
    fn the_session_cookie_is_read_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; mr_session=abc; b=2"),
        );
        assert_eq!(session_cookie(&headers), Some("abc".into()));
        assert_eq!(session_cookie(&HeaderMap::new()), None);
    }

    #[test]
    fn the_cookie_is_not_the_token() {
        let cookie = cookie_value("s3cret");
        assert_ne!(cookie, "s3cret");
        assert!(!cookie.contains("s3cret"));
        assert_eq!(cookie, cookie_value("s3cret"));
        assert_ne!(cookie, cookie_value("other"));
    }
}
