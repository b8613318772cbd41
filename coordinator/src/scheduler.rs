//! Scheduling decisions, behind one lock.
//!
//! This is the lab's coordinator made into a service: each job has map tasks (one per input
//! split) and `n_reduce` reduce tasks, each Idle, InProgress or Completed. Workers' calls and
//! the timer come in as [`Event`]s; [`Scheduler::handle`] applies one event under the lock
//! and returns its [`Reply`]. Every change it decides is a journal [`Record`]: appended to
//! the durable journal first, then applied to memory by [`State::apply`], so a restarted
//! coordinator replays exactly what the killed one had acknowledged.
//!
//! Fencing: every assignment is an attempt with a unique id. A worker writes its files under
//! attempt-unique temp names; only when the coordinator accepts the report of the task's
//! *current* attempt does it rename them into place, under the lock. A late report from an
//! attempt that timed out or lost to a backup copy is answered "not accepted" and its files
//! are never renamed, so a slow worker waking up cannot change or double-count any output.

use crate::config::CoordinatorConfig;
use crate::journal::{Journal, JournalError, Record, StoredEnding, StoredJobEnd};
pub use crate::state::{
    Attempt, AttemptId, AttemptOutcome, Job, JobId, JobSpec, JobState, Split, Task, TaskKind,
    TaskState, task_label,
};
use crate::state::{State, millis};
use mr_common::DataDir;
use mr_common::data_dir::{intermediate_name, output_name};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime};
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

/// Why a worker says an attempt failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureKind {
    App,
    TimeLimit,
    MemoryLimit,
    BadIntermediate,
    Io,
    Abandoned,
}

impl FailureKind {
    /// Failures that are the task's own and count towards `max_task_failures`; a lost
    /// worker, a shutdown or a bad file from another task are not.
    fn counts_against_task(self) -> bool {
        matches!(
            self,
            Self::App | Self::TimeLimit | Self::MemoryLimit | Self::Io
        )
    }
}

/// A task handed to a worker.
#[derive(Clone, Debug)]
pub struct Assignment {
    pub job_id: JobId,
    pub attempt_id: AttemptId,
    pub app: crate::apps::AppRef,
    pub n_reduce: u32,
    pub n_map: u32,
    pub kind: TaskKind,
    pub index: u32,
    pub split: Option<Split>,
    /// Reduce tasks: the map tasks that wrote a file for this partition, ascending.
    pub map_tasks: Vec<u32>,
}

/// What a worker reports about an attempt.
#[derive(Clone, Debug)]
pub enum TaskResult {
    /// Map tasks list the partitions they wrote files for, ascending (reduces: empty).
    Succeeded { partitions: Vec<u32> },
    Failed {
        kind: FailureKind,
        error: String,
        bad_map_tasks: Vec<u32>,
    },
}

/// Everything that changes scheduling state.
#[derive(Debug)]
pub enum Event {
    /// A user submitted a validated job.
    Submit { job_id: JobId, spec: JobSpec },
    /// A worker asks for a task.
    Request { worker: String },
    /// A worker reports an attempt's outcome, and may ask for its next task at once.
    Report {
        worker: String,
        attempt_id: AttemptId,
        result: TaskResult,
        want_next: bool,
    },
    /// A worker says an attempt is still alive.
    Heartbeat { attempt_id: AttemptId },
    /// A user cancels a job.
    Cancel { job_id: JobId },
    /// A deadline may have passed: attempts to time out, jobs without workers, cleanups due.
    DeadlineCheck,
}

/// What a cancellation did.
#[derive(Debug, PartialEq, Eq)]
pub enum CancelOutcome {
    Cancelled,
    /// The job had already ended in this state.
    AlreadyEnded(JobState),
    UnknownJob,
}

/// A finished job whose folder is due for cleaning.
#[derive(Debug, Clone)]
pub struct Cleanup {
    pub job_id: JobId,
    /// Succeeded jobs keep their outputs; others keep nothing.
    pub keep_outputs: bool,
}

