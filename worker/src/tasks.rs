//! One map or reduce task: the file work around the app.
//!
//! A map task reads its split (whole lines only), calls the app once, sorts the records per
//! reduce partition and writes one intermediate file per partition that has records (an
//! empty partition gets no file: a tiny task then creates, and the coordinator renames, only
//! what holds data). A reduce task merges the intermediate files the coordinator lists for
//! its partition as sorted streams, calls the app on batches of key groups and writes
//! `key value` lines. Every file is written under the attempt's temp
//! name; the coordinator renames it into place if, and only if, it accepts the attempt.

use crate::app_runtime::{AppError, AppModule, Limits, ReduceBatch};
use mr_common::{DataDir, PathError};
use mr_shuffle::{Group, Merger, Reader, ShuffleError, Writer};
use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Bytes of key groups handed to the app per reduce call: few boundary crossings, bounded memory.
const REDUCE_BATCH_BYTES: usize = 1 << 20;
const WRITE_BUFFER: usize = 256 << 10;
/// Read buffers of all a reduce's sources together, at most (but 4 KiB each at least).
const READ_BUFFERS_TOTAL: usize = 16 << 20;

/// Why a task failed on this worker.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    /// The app trapped, or ran out of time or memory.
    #[error(transparent)]
    App(#[from] AppError),
    /// Intermediate files of these map tasks were missing or corrupt.
    #[error("intermediate files of map tasks {maps:?} are missing or corrupt: {message}")]
    BadIntermediate { maps: Vec<u32>, message: String },
    /// Reading the input or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The assignment named a path outside the data folder.
    #[error(transparent)]
    Path(#[from] PathError),
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> TaskError + '_ {
    move |source| TaskError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Counts for the report and the log, and what a map task wrote.
#[derive(Clone, Debug, Default)]
pub struct TaskStats {
    pub records_in: u64,
    pub records_out: u64,
    /// Map tasks: the partitions that got a file, ascending.
    pub partitions: Vec<u32>,
}

/// What every task of one attempt needs to know.
pub struct TaskContext<'a> {
    pub data: &'a DataDir,
    pub job_id: &'a str,
    pub attempt_id: u64,
    pub n_reduce: u32,
    pub limits: Limits,
}

/// Temp files of an attempt, removed unless the attempt got as far as reporting success.
struct TempFiles(Vec<PathBuf>);

impl TempFiles {
    fn keep(mut self) {
        self.0.clear();
    }
}

impl Drop for TempFiles {
    fn drop(&mut self) {
        for path in &self.0 {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Runs map task `index` over `path[offset..offset + length]`.
pub fn run_map(
    ctx: &TaskContext<'_>,
    app: &AppModule,
    index: u32,
    input: &str,
    offset: u64,
    length: u64,
) -> Result<TaskStats, TaskError> {
    let path = ctx.data.resolve("input", input)?;
    let contents = read_split(&path, offset, length).map_err(io_error(&path))?;
    let output = app.map(&ctx.limits, input, &contents)?;
    drop(contents);

    // Sort record indices by (partition, key); the sort is stable, so equal keys keep the
    // order the app emitted them in.
    let n_reduce = ctx.n_reduce.max(1);
    let mut order: Vec<(u32, u32)> = output
        .iter()
        .enumerate()
        .map(|(i, (key, _))| (mr_shuffle::partition(key, n_reduce), i as u32))
        .collect();
    order.sort_by(|a, b| {
        a.0.cmp(&b.0)
            .then_with(|| output.get(a.1 as usize).0.cmp(output.get(b.1 as usize).0))
    });

    let mut temps = TempFiles(Vec::with_capacity(n_reduce as usize));
    let mut partitions = Vec::new();
    let mut next = order.iter().peekable();
    // One partition is encoded into a reused buffer and written with one call: the
    // records are in memory already, and a tiny task then costs no large buffer per file.
    let mut encoded = Vec::new();
    while let Some(&&(y, _)) = next.peek() {
        let tmp =
            DataDir::attempt_tmp(&ctx.data.intermediate(ctx.job_id, index, y), ctx.attempt_id);
        encoded.clear();
        let mut writer = Writer::new(&mut encoded).map_err(|e| shuffle_io(&tmp, e))?;
        while let Some(&(_, i)) = next.next_if(|(p, _)| *p == y) {
            let (key, value) = output.get(i as usize);
            writer.append(key, value).map_err(|e| shuffle_io(&tmp, e))?;
        }
        writer.finish().map_err(|e| shuffle_io(&tmp, e))?;
        let mut file = File::create(&tmp).map_err(io_error(&tmp))?;
        temps.0.push(tmp.clone());
        file.write_all(&encoded).map_err(io_error(&tmp))?;
        partitions.push(y);
    }
    temps.keep();
    Ok(TaskStats {
        records_in: 1,
        records_out: output.len() as u64,
        partitions,
    })
}

fn shuffle_io(path: &Path, error: ShuffleError) -> TaskError {
    let source = match error {
        ShuffleError::Io(e) => e,
        other => io::Error::other(other.to_string()),
    };
    TaskError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Reads the lines of `path` that start in `[offset, offset + length)`: a split begins after
/// the first newline at or after `offset - 1` and runs through the newline that ends the
/// line containing byte `offset + length - 1`. So every line, and every word in it, belongs
/// to exactly one split.
pub fn read_split(path: &Path, offset: u64, length: u64) -> io::Result<Vec<u8>> {
    let mut reader = BufReader::with_capacity(256 << 10, File::open(path)?);
    let mut start = offset;
    if offset > 0 {
        reader.seek(SeekFrom::Start(offset - 1))?;
        let mut skipped = Vec::new();
        let n = reader.read_until(b'\n', &mut skipped)? as u64;
        start = offset - 1 + n;
    }
    let end = offset + length;
    let mut contents = Vec::new();
    if start >= end {
        return Ok(contents);
    }
    (&mut reader).take(end - start).read_to_end(&mut contents)?;
    if contents.last().is_some_and(|&b| b != b'\n') {
        reader.read_until(b'\n', &mut contents)?;
    }
    Ok(contents)
}

/// Runs reduce task `partition`: merges `mr-X-partition` for every map task X in
/// `map_tasks` (those that wrote records for it).
pub fn run_reduce(
    ctx: &TaskContext<'_>,
    app: &AppModule,
    partition: u32,
    map_tasks: &[u32],
) -> Result<TaskStats, TaskError> {
    let mut sources = Vec::with_capacity(map_tasks.len());
    let mut bad = Vec::new();
    let mut first_problem = String::new();
    // Read buffers: 64 KiB each, less when there are many sources (memory stays bounded
    // by READ_BUFFERS_TOTAL) or the file is small (a tiny task's file needs no 64 KiB;
    // one byte more than the file lets the reader see the end in one read).
    let per_source = (READ_BUFFERS_TOTAL / map_tasks.len().max(1)).clamp(4 << 10, 64 << 10);
    for &x in map_tasks {
        let path = ctx.data.intermediate(ctx.job_id, x, partition);
        // The reader buffers by itself: no BufReader (and no second copy) around the file.
        let opened = File::open(&path)
            .and_then(|f| {
                let size = usize::try_from(f.metadata()?.len()).unwrap_or(usize::MAX);
                Ok((f, per_source.min(size.saturating_add(1))))
            })
            .map_err(ShuffleError::Io)
            .and_then(|(f, capacity)| Reader::with_buffer(f, capacity));
        match opened {
            Ok(reader) => sources.push(reader),
            Err(e) => {
                if first_problem.is_empty() {
                    first_problem = format!("{}: {e}", path.display());
                }
                bad.push(x);
            }
        }
    }
    if !bad.is_empty() {
        return Err(TaskError::BadIntermediate {
            maps: bad,
            message: first_problem,
        });
    }
    let bad_source = |e: mr_shuffle::MergeError| TaskError::BadIntermediate {
        maps: map_tasks.get(e.source_index).into_iter().copied().collect(),
        message: e.to_string(),
    };
    let mut merger = Merger::new(sources).map_err(bad_source)?;

    let final_path = ctx.data.output(ctx.job_id, partition);
    let tmp = DataDir::attempt_tmp(&final_path, ctx.attempt_id);
    let temps = TempFiles(vec![tmp.clone()]);
    let mut out =
        BufWriter::with_capacity(WRITE_BUFFER, File::create(&tmp).map_err(io_error(&tmp))?);
    let mut reducer = app.reducer(&ctx.limits)?;
    let mut batch = ReduceBatch::new();
    let mut keys = KeyList::default();
    let mut group = Group::default();
    let mut stats = TaskStats::default();
    loop {
        let more = merger.next_group(&mut group).map_err(bad_source)?;
        if more {
            stats.records_in += group.len() as u64;
            batch.push_group(group.key(), group.values());
            keys.push(group.key());
        }
        if !batch.is_empty() && (!more || batch.bytes() >= REDUCE_BATCH_BYTES) {
            let values = reducer.reduce_batch(&batch)?;
            for (key, value) in keys.iter().zip(&values) {
                write_line(&mut out, key, value).map_err(io_error(&tmp))?;
            }
            stats.records_out += values.len() as u64;
            batch.clear();
            keys.clear();
        }
        if !more {
            break;
        }
    }
    out.into_inner()
        .map_err(|e| e.into_error())
        .map_err(io_error(&tmp))?;
    temps.keep();
    Ok(stats)
}

/// One output line, as the lab writes it: `key value\n`.
pub fn write_line(out: &mut impl Write, key: &[u8], value: &[u8]) -> io::Result<()> {
    out.write_all(key)?;
    out.write_all(b" ")?;
    out.write_all(value)?;
    out.write_all(b"\n")
}

/// The keys of a reduce batch, stored flat.
#[derive(Default)]
struct KeyList {
    bytes: Vec<u8>,
    ends: Vec<usize>,
}

impl KeyList {
    fn push(&mut self, key: &[u8]) {
        self.bytes.extend_from_slice(key);
        self.ends.push(self.bytes.len());
    }

    fn iter(&self) -> impl Iterator<Item = &[u8]> {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        starts.zip(&self.ends).map(|(s, &e)| &self.bytes[s..e])
    }

    fn clear(&mut self) {
        self.bytes.clear();
        self.ends.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every line of the file lands in exactly one split, whatever the split size.
    #[test]
    fn splits_partition_the_lines() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f.txt");
        let text = b"alpha beta\ngamma\n\ndelta epsilon zeta\neta\ntheta";
        std::fs::write(&path, text).expect("write");
        for split in 1..=text.len() as u64 + 1 {
            let mut joined = Vec::new();
            let mut offset = 0;
            while offset < text.len() as u64 {
                let length = split.min(text.len() as u64 - offset);
                joined.extend(read_split(&path, offset, length).expect("read"));
                offset += length;
            }
            assert_eq!(joined, text, "split size {split}");
        }
    }
}
