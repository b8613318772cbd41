//! The JSON the status page polls (`/api/jobs`, `/api/jobs/{id}`, `/api/workers`), built
//! from the scheduler's jobs and the workers' records.
//!
//! Everything here reads the scheduler under its lock, so it runs off the async threads and
//! keeps each hold short: the job list costs one pass over the jobs' O(1) counts; a job's
//! timeline walks its tasks [`TASK_PAGE`] at a time, taking the lock once per page, and
//! keeps only the latest [`MAX_TIMELINE_ATTEMPTS`] attempts (a bounded heap), so a
//! 100k-task job neither holds the lock for long nor sends megabytes a second.

use super::metrics::phase_name;
use crate::scheduler::{AttemptOutcome, Job, PhaseCounts, Scheduler, TaskKind};
use crate::state::{millis, task_label};
use crate::workers::Workers;
use mr_proto::v1 as pb;
use serde::Serialize;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::time::SystemTime;

/// Most jobs `/api/jobs` lists (the newest; `total` says how many there are).
pub(crate) const MAX_LISTED_JOBS: usize = 200;

/// Most attempts a job's timeline carries: the latest by start.
pub(crate) const MAX_TIMELINE_ATTEMPTS: usize = 2_000;

/// Tasks read per hold of the scheduler's lock when building a timeline.
const TASK_PAGE: usize = 5_000;

/// Characters of an error kept in the job list (the job's page has it whole).
const LIST_ERROR_CHARS: usize = 300;

/// Characters of an attempt's error kept in a timeline.
const ATTEMPT_ERROR_CHARS: usize = 500;

#[derive(Serialize)]
pub(crate) struct Progress {
    total: u32,
    idle: u32,
    in_progress: u32,
    completed: u32,
}

impl From<PhaseCounts> for Progress {
    fn from(c: PhaseCounts) -> Self {
        Self {
            total: c.total,
            idle: c.idle,
            in_progress: c.in_progress,
            completed: c.completed,
        }
    }
}

/// A job as the list and the job page show it.
#[derive(Serialize)]
pub(crate) struct JobSummary {
    id: String,
    app: String,
    /// `PENDING`, `RUNNING`, `SUCCEEDED`, `FAILED` or `CANCELLED`.
    state: &'static str,
    submitted_at_ms: i64,
    finished_at_ms: Option<i64>,
    map: Progress,
    reduce: Progress,
    error: String,
    warning: String,
    archived: bool,
    skipped_records: u64,
}

fn summary(job: &Job, error_chars: usize) -> JobSummary {
    JobSummary {
        id: job.id.clone(),
        app: job.spec.app.name.clone(),
        state: job.state.name(),
        submitted_at_ms: millis(job.submitted_at),
        finished_at_ms: job.finished_at.map(millis),
        map: job.progress(TaskKind::Map).into(),
        reduce: job.progress(TaskKind::Reduce).into(),
        error: clip(&job.error, error_chars),
        warning: job.warning.clone(),
        archived: job.archived,
        skipped_records: job.skipped_records,
    }
}

/// `/api/jobs`.
#[derive(Serialize)]
pub(crate) struct JobList {
    now_ms: i64,
    /// Jobs the coordinator holds; `jobs` has the newest [`MAX_LISTED_JOBS`] of them.
    total: usize,
    jobs: Vec<JobSummary>,
}

pub(crate) fn jobs(scheduler: &Scheduler) -> JobList {
    let mut total = 0;
    let jobs = scheduler
        .map_jobs(|job| {
            total += 1;
            (total <= MAX_LISTED_JOBS).then(|| summary(job, LIST_ERROR_CHARS))
        })
        .into_iter()
        .flatten()
        .collect();
    JobList {
        now_ms: now_ms(),
        total,
        jobs,
    }
}

/// A worker as the page shows it.
#[derive(Serialize)]
pub(crate) struct WorkerView {
    id: String,
    host: String,
    /// `IDLE`, `BUSY` or `LOST`.
    state: &'static str,
    /// `<job_id>/map-3` while busy.
    current_task: String,
    succeeded: u64,
    failed: u64,
    first_seen_ms: i64,
    last_seen_ms: i64,
}