/// The answer to one [`Event`], variant for variant.
#[derive(Debug)]
pub enum Reply {
    Submitted,
    Task(Option<Assignment>),
    Report {
        accepted: bool,
        next: Option<Assignment>,
    },
    Heartbeat {
        keep_going: bool,
    },
    Cancel(CancelOutcome),
    DeadlineChecked {
        cleanups: Vec<Cleanup>,
    },
}

/// Mutable scheduling state: the jobs plus what only the live process needs.
struct Inner {
    state: State,
    journal: Journal,
    /// The last time any worker called in.
    last_worker_seen: Instant,
    /// Whether some running job carries a no-worker warning to clear.
    warned: bool,
    /// Jobs to clean and when.
    cleanups: Vec<(Instant, Cleanup)>,
}

/// Job and task state behind one lock, plus the signals that wake waiting callers.
pub struct Scheduler {
    config: CoordinatorConfig,
    data: DataDir,
    inner: Mutex<Inner>,
    /// Woken when a task may have become assignable (long polls wait on it).
    work_ready: Notify,
    /// Woken when a new deadline was set, so the timer can re-arm.
    deadline_set: Notify,
}

impl Scheduler {
    /// Opens the journal under `DATA/.mr`, replays it, and recovers: running attempts get a
    /// fresh deadline (their workers may still report), completed tasks whose files are gone
    /// run again, ended jobs' folders are swept.
    pub fn open(config: CoordinatorConfig, data: DataDir) -> Result<Self, JournalError> {
        let (journal, records) = Journal::open(&data.state_dir(), config.journal_sync)?;
        let now = Instant::now();
        let mut state = State {
            next_attempt: 1,
            ..State::default()
        };
        let replayed = records.len();
        for record in records {
            state.apply(record, now, config.task_timeout);
        }
        let mut inner = Inner {
            state,
            journal,
            last_worker_seen: now,
            warned: false,
            cleanups: Vec::new(),
        };
        let scheduler_data = data.clone();
        let mut resets = Vec::new();
        for job in &inner.state.jobs {
            if job.state.is_terminal() {
                inner.cleanups.push((
                    now,
                    Cleanup {
                        job_id: job.id.clone(),
                        keep_outputs: job.state == JobState::Succeeded,
                    },
                ));
                continue;
            }
            for kind in [TaskKind::Map, TaskKind::Reduce] {
                let lost: Vec<u32> = job
                    .tasks(kind)
                    .iter()
                    .filter(|t| t.state == TaskState::Completed)
                    .filter(|t| !files_of(&scheduler_data, job, t).iter().all(|f| f.exists()))
                    .map(|t| t.index)
                    .collect();
                if !lost.is_empty() {
                    resets.push(Record::TasksReset {
                        job_id: job.id.clone(),
                        kind: kind.into(),
                        indices: lost,
                    });
                }
            }
        }
        for record in resets {
            tracing::warn!(
                ?record,
                "completed tasks lost their files; they will run again"
            );
            inner.journal.append(&record)?;
            inner.state.apply(record, now, config.task_timeout);
        }
        if replayed > 0 {
            let active = inner
                .state
                .jobs
                .iter()
                .filter(|j| !j.state.is_terminal())
                .count();
            tracing::info!(
                records = replayed,
                jobs = inner.state.jobs.len(),
                active,
                "state recovered from the journal"
            );
        }
        Ok(Self {
            config,
            data,
            inner: Mutex::new(inner),
            work_ready: Notify::new(),
            deadline_set: Notify::new(),
        })
    }

    pub fn config(&self) -> &CoordinatorConfig {
        &self.config
    }

    pub fn data(&self) -> &DataDir {
        &self.data
    }

    pub fn work_ready(&self) -> &Notify {
        &self.work_ready
    }

