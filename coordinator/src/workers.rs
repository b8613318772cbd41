//! The workers as the coordinator sees them (`ListWorkers`): who called in, from where,
//! when first and last, what each holds now and how many attempts each reported.
//!
//! Not durable and not part of scheduling: workers are stateless and call in at least
//! every long poll, so a restarted coordinator knows them again within seconds. Updated by
//! the service after each worker call; a worker silent for longer than the task timeout is
//! shown as lost (its attempts time out then too).

use crate::scheduler::{Assignment, AttemptId};
use crate::state::{millis, task_label};
use mr_proto::v1 as pb;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

/// Most workers remembered; past it the one silent longest is forgotten.
pub const MAX_WORKERS: usize = 10_000;

#[derive(Debug, Clone)]
struct Seen {
    host: String,
    first: SystemTime,
    last: SystemTime,
    /// The attempts it holds, with their tasks as "<job_id>/map-3" (the first one runs).
    holds: Vec<(AttemptId, String)>,
    succeeded: u64,
    failed: u64,
    /// Long polls under way: a worker waiting for a task is alive, however long it waits.
    polls: u32,
    /// Its compiled-app cache as it last said: hits, misses (compilations).
    compile_cache: (u64, u64),
}

/// Every worker heard from, by id.
#[derive(Debug, Default)]
pub struct Workers {
    seen: Mutex<BTreeMap<String, Seen>>,
}

impl Workers {
    /// A `RequestTask` long poll starts: the worker holds nothing and counts as alive until
    /// the returned guard is dropped (answered, or the call abandoned).
    pub fn polling<'a>(&'a self, worker: &'a str, host: Option<SocketAddr>) -> Polling<'a> {
        self.called(worker, host, |s| {
            s.holds.clear();
            s.polls += 1;
        });
        Polling {
            workers: self,
            worker,
        }
    }

    /// A `RequestTask` answered with `tasks` (the worker held nothing when it asked).
    pub fn requested(&self, worker: &str, host: Option<SocketAddr>, tasks: &[Assignment]) {
        self.called(worker, host, |s| {
            s.holds = tasks.iter().map(held).collect();
        });
    }

    /// Reports of attempts (`true`: succeeded), answered with the `next` tasks.
    pub fn reported(
        &self,
        worker: &str,
        host: Option<SocketAddr>,
        reports: &[(AttemptId, bool)],
        next: &[Assignment],
    ) {
        self.called(worker, host, |s| {
            for &(attempt, succeeded) in reports {
                s.holds.retain(|(held, _)| *held != attempt);
                if succeeded {
                    s.succeeded += 1;
                } else {
                    s.failed += 1;
                }
            }
            s.holds.extend(next.iter().map(held));
        });
    }

    /// What a worker said of its compiled-app cache (hits, misses since it started).
    pub fn compile_cache(&self, worker: &str, hits: u64, misses: u64) {
        self.called(worker, None, |s| s.compile_cache = (hits, misses));
    }

    /// The compiled-app cache figures of every worker heard from, summed (a restarted
    /// worker starts again from 0).
    pub fn compile_cache_totals(&self) -> (u64, u64) {
        let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.values().fold((0, 0), |(h, m), s| {
            (h + s.compile_cache.0, m + s.compile_cache.1)
        })
    }

    /// A heartbeat; `dropped`: the attempts it holds that are no longer wanted.
    pub fn heartbeat(&self, worker: &str, host: Option<SocketAddr>, dropped: &[AttemptId]) {
        self.called(worker, host, |s| {
            s.holds.retain(|(held, _)| !dropped.contains(held));
        });
    }

    fn called(&self, worker: &str, host: Option<SocketAddr>, update: impl FnOnce(&mut Seen)) {
        let now = SystemTime::now();
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if !seen.contains_key(worker)
            && seen.len() >= MAX_WORKERS
            && let Some(oldest) = seen
                .iter()
                .min_by_key(|(_, s)| s.last)
                .map(|(id, _)| id.clone())
        {
            seen.remove(&oldest);
        }
        let record = seen.entry(worker.to_string()).or_insert_with(|| Seen {
            host: String::new(),
            first: now,
            last: now,
            holds: Vec::new(),
            succeeded: 0,
            failed: 0,
            polls: 0,
            compile_cache: (0, 0),
        });
        record.last = now;
        if let Some(addr) = host {
            record.host = addr.ip().to_string();
        }
        update(record);
    }

    /// The workers by id; those silent for longer than `lost_after` are LOST.
    pub fn list(&self, lost_after: Duration) -> Vec<pb::WorkerInfo> {
        let now = SystemTime::now();
        let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.iter()
            .map(|(id, s)| {
                let silent = now.duration_since(s.last).unwrap_or_default();
                let state = if silent > lost_after && s.polls == 0 {
                    pb::WorkerState::Lost
                } else if s.holds.is_empty() {
                    pb::WorkerState::Idle
                } else {
                    pb::WorkerState::Busy
                };
                pb::WorkerInfo {
                    id: id.clone(),
                    host: s.host.clone(),
                    first_seen_ms: millis(s.first),
                    last_seen_ms: millis(s.last),
                    current_task: match (state, s.holds.first()) {
                        (pb::WorkerState::Busy, Some((_, task))) => task.clone(),
                        _ => String::new(),
                    },
                    tasks_succeeded: s.succeeded,
                    tasks_failed: s.failed,
                    state: state.into(),
                }
            })
            .collect()
    }
}

fn held(task: &Assignment) -> (AttemptId, String) {
    (
        task.attempt_id,
        format!("{}/{}", task.job_id, task_label(task.kind, task.index)),
    )
}

/// A long poll under way (see [`Workers::polling`]).
pub struct Polling<'a> {
    workers: &'a Workers,
    worker: &'a str,
}

impl Drop for Polling<'_> {
    fn drop(&mut self) {
        self.workers.called(self.worker, None, |s| {
            s.polls = s.polls.saturating_sub(1);
        });
    }
}
