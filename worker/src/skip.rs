//! Skipping bad records (Google MapReduce §4.6, Hadoop's `SkipBadRecords`).
//!
//! When the app fails on a map split or a reduce batch and the job allows skipping, the
//! task narrows the failure down in the same attempt: it bisects the items (a split's lines,
//! a batch's key groups), calling the app on each half (a fresh instance each time), down
//! to the single items the app still fails on alone. Those are skipped; every other item is
//! processed exactly once, in order. With `k` bad items of `n` that is about
//! `2·k·log2(n)` calls, and it stops as soon as more than the budget are found.
//!
//! Only a trap (the app's panic, `mr.fail`, any Wasm trap) or the memory limit marks a
//! record bad, and only when it reproduces on that record alone. A time limit, an ABI
//! breach or a cancellation ends the task as without skipping: the calls share the task's
//! one time budget ([`TaskClock`]).

use crate::app_runtime::{AppError, Limits};
use std::ops::Range;
use std::time::{Duration, Instant};

/// Bytes of a key or an error message a skipped record keeps.
pub const MAX_RECORD_TEXT: usize = 256;

/// A record skipped: a map's line (input file and byte offset) or a reduce's key.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SkippedRecord {
    /// Map tasks: the input file, relative to the data folder.
    pub input: String,
    /// Map tasks: the byte offset of the line in the file.
    pub offset: u64,
    /// Reduce tasks: the key (at most [`MAX_RECORD_TEXT`] bytes, lossy UTF-8).
    pub key: String,
    /// The app's error on this record alone (at most [`MAX_RECORD_TEXT`] bytes).
    pub error: String,
}

impl SkippedRecord {
    /// A map's line.
    pub fn line(input: &str, offset: u64, error: &AppError) -> Self {
        Self {
            input: input.to_string(),
            offset,
            key: String::new(),
            error: clip(error.to_string()),
        }
    }

    /// A reduce's key group.
    pub fn key(key: &[u8], error: &AppError) -> Self {
        let key = &key[..key.len().min(MAX_RECORD_TEXT)];
        Self {
            input: String::new(),
            offset: 0,
            key: clip(String::from_utf8_lossy(key).into_owned()),
            error: clip(error.to_string()),
        }
    }
}

impl std::fmt::Display for SkippedRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.input.is_empty() {
            write!(f, "key {:?}", self.key)
        } else {
            write!(f, "{}@{}", self.input, self.offset)
        }
    }
}

