//! `mr-coordinator`: serves the job API and the worker API (see the `mr_coordinator` crate).

use anyhow::Context;
use clap::{Parser, Subcommand};
use mr_common::privileges;
use mr_common::telemetry::{self, LogFormat};
use mr_coordinator::config::CoordinatorConfig;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::LazyLock;
use std::time::Duration;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Every flag's default comes from here, the one source of defaults.
static DEFAULTS: LazyLock<CoordinatorConfig> = LazyLock::new(CoordinatorConfig::default);

fn default_duration(d: Duration) -> humantime::Duration {
    d.into()
}

#[derive(Parser)]
#[command(
    version,
    about = "mr coordinator: the job API for users and task dispatch for workers"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Address to serve gRPC on.
    #[arg(long, env = "MR_LISTEN", default_value_t = DEFAULTS.listen)]
    listen: SocketAddr,
    /// Address to serve the status page, its JSON API and Prometheus /metrics on over HTTP
    /// (default: off). With --auth-token they need the token too.
    #[arg(long, env = "MR_HTTP_LISTEN")]
    http_listen: Option<SocketAddr>,
    /// Data folder: the coordinator's journal and uploaded apps (`.mr/`), and with file://
    /// storage the shared inputs, intermediates and outputs.
    #[arg(long, env = "MR_DATA_DIR", default_value_os_t = DEFAULTS.data_dir.clone())]
    data_dir: PathBuf,
    /// Where inputs, intermediates and outputs live: file:// (the data folder) or
    /// s3://BUCKET[/PREFIX], with credentials, region and endpoint from AWS_ACCESS_KEY_ID,
    /// AWS_SECRET_ACCESS_KEY, AWS_REGION, AWS_ENDPOINT_URL (and AWS_ALLOW_HTTP=true for a
    /// plain-HTTP test server). The workers take the same.
    #[arg(long, env = "MR_STORAGE", default_value_t = DEFAULTS.storage.url())]
    storage: String,
    /// Folder holding the apps as `<app>.wasm`.
    #[arg(long, env = "MR_APPS_DIR", default_value_os_t = DEFAULTS.apps_dir.clone())]
    apps_dir: PathBuf,
    /// An attempt with no report or heartbeat for this long is reassigned.
    #[arg(long, env = "MR_TASK_TIMEOUT", default_value_t = default_duration(DEFAULTS.task_timeout))]
    task_timeout: humantime::Duration,
    /// Failures of one task (app error, limits, I/O) that fail its job.
    #[arg(long, env = "MR_MAX_TASK_FAILURES", default_value_t = DEFAULTS.max_task_failures)]
    max_task_failures: u32,
    /// CPU time an app may use for one task.
    #[arg(long, env = "MR_TASK_TIME_LIMIT", default_value_t = default_duration(DEFAULTS.task_time_limit))]
    task_time_limit: humantime::Duration,
    /// Memory (MiB) an app may use for one task.
    #[arg(long, env = "MR_TASK_MEMORY_MIB", default_value_t = DEFAULTS.task_memory_limit >> 20)]
    task_memory_mib: u64,
    /// Largest input split (bytes) when a job does not choose.
    #[arg(long, env = "MR_SPLIT_BYTES", default_value_t = DEFAULTS.default_split_bytes)]
    split_bytes: u64,
    /// Batch a worker's small map tasks while their splits add up to at most this many
    /// bytes (0: one task at a time).
    #[arg(long, env = "MR_BATCH_BYTES", default_value_t = DEFAULTS.batch_bytes)]
    batch_bytes: u64,
    /// fsync each journal record (survives power loss; slower scheduling).
    #[arg(long, env = "MR_JOURNAL_SYNC")]
    journal_sync: bool,
    /// How long a finished job's intermediates are kept.
    #[arg(long, env = "MR_INTERMEDIATE_RETENTION", default_value_t = default_duration(DEFAULTS.intermediate_retention))]
    intermediate_retention: humantime::Duration,
    /// How long an ended job is remembered; then it is forgotten and its folder removed.
    #[arg(long, env = "MR_JOB_RETENTION", default_value_t = default_duration(DEFAULTS.job_retention))]
    job_retention: humantime::Duration,
    /// Most ended jobs remembered; the oldest beyond this are forgotten first.
    #[arg(long, env = "MR_MAX_RETAINED_JOBS", default_value_t = DEFAULTS.max_retained_jobs)]
    max_retained_jobs: usize,
    /// How long an ended job keeps its per-task records; then only its summary.
    #[arg(long, env = "MR_JOB_DETAIL_RETENTION", default_value_t = default_duration(DEFAULTS.job_detail_retention))]
    job_detail_retention: humantime::Duration,
    /// Compact the journal into a snapshot once it passes this many bytes.
    #[arg(long, env = "MR_COMPACT_AFTER_BYTES", default_value_t = DEFAULTS.compact_after_bytes)]
    compact_after_bytes: u64,
    /// Running jobs say they wait for workers after this long without any.
    #[arg(long, env = "MR_NO_WORKER_GRACE", default_value_t = default_duration(DEFAULTS.no_worker_grace))]
    no_worker_grace: humantime::Duration,
    /// Fail running jobs after this long without any worker (default: wait forever).
    #[arg(long, env = "MR_FAIL_WITHOUT_WORKERS_AFTER")]
    fail_without_workers_after: Option<humantime::Duration>,
    /// A straggler gets a backup copy only after running this long (and twice the median).
    #[arg(long, env = "MR_BACKUP_MIN_RUNTIME", default_value_t = default_duration(DEFAULTS.backup_min_runtime))]
    backup_min_runtime: humantime::Duration,
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
    #[arg(long, env = "MR_MAX_CONNECTIONS", default_value_t = DEFAULTS.max_connections)]
    max_connections: usize,
    /// Close a connection whose client sends nothing for this long.
    #[arg(long, env = "MR_CONNECTION_IDLE_TIMEOUT", default_value_t = default_duration(DEFAULTS.connection_idle_timeout))]
    connection_idle_timeout: humantime::Duration,
    /// Interval of HTTP/2 keepalive pings to clients.
    #[arg(long, env = "MR_HTTP2_KEEPALIVE_INTERVAL", default_value_t = default_duration(DEFAULTS.http2_keepalive_interval))]
    http2_keepalive_interval: humantime::Duration,
    /// Close a connection whose client does not answer a keepalive ping within this.
    #[arg(long, env = "MR_HTTP2_KEEPALIVE_TIMEOUT", default_value_t = default_duration(DEFAULTS.http2_keepalive_timeout))]
    http2_keepalive_timeout: humantime::Duration,
    /// TCP keepalive probes after this long without traffic ("0s": off).
    #[arg(long, env = "MR_TCP_KEEPALIVE", default_value_t = default_duration(DEFAULTS.tcp_keepalive.unwrap_or_default()))]
    tcp_keepalive: humantime::Duration,
    /// Most job API calls in flight at once; more are refused UNAVAILABLE at once.
    #[arg(long, env = "MR_MAX_JOB_CALLS", default_value_t = DEFAULTS.max_job_calls)]
    max_job_calls: usize,
    /// Answer DEADLINE_EXCEEDED to a call not answered within this.
    #[arg(long, env = "MR_CALL_TIMEOUT", default_value_t = default_duration(DEFAULTS.call_timeout))]
    call_timeout: humantime::Duration,
    /// Largest app module an upload (PushApp, `mr apps push`) may have, in bytes.
    #[arg(long, env = "MR_MAX_APP_BYTES", default_value_t = DEFAULTS.max_app_bytes)]
    max_app_bytes: u64,
    /// Most WatchJob streams open at once, over all clients.
    #[arg(long, env = "MR_MAX_WATCH_STREAMS", default_value_t = DEFAULTS.max_watch_streams)]
    max_watch_streams: usize,
    /// Most WatchJob streams open at once from one client (IP address).
    #[arg(long, env = "MR_MAX_WATCH_STREAMS_PER_CLIENT", default_value_t = DEFAULTS.max_watch_streams_per_client)]
    max_watch_streams_per_client: usize,
    /// Log line format.
    #[arg(long, env = "MR_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

