//! `WatchJob` streams, bounded in number and in size.
//!
//! - Each stream builds its next update only when the transport asks for it (HTTP/2 flow
//!   control stops asking while the client does not read), from the job as it is then: an
//!   unread stream holds at most the one update already handed to the transport, and the
//!   changes meanwhile fold into the next.
//! - A detailed update carries one page of task records (`task_offset`, `task_page_size` up
//!   to [`MAX_WATCH_TASK_PAGE`]), not the whole job.
//! - Open streams are capped per client (by IP address) and in total
//!   ([`CoordinatorConfig::max_watch_streams_per_client`], [`CoordinatorConfig::max_watch_streams`]);
//!   over a cap the call gets `RESOURCE_EXHAUSTED` naming it.

use crate::config::{CoordinatorConfig, MAX_WATCH_TASK_PAGE};
use crate::error::CoordinatorError;
use crate::scheduler::{Job, Scheduler};
use mr_proto::v1 as pb;
use std::collections::HashMap;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use tokio::sync::watch;
use tonic::Status;

/// The stream a `WatchJob` call answers with.
pub type WatchStream = Pin<Box<dyn futures::Stream<Item = Result<pb::Job, Status>> + Send>>;

/// Which task records a detailed update carries: `size` of them from `offset`, in the
/// order `GetJob` lists them (maps by index, then reduces).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TaskWindow {
    pub offset: usize,
    pub size: usize,
}

impl TaskWindow {
    /// The window a request asks for; a page size of 0 or above the cap is the cap.
    pub fn new(offset: u32, page_size: u32) -> Self {
        let size = match page_size {
            0 => MAX_WATCH_TASK_PAGE,
            n => n.min(MAX_WATCH_TASK_PAGE),
        };
        Self {
            offset: offset as usize,
            size: size as usize,
        }
    }
}

/// Counts of open streams, to enforce the caps.
#[derive(Debug)]
pub struct WatchLimits {
    total_cap: usize,
    per_client_cap: usize,
    open: Mutex<Open>,
}

#[derive(Debug, Default)]
struct Open {
    total: usize,
    per_client: HashMap<Option<IpAddr>, usize>,
}

impl WatchLimits {
    pub fn new(config: &CoordinatorConfig) -> Arc<Self> {
        Arc::new(Self {
            total_cap: config.max_watch_streams,
            per_client_cap: config.max_watch_streams_per_client,
            open: Mutex::new(Open::default()),
        })
    }

    /// A slot for one more stream of `client`, or the cap that is reached.
    pub fn acquire(
        self: &Arc<Self>,
        client: Option<IpAddr>,
    ) -> Result<WatchSlot, CoordinatorError> {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        if open.total >= self.total_cap {
            return Err(CoordinatorError::TooManyWatches {
                limit: self.total_cap,
                scope: "in all",
                setting: "--max-watch-streams",
            });
        }
        let mine = open.per_client.entry(client).or_default();
        if *mine >= self.per_client_cap {
            return Err(CoordinatorError::TooManyWatches {
                limit: self.per_client_cap,
                scope: "per client",
                setting: "--max-watch-streams-per-client",
            });
        }
        *mine += 1;
        open.total += 1;
        Ok(WatchSlot {
            limits: self.clone(),
            client,
        })
    }

    /// Streams open now.
    #[cfg(test)]
    pub fn open(&self) -> usize {
        self.open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .total
    }
}

/// One open stream's place under the caps; freed when the stream is dropped.
#[derive(Debug)]
pub struct WatchSlot {
    limits: Arc<WatchLimits>,
    client: Option<IpAddr>,
}

impl Drop for WatchSlot {
    fn drop(&mut self) {
        let mut open = self
            .limits
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        open.total = open.total.saturating_sub(1);
        if let Some(mine) = open.per_client.get_mut(&self.client) {
            *mine = mine.saturating_sub(1);
            if *mine == 0 {
                open.per_client.remove(&self.client);
            }
        }
    }
}

/// What one stream needs between updates.
struct Watcher {
    scheduler: Arc<Scheduler>,
    job_id: String,
    window: Option<TaskWindow>,
    changes: watch::Receiver<u64>,
    shutdown: watch::Receiver<bool>,
    _slot: WatchSlot,
    first: bool,
    done: bool,
}

/// The job now, then after each change, until it ends or the coordinator stops. Each update
/// is built when the transport polls for it.
pub fn stream(
    scheduler: Arc<Scheduler>,
    job_id: String,
    window: Option<TaskWindow>,
    changes: watch::Receiver<u64>,
    shutdown: watch::Receiver<bool>,
    slot: WatchSlot,
) -> WatchStream {
    let watcher = Watcher {
        scheduler,
        job_id,
        window,
        changes,
        shutdown,
        _slot: slot,
        first: true,
        done: false,
    };
    Box::pin(futures::stream::unfold(watcher, |mut w| async move {
        if w.done {
            return None;
        }
        if !w.first {
            tokio::select! {
                changed = w.changes.changed() => if changed.is_err() { return None },
                _ = w.shutdown.changed() => {
                    w.done = true;
                    return Some((Err(Status::unavailable("coordinator is shutting down")), w));
                }
            }
        }
        w.first = false;
        w.changes.borrow_and_update();
        let window = w.window;
        let (job, ended) = w.scheduler.with_job(&w.job_id, |job| {
            (snapshot(job, window), job.state.is_terminal())
        })?;
        w.done = ended;
        Some((Ok(job), w))
    }))
}

/// The job as an update shows it: state, progress and outputs, and with a window the task
/// records in it.
fn snapshot(job: &Job, window: Option<TaskWindow>) -> pb::Job {
    let tasks = match window {
        Some(w) => crate::service::Tasks::Page {
            start: w.offset,
            size: w.size,
        },
        None => crate::service::Tasks::None,
    };
    crate::service::job_to_proto(job, tasks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_per_client_and_in_all_and_slots_are_given_back() {
        let limits = WatchLimits::new(&CoordinatorConfig {
            max_watch_streams: 3,
            max_watch_streams_per_client: 2,
            ..CoordinatorConfig::default()
        });
        let a = Some(IpAddr::from([127, 0, 0, 1]));
        let b = Some(IpAddr::from([127, 0, 0, 2]));
        let a1 = limits.acquire(a).expect("a1");
        let _a2 = limits.acquire(a).expect("a2");
        let err = limits.acquire(a).expect_err("a3");
        assert!(matches!(
            err,
            CoordinatorError::TooManyWatches { limit: 2, .. }
        ));
        let _b1 = limits.acquire(b).expect("b1");
        let err = limits.acquire(b).expect_err("total");
        assert!(matches!(
            err,
            CoordinatorError::TooManyWatches { limit: 3, .. }
        ));
        let status = Status::from(err);
        assert_eq!(status.code(), tonic::Code::ResourceExhausted);
        assert!(status.message().contains("--max-watch-streams"));
        drop(a1);
        assert_eq!(limits.open(), 2);
        limits.acquire(a).expect("a slot was given back");
    }

    #[test]
    fn pages_are_capped() {
        assert_eq!(TaskWindow::new(7, 0).size, MAX_WATCH_TASK_PAGE as usize);
        assert_eq!(TaskWindow::new(7, 10).size, 10);
        assert_eq!(
            TaskWindow::new(7, u32::MAX).size,
            MAX_WATCH_TASK_PAGE as usize
        );
    }
}
