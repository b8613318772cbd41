//! The gRPC edge: `JobService` for users and `Coordinator` for workers. Requests are validated
//! and turned into scheduler [`Event`]s here; scheduler types are turned into protobuf here.

use crate::apps::AppStore;
use crate::config::{CoordinatorConfig, MAX_N_REDUCE};
use crate::error::CoordinatorError;
use crate::output;
use crate::scheduler::{
    self, Assignment, AttemptCounts, AttemptId, AttemptOutcome, CancelOutcome, Event, FailureKind,
    Job, JobSpec, JobState, PhaseCounts, Reply, Scheduler, StoredSkipped, Task, TaskKind,
    TaskResult, TaskState,
};
use crate::state::millis;
use crate::watch::{self, TaskWindow, WatchLimits};
use crate::workers::Workers;
use mr_common::{DataDir, PathError};
use mr_proto::v1 as pb;
use mr_proto::v1::coordinator_server::Coordinator;
use mr_proto::v1::job_service_server::JobService;
use mr_storage::Storage;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch as signal;
use tonic::{Request, Response, Status};

/// Most map tasks one job may have; bounds memory and files per job.
pub const MAX_MAP_TASKS: usize = 200_000;

/// Task records in a GetJob page when the request does not say.
pub const DEFAULT_TASK_PAGE: usize = 1_000;

/// Most task records in one GetJob page: about 150 bytes each, far below 4 MiB.
pub const MAX_TASK_PAGE: usize = 5_000;

/// Which task records a response carries.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Tasks {
    /// None (ListJobs, summary WatchJob updates).
    None,
    /// `size` records from task `start` (maps then reduces): GetJob, CancelJob, detailed
    /// WatchJob updates.
    Page { start: usize, size: usize },
}

/// Shared by both services.
#[derive(Clone)]
pub struct Services {
    scheduler: Arc<Scheduler>,
    apps: Arc<AppStore>,
    shutdown: signal::Receiver<bool>,
    watches: Arc<WatchLimits>,
    workers: Arc<Workers>,
}

impl Services {
    pub fn new(
        scheduler: Arc<Scheduler>,
        apps: Arc<AppStore>,
        shutdown: signal::Receiver<bool>,
    ) -> Self {
        let watches = WatchLimits::new(scheduler.config());
        Self {
            scheduler,
            apps,
            shutdown,
            watches,
            workers: Arc::default(),
        }
    }

    /// The workers as `ListWorkers` shows them (the status page reads them too).
    pub(crate) fn workers(&self) -> Arc<Workers> {
        self.workers.clone()
    }

    fn new_job_id(&self) -> String {
        use rand::Rng;
        const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyz23456789";
        let mut rng = rand::rng();
        loop {
            let id: String = (0..10)
                .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
                .collect();
            if !self.scheduler.contains(&id) {
                return id;
            }
        }
    }

    /// The job as the API shows it, with the task records asked for.
    fn job(&self, job_id: &str, tasks: Tasks) -> Result<pb::Job, CoordinatorError> {
        self.scheduler
            .with_job(job_id, |job| job_to_proto(job, tasks))
            .ok_or_else(|| CoordinatorError::UnknownJob {
                job_id: job_id.to_string(),
            })
    }

    /// Runs one scheduler event off the async runtime's threads: it may write the journal
    /// and rename files.
    async fn handle(&self, event: Event) -> Result<Reply, CoordinatorError> {
        let scheduler = self.scheduler.clone();
        tokio::task::spawn_blocking(move || scheduler.handle(event))
            .await
            .map_err(|e| CoordinatorError::Io {
                what: "the scheduler task".into(),
                source: std::io::Error::other(e.to_string()),
            })?
            .map_err(CoordinatorError::from)
    }
}