    pub fn deadline_set(&self) -> &Notify {
        &self.deadline_set
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A transition never panics midway by construction; if one ever did, the state is
        // still the best there is, and refusing every later call would be worse.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Applies one event under the lock. Fails only if the journal cannot be written, in
    /// which case nothing was acknowledged.
    pub fn handle(&self, event: Event) -> Result<Reply, JournalError> {
        let mut guard = self.lock();
        let mut tx = Transition {
            inner: &mut guard,
            config: &self.config,
            data: &self.data,
            now: Instant::now(),
            wall: SystemTime::now(),
            touched: Vec::new(),
            work_ready: false,
        };
        let reply = tx.handle(event);
        let (touched, work_ready) = (std::mem::take(&mut tx.touched), tx.work_ready);
        for job_id in touched {
            if let Some(watcher) = guard.state.watchers.get(&job_id) {
                watcher.send_modify(|v| *v += 1);
            }
        }
        drop(guard);
        if work_ready {
            self.work_ready.notify_waiters();
            self.deadline_set.notify_one();
        }
        reply
    }

    /// When the timer should next send [`Event::DeadlineCheck`].
    pub fn next_wakeup(&self) -> Option<Instant> {
        let inner = self.lock();
        let active = inner.state.jobs.iter().filter(|j| !j.state.is_terminal());
        let mut next = active
            .clone()
            .flat_map(|j| j.all_tasks())
            .flat_map(|t| t.running())
            .map(|a| a.deadline)
            .chain(inner.cleanups.iter().map(|(at, _)| *at))
            .min();
        if active.count() > 0 {
            // Watching for the loss of every worker needs a coarse tick while jobs run.
            let tick = Instant::now() + self.config.no_worker_grace.min(Duration::from_secs(1));
            next = Some(next.map_or(tick, |n| n.min(tick)));
        }
        next
    }

    /// `f` of one job, under the lock: reading a large job costs no copy of it.
    pub fn with_job<R>(&self, job_id: &str, f: impl FnOnce(&Job) -> R) -> Option<R> {
        let inner = self.lock();
        let &i = inner.state.by_id.get(job_id)?;
        Some(f(&inner.state.jobs[i]))
    }

    /// `f` of every job, newest first, under the lock.
    pub fn map_jobs<R>(&self, f: impl FnMut(&Job) -> R) -> Vec<R> {
        self.lock().state.jobs.iter().rev().map(f).collect()
    }

    /// A receiver that changes whenever the job does.
    pub fn watch(&self, job_id: &str) -> Option<watch::Receiver<u64>> {
        self.lock()
            .state
            .watchers
            .get(job_id)
            .map(|tx| tx.subscribe())
    }

    pub fn contains(&self, job_id: &str) -> bool {
        self.lock().state.by_id.contains_key(job_id)
    }
}

/// The files a completed task stands for.
fn files_of(data: &DataDir, job: &Job, task: &Task) -> Vec<std::path::PathBuf> {
    match task.kind {
        TaskKind::Map => (0..job.spec.n_reduce)
            .filter(|&y| task.wrote_partition(y))
            .map(|y| data.intermediate(&job.id, task.index, y))
            .collect(),
        TaskKind::Reduce => vec![data.output(&job.id, task.index)],
    }
}

/// One event being applied: the locked state plus what the event did.
struct Transition<'a> {
    inner: &'a mut Inner,
    config: &'a CoordinatorConfig,
    data: &'a DataDir,
    now: Instant,
    wall: SystemTime,
    /// Jobs whose watchers to wake.
    touched: Vec<JobId>,
    /// Whether a task may have become assignable.
    work_ready: bool,
}

