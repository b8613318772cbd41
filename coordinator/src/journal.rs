//! The coordinator's durable store: a snapshot plus an append-only journal of every change
//! to job and task state since, under `DATA/.mr/snapshot` and `DATA/.mr/journal`.
//!
//! The scheduler never changes state directly: it appends a [`Record`] and then applies that
//! same record to memory, so replaying the journal at start-up rebuilds exactly the state a
//! killed coordinator had acknowledged. A record is appended before the reply that depends
//! on it is sent (an assignment before the worker gets it, a commit before "accepted").
//!
//! Each line is `crc32-hex json\n`. A coordinator killed mid-write leaves at most one torn
//! last line; it fails its checksum, and the journal is cut back to the last whole record.
//! Writes go to the OS at once (surviving a killed process); `sync` also fsyncs them
//! (surviving a power loss, at a cost in throughput) in groups: one fsync for all the
//! records of one scheduler event, a batch's reports included, before its reply. A write that fails (a full disk) is cut
//! back off, so the file holds whole records only and a later append is never stranded
//! behind a torn one; if even that fails, the journal refuses appends until it can.
//!
//! Compaction ([`Journal::compact`]) writes the state as a snapshot and starts an empty
//! journal. Each journal begins with its generation number and each snapshot names the
//! generation it stops short of, so a crash at any step leaves either the old snapshot plus
//! the old journal, or the new snapshot (which already holds the old journal, then ignored)
//! plus an empty or old journal: nothing is lost and nothing is applied twice.

use crate::state::{AttemptOutcome, TaskState};
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Why the journal could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// Opening, reading or writing the journal file failed.
    #[error("journal {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A snapshot, which is only ever put in place whole, does not read back whole.
    #[error("snapshot {} is damaged ({what}); restore it from a backup or move it away to start empty", path.display())]
    Corrupt { path: PathBuf, what: String },
}

/// Task kinds as stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum StoredKind {
    Map,
    Reduce,
}

/// How an attempt ended, other than by committing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum StoredEnding {
    Failed,
    TimedOut,
    Abandoned,
}

/// How a job ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum StoredJobEnd {
    Succeeded,
    Failed,
    Cancelled,
}

/// One attempt, as a snapshot stores it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoredAttempt {
    pub attempt_id: u64,
    pub worker: String,
    pub started_at_ms: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at_ms: Option<i64>,
    pub outcome: AttemptOutcome,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub error: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub backup: bool,
}

/// A record the app failed on, skipped by a task's committed attempt: a map's line (input
/// file and byte offset) or a reduce's key.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredSkipped {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub input: String,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub offset: u64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub key: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub error: String,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// One committed attempt's counters (or an archived job's sums), by name: a sorted boxed
/// slice, so that a task holds them in one small allocation (a 100k-task job holds 100k of
/// them), written as a JSON object.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters(Box<[(Arc<str>, u64)]>);

/// One shared copy of each built-in counter's name: a task's counters then allocate no
/// name of their own (the app's counters do).
static BUILTIN_NAMES: std::sync::LazyLock<Vec<Arc<str>>> = std::sync::LazyLock::new(|| {
    crate::scheduler::BUILTIN_COUNTERS
        .iter()
        .map(|&name| Arc::from(name))
        .collect()
});

fn counter_name(name: String) -> Arc<str> {
    match BUILTIN_NAMES.iter().find(|b| ***b == *name) {
        Some(shared) => shared.clone(),
        None => Arc::from(name),
    }
}

impl Counters {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn get(&self, name: &str) -> Option<u64> {
        self.0
            .binary_search_by(|(n, _)| (**n).cmp(name))
            .ok()
            .map(|i| self.0[i].1)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, u64)> {
        self.0.iter().map(|(n, v)| (&**n, *v))
    }
}

/// Values of a repeated name add up.
impl<K: Into<String>> FromIterator<(K, u64)> for Counters {
    fn from_iter<I: IntoIterator<Item = (K, u64)>>(iter: I) -> Self {
        let mut sums = std::collections::BTreeMap::<String, u64>::new();
        for (name, value) in iter {
            let sum = sums.entry(name.into()).or_default();
            *sum = sum.saturating_add(value);
        }
        Self(
            sums.into_iter()
                .map(|(n, v)| (counter_name(n), v))
                .collect(),
        )
    }
}

