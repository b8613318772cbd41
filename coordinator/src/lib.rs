//! The mr coordinator: accepts jobs from users, hands their tasks to workers, and keeps
//! every job's state behind one lock (see [`scheduler`]).
//!
//! [`run`] serves on a given listener until a given shutdown future completes, so tests start
//! a real coordinator on `127.0.0.1:0` and stop it when they like. Connections go through
//! [`edge`] (a cap, idle and keepalive timeouts, panics turned into `INTERNAL`). With
//! `--http-listen`, an HTTP server beside it serves the status page and Prometheus
//! `/metrics` (`http`), and stops with it.

pub mod apps;
pub mod auth;
pub mod config;
pub mod edge;
pub mod error;
pub(crate) mod guard;
pub mod health;
pub(crate) mod http;
pub(crate) mod journal;
pub(crate) mod output;
pub(crate) mod scheduler;
pub mod service;
pub(crate) mod state;
pub(crate) mod watch;
pub(crate) mod workers;

// In the library's test binary rather than in tests/: one test binary fewer to link.
#[cfg(test)]
mod run_tests;

use crate::apps::AppStore;
use crate::config::CoordinatorConfig;
use crate::scheduler::{Event, Reply, Scheduler};
use crate::service::Services;
use mr_common::DataDir;
use mr_proto::v1::coordinator_server::CoordinatorServer;
use mr_proto::v1::job_service_server::JobServiceServer;
use std::future::Future;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch as signal;
use tonic::service::interceptor::InterceptedService;
use tower::Layer;

