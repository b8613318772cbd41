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
//!
//! The seams: [`dispatch`] (which task a worker gets), [`commit`] (reports, commits and
//! failures), [`timers`] (deadlines, the no-worker watch, cleanups, retention, compaction),
//! [`recovery`] (start-up from the journal). Every event costs O(log n) in the tasks.

pub(crate) mod commit;
mod dispatch;
mod recovery;
mod timers;

#[cfg(test)]
mod tests;

use crate::config::CoordinatorConfig;
pub use crate::journal::StoredSkipped;
use crate::journal::{Journal, JournalError, Record};
use crate::state::State;
pub use crate::state::{
    AttemptId, AttemptOutcome, Job, JobId, JobSpec, JobState, PhaseCounts, Split, Task, TaskKind,
    TaskState,
};
use mr_common::DataDir;
use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};
use std::time::SystemTime;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

pub use timers::clean_job_dir;

/// The names of the built-in counters.
pub(crate) const BUILTIN_COUNTERS: [&str; 5] = commit::counter::ALL;

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
    /// Records the attempt may skip: what the job's budget has left (0: skip none).
    pub skip_budget: u64,
}

/// What a successful attempt counted (see [`Record::TaskCommitted`]'s counters).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AttemptCounts {
    pub records_in: u64,
    pub records_out: u64,
    /// Reduce tasks: bytes of the output file.
    pub output_bytes: u64,
    /// The app's own counters (names with the built-ins' `mr.` prefix are dropped).
    pub user: std::collections::BTreeMap<String, u64>,
}

/// What a worker reports about an attempt.
#[derive(Clone, Debug)]
pub enum TaskResult {
    /// Map tasks list the partitions they wrote files for, ascending (reduces: empty);
    /// `skipped`: the records the attempt skipped.
    Succeeded {
        partitions: Vec<u32>,
        skipped: Vec<StoredSkipped>,
        /// What the attempt counted: records in and out, output bytes, the app's counters.
        counts: AttemptCounts,
    },
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
    /// A worker asks for up to `max_tasks` tasks (small maps are batched; at least one).
    Request { worker: String, max_tasks: u32 },
    /// A worker reports attempts' outcomes, applied in order, and may ask for up to
    /// `max_next` next tasks at once (0: none).
    Report {
        worker: String,
        reports: Vec<(AttemptId, TaskResult)>,
        max_next: u32,
    },
    /// A worker says attempts it holds (the one running, and queued ones) are still alive.
    Heartbeat { attempt_ids: Vec<AttemptId> },
    /// A user cancels a job.
    Cancel { job_id: JobId },
    /// A deadline may have passed: attempts to time out, jobs without workers, cleanups
    /// and retention due.
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

/// A job folder due for cleaning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cleanup {
    pub job_id: JobId,
    pub scope: CleanupScope,
}

/// How much of a job's folder goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CleanupScope {
    /// A succeeded job: everything but its outputs.
    KeepOutputs,
    /// A failed or cancelled job: everything.
    Everything,
    /// A job past its retention: the folder itself, outputs included.
    Forgotten,
}

/// The answer to one [`Event`], variant for variant.
#[derive(Debug)]
pub enum Reply {
    Submitted,
    /// The tasks handed out, to run in order (empty: none ready).
    Task(Vec<Assignment>),
    Report {
        /// One per report, in order.
        accepted: Vec<bool>,
        next: Vec<Assignment>,
    },
    Heartbeat {
        /// One per attempt, in order: whether it is still wanted.
        wanted: Vec<bool>,
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
    /// Job folders to clean, by when (the counter keeps equal instants apart).
    cleanups: BTreeMap<(Instant, u64), Cleanup>,
    cleanup_seq: u64,
    /// When ended jobs are next checked against their retention.
    retention_check: Instant,
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
    /// which case nothing was acknowledged. Blocking (journal writes, renames): async
    /// callers run it off the runtime's threads.
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
        let mut reply = tx.handle(event);
        if reply.is_ok()
            && let Err(e) = tx.inner.journal.sync()
        {
            reply = Err(e);
        }
        let (touched, work_ready) = (std::mem::take(&mut tx.touched), tx.work_ready);
        for job_id in touched {
            guard.state.notify(&job_id);
        }
        timers::compact_if_due(&mut guard, &self.config);
        drop(guard);
        if work_ready {
            self.work_ready.notify_waiters();
            self.deadline_set.notify_one();
        }
        reply
    }