/// The page of task records a GetJob request asks for.
fn task_page(req: &pb::GetJobRequest) -> Result<Tasks, CoordinatorError> {
    let size = match req.task_page_size {
        0 => DEFAULT_TASK_PAGE,
        n => (n as usize).min(MAX_TASK_PAGE),
    };
    let start = match req.task_page_token.as_str() {
        "" => 0,
        token => token
            .parse()
            .map_err(|_| CoordinatorError::InvalidArgument {
                field: "task_page_token",
                message: "not a token this service gave out: pass `next_task_page_token` of the previous page".into(),
            })?,
    };
    Ok(Tasks::Page { start, size })
}

/// Checks a submission and resolves its app and inputs. Pure apart from reading the apps
/// folder and the inputs' metadata, so it is also a fuzz target.
pub fn validate_submission(
    req: pb::SubmitJobRequest,
    apps: &AppStore,
    data: &DataDir,
    config: &CoordinatorConfig,
) -> Result<JobSpec, CoordinatorError> {
    let app = apps.load(&req.app)?;
    if req.inputs.is_empty() {
        return Err(CoordinatorError::InvalidArgument {
            field: "inputs",
            message: "at least one input path or glob is required".into(),
        });
    }
    if req.n_reduce == 0 || req.n_reduce > MAX_N_REDUCE {
        return Err(CoordinatorError::InvalidArgument {
            field: "n_reduce",
            message: format!("must be between 1 and {MAX_N_REDUCE}, got {}", req.n_reduce),
        });
    }
    let input_files = match &config.storage {
        Storage::Local => data.expand_inputs(&req.inputs)?,
        Storage::S3(s3) => mr_common::data_dir::expand_keys(
            &req.inputs,
            |prefix| {
                let objects = s3.list(prefix).map_err(CoordinatorError::from)?;
                Ok(objects.into_iter().map(|o| (o.key, o.size)).collect())
            },
            |key| match s3.size(key) {
                Ok(size) => Ok(Some(size)),
                Err(e) if e.is_not_found() => Ok(None),
                Err(e) => Err(CoordinatorError::from(e)),
            },
        )
        .map_err(|e| match e {
            CoordinatorError::Path(PathError::NoMatch { field, path }) => {
                CoordinatorError::InvalidArgument {
                    field: "inputs",
                    message: format!(
                        "{field}: '{}' matches no object under {}",
                        crate::error::clip(&path),
                        s3.url()
                    ),
                }
            }
            other => other,
        })?,
    };
    let split_bytes = match req.split_bytes {
        0 => config.default_split_bytes,
        n => n,
    };
    let n_maps: u64 = input_files
        .iter()
        .map(|f| f.size.div_ceil(split_bytes).max(1))
        .sum();
    if n_maps > MAX_MAP_TASKS as u64 {
        return Err(CoordinatorError::InvalidArgument {
            field: "split_bytes",
            message: format!(
                "{split_bytes} bytes per split cuts the inputs into {n_maps} map tasks, more than {MAX_MAP_TASKS}"
            ),
        });
    }
    Ok(JobSpec {
        app,
        inputs: req.inputs,
        input_files: input_files
            .into_iter()
            .map(|f| (f.relative, f.size))
            .collect(),
        n_reduce: req.n_reduce,
        split_bytes,
        max_skipped_records: req.max_skipped_records,
    })
}

#[tonic::async_trait]
impl JobService for Services {
    async fn submit_job(
        &self,
        request: Request<pb::SubmitJobRequest>,
    ) -> Result<Response<pb::SubmitJobResponse>, Status> {
        let spec = validate_submission(
            request.into_inner(),
            &self.apps,
            self.scheduler.data(),
            self.scheduler.config(),
        )
        .map_err(CoordinatorError::clipped)
        .inspect_err(|e| {
            tracing::info!(error = %e, "job refused");
        })?;
        let job_id = self.new_job_id();
        if let Storage::Local = self.scheduler.config().storage {
            let dir = self.scheduler.data().job_dir(&job_id);
            std::fs::create_dir_all(&dir).map_err(|source| CoordinatorError::Io {
                what: format!("creating {}", dir.display()),
                source,
            })?;
        }
        self.handle(Event::Submit {
            job_id: job_id.clone(),
            spec,
        })
        .await?;
        Ok(Response::new(pb::SubmitJobResponse { job_id }))
    }

