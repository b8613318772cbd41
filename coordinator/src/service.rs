//! The gRPC edge: `JobService` for users and `Coordinator` for workers. Requests are validated
//! and turned into scheduler [`Event`]s here; scheduler types are turned into protobuf here.

use crate::apps::AppStore;
use crate::config::{CoordinatorConfig, MAX_N_REDUCE};
use crate::error::CoordinatorError;
use crate::scheduler::{
    self, Assignment, AttemptOutcome, CancelOutcome, Event, FailureKind, Job, JobSpec, JobState,
    Reply, Scheduler, Task, TaskKind, TaskResult, TaskState,
};
use crate::state::millis;
use crate::watch::{self, TaskWindow, WatchLimits};
use mr_common::DataDir;
use mr_proto::v1 as pb;
use mr_proto::v1::coordinator_server::Coordinator;
use mr_proto::v1::job_service_server::JobService;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch as signal;
use tonic::{Request, Response, Status};

/// Most map tasks one job may have; bounds memory and files per job.
pub const MAX_MAP_TASKS: usize = 200_000;

/// Shared by both services.
#[derive(Clone)]
pub struct Services {
    scheduler: Arc<Scheduler>,
    apps: Arc<AppStore>,
    shutdown: signal::Receiver<bool>,
    watches: Arc<WatchLimits>,
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
        }
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

    /// The job as the API shows it, with or without its per-task records.
    fn job(&self, job_id: &str, detailed: bool) -> Result<pb::Job, CoordinatorError> {
        self.scheduler
            .with_job(job_id, |job| job_to_proto(job, detailed))
            .ok_or_else(|| CoordinatorError::UnknownJob {
                job_id: job_id.to_string(),
            })
    }
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
    let input_files = data.expand_inputs(&req.inputs)?;
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
        let dir = self.scheduler.data().job_dir(&job_id);
        std::fs::create_dir_all(&dir).map_err(|source| CoordinatorError::Io {
            what: format!("creating {}", dir.display()),
            source,
        })?;
        self.scheduler
            .handle(Event::Submit {
                job_id: job_id.clone(),
                spec,
            })
            .map_err(CoordinatorError::from)?;
        Ok(Response::new(pb::SubmitJobResponse { job_id }))
    }

    async fn get_job(
        &self,
        request: Request<pb::GetJobRequest>,
    ) -> Result<Response<pb::Job>, Status> {
        Ok(Response::new(self.job(&request.into_inner().job_id, true)?))
    }

    async fn list_jobs(
        &self,
        _request: Request<pb::ListJobsRequest>,
    ) -> Result<Response<pb::ListJobsResponse>, Status> {
        let jobs = self.scheduler.map_jobs(|j| job_to_proto(j, false));
        Ok(Response::new(pb::ListJobsResponse { jobs }))
    }

    async fn cancel_job(
        &self,
        request: Request<pb::CancelJobRequest>,
    ) -> Result<Response<pb::Job>, Status> {
        let job_id = request.into_inner().job_id;
        let reply = self
            .scheduler
            .handle(Event::Cancel {
                job_id: job_id.clone(),
            })
            .map_err(CoordinatorError::from)?;
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
        Ok(Response::new(self.job(&job_id, true)?))
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
}

#[tonic::async_trait]
impl Coordinator for Services {
    async fn request_task(
        &self,
        request: Request<pb::RequestTaskRequest>,
    ) -> Result<Response<pb::RequestTaskResponse>, Status> {
        let req = request.into_inner();
        let config = self.scheduler.config();
        let wait = match req.wait_ms {
            0 => config.long_poll,
            ms => Duration::from_millis(ms.into()).min(config.long_poll),
        };
        let deadline = tokio::time::Instant::now() + wait;
        let mut shutdown = self.shutdown.clone();
        loop {
            // Registered before looking, so a task that turns up in between is not missed.
            let ready = self.scheduler.work_ready().notified();
            tokio::pin!(ready);
            ready.as_mut().enable();
            let reply = self
                .scheduler
                .handle(Event::Request {
                    worker: req.worker.clone(),
                })
                .map_err(CoordinatorError::from)?;
            if let Reply::Task(Some(assignment)) = reply {
                let task = Some(assignment_to_proto(&assignment, &self.scheduler));
                return Ok(Response::new(pb::RequestTaskResponse { task }));
            }
            tokio::select! {
                _ = &mut ready => {}
                _ = tokio::time::sleep_until(deadline) => break,
                _ = shutdown.changed() => break,
            }
        }
        Ok(Response::new(pb::RequestTaskResponse { task: None }))
    }

