//! Everything that happens because time passed: attempts past their deadline, the watch for
//! the loss of every worker, job folders due for cleaning, ended jobs past their retention,
//! and compaction of the journal. Deadlines live in ordered indexes, so a check costs
//! O(log n) per thing that is due, not a scan.

use super::{Cleanup, CleanupScope, Inner, Scheduler, Transition};
use crate::config::CoordinatorConfig;
use crate::journal::{JournalError, Record, StoredEnding, StoredJobEnd};
use crate::state::{JobId, JobState, millis, task_label};
use mr_common::DataDir;
use mr_storage::{S3Store, Storage};
use std::time::{Duration, SystemTime};
use tokio::time::Instant;

/// How often ended jobs are checked against their retention, at most.
const RETENTION_TICK: Duration = Duration::from_secs(60);

impl Scheduler {
    /// When the timer should next send [`super::Event::DeadlineCheck`].
    pub fn next_wakeup(&self) -> Option<Instant> {
        let inner = self.lock();
        let mut next = [
            inner.state.next_deadline().map(|(at, _)| at),
            inner.cleanups.keys().next().map(|(at, _)| *at),
            (inner.state.len() > 0).then_some(inner.retention_check),
        ]
        .into_iter()
        .flatten()
        .min();
        if inner.state.has_active() {
            // Watching for the loss of every worker needs a coarse tick while jobs run.
            let tick = Instant::now() + self.config.no_worker_grace.min(Duration::from_secs(1));
            next = Some(next.map_or(tick, |n| n.min(tick)));
        }
        next
    }
}

impl Transition<'_> {
    /// Times out every attempt past its deadline; its task goes back to Idle.
    pub(super) fn expire_attempts(&mut self) -> Result<(), JournalError> {
        while let Some((deadline, attempt_id)) = self.inner.state.next_deadline()
            && deadline <= self.now
        {
            let Some(at) = self.inner.state.attempt_ref(attempt_id).cloned() else {
                // Cannot happen: the index holds running attempts of known jobs only.
                self.inner.state.heartbeat(attempt_id, self.now);
                break;
            };
            let worker = self
                .inner
                .state
                .job(&at.job)
                .and_then(|j| j.tasks(at.kind).get(at.index as usize))
                .and_then(|t| t.attempt(attempt_id))
                .map(|a| a.worker.clone())
                .unwrap_or_default();
            tracing::warn!(
                job_id = %at.job, task = %task_label(at.kind, at.index), attempt = attempt_id,
                worker = %worker, "attempt timed out; task will be reassigned"
            );
            self.record(Record::AttemptEnded {
                job_id: at.job,
                kind: at.kind.into(),
                index: at.index,
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
            if self.inner.state.next_deadline() == Some((deadline, attempt_id)) {
                // Cannot happen: ending an attempt takes it out of the index. Never spin.
                tracing::error!(
                    attempt = attempt_id,
                    "a timed-out attempt stayed in the deadline index"
                );
                break;
            }
        }
        Ok(())
    }

    /// Says so on every running job when no worker has called in for the grace period, and
    /// fails them after `fail_without_workers_after` if that is set.
    pub(super) fn watch_for_workers(&mut self) -> Result<(), JournalError> {
        let silent = self
            .now
            .saturating_duration_since(self.inner.last_worker_seen);
        if silent < self.config.no_worker_grace {
            return Ok(());
        }
        let mut to_warn = Vec::new();
        let mut to_fail = Vec::new();
        for job in self.inner.state.active_jobs() {
            let waited = silent.min(
                self.wall
                    .duration_since(job.submitted_at)
                    .unwrap_or_default(),
            );
            if waited < self.config.no_worker_grace {
                continue;
            }
            if job.warning.is_empty() {
                to_warn.push((job.id.clone(), waited));
            }
            if let Some(limit) = self.config.fail_without_workers_after
                && waited >= limit
            {
                to_fail.push((job.id.clone(), limit));
            }
        }
        for (job_id, waited) in to_warn {
            let warning = format!(
                "no worker has called in for {}s: the job waits for workers",
                waited.as_secs()
            );
            tracing::warn!(job_id = %job_id, warning = %warning, "job is stuck");
            self.inner.state.set_warning(&job_id, warning);
            self.inner.warned = true;
            self.touched.push(job_id);
        }
        for (job_id, limit) in to_fail {
            let message = format!("no worker called in for {limit:?}; giving up");
            tracing::error!(job_id = %job_id, error = %message, "job failed");
            self.end_job(&job_id, StoredJobEnd::Failed, message)?;
        }
        Ok(())
    }

    /// Forgets ended jobs older than `job_retention`, and the oldest ended ones beyond
    /// `max_retained_jobs`; their folders are removed.
    pub(super) fn forget_expired_jobs(&mut self) -> Result<(), JournalError> {
        if self.now < self.inner.retention_check {
            return Ok(());
        }
        self.inner.retention_check = self.now
            + RETENTION_TICK
                .min(self.config.job_retention)
                .max(Duration::from_millis(100));
        let ended: Vec<(JobId, Option<SystemTime>)> = self
            .inner
            .state
            .jobs()
            .filter(|j| j.state.is_terminal())
            .map(|j| (j.id.clone(), j.finished_at))
            .collect();
        let over = ended.len().saturating_sub(self.config.max_retained_jobs);
        let forgotten: Vec<JobId> = ended
            .into_iter()
            .enumerate()
            .filter(|(i, (_, finished))| {
                *i < over || finished.is_some_and(|at| at + self.config.job_retention <= self.wall)
            })
            .map(|(_, (id, _))| id)
            .collect();
        if forgotten.is_empty() {
            return Ok(());
        }
        tracing::info!(
            jobs = forgotten.len(),
            "ended jobs past their retention forgotten"
        );
        for job_id in &forgotten {
            self.schedule_cleanup(
                self.now,
                Cleanup {
                    job_id: job_id.clone(),
                    scope: CleanupScope::Forgotten,
                },
            );
        }
        self.record(Record::JobsForgotten { job_ids: forgotten })
    }

    /// The cleanups due now, taken off the queue.
    pub(super) fn due_cleanups(&mut self) -> Vec<Cleanup> {
        let later = self.inner.cleanups.split_off(&(self.now, u64::MAX));
        std::mem::replace(&mut self.inner.cleanups, later)
            .into_values()
            .collect()
    }
}

/// Compacts the journal when its tail has grown past `compact_after_bytes` and the size of
/// the last snapshot (so that rewriting a large state is paid for by as much new journal).
pub(super) fn compact_if_due(inner: &mut Inner, config: &CoordinatorConfig) {
    let limit = config.compact_after_bytes.max(inner.journal.snapshot_len());
    if inner.journal.tail_len() > limit {
        compact(inner, config);
    }
}

/// Writes the state as a snapshot; ended jobs past their detail retention become summaries.
pub(super) fn compact(inner: &mut Inner, config: &CoordinatorConfig) {
    let wall = SystemTime::now();
    let started = std::time::Instant::now();
    let records = inner.state.snapshot(wall, config.job_detail_retention);
    let tail = inner.journal.tail_len();
    match inner.journal.compact(&records) {
        Ok(()) => {
            inner.state.archive_ended(wall, config.job_detail_retention);
            tracing::info!(
                tail_bytes = tail,
                snapshot_bytes = inner.journal.snapshot_len(),
                records = records.len(),
                took_ms = started.elapsed().as_millis() as u64,
                "journal compacted"
            );
        }
        // The old snapshot and journal stay in force; appending goes on.
        Err(error) => tracing::error!(%error, "journal compaction failed"),
    }
}

/// Removes what an ended job no longer needs: intermediates and temp files, and for a job
/// that did not succeed, its partial outputs too; for a forgotten job, the whole folder.
/// Also run at start-up, where it sweeps up after attempts that crashed.
pub fn clean_job_dir(data: &DataDir, store: &Storage, cleanup: &Cleanup) {
    if let Storage::S3(s3) = store {
        return clean_job_prefix(s3, cleanup);
    }
    let dir = data.job_dir(&cleanup.job_id);
    if cleanup.scope == CleanupScope::Forgotten {
        if std::fs::remove_dir_all(&dir).is_ok() {
            tracing::info!(job_id = %cleanup.job_id, "forgotten job's folder removed");
        }
        return;
    }
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return;
    };
    let keep_outputs = cleanup.scope == CleanupScope::KeepOutputs;
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let keep = keep_outputs && name.starts_with("mr-out-");
        if !keep && std::fs::remove_file(entry.path()).is_ok() {
            removed += 1;
        }
    }
    if !keep_outputs {
        let _ = std::fs::remove_dir(&dir);
    }
    if removed > 0 {
        tracing::info!(job_id = %cleanup.job_id, removed, "job folder cleaned");
    }
}