impl Cli {
    fn config(self) -> anyhow::Result<CoordinatorConfig> {
        Ok(CoordinatorConfig {
            storage: mr_storage::Storage::open(&self.storage)?,
            listen: self.listen,
            http_listen: self.http_listen.or(DEFAULTS.http_listen),
            data_dir: self.data_dir,
            apps_dir: self.apps_dir,
            task_timeout: self.task_timeout.into(),
            max_task_failures: self.max_task_failures.max(1),
            task_time_limit: self.task_time_limit.into(),
            task_memory_limit: self.task_memory_mib << 20,
            default_split_bytes: self.split_bytes.max(1),
            batch_bytes: self.batch_bytes,
            journal_sync: self.journal_sync,
            intermediate_retention: self.intermediate_retention.into(),
            job_retention: self.job_retention.into(),
            max_retained_jobs: self.max_retained_jobs,
            job_detail_retention: self.job_detail_retention.into(),
            compact_after_bytes: self.compact_after_bytes,
            no_worker_grace: self.no_worker_grace.into(),
            fail_without_workers_after: self.fail_without_workers_after.map(Into::into),
            backup_min_runtime: self.backup_min_runtime.into(),
            auth_token: self.auth_token,
            tls_cert: self.tls_cert,
            tls_key: self.tls_key,
            max_connections: self.max_connections.max(1),
            connection_idle_timeout: Duration::from(self.connection_idle_timeout)
                .max(Duration::from_millis(100)),
            http2_keepalive_interval: Duration::from(self.http2_keepalive_interval)
                .max(Duration::from_millis(100)),
            http2_keepalive_timeout: Duration::from(self.http2_keepalive_timeout)
                .max(Duration::from_millis(100)),
            tcp_keepalive: Some(Duration::from(self.tcp_keepalive)).filter(|d| !d.is_zero()),
            max_job_calls: self.max_job_calls,
            call_timeout: self.call_timeout.into(),
            max_app_bytes: self.max_app_bytes,
            max_watch_streams: self.max_watch_streams,
            max_watch_streams_per_client: self.max_watch_streams_per_client,
            ..CoordinatorConfig::default()
        })
    }
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

// No `#[tokio::main]`: the identity switch below must happen before the runtime starts its
// threads (set*id and capset act on the calling thread first).
fn main() -> anyhow::Result<()> {
    // Before the allocator maps much: with transparent huge pages, a 100k-task job's
    // coordinator peaked ~12% higher (partly used 2 MiB pages) and the job ran 5–18% slower
    // (BENCHMARKS.md, "Transparent huge pages off in the coordinator").
    let thp = mr_common::limits::disable_transparent_huge_pages();
    let cli = Cli::parse();
    if cli.command.is_none() {
        telemetry::init(cli.log_format);
        if let Err(error) = thp {
            tracing::warn!(%error, "could not turn transparent huge pages off (PR_SET_THP_DISABLE)");
        }
        let _ = mr_common::limits::raise_open_file_limit(); // logs what it did; runs on without
    }
    // Started as root (compose), run as the data folder's owner before any file is created.
    privileges::drop_to_data_owner(&cli.data_dir)?;
    if cli.command.is_none() {
        // One clear message now rather than a journal error later.
        privileges::check_writable(&cli.data_dir)?;
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(serve(cli))
}

async fn serve(cli: Cli) -> anyhow::Result<()> {
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
    let config = cli.config()?;
    if let Some(s3) = config.storage.s3() {
        // One clear message at start rather than a failed job later.
        let s3 = s3.clone();
        tokio::task::spawn_blocking(move || s3.check())
            .await?
            .context("the storage does not answer: check --storage and the AWS_* settings")?;
    }
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    mr_coordinator::run(listener, config, mr_common::shutdown::signal()).await?;
    Ok(())
}
