//! The coordinator's durable store: an append-only journal of every change to job and task
//! state, under `DATA/.mr/journal`.
//!
//! The scheduler never changes state directly: it appends a [`Record`] and then applies that
//! same record to memory, so replaying the journal at start-up rebuilds exactly the state a
//! killed coordinator had acknowledged. A record is appended before the reply that depends
//! on it is sent (an assignment before the worker gets it, a commit before "accepted").
//!
//! Each line is `crc32-hex json\n`. A coordinator killed mid-write leaves at most one torn
//! last line; it fails its checksum, and the journal is cut back to the last whole record.
//! Writes go to the OS at once (surviving a killed process); `sync` also fsyncs each one
//! (surviving a power loss, at a cost in throughput).

use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

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
}

/// The open journal file.
pub struct Journal {
    file: File,
    path: PathBuf,
    sync: bool,
}

impl Journal {
    /// Opens (creating) the journal in `dir` and returns it with every whole record in it.
    pub fn open(dir: &Path, sync: bool) -> Result<(Self, Vec<Record>), JournalError> {
        let path = dir.join(mr_common::data_dir::JOURNAL_FILE);
        let io = |source| JournalError::Io {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(io)?;
        let mut records = Vec::new();
        let mut good_len = 0u64;
        let mut reader = BufReader::new(&mut file);
        let mut line = String::new();
        loop {
            line.clear();
            let n = reader.read_line(&mut line).map_err(io)?;
            if n == 0 {
                break;
            }
            match decode(&line) {
                Some(record) => {
                    records.push(record);
                    good_len += n as u64;
                }
                None => {
                    tracing::warn!(path = %path.display(), offset = good_len, "journal ends in a torn or corrupt record; cutting it off");
                    break;
                }
            }
        }
        drop(reader);
        if file.metadata().map_err(io)?.len() != good_len {
            file.set_len(good_len).map_err(io)?;
        }
        file.seek(SeekFrom::End(0)).map_err(io)?;
        Ok((Self { file, path, sync }, records))
    }

    /// Appends one record; returns once the OS has it (and the disk, with `sync`).
    pub fn append(&mut self, record: &Record) -> Result<(), JournalError> {
        let line = encode(record);
        let io = |source| JournalError::Io {
            path: self.path.clone(),
            source,
        };
        self.file.write_all(line.as_bytes()).map_err(io)?;
        if self.sync {
            self.file.sync_data().map_err(io)?;
        }
        Ok(())
    }
}

fn encode(record: &Record) -> String {
    // Serializing plain data with derived impls cannot fail.
    let json = serde_json::to_string(record).unwrap_or_default();
    format!("{:08x} {json}\n", crc32fast::hash(json.as_bytes()))
}

fn decode(line: &str) -> Option<Record> {
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

    #[test]
    fn a_torn_or_corrupt_tail_is_cut_off_and_appending_goes_on() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut journal, _) = Journal::open(dir.path(), false).expect("open");
        journal.append(&record(0)).expect("append");
        journal.append(&record(1)).expect("append");
        drop(journal);
        let path = dir.path().join("journal");
        let full = std::fs::read(&path).expect("read");
        // Every cut inside the second record loses that record only.
        let first_len = full.iter().position(|&b| b == b'\n').expect("newline") + 1;
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
