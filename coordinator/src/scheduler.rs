//! Job and task state, and every transition of it, behind one lock.
//!
//! This is the lab's coordinator made into a service: each job has map tasks (one per input
//! split) and `n_reduce` reduce tasks, each Idle, InProgress or Completed. Workers' calls
//! and the deadline timer come in as [`Event`]s; [`Scheduler::handle`] applies one event
//! under the lock and returns its [`Reply`], so every change of state is in one `match`.
//!
//! Fencing: every assignment is an attempt with a unique id. A worker writes its files under
//! attempt-unique temp names; only when the coordinator accepts the report of the task's
//! *current* attempt does it rename them into place, under the lock. A late report from an
//! attempt that timed out or was superseded is answered "not accepted" and its files are
//! never renamed, so a slow worker waking up cannot change or double-count any output.

use crate::apps::AppRef;
use crate::config::CoordinatorConfig;
use mr_common::DataDir;
use mr_common::data_dir::{intermediate_name, output_name, output_relative};
use std::collections::HashMap;
use std::fmt;
use std::sync::{Mutex, MutexGuard};
use std::time::SystemTime;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

pub type JobId = String;
pub type AttemptId = u64;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobState {
    Pending,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl JobState {
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Cancelled)
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::Running => "RUNNING",
            Self::Succeeded => "SUCCEEDED",
            Self::Failed => "FAILED",
            Self::Cancelled => "CANCELLED",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TaskKind {
    Map,
    Reduce,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TaskState {
    Idle,
    InProgress,
    Completed,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttemptOutcome {
    Running,
    Succeeded,
    Failed,
    TimedOut,
    Abandoned,
    Superseded,
}

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
    /// worker, a shutdown or a bad input from another task are not.
    fn counts_against_task(self) -> bool {
        matches!(
            self,
            Self::App | Self::TimeLimit | Self::MemoryLimit | Self::Io
        )
    }
}

/// A byte range of an input file; the split owns the lines that start inside it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Split {
    pub path: String,
    pub offset: u64,
    pub length: u64,
}

impl fmt::Display for Split {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}[{}..{}]",
            self.path,
            self.offset,
            self.offset + self.length
        )
    }
}

#[derive(Clone, Debug)]
pub struct Attempt {
    pub id: AttemptId,
    pub worker: String,
    pub started_at: SystemTime,
    pub finished_at: Option<SystemTime>,
    pub outcome: AttemptOutcome,
    pub error: String,
    pub backup: bool,
    /// Presumed dead past this instant unless a heartbeat moves it.
    deadline: Instant,
}

#[derive(Clone, Debug)]
pub struct Task {
    pub kind: TaskKind,
    pub index: u32,
    pub state: TaskState,
    /// Map tasks only.
    pub split: Option<Split>,
    pub attempts: Vec<Attempt>,
    /// Failures that count towards the job's failure limit.
    pub failures: u32,
}

impl Task {
    fn new(kind: TaskKind, index: u32, split: Option<Split>) -> Self {
        Self {
            kind,
            index,
            state: TaskState::Idle,
            split,
            attempts: Vec::new(),
            failures: 0,
        }
    }

    fn running(&self) -> impl Iterator<Item = &Attempt> {
        self.attempts
            .iter()
            .filter(|a| a.outcome == AttemptOutcome::Running)
    }

    fn attempt_mut(&mut self, id: AttemptId) -> Option<&mut Attempt> {
        self.attempts.iter_mut().find(|a| a.id == id)
    }

    /// How the task is named in logs and errors: `map-3`, `reduce-0`.
    pub fn label(&self) -> String {
        task_label(self.kind, self.index)
    }
}

pub fn task_label(kind: TaskKind, index: u32) -> String {
    match kind {
        TaskKind::Map => format!("map-{index}"),
        TaskKind::Reduce => format!("reduce-{index}"),
    }
}

/// What a job was asked to do, after validation.
#[derive(Clone, Debug)]
pub struct JobSpec {
    pub app: AppRef,
    pub inputs: Vec<String>,
    /// Expanded input files with their sizes.
    pub input_files: Vec<(String, u64)>,
    pub n_reduce: u32,
    pub split_bytes: u64,
}

#[derive(Clone, Debug)]
pub struct Job {
    pub id: JobId,
    pub spec: JobSpec,
    pub state: JobState,
    pub error: String,
    pub warning: String,
    pub maps: Vec<Task>,
    pub reduces: Vec<Task>,
    pub outputs: Vec<String>,
    pub submitted_at: SystemTime,
    pub finished_at: Option<SystemTime>,
}

