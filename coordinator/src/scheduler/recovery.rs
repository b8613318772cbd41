//! Start-up: the snapshot and journal are replayed into the state, then checked against the
//! data folder. Running attempts get a fresh deadline (their workers may still report);
//! a committed task whose files are not in place has its commit finished from the winning
//! attempt's temp files (the coordinator died between journaling a commit and renaming) or,
//! failing that, runs again; ended jobs' folders are swept; the journal is compacted.

use super::commit::{Files, exists, rename_all};
use super::timers::{cleanup_for, compact};
use super::{Inner, Scheduler};
use crate::config::CoordinatorConfig;
use crate::journal::{Journal, JournalError, Record};
use crate::state::{Job, State, Task, TaskKind, TaskState};
use mr_common::DataDir;
use mr_storage::Storage;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;
use tokio::sync::Notify;
use tokio::time::Instant;

impl Scheduler {
    /// Opens the journal under `DATA/.mr`, replays it, and recovers (see the module doc).
    pub fn open(config: CoordinatorConfig, data: DataDir) -> Result<Self, JournalError> {
        let (journal, records) = Journal::open(&data.state_dir(), config.journal_sync)?;
        let now = Instant::now();
        let mut state = State::default();
        let replayed = records.len();
        for record in records {
            state.apply(record, now, config.task_timeout);
        }
        let mut inner = Inner {
            state,
            journal,
            last_worker_seen: now,
            warned: false,
            cleanups: BTreeMap::new(),
            cleanup_seq: 0,
            retention_check: now,
        };
        let mut cleanups = Vec::new();
        let mut resets = Vec::new();
        for job in inner.state.jobs() {
            if job.state.is_terminal() {
                cleanups.push(cleanup_for(&job.id, job.state));
                continue;
            }
            for kind in [TaskKind::Map, TaskKind::Reduce] {
                let lost: Vec<u32> = job
                    .tasks(kind)
                    .iter()
                    .filter(|t| t.state == TaskState::Completed)
                    .filter(|t| !finish_commit(&data, &config.storage, job, t))
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
        for (seq, cleanup) in cleanups.into_iter().enumerate() {
            inner.cleanups.insert((now, seq as u64), cleanup);
        }
        inner.cleanup_seq = inner.cleanups.len() as u64;
        for record in resets {
            tracing::warn!(
                ?record,
                "completed tasks lost their files; they will run again"
            );
            inner.journal.append(&record)?;
            inner.state.apply(record, now, config.task_timeout);
        }
        inner.journal.sync()?;
        if replayed > 0 || inner.journal.has_tail() {
            let active = inner.state.active_jobs().count();
            tracing::info!(
                records = replayed,
                jobs = inner.state.len(),
                active,
                "state recovered from the journal"
            );
        }
        if inner.journal.has_tail() {
            compact(&mut inner, &config);
        }
        Ok(Self {
            config,
            data,
            inner: Mutex::new(inner),
            work_ready: Notify::new(),
            deadline_set: Notify::new(),
        })
    }
}

/// Whether a completed task's files are in place, after finishing its commit from the
/// committed attempt's temp files where those are still there.
fn finish_commit(data: &DataDir, store: &Storage, job: &Job, task: &Task) -> bool {
    let files = files_of(data, job, task);
    // Unknown (S3 unreachable) counts as missing: the commit is finished again, or the
    // task reset, either of which is safe.
    let at = Files { data, store };
    let there = |f: &PathBuf| exists(at, f).unwrap_or(false);
    let missing: Vec<PathBuf> = files.into_iter().filter(|f| !there(f)).collect();
    if missing.is_empty() {
        return true;
    }
    let Some(winner) = task.committed() else {
        return false;
    };
    let pending: Vec<(PathBuf, PathBuf)> = missing
        .into_iter()
        .map(|f| (DataDir::attempt_tmp(&f, winner.id), f))
        .collect();
    match rename_all(at, &pending) {
        Ok(()) => {
            tracing::info!(job_id = %job.id, task = %task.label(), attempt = winner.id, "an interrupted commit was finished");
            true
        }
        Err(_) => false,
    }
}

/// The files a completed task stands for.
fn files_of(data: &DataDir, job: &Job, task: &Task) -> Vec<PathBuf> {
    match task.kind {
        TaskKind::Map => (0..job.spec.n_reduce)
            .filter(|&y| task.wrote_partition(y))
            .map(|y| data.intermediate(&job.id, task.index, y))
            .collect(),
        TaskKind::Reduce => vec![data.output(&job.id, task.index)],
    }
}
