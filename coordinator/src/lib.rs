//! The mr coordinator: accepts jobs from users, hands their tasks to workers, and keeps
//! every job's state behind one lock (see [`scheduler`]).
//!
//! [`run`] serves on a given listener until a given shutdown future completes, so tests start
//! a real coordinator on `127.0.0.1:0` and stop it when they like.

pub mod apps;
pub mod config;
pub mod error;
pub mod health;
pub mod scheduler;
pub mod service;

use crate::apps::AppStore;
use crate::config::CoordinatorConfig;
use crate::scheduler::{Event, Scheduler};
use crate::service::Services;
use mr_common::DataDir;
use mr_proto::v1::coordinator_server::CoordinatorServer;
use mr_proto::v1::job_service_server::JobServiceServer;
use std::future::Future;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_stream::wrappers::TcpListenerStream;

/// Why the coordinator could not start or keep serving.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The data folder is unusable.
    #[error(transparent)]
    DataDir(#[from] mr_common::PathError),
    /// Reflection could not be set up from the schema.
    #[error("gRPC reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// The gRPC server failed.
    #[error("gRPC server: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// Serves the job API, the worker API, health and reflection on `listener` until `shutdown`
/// completes; then stops accepting, ends long polls and watches, and returns.
pub async fn run(
    listener: TcpListener,
    config: CoordinatorConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), RunError> {
    let data = DataDir::open(&config.data_dir)?;
    let apps = Arc::new(AppStore::new(config.apps_dir.clone()));
    let scheduler = Arc::new(Scheduler::new(config, data));
    let (stop_tx, stop_rx) = watch::channel(false);
    let services = Services::new(scheduler.clone(), apps, stop_rx.clone());

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
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, data_dir = %scheduler.data().root().display(), "coordinator listening");
    }
    let result = tonic::transport::Server::builder()
        .add_service(health_service)
        .add_service(reflection)
        .add_service(reflection_alpha)
        .add_service(JobServiceServer::new(services.clone()))
        .add_service(CoordinatorServer::new(services))
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async {
            shutdown.await;
            tracing::info!("coordinator shutting down");
            // Ends long polls and watch streams, which would otherwise hold the drain open.
            let _ = stop_tx.send(true);
        })
        .await;
    timer.abort();
    result?;
    Ok(())
}

/// Sleeps until the earliest attempt deadline, then lets the scheduler time out what is due.
async fn deadline_timer(scheduler: Arc<Scheduler>, mut stop: watch::Receiver<bool>) {
    loop {
        let next = scheduler.next_deadline();
        let due = async {
            match next {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = due => { scheduler.handle(Event::DeadlineCheck); }
            _ = scheduler.deadline_set().notified() => {}
            _ = stop.changed() => return,
        }
    }
}
