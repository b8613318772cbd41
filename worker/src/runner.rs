//! The worker's life: ask the coordinator for a task (a long poll), run it on a blocking
//! thread while heartbeating, report the outcome, repeat; back off and reconnect while the
//! coordinator is unreachable; on shutdown hand the current task back at once.
//!
//! The worker holds no job state: everything it needs arrives with the assignment, and
//! everything it produces is a file the coordinator may or may not accept.
//!
//! Every retry is bounded: a report is sent at most 8 times, a heartbeat waits at most one
//! interval, a reduce's merge passes end (each divides the inputs by the fan-in). Only the
//! request loop goes on for as long as the coordinator is away, one try per backoff delay
//! (at most 5 s), until shutdown: a worker outlives its coordinator's restarts by design.

use crate::app_runtime::{AppError, AppModule, AppRuntime, CancelToken, Limits};
use crate::tasks::{self, TaskContext, TaskError, TaskStats};
use mr_common::DataDir;
use mr_common::security::{BearerToken, ClientTls};
use mr_proto::v1 as pb;
use mr_proto::v1::coordinator_client::CoordinatorClient;
use mr_storage::Storage;
use sha2::{Digest, Sha256};
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};
use tracing::Instrument;

/// Configuration of a worker. `Default` gives the documented defaults, the only source of
/// them: the binary's flags take theirs from it.
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// The coordinator's URL, e.g. `http://127.0.0.1:50051`.
    pub coordinator: String,
    /// The shared data folder (unused with S3 storage).
    pub data_dir: PathBuf,
    /// Where inputs, intermediates and outputs live: the data folder, or S3.
    pub storage: Storage,
    /// How this worker is named in the coordinator's records and logs.
    pub worker_id: String,
    /// How long one RequestTask long poll may be held by the coordinator.
    pub poll_wait: Duration,
    /// Most tasks held at once (`max_tasks`): small maps then come and are reported in
    /// batches, one round trip for several tasks.
    pub batch_tasks: u32,
    /// Sent as `authorization: Bearer <token>` on every call, when set.
    pub auth_token: Option<String>,
    /// The CA (and name) to verify an `https://` coordinator with.
    pub tls: ClientTls,
    /// Where compiled apps are kept across restarts; None: the data folder's
    /// `.mr/cache`, shared by the workers that share the folder.
    pub cache_dir: Option<PathBuf>,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            coordinator: "http://127.0.0.1:50051".into(),
            data_dir: PathBuf::from("data"),
            storage: Storage::Local,
            worker_id: default_worker_id(),
            poll_wait: Duration::from_secs(15),
            batch_tasks: 16,
            auth_token: None,
            tls: ClientTls::default(),
            cache_dir: None,
        }
    }
}