impl Serialize for Counters {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.iter())
    }
}

impl<'de> Deserialize<'de> for Counters {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let map = std::collections::BTreeMap::<String, u64>::deserialize(deserializer)?;
        Ok(map.into_iter().collect())
    }
}

/// One change of scheduling state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Record {
    /// A job was accepted.
    JobSubmitted {
        job_id: String,
        app: String,
        app_sha256: String,
        inputs: Vec<String>,
        input_files: Vec<(String, u64)>,
        n_reduce: u32,
        split_bytes: u64,
        at_ms: i64,
        /// Records the job may skip; 0 (and journals older than the setting): none.
        #[serde(default, skip_serializing_if = "is_zero")]
        max_skipped_records: u64,
    },
    /// A task was handed to a worker under a new attempt.
    TaskAssigned {
        job_id: String,
        kind: StoredKind,
        index: u32,
        attempt_id: u64,
        worker: String,
        backup: bool,
        at_ms: i64,
    },
    /// An attempt's files were accepted: its task is Completed.
    TaskCommitted {
        job_id: String,
        kind: StoredKind,
        index: u32,
        attempt_id: u64,
        /// Map tasks: the partitions it wrote files for, when not all of them.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        partitions: Option<Vec<u32>>,
        at_ms: i64,
        /// Records the committed attempt skipped (journals older than skipping: none).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        skipped: Vec<StoredSkipped>,
        /// The committed attempt's counters, built-ins and the app's (older journals: none).
        #[serde(default, skip_serializing_if = "Counters::is_empty")]
        counters: Counters,
    },
    /// An attempt ended without result; `counts` if it counts against the task.
    AttemptEnded {
        job_id: String,
        kind: StoredKind,
        index: u32,
        attempt_id: u64,
        ending: StoredEnding,
        error: String,
        counts: bool,
        at_ms: i64,
    },
    /// Completed tasks whose files turned out missing or corrupt go back to Idle.
    TasksReset {
        job_id: String,
        kind: StoredKind,
        indices: Vec<u32>,
    },
    /// A job ended.
    JobEnded {
        job_id: String,
        end: StoredJobEnd,
        error: String,
        at_ms: i64,
    },
    /// Snapshot: an ended job's summary (its per-task records are not kept). Counts are
    /// `[total, idle, in_progress, completed]`.
    JobArchived {
        job_id: String,
        app: String,
        app_sha256: String,
        inputs: Vec<String>,
        n_reduce: u32,
        end: StoredJobEnd,
        #[serde(default, skip_serializing_if = "String::is_empty")]
        error: String,
        map: [u32; 4],
        reduce: [u32; 4],
        submitted_at_ms: i64,
        finished_at_ms: i64,
        /// How many records the job's committed attempts skipped.
        #[serde(default, skip_serializing_if = "is_zero")]
        skipped_records: u64,
        /// The job's counters (the sum over its committed attempts).
        #[serde(default, skip_serializing_if = "Counters::is_empty")]
        counters: Counters,
    },
    /// Snapshot: one task of a running job as it stands, with its attempts.
    TaskRestored {
        job_id: String,
        kind: StoredKind,
        index: u32,
        state: TaskState,
        failures: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        partitions: Option<Vec<u32>>,
        attempts: Vec<StoredAttempt>,
        /// Records the committed attempt skipped.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        skipped: Vec<StoredSkipped>,
        /// The committed attempt's counters.
        #[serde(default, skip_serializing_if = "Counters::is_empty")]
        counters: Counters,
    },
    /// Snapshot: attempt ids below this were used (by jobs since archived too).
    AttemptCounter { next_attempt: u64 },
    /// Ended jobs past their retention are forgotten.
    JobsForgotten { job_ids: Vec<String> },
}

/// The first line of a journal or snapshot file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
enum Header {
    /// A journal of this generation.
    Journal { generation: u64 },
    /// A snapshot that holds every journal before `journal_generation`.
    Snapshot { journal_generation: u64 },
}

/// Steps of a compaction, in order; a crash test stops the process after any of them.
pub const COMPACTION_STEPS: [&str; 4] = [
    "snapshot written",
    "snapshot in place",
    "new journal written",
    "new journal in place",
];