impl Transition<'_> {
    /// Journals a record, then applies it.
    fn record(&mut self, record: Record) -> Result<(), JournalError> {
        self.inner.journal.append(&record)?;
        if let Some(job_id) = self
            .inner
            .state
            .apply(record, self.now, self.config.task_timeout)
            && !self.touched.contains(&job_id)
        {
            self.touched.push(job_id);
        }
        Ok(())
    }

    fn handle(&mut self, event: Event) -> Result<Reply, JournalError> {
        match event {
            Event::Submit { job_id, spec } => {
                tracing::info!(
                    job_id = %job_id, app = %spec.app.name, inputs = spec.input_files.len(),
                    n_reduce = spec.n_reduce, "job submitted"
                );
                self.record(Record::JobSubmitted {
                    job_id,
                    app: spec.app.name,
                    app_sha256: spec.app.sha256,
                    inputs: spec.inputs,
                    input_files: spec.input_files,
                    n_reduce: spec.n_reduce,
                    split_bytes: spec.split_bytes,
                    at_ms: millis(self.wall),
                })?;
                self.work_ready = true;
                Ok(Reply::Submitted)
            }
            Event::Request { worker } => {
                self.worker_seen();
                Ok(Reply::Task(self.assign(&worker)?))
            }
            Event::Report {
                worker,
                attempt_id,
                result,
                want_next,
            } => {
                self.worker_seen();
                let accepted = self.report(&worker, attempt_id, result)?;
                let next = if want_next {
                    self.assign(&worker)?
                } else {
                    None
                };
                Ok(Reply::Report { accepted, next })
            }
            Event::Heartbeat { attempt_id } => {
                self.worker_seen();
                let deadline = self.now + self.config.task_timeout;
                let attempt = self.inner.state.running_attempt_mut(attempt_id);
                let keep_going = attempt.map(|a| a.deadline = deadline).is_some();
                Ok(Reply::Heartbeat { keep_going })
            }
            Event::Cancel { job_id } => {
                let Some(&i) = self.inner.state.by_id.get(&job_id) else {
                    return Ok(Reply::Cancel(CancelOutcome::UnknownJob));
                };
                let state = self.inner.state.jobs[i].state;
                if state.is_terminal() {
                    return Ok(Reply::Cancel(CancelOutcome::AlreadyEnded(state)));
                }
                tracing::info!(job_id = %job_id, "job cancelled");
                self.end_job(
                    &job_id,
                    StoredJobEnd::Cancelled,
                    "cancelled by a user".into(),
                )?;
                Ok(Reply::Cancel(CancelOutcome::Cancelled))
            }
            Event::DeadlineCheck => {
                self.expire_attempts()?;
                self.watch_for_workers()?;
                let now = self.now;
                let (due, later) = std::mem::take(&mut self.inner.cleanups)
                    .into_iter()
                    .partition(|(at, _)| *at <= now);
                self.inner.cleanups = later;
                let cleanups = due.into_iter().map(|(_, c)| c).collect();
                Ok(Reply::DeadlineChecked { cleanups })
            }
        }
    }

    fn worker_seen(&mut self) {
        self.inner.last_worker_seen = self.now;
        if !std::mem::take(&mut self.inner.warned) {
            return;
        }
        for job in self.inner.state.jobs.iter_mut() {
            if !job.warning.is_empty() && !job.state.is_terminal() {
                job.warning.clear();
                tracing::info!(job_id = %job.id, "a worker is back");
                self.touched.push(job.id.clone());
            }
        }
    }

    fn end_job(
        &mut self,
        job_id: &str,
        end: StoredJobEnd,
        error: String,
    ) -> Result<(), JournalError> {
        self.record(Record::JobEnded {
            job_id: job_id.to_string(),
            end,
            error,
            at_ms: millis(self.wall),
        })?;
        let cleanup = Cleanup {
            job_id: job_id.to_string(),
            keep_outputs: end == StoredJobEnd::Succeeded,
        };
        let at = self.now + self.config.intermediate_retention;
        self.inner.cleanups.push((at, cleanup));
        self.work_ready = true;
        Ok(())
    }

    fn assign(&mut self, worker: &str) -> Result<Option<Assignment>, JournalError> {
        let Some((job_index, kind, index, backup)) = self.choose(worker) else {
            return Ok(None);
        };
        let attempt_id = self.inner.state.next_attempt;
        let job = &self.inner.state.jobs[job_index];
        let job_id = job.id.clone();
        let task = &job.tasks(kind)[index];
        let map_tasks = match kind {
            TaskKind::Map => Vec::new(),
            TaskKind::Reduce => job
                .maps
                .iter()
                .filter(|m| m.wrote_partition(index as u32))
                .map(|m| m.index)
                .collect(),
        };
        tracing::info!(
            job_id = %job_id, task = %task.label(), attempt = attempt_id, worker, backup,
            input = %task.split.as_ref().map(Split::to_string).unwrap_or_default(),
            "task assigned"
        );
        let assignment = Assignment {
            job_id: job_id.clone(),
            attempt_id,
            app: job.spec.app.clone(),
            n_reduce: job.spec.n_reduce,
            n_map: job.maps.len() as u32,
            kind,
            index: index as u32,
            split: task.split.clone(),
            map_tasks,
        };
        self.record(Record::TaskAssigned {
            job_id,
            kind: kind.into(),
            index: index as u32,
            attempt_id,
            worker: worker.to_string(),
            backup,
            at_ms: millis(self.wall),
        })?;
        Ok(Some(assignment))
    }

    /// The next task for `worker`: the first Idle task of the oldest job (maps before
    /// reduces), or else a backup copy of a straggler near the end of a phase.
    fn choose(&self, worker: &str) -> Option<(usize, TaskKind, usize, bool)> {
        let active = || {
            self.inner
                .state
                .jobs
                .iter()
                .enumerate()
                .filter(|(_, j)| !j.state.is_terminal())
        };
        for (job_index, job) in active() {
            let kind = job.current_phase();
            if let Some(i) = job
                .tasks(kind)
                .iter()
                .position(|t| t.state == TaskState::Idle)
            {
                return Some((job_index, kind, i, false));
            }
        }
        for (job_index, job) in active() {
            let kind = job.current_phase();
            if let Some(i) = self.straggler(job.tasks(kind), worker) {
                return Some((job_index, kind, i, true));
            }
        }
        None
    }

    /// The longest-running task of a phase with nothing left to hand out, if it runs on
    /// one other worker for more than twice the phase's median task time (at least
    /// `backup_min_runtime`): the paper's backup tasks.
    fn straggler(&self, tasks: &[Task], worker: &str) -> Option<usize> {
        let mut durations: Vec<Duration> = tasks
            .iter()
            .flat_map(|t| &t.attempts)
            .filter(|a| a.outcome == AttemptOutcome::Succeeded)
            .filter_map(|a| a.finished_at?.duration_since(a.started_at).ok())
            .collect();
        durations.sort();
        let typical = durations
            .get(durations.len() / 2)
            .map(|d| *d * 2)
            .unwrap_or(self.config.task_timeout / 2);
        let threshold = typical.max(self.config.backup_min_runtime);
        tasks
            .iter()
            .enumerate()
            .filter(|(_, t)| t.state == TaskState::InProgress)
            .filter_map(|(i, t)| {
                let mut running = t.running();
                let only = running.next()?;
                let alone = running.next().is_none();
                let age = self.now.saturating_duration_since(only.started);
                (alone && only.worker != worker && age >= threshold).then_some((i, age))
            })
            .max_by_key(|&(_, age)| age)
            .map(|(i, _)| i)
    }

    /// Applies a report; returns whether it was accepted.
    fn report(
        &mut self,
        worker: &str,
        attempt_id: AttemptId,
        result: TaskResult,
    ) -> Result<bool, JournalError> {
        let Some(at) = self.inner.state.attempts.get(&attempt_id).cloned() else {
            tracing::warn!(
                attempt = attempt_id,
                worker,
                "report for an unknown attempt ignored"
            );
            return Ok(false);
        };
        let job = &self.inner.state.jobs[at.job];
        let job_id = job.id.clone();
        let label = task_label(at.kind, at.index);
        let _span = tracing::info_span!("report", job_id = %job_id, task = %label, attempt = attempt_id, worker).entered();
        let current = !job.state.is_terminal()
            && job.tasks(at.kind)[at.index as usize]
                .attempt(attempt_id)
                .is_some_and(|a| a.outcome == AttemptOutcome::Running);
        if !current {
            tracing::info!("late report of a superseded attempt ignored");
            return Ok(false);
        }
        match result {
            TaskResult::Succeeded { partitions } => {
                let n_reduce = self.inner.state.jobs[at.job].spec.n_reduce;
                match self.commit_files(
                    &job_id,
                    n_reduce,
                    at.kind,
                    at.index,
                    attempt_id,
                    &partitions,
                ) {
                    Ok(()) => {
                        let all = partitions.len() == n_reduce as usize;
                        self.record(Record::TaskCommitted {
                            job_id: job_id.clone(),
                            kind: at.kind.into(),
                            index: at.index,
                            attempt_id,
                            partitions: (at.kind == TaskKind::Map && !all).then_some(partitions),
                            at_ms: millis(self.wall),
                        })?;
                        tracing::info!("task finished");
                        let job = &self.inner.state.jobs[at.job];
                        if at.kind == TaskKind::Map && job.maps_done() {
                            tracing::info!("map phase done");
                            self.work_ready = true;
                        }
                        if job.reduces_done() {
                            tracing::info!(outputs = job.spec.n_reduce, "job succeeded");
                            self.end_job(&job_id, StoredJobEnd::Succeeded, String::new())?;
                        }
                    }
                    Err(error) => {
                        tracing::error!(%error, "committing the attempt's files failed");
                        self.fail(
                            &job_id,
                            at.kind,
                            at.index,
                            attempt_id,
                            FailureKind::Io,
                            error,
                            &[],
                        )?;
                    }
                }
            }
            TaskResult::Failed {
                kind,
                error,
                bad_map_tasks,
            } => self.fail(
                &job_id,
                at.kind,
                at.index,
                attempt_id,
                kind,
                error,
                &bad_map_tasks,
            )?,
        }
        Ok(true)
    }

    #[allow(clippy::too_many_arguments)]
    fn fail(
        &mut self,
        job_id: &str,
        task_kind: TaskKind,
        index: u32,
        attempt_id: AttemptId,
        kind: FailureKind,
        error: String,
        bad_map_tasks: &[u32],
    ) -> Result<(), JournalError> {
        tracing::warn!(kind = ?kind, error = %error, "task attempt failed");
        let ending = if kind == FailureKind::Abandoned {
            StoredEnding::Abandoned
        } else {
            StoredEnding::Failed
        };
        self.record(Record::AttemptEnded {
            job_id: job_id.to_string(),
            kind: task_kind.into(),
            index,
            attempt_id,
            ending,
            error: error.clone(),
            counts: kind.counts_against_task(),
            at_ms: millis(self.wall),
        })?;
        self.work_ready = true;
        let Some(job) = self.inner.state.job_mut(job_id) else {
            return Ok(());
        };
        let task = &job.tasks(task_kind)[index as usize];
        // Lost intermediates are not counted against a reduce, but one that keeps finding
        // them must not send maps round forever: it gets as many such reports as failures.
        // (A failed attempt that did not count is exactly such a report.)
        let failed = task
            .attempts
            .iter()
            .filter(|a| a.outcome == AttemptOutcome::Failed);
        let lost_reports = (failed.count() as u32).saturating_sub(task.failures);
        let times = match kind {
            FailureKind::BadIntermediate => lost_reports,
            _ => task.failures,
        };
        if times >= self.config.max_task_failures {
            let input = task
                .split
                .as_ref()
                .map(|s| format!(" on input {s}"))
                .unwrap_or_default();
            let message = format!(
                "{} of app '{}'{input} failed {} times; last error: {error}",
                task.label(),
                job.spec.app.name,
                times,
            );
            tracing::error!(error = %message, "job failed");
            return self.end_job(job_id, StoredJobEnd::Failed, message);
        }
        let lost: Vec<u32> = bad_map_tasks
            .iter()
            .copied()
            .filter(|&m| {
                job.maps
                    .get(m as usize)
                    .is_some_and(|t| t.state == TaskState::Completed)
            })
            .collect();
        if !lost.is_empty() {
            tracing::warn!(maps = ?lost, "intermediates missing or corrupt; their map tasks run again");
            self.record(Record::TasksReset {
                job_id: job_id.to_string(),
                kind: TaskKind::Map.into(),
                indices: lost,
            })?;
        }
        Ok(())
    }

    /// Renames the attempt's files into place (a map's: those of `partitions`). Under the
    /// lock, so that accepting an attempt and making its files visible are one step.
    fn commit_files(
        &self,
        job_id: &str,
        n_reduce: u32,
        kind: TaskKind,
        index: u32,
        attempt_id: AttemptId,
        partitions: &[u32],
    ) -> Result<(), String> {
        let names: Vec<String> = match kind {
            TaskKind::Map => {
                if !partitions.windows(2).all(|w| w[0] < w[1])
                    || partitions.last().is_some_and(|&y| y >= n_reduce)
                {
                    return Err(format!(
                        "the worker reported partitions {partitions:?}, which are not ascending \
                         partitions of 0..{n_reduce}"
                    ));
                }
                partitions
                    .iter()
                    .map(|&y| intermediate_name(index, y))
                    .collect()
            }
            TaskKind::Reduce => vec![output_name(index)],
        };
        let dir = self.data.job_dir(job_id);
        for name in names {
            let final_path = dir.join(&name);
            let tmp = DataDir::attempt_tmp(&final_path, attempt_id);
            std::fs::rename(&tmp, &final_path)
                .map_err(|e| format!("committing {}: {e}", tmp.display()))?;
        }
        Ok(())
    }

    /// Times out every attempt past its deadline; its task goes back to Idle.
    fn expire_attempts(&mut self) -> Result<(), JournalError> {
        let now = self.now;
        let expired: Vec<(JobId, TaskKind, u32, AttemptId, String)> = self
            .inner
            .state
            .jobs
            .iter()
            .filter(|j| !j.state.is_terminal())
            .flat_map(|j| j.all_tasks().map(move |t| (j, t)))
            .flat_map(|(j, t)| {
                t.running()
                    .filter(move |a| a.deadline <= now)
                    .map(move |a| (j.id.clone(), t.kind, t.index, a.id, a.worker.clone()))
            })
            .collect();
        for (job_id, kind, index, attempt_id, worker) in expired {
            tracing::warn!(
                job_id = %job_id, task = %task_label(kind, index), attempt = attempt_id,
                worker = %worker, "attempt timed out; task will be reassigned"
            );
            self.record(Record::AttemptEnded {
                job_id,
                kind: kind.into(),
                index,
                attempt_id,
                ending: StoredEnding::TimedOut,
                error: format!(
                    "no report or heartbeat from worker {worker} within {:?}",
                    self.config.task_timeout
                ),
                counts: false,
                at_ms: millis(self.wall),
            })?;
            self.work_ready = true;
        }
        Ok(())
    }

    /// Says so on every running job when no worker has called in for the grace period, and
    /// fails them after `fail_without_workers_after` if that is set.
    fn watch_for_workers(&mut self) -> Result<(), JournalError> {
        let silent = self
            .now
            .saturating_duration_since(self.inner.last_worker_seen);
        if silent < self.config.no_worker_grace {
            return Ok(());
        }
        let mut to_fail = Vec::new();
        for job in self
            .inner
            .state
            .jobs
            .iter_mut()
            .filter(|j| !j.state.is_terminal())
        {
            let waited = silent.min(
                self.wall
                    .duration_since(job.submitted_at)
                    .unwrap_or_default(),
            );
            if waited < self.config.no_worker_grace {
                continue;
            }
            if job.warning.is_empty() {
                job.warning = format!(
                    "no worker has called in for {}s: the job waits for workers",
                    waited.as_secs()
                );
                tracing::warn!(job_id = %job.id, warning = %job.warning, "job is stuck");
                self.inner.warned = true;
                self.touched.push(job.id.clone());
            }
            if let Some(limit) = self.config.fail_without_workers_after
                && waited >= limit
            {
                to_fail.push((job.id.clone(), limit));
            }
        }
        for (job_id, limit) in to_fail {
            let message = format!("no worker called in for {limit:?}; giving up");
            tracing::error!(job_id = %job_id, error = %message, "job failed");
            self.end_job(&job_id, StoredJobEnd::Failed, message)?;
        }
        Ok(())
    }
}

/// Removes what an ended job no longer needs: intermediates and temp files, and for a job
/// that did not succeed, its partial outputs too. Also run at start-up, where it sweeps up
/// after attempts that crashed.
pub fn clean_job_dir(data: &DataDir, cleanup: &Cleanup) {
    let dir = data.job_dir(&cleanup.job_id);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let keep = cleanup.keep_outputs && name.starts_with("mr-out-");
        if !keep && std::fs::remove_file(entry.path()).is_ok() {
            removed += 1;
        }
    }
    if !cleanup.keep_outputs {
        let _ = std::fs::remove_dir(&dir);
    }
    if removed > 0 {
        tracing::info!(job_id = %cleanup.job_id, removed, "job folder cleaned");
    }
}
