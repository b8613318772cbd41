//! Every tunable of the coordinator, in one place, with its default.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Largest `n_reduce` a job may ask for: each map task writes one file per partition, so
/// this bounds the files a single job can create (maps × partitions).
pub const MAX_N_REDUCE: u32 = 10_000;

/// Most task records one detailed `WatchJob` update carries (`task_page_size` is capped at
/// it, and 0 means it): an update's size, and what an unread stream holds, stay bounded
/// however many tasks the job has.
pub const MAX_WATCH_TASK_PAGE: u32 = 500;

/// Most tasks handed to one worker in one answer, whatever it asks for.
pub const MAX_BATCH_TASKS: u32 = 64;

/// Configuration of a coordinator. `Default` gives the documented defaults; the binary fills
/// it from flags and `MR_*` environment variables.
#[derive(Clone, Debug)]
pub struct CoordinatorConfig {
    /// Address of the gRPC server. Default `0.0.0.0:50051`.
    pub listen: SocketAddr,
    /// Address of the HTTP server: the status page (`/`, `/jobs/<id>`), its JSON
    /// (`/api/...`) and Prometheus `/metrics`, behind the token when there is one. Default
    /// `None`: no HTTP server.
    pub http_listen: Option<SocketAddr>,
    /// The shared data folder (inputs, intermediates, outputs). Default `./data`.
    pub data_dir: PathBuf,
    /// Where inputs, intermediates and outputs live: the data folder (`file://`, the
    /// default) or S3 (`s3://BUCKET[/PREFIX]`). The journal stays in the data folder.
    pub storage: mr_storage::Storage,
    /// Where `<app>.wasm` modules are found. Default `./target/apps`.
    pub apps_dir: PathBuf,
    /// An attempt that neither reports nor heartbeats for this long is presumed dead and its
    /// task goes back to Idle. Default 10 s, as in the lab.
    pub task_timeout: Duration,
    /// Longest a `RequestTask` long poll is held before answering "no task". Default 20 s.
    pub long_poll: Duration,
    /// Largest input split per map task when a job does not choose. Default 16 MiB.
    pub default_split_bytes: u64,
    /// A worker that asks for several tasks (`max_tasks`) gets consecutive map tasks of one
    /// job while their splits add up to at most this many bytes: small tasks then cost one
    /// round trip and one journal write per batch, not per task. Larger splits go one at a
    /// time; reduces always do. Default 1 MiB; 0: never batch.
    pub batch_bytes: u64,
    /// Failures of one task (app errors, limits, I/O) after which its job fails. Default 4.
    pub max_task_failures: u32,
    /// CPU-time budget of the app for one task, enforced by the worker. Default 60 s.
    pub task_time_limit: Duration,
    /// Memory limit of the app's linear memory for one task. Default 256 MiB.
    pub task_memory_limit: u64,
    /// fsync every journal record: survives power loss, not just a killed process, at a
    /// cost in scheduling throughput. Default off.
    pub journal_sync: bool,
    /// How long after a job ends its intermediates (and a failed job's partial outputs) are
    /// removed. Default 0: at once.
    pub intermediate_retention: Duration,
    /// A running job says it waits for workers once none has called in for this long.
    /// Default 30 s (workers call in at least every 15 s while idle).
    pub no_worker_grace: Duration,
    /// Fail running jobs after this long without any worker. Default: never.
    pub fail_without_workers_after: Option<Duration>,
    /// A backup copy of a straggler starts only after it ran at least this long (and twice
    /// the phase's median task time). Default 1 s.
    pub backup_min_runtime: Duration,
    /// How long an ended job is remembered (its summary in `GetJob` and `ListJobs`); then
    /// it is forgotten and its folder, outputs included, removed. Default 7 days.
    pub job_retention: Duration,
    /// Most ended jobs remembered; the oldest beyond this are forgotten first. Default 10,000.
    pub max_retained_jobs: usize,
    /// How long an ended job keeps its per-task records through compactions; after that
    /// only its summary is kept. Default 0: an ended job is summarised at the next
    /// compaction (start-up, or every `compact_after_bytes` of journal).
    pub job_detail_retention: Duration,
    /// The journal is compacted into a snapshot once its tail passes this many bytes (and
    /// the size of the last snapshot), and at start-up. Default 8 MiB.
    pub compact_after_bytes: u64,
    /// Shared secret every call of the job and worker APIs must carry as
    /// `authorization: Bearer <token>`; health and reflection stay open. Default `None`: no
    /// authentication (for a trusted network only).
    pub auth_token: Option<String>,
    /// PEM certificate chain of the server; with [`tls_key`](Self::tls_key), the coordinator
    /// serves TLS only. Default `None`: plaintext.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of [`tls_cert`](Self::tls_cert). Default `None`.
    pub tls_key: Option<PathBuf>,
    /// Most connections open at once; one more is closed as soon as it is accepted. Lowered
    /// at start to the open-file limit minus a reserve ([`crate::edge::FD_RESERVE`]).
    /// Default 10 000.
    pub max_connections: usize,
    /// A connection over which the client sends nothing for this long is closed (a live
    /// client answers the HTTP/2 keepalive pings, so this closes silent and dead peers, and
    /// sockets that never spoke HTTP/2). Default 120 s.
    pub connection_idle_timeout: Duration,
    /// Interval of the server's HTTP/2 keepalive pings. Default 30 s.
    pub http2_keepalive_interval: Duration,
    /// A connection whose client does not answer a keepalive ping within this is closed.
    /// Default 10 s.
    pub http2_keepalive_timeout: Duration,
    /// TCP keepalive probes after this long without traffic (the kernel then closes a
    /// connection to a vanished host). Default 60 s; `None`: off.
    pub tcp_keepalive: Option<Duration>,
    /// Most job API calls (`JobService`) in flight at once; one more is answered
    /// `UNAVAILABLE` at once, so that a flood of users cannot starve the workers' calls.
    /// Default 256.
    pub max_job_calls: usize,
    /// A call whose answer has not started within this is answered `DEADLINE_EXCEEDED`
    /// (a long poll answers within `long_poll`; a stream's deadline covers its opening).
    /// Default 60 s.
    pub call_timeout: Duration,
    /// Largest app module `PushApp` accepts, in bytes. Default 64 MiB.
    pub max_app_bytes: u64,
    /// Most `WatchJob` streams open at once, over all clients. Default 256.
    pub max_watch_streams: usize,
    /// Most `WatchJob` streams open at once from one client (by IP address). Default 32.
    pub max_watch_streams_per_client: usize,
}

