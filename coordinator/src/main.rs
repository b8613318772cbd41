//! `mr-coordinator`: serves the job API and the worker API (see the `mr_coordinator` crate).

use anyhow::Context;
use clap::{Parser, Subcommand};
use mr_common::telemetry::{self, LogFormat};
use mr_coordinator::config::CoordinatorConfig;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    version,
    about = "mr coordinator: the job API for users and task dispatch for workers"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Address to serve gRPC on.
    #[arg(long, env = "MR_LISTEN", default_value = "0.0.0.0:50051")]
    listen: SocketAddr,
    /// Shared data folder: inputs, intermediates and outputs.
    #[arg(long, env = "MR_DATA_DIR", default_value = "data")]
    data_dir: PathBuf,
    /// Folder holding the apps as `<app>.wasm`.
    #[arg(long, env = "MR_APPS_DIR", default_value = "target/apps")]
    apps_dir: PathBuf,
    /// An attempt with no report or heartbeat for this long is reassigned.
    #[arg(long, env = "MR_TASK_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    task_timeout: Duration,
    /// Failures of one task (app error, limits, I/O) that fail its job.
    #[arg(long, env = "MR_MAX_TASK_FAILURES", default_value_t = 4)]
    max_task_failures: u32,
    /// CPU time an app may use for one task.
    #[arg(long, env = "MR_TASK_TIME_LIMIT", default_value = "60s", value_parser = humantime::parse_duration)]
    task_time_limit: Duration,
    /// Memory (MiB) an app may use for one task.
    #[arg(long, env = "MR_TASK_MEMORY_MIB", default_value_t = 256)]
    task_memory_mib: u64,
    /// Largest input split (bytes) when a job does not choose.
    #[arg(long, env = "MR_SPLIT_BYTES", default_value_t = 16 << 20)]
    split_bytes: u64,
    /// fsync each journal record (survives power loss; slower scheduling).
    #[arg(long, env = "MR_JOURNAL_SYNC")]
    journal_sync: bool,
    /// How long a finished job's intermediates are kept.
    #[arg(long, env = "MR_INTERMEDIATE_RETENTION", default_value = "0s", value_parser = humantime::parse_duration)]
    intermediate_retention: Duration,
    /// Running jobs say they wait for workers after this long without any.
    #[arg(long, env = "MR_NO_WORKER_GRACE", default_value = "30s", value_parser = humantime::parse_duration)]
    no_worker_grace: Duration,
    /// Fail running jobs after this long without any worker (default: wait forever).
    #[arg(long, env = "MR_FAIL_WITHOUT_WORKERS_AFTER", value_parser = humantime::parse_duration)]
    fail_without_workers_after: Option<Duration>,
    /// Require `authorization: Bearer <TOKEN>` on every job and worker API call (health and
    /// reflection stay open).
    #[arg(long, env = "MR_AUTH_TOKEN", hide_env_values = true)]
    auth_token: Option<String>,
    /// PEM certificate chain to serve TLS with (TLS only; needs --tls-key).
    #[arg(long, env = "MR_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "MR_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Most connections open at once (also kept under the open-file limit).
    #[arg(long, env = "MR_MAX_CONNECTIONS", default_value_t = 10_000)]
    max_connections: usize,
    /// Close a connection whose client sends nothing for this long.
    #[arg(long, env = "MR_CONNECTION_IDLE_TIMEOUT", default_value = "120s", value_parser = humantime::parse_duration)]
    connection_idle_timeout: Duration,
    /// Interval of HTTP/2 keepalive pings to clients.
    #[arg(long, env = "MR_HTTP2_KEEPALIVE_INTERVAL", default_value = "30s", value_parser = humantime::parse_duration)]
    http2_keepalive_interval: Duration,
    /// Close a connection whose client does not answer a keepalive ping within this.
    #[arg(long, env = "MR_HTTP2_KEEPALIVE_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    http2_keepalive_timeout: Duration,
    /// TCP keepalive probes after this long without traffic ("0s": off).
    #[arg(long, env = "MR_TCP_KEEPALIVE", default_value = "60s", value_parser = humantime::parse_duration)]
    tcp_keepalive: Duration,
    /// Most WatchJob streams open at once, over all clients.
    #[arg(long, env = "MR_MAX_WATCH_STREAMS", default_value_t = 256)]
    max_watch_streams: usize,
    /// Most WatchJob streams open at once from one client (IP address).
    #[arg(long, env = "MR_MAX_WATCH_STREAMS_PER_CLIENT", default_value_t = 32)]
    max_watch_streams_per_client: usize,
    /// Log line format.
    #[arg(long, env = "MR_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[derive(Subcommand)]
enum Command {
    /// Exits 0 if the coordinator at ADDR reports SERVING (for container healthchecks).
    Health {
        #[arg(long, env = "MR_HEALTH_ADDR", default_value = "http://127.0.0.1:50051")]
        addr: String,
        /// PEM CA to trust when ADDR is https:// (no token is needed).
        #[arg(long, env = "MR_TLS_CA")]
        tls_ca: Option<PathBuf>,
        /// Name to verify the certificate against instead of ADDR's host.
        #[arg(long, env = "MR_TLS_DOMAIN")]
        tls_domain: Option<String>,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Some(Command::Health {
        addr,
        tls_ca,
        tls_domain,
    }) = &cli.command
    {
        let tls = mr_common::security::ClientTls {
            ca: tls_ca.clone(),
            domain: tls_domain.clone(),
        };
        mr_coordinator::health::check(addr, &tls).await?;
        println!("SERVING");
        return Ok(());
    }
    telemetry::init(cli.log_format);
    let config = CoordinatorConfig {
        listen: cli.listen,
        data_dir: cli.data_dir,
        apps_dir: cli.apps_dir,
        task_timeout: cli.task_timeout,
        max_task_failures: cli.max_task_failures.max(1),
        task_time_limit: cli.task_time_limit,
        task_memory_limit: cli.task_memory_mib << 20,
        default_split_bytes: cli.split_bytes.max(1),
        journal_sync: cli.journal_sync,
        intermediate_retention: cli.intermediate_retention,
        no_worker_grace: cli.no_worker_grace,
        fail_without_workers_after: cli.fail_without_workers_after,
        auth_token: cli.auth_token,
        tls_cert: cli.tls_cert,
        tls_key: cli.tls_key,
        max_connections: cli.max_connections.max(1),
        connection_idle_timeout: cli.connection_idle_timeout.max(Duration::from_millis(100)),
        http2_keepalive_interval: cli.http2_keepalive_interval.max(Duration::from_millis(100)),
        http2_keepalive_timeout: cli.http2_keepalive_timeout.max(Duration::from_millis(100)),
        tcp_keepalive: Some(cli.tcp_keepalive).filter(|d| !d.is_zero()),
        max_watch_streams: cli.max_watch_streams,
        max_watch_streams_per_client: cli.max_watch_streams_per_client,
        ..CoordinatorConfig::default()
    };
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    mr_coordinator::run(listener, config, mr_common::shutdown::signal()).await?;
    Ok(())
}