/// Test hook: `MR_FAULT_COMPACTION_STEP=N` SIGKILLs the coordinator right after compaction
/// step N (1-based, see [`COMPACTION_STEPS`]), to prove a crash there loses nothing.
pub const FAULT_COMPACTION_STEP_ENV: &str = "MR_FAULT_COMPACTION_STEP";

/// The open journal file.
pub struct Journal {
    file: File,
    dir: PathBuf,
    path: PathBuf,
    sync: bool,
    /// Generation of the open journal file.
    generation: u64,
    /// Bytes of whole records in the file; a failed append is cut back to this.
    len: u64,
    /// Bytes of the file's header line.
    header_len: u64,
    /// Bytes of the last snapshot written.
    snapshot_len: u64,
    /// A failed append could not be cut back: refuse appends until it can.
    torn: bool,
    /// Records written since the last fsync (with `sync`).
    unsynced: bool,
    /// Stop after this compaction step (tests).
    fault_step: Option<usize>,
}

impl Journal {
    /// Opens (creating) the snapshot and journal in `dir` and returns them with every whole
    /// record they hold, snapshot first.
    pub fn open(dir: &Path, sync: bool) -> Result<(Self, Vec<Record>), JournalError> {
        let path = dir.join(mr_common::data_dir::JOURNAL_FILE);
        let snapshot_path = dir.join("snapshot");
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| JournalError::Io {
                path: path.clone(),
                source,
            }
        };
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let (mut records, snapshot_generation, snapshot_len) = match File::open(&snapshot_path) {
            Ok(file) => {
                let snapshot_len = file.metadata().map_err(io(&snapshot_path))?.len();
                let (header, _, records, good) =
                    read_records(&mut BufReader::new(file)).map_err(io(&snapshot_path))?;
                let Some(Header::Snapshot { journal_generation }) = header else {
                    return Err(JournalError::Corrupt {
                        path: snapshot_path,
                        what: "no snapshot header".into(),
                    });
                };
                if good != snapshot_len {
                    // A snapshot is renamed into place only once whole and synced.
                    return Err(JournalError::Corrupt {
                        path: snapshot_path,
                        what: format!("a bad record at byte {good}"),
                    });
                }
                (records, journal_generation, snapshot_len)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (Vec::new(), 0, 0),
            Err(e) => return Err(io(&snapshot_path)(e)),
        };
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(io(&path))?;
        let (header, header_len, tail, good_len) =
            read_records(&mut BufReader::new(&mut file)).map_err(io(&path))?;
        let size = file.metadata().map_err(io(&path))?.len();
        if size != good_len {
            tracing::warn!(path = %path.display(), offset = good_len, "journal ends in a torn or corrupt record; cutting it off");
            file.set_len(good_len).map_err(io(&path))?;
        }
        file.seek(SeekFrom::End(0)).map_err(io(&path))?;
        // A journal without a header is of generation 0 (written before snapshots existed).
        let generation = match header {
            Some(Header::Journal { generation }) => generation,
            _ => 0,
        };
        let mut journal = Self {
            file,
            dir: dir.to_path_buf(),
            path,
            sync,
            unsynced: false,
            generation,
            len: good_len,
            header_len,
            snapshot_len,
            torn: false,
            fault_step: std::env::var(FAULT_COMPACTION_STEP_ENV)
                .ok()
                .and_then(|s| s.parse().ok()),
        };
        if generation < snapshot_generation {
            // The snapshot already holds this journal: a compaction stopped before the new
            // journal was in place. Finish it.
            tracing::info!(
                generation,
                snapshot_generation,
                "journal already in the snapshot; starting a new one"
            );
            journal.start_generation(snapshot_generation)?;
        } else {
            records.extend(tail);
            if good_len == 0 {
                journal.write_header(generation)?;
            }
        }
        Ok((journal, records))
    }

    /// Bytes of the journal file (records since the last snapshot).
    pub fn tail_len(&self) -> u64 {
        self.len
    }

    /// Whether the journal holds any record beyond its header.
    pub fn has_tail(&self) -> bool {
        self.len > self.header_len
    }

    /// Bytes of the last snapshot.
    pub fn snapshot_len(&self) -> u64 {
        self.snapshot_len
    }

    /// Appends one record; returns once the OS has it (a killed process loses nothing). With
    /// `sync`, it reaches the disk at the next [`sync`](Self::sync): several records then
    /// share one fsync (group commit). On failure the file is exactly as before.
    pub fn append(&mut self, record: &Record) -> Result<(), JournalError> {
        self.append_line(&encode(record))
    }