/// The cleanup an ended job's state calls for.
pub(super) fn cleanup_for(job_id: &str, state: JobState) -> Cleanup {
    Cleanup {
        job_id: job_id.to_string(),
        scope: if state == JobState::Succeeded {
            CleanupScope::KeepOutputs
        } else {
            CleanupScope::Everything
        },
    }
}

/// [`clean_job_dir`] on S3: the same objects, under `jobs/<id>/`.
fn clean_job_prefix(s3: &S3Store, cleanup: &Cleanup) {
    let prefix = format!(
        "{}/",
        mr_common::data_dir::job_dir_relative(&cleanup.job_id)
    );
    let keep_outputs = cleanup.scope == CleanupScope::KeepOutputs;
    let objects = match s3.list(&prefix) {
        Ok(objects) => objects,
        Err(error) => {
            // Swept again at the next start-up.
            tracing::warn!(job_id = %cleanup.job_id, %error, "cannot list the job's objects to clean them");
            return;
        }
    };
    let doomed: Vec<String> = objects
        .into_iter()
        .map(|o| o.key)
        .filter(|key| {
            let name = key.rsplit('/').next().unwrap_or_default();
            !(keep_outputs && name.starts_with("mr-out-"))
        })
        .collect();
    if doomed.is_empty() {
        return;
    }
    match s3.delete_all(&doomed) {
        Ok(()) => {
            tracing::info!(job_id = %cleanup.job_id, removed = doomed.len(), "job objects cleaned")
        }
        Err(error) => {
            tracing::warn!(job_id = %cleanup.job_id, %error, "cleaning the job's objects failed")
        }
    }
}
