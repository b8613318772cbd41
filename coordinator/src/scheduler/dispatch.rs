//! Which task a worker gets: the first Idle task of the oldest job that has one (maps
//! before reduces; the map with the largest split first, then the lowest index: see
//! [`Job::first_idle`](crate::state::Job::first_idle)), or else a backup copy of a
//! straggler near the end of a phase. Both are found through the state's indexes, never by
//! scanning every task.
//!
//! Batches: a worker that asks for several tasks gets, after the first, the next Idle maps
//! of the same job while their splits add up to at most `batch_bytes`, and never more than
//! an eighth of what the phase still has Idle (so the end of a phase spreads over every
//! worker). Each task of a batch is its own attempt, fenced and timed out as any other.

use super::{Assignment, Transition};
use crate::journal::{JournalError, Record};
use crate::state::{JobId, Split, TaskKind, millis};

impl Transition<'_> {
    /// Up to `max` tasks for `worker` (see the module doc); empty when none is ready.
    pub(super) fn assign_batch(
        &mut self,
        worker: &str,
        max: u32,
    ) -> Result<Vec<Assignment>, JournalError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let Some(first) = self.assign(worker)? else {
            return Ok(Vec::new());
        };
        let budget = self.config.batch_bytes;
        let max = max.min(crate::config::MAX_BATCH_TASKS) as usize;
        let mut bytes = first.split.as_ref().map_or(u64::MAX, |s| s.length);
        let job_id = first.job_id.clone();
        let mut batch = vec![first];
        while batch.len() < max && bytes <= budget {
            let Some(job) = self.inner.state.job(&job_id) else {
                break;
            };
            if job.current_phase() != TaskKind::Map {
                break;
            }
            let Some(index) = job.first_idle(TaskKind::Map) else {
                break;
            };
            let idle = job.progress(TaskKind::Map).idle as usize;
            let length = job.tasks(TaskKind::Map)[index as usize]
                .split
                .as_ref()
                .map_or(u64::MAX, |s| s.length);
            if batch.len() > idle / 8 || bytes.saturating_add(length) > budget {
                break;
            }
            bytes += length;
            batch.push(self.assign_task(worker, job_id.clone(), TaskKind::Map, index, false)?);
        }
        Ok(batch)
    }

    pub(super) fn assign(&mut self, worker: &str) -> Result<Option<Assignment>, JournalError> {
        let Some((job_id, kind, index, backup)) = self.choose(worker) else {
            return Ok(None);
        };
        self.assign_task(worker, job_id, kind, index, backup)
            .map(Some)
    }

    /// Hands out one chosen Idle (or, as a backup, running) task as a new attempt.
    fn assign_task(
        &mut self,
        worker: &str,
        job_id: JobId,
        kind: TaskKind,
        index: u32,
        backup: bool,
    ) -> Result<Assignment, JournalError> {
        let attempt_id = self.inner.state.next_attempt();
        let job = self
            .inner
            .state
            .job(&job_id)
            .expect("a chosen task's job exists");
        let task = &job.tasks(kind)[index as usize];
        let map_tasks = match kind {
            TaskKind::Map => Vec::new(),
            TaskKind::Reduce => job
                .maps
                .iter()
                .filter(|m| m.wrote_partition(index))
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
            index,
            split: task.split.clone(),
            map_tasks,
            skip_budget: job.skip_budget_left(),
        };
        self.record(Record::TaskAssigned {
            job_id,
            kind: kind.into(),
            index,
            attempt_id,
            worker: worker.to_string(),
            backup,
            at_ms: millis(self.wall),
        })?;
        Ok(assignment)
    }

    /// The next task for `worker` and whether it is a backup copy.
    fn choose(&self, worker: &str) -> Option<(JobId, TaskKind, u32, bool)> {
        let state = &self.inner.state;
        if let Some(job) = state.first_ready() {
            let kind = job.current_phase();
            if let Some(index) = job.first_idle(kind) {
                return Some((job.id.clone(), kind, index, false));
            }
        }
        state.active_jobs().find_map(|job| {
            let kind = job.current_phase();
            let index = self.straggler(job, kind, worker)?;
            Some((job.id.clone(), kind, index, true))
        })
    }

    /// The longest-running task of a phase with nothing left to hand out, if it runs on
    /// one other worker for more than twice the phase's median task time (at least
    /// `backup_min_runtime`): the paper's backup tasks. Walks the running attempts oldest
    /// first and stops at the first young enough to be no straggler.
    fn straggler(&self, job: &crate::state::Job, kind: TaskKind, worker: &str) -> Option<u32> {
        if job.first_idle(kind).is_some() {
            return None;
        }
        let typical = job
            .typical_duration(kind)
            .map(|d| d * 2)
            .unwrap_or(self.config.task_timeout / 2);
        let threshold = typical.max(self.config.backup_min_runtime);
        for &(started, attempt_id) in job.running_by_age(kind) {
            let age = self.now.saturating_duration_since(started);
            if age < threshold {
                return None;
            }
            let Some(at) = self.inner.state.attempt_ref(attempt_id) else {
                continue;
            };
            let task = &job.tasks(kind)[at.index as usize];
            let mut running = task.running();
            let (Some(only), None) = (running.next(), running.next()) else {
                continue;
            };
            if only.worker != worker {
                return Some(task.index);
            }
        }
        None
    }
}