    async fn get_job(
        &self,
        request: Request<pb::GetJobRequest>,
    ) -> Result<Response<pb::Job>, Status> {
        let req = request.into_inner();
        let tasks = task_page(&req)?;
        Ok(Response::new(self.job(&req.job_id, tasks)?))
    }

    async fn list_jobs(
        &self,
        _request: Request<pb::ListJobsRequest>,
    ) -> Result<Response<pb::ListJobsResponse>, Status> {
        let jobs = self.scheduler.map_jobs(|j| job_to_proto(j, Tasks::None));
        Ok(Response::new(pb::ListJobsResponse { jobs }))
    }

    async fn cancel_job(
        &self,
        request: Request<pb::CancelJobRequest>,
    ) -> Result<Response<pb::Job>, Status> {
        let job_id = request.into_inner().job_id;
        let reply = self
            .handle(Event::Cancel {
                job_id: job_id.clone(),
            })
            .await?;
        match reply {
            Reply::Cancel(CancelOutcome::Cancelled)
            | Reply::Cancel(CancelOutcome::AlreadyEnded(JobState::Cancelled)) => {}
            Reply::Cancel(CancelOutcome::AlreadyEnded(state)) => {
                return Err(CoordinatorError::JobEnded {
                    job_id,
                    state: state.name(),
                }
                .into());
            }
            _ => return Err(CoordinatorError::UnknownJob { job_id }.into()),
        }
        let first_page = Tasks::Page {
            start: 0,
            size: DEFAULT_TASK_PAGE,
        };
        Ok(Response::new(self.job(&job_id, first_page)?))
    }

    type WatchJobStream = watch::WatchStream;

    async fn watch_job(
        &self,
        request: Request<pb::WatchJobRequest>,
    ) -> Result<Response<Self::WatchJobStream>, Status> {
        let client = request.remote_addr().map(|addr| addr.ip());
        let pb::WatchJobRequest {
            job_id,
            detailed,
            task_offset,
            task_page_size,
        } = request.into_inner();
        let changes =
            self.scheduler
                .watch(&job_id)
                .ok_or_else(|| CoordinatorError::UnknownJob {
                    job_id: job_id.clone(),
                })?;
        let slot = self.watches.acquire(client)?;
        let window = detailed.then(|| TaskWindow::new(task_offset, task_page_size));
        Ok(Response::new(watch::stream(
            self.scheduler.clone(),
            job_id,
            window,
            changes,
            self.shutdown.clone(),
            slot,
        )))
    }

    type ReadOutputStream = output::OutputStream;

    async fn read_output(
        &self,
        request: Request<pb::ReadOutputRequest>,
    ) -> Result<Response<Self::ReadOutputStream>, Status> {
        let job_id = request.into_inner().job_id;
        let (state, outputs) = self
            .scheduler
            .with_job(&job_id, |j| (j.state, j.outputs()))
            .ok_or_else(|| CoordinatorError::UnknownJob {
                job_id: job_id.clone(),
            })?;
        if state != JobState::Succeeded {
            return Err(CoordinatorError::NoOutput {
                job_id,
                state: state.name(),
            }
            .into());
        }
        let root = self.scheduler.data().root().to_path_buf();
        let files = outputs.into_iter().map(|o| (root.join(&o), o)).collect();
        let store = self.scheduler.config().storage.clone();
        Ok(Response::new(output::stream(files, store)))
    }