    /// `f` of one job, under the lock: reading a large job costs no copy of it.
    pub fn with_job<R>(&self, job_id: &str, f: impl FnOnce(&Job) -> R) -> Option<R> {
        self.lock().state.job(job_id).map(f)
    }

    /// `f` of every job, newest first, under the lock.
    pub fn map_jobs<R>(&self, f: impl FnMut(&Job) -> R) -> Vec<R> {
        self.lock().state.jobs().rev().map(f).collect()
    }

    /// A receiver that changes whenever the job does.
    pub fn watch(&self, job_id: &str) -> Option<watch::Receiver<u64>> {
        self.lock().state.subscribe(job_id)
    }

    pub fn contains(&self, job_id: &str) -> bool {
        self.lock().state.contains(job_id)
    }

    /// Bytes of the journal's tail and of its last snapshot.
    pub fn journal_sizes(&self) -> (u64, u64) {
        let inner = self.lock();
        (inner.journal.tail_len(), inner.journal.snapshot_len())
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
        crate::http::metrics::observe(&self.inner.state, &record);
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
                    at_ms: crate::state::millis(self.wall),
                    max_skipped_records: spec.max_skipped_records,
                })?;
                self.work_ready = true;
                Ok(Reply::Submitted)
            }
            Event::Request { worker, max_tasks } => {
                self.worker_seen();
                Ok(Reply::Task(self.assign_batch(&worker, max_tasks.max(1))?))
            }
            Event::Report {
                worker,
                reports,
                max_next,
            } => {
                self.worker_seen();
                let mut accepted = Vec::with_capacity(reports.len());
                let mut commits = Vec::new();
                for (attempt_id, result) in reports {
                    let (ok, commit) = self.report(&worker, attempt_id, result)?;
                    accepted.push(ok);
                    commits.extend(commit);
                }
                // Group commit: the batch's commit records reach the disk together, then
                // their files are renamed into place.
                self.inner.journal.sync()?;
                for commit in commits {
                    self.finish_commit(commit)?;
                }
                let next = self.assign_batch(&worker, max_next)?;
                Ok(Reply::Report { accepted, next })
            }
            Event::Heartbeat { attempt_ids } => {
                self.worker_seen();
                let deadline = self.now + self.config.task_timeout;
                let state = &mut self.inner.state;
                let wanted = attempt_ids
                    .into_iter()
                    .map(|id| state.heartbeat(id, deadline))
                    .collect();
                Ok(Reply::Heartbeat { wanted })
            }
            Event::Cancel { job_id } => {
                let Some(state) = self.inner.state.job(&job_id).map(|j| j.state) else {
                    return Ok(Reply::Cancel(CancelOutcome::UnknownJob));
                };
                if state.is_terminal() {
                    return Ok(Reply::Cancel(CancelOutcome::AlreadyEnded(state)));
                }
                tracing::info!(job_id = %job_id, "job cancelled");
                self.end_job(
                    &job_id,
                    crate::journal::StoredJobEnd::Cancelled,
                    "cancelled by a user".into(),
                )?;
                Ok(Reply::Cancel(CancelOutcome::Cancelled))
            }
            Event::DeadlineCheck => {
                self.expire_attempts()?;
                self.watch_for_workers()?;
                self.forget_expired_jobs()?;
                Ok(Reply::DeadlineChecked {
                    cleanups: self.due_cleanups(),
                })
            }
        }
    }

    fn worker_seen(&mut self) {
        self.inner.last_worker_seen = self.now;
        if !std::mem::take(&mut self.inner.warned) {
            return;
        }
        let warned: Vec<JobId> = self
            .inner
            .state
            .active_jobs()
            .filter(|j| !j.warning.is_empty())
            .map(|j| j.id.clone())
            .collect();
        for job_id in warned {
            self.inner.state.set_warning(&job_id, String::new());
            tracing::info!(job_id = %job_id, "a worker is back");
            self.touched.push(job_id);
        }
    }

    /// Queues a job folder for cleaning at `at`.
    fn schedule_cleanup(&mut self, at: Instant, cleanup: Cleanup) {
        self.inner.cleanup_seq += 1;
        self.inner
            .cleanups
            .insert((at, self.inner.cleanup_seq), cleanup);
    }
}

/// What of an ended job's folder its cleanup removes.
fn cleanup_scope(end: crate::journal::StoredJobEnd) -> CleanupScope {
    match end {
        crate::journal::StoredJobEnd::Succeeded => CleanupScope::KeepOutputs,
        _ => CleanupScope::Everything,
    }
}
