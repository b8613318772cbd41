//! The coordinator's in-memory model of jobs, tasks and attempts, and the one function that
//! changes it: [`State::apply`], which applies a journal [`Record`]. The scheduler decides
//! *what* happens; this module only knows what each record *means*, so that replaying the
//! journal after a crash and living through the events give the same state.
//!
//! `State`'s fields are private and it hands out only shared references to its jobs, so the
//! compiler enforces that durable state changes through `apply` alone. Three things are not
//! durable and change outside `apply`, through their own methods: an attempt's deadline
//! ([`State::heartbeat`]), a job's no-worker warning ([`State::set_warning`]), and the
//! indexes below, which `apply` keeps in step with the tasks.
//!
//! Indexes make every event cost O(log n) in the number of tasks: per job and phase, the
//! Idle tasks (a `BTreeSet` in dispatch order: the largest split first, as Hadoop orders
//! its splits, then the lowest index) and the running attempts by start time;
//! over all jobs, the jobs with an Idle task in their current phase and the running
//! attempts by deadline (mini-redis's expirations). Nothing scans all tasks.

use crate::apps::AppRef;
use crate::journal::{
    Counters, Record, StoredAttempt, StoredEnding, StoredJobEnd, StoredKind, StoredSkipped,
};
use mr_common::data_dir::output_relative;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::watch;
use tokio::time::Instant;

pub type JobId = String;
pub type AttemptId = u64;

/// How many recent successful task durations per phase the backup rule takes its median of.
const RECENT_DURATIONS: usize = 64;

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

impl TaskKind {
    fn slot(self) -> usize {
        match self {
            Self::Map => 0,
            Self::Reduce => 1,
        }
    }
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

/// Also how a snapshot stores it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TaskState {
    Idle,
    InProgress,
    Completed,
}

/// Also how a snapshot stores it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
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
    /// Shared by every split of the same file: a 100k-split job holds the name once.
    pub path: Arc<str>,
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
    /// Presumed dead past this instant unless a heartbeat moves it (not durable).
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
    /// Records the committed attempt skipped (empty unless Completed).
    pub skipped: Vec<StoredSkipped>,
    /// The committed attempt's counters (empty unless Completed).
    pub counters: Counters,
}

/// A task's place in its phase's Idle index, in dispatch order: the largest split first
/// (reduces have none: all equal), then the lowest index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct IdleKey {
    split_bytes: std::cmp::Reverse<u64>,
    index: u32,
}

impl Task {
    fn idle_key(&self) -> IdleKey {
        IdleKey {
            split_bytes: std::cmp::Reverse(self.split.as_ref().map_or(0, |s| s.length)),
            index: self.index,
        }
    }