    async fn push_app(
        &self,
        request: Request<tonic::Streaming<pb::PushAppChunk>>,
    ) -> Result<Response<pb::AppInfo>, Status> {
        let limit = self.scheduler.config().max_app_bytes;
        let mut stream = request.into_inner();
        let mut name = String::new();
        let mut wasm = Vec::new();
        while let Some(chunk) = stream.message().await? {
            if name.is_empty() {
                name = chunk.name;
            }
            if wasm.len() as u64 + chunk.data.len() as u64 > limit {
                return Err(CoordinatorError::AppTooLarge { app: name, limit }.into());
            }
            wasm.extend_from_slice(&chunk.data);
        }
        let apps = self.apps.clone();
        let info = blocking(move || apps.push(&name, wasm)).await??;
        Ok(Response::new(info))
    }

    async fn list_apps(
        &self,
        _request: Request<pb::ListAppsRequest>,
    ) -> Result<Response<pb::ListAppsResponse>, Status> {
        let apps = self.apps.clone();
        let apps = blocking(move || apps.list()).await?;
        Ok(Response::new(pb::ListAppsResponse { apps }))
    }

    async fn delete_app(
        &self,
        request: Request<pb::DeleteAppRequest>,
    ) -> Result<Response<pb::AppInfo>, Status> {
        let name = request.into_inner().name;
        let apps = self.apps.clone();
        let info = blocking(move || apps.delete(&name)).await??;
        Ok(Response::new(info))
    }

    async fn list_workers(
        &self,
        _request: Request<pb::ListWorkersRequest>,
    ) -> Result<Response<pb::ListWorkersResponse>, Status> {
        let lost_after = self.scheduler.config().task_timeout;
        Ok(Response::new(pb::ListWorkersResponse {
            workers: self.workers.list(lost_after),
        }))
    }
}

#[tonic::async_trait]
impl Coordinator for Services {
    async fn request_task(
        &self,
        request: Request<pb::RequestTaskRequest>,
    ) -> Result<Response<pb::RequestTaskResponse>, Status> {
        let host = request.remote_addr();
        let req = request.into_inner();
        self.workers.compile_cache(
            &req.worker,
            req.compile_cache_hits,
            req.compile_cache_misses,
        );
        let config = self.scheduler.config();
        let wait = match req.wait_ms {
            0 => config.long_poll,
            ms => Duration::from_millis(ms.into()).min(config.long_poll),
        };
        let deadline = tokio::time::Instant::now() + wait;
        let mut shutdown = self.shutdown.clone();
        let _polling = self.workers.polling(&req.worker, host);
        loop {
            // Registered before looking, so a task that turns up in between is not missed.
            let ready = self.scheduler.work_ready().notified();
            tokio::pin!(ready);
            ready.as_mut().enable();
            let reply = self
                .handle(Event::Request {
                    worker: req.worker.clone(),
                    max_tasks: req.max_tasks,
                })
                .await?;
            if let Reply::Task(tasks) = reply
                && !tasks.is_empty()
            {
                self.workers.requested(&req.worker, host, &tasks);
                let mut tasks = tasks
                    .iter()
                    .map(|a| assignment_to_proto(a, &self.scheduler));
                return Ok(Response::new(pb::RequestTaskResponse {
                    task: tasks.next(),
                    more_tasks: tasks.collect(),
                }));
            }
            tokio::select! {
                _ = &mut ready => {}
                _ = tokio::time::sleep_until(deadline) => break,
                _ = shutdown.changed() => break,
            }
        }
        self.workers.requested(&req.worker, host, &[]);
        Ok(Response::new(pb::RequestTaskResponse::default()))
    }

    async fn report_task(
        &self,
        request: Request<pb::ReportTaskRequest>,
    ) -> Result<Response<pb::ReportTaskResponse>, Status> {
        let host = request.remote_addr();
        let req = request.into_inner();
        let worker = req.worker.clone();
        let max_next = u32::from(req.want_next);
        let reports = vec![report_from_proto(req)?];
        let (accepted, next) = self.report(worker, host, reports, max_next).await?;
        Ok(Response::new(pb::ReportTaskResponse {
            accepted: accepted.first().copied().unwrap_or(false),
            next_task: next.into_iter().next(),
        }))
    }