impl Job {
    fn new(id: JobId, spec: JobSpec, now: SystemTime) -> Self {
        let maps = splits(&spec.input_files, spec.split_bytes)
            .into_iter()
            .enumerate()
            .map(|(i, split)| Task::new(TaskKind::Map, i as u32, Some(split)))
            .collect();
        let reduces = (0..spec.n_reduce)
            .map(|i| Task::new(TaskKind::Reduce, i, None))
            .collect();
        Self {
            id,
            spec,
            state: JobState::Pending,
            error: String::new(),
            warning: String::new(),
            maps,
            reduces,
            outputs: Vec::new(),
            submitted_at: now,
            finished_at: None,
        }
    }

    fn tasks_mut(&mut self, kind: TaskKind) -> &mut Vec<Task> {
        match kind {
            TaskKind::Map => &mut self.maps,
            TaskKind::Reduce => &mut self.reduces,
        }
    }

    fn maps_done(&self) -> bool {
        self.maps.iter().all(|t| t.state == TaskState::Completed)
    }

    fn finish(&mut self, state: JobState, error: String, now: SystemTime) {
        self.state = state;
        self.error = error;
        self.finished_at = Some(now);
        // Whatever still runs is no longer wanted; heartbeats will tell its worker so.
        for task in self.maps.iter_mut().chain(self.reduces.iter_mut()) {
            for attempt in task
                .attempts
                .iter_mut()
                .filter(|a| a.outcome == AttemptOutcome::Running)
            {
                attempt.outcome = AttemptOutcome::Abandoned;
                attempt.finished_at = Some(now);
            }
        }
    }
}

/// Cuts each input file into splits of at most `split_bytes` (an empty file is one empty split).
fn splits(files: &[(String, u64)], split_bytes: u64) -> Vec<Split> {
    let step = split_bytes.max(1);
    let mut out = Vec::new();
    for (path, size) in files {
        let mut offset = 0;
        loop {
            let length = step.min(size - offset);
            out.push(Split {
                path: path.clone(),
                offset,
                length,
            });
            offset += length;
            if offset >= *size {
                break;
            }
        }
    }
    out
}

/// A task handed to a worker.
#[derive(Clone, Debug)]
pub struct Assignment {
    pub job_id: JobId,
    pub attempt_id: AttemptId,
    pub app: AppRef,
    pub n_reduce: u32,
    pub n_map: u32,
    pub kind: TaskKind,
    pub index: u32,
    pub split: Option<Split>,
}

