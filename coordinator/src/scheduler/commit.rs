//! Reports, commits and failures: fencing by attempt, journaling the commit before its
//! files are renamed into place (so a retried report or a restart finishes the same commit
//! instead of failing it), the failure limit, lost intermediates, the end of a job.

use super::{AttemptCounts, Cleanup, FailureKind, TaskResult, Transition, cleanup_scope};
use crate::journal::{Counters, JournalError, Record, StoredEnding, StoredJobEnd, StoredSkipped};
use crate::state::{AttemptId, AttemptOutcome, TaskKind, TaskState, millis, task_label};
use mr_common::DataDir;
use mr_common::data_dir::{intermediate_name, output_name};
use mr_storage::Storage;
use std::path::{Path, PathBuf};

/// A commit journaled but not yet finished: its files still to rename into place (after
/// the journal's sync), then the task's and job's progress to act on.
#[derive(Debug)]
pub(super) struct PendingCommit {
    job_id: String,
    kind: TaskKind,
    index: u32,
    attempt_id: AttemptId,
    files: Vec<(PathBuf, PathBuf)>,
}

impl Transition<'_> {
    /// Applies a report; returns whether it was accepted and, for an accepted success, the
    /// commit to finish with [`finish_commit`](Self::finish_commit) once the journal is
    /// synced.
    pub(super) fn report(
        &mut self,
        worker: &str,
        attempt_id: AttemptId,
        result: TaskResult,
    ) -> Result<(bool, Option<PendingCommit>), JournalError> {
        let Some(at) = self.inner.state.attempt_ref(attempt_id).cloned() else {
            tracing::warn!(
                attempt = attempt_id,
                worker,
                "report for an unknown attempt ignored"
            );
            return Ok((false, None));
        };
        let job_id = at.job.clone();
        let label = task_label(at.kind, at.index);
        let _span = tracing::info_span!("report", job_id = %job_id, task = %label, attempt = attempt_id, worker).entered();
        let Some(job) = self.inner.state.job(&job_id) else {
            return Ok((false, None));
        };
        let current = !job.state.is_terminal()
            && job.tasks(at.kind)[at.index as usize]
                .attempt(attempt_id)
                .is_some_and(|a| a.outcome == AttemptOutcome::Running);
        if !current {
            tracing::info!("late report of a superseded attempt ignored");
            return Ok((false, None));
        }
        let n_reduce = job.spec.n_reduce;
        match result {
            TaskResult::Succeeded {
                partitions,
                skipped,
                counts,
            } => {
                // Only a committed attempt's skips count, and all of them together stay
                // within the job's budget; past it, the attempt fails as the app's error.
                let left = job.skip_budget_left();
                if skipped.len() as u64 > left {
                    let record = &skipped[left as usize];
                    let error = format!(
                        "skipping {} would take the job past max_skipped_records = {} \
                         ({} skipped already, this attempt skipped {}); the app's error \
                         there: {}",
                        describe_skipped(record),
                        job.spec.max_skipped_records,
                        job.skipped_records,
                        skipped.len(),
                        record.error
                    );
                    tracing::warn!(%error, "skipped records over the job's budget");
                    self.fail(
                        &job_id,
                        at.kind,
                        at.index,
                        attempt_id,
                        FailureKind::App,
                        error,
                        &[],
                    )?;
                    return Ok((true, None));
                }
                if !skipped.is_empty() {
                    tracing::warn!(
                        skipped = skipped.len(),
                        first = %describe_skipped(&skipped[0]),
                        "the attempt skipped records the app failed on"
                    );
                }
                let files = match commit_files(
                    Files {
                        data: self.data,
                        store: &self.config.storage,
                    },
                    &job_id,
                    n_reduce,
                    at.kind,
                    at.index,
                    attempt_id,
                    &partitions,
                ) {
                    Ok(files) => files,
                    Err(error) => {
                        tracing::error!(%error, "the attempt's files cannot be committed");
                        self.fail(
                            &job_id,
                            at.kind,
                            at.index,
                            attempt_id,
                            FailureKind::Io,
                            error,
                            &[],
                        )?;
                        return Ok((true, None));
                    }
                };
                let all = partitions.len() == n_reduce as usize;
                // Journal first: once the commit is durable, the renames below are only
                // finishing it, and a restart finishes them too (see recovery).
                let split_bytes = job.tasks(at.kind)[at.index as usize]
                    .split
                    .as_ref()
                    .map_or(0, |s| s.length);
                self.record(Record::TaskCommitted {
                    job_id: job_id.clone(),
                    kind: at.kind.into(),
                    index: at.index,
                    attempt_id,
                    partitions: (at.kind == TaskKind::Map && !all).then_some(partitions),
                    at_ms: millis(self.wall),
                    skipped,
                    counters: counters(at.kind, split_bytes, counts),
                })?;
                return Ok((
                    true,
                    Some(PendingCommit {
                        job_id,
                        kind: at.kind,
                        index: at.index,
                        attempt_id,
                        files,
                    }),
                ));
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
        Ok((true, None))
    }

    /// Renames a journaled commit's files into place, then moves the job on (the next
    /// phase, or its end). A rename that fails sends the task back to Idle.
    pub(super) fn finish_commit(&mut self, commit: PendingCommit) -> Result<(), JournalError> {
        let PendingCommit {
            job_id,
            kind,
            index,
            attempt_id,
            files,
        } = commit;
        let _span = tracing::info_span!("commit", job_id = %job_id, task = %task_label(kind, index), attempt = attempt_id).entered();
        let at = Files {
            data: self.data,
            store: &self.config.storage,
        };
        if let Err(error) = rename_all(at, &files) {
            tracing::error!(%error, "renaming committed files failed; the task runs again");
            self.record(Record::TasksReset {
                job_id,
                kind: kind.into(),
                indices: vec![index],
            })?;
            self.work_ready = true;
            return Ok(());
        }
        tracing::info!("task finished");
        let Some(job) = self.inner.state.job(&job_id) else {
            return Ok(());
        };
        if job.state.is_terminal() {
            // Another commit of the same batch ended it.
            return Ok(());
        }
        if kind == TaskKind::Map && job.maps_done() {
            tracing::info!("map phase done");
            self.work_ready = true;
        }
        if job.reduces_done() && job.maps_done() {
            tracing::info!(outputs = job.spec.n_reduce, "job succeeded");
            self.end_job(&job_id, StoredJobEnd::Succeeded, String::new())?;
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn fail(
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
        let Some(job) = self.inner.state.job(job_id) else {
            return Ok(());
        };
        let task = &job.tasks(task_kind)[index as usize];
        // Lost intermediates are not counted against a reduce, but one that keeps finding
        // them must not send maps round forever: it gets as many such reports as failures.
        // (A failed attempt that did not count is exactly such a report.)
        let failed = task
            .attempts
            .iter()
            .filter(|a| a.outcome == AttemptOutcome::Failed)
            .count() as u32;
        let times = match kind {
            FailureKind::BadIntermediate => failed.saturating_sub(task.failures),
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

    pub(super) fn end_job(
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
        let at = self.now + self.config.intermediate_retention;
        self.schedule_cleanup(
            at,
            Cleanup {
                job_id: job_id.to_string(),
                scope: cleanup_scope(end),
            },
        );
        self.work_ready = true;
        Ok(())
    }
}

/// Names of the built-in counters (`Job.counters` in the API).
pub(crate) mod counter {
    pub const MAP_INPUT_BYTES: &str = "mr.map_input_bytes";
    pub const MAP_OUTPUT_RECORDS: &str = "mr.map_output_records";
    pub const REDUCE_INPUT_RECORDS: &str = "mr.reduce_input_records";
    pub const REDUCE_GROUPS: &str = "mr.reduce_groups";
    pub const OUTPUT_BYTES: &str = "mr.output_bytes";
    /// Every built-in, for the journal's shared names.
    pub const ALL: [&str; 5] = [
        MAP_INPUT_BYTES,
        MAP_OUTPUT_RECORDS,
        REDUCE_INPUT_RECORDS,
        REDUCE_GROUPS,
        OUTPUT_BYTES,
    ];
    /// Most app counters one attempt may add (the worker enforces the same).
    pub const MAX_USER: usize = 64;
    pub const MAX_NAME: usize = 128;
}

/// A committed attempt's counters: the built-ins of its kind, then the app's own (at most
/// [`counter::MAX_USER`] of them, none named like a built-in).
fn counters(kind: TaskKind, split_bytes: u64, counts: AttemptCounts) -> Counters {
    let user = counts
        .user
        .into_iter()
        .filter(|(name, _)| {
            !name.starts_with("mr.") && !name.is_empty() && name.len() <= counter::MAX_NAME
        })
        .take(counter::MAX_USER);
    let builtins = match kind {
        TaskKind::Map => [
            (counter::MAP_INPUT_BYTES, split_bytes),
            (counter::MAP_OUTPUT_RECORDS, counts.records_out),
        ]
        .to_vec(),
        TaskKind::Reduce => [
            (counter::REDUCE_INPUT_RECORDS, counts.records_in),
            (counter::REDUCE_GROUPS, counts.records_out),
            (counter::OUTPUT_BYTES, counts.output_bytes),
        ]
        .to_vec(),
    };
    user.chain(
        builtins
            .into_iter()
            .map(|(name, value)| (name.to_string(), value)),
    )
    .collect()
}

/// A skipped record in messages: `input/f.txt@1234` (a map's line) or `key "k"` (a reduce's).
pub(crate) fn describe_skipped(record: &StoredSkipped) -> String {
    if record.input.is_empty() {
        format!("key {:?}", record.key)
    } else {
        format!("{}@{}", record.input, record.offset)
    }
}

/// The (temp, final) paths of an attempt's files (a map's: those of `partitions`), once
/// checked: the partitions must be ascending and in range, and every temp file there.
pub(super) fn commit_files(
    Files { data, store }: Files<'_>,
    job_id: &str,
    n_reduce: u32,
    kind: TaskKind,
    index: u32,
    attempt_id: AttemptId,
    partitions: &[u32],
) -> Result<Vec<(PathBuf, PathBuf)>, String> {
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
    let dir = data.job_dir(job_id);
    let files: Vec<(PathBuf, PathBuf)> = names
        .iter()
        .map(|name| {
            let final_path = dir.join(name);
            (DataDir::attempt_tmp(&final_path, attempt_id), final_path)
        })
        .collect();
    let temps: Vec<&Path> = files.iter().map(|(tmp, _)| tmp.as_path()).collect();
    for (tmp, found) in temps.iter().zip(exists_each(Files { data, store }, &temps)) {
        match found {
            Ok(true) => {}
            Ok(false) => return Err(format!("committing {}: not found", shown(data, store, tmp))),
            Err(e) => return Err(format!("committing: {e}")),
        }
    }
    Ok(files)
}

/// Gives each temp file its final name: a rename in the data folder; on S3, a copy to the
/// final key, then the attempt's key deleted ([`mr_storage::S3Store::promote`], which a
/// retry after a crash between the two finishes).
pub(super) fn rename_all(
    Files { data, store }: Files<'_>,
    files: &[(PathBuf, PathBuf)],
) -> Result<(), String> {
    match store {
        Storage::Local => {
            for (tmp, final_path) in files {
                std::fs::rename(tmp, final_path)
                    .map_err(|e| format!("committing {}: {e}", tmp.display()))?;
            }
        }
        // The objects' copies and deletes all in flight together.
        Storage::S3(s3) => {
            let key = |p: &Path| data.key_of(p).map_err(|e| e.to_string());
            let pairs = files
                .iter()
                .map(|(tmp, final_path)| Ok((key(tmp)?, key(final_path)?)))
                .collect::<Result<Vec<_>, String>>()?;
            for promoted in s3.promote_each(pairs) {
                promoted.map_err(|e| format!("committing: {e}"))?;
            }
        }
    }
    Ok(())
}

/// Where a job's files are: their names in the data folder, on its storage.
#[derive(Clone, Copy)]
pub(super) struct Files<'a> {
    pub data: &'a DataDir,
    pub store: &'a Storage,
}

/// Whether `path` (in the data folder's layout) is there, on the job's storage.
pub(super) fn exists(files: Files<'_>, path: &Path) -> Result<bool, String> {
    exists_each(files, &[path]).remove(0)
}

/// [`exists`] for each path (on S3, the requests concurrent).
fn exists_each(Files { data, store }: Files<'_>, paths: &[&Path]) -> Vec<Result<bool, String>> {
    match store {
        Storage::Local => paths
            .iter()
            .map(|path| Ok(std::fs::symlink_metadata(path).is_ok()))
            .collect(),
        Storage::S3(s3) => {
            let keys: Result<Vec<String>, String> = paths
                .iter()
                .map(|path| data.key_of(path).map_err(|e| e.to_string()))
                .collect();
            match keys {
                Ok(keys) => s3
                    .exists_each(keys)
                    .into_iter()
                    .map(|found| found.map_err(|e| e.to_string()))
                    .collect(),
                Err(e) => paths.iter().map(|_| Err(e.clone())).collect(),
            }
        }
    }
}

/// `path` for messages: the path, or the object's `s3://` URL.
fn shown(data: &DataDir, store: &Storage, path: &Path) -> String {
    match (store, data.key_of(path)) {
        (Storage::S3(s3), Ok(key)) => s3.object_url(&key),
        _ => path.display().to_string(),
    }
}