    async fn report_tasks(
        &self,
        request: Request<pb::ReportTasksRequest>,
    ) -> Result<Response<pb::ReportTasksResponse>, Status> {
        let host = request.remote_addr();
        let req = request.into_inner();
        self.workers.compile_cache(
            &req.worker,
            req.compile_cache_hits,
            req.compile_cache_misses,
        );
        let reports = req
            .reports
            .into_iter()
            .map(report_from_proto)
            .collect::<Result<_, _>>()?;
        let (accepted, next_tasks) = self.report(req.worker, host, reports, req.max_next).await?;
        Ok(Response::new(pb::ReportTasksResponse {
            accepted,
            next_tasks,
        }))
    }

    async fn heartbeat(
        &self,
        request: Request<pb::HeartbeatRequest>,
    ) -> Result<Response<pb::HeartbeatResponse>, Status> {
        let host = request.remote_addr();
        let req = request.into_inner();
        let mut attempt_ids = req.more_attempt_ids;
        attempt_ids.insert(0, req.attempt_id);
        let reply = self
            .handle(Event::Heartbeat {
                attempt_ids: attempt_ids.clone(),
            })
            .await?;
        let Reply::Heartbeat { wanted } = reply else {
            return Ok(Response::new(pb::HeartbeatResponse::default()));
        };
        let dropped: Vec<AttemptId> = attempt_ids
            .iter()
            .zip(&wanted)
            .filter(|(_, wanted)| !**wanted)
            .map(|(id, _)| *id)
            .collect();
        self.workers.heartbeat(&req.worker, host, &dropped);
        Ok(Response::new(pb::HeartbeatResponse {
            keep_going: wanted.first().copied().unwrap_or(false),
            dropped: dropped
                .into_iter()
                .filter(|&id| id != req.attempt_id)
                .collect(),
        }))
    }

    async fn get_app(
        &self,
        request: Request<pb::GetAppRequest>,
    ) -> Result<Response<pb::GetAppResponse>, Status> {
        let module = self.apps.module(&request.into_inner().sha256)?;
        Ok(Response::new(pb::GetAppResponse {
            module: module.as_ref().clone(),
        }))
    }
}

impl Services {
    /// Applies reports in order; returns whether each was accepted and the next tasks.
    async fn report(
        &self,
        worker: String,
        host: Option<std::net::SocketAddr>,
        reports: Vec<(AttemptId, TaskResult)>,
        max_next: u32,
    ) -> Result<(Vec<bool>, Vec<pb::Assignment>), Status> {
        let outcomes: Vec<(AttemptId, bool)> = reports
            .iter()
            .map(|(id, r)| (*id, matches!(r, TaskResult::Succeeded { .. })))
            .collect();
        let reply = self
            .handle(Event::Report {
                worker: worker.clone(),
                reports,
                max_next,
            })
            .await?;
        let Reply::Report { accepted, next } = reply else {
            return Ok((Vec::new(), Vec::new()));
        };
        self.workers.reported(&worker, host, &outcomes, &next);
        let next = next
            .iter()
            .map(|a| assignment_to_proto(a, &self.scheduler))
            .collect();
        Ok((accepted, next))
    }
}

/// Runs blocking file work (the apps folder, saved modules) off the async threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, Status> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| crate::error::status(tonic::Code::Internal, e.to_string()))
}

/// One report's attempt and outcome.
fn report_from_proto(req: pb::ReportTaskRequest) -> Result<(AttemptId, TaskResult), Status> {
    let result = match req.result {
        Some(pb::report_task_request::Result::Succeeded(succeeded)) => TaskResult::Succeeded {
            partitions: succeeded.partitions,
            skipped: succeeded
                .skipped
                .into_iter()
                .map(skipped_from_proto)
                .collect(),
            counts: AttemptCounts {
                records_in: succeeded.records_in,
                records_out: succeeded.records_out,
                output_bytes: succeeded.output_bytes,
                user: succeeded.counters.into_iter().collect(),
            },
        },
        Some(pb::report_task_request::Result::Failed(failed)) => TaskResult::Failed {
            kind: failure_kind(failed.kind()),
            error: failed.error,
            bad_map_tasks: failed.bad_map_tasks,
        },
        None => {
            return Err(CoordinatorError::InvalidArgument {
                field: "result",
                message: format!(
                    "the report of attempt {} needs `succeeded` or `failed`",
                    req.attempt_id
                ),
            }
            .into());
        }
    };
    Ok((req.attempt_id, result))
}