impl Default for CoordinatorConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 50051)),
            http_listen: None,
            data_dir: PathBuf::from("data"),
            storage: mr_storage::Storage::Local,
            apps_dir: PathBuf::from("target/apps"),
            task_timeout: Duration::from_secs(10),
            long_poll: Duration::from_secs(20),
            default_split_bytes: 16 << 20,
            batch_bytes: 1 << 20,
            max_task_failures: 4,
            task_time_limit: Duration::from_secs(60),
            task_memory_limit: 256 << 20,
            journal_sync: false,
            intermediate_retention: Duration::ZERO,
            no_worker_grace: Duration::from_secs(30),
            fail_without_workers_after: None,
            backup_min_runtime: Duration::from_secs(1),
            job_retention: Duration::from_secs(7 * 24 * 3600),
            max_retained_jobs: 10_000,
            job_detail_retention: Duration::ZERO,
            compact_after_bytes: 8 << 20,
            auth_token: None,
            tls_cert: None,
            tls_key: None,
            max_connections: 10_000,
            connection_idle_timeout: Duration::from_secs(120),
            http2_keepalive_interval: Duration::from_secs(30),
            http2_keepalive_timeout: Duration::from_secs(10),
            tcp_keepalive: Some(Duration::from_secs(60)),
            max_job_calls: 256,
            call_timeout: Duration::from_secs(60),
            max_app_bytes: 64 << 20,
            max_watch_streams: 256,
            max_watch_streams_per_client: 32,
        }
    }
}
