//! Which task a worker gets: the lowest Idle task of the oldest job that has one (maps
//! before reduces), or else a backup copy of a straggler near the end of a phase. Both are
//! found through the state's indexes, never by scanning every task.

use super::{Assignment, Transition};
use crate::journal::{JournalError, Record};
use crate::state::{JobId, Split, TaskKind, millis};

impl Transition<'_> {
    pub(super) fn assign(&mut self, worker: &str) -> Result<Option<Assignment>, JournalError> {
        let Some((job_id, kind, index, backup)) = self.choose(worker) else {
            return Ok(None);
        };
        let attempt_id = self.inner.state.next_attempt();
        let Some(job) = self.inner.state.job(&job_id) else {
            return Ok(None);
        };
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
        Ok(Some(assignment))
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