    fn append_line(&mut self, line: &str) -> Result<(), JournalError> {
        let io = |source| JournalError::Io {
            path: self.path.clone(),
            source,
        };
        if self.torn {
            // Retry the cut: once it works, appending is safe again.
            self.file.set_len(self.len).map_err(io)?;
            self.torn = false;
        }
        match self.file.write_all(line.as_bytes()) {
            Ok(()) => {
                self.len += line.len() as u64;
                self.unsynced = self.sync;
                Ok(())
            }
            Err(source) => {
                if let Err(cut) = self.file.set_len(self.len) {
                    tracing::error!(error = %cut, path = %self.path.display(), "cannot cut a failed journal write back off; refusing appends until it can");
                    self.torn = true;
                }
                Err(io(source))
            }
        }
    }

    /// With `sync`: fsyncs the records appended since the last call (a no-op when there are
    /// none, or without `sync`). Call it before acknowledging them, or acting on them
    /// outside the journal (a commit's renames). On failure they stay written, as the
    /// state in memory has them, only not known to be on the disk.
    pub fn sync(&mut self) -> Result<(), JournalError> {
        if !self.unsynced {
            return Ok(());
        }
        self.file.sync_data().map_err(|source| JournalError::Io {
            path: self.path.clone(),
            source,
        })?;
        self.unsynced = false;
        Ok(())
    }

    fn write_header(&mut self, generation: u64) -> Result<(), JournalError> {
        self.append_line(&encode_line(&Header::Journal { generation }))?;
        self.header_len = self.len;
        Ok(())
    }

    /// Writes `records` (the whole state) as the new snapshot and starts an empty journal
    /// of the next generation. Crash-safe at every step (see the module doc). If it fails,
    /// the old snapshot and journal stay in force and appending goes on.
    pub fn compact(&mut self, records: &[Record]) -> Result<(), JournalError> {
        let next = self.generation + 1;
        let snapshot = self.dir.join("snapshot");
        let tmp = self.dir.join("snapshot.tmp");
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| JournalError::Io {
                path: path.clone(),
                source,
            }
        };
        let mut text = encode_line(&Header::Snapshot {
            journal_generation: next,
        });
        for record in records {
            text.push_str(&encode(record));
        }
        write_synced(&tmp, text.as_bytes()).map_err(io(&tmp))?;
        self.fault(1);
        std::fs::rename(&tmp, &snapshot).map_err(io(&snapshot))?;
        sync_dir(&self.dir).map_err(io(&self.dir))?;
        self.snapshot_len = text.len() as u64;
        self.fault(2);
        self.start_generation(next)
    }

    /// Replaces the journal by an empty one of `generation`.
    fn start_generation(&mut self, generation: u64) -> Result<(), JournalError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| JournalError::Io {
                path: path.clone(),
                source,
            }
        };
        let tmp = self.dir.join("journal.tmp");
        let header = encode_line(&Header::Journal { generation });
        write_synced(&tmp, header.as_bytes()).map_err(io(&tmp))?;
        self.fault(3);
        std::fs::rename(&tmp, &self.path).map_err(io(&self.path))?;
        sync_dir(&self.dir).map_err(io(&self.dir))?;
        self.fault(4);
        self.file = OpenOptions::new()
            .append(true)
            .open(&self.path)
            .map_err(io(&self.path))?;
        self.generation = generation;
        self.len = header.len() as u64;
        self.header_len = self.len;
        self.torn = false;
        Ok(())
    }

    fn fault(&self, step: usize) {
        if self.fault_step == Some(step) {
            tracing::warn!(
                step,
                what = COMPACTION_STEPS[step - 1],
                "fault injection: killing the coordinator"
            );
            // SAFETY: kill(2) on our own pid has no memory-safety preconditions.
            unsafe {
                libc::kill(libc::getpid(), libc::SIGKILL);
            }
        }
    }
}

fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut file = File::create(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// What [`read_records`] found: the header and its length, the records, the bytes they took.
type ReadRecords = (Option<Header>, u64, Vec<Record>, u64);

/// Reads lines until the first that is not a whole, valid record.
fn read_records(reader: &mut impl BufRead) -> std::io::Result<ReadRecords> {
    let mut records = Vec::new();
    let mut header = None;
    let mut header_len = 0;
    let mut good_len = 0u64;
    let mut line = String::new();
    loop {
        line.clear();
        let n = match reader.read_line(&mut line) {
            Ok(n) => n,
            // Not UTF-8: a corrupt tail.
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => break,
            Err(e) => return Err(e),
        };
        if n == 0 {
            break;
        }
        if good_len == 0
            && let Some(h) = decode::<Header>(&line)
        {
            header = Some(h);
            header_len = n as u64;
        } else if let Some(record) = decode::<Record>(&line) {
            records.push(record);
        } else {
            break;
        }
        good_len += n as u64;
    }
    Ok((header, header_len, records, good_len))
}

fn encode(record: &Record) -> String {
    encode_line(record)
}

fn encode_line(value: &impl Serialize) -> String {
    // Serializing plain data with derived impls cannot fail.
    let json = serde_json::to_string(value).unwrap_or_default();
    format!("{:08x} {json}\n", crc32fast::hash(json.as_bytes()))
}

fn decode<T: serde::de::DeserializeOwned>(line: &str) -> Option<T> {
    let line = line.strip_suffix('\n')?;
    let (crc, json) = line.split_once(' ')?;
    let crc = u32::from_str_radix(crc, 16).ok()?;
    (crc32fast::hash(json.as_bytes()) == crc)
        .then(|| serde_json::from_str(json).ok())
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Journals written before skipping existed replay: the new fields default to none.
    #[test]
    fn records_from_before_skipped_records_still_read() {
        let old = [
            r#"{"TaskCommitted":{"job_id":"j","kind":"Map","index":0,"attempt_id":1,"at_ms":5}}"#,
            r#"{"JobSubmitted":{"job_id":"j","app":"wc","app_sha256":"00","inputs":[],"input_files":[],"n_reduce":1,"split_bytes":1,"at_ms":5}}"#,
            r#"{"TaskRestored":{"job_id":"j","kind":"Reduce","index":0,"state":"Idle","failures":0,"attempts":[]}}"#,
        ];
        for line in old {
            match serde_json::from_str::<Record>(line).expect(line) {
                Record::TaskCommitted { skipped, .. } | Record::TaskRestored { skipped, .. } => {
                    assert!(skipped.is_empty())
                }
                Record::JobSubmitted {
                    max_skipped_records,
                    ..
                } => assert_eq!(max_skipped_records, 0),
                other => panic!("unexpected {other:?}"),
            }
        }
        // And a record with skips reads back as written.
        let record = Record::TaskCommitted {
            job_id: "j".into(),
            kind: StoredKind::Reduce,
            index: 2,
            attempt_id: 9,
            partitions: None,
            at_ms: 5,
            skipped: vec![StoredSkipped {
                key: "poison".into(),
                error: "boom".into(),
                ..StoredSkipped::default()
            }],
            counters: Default::default(),
        };
        let line = serde_json::to_string(&record).expect("serialize");
        assert_eq!(
            serde_json::from_str::<Record>(&line).expect("parse"),
            record
        );
    }

    fn record(i: u32) -> Record {
        Record::TasksReset {
            job_id: "j".into(),
            kind: StoredKind::Map,
            indices: vec![i],
        }
    }

    #[test]
    fn records_survive_reopening() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut journal, old) = Journal::open(dir.path(), false).expect("open");
        assert!(old.is_empty());
        for i in 0..3 {
            journal.append(&record(i)).expect("append");
        }
        drop(journal);
        let (_, records) = Journal::open(dir.path(), true).expect("reopen");
        assert_eq!(records, [record(0), record(1), record(2)]);
    }

    /// Writes fail once the file would pass `limit` bytes (RLIMIT_FSIZE in a child process
    /// would do the same; this stays in-process): a full disk.
    #[test]
    fn a_failed_append_leaves_the_journal_as_it_was() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut journal, _) = Journal::open(dir.path(), false).expect("open");
        journal.append(&record(0)).expect("append");
        let before = std::fs::read(dir.path().join("journal")).expect("read");
        // A read-only handle stands in for a disk that refuses the write.
        let writable = std::mem::replace(
            &mut journal.file,
            File::open(dir.path().join("journal")).expect("open read-only"),
        );
        assert!(journal.append(&record(1)).is_err());
        assert_eq!(
            std::fs::read(dir.path().join("journal")).expect("read"),
            before
        );
        journal.file = writable;
        journal
            .append(&record(2))
            .expect("append after the disk recovered");
        drop(journal);
        let (_, records) = Journal::open(dir.path(), false).expect("reopen");
        assert_eq!(records, [record(0), record(2)]);
    }

    #[test]
    fn a_torn_append_is_cut_back_before_the_next_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut journal, _) = Journal::open(dir.path(), false).expect("open");
        journal.append(&record(0)).expect("append");
        // Half a record reached the file before the disk filled up.
        let mut raw = OpenOptions::new()
            .append(true)
            .open(dir.path().join("journal"))
            .expect("open");
        raw.write_all(b"0badc0de {\"TasksRe").expect("write");
        journal.torn = true;
        journal.append(&record(1)).expect("append");
        drop(journal);
        let (_, records) = Journal::open(dir.path(), false).expect("reopen");
        assert_eq!(records, [record(0), record(1)]);
    }

    /// A crash after any step of a compaction keeps every record exactly once.
    #[test]
    fn a_compaction_stopped_after_any_step_loses_nothing() {
        for step in 0..=COMPACTION_STEPS.len() {
            let dir = tempfile::tempdir().expect("tempdir");
            let (mut journal, _) = Journal::open(dir.path(), false).expect("open");
            journal.append(&record(0)).expect("append");
            journal.append(&record(1)).expect("append");
            // The snapshot holds both; a crash leaves the files as they were at `step`.
            let snapshot = [record(0), record(1)];
            compact_until(&mut journal, &snapshot, step);
            drop(journal);
            let (mut journal, records) = Journal::open(dir.path(), false).expect("reopen");
            assert_eq!(records, snapshot, "stopped after step {step}");
            journal.append(&record(2)).expect("append");
            drop(journal);
            let (_, records) = Journal::open(dir.path(), false).expect("reopen");
            assert_eq!(records, [record(0), record(1), record(2)], "step {step}");
        }
    }

    /// Runs `compact` as far as step `stop` (all of it past the last step).
    fn compact_until(journal: &mut Journal, records: &[Record], stop: usize) {
        if stop >= COMPACTION_STEPS.len() {
            journal.compact(records).expect("compact");
            return;
        }
        let next = journal.generation + 1;
        let mut text = encode_line(&Header::Snapshot {
            journal_generation: next,
        });
        for r in records {
            text.push_str(&encode(r));
        }
        let dir = journal.dir.clone();
        if stop >= 1 {
            write_synced(&dir.join("snapshot.tmp"), text.as_bytes()).expect("write");
        }
        if stop >= 2 {
            std::fs::rename(dir.join("snapshot.tmp"), dir.join("snapshot")).expect("rename");
        }
        if stop >= 3 {
            let header = encode_line(&Header::Journal { generation: next });
            write_synced(&dir.join("journal.tmp"), header.as_bytes()).expect("write");
        }
    }

    #[test]
    fn a_torn_or_corrupt_tail_is_cut_off_and_appending_goes_on() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut journal, _) = Journal::open(dir.path(), false).expect("open");
        journal.append(&record(0)).expect("append");
        journal.append(&record(1)).expect("append");
        drop(journal);
        let path = dir.path().join("journal");
        let full = std::fs::read(&path).expect("read");
        // Every cut inside the second record (the last line) loses that record only.
        let first_len = full[..full.len() - 1]
            .iter()
            .rposition(|&b| b == b'\n')
            .expect("newline")
            + 1;
        for cut in first_len..full.len() {
            std::fs::write(&path, &full[..cut]).expect("write");
            let (mut journal, records) = Journal::open(dir.path(), false).expect("open");
            assert_eq!(records, [record(0)], "cut at {cut}");
            journal.append(&record(2)).expect("append");
            drop(journal);
            let (_, records) = Journal::open(dir.path(), false).expect("open");
            assert_eq!(records, [record(0), record(2)], "cut at {cut}");
        }
        // A flipped byte fails the checksum.
        let mut bad = full.clone();
        bad[first_len + 12] ^= 0x20;
        std::fs::write(&path, &bad).expect("write");
        let (_, records) = Journal::open(dir.path(), false).expect("open");
        assert_eq!(records, [record(0)]);
    }
}