    fn new(kind: TaskKind, index: u32, split: Option<Split>) -> Self {
        Self {
            kind,
            index,
            state: TaskState::Idle,
            split,
            attempts: Vec::new(),
            failures: 0,
            partitions: None,
            skipped: Vec::new(),
            counters: Counters::default(),
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

    /// The attempt whose files were committed, if the task is Completed.
    pub fn committed(&self) -> Option<&Attempt> {
        (self.state == TaskState::Completed)
            .then(|| {
                self.attempts
                    .iter()
                    .rev()
                    .find(|a| a.outcome == AttemptOutcome::Succeeded)
            })
            .flatten()
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
    /// Records the job may skip (0: none; a record the app fails on fails its task).
    pub max_skipped_records: u64,
}

/// How many tasks of a phase are in each state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PhaseCounts {
    pub total: u32,
    pub idle: u32,
    pub in_progress: u32,
    pub completed: u32,
}

impl PhaseCounts {
    fn slot(&mut self, state: TaskState) -> &mut u32 {
        match state {
            TaskState::Idle => &mut self.idle,
            TaskState::InProgress => &mut self.in_progress,
            TaskState::Completed => &mut self.completed,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Job {
    pub id: JobId,
    pub spec: JobSpec,
    pub state: JobState,
    pub error: String,
    /// Why the job is not progressing, while that lasts (e.g. no workers). Not durable.
    pub warning: String,
    /// Per-task records; empty once the ended job was archived to its summary.
    pub maps: Vec<Task>,
    pub reduces: Vec<Task>,
    pub submitted_at: SystemTime,
    pub finished_at: Option<SystemTime>,
    /// Only the summary is kept (the job ended before the last compaction).
    pub archived: bool,
    /// Records skipped by the committed attempts of its tasks (the sum of their `skipped`).
    pub skipped_records: u64,
    /// The sum of its tasks' committed counters, kept as they change.
    pub counters: BTreeMap<String, u64>,
    counts: [PhaseCounts; 2],
    idle: [BTreeSet<IdleKey>; 2],
    running: [BTreeSet<(Instant, AttemptId)>; 2],
    recent: [VecDeque<Duration>; 2],
}

impl Job {
    fn new(id: JobId, spec: JobSpec, submitted_at: SystemTime) -> Self {
        let maps: Vec<Task> = splits(&spec.input_files, spec.split_bytes)
            .into_iter()
            .enumerate()
            .map(|(i, split)| Task::new(TaskKind::Map, i as u32, Some(split)))
            .collect();
        let reduces: Vec<Task> = (0..spec.n_reduce)
            .map(|i| Task::new(TaskKind::Reduce, i, None))
            .collect();
        let idle_counts = |n: usize| PhaseCounts {
            total: n as u32,
            idle: n as u32,
            ..PhaseCounts::default()
        };
        Self {
            id,
            state: JobState::Pending,
            error: String::new(),
            warning: String::new(),
            counts: [idle_counts(maps.len()), idle_counts(reduces.len())],
            idle: [
                maps.iter().map(Task::idle_key).collect(),
                reduces.iter().map(Task::idle_key).collect(),
            ],
            running: Default::default(),
            recent: Default::default(),
            maps,
            reduces,
            spec,
            submitted_at,
            finished_at: None,
            archived: false,
            skipped_records: 0,
            counters: BTreeMap::new(),
        }
    }

    pub fn tasks(&self, kind: TaskKind) -> &[Task] {
        match kind {
            TaskKind::Map => &self.maps,
            TaskKind::Reduce => &self.reduces,
        }
    }

    fn tasks_mut(&mut self, kind: TaskKind) -> &mut Vec<Task> {
        match kind {
            TaskKind::Map => &mut self.maps,
            TaskKind::Reduce => &mut self.reduces,
        }
    }

    /// A phase's tasks and its running-attempt index, both mutable.
    fn tasks_and_running(
        &mut self,
        kind: TaskKind,
    ) -> (&mut Vec<Task>, &mut BTreeSet<(Instant, AttemptId)>) {
        let tasks = match kind {
            TaskKind::Map => &mut self.maps,
            TaskKind::Reduce => &mut self.reduces,
        };
        (tasks, &mut self.running[kind.slot()])
    }

    pub fn all_tasks(&self) -> impl Iterator<Item = &Task> {
        self.maps.iter().chain(self.reduces.iter())
    }

    /// How many tasks of a phase are in each state, in O(1).
    pub fn progress(&self, kind: TaskKind) -> PhaseCounts {
        self.counts[kind.slot()]
    }

    pub fn maps_done(&self) -> bool {
        let c = self.counts[0];
        c.completed == c.total
    }

    pub fn reduces_done(&self) -> bool {
        let c = self.counts[1];
        c.completed == c.total
    }

    /// The phase whose tasks are handed out now: maps until all are done, then reduces.
    pub fn current_phase(&self) -> TaskKind {
        if self.maps_done() {
            TaskKind::Reduce
        } else {
            TaskKind::Map
        }
    }

    /// The Idle task of a phase to hand out next: the one with the largest split (a map),
    /// then the lowest index. Longest maps first, as Hadoop sorts its splits: a phase then
    /// ends with short tasks spread over the workers, not with one long map started last.
    pub fn first_idle(&self, kind: TaskKind) -> Option<u32> {
        self.idle[kind.slot()].first().map(|key| key.index)
    }

    /// Running attempts of a phase, the longest-running first.
    pub fn running_by_age(&self, kind: TaskKind) -> impl Iterator<Item = &(Instant, AttemptId)> {
        self.running[kind.slot()].iter()
    }

    /// The median of the phase's recent successful task durations.
    pub fn typical_duration(&self, kind: TaskKind) -> Option<Duration> {
        let mut recent: Vec<Duration> = self.recent[kind.slot()].iter().copied().collect();
        recent.sort_unstable();
        recent.get(recent.len() / 2).copied()
    }

    /// Records its tasks may still skip: the job's budget less what committed attempts skipped.
    pub fn skip_budget_left(&self) -> u64 {
        self.spec
            .max_skipped_records
            .saturating_sub(self.skipped_records)
    }

    /// The first `n` skipped records, with their tasks (maps by index, then reduces).
    pub fn skipped(&self, n: usize) -> impl Iterator<Item = (&Task, &StoredSkipped)> {
        self.all_tasks()
            .flat_map(|t| t.skipped.iter().map(move |s| (t, s)))
            .take(n)
    }

    /// Replaces a task's skipped records, keeping the job's count in step.
    /// Replaces a task's committed counters, keeping the job's sums in step.
    fn set_counters(&mut self, kind: TaskKind, index: u32, counters: Counters) {
        let Some(task) = self.tasks_mut(kind).get_mut(index as usize) else {
            return;
        };
        let old = std::mem::replace(&mut task.counters, counters);
        let new = task.counters.clone();
        for (name, value) in old.iter() {
            if let Some(sum) = self.counters.get_mut(name) {
                *sum = sum.saturating_sub(value);
            }
        }
        for (name, value) in new.iter() {
            let sum = self.counters.entry(name.to_string()).or_default();
            *sum = sum.saturating_add(value);
        }
    }

    fn set_skipped(&mut self, kind: TaskKind, index: u32, skipped: Vec<StoredSkipped>) {
        let Some(task) = self.tasks_mut(kind).get_mut(index as usize) else {
            return;
        };
        let old = std::mem::replace(&mut task.skipped, skipped);
        let new = task.skipped.len() as u64;
        self.skipped_records = self.skipped_records.saturating_sub(old.len() as u64) + new;
    }

    /// Output files, relative to the data folder, once the job succeeded.
    pub fn outputs(&self) -> Vec<String> {
        if self.state != JobState::Succeeded {
            return Vec::new();
        }
        (0..self.spec.n_reduce)
            .map(|y| output_relative(&self.id, y))
            .collect()
    }

    /// Whether the job ended at least `detail_for` before `wall` and still has its detail.
    fn archivable(&self, wall: SystemTime, detail_for: Duration) -> bool {
        !self.archived
            && self.state.is_terminal()
            && self.finished_at.is_some_and(|at| at + detail_for <= wall)
    }

    /// Moves a task to `new`, keeping the counts and the Idle index in step.
    fn set_task_state(&mut self, kind: TaskKind, index: u32, new: TaskState) {
        let slot = kind.slot();
        let Some(task) = self.tasks_mut(kind).get_mut(index as usize) else {
            return;
        };
        let old = std::mem::replace(&mut task.state, new);
        if old == new {
            return;
        }
        let key = task.idle_key();
        *self.counts[slot].slot(old) -= 1;
        *self.counts[slot].slot(new) += 1;
        if old == TaskState::Idle {
            self.idle[slot].remove(&key);
        }
        if new == TaskState::Idle {
            self.idle[slot].insert(key);
        }
    }
}

/// Cuts each input file into splits of at most `split_bytes` (an empty file is one empty split).
pub fn splits(files: &[(String, u64)], split_bytes: u64) -> Vec<Split> {
    let step = split_bytes.max(1);
    let mut out = Vec::new();
    for (path, size) in files {
        let path: Arc<str> = Arc::from(path.as_str());
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
    pub job: JobId,
    pub kind: TaskKind,
    pub index: u32,
}

/// Every job the coordinator knows, in submission order (which is also dispatch order).
pub struct State {
    /// By submission sequence number.
    jobs: BTreeMap<u64, Job>,
    by_id: HashMap<JobId, u64>,
    attempts: HashMap<AttemptId, AttemptRef>,
    next_attempt: AttemptId,
    next_seq: u64,
    /// Jobs that have not ended, oldest first.
    active: BTreeSet<u64>,
    /// Jobs that have not ended and have an Idle task in their current phase, oldest first.
    ready: BTreeSet<u64>,
    /// Every running attempt of a job that has not ended, by deadline.
    deadlines: BTreeSet<(Instant, AttemptId)>,
    watchers: HashMap<JobId, watch::Sender<u64>>,
}

impl Default for State {
    fn default() -> Self {
        Self {
            jobs: BTreeMap::new(),
            by_id: HashMap::new(),
            attempts: HashMap::new(),
            next_attempt: 1,
            next_seq: 0,
            active: BTreeSet::new(),
            ready: BTreeSet::new(),
            deadlines: BTreeSet::new(),
            watchers: HashMap::new(),
        }
    }
}

pub fn millis(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

pub fn from_millis(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64)
}

fn job_state_from(end: StoredJobEnd) -> JobState {
    match end {
        StoredJobEnd::Succeeded => JobState::Succeeded,
        StoredJobEnd::Failed => JobState::Failed,
        StoredJobEnd::Cancelled => JobState::Cancelled,
    }
}

fn job_state_to(state: JobState) -> Option<StoredJobEnd> {
    match state {
        JobState::Succeeded => Some(StoredJobEnd::Succeeded),
        JobState::Failed => Some(StoredJobEnd::Failed),
        JobState::Cancelled => Some(StoredJobEnd::Cancelled),
        JobState::Pending | JobState::Running => None,
    }
}

impl State {
    pub fn job(&self, job_id: &str) -> Option<&Job> {
        self.jobs.get(self.by_id.get(job_id)?)
    }

    /// Every job, oldest first.
    pub fn jobs(&self) -> impl DoubleEndedIterator<Item = &Job> {
        self.jobs.values()
    }

    /// Jobs that have not ended, oldest first.
    pub fn active_jobs(&self) -> impl Iterator<Item = &Job> {
        self.active.iter().filter_map(|seq| self.jobs.get(seq))
    }

    /// The oldest job with an Idle task in its current phase.
    pub fn first_ready(&self) -> Option<&Job> {
        self.jobs.get(self.ready.first()?)
    }

    pub fn has_active(&self) -> bool {
        !self.active.is_empty()
    }

    pub fn contains(&self, job_id: &str) -> bool {
        self.by_id.contains_key(job_id)
    }

    pub fn len(&self) -> usize {
        self.jobs.len()
    }

    pub fn next_attempt(&self) -> AttemptId {
        self.next_attempt
    }

    /// Where attempt `id` lives, if its job is still known.
    pub fn attempt_ref(&self, id: AttemptId) -> Option<&AttemptRef> {
        self.attempts.get(&id)
    }

    /// The earliest deadline of a running attempt.
    pub fn next_deadline(&self) -> Option<(Instant, AttemptId)> {
        self.deadlines.first().copied()
    }

    pub fn subscribe(&self, job_id: &str) -> Option<watch::Receiver<u64>> {
        self.watchers.get(job_id).map(|tx| tx.subscribe())
    }

    /// Wakes the watchers of a job.
    pub fn notify(&self, job_id: &str) {
        if let Some(watcher) = self.watchers.get(job_id) {
            watcher.send_modify(|v| *v += 1);
        }
    }

    /// Moves a running attempt's deadline (a heartbeat); false if it is not running.
    pub fn heartbeat(&mut self, id: AttemptId, deadline: Instant) -> bool {
        let Some(at) = self.attempts.get(&id).cloned() else {
            return false;
        };
        let Some(&seq) = self.by_id.get(&at.job) else {
            return false;
        };
        let Some(job) = self.jobs.get_mut(&seq) else {
            return false;
        };
        if job.state.is_terminal() {
            return false;
        }
        let Some(attempt) = job
            .tasks_mut(at.kind)
            .get_mut(at.index as usize)
            .and_then(|t| t.attempt_mut(id))
            .filter(|a| a.outcome == AttemptOutcome::Running)
        else {
            return false;
        };
        self.deadlines.remove(&(attempt.deadline, id));
        attempt.deadline = deadline;
        self.deadlines.insert((deadline, id));
        true
    }

    /// Sets or clears a running job's warning; true if it changed.
    pub fn set_warning(&mut self, job_id: &str, warning: String) -> bool {
        let Some(&seq) = self.by_id.get(job_id) else {
            return false;
        };
        match self.jobs.get_mut(&seq) {
            Some(job) if job.warning != warning => {
                job.warning = warning;
                true
            }
            _ => false,
        }
    }

    /// Recomputes whether job `seq` is active and ready.
    fn refresh(&mut self, seq: u64) {
        let Some(job) = self.jobs.get(&seq) else {
            self.active.remove(&seq);
            self.ready.remove(&seq);
            return;
        };
        if job.state.is_terminal() || job.archived {
            self.active.remove(&seq);
            self.ready.remove(&seq);
            return;
        }
        self.active.insert(seq);
        if job.first_idle(job.current_phase()).is_some() {
            self.ready.insert(seq);
        } else {
            self.ready.remove(&seq);
        }
    }

    /// Ends a running attempt's entries in the indexes.
    fn unindex(
        deadlines: &mut BTreeSet<(Instant, AttemptId)>,
        running: &mut BTreeSet<(Instant, AttemptId)>,
        attempt: &Attempt,
    ) {
        deadlines.remove(&(attempt.deadline, attempt.id));
        running.remove(&(attempt.started, attempt.id));
    }

    /// The sequence number of a task record's job and the task's kind, if both the job and
    /// the task exist.
    fn locate(&self, job_id: &str, kind: StoredKind, index: u32) -> Option<(u64, TaskKind)> {
        let seq = *self.by_id.get(job_id)?;
        let kind = TaskKind::from(kind);
        self.jobs.get(&seq)?.tasks(kind).get(index as usize)?;
        Some((seq, kind))
    }

    fn insert_job(&mut self, job: Job) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.by_id.insert(job.id.clone(), seq);
        self.watchers.insert(job.id.clone(), watch::channel(0).0);
        self.jobs.insert(seq, job);
        seq
    }

    fn remove_job(&mut self, job_id: &str) {
        let Some(seq) = self.by_id.remove(job_id) else {
            return;
        };
        if let Some(job) = self.jobs.remove(&seq) {
            for attempt in job.all_tasks().flat_map(|t| &t.attempts) {
                self.attempts.remove(&attempt.id);
                self.deadlines.remove(&(attempt.deadline, attempt.id));
            }
        }
        self.watchers.remove(job_id);
        self.refresh(seq);
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
                max_skipped_records,
            } => {
                if self.by_id.contains_key(&job_id) {
                    return None;
                }
                let spec = JobSpec {
                    app: AppRef {
                        name: app,
                        sha256: app_sha256,
                    },
                    inputs,
                    input_files,
                    n_reduce,
                    split_bytes,
                    max_skipped_records,
                };
                let seq = self.insert_job(Job::new(job_id.clone(), spec, from_millis(at_ms)));
                self.refresh(seq);
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
                let (seq, kind) = self.locate(&job_id, kind, index)?;
                let job = self.jobs.get_mut(&seq)?;
                if job.state == JobState::Pending {
                    job.state = JobState::Running;
                }
                job.set_task_state(kind, index, TaskState::InProgress);
                let attempt = Attempt {
                    id: attempt_id,
                    worker,
                    started_at: from_millis(at_ms),
                    finished_at: None,
                    outcome: AttemptOutcome::Running,
                    error: String::new(),
                    backup,
                    started: now,
                    deadline: now + timeout,
                };
                job.running[kind.slot()].insert((attempt.started, attempt_id));
                self.deadlines.insert((attempt.deadline, attempt_id));
                job.tasks_mut(kind)[index as usize].attempts.push(attempt);
                self.attempts.insert(
                    attempt_id,
                    AttemptRef {
                        job: job_id.clone(),
                        kind,
                        index,
                    },
                );
                self.next_attempt = self.next_attempt.max(attempt_id + 1);
                self.refresh(seq);
                Some(job_id)
            }
            Record::TaskCommitted {
                job_id,
                kind,
                index,
                attempt_id,
                partitions,
                at_ms,
                skipped,
                counters,
            } => {
                let (seq, kind) = self.locate(&job_id, kind, index)?;
                let job = self.jobs.get_mut(&seq)?;
                job.set_task_state(kind, index, TaskState::Completed);
                job.set_skipped(kind, index, skipped);
                job.set_counters(kind, index, counters);
                let at = from_millis(at_ms);
                let deadlines = &mut self.deadlines;
                let (tasks, running) = job.tasks_and_running(kind);
                let task = &mut tasks[index as usize];
                task.partitions = partitions;
                let mut took = None;
                for attempt in &mut task.attempts {
                    if attempt.id == attempt_id {
                        took = at.duration_since(attempt.started_at).ok();
                        Self::unindex(deadlines, running, attempt);
                        attempt.outcome = AttemptOutcome::Succeeded;
                    } else if attempt.outcome == AttemptOutcome::Running {
                        Self::unindex(deadlines, running, attempt);
                        attempt.outcome = AttemptOutcome::Superseded;
                    } else {
                        continue;
                    }
                    attempt.finished_at = Some(at);
                }
                if let Some(took) = took {
                    let recent = &mut job.recent[kind.slot()];
                    if recent.len() == RECENT_DURATIONS {
                        recent.pop_front();
                    }
                    recent.push_back(took);
                }
                self.refresh(seq);
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
                let (seq, kind) = self.locate(&job_id, kind, index)?;
                let job = self.jobs.get_mut(&seq)?;
                let deadlines = &mut self.deadlines;
                let (tasks, running) = job.tasks_and_running(kind);
                let task = &mut tasks[index as usize];
                if let Some(attempt) = task.attempt_mut(attempt_id) {
                    if attempt.outcome == AttemptOutcome::Running {
                        Self::unindex(deadlines, running, attempt);
                    }
                    attempt.outcome = match ending {
                        StoredEnding::Failed => AttemptOutcome::Failed,
                        StoredEnding::TimedOut => AttemptOutcome::TimedOut,
                        StoredEnding::Abandoned => AttemptOutcome::Abandoned,
                    };
                    attempt.error = error;
                    attempt.finished_at = Some(from_millis(at_ms));
                }
                if counts {
                    task.failures += 1;
                }
                if task.state == TaskState::InProgress && task.running().next().is_none() {
                    job.set_task_state(kind, index, TaskState::Idle);
                }
                self.refresh(seq);
                Some(job_id)
            }
            Record::TasksReset {
                job_id,
                kind,
                indices,
            } => {
                let seq = *self.by_id.get(&job_id)?;
                let job = self.jobs.get_mut(&seq)?;
                let kind = TaskKind::from(kind);
                for i in indices {
                    if job
                        .tasks(kind)
                        .get(i as usize)
                        .is_some_and(|t| t.state == TaskState::Completed)
                    {
                        job.set_task_state(kind, i, TaskState::Idle);
                        // Its commit no longer stands, nor do the records it skipped
                        // or what it counted: the run that replaces it counts instead.
                        job.set_skipped(kind, i, Vec::new());
                        job.set_counters(kind, i, Counters::default());
                    }
                }
                self.refresh(seq);
                Some(job_id)
            }
            Record::JobEnded {
                job_id,
                end,
                error,
                at_ms,
            } => {
                let seq = *self.by_id.get(&job_id)?;
                let job = self.jobs.get_mut(&seq)?;
                let at = from_millis(at_ms);
                job.state = job_state_from(end);
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
                        self.deadlines.remove(&(attempt.deadline, attempt.id));
                        attempt.outcome = AttemptOutcome::Abandoned;
                        attempt.finished_at = Some(at);
                    }
                }
                job.running = Default::default();
                self.refresh(seq);
                Some(job_id)
            }
            Record::JobArchived {
                job_id,
                app,
                app_sha256,
                inputs,
                n_reduce,
                end,
                error,
                map,
                reduce,
                submitted_at_ms,
                finished_at_ms,
                skipped_records,
                counters,
            } => {
                if self.by_id.contains_key(&job_id) {
                    return None;
                }
                let counts = |c: [u32; 4]| PhaseCounts {
                    total: c[0],
                    idle: c[1],
                    in_progress: c[2],
                    completed: c[3],
                };
                let job = Job {
                    id: job_id.clone(),
                    spec: JobSpec {
                        app: AppRef {
                            name: app,
                            sha256: app_sha256,
                        },
                        inputs,
                        input_files: Vec::new(),
                        n_reduce,
                        split_bytes: 0,
                        max_skipped_records: 0,
                    },
                    state: job_state_from(end),
                    error,
                    warning: String::new(),
                    maps: Vec::new(),
                    reduces: Vec::new(),
                    submitted_at: from_millis(submitted_at_ms),
                    finished_at: Some(from_millis(finished_at_ms)),
                    archived: true,
                    skipped_records,
                    counters: counters.iter().map(|(n, v)| (n.to_string(), v)).collect(),
                    counts: [counts(map), counts(reduce)],
                    idle: Default::default(),
                    running: Default::default(),
                    recent: Default::default(),
                };
                let seq = self.insert_job(job);
                self.refresh(seq);
                Some(job_id)
            }
            Record::TaskRestored {
                job_id,
                kind,
                index,
                state,
                failures,
                partitions,
                attempts,
                skipped,
                counters,
            } => {
                let (seq, kind) = self.locate(&job_id, kind, index)?;
                let job = self.jobs.get_mut(&seq)?;
                let mut restored = Vec::with_capacity(attempts.len());
                for a in attempts {
                    let attempt = Attempt {
                        id: a.attempt_id,
                        worker: a.worker,
                        started_at: from_millis(a.started_at_ms),
                        finished_at: a.finished_at_ms.map(from_millis),
                        outcome: a.outcome,
                        error: a.error,
                        backup: a.backup,
                        started: now,
                        deadline: now + timeout,
                    };
                    if attempt.outcome == AttemptOutcome::Running {
                        job.running[kind.slot()].insert((attempt.started, attempt.id));
                        self.deadlines.insert((attempt.deadline, attempt.id));
                    }
                    self.attempts.insert(
                        attempt.id,
                        AttemptRef {
                            job: job_id.clone(),
                            kind,
                            index,
                        },
                    );
                    self.next_attempt = self.next_attempt.max(attempt.id + 1);
                    restored.push(attempt);
                }
                if job.state == JobState::Pending && !restored.is_empty() {
                    job.state = JobState::Running;
                }
                job.set_task_state(kind, index, state);
                let task = &mut job.tasks_mut(kind)[index as usize];
                task.failures = failures;
                task.partitions = partitions;
                task.attempts = restored;
                job.set_skipped(kind, index, skipped);
                job.set_counters(kind, index, counters);
                self.refresh(seq);
                Some(job_id)
            }
            Record::AttemptCounter { next_attempt } => {
                self.next_attempt = self.next_attempt.max(next_attempt);
                None
            }
            Record::JobsForgotten { job_ids } => {
                for job_id in &job_ids {
                    self.remove_job(job_id);
                }
                None
            }
        }
    }

    /// Turns every job that ended at least `detail_for` before `wall` into its summary, as
    /// replaying its [`Record::JobArchived`] would: its per-task records and attempt ids go.
    pub fn archive_ended(&mut self, wall: SystemTime, detail_for: Duration) {
        for job in self.jobs.values_mut() {
            if !job.archivable(wall, detail_for) {
                continue;
            }
            for attempt in job
                .maps
                .iter()
                .chain(&job.reduces)
                .flat_map(|t| &t.attempts)
            {
                self.attempts.remove(&attempt.id);
            }
            job.maps = Vec::new();
            job.reduces = Vec::new();
            job.spec.input_files = Vec::new();
            job.spec.split_bytes = 0;
            job.idle = Default::default();
            job.running = Default::default();
            job.recent = Default::default();
            job.archived = true;
        }
    }

    /// Records that rebuild this state from nothing: the attempt counter, then each job in
    /// submission order: one archived (or archivable, see [`State::archive_ended`]) as its
    /// summary, any other as its submission, every task that is no longer untouched, and
    /// its end if it ended.
    pub fn snapshot(&self, wall: SystemTime, detail_for: Duration) -> Vec<Record> {
        let mut out = vec![Record::AttemptCounter {
            next_attempt: self.next_attempt,
        }];
        for job in self.jobs.values() {
            if job.archived || job.archivable(wall, detail_for) {
                out.extend(summary_of(job));
                continue;
            }
            out.push(Record::JobSubmitted {
                job_id: job.id.clone(),
                app: job.spec.app.name.clone(),
                app_sha256: job.spec.app.sha256.clone(),
                inputs: job.spec.inputs.clone(),
                input_files: job.spec.input_files.clone(),
                n_reduce: job.spec.n_reduce,
                split_bytes: job.spec.split_bytes,
                at_ms: millis(job.submitted_at),
                max_skipped_records: job.spec.max_skipped_records,
            });
            for task in job.all_tasks() {
                if task.attempts.is_empty()
                    && task.state == TaskState::Idle
                    && task.failures == 0
                    && task.skipped.is_empty()
                    && task.counters.is_empty()
                {
                    continue;
                }
                out.push(Record::TaskRestored {
                    job_id: job.id.clone(),
                    kind: task.kind.into(),
                    index: task.index,
                    state: task.state,
                    failures: task.failures,
                    partitions: task.partitions.clone(),
                    attempts: task
                        .attempts
                        .iter()
                        .map(|a| StoredAttempt {
                            attempt_id: a.id,
                            worker: a.worker.clone(),
                            started_at_ms: millis(a.started_at),
                            finished_at_ms: a.finished_at.map(millis),
                            outcome: a.outcome,
                            error: a.error.clone(),
                            backup: a.backup,
                        })
                        .collect(),
                    skipped: task.skipped.clone(),
                    counters: task.counters.clone(),
                });
            }
            if let Some(end) = job_state_to(job.state) {
                out.push(Record::JobEnded {
                    job_id: job.id.clone(),
                    end,
                    error: job.error.clone(),
                    at_ms: job.finished_at.map(millis).unwrap_or(0),
                });
            }
        }
        out
    }
}

/// An ended job as its summary record.
fn summary_of(job: &Job) -> Option<Record> {
    let counts = |c: PhaseCounts| [c.total, c.idle, c.in_progress, c.completed];
    Some(Record::JobArchived {
        job_id: job.id.clone(),
        app: job.spec.app.name.clone(),
        app_sha256: job.spec.app.sha256.clone(),
        inputs: job.spec.inputs.clone(),
        n_reduce: job.spec.n_reduce,
        end: job_state_to(job.state)?,
        error: job.error.clone(),
        map: counts(job.counts[0]),
        reduce: counts(job.counts[1]),
        submitted_at_ms: millis(job.submitted_at),
        finished_at_ms: job.finished_at.map(millis).unwrap_or(0),
        skipped_records: job.skipped_records,
        counters: job.counters.iter().map(|(n, v)| (n.as_str(), *v)).collect(),
    })
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
        let ranges: Vec<_> = got.iter().map(|s| (&*s.path, s.offset, s.length)).collect();
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
