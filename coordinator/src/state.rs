//! The coordinator's in-memory model of jobs, tasks and attempts, and the one function that
//! changes it: [`State::apply`], which applies a journal [`Record`]. The scheduler decides
//! *what* happens; this module only knows what each record *means*, so that replaying the
//! journal after a crash and living through the events give the same state.

use crate::apps::AppRef;
use crate::journal::{Record, StoredEnding, StoredJobEnd, StoredKind};
use mr_common::data_dir::output_relative;
use std::collections::HashMap;
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::watch;
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

impl From<StoredKind> for TaskKind {
    fn from(kind: StoredKind) -> Self {
        match kind {
            StoredKind::Map => Self::Map,
            StoredKind::Reduce => Self::Reduce,
        }
    }
}

impl From<TaskKind> for StoredKind {
    fn from(kind: TaskKind) -> Self {
        match kind {
            TaskKind::Map => Self::Map,
            TaskKind::Reduce => Self::Reduce,
        }
    }
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

/// A byte range of an input file; the split owns the lines that start inside it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Split {
    pub path: String,
    pub offset: u64,
    pub length: u64,
}

impl fmt::Display for Split {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let end = self.offset + self.length;
        write!(f, "{}[{}..{end}]", self.path, self.offset)
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
    /// A backup copy started near the end of a phase.
    pub backup: bool,
    /// When this coordinator process first knew it as running (for straggler detection).
    pub started: Instant,
    /// Presumed dead past this instant unless a heartbeat moves it.
    pub deadline: Instant,
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
    /// A completed map task's partitions that hold records, ascending (it wrote `mr-X-Y`
    /// for these only); `None` for every partition.
    pub partitions: Option<Vec<u32>>,
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
            partitions: None,
        }
    }

    /// Whether this (completed map) task wrote a file for `partition`.
    pub fn wrote_partition(&self, partition: u32) -> bool {
        self.partitions
            .as_ref()
            .is_none_or(|p| p.binary_search(&partition).is_ok())
    }

    pub fn running(&self) -> impl Iterator<Item = &Attempt> {
        self.attempts
            .iter()
            .filter(|a| a.outcome == AttemptOutcome::Running)
    }

    pub fn attempt(&self, id: AttemptId) -> Option<&Attempt> {
        self.attempts.iter().find(|a| a.id == id)
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
    /// Why the job is not progressing, while that lasts (e.g. no workers).
    pub warning: String,
    pub maps: Vec<Task>,
    pub reduces: Vec<Task>,
    pub outputs: Vec<String>,
    pub submitted_at: SystemTime,
    pub finished_at: Option<SystemTime>,
}

impl Job {
    fn new(id: JobId, spec: JobSpec, submitted_at: SystemTime) -> Self {
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
            submitted_at,
            finished_at: None,
        }
    }

    pub fn tasks(&self, kind: TaskKind) -> &[Task] {
        match kind {
            TaskKind::Map => &self.maps,
            TaskKind::Reduce => &self.reduces,
        }
    }

    pub fn tasks_mut(&mut self, kind: TaskKind) -> &mut Vec<Task> {
        match kind {
            TaskKind::Map => &mut self.maps,
            TaskKind::Reduce => &mut self.reduces,
        }
    }

    pub fn all_tasks(&self) -> impl Iterator<Item = &Task> {
        self.maps.iter().chain(self.reduces.iter())
    }

    pub fn maps_done(&self) -> bool {
        self.maps.iter().all(|t| t.state == TaskState::Completed)
    }

    pub fn reduces_done(&self) -> bool {
        self.reduces.iter().all(|t| t.state == TaskState::Completed)
    }

    /// The phase whose tasks are handed out now: maps until all are done, then reduces.
    pub fn current_phase(&self) -> TaskKind {
        if self.maps_done() {
            TaskKind::Reduce
        } else {
            TaskKind::Map
        }
    }
}