fn failure_kind(kind: pb::FailureKind) -> FailureKind {
    match kind {
        pb::FailureKind::AppError | pb::FailureKind::Unspecified => FailureKind::App,
        pb::FailureKind::TimeLimit => FailureKind::TimeLimit,
        pb::FailureKind::MemoryLimit => FailureKind::MemoryLimit,
        pb::FailureKind::BadIntermediate => FailureKind::BadIntermediate,
        pb::FailureKind::Io => FailureKind::Io,
        pb::FailureKind::Abandoned => FailureKind::Abandoned,
    }
}

fn assignment_to_proto(a: &Assignment, scheduler: &Scheduler) -> pb::Assignment {
    let config = scheduler.config();
    let task = match (a.kind, &a.split) {
        (TaskKind::Map, Some(split)) => pb::assignment::Task::Map(pb::MapTask {
            index: a.index,
            path: split.path.to_string(),
            offset: split.offset,
            length: split.length,
        }),
        _ => pb::assignment::Task::Reduce(pb::ReduceTask {
            partition: a.index,
            map_tasks: a.map_tasks.clone(),
        }),
    };
    pb::Assignment {
        job_id: a.job_id.clone(),
        attempt_id: a.attempt_id,
        app: a.app.name.clone(),
        app_sha256: a.app.sha256.clone(),
        n_reduce: a.n_reduce,
        n_map: a.n_map,
        // A third of the timeout: two heartbeats may be lost before the attempt is given up.
        heartbeat_interval_ms: (config.task_timeout.as_millis() / 3).max(1) as u32,
        time_limit_ms: config.task_time_limit.as_millis() as u64,
        memory_limit_bytes: config.task_memory_limit,
        task: Some(task),
        skip_budget: a.skip_budget,
    }
}

fn progress(counts: PhaseCounts) -> pb::PhaseProgress {
    pb::PhaseProgress {
        total: counts.total,
        idle: counts.idle,
        in_progress: counts.in_progress,
        completed: counts.completed,
    }
}

pub(crate) fn job_to_proto(job: &Job, tasks: Tasks) -> pb::Job {
    let state = match job.state {
        JobState::Pending => pb::JobState::Pending,
        JobState::Running => pb::JobState::Running,
        JobState::Succeeded => pb::JobState::Succeeded,
        JobState::Failed => pb::JobState::Failed,
        JobState::Cancelled => pb::JobState::Cancelled,
    };
    let (start, size) = match tasks {
        Tasks::None => (0, 0),
        Tasks::Page { start, size } => (start, size),
    };
    let total = job.maps.len() + job.reduces.len();
    let page: Vec<pb::TaskInfo> = job
        .all_tasks()
        .skip(start)
        .take(size)
        .map(task_to_proto)
        .collect();
    let end = start.saturating_add(page.len());
    let next_task_page_token = match tasks {
        Tasks::Page { .. } if end < total => end.to_string(),
        _ => String::new(),
    };
    // The file list rides with the first page only.
    let input_files = match tasks {
        Tasks::Page { start: 0, .. } => job
            .spec
            .input_files
            .iter()
            .map(|(f, _)| f.clone())
            .collect(),
        _ => Vec::new(),
    };
    pb::Job {
        job_id: job.id.clone(),
        app: job.spec.app.name.clone(),
        state: state.into(),
        outputs: job.outputs(),
        error: job.error.clone(),
        map: Some(progress(job.progress(TaskKind::Map))),
        reduce: Some(progress(job.progress(TaskKind::Reduce))),
        tasks: page,
        n_reduce: job.spec.n_reduce,
        inputs: job.spec.inputs.clone(),
        submitted_at_ms: millis(job.submitted_at),
        finished_at_ms: job.finished_at.map(millis).unwrap_or(0),
        input_files,
        warning: job.warning.clone(),
        next_task_page_token,
        archived: job.archived,
        skipped_records: job.skipped_records,
        counters: job.counters.iter().map(|(k, v)| (k.clone(), *v)).collect(),
        app_sha256: job.spec.app.sha256.clone(),
        // Like the file list, with the first page only: ListJobs stays small.
        skipped: match tasks {
            Tasks::Page { start: 0, .. } => job
                .skipped(MAX_SKIPPED_LISTED)
                .map(|(task, s)| skipped_to_proto(task, s))
                .collect(),
            _ => Vec::new(),
        },
    }
}