fn clip(mut text: String) -> String {
    if text.len() > MAX_RECORD_TEXT {
        let mut end = MAX_RECORD_TEXT;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

/// Whether an app error may be a bad record: a trap or the memory limit (narrowing then
/// shows whether it reproduces on one record alone).
pub fn is_record_failure(error: &AppError) -> bool {
    matches!(error, AppError::Trap { .. } | AppError::MemoryLimit { .. })
}

/// One time budget for every app call of a task, retries while narrowing included.
#[derive(Clone, Copy, Debug)]
pub struct TaskClock {
    limits: Limits,
    deadline: Option<Instant>,
}

impl TaskClock {
    /// Starts the task's clock now.
    pub fn start(limits: Limits) -> Self {
        Self {
            limits,
            deadline: Instant::now().checked_add(limits.time),
        }
    }

    /// The limits of the next call: the time left of the task's budget; a time-limit
    /// error (naming the task's whole limit) once none is left.
    pub fn limits(&self, app: &str) -> Result<Limits, AppError> {
        let Some(deadline) = self.deadline else {
            return Ok(self.limits);
        };
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(AppError::TimeLimit {
                app: app.to_string(),
                limit: self.limits.time,
            });
        }
        Ok(Limits {
            time: left,
            memory_bytes: self.limits.memory_bytes,
        })
    }

    /// Restates a call's time-limit error with the task's whole limit.
    pub fn error(&self, error: AppError) -> AppError {
        match error {
            AppError::TimeLimit { app, .. } => AppError::TimeLimit {
                app,
                limit: self.limits.time,
            },
            other => other,
        }
    }

    /// The task's whole time limit.
    pub fn time_limit(&self) -> Duration {
        self.limits.time
    }
}

/// What narrowing found.
#[derive(Debug)]
pub struct Narrowed<T> {
    /// The results of the calls that succeeded, with the items each covered, in order.
    pub done: Vec<(Range<usize>, T)>,
    /// The items the app failed on alone, in order, with its error on each.
    pub bad: Vec<(usize, AppError)>,
}

/// Why narrowing ended the task.
#[derive(Debug)]
pub enum NarrowError {
    /// A failure that is no bad record (time limit, ABI breach, cancellation).
    App(AppError),
    /// More bad items than the budget: `item` is the first one over it.
    OverBudget { item: usize, error: AppError },
}

/// Narrows a failure of the app on items `0..n` (`first` is its error there) down to the
/// single items it fails on, calling `call` on sub-ranges; at most `budget` may be bad.
pub fn narrow<T>(
    n: usize,
    first: AppError,
    budget: u64,
    call: &mut dyn FnMut(Range<usize>) -> Result<T, AppError>,
) -> Result<Narrowed<T>, NarrowError> {
    let mut out = Narrowed {
        done: Vec::new(),
        bad: Vec::new(),
    };
    if n == 0 {
        return Err(NarrowError::App(first));
    }
    bisect(0..n, Some(first), budget, call, &mut out)?;
    Ok(out)
}

fn bisect<T>(
    range: Range<usize>,
    known: Option<AppError>,
    budget: u64,
    call: &mut dyn FnMut(Range<usize>) -> Result<T, AppError>,
    out: &mut Narrowed<T>,
) -> Result<(), NarrowError> {
    if range.is_empty() {
        return Ok(());
    }
    let error = match known {
        Some(error) => error,
        None => match call(range.clone()) {
            Ok(result) => {
                out.done.push((range, result));
                return Ok(());
            }
            Err(error) if is_record_failure(&error) => error,
            Err(error) => return Err(NarrowError::App(error)),
        },
    };
    if range.len() == 1 {
        if out.bad.len() as u64 >= budget {
            return Err(NarrowError::OverBudget {
                item: range.start,
                error,
            });
        }
        out.bad.push((range.start, error));
        return Ok(());
    }
    let mid = range.start + range.len() / 2;
    bisect(range.start..mid, None, budget, call, out)?;
    bisect(mid..range.end, None, budget, call, out)
}

/// The start of each line of `contents` (a line ends after `\n`, the last one may not).
pub fn line_starts(contents: &[u8]) -> Vec<usize> {
    let mut starts = Vec::new();
    let mut at = 0;
    while at < contents.len() {
        starts.push(at);
        at = match contents[at..].iter().position(|&b| b == b'\n') {
            Some(i) => at + i + 1,
            None => contents.len(),
        };
    }
    starts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trap(msg: &str) -> AppError {
        AppError::Trap {
            app: "t".into(),
            message: msg.into(),
        }
    }

    /// An "app" over items `0..n` that fails on any range holding a bad item; counts calls.
    fn run(
        n: usize,
        bad: &[usize],
        budget: u64,
    ) -> (Result<Narrowed<Vec<usize>>, NarrowError>, usize) {
        let mut calls = 0;
        let mut app = |r: Range<usize>| {
            calls += 1;
            match r.clone().find(|i| bad.contains(i)) {
                Some(i) => Err(trap(&format!("bad {i}"))),
                None => Ok(r.collect::<Vec<_>>()),
            }
        };
        let result = narrow(n, trap("whole"), budget, &mut app);
        (result, calls)
    }

    #[test]
    fn every_good_item_is_processed_once_in_order_and_the_bad_ones_are_named() {
        for n in 1..40 {
            for bad in [vec![0], vec![n - 1], vec![n / 2], vec![0, n / 3, n - 1]] {
                let mut bad = bad;
                bad.dedup();
                let (result, calls) = run(n, &bad, bad.len() as u64);
                let narrowed = result.expect("within budget");
                let done: Vec<usize> = narrowed.done.iter().flat_map(|(_, v)| v.clone()).collect();
                let expected: Vec<usize> = (0..n).filter(|i| !bad.contains(i)).collect();
                assert_eq!(done, expected, "n {n} bad {bad:?}");
                for (range, items) in &narrowed.done {
                    assert_eq!(range.clone().collect::<Vec<_>>(), *items);
                }
                let found: Vec<usize> = narrowed.bad.iter().map(|(i, _)| *i).collect();
                assert_eq!(found, bad, "n {n}");
                // The error on the item alone (with one item, the first call's).
                for (i, error) in &narrowed.bad {
                    let alone = if n == 1 {
                        "whole".into()
                    } else {
                        format!("bad {i}")
                    };
                    assert_eq!(*error, trap(&alone));
                }
                // About 2·k·log2(n) calls, never one per item for large n.
                let bound = 2 * bad.len() * (usize::BITS - n.leading_zeros()) as usize + 2;
                assert!(calls <= bound, "n {n} bad {bad:?}: {calls} calls > {bound}");
            }
        }
    }

    #[test]
    fn more_bad_items_than_the_budget_stop_at_the_first_one_over_it() {
        let (result, _) = run(100, &[10, 20, 30], 2);
        match result {
            Err(NarrowError::OverBudget { item, error }) => {
                assert_eq!(item, 30);
                assert_eq!(error, trap("bad 30"));
            }
            other => panic!("expected over budget, got {other:?}"),
        }
    }

    #[test]
    fn a_time_limit_or_an_abi_breach_is_not_a_bad_record() {
        let limit = AppError::TimeLimit {
            app: "t".into(),
            limit: Duration::from_secs(1),
        };
        for error in [
            limit.clone(),
            AppError::Abi {
                app: "t".into(),
                message: "x".into(),
            },
        ] {
            let mut app = |r: Range<usize>| {
                if r.contains(&3) {
                    Err(error.clone())
                } else {
                    Ok(())
                }
            };
            match narrow(10, trap("whole"), 5, &mut app) {
                Err(NarrowError::App(e)) => assert_eq!(e, error),
                other => panic!("expected the error itself, got {other:?}"),
            }
        }
        // A memory limit that reproduces on one item alone is a bad record.
        let memory = AppError::MemoryLimit {
            app: "t".into(),
            limit_bytes: 1,
        };
        let mut app = |r: Range<usize>| {
            if r.contains(&3) {
                Err(memory.clone())
            } else {
                Ok(())
            }
        };
        let narrowed = narrow(10, memory.clone(), 1, &mut app).expect("skipped");
        assert_eq!(narrowed.bad, vec![(3, memory)]);
    }

    #[test]
    fn a_failure_on_nothing_is_returned_as_is() {
        let mut app = |_: Range<usize>| Ok(());
        assert!(matches!(
            narrow(0, trap("empty"), 5, &mut app),
            Err(NarrowError::App(_))
        ));
    }

    #[test]
    fn lines_start_after_each_newline() {
        assert_eq!(line_starts(b""), Vec::<usize>::new());
        assert_eq!(line_starts(b"a\nbb\n\nc"), vec![0, 2, 5, 6]);
        assert_eq!(line_starts(b"a\n"), vec![0]);
    }

    #[test]
    fn the_clock_shares_one_budget_and_names_the_whole_limit() {
        let clock = TaskClock::start(Limits {
            time: Duration::ZERO,
            memory_bytes: 1,
        });
        match clock.limits("t") {
            Err(AppError::TimeLimit { limit, .. }) => assert_eq!(limit, Duration::ZERO),
            other => panic!("expected a time limit, got {other:?}"),
        }
        let clock = TaskClock::start(Limits {
            time: Duration::from_secs(60),
            memory_bytes: 1,
        });
        let left = clock.limits("t").expect("time left");
        assert!(left.time <= Duration::from_secs(60) && left.memory_bytes == 1);
        let restated = clock.error(AppError::TimeLimit {
            app: "t".into(),
            limit: Duration::from_millis(5),
        });
        assert_eq!(
            restated,
            AppError::TimeLimit {
                app: "t".into(),
                limit: Duration::from_secs(60)
            }
        );
        assert_eq!(
            SkippedRecord::key(&[b'k'; 1000], &trap("x")).key.len(),
            MAX_RECORD_TEXT
        );
    }
}