/// `/api/workers`.
#[derive(Serialize)]
pub(crate) struct WorkerList {
    now_ms: i64,
    workers: Vec<WorkerView>,
}

pub(crate) fn workers(workers: &Workers, lost_after: std::time::Duration) -> WorkerList {
    let workers = workers
        .list(lost_after)
        .into_iter()
        .map(|w| WorkerView {
            state: match w.state() {
                pb::WorkerState::Busy => "BUSY",
                pb::WorkerState::Lost => "LOST",
                _ => "IDLE",
            },
            id: w.id,
            host: w.host,
            current_task: w.current_task,
            succeeded: w.tasks_succeeded,
            failed: w.tasks_failed,
            first_seen_ms: w.first_seen_ms,
            last_seen_ms: w.last_seen_ms,
        })
        .collect();
    WorkerList {
        now_ms: now_ms(),
        workers,
    }
}

/// One attempt of one task: a bar of the Gantt chart.
#[derive(Serialize, Clone)]
pub(crate) struct AttemptView {
    /// `map-3`, `reduce-0`.
    task: String,
    phase: &'static str,
    attempt: u64,
    worker: String,
    start_ms: i64,
    /// `None` while it runs.
    end_ms: Option<i64>,
    /// `running`, `succeeded`, `failed`, `timed_out`, `superseded` or `cancelled`.
    outcome: &'static str,
    /// A backup copy of a straggler.
    backup: bool,
    /// Not its task's first attempt, nor a backup: the task was handed out again (after a
    /// failure, a timeout, a lost intermediate).
    retry: bool,
    error: String,
}

/// How an attempt ended, as the page and the metrics name it.
pub(crate) fn outcome_label(outcome: AttemptOutcome) -> &'static str {
    match outcome {
        AttemptOutcome::Running => "running",
        AttemptOutcome::Succeeded => "succeeded",
        AttemptOutcome::Failed => "failed",
        AttemptOutcome::TimedOut => "timed_out",
        AttemptOutcome::Superseded => "superseded",
        // Its job ended while it ran, or its worker stopped and handed it back.
        AttemptOutcome::Abandoned => "cancelled",
    }
}

/// The job's attempts for the Gantt chart.
#[derive(Serialize)]
pub(crate) struct Timeline {
    /// Attempts the job has in all.
    attempts_total: u64,
    /// Most attempts drawn.
    cap: usize,
    /// The latest `cap` attempts by start, oldest first.
    attempts: Vec<AttemptView>,
}

/// `/api/jobs/{id}`.
#[derive(Serialize)]
pub(crate) struct JobDetail {
    now_ms: i64,
    job: JobSummary,
    n_reduce: u32,
    inputs: Vec<String>,
    input_files: usize,
    outputs: Vec<String>,
    max_skipped_records: u64,
    /// The job's counters; `None` when this coordinator does not keep them.
    counters: Option<BTreeMap<String, u64>>,
    timeline: Timeline,
}

/// The job's counters, summed over its committed attempts (built-in `mr.*` ones and the
/// app's own).
fn counters(job: &Job) -> Option<BTreeMap<String, u64>> {
    Some(job.counters.clone())
}

/// Most inputs and outputs listed by name on a job's page.
const MAX_LISTED_FILES: usize = 50;