    async fn report_task(
        &self,
        request: Request<pb::ReportTaskRequest>,
    ) -> Result<Response<pb::ReportTaskResponse>, Status> {
        let req = request.into_inner();
        let result = match req.result {
            Some(pb::report_task_request::Result::Succeeded(succeeded)) => TaskResult::Succeeded {
                partitions: succeeded.partitions,
            },
            Some(pb::report_task_request::Result::Failed(failed)) => TaskResult::Failed {
                kind: failure_kind(failed.kind()),
                error: failed.error,
                bad_map_tasks: failed.bad_map_tasks,
            },
            None => {
                return Err(CoordinatorError::InvalidArgument {
                    field: "result",
                    message: "a report needs `succeeded` or `failed`".into(),
                }
                .into());
            }
        };
        let reply = self
            .scheduler
            .handle(Event::Report {
                worker: req.worker,
                attempt_id: req.attempt_id,
                result,
                want_next: req.want_next,
            })
            .map_err(CoordinatorError::from)?;
        let Reply::Report { accepted, next } = reply else {
            return Ok(Response::new(pb::ReportTaskResponse::default()));
        };
        Ok(Response::new(pb::ReportTaskResponse {
            accepted,
            next_task: next.map(|a| assignment_to_proto(&a, &self.scheduler)),
        }))
    }

    async fn heartbeat(
        &self,
        request: Request<pb::HeartbeatRequest>,
    ) -> Result<Response<pb::HeartbeatResponse>, Status> {
        let req = request.into_inner();
        let reply = self
            .scheduler
            .handle(Event::Heartbeat {
                attempt_id: req.attempt_id,
            })
            .map_err(CoordinatorError::from)?;
        let keep_going = matches!(reply, Reply::Heartbeat { keep_going: true });
        Ok(Response::new(pb::HeartbeatResponse { keep_going }))
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
            path: split.path.clone(),
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
    }
}

fn progress(tasks: &[Task]) -> pb::PhaseProgress {
    let count = |s| tasks.iter().filter(|t| t.state == s).count() as u32;
    pb::PhaseProgress {
        total: tasks.len() as u32,
        idle: count(TaskState::Idle),
        in_progress: count(TaskState::InProgress),
        completed: count(TaskState::Completed),
    }
}

pub(crate) fn job_to_proto(job: &Job, detailed: bool) -> pb::Job {
    let state = match job.state {
        JobState::Pending => pb::JobState::Pending,
        JobState::Running => pb::JobState::Running,
        JobState::Succeeded => pb::JobState::Succeeded,
        JobState::Failed => pb::JobState::Failed,
        JobState::Cancelled => pb::JobState::Cancelled,
    };
    let (tasks, input_files) = if detailed {
        let tasks = job.all_tasks().map(task_to_proto).collect();
        let files = job
            .spec
            .input_files
            .iter()
            .map(|(f, _)| f.clone())
            .collect();
        (tasks, files)
    } else {
        (Vec::new(), Vec::new())
    };
    pb::Job {
        job_id: job.id.clone(),
        app: job.spec.app.name.clone(),
        state: state.into(),
        outputs: job.outputs.clone(),
        error: job.error.clone(),
        map: Some(progress(&job.maps)),
        reduce: Some(progress(&job.reduces)),
        tasks,
        n_reduce: job.spec.n_reduce,
        inputs: job.spec.inputs.clone(),
        submitted_at_ms: millis(job.submitted_at),
        finished_at_ms: job.finished_at.map(millis).unwrap_or(0),
        input_files,
        warning: job.warning.clone(),
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