/// What a worker reports about an attempt.
#[derive(Clone, Debug)]
pub enum TaskResult {
    Succeeded,
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
    /// A worker reports an attempt's outcome.
    Report {
        worker: String,
        attempt_id: AttemptId,
        result: TaskResult,
    },
    /// A worker says an attempt is still alive.
    Heartbeat { attempt_id: AttemptId },
    /// A user cancels a job.
    Cancel { job_id: JobId },
    /// The earliest attempt deadline may have passed.
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

/// The answer to one [`Event`], variant for variant.
#[derive(Debug)]
pub enum Reply {
    Submitted,
    Task(Option<Assignment>),
    Report { accepted: bool },
    Heartbeat { keep_going: bool },
    Cancel(CancelOutcome),
    DeadlineChecked,
}

#[derive(Clone, Debug)]
struct AttemptRef {
    job: usize,
    kind: TaskKind,
    index: u32,
}

#[derive(Default)]
struct State {
    /// In submission order, which is also dispatch order.
    jobs: Vec<Job>,
    by_id: HashMap<JobId, usize>,
    attempts: HashMap<AttemptId, AttemptRef>,
    next_attempt: AttemptId,
    watchers: HashMap<JobId, watch::Sender<u64>>,
}

/// Job and task state behind one lock, plus the signals that wake waiting callers.
pub struct Scheduler {
    config: CoordinatorConfig,
    data: DataDir,
    state: Mutex<State>,
    /// Woken when a task may have become assignable (long polls wait on it).
    work_ready: Notify,
    /// Woken when a new deadline was set, so the timer can re-arm.
    deadline_set: Notify,
}

impl Scheduler {
    pub fn new(config: CoordinatorConfig, data: DataDir) -> Self {
        Self {
            config,
            data,
            state: Mutex::new(State {
                next_attempt: 1,
                ..State::default()
            }),
            work_ready: Notify::new(),
            deadline_set: Notify::new(),
        }
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

    fn lock(&self) -> MutexGuard<'_, State> {
        // Transitions do not panic midway by construction; if one ever did, the state is
        // still the best there is, and refusing all further calls would be worse.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Applies one event under the lock.
    pub fn handle(&self, event: Event) -> Reply {
        let now = Instant::now();
        let wall = SystemTime::now();
        let mut state = self.lock();
        let (reply, touched) = match event {
            Event::Submit { job_id, spec } => {
                let job = Job::new(job_id.clone(), spec, wall);
                tracing::info!(
                    job_id = %job.id, app = %job.spec.app.name, maps = job.maps.len(),
                    reduces = job.reduces.len(), "job submitted"
                );
                let position = state.jobs.len();
                state.by_id.insert(job_id.clone(), position);
                state.jobs.push(job);
                state.watchers.insert(job_id.clone(), watch::channel(0).0);
                (Reply::Submitted, Some(job_id))
            }
            Event::Request { worker } => {
                let assignment = self.assign(&mut state, &worker, now, wall);
                let touched = assignment.as_ref().map(|a| a.job_id.clone());
                (Reply::Task(assignment), touched)
            }
            Event::Report {
                worker,
                attempt_id,
                result,
            } => {
                let (accepted, touched) =
                    self.report(&mut state, &worker, attempt_id, result, wall);
                (Reply::Report { accepted }, touched)
            }
            Event::Heartbeat { attempt_id } => {
                let timeout = self.config.task_timeout;
                let keep_going = state
                    .attempt_mut(attempt_id)
                    .map(|a| {
                        a.deadline = now + timeout;
                        true
                    })
                    .unwrap_or(false);
                (Reply::Heartbeat { keep_going }, None)
            }
            Event::Cancel { job_id } => match state.by_id.get(&job_id).copied() {
                Some(i) => {
                    let job = &mut state.jobs[i];
                    if job.state.is_terminal() {
                        (Reply::Cancel(CancelOutcome::AlreadyEnded(job.state)), None)
                    } else {
                        job.finish(JobState::Cancelled, "cancelled by a user".into(), wall);
                        tracing::info!(job_id = %job_id, "job cancelled");
                        (Reply::Cancel(CancelOutcome::Cancelled), Some(job_id))
                    }
                }
                None => (Reply::Cancel(CancelOutcome::UnknownJob), None),
            },
            Event::DeadlineCheck => {
                let touched = self.expire(&mut state, now, wall);
                (Reply::DeadlineChecked, touched)
            }
        };
        if let Some(job_id) = touched {
            if let Some(tx) = state.watchers.get(&job_id) {
                tx.send_modify(|v| *v += 1);
            }
        }
        reply
    }

    fn assign(
        &self,
        state: &mut State,
        worker: &str,
        now: Instant,
        wall: SystemTime,
    ) -> Option<Assignment> {
        let attempt_id = state.next_attempt;
        let (job_index, job) = state
            .jobs
            .iter_mut()
            .enumerate()
            .find(|(_, j)| !j.state.is_terminal() && next_idle(j).is_some())?;
        let (kind, index) = next_idle(job)?;
        let n_map = job.maps.len() as u32;
        let job_id = job.id.clone();
        let app = job.spec.app.clone();
        let n_reduce = job.spec.n_reduce;
        let task = &mut job.tasks_mut(kind)[index];
        task.state = TaskState::InProgress;
        task.attempts.push(Attempt {
            id: attempt_id,
            worker: worker.to_string(),
            started_at: wall,
            finished_at: None,
            outcome: AttemptOutcome::Running,
            error: String::new(),
            backup: false,
            deadline: now + self.config.task_timeout,
        });
        tracing::info!(
            job_id = %job_id, task = %task.label(), attempt = attempt_id, worker,
            input = %task.split.as_ref().map(|s| s.to_string()).unwrap_or_default(),
            "task assigned"
        );
        let assignment = Assignment {
            job_id,
            attempt_id,
            app,
            n_reduce,
            n_map,
            kind,
            index: index as u32,
            split: task.split.clone(),
        };
        if job.state == JobState::Pending {
            job.state = JobState::Running;
        }
        state.next_attempt += 1;
        state.attempts.insert(
            attempt_id,
            AttemptRef {
                job: job_index,
                kind,
                index: index as u32,
            },
        );
        self.deadline_set.notify_one();
        Some(assignment)
    }

    /// Applies a report; returns whether it was accepted and which job changed.
    fn report(
        &self,
        state: &mut State,
        worker: &str,
        attempt_id: AttemptId,
        result: TaskResult,
        wall: SystemTime,
    ) -> (bool, Option<JobId>) {
        let Some(at) = state.attempts.get(&attempt_id).cloned() else {
            tracing::warn!(
                attempt = attempt_id,
                worker,
                "report for an unknown attempt ignored"
            );
            return (false, None);
        };
        let job = &mut state.jobs[at.job];
        let job_id = job.id.clone();
        let label = task_label(at.kind, at.index);
        let span = tracing::info_span!("report", job_id = %job_id, task = %label, attempt = attempt_id, worker);
        let _guard = span.enter();
        let current = job.tasks_mut(at.kind)[at.index as usize]
            .attempt_mut(attempt_id)
            .is_some_and(|a| a.outcome == AttemptOutcome::Running);
        if !current || job.state.is_terminal() {
            tracing::info!("late report of a superseded attempt ignored");
            return (false, None);
        }
        match result {
            TaskResult::Succeeded => match self.commit(job, at.kind, at.index, attempt_id) {
                Ok(()) => {
                    let task = &mut job.tasks_mut(at.kind)[at.index as usize];
                    task.state = TaskState::Completed;
                    for attempt in &mut task.attempts {
                        if attempt.id == attempt_id {
                            attempt.outcome = AttemptOutcome::Succeeded;
                            attempt.finished_at = Some(wall);
                        } else if attempt.outcome == AttemptOutcome::Running {
                            attempt.outcome = AttemptOutcome::Superseded;
                            attempt.finished_at = Some(wall);
                        }
                    }
                    tracing::info!("task finished");
                    if at.kind == TaskKind::Map && job.maps_done() {
                        tracing::info!("map phase done");
                        self.work_ready.notify_waiters();
                    }
                    if job.reduces.iter().all(|t| t.state == TaskState::Completed) {
                        job.outputs = (0..job.spec.n_reduce)
                            .map(|y| output_relative(&job.id, y))
                            .collect();
                        job.finish(JobState::Succeeded, String::new(), wall);
                        tracing::info!(outputs = job.outputs.len(), "job succeeded");
                    }
                }
                Err(error) => {
                    self.fail_attempt(job, &at, attempt_id, FailureKind::Io, error, &[], wall)
                }
            },
            TaskResult::Failed {
                kind,
                error,
                bad_map_tasks,
            } => self.fail_attempt(job, &at, attempt_id, kind, error, &bad_map_tasks, wall),
        }
        (true, Some(job_id))
    }

    #[allow(clippy::too_many_arguments)]
    fn fail_attempt(
        &self,
        job: &mut Job,
        at: &AttemptRef,
        attempt_id: AttemptId,
        kind: FailureKind,
        error: String,
        bad_map_tasks: &[u32],
        wall: SystemTime,
    ) {
        let max_failures = self.config.max_task_failures;
        let app = job.spec.app.name.clone();
        let task = &mut job.tasks_mut(at.kind)[at.index as usize];
        if let Some(attempt) = task.attempt_mut(attempt_id) {
            attempt.outcome = if kind == FailureKind::Abandoned {
                AttemptOutcome::Abandoned
            } else {
                AttemptOutcome::Failed
            };
            attempt.error = error.clone();
            attempt.finished_at = Some(wall);
        }
        if task.running().next().is_none() {
            task.state = TaskState::Idle;
        }
        if kind.counts_against_task() {
            task.failures += 1;
        }
        tracing::warn!(kind = ?kind, failures = task.failures, error = %error, "task attempt failed");
        if task.failures >= max_failures {
            let input = task
                .split
                .as_ref()
                .map(|s| format!(" on input {s}"))
                .unwrap_or_default();
            let message = format!(
                "{} of app '{}'{} failed {} times; last error: {}",
                task.label(),
                app,
                input,
                task.failures,
                error
            );
            tracing::error!(job_id = %job.id, error = %message, "job failed");
            job.finish(JobState::Failed, message, wall);
            return;
        }
        for &map in bad_map_tasks {
            if let Some(task) = job.maps.get_mut(map as usize) {
                if task.state == TaskState::Completed {
                    tracing::warn!(bad = %task.label(), "intermediate missing or corrupt; map task will run again");
                    task.state = TaskState::Idle;
                }
            }
        }
        self.work_ready.notify_waiters();
    }

    /// Renames the attempt's files into place. Under the lock, so that accepting an attempt
    /// and making its files visible are one step.
    fn commit(
        &self,
        job: &Job,
        kind: TaskKind,
        index: u32,
        attempt_id: AttemptId,
    ) -> Result<(), String> {
        let names: Vec<String> = match kind {
            TaskKind::Map => (0..job.spec.n_reduce)
                .map(|y| intermediate_name(index, y))
                .collect(),
            TaskKind::Reduce => vec![output_name(index)],
        };
        let dir = self.data.job_dir(&job.id);
        for name in names {
            let final_path = dir.join(&name);
            let tmp = DataDir::attempt_tmp(&final_path, attempt_id);
            std::fs::rename(&tmp, &final_path)
                .map_err(|e| format!("committing {}: {e}", tmp.display()))?;
        }
        Ok(())
    }

    /// Times out every attempt past its deadline; its task goes back to Idle.
    fn expire(&self, state: &mut State, now: Instant, wall: SystemTime) -> Option<JobId> {
        let mut touched = None;
        for job in state.jobs.iter_mut().filter(|j| !j.state.is_terminal()) {
            for task in job.maps.iter_mut().chain(job.reduces.iter_mut()) {
                let mut expired = false;
                let label = task.label();
                for attempt in task
                    .attempts
                    .iter_mut()
                    .filter(|a| a.outcome == AttemptOutcome::Running && a.deadline <= now)
                {
                    attempt.outcome = AttemptOutcome::TimedOut;
                    attempt.finished_at = Some(wall);
                    attempt.error = format!(
                        "no report or heartbeat from worker {} within {:?}",
                        attempt.worker, self.config.task_timeout
                    );
                    tracing::warn!(
                        job_id = %job.id, task = %label, attempt = attempt.id,
                        worker = %attempt.worker, "attempt timed out; task will be reassigned"
                    );
                    expired = true;
                }
                if expired && task.running().next().is_none() {
                    task.state = TaskState::Idle;
                    touched = Some(job.id.clone());
                }
            }
        }
        if touched.is_some() {
            self.work_ready.notify_waiters();
        }
        touched
    }

    /// The earliest deadline of any running attempt.
    pub fn next_deadline(&self) -> Option<Instant> {
        let state = self.lock();
        state
            .jobs
            .iter()
            .filter(|j| !j.state.is_terminal())
            .flat_map(|j| j.maps.iter().chain(j.reduces.iter()))
            .flat_map(|t| t.running())
            .map(|a| a.deadline)
            .min()
    }

    /// A copy of one job.
    pub fn job(&self, job_id: &str) -> Option<Job> {
        let state = self.lock();
        state.by_id.get(job_id).map(|&i| state.jobs[i].clone())
    }

    /// Copies of every job, newest first, without task records.
    pub fn jobs(&self) -> Vec<Job> {
        let state = self.lock();
        state.jobs.iter().rev().map(Job::clone).collect()
    }

    /// A receiver that changes whenever the job does.
    pub fn watch(&self, job_id: &str) -> Option<watch::Receiver<u64>> {
        self.lock().watchers.get(job_id).map(|tx| tx.subscribe())
    }

    pub fn contains(&self, job_id: &str) -> bool {
        self.lock().by_id.contains_key(job_id)
    }
}

impl State {
    fn attempt_mut(&mut self, id: AttemptId) -> Option<&mut Attempt> {
        let at = self.attempts.get(&id)?.clone();
        let job = &mut self.jobs[at.job];
        if job.state.is_terminal() {
            return None;
        }
        job.tasks_mut(at.kind)[at.index as usize]
            .attempt_mut(id)
            .filter(|a| a.outcome == AttemptOutcome::Running)
    }
}

/// The job's next task to hand out: an idle map, or once every map is done, an idle reduce.
fn next_idle(job: &Job) -> Option<(TaskKind, usize)> {
    let idle = |tasks: &[Task]| tasks.iter().position(|t| t.state == TaskState::Idle);
    if job.maps_done() {
        idle(&job.reduces).map(|i| (TaskKind::Reduce, i))
    } else {
        idle(&job.maps).map(|i| (TaskKind::Map, i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_cut_into_splits_covering_every_byte() {
        let files = vec![
            ("a".to_string(), 10),
            ("b".to_string(), 0),
            ("c".to_string(), 4),
        ];
        let got = splits(&files, 4);
        let ranges: Vec<_> = got
            .iter()
            .map(|s| (s.path.as_str(), s.offset, s.length))
            .collect();
        assert_eq!(
            ranges,
            [
                ("a", 0, 4),
                ("a", 4, 4),
                ("a", 8, 2),
                ("b", 0, 0),
                ("c", 0, 4)
            ]
        );
    }
}