/// Cuts each input file into splits of at most `split_bytes` (an empty file is one empty split).
pub fn splits(files: &[(String, u64)], split_bytes: u64) -> Vec<Split> {
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

/// Where an attempt lives.
#[derive(Clone, Debug)]
pub struct AttemptRef {
    pub job: usize,
    pub kind: TaskKind,
    pub index: u32,
}

/// Every job the coordinator knows, in submission order (which is also dispatch order).
#[derive(Default)]
pub struct State {
    pub jobs: Vec<Job>,
    pub by_id: HashMap<JobId, usize>,
    pub attempts: HashMap<AttemptId, AttemptRef>,
    pub next_attempt: AttemptId,
    pub watchers: HashMap<JobId, watch::Sender<u64>>,
}

pub fn millis(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

pub fn from_millis(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64)
}

impl State {
    pub fn job_mut(&mut self, job_id: &str) -> Option<&mut Job> {
        let &i = self.by_id.get(job_id)?;
        self.jobs.get_mut(i)
    }

    /// The running attempt `id` of a job that has not ended, if there is one.
    pub fn running_attempt_mut(&mut self, id: AttemptId) -> Option<&mut Attempt> {
        let at = self.attempts.get(&id)?.clone();
        let job = self.jobs.get_mut(at.job)?;
        if job.state.is_terminal() {
            return None;
        }
        job.tasks_mut(at.kind)
            .get_mut(at.index as usize)?
            .attempt_mut(id)
            .filter(|a| a.outcome == AttemptOutcome::Running)
    }

    /// Applies one record; returns the job it changed. `now` and `timeout` give running
    /// attempts their first deadline.
    pub fn apply(&mut self, record: Record, now: Instant, timeout: Duration) -> Option<JobId> {
        match record {
            Record::JobSubmitted {
                job_id,
                app,
                app_sha256,
                inputs,
                input_files,
                n_reduce,
                split_bytes,
                at_ms,
            } => {
                let spec = JobSpec {
                    app: AppRef {
                        name: app,
                        sha256: app_sha256,
                    },
                    inputs,
                    input_files,
                    n_reduce,
                    split_bytes,
                };
                self.by_id.insert(job_id.clone(), self.jobs.len());
                self.jobs
                    .push(Job::new(job_id.clone(), spec, from_millis(at_ms)));
                self.watchers.insert(job_id.clone(), watch::channel(0).0);
                Some(job_id)
            }
            Record::TaskAssigned {
                job_id,
                kind,
                index,
                attempt_id,
                worker,
                backup,
                at_ms,
            } => {
                let job_index = *self.by_id.get(&job_id)?;
                let job = self.jobs.get_mut(job_index)?;
                if job.state == JobState::Pending {
                    job.state = JobState::Running;
                }
                let task = job.tasks_mut(kind.into()).get_mut(index as usize)?;
                task.state = TaskState::InProgress;
                task.attempts.push(Attempt {
                    id: attempt_id,
                    worker,
                    started_at: from_millis(at_ms),
                    finished_at: None,
                    outcome: AttemptOutcome::Running,
                    error: String::new(),
                    backup,
                    started: now,
                    deadline: now + timeout,
                });
                self.attempts.insert(
                    attempt_id,
                    AttemptRef {
                        job: job_index,
                        kind: kind.into(),
                        index,
                    },
                );
                self.next_attempt = self.next_attempt.max(attempt_id + 1);
                Some(job_id)
            }
            Record::TaskCommitted {
                job_id,
                kind,
                index,
                attempt_id,
                partitions,
                at_ms,
            } => {
                let job = self.job_mut(&job_id)?;
                let task = job.tasks_mut(kind.into()).get_mut(index as usize)?;
                task.state = TaskState::Completed;
                task.partitions = partitions;
                for attempt in &mut task.attempts {
                    if attempt.id == attempt_id {
                        attempt.outcome = AttemptOutcome::Succeeded;
                    } else if attempt.outcome == AttemptOutcome::Running {
                        attempt.outcome = AttemptOutcome::Superseded;
                    } else {
                        continue;
                    }
                    attempt.finished_at = Some(from_millis(at_ms));
                }
                Some(job_id)
            }
            Record::AttemptEnded {
                job_id,
                kind,
                index,
                attempt_id,
                ending,
                error,
                counts,
                at_ms,
            } => {
                let job = self.job_mut(&job_id)?;
                let task = job.tasks_mut(kind.into()).get_mut(index as usize)?;
                if let Some(attempt) = task.attempt_mut(attempt_id) {
                    attempt.outcome = match ending {
                        StoredEnding::Failed => AttemptOutcome::Failed,
                        StoredEnding::TimedOut => AttemptOutcome::TimedOut,
                        StoredEnding::Abandoned => AttemptOutcome::Abandoned,
                    };
                    attempt.error = error;
                    attempt.finished_at = Some(from_millis(at_ms));
                }
                if task.state == TaskState::InProgress && task.running().next().is_none() {
                    task.state = TaskState::Idle;
                }
                if counts {
                    task.failures += 1;
                }
                Some(job_id)
            }
            Record::TasksReset {
                job_id,
                kind,
                indices,
            } => {
                let job = self.job_mut(&job_id)?;
                let tasks = job.tasks_mut(kind.into());
                for i in indices {
                    if let Some(task) = tasks.get_mut(i as usize)
                        && task.state == TaskState::Completed
                    {
                        task.state = TaskState::Idle;
                    }
                }
                Some(job_id)
            }
            Record::JobEnded {
                job_id,
                end,
                error,
                at_ms,
            } => {
                let job = self.job_mut(&job_id)?;
                let at = from_millis(at_ms);
                job.state = match end {
                    StoredJobEnd::Succeeded => JobState::Succeeded,
                    StoredJobEnd::Failed => JobState::Failed,
                    StoredJobEnd::Cancelled => JobState::Cancelled,
                };
                if end == StoredJobEnd::Succeeded {
                    job.outputs = (0..job.spec.n_reduce)
                        .map(|y| output_relative(&job.id, y))
                        .collect();
                }
                job.error = error;
                job.warning.clear();
                job.finished_at = Some(at);
                // Whatever still runs is no longer wanted; heartbeats tell its worker so.
                for task in job.maps.iter_mut().chain(job.reduces.iter_mut()) {
                    for attempt in task
                        .attempts
                        .iter_mut()
                        .filter(|a| a.outcome == AttemptOutcome::Running)
                    {
                        attempt.outcome = AttemptOutcome::Abandoned;
                        attempt.finished_at = Some(at);
                    }
                }
                Some(job_id)
            }
        }
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