/// Why the worker could not start.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The coordinator URL is not valid.
    #[error("coordinator address '{addr}': {message}")]
    BadAddress { addr: String, message: String },
    /// The TLS options do not fit the URL, or the CA file is unusable.
    #[error(transparent)]
    Tls(#[from] mr_common::security::ClientTlsError),
    /// The auth token cannot be sent.
    #[error(transparent)]
    Token(#[from] mr_common::security::BadToken),
    /// The data folder is unusable.
    #[error(transparent)]
    DataDir(#[from] mr_common::PathError),
    /// The Wasm engine could not be set up.
    #[error(transparent)]
    Runtime(#[from] AppError),
    /// The object storage does not answer (a missing bucket, refused credentials, …).
    #[error("{0} (the worker's --storage and AWS_* settings)")]
    Store(#[from] mr_storage::StoreError),
    /// The local scratch folder (for S3 storage) cannot be made.
    #[error("scratch folder in {dir}: {source}")]
    Scratch {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Exponential backoff with jitter, for reconnecting to a coordinator that is away.
struct Backoff {
    next: Duration,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(100);
    const MAX: Duration = Duration::from_secs(5);

    fn new() -> Self {
        Self { next: Self::FIRST }
    }

    fn reset(&mut self) {
        self.next = Self::FIRST;
    }

    fn delay(&mut self) -> Duration {
        use rand::Rng;
        let base = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        // Jitter keeps a fleet of workers from reconnecting in lockstep.
        base.mul_f64(rand::rng().random_range(0.5..1.0))
    }
}

type Shutdown<'a> = Pin<&'a mut (dyn Future<Output = ()> + Send)>;

struct Worker {
    config: WorkerConfig,
    /// The data folder, or with S3 storage the local scratch folder (`_scratch`).
    data: DataDir,
    _scratch: Option<tempfile::TempDir>,
    runtime: Arc<AppRuntime>,
    client: CoordinatorClient<InterceptedService<Channel, BearerToken>>,
    /// Most intermediates a reduce opens at once, under this process's open-file limit.
    merge_fan_in: usize,
}

/// How running one task ended.
enum Ran {
    /// Its outcome, to report.
    Report(Reported),
    /// The coordinator no longer wanted it: nothing to report.
    Dropped,
    /// The worker is shutting down: the task is handed back with this report.
    Stop(Reported),
}

/// A task's outcome, with the task (to remove its files if the report is not accepted).
struct Reported {
    task: pb::Assignment,
    report: pb::ReportTaskRequest,
}

/// Reports held back while more tasks of a batch run are sent once this old, or at once
/// after a task that took this long.
const REPORT_DELAY: Duration = Duration::from_millis(50);

/// The tasks a worker holds and the outcomes it has not reported yet.
#[derive(Default)]
struct Held {
    queue: std::collections::VecDeque<pb::Assignment>,
    reports: Vec<Reported>,
    /// When the oldest unsent report was made.
    since: Option<Instant>,
}

impl Held {
    fn take(&mut self, first: Option<pb::Assignment>, more: Vec<pb::Assignment>) {
        self.queue.extend(first);
        self.queue.extend(more);
    }

    /// The attempts held besides the running one, for heartbeats: queued, and finished
    /// but not reported yet.
    fn other_attempts(&self) -> Vec<u64> {
        let queued = self.queue.iter().map(|t| t.attempt_id);
        queued
            .chain(self.reports.iter().map(|r| r.task.attempt_id))
            .collect()
    }

    /// Forgets queued tasks the coordinator dropped.
    fn drop_queued(&mut self, dropped: &[u64]) {
        if !dropped.is_empty() {
            tracing::info!(
                attempts = ?dropped,
                "queued attempts no longer wanted; dropped"
            );
            self.queue.retain(|t| !dropped.contains(&t.attempt_id));
        }
    }
}

/// Runs the worker until `shutdown` completes.
pub async fn run(
    config: WorkerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), WorkerError> {
    // With S3 storage the worker needs no shared folder: reduces fetch their inputs into a
    // scratch folder of its own (removed at exit), in the system's temp folder.
    let (data, scratch) = match &config.storage {
        Storage::Local => (DataDir::open(&config.data_dir)?, None),
        Storage::S3(s3) => {
            s3.check()?;
            let tmp = std::env::temp_dir();
            let scratch = tempfile::Builder::new()
                .prefix("mr-worker-")
                .tempdir_in(&tmp)
                .map_err(|source| WorkerError::Scratch { dir: tmp, source })?;
            (DataDir::open(scratch.path())?, Some(scratch))
        }
    };
    let cache_dir = (config.cache_dir.clone()).unwrap_or_else(|| data.compile_cache_dir());
    let runtime = Arc::new(AppRuntime::with_cache_dir(Some(&cache_dir))?);
    let endpoint = Endpoint::from_shared(config.coordinator.clone())
        .map_err(|e| WorkerError::BadAddress {
            addr: config.coordinator.clone(),
            message: e.to_string(),
        })?
        .connect_timeout(Duration::from_secs(3))
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_timeout(Duration::from_secs(5))
        .keep_alive_while_idle(true);
    let endpoint = config.tls.apply(&config.coordinator, endpoint)?;
    let token = BearerToken::new(config.auth_token.as_deref())?;
    let client = CoordinatorClient::with_interceptor(endpoint.connect_lazy(), token)
        .max_decoding_message_size(256 << 20);
    let open_file_limit = mr_common::limits::open_file_limits()
        .ok()
        .map(|(soft, _)| soft);
    let worker = Worker {
        config,
        data,
        _scratch: scratch,
        runtime,
        client,
        merge_fan_in: tasks::merge_fan_in(open_file_limit),
    };
    let shutdown: Pin<Box<dyn Future<Output = ()> + Send>> = Box::pin(shutdown);
    worker.serve(shutdown).await;
    Ok(())
}

impl Worker {
    async fn serve(mut self, mut shutdown: Pin<Box<dyn Future<Output = ()> + Send>>) {
        tracing::info!(worker = %self.config.worker_id, coordinator = %self.config.coordinator, merge_fan_in = self.merge_fan_in, batch_tasks = self.config.batch_tasks, "worker started");
        let mut backoff = Backoff::new();
        let mut unreachable_since: Option<Instant> = None;
        let mut held = Held::default();
        loop {
            if let Some(task) = held.queue.pop_front() {
                let started = Instant::now();
                match self.execute(task, &mut held, shutdown.as_mut()).await {
                    Ran::Report(report) => {
                        held.since.get_or_insert_with(Instant::now);
                        held.reports.push(report);
                    }
                    Ran::Dropped => {}
                    Ran::Stop(report) => {
                        held.reports.push(report);
                        self.hand_back(held).await;
                        break;
                    }
                }
                // Send the outcomes once the batch is done, when they have waited long
                // enough, or at once after a task that was not quick (the next one is
                // likely as slow); ask for the next batch with the last of them.
                let due = started.elapsed() >= REPORT_DELAY
                    || held.since.is_some_and(|t| t.elapsed() >= REPORT_DELAY);
                if held.queue.is_empty() || due {
                    let max_next = if held.queue.is_empty() {
                        self.config.batch_tasks
                    } else {
                        0
                    };
                    let next = self.send_reports(&mut held, 8, max_next).await;
                    held.take(None, next);
                }
                continue;
            }
            let (compile_cache_hits, compile_cache_misses) = self.runtime.cache_stats();
            let request = pb::RequestTaskRequest {
                worker: self.config.worker_id.clone(),
                wait_ms: self.config.poll_wait.as_millis() as u32,
                max_tasks: self.config.batch_tasks,
                compile_cache_hits,
                compile_cache_misses,
            };
            let mut client = self.client.clone();
            let response = tokio::select! {
                _ = shutdown.as_mut() => break,
                r = client.request_task(request) => r,
            };
            match response {
                Err(status) => {
                    if status.code() == tonic::Code::Unauthenticated && unreachable_since.is_none()
                    {
                        tracing::error!(error = %status.message(), "the coordinator refused this worker's auth token (--auth-token, MR_AUTH_TOKEN); retrying with backoff");
                        unreachable_since = Some(Instant::now());
                    }
                    if unreachable_since.is_none() {
                        tracing::warn!(error = %status.message(), "coordinator unreachable; retrying with backoff");
                        unreachable_since = Some(Instant::now());
                    }
                    tokio::select! {
                        _ = shutdown.as_mut() => break,
                        _ = tokio::time::sleep(backoff.delay()) => {}
                    }
                }
                Ok(response) => {
                    if let Some(since) = unreachable_since.take() {
                        tracing::info!(after = ?since.elapsed(), "coordinator reachable again");
                    }
                    backoff.reset();
                    let response = response.into_inner();
                    held.take(response.task, response.more_tasks);
                }
            }
        }
        tracing::info!(worker = %self.config.worker_id, "worker stopped");
    }

    /// On shutdown: reports what finished, and hands back the running task and every
    /// queued one, in one call tried once.
    async fn hand_back(&mut self, mut held: Held) {
        let queued: Vec<pb::Assignment> = held.queue.drain(..).collect();
        for task in queued {
            held.reports.push(self.abandoned(task));
        }
        self.send_reports(&mut held, 1, 0).await;
    }

    fn abandoned(&self, task: pb::Assignment) -> Reported {
        self.reported(
            task,
            pb::report_task_request::Result::Failed(pb::TaskFailed {
                kind: pb::FailureKind::Abandoned.into(),
                error: format!("worker {} shut down", self.config.worker_id),
                bad_map_tasks: Vec::new(),
            }),
        )
    }

    async fn execute(
        &mut self,
        task: pb::Assignment,
        held: &mut Held,
        shutdown: Shutdown<'_>,
    ) -> Ran {
        let label = match &task.task {
            Some(pb::assignment::Task::Map(m)) => format!("map-{}", m.index),
            Some(pb::assignment::Task::Reduce(r)) => format!("reduce-{}", r.partition),
            None => "unknown".to_string(),
        };
        let span = tracing::info_span!(
            "task", job_id = %task.job_id, task = %label, attempt = task.attempt_id,
            worker = %self.config.worker_id
        );
        self.execute_in_span(task, held, shutdown)
            .instrument(span)
            .await
    }

    async fn execute_in_span(
        &mut self,
        task: pb::Assignment,
        held: &mut Held,
        mut shutdown: Shutdown<'_>,
    ) -> Ran {
        let started = Instant::now();
        let attempt_id = task.attempt_id;
        let data = self.data.clone();
        let store = self.config.storage.clone();
        let cancel = CancelToken::default();
        // Loading the app is part of the attempt, under its heartbeats: compiling a
        // CPython component takes longer than the task timeout.
        let mut job = {
            let (task, cancel) = (task.clone(), cancel.clone());
            let (client, runtime) = (self.client.clone(), self.runtime.clone());
            let fan_in = self.merge_fan_in;
            Box::pin(async move {
                let module = load_module(client, runtime, &task)
                    .await
                    .map_err(TaskError::App)?
                    .with_cancel(cancel);
                let app = task.app.clone();
                tokio::task::spawn_blocking(move || run_task(&data, &store, &module, &task, fan_in))
                    .await
                    .unwrap_or_else(|e| {
                        Err(TaskError::App(AppError::Trap {
                            app,
                            message: format!("the task thread failed: {e}"),
                        }))
                    })
            })
        };
        let interval = Duration::from_millis(task.heartbeat_interval_ms.max(100).into());
        let mut heartbeat =
            tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        let result = loop {
            tokio::select! {
                result = &mut job => break result,
                _ = heartbeat.tick() => {
                    let request = pb::HeartbeatRequest {
                        worker: self.config.worker_id.clone(),
                        attempt_id,
                        more_attempt_ids: held.other_attempts(),
                    };
                    // Bounded by the interval: a heartbeat stuck on a dead connection must not
                    // hold back the report of a task that has finished meanwhile.
                    let reply = tokio::time::timeout(interval, self.client.heartbeat(request)).await;
                    let Ok(Ok(reply)) = reply else { continue };
                    let reply = reply.into_inner();
                    held.drop_queued(&reply.dropped);
                    if !reply.keep_going {
                        tracing::info!("attempt no longer wanted (reassigned or job ended); stopping it");
                        cancel.cancel();
                        // Its files are nobody's once the app has stopped writing them.
                        let (data, task) = (self.data.clone(), task.clone());
                        let store = self.config.storage.clone();
                        let dropped_at = Instant::now();
                        tokio::spawn(async move {
                            let _ = job.await;
                            let _ = tokio::task::spawn_blocking(move || {
                                remove_attempt_files(&data, &store, &task)
                            })
                            .await;
                            tracing::info!(after_ms = dropped_at.elapsed().as_millis() as u64, "dropped attempt stopped; its files removed");
                        }.in_current_span());
                        return Ran::Dropped;
                    }
                }
                _ = shutdown.as_mut() => {
                    tracing::info!("shutting down: handing the task back");
                    cancel.cancel();
                    return Ran::Stop(self.abandoned(task));
                }
            }
        };
        match &result {
            Ok(stats) => tracing::info!(
                kind = if matches!(task.task, Some(pb::assignment::Task::Map(_))) {
                    "map"
                } else {
                    "reduce"
                },
                records_in = stats.records_in,
                records_out = stats.records_out,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "task finished"
            ),
            Err(error) => tracing::warn!(error = %error, "task failed"),
        }
        Ran::Report(self.outcome(task, result))
    }

    /// The report of an attempt's outcome.
    fn outcome(&self, task: pb::Assignment, result: Result<TaskStats, TaskError>) -> Reported {
        let result = match result {
            Ok(stats) => pb::report_task_request::Result::Succeeded(pb::TaskSucceeded {
                records_in: stats.records_in,
                records_out: stats.records_out,
                partitions: stats.partitions,
                output_bytes: stats.output_bytes,
                counters: stats.counters.into_iter().collect(),
                skipped: stats
                    .skipped
                    .into_iter()
                    .map(|s| pb::SkippedRecord {
                        kind: match task.task {
                            Some(pb::assignment::Task::Map(_)) => pb::TaskKind::Map,
                            _ => pb::TaskKind::Reduce,
                        }
                        .into(),
                        task: match &task.task {
                            Some(pb::assignment::Task::Map(m)) => m.index,
                            Some(pb::assignment::Task::Reduce(r)) => r.partition,
                            None => 0,
                        },
                        input: s.input,
                        offset: s.offset,
                        key: s.key,
                        error: s.error,
                    })
                    .collect(),
            }),
            Err(error) => {
                let (kind, bad_map_tasks) = match &error {
                    TaskError::App(AppError::TimeLimit { .. }) => {
                        (pb::FailureKind::TimeLimit, vec![])
                    }
                    TaskError::App(AppError::MemoryLimit { .. }) => {
                        (pb::FailureKind::MemoryLimit, vec![])
                    }
                    TaskError::App(_) | TaskError::TooManySkipped { .. } => {
                        (pb::FailureKind::AppError, vec![])
                    }
                    TaskError::BadIntermediate { maps, .. } => {
                        (pb::FailureKind::BadIntermediate, maps.clone())
                    }
                    TaskError::Io { .. } | TaskError::Path(_) | TaskError::Store(_) => {
                        (pb::FailureKind::Io, vec![])
                    }
                };
                pb::report_task_request::Result::Failed(pb::TaskFailed {
                    kind: kind.into(),
                    error: format!("{} ({})", error, describe(&task)),
                    bad_map_tasks,
                })
            }
        };
        self.reported(task, result)
    }

    fn reported(&self, task: pb::Assignment, result: pb::report_task_request::Result) -> Reported {
        let report = pb::ReportTaskRequest {
            worker: self.config.worker_id.clone(),
            job_id: task.job_id.clone(),
            attempt_id: task.attempt_id,
            result: Some(result),
            want_next: false,
        };
        Reported { task, report }
    }

    /// Sends the held reports in one call, trying up to `tries` times (a report is worth
    /// retrying through a short coordinator outage; past that the attempts time out and
    /// their tasks run elsewhere); returns the next tasks handed out with the reply (up to
    /// `max_next`). The temp files of attempts not accepted are removed.
    async fn send_reports(
        &mut self,
        held: &mut Held,
        tries: u32,
        max_next: u32,
    ) -> Vec<pb::Assignment> {
        held.since = None;
        let (tasks, reports): (Vec<_>, Vec<_>) = std::mem::take(&mut held.reports)
            .into_iter()
            .map(|r| (r.task, r.report))
            .unzip();
        if reports.is_empty() && max_next == 0 {
            return Vec::new();
        }
        let (compile_cache_hits, compile_cache_misses) = self.runtime.cache_stats();
        let request = pb::ReportTasksRequest {
            worker: self.config.worker_id.clone(),
            reports,
            max_next,
            compile_cache_hits,
            compile_cache_misses,
        };
        let mut backoff = Backoff::new();
        for attempt in 1..=tries {
            match self.client.report_tasks(request.clone()).await {
                Ok(reply) => {
                    let reply = reply.into_inner();
                    for (task, accepted) in tasks.iter().zip(&reply.accepted) {
                        if !accepted {
                            tracing::info!(job_id = %task.job_id, attempt = task.attempt_id, "report not accepted: the attempt was superseded");
                            let (data, store, task) =
                                (self.data.clone(), self.config.storage.clone(), task.clone());
                            tokio::task::spawn_blocking(move || {
                                remove_attempt_files(&data, &store, &task)
                            });
                        }
                    }
                    return reply.next_tasks;
                }
                Err(status) if attempt < tries => {
                    for task in &tasks {
                        tracing::debug!(job_id = %task.job_id, attempt = task.attempt_id, error = %status.message(), "report failed; retrying");
                    }
                    tokio::time::sleep(backoff.delay()).await;
                }
                Err(status) => {
                    for task in &tasks {
                        tracing::warn!(job_id = %task.job_id, attempt = task.attempt_id, error = %status.message(), "report lost; the task will time out and run again");
                    }
                }
            }
        }
        Vec::new()
    }
}

/// Removes the temp files of an attempt the coordinator did not accept: nobody else will.
fn remove_attempt_files(data: &DataDir, store: &Storage, task: &pb::Assignment) {
    let finals: Vec<PathBuf> = match &task.task {
        Some(pb::assignment::Task::Map(m)) => (0..task.n_reduce)
            .map(|y| data.intermediate(&task.job_id, m.index, y))
            .collect(),
        Some(pb::assignment::Task::Reduce(r)) => vec![data.output(&task.job_id, r.partition)],
        None => Vec::new(),
    };
    for path in finals {
        let tmp = DataDir::attempt_tmp(&path, task.attempt_id);
        match store {
            Storage::Local => {
                let _ = std::fs::remove_file(tmp);
            }
            Storage::S3(s3) => {
                if let Ok(key) = data.key_of(&tmp) {
                    let _ = s3.delete(&key);
                }
            }
        }
    }
}

/// What the task was, for error messages: app, task and input.
fn describe(task: &pb::Assignment) -> String {
    match &task.task {
        Some(pb::assignment::Task::Map(m)) => format!(
            "app {}, map task {}, input {}[{}..{}]",
            task.app,
            m.index,
            m.path,
            m.offset,
            m.offset + m.length
        ),
        Some(pb::assignment::Task::Reduce(r)) => {
            format!("app {}, reduce task {}", task.app, r.partition)
        }
        None => format!("app {}", task.app),
    }
}

/// The app's compiled module: from the runtime's caches, or fetched from the coordinator by
/// hash and compiled.
async fn load_module(
    mut client: CoordinatorClient<InterceptedService<Channel, BearerToken>>,
    runtime: Arc<AppRuntime>,
    task: &pb::Assignment,
) -> Result<AppModule, AppError> {
    if let Some(module) = runtime.cached(&task.app_sha256) {
        return Ok(module);
    }
    let fetch_error = |message: String| AppError::Compile {
        app: task.app.clone(),
        message,
    };
    let wasm = client
        .get_app(pb::GetAppRequest {
            sha256: task.app_sha256.clone(),
        })
        .await
        .map_err(|s| fetch_error(format!("fetching the module: {}", s.message())))?
        .into_inner()
        .module;
    let actual = hex::encode(Sha256::digest(&wasm));
    if actual != task.app_sha256 {
        return Err(fetch_error(format!(
            "module hash {actual} differs from the expected {}",
            task.app_sha256
        )));
    }
    let (app, sha) = (task.app.clone(), task.app_sha256.clone());
    tokio::task::spawn_blocking(move || runtime.load(&app, &sha, &wasm))
        .await
        .map_err(|e| fetch_error(format!("compiling: {e}")))?
}

fn run_task(
    data: &DataDir,
    store: &Storage,
    module: &AppModule,
    task: &pb::Assignment,
    merge_fan_in: usize,
) -> Result<TaskStats, TaskError> {
    let ctx = TaskContext {
        merge_fan_in,
        skip_budget: task.skip_budget,
        data,
        store,
        job_id: &task.job_id,
        attempt_id: task.attempt_id,
        n_reduce: task.n_reduce,
        limits: Limits {
            time: Duration::from_millis(task.time_limit_ms),
            memory_bytes: task.memory_limit_bytes,
        },
    };
    match &task.task {
        Some(pb::assignment::Task::Map(m)) => {
            tasks::run_map(&ctx, module, m.index, &m.path, m.offset, m.length)
        }
        Some(pb::assignment::Task::Reduce(r)) => {
            tasks::run_reduce(&ctx, module, r.partition, &r.map_tasks)
        }
        None => Err(TaskError::App(AppError::Abi {
            app: task.app.clone(),
            message: "the assignment names no task".into(),
        })),
    }
}

/// `<hostname>-<pid>`: unique per process, and names the container in a compose cluster.
pub fn default_worker_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "worker".to_string());
    format!("{host}-{}", std::process::id())
}