pub(crate) fn task_to_proto(task: &Task) -> pb::TaskInfo {
    let kind = match task.kind {
        TaskKind::Map => pb::TaskKind::Map,
        TaskKind::Reduce => pb::TaskKind::Reduce,
    };
    let state = match task.state {
        TaskState::Idle => pb::TaskState::Idle,
        TaskState::InProgress => pb::TaskState::InProgress,
        TaskState::Completed => pb::TaskState::Completed,
    };
    let history = task
        .attempts
        .iter()
        .map(|a| pb::TaskAttempt {
            attempt_id: a.id,
            worker: a.worker.clone(),
            started_at_ms: millis(a.started_at),
            finished_at_ms: a.finished_at.map(millis).unwrap_or(0),
            outcome: outcome_to_proto(a.outcome).into(),
            error: a.error.clone(),
            backup: a.backup,
        })
        .collect();
    pb::TaskInfo {
        kind: kind.into(),
        index: task.index,
        state: state.into(),
        attempts: task.attempts.len() as u32,
        worker: task
            .attempts
            .last()
            .map(|a| a.worker.clone())
            .unwrap_or_default(),
        input: task
            .split
            .as_ref()
            .map(scheduler::Split::to_string)
            .unwrap_or_default(),
        history,
    }
}

/// Skipped records a Job lists (`skipped_records` counts them all).
pub(crate) const MAX_SKIPPED_LISTED: usize = 100;

/// Bytes of a skipped record's key, input or error kept: a worker's report is not trusted
/// to keep them short.
const MAX_SKIPPED_TEXT: usize = 256;

fn clip(mut text: String) -> String {
    if text.len() > MAX_SKIPPED_TEXT {
        let mut end = MAX_SKIPPED_TEXT;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

fn skipped_from_proto(s: pb::SkippedRecord) -> StoredSkipped {
    StoredSkipped {
        input: clip(s.input),
        offset: s.offset,
        key: clip(s.key),
        error: clip(s.error),
    }
}

fn skipped_to_proto(task: &Task, s: &StoredSkipped) -> pb::SkippedRecord {
    let kind = match task.kind {
        TaskKind::Map => pb::TaskKind::Map,
        TaskKind::Reduce => pb::TaskKind::Reduce,
    };
    pb::SkippedRecord {
        kind: kind.into(),
        task: task.index,
        input: s.input.clone(),
        offset: s.offset,
        key: s.key.clone(),
        error: s.error.clone(),
    }
}

fn outcome_to_proto(outcome: AttemptOutcome) -> pb::AttemptOutcome {
    match outcome {
        AttemptOutcome::Running => pb::AttemptOutcome::Running,
        AttemptOutcome::Succeeded => pb::AttemptOutcome::Succeeded,
        AttemptOutcome::Failed => pb::AttemptOutcome::Failed,
        AttemptOutcome::TimedOut => pb::AttemptOutcome::TimedOut,
        AttemptOutcome::Abandoned => pb::AttemptOutcome::Abandoned,
        AttemptOutcome::Superseded => pb::AttemptOutcome::Superseded,
    }
}