/// Why the coordinator could not start or keep serving.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The data folder is unusable.
    #[error(transparent)]
    DataDir(#[from] mr_common::PathError),
    /// The journal could not be opened or replayed.
    #[error(transparent)]
    Journal(#[from] crate::journal::JournalError),
    /// The token, TLS certificate or key cannot be used.
    #[error(transparent)]
    Security(#[from] crate::auth::SecurityError),
    /// Reflection could not be set up from the schema.
    #[error("gRPC reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// The gRPC server failed.
    #[error("gRPC server: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// The HTTP address (`--http-listen`) cannot be bound.
    #[error("binding the HTTP address {addr}: {source}")]
    HttpBind {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// Serves the job API, the worker API, health and reflection on `listener` until `shutdown`
/// completes; then stops accepting, ends long polls and watches, and returns. With a token
/// (and TLS files) in `config`, the job and worker APIs need the token (and TLS): see [`auth`].
/// With `config.http_listen`, the HTTP side (status page, `/metrics`) serves there too, until
/// the same shutdown.
pub async fn run(
    listener: TcpListener,
    config: CoordinatorConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    serve(listener, config, Box::pin(shutdown)).await
}

/// [`run`] with the shutdown boxed: the server's code is then compiled once, here, not
/// again in every crate that calls `run` with a future of its own (the binary, the tests).
async fn serve(
    listener: TcpListener,
    config: CoordinatorConfig,
    shutdown: std::pin::Pin<Box<dyn Future<Output = ()> + Send>>,
) -> Result<(), RunError> {
    let (server, auth) = auth::server(&config)?;
    // Request metrics outermost, so a panic answered INTERNAL is counted as such.
    let mut server = server
        .http2_keepalive_interval(Some(config.http2_keepalive_interval))
        .http2_keepalive_timeout(Some(config.http2_keepalive_timeout))
        .layer(http::RequestMetricsLayer::grpc())
        .layer(guard::SpanLayer)
        .layer(edge::CatchPanicLayer);
    let http_listener = match config.http_listen {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .map_err(|source| RunError::HttpBind { addr, source })?,
        ),
        None => None,
    };
    let incoming = edge::Incoming::new(listener, &config);
    let data = DataDir::open(&config.data_dir)?;
    if let Err(error) = data.prepare_jobs_dir() {
        // Submissions will say what is wrong with the folder; the service can still start.
        tracing::warn!(%error, dir = %data.job_dir("").display(), "cannot prepare the jobs folder");
    }
    let apps = Arc::new(AppStore::new(
        config.apps_dir.clone(),
        data.state_dir().join("apps"),
    ));
    let (call_timeout, max_job_calls) = (config.call_timeout, config.max_job_calls);
    let scheduler = Arc::new(Scheduler::open(config, data)?);
    let (stop_tx, stop_rx) = signal::channel(false);
    let services = Services::new(scheduler.clone(), apps, stop_rx.clone());
    let http_server = http_listener.map(|listener| {
        let state = http::HttpState::new(
            scheduler.clone(),
            services.workers(),
            scheduler.config().auth_token.as_deref(),
        );
        let (scheduler, stop) = (scheduler.clone(), stop_rx.clone());
        tokio::spawn(async move { http::serve(listener, scheduler.config(), state, stop).await })
    });

    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<JobServiceServer<Services>>()
        .await;
    health_reporter
        .set_serving::<CoordinatorServer<Services>>()
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(mr_proto::v1::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let reflection_alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(mr_proto::v1::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;

    let timer = tokio::spawn(deadline_timer(scheduler.clone(), stop_rx));
    if let Ok(addr) = incoming.local_addr() {
        tracing::info!(%addr, data_dir = %scheduler.data().root().display(), storage = %scheduler.config().storage.url(), "coordinator listening");
    }
    let result = server
        .add_service(health_service)
        .add_service(reflection)
        .add_service(reflection_alpha)
        // The token check first; then the deadline, and (job API only) the cap in flight.
        .add_service(InterceptedService::new(
            guard::GuardLayer::deadline(call_timeout)
                .shedding(max_job_calls, "--max-job-calls")
                .layer(JobServiceServer::new(services.clone())),
            auth.clone(),
        ))
        .add_service(InterceptedService::new(
            guard::GuardLayer::deadline(call_timeout).layer(CoordinatorServer::new(services)),
            auth,
        ))
        .serve_with_incoming_shutdown(incoming, async {
            shutdown.await;
            tracing::info!("coordinator shutting down");
            // Ends long polls and watch streams, which would otherwise hold the drain open.
            let _ = stop_tx.send(true);
        })
        .await;
    timer.abort();
    if let Some(mut http_server) = http_server {
        // It stops on the same signal; a browser's open connection gets a moment to close.
        if tokio::time::timeout(std::time::Duration::from_secs(5), &mut http_server)
            .await
            .is_err()
        {
            http_server.abort();
        }
    }
    result?;
    Ok(())
}

/// Sleeps until the next deadline (an attempt's, a cleanup's, the no-worker check's), then
/// lets the scheduler act on what is due, and cleans finished jobs' folders off the lock.
async fn deadline_timer(scheduler: Arc<Scheduler>, mut stop: signal::Receiver<bool>) {
    loop {
        let next = scheduler.next_wakeup();
        let due = async {
            match next {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = due => {}
            // A new deadline or job: recompute. Not a reason to skip a check that is due,
            // or a steady stream of changes would starve the timeouts.
            _ = scheduler.deadline_set().notified() => {}
            _ = stop.changed() => return,
        }
        if next.is_none_or(|at| tokio::time::Instant::now() < at) {
            continue;
        }
        // Off the runtime's threads: the check writes the journal, cleaning removes files.
        let checker = scheduler.clone();
        let _ = tokio::task::spawn_blocking(move || match checker.handle(Event::DeadlineCheck) {
            Ok(Reply::DeadlineChecked { cleanups }) => {
                for cleanup in &cleanups {
                    scheduler::clean_job_dir(checker.data(), &checker.config().storage, cleanup);
                }
            }
            Ok(_) => {}
            Err(error) => tracing::error!(%error, "journal write failed"),
        })
        .await;
    }
}