/// The job's page data, or `None` if there is no such job.
pub(crate) fn job(scheduler: &Scheduler, job_id: &str) -> Option<JobDetail> {
    let (head, n_tasks, n_maps) = scheduler.with_job(job_id, |job| {
        let head = JobDetail {
            now_ms: 0,
            job: summary(job, usize::MAX),
            n_reduce: job.spec.n_reduce,
            inputs: job
                .spec
                .inputs
                .iter()
                .take(MAX_LISTED_FILES)
                .cloned()
                .collect(),
            input_files: job.spec.input_files.len(),
            outputs: job.outputs().into_iter().take(MAX_LISTED_FILES).collect(),
            max_skipped_records: job.spec.max_skipped_records,
            counters: counters(job),
            timeline: Timeline {
                attempts_total: 0,
                cap: MAX_TIMELINE_ATTEMPTS,
                attempts: Vec::new(),
            },
        };
        (head, job.maps.len() + job.reduces.len(), job.maps.len())
    })?;
    let mut detail = head;
    let mut latest = Latest::new(MAX_TIMELINE_ATTEMPTS);
    let mut start = 0;
    while start < n_tasks {
        let end = (start + TASK_PAGE).min(n_tasks);
        let read = scheduler.with_job(job_id, |job| {
            for i in start..end {
                let task = if i < n_maps {
                    job.maps.get(i)
                } else {
                    job.reduces.get(i - n_maps)
                };
                let Some(task) = task else { continue };
                for (position, attempt) in task.attempts.iter().enumerate() {
                    let start_ms = millis(attempt.started_at);
                    latest.offer((start_ms, attempt.id), || AttemptView {
                        task: task_label(task.kind, task.index),
                        phase: phase_name(task.kind),
                        attempt: attempt.id,
                        worker: attempt.worker.clone(),
                        start_ms,
                        end_ms: attempt.finished_at.map(millis),
                        outcome: outcome_label(attempt.outcome),
                        backup: attempt.backup,
                        retry: position > 0 && !attempt.backup,
                        error: clip(&attempt.error, ATTEMPT_ERROR_CHARS),
                    });
                }
            }
        });
        if read.is_none() {
            // Forgotten meanwhile: show what was read.
            break;
        }
        start = end;
    }
    detail.timeline.attempts_total = latest.seen;
    detail.timeline.attempts = latest.into_sorted();
    detail.now_ms = now_ms();
    Some(detail)
}

/// The `cap` greatest keys offered, with their values (built only for those kept).
struct Latest {
    cap: usize,
    seen: u64,
    heap: BinaryHeap<Reverse<Entry>>,
}

struct Entry {
    key: (i64, u64),
    view: AttemptView,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}

impl Eq for Entry {}

impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Entry {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.key.cmp(&other.key)
    }
}

impl Latest {
    fn new(cap: usize) -> Self {
        Self {
            cap,
            seen: 0,
            heap: BinaryHeap::with_capacity(cap.min(4096) + 1),
        }
    }

    fn offer(&mut self, key: (i64, u64), view: impl FnOnce() -> AttemptView) {
        self.seen += 1;
        if self.cap == 0 {
            return;
        }
        if self.heap.len() >= self.cap {
            match self.heap.peek() {
                Some(Reverse(smallest)) if smallest.key < key => {
                    self.heap.pop();
                }
                _ => return,
            }
        }
        self.heap.push(Reverse(Entry { key, view: view() }));
    }

    fn into_sorted(self) -> Vec<AttemptView> {
        let mut entries: Vec<Entry> = self.heap.into_iter().map(|Reverse(e)| e).collect();
        entries.sort_unstable_by_key(|e| e.key);
        entries.into_iter().map(|e| e.view).collect()
    }
}

fn now_ms() -> i64 {
    millis(SystemTime::now())
}

/// At most `n` characters of `text`, with an ellipsis when cut.
fn clip(text: &str, n: usize) -> String {
    match text.char_indices().nth(n) {
        None => text.to_string(),
        Some((end, _)) => format!("{}…", &text[..end]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(n: u64) -> AttemptView {
        AttemptView {
            task: format!("map-{n}"),
            phase: "map",
            attempt: n,
            worker: "w".into(),
            start_ms: n as i64,
            end_ms: None,
            outcome: "running",
            backup: false,
            retry: false,
            error: String::new(),
        }
    }

    #[test]
    fn latest_keeps_the_greatest_keys_in_order() {
        let mut latest = Latest::new(3);
        for n in [5u64, 1, 9, 3, 7, 2] {
            latest.offer((n as i64, n), || view(n));
        }
        assert_eq!(latest.seen, 6);
        let kept: Vec<u64> = latest.into_sorted().iter().map(|v| v.attempt).collect();
        assert_eq!(kept, vec![5, 7, 9]);
    }

    #[test]
    fn clip_cuts_on_characters() {
        assert_eq!(clip("héllo", 10), "héllo");
        assert_eq!(clip("héllo", 2), "hé…");
    }
}
