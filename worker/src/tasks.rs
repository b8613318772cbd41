//! One map or reduce task: the file work around the app.
//!
//! A map task reads its split (whole lines only), calls the app once, sorts the records per
//! reduce partition and writes one intermediate file per partition that has records (an
//! empty partition gets no file: a tiny task then creates, and the coordinator renames, only
//! what holds data). A reduce task merges the intermediate files the coordinator lists for
//! its partition as sorted streams, calls the app on batches of key groups and writes
//! `key value` lines. When the job allows skipping records and the app fails on a split or
//! a batch, the task narrows the failure down to the lines or key groups the app fails on
//! alone, skips them and goes on ([`crate::skip`]). Every file is written under the attempt's temp
//! name; the coordinator renames it into place if, and only if, it accepts the attempt.

use crate::app_runtime::{
    AppError, AppModule, Counters, Limits, MapOutput, ReduceBatch, add_counters,
};
use crate::skip::{self, NarrowError, SkippedRecord, TaskClock};
use mr_common::{DataDir, PathError};
use mr_shuffle::{Group, Merger, Reader, RunError, ShuffleError, Writer};
use mr_storage::{S3Store, Storage, StoreError};
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::FileExt;
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
    /// Intermediate files of these map tasks were missing or corrupt (only that: any other
    /// error opening or reading them is [`TaskError::Io`], the attempt's own failure).
    #[error("intermediate files of map tasks {maps:?} are missing or corrupt: {message}")]
    BadIntermediate { maps: Vec<u32>, message: String },
    /// Reading the input or an intermediate, or writing a file, failed.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The assignment named a path outside the data folder.
    #[error(transparent)]
    Path(#[from] PathError),
    /// Object storage failed (after its retries).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The app failed on more records than the job may still skip.
    #[error(
        "{source} on record {record}; skipping it would take the job past its \
         max_skipped_records ({budget} left for this task)"
    )]
    TooManySkipped {
        record: Box<SkippedRecord>,
        budget: u64,
        source: Box<AppError>,
    },
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
    /// The records the app failed on and the task skipped, in input order.
    pub skipped: Vec<SkippedRecord>,
    /// Reduce tasks: bytes of the output file.
    pub output_bytes: u64,
    /// What the app's successful calls added to its counters.
    pub counters: Counters,
}

/// What every task of one attempt needs to know.
pub struct TaskContext<'a> {
    /// The data folder; with S3 storage, the worker's local scratch folder (same layout).
    pub data: &'a DataDir,
    /// Where inputs, intermediates and outputs live.
    pub store: &'a Storage,
    pub job_id: &'a str,
    pub attempt_id: u64,
    pub n_reduce: u32,
    pub limits: Limits,
    /// Most intermediate files a reduce holds open at once ([`merge_fan_in`]).
    pub merge_fan_in: usize,
    /// Records the task may skip (0: a failure on any record fails the task).
    pub skip_budget: u64,
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
    let clock = TaskClock::start(ctx.limits);
    // A local split goes straight from the file into the app's memory; an object's comes
    // in one ranged GET, and is kept.
    let (result, held) = match ctx.store {
        Storage::Local => {
            let path = ctx.data.resolve("input", input)?;
            (
                map_local_split(ctx, app, input, &path, offset, length)?,
                None,
            )
        }
        Storage::S3(s3) => {
            let (start, contents) = read_split_s3(s3, input, offset, length)?;
            (
                app.map(&ctx.limits, input, &contents),
                Some((start, contents)),
            )
        }
    };
    let mut skipped = Vec::new();
    let output = match result {
        Ok(output) => output,
        Err(error) if ctx.skip_budget > 0 && skip::is_record_failure(&error) => {
            // Mapped again in parts: the split's bytes are needed on the host now.
            let (start, contents) = match held {
                Some(held) => held,
                None => {
                    let path = ctx.data.resolve("input", input)?;
                    read_split_at(&path, offset, length).map_err(io_error(&path))?
                }
            };
            let lines = skip::line_starts(&contents);
            let bytes = |r: std::ops::Range<usize>| {
                let end = lines.get(r.end).copied().unwrap_or(contents.len());
                &contents[lines[r.start]..end]
            };
            tracing::warn!(%error, lines = lines.len(), "the app failed on the split; narrowing it down to skip the lines it fails on");
            let line =
                |i: usize, e: &AppError| SkippedRecord::line(input, start + lines[i] as u64, e);
            let narrowed = skip::narrow(lines.len(), error, ctx.skip_budget, &mut |r| {
                let limits = clock.limits(app.name())?;
                app.map(&limits, input, bytes(r))
                    .map_err(|e| clock.error(e))
            })
            .map_err(|e| match e {
                NarrowError::App(e) => TaskError::App(e),
                NarrowError::OverBudget { item, error } => TaskError::TooManySkipped {
                    record: Box::new(line(item, &error)),
                    budget: ctx.skip_budget,
                    source: Box::new(error),
                },
            })?;
            skipped = narrowed.bad.iter().map(|(i, e)| line(*i, e)).collect();
            MapOutput::concat(narrowed.done.into_iter().map(|(_, o)| o).collect())
        }
        Err(error) => return Err(error.into()),
    };
    let mut output = output;
    let counters = std::mem::take(&mut output.counters);

    let n_reduce = ctx.n_reduce.max(1);
    let order = sort_order(output.starts(), |start| output.at(start).0, n_reduce);

    let mut temps = TempFiles(Vec::with_capacity(n_reduce as usize));
    let mut partitions = Vec::new();
    let mut next = order.iter().peekable();
    let mut next_at = 0;
    // One partition is encoded into a reused buffer and written with one call: the
    // records are in memory already, and a tiny task then costs no large buffer per file.
    let mut encoded = Vec::new();
    // With S3 storage, the partitions' objects, PUT together once all are encoded.
    let mut objects = Vec::new();
    while let Some(&&SortEntry { partition: y, .. }) = next.peek() {
        let tmp =
            DataDir::attempt_tmp(&ctx.data.intermediate(ctx.job_id, index, y), ctx.attempt_id);
        encoded.clear();
        let mut writer = Writer::new(&mut encoded).map_err(|e| shuffle_io(&tmp, e))?;
        while let Some(entry) = next.next_if(|e| e.partition == y) {
            // The records are read in key order, all over the buffer: ask for the one a
            // few entries ahead now, so that it is in cache when its turn comes.
            if let Some(ahead) = order.get(next_at + PREFETCH_AHEAD) {
                prefetch(output.buffer(), ahead.start);
            }
            next_at += 1;
            let (key, value) = output.at(entry.start);
            writer.append(key, value).map_err(|e| shuffle_io(&tmp, e))?;
        }
        writer.finish().map_err(|e| shuffle_io(&tmp, e))?;
        match ctx.store {
            Storage::Local => {
                let mut file = File::create(&tmp).map_err(io_error(&tmp))?;
                temps.0.push(tmp.clone());
                file.write_all(&encoded).map_err(io_error(&tmp))?;
            }
            // The attempt's own key; the coordinator promotes it if it accepts the attempt.
            Storage::S3(_) => objects.push((ctx.data.key_of(&tmp)?, std::mem::take(&mut encoded))),
        }
        partitions.push(y);
    }
    if let Storage::S3(s3) = ctx.store {
        for put in s3.put_each(objects) {
            put?;
        }
    }
    temps.keep();
    Ok(TaskStats {
        records_in: 1,
        records_out: output.len() as u64,
        partitions,
        skipped,
        output_bytes: 0,
        counters,
    })
}

/// The order in which a map's records (which start at `starts`, increasing) are written:
/// by (partition, key, emit order), so equal keys keep the order the app emitted them in.
/// Each entry carries its key's first 8 bytes as a number, which settles nearly every
/// comparison without reading the keys (comparing whole keys was a fifth of a large map's
/// host time), and where its record starts, so that reading it back is one access to the
/// records (not one to `starts` and one to the records: two cache misses per record).
///
/// The entries are radix-sorted by (partition, prefix): a stable sort, so entries that tie
/// stay in emit order, and about a third faster than a comparison sort on a large map's
/// ~200,000 distinct keys (BENCHMARKS.md). Only runs of equal (partition, prefix), which
/// may hide different keys, are then compared whole, again stably.
fn sort_order<'a>(
    starts: &[u32],
    key_at: impl Fn(u32) -> &'a [u8],
    n_reduce: u32,
) -> Vec<SortEntry> {
    let mut order: Vec<SortEntry> = starts
        .iter()
        .map(|&start| {
            let key = key_at(start);
            SortEntry::new(mr_shuffle::partition(key, n_reduce), key, start)
        })
        .collect();
    radsort::sort_by_key(&mut order, |e| (e.partition, e.prefix));
    for tied in order.chunk_by_mut(|a, b| (a.partition, a.prefix) == (b.partition, b.prefix)) {
        if tied.len() > 1 {
            tied.sort_by(|a, b| key_at(a.start).cmp(key_at(b.start)));
        }
    }
    order
}

/// A map output record's place in the sort: its partition, its key's first 8 bytes
/// (zero-padded, big-endian, so that numbers order as the bytes do; equal prefixes fall
/// back to the whole keys) and where it starts in the app's output (which also orders
/// records as the app emitted them).
struct SortEntry {
    partition: u32,
    start: u32,
    prefix: u64,
}

impl SortEntry {
    fn new(partition: u32, key: &[u8], start: u32) -> Self {
        Self {
            partition,
            start,
            prefix: mr_shuffle::key_prefix(key),
        }
    }
}

/// How many records ahead of the one being written the map's write loop prefetches: far
/// enough to cover a cache miss, near enough that the line is still there when used.
const PREFETCH_AHEAD: usize = 8;

/// Asks the CPU to bring `buffer[at]` into cache (a hint: no fault, no effect on results).
#[inline]
fn prefetch(buffer: &[u8], at: u32) {
    #[cfg(target_arch = "x86_64")]
    if let Some(byte) = buffer.get(at as usize) {
        // SAFETY: a prefetch of an address inside a live slice; it reads nothing the
        // program sees and cannot fault.
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                std::ptr::from_ref(byte).cast(),
            )
        };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (buffer, at);
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
    read_split_at(path, offset, length).map(|(_, contents)| contents)
}

/// Maps the split `[offset, offset + length)` of the local file `path` (its lines, as
/// [`read_split`] has them), read straight into the app's memory: no host buffer holds it.
/// The outer error is the file's; the inner one, the app's.
fn map_local_split(
    ctx: &TaskContext<'_>,
    app: &AppModule,
    input: &str,
    path: &Path,
    offset: u64,
    length: u64,
) -> Result<Result<MapOutput, AppError>, TaskError> {
    let file = File::open(path).map_err(io_error(path))?;
    let (start, end) = split_bounds(&file, offset, length).map_err(io_error(path))?;
    let len = usize::try_from(end - start)
        .map_err(|_| io_error(path)(io::Error::other("the split does not fit in memory")))?;
    let read = |dest: &mut [u8]| file.read_exact_at(dest, start);
    app.map_with(&ctx.limits, input, len, read)
        .map_err(io_error(path))
}

/// Where the lines that [`read_split`] reads lie in `file`: bytes `[start, end)`, found with
/// short reads around the split's two ends, so that the lines can then be read in one go
/// wherever they are wanted.
fn split_bounds(file: &File, offset: u64, length: u64) -> io::Result<(u64, u64)> {
    let size = file.metadata()?.len();
    let start = match offset {
        0 => 0,
        _ => past_newline(file, offset - 1)?.min(size),
    };
    let end = offset.saturating_add(length).min(size);
    if start >= end {
        return Ok((start, start));
    }
    Ok((start, past_newline(file, end - 1)?.min(size)))
}

/// The position just past the first newline at or after `from` in `file`, or where the
/// file ends if no newline follows.
fn past_newline(file: &File, mut from: u64) -> io::Result<u64> {
    let mut chunk = [0u8; 4096];
    loop {
        let read = match file.read_at(&mut chunk, from) {
            Ok(0) => return Ok(from),
            Ok(read) => read,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if let Some(i) = chunk[..read].iter().position(|&b| b == b'\n') {
            return Ok(from + i as u64 + 1);
        }
        from += read as u64;
    }
}

/// [`read_split`], with the byte offset in the file where the split's first line starts.
pub fn read_split_at(path: &Path, offset: u64, length: u64) -> io::Result<(u64, Vec<u8>)> {
    let file = File::open(path)?;
    let (start, end) = split_bounds(&file, offset, length)?;
    let len = usize::try_from(end - start)
        .map_err(|_| io::Error::other("the split does not fit in memory"))?;
    let mut contents = vec![0; len];
    file.read_exact_at(&mut contents, start)?;
    Ok((start, contents))
}

/// [`read_split_at`] on an object, with ranged GETs: usually one, of the split with the
/// byte before it (to tell where its first line starts) and [`TAIL_STEP`] bytes after it
/// (to finish its last line), which also says how long the object is; more only when a
/// line runs on past that.
pub fn read_split_s3(
    s3: &S3Store,
    key: &str,
    offset: u64,
    length: u64,
) -> Result<(u64, Vec<u8>), TaskError> {
    if length == 0 {
        // An empty split (an empty file's): only check the object is there.
        s3.size(key)?;
        return Ok((offset, Vec::new()));
    }
    let from = offset.saturating_sub(1);
    let want = offset.saturating_add(length).saturating_add(TAIL_STEP);
    let (fetched, size) = s3.get_range_and_size(key, from..want)?;
    let fetched_end = from + fetched.len() as u64;
    let end = offset.saturating_add(length).min(size);
    if end <= from {
        // The object is shorter than when the job was planned.
        return Ok((end, Vec::new()));
    }
    // Bytes `a..b` of the object, of those fetched.
    let window =
        |a: u64, b: u64| &fetched[(a - from) as usize..(b.min(fetched_end) - from) as usize];
    let newline_in = |a: u64, b: u64| {
        window(a, b)
            .iter()
            .position(|&c| c == b'\n')
            .map(|i| a + i as u64)
    };
    let start = if offset == 0 {
        0
    } else {
        // With no newline before `end`, no line starts inside the split.
        match newline_in(from, end) {
            Some(at) if at + 1 < end => at + 1,
            _ => return Ok((end, Vec::new())),
        }
    };
    // Then through the newline that ends the line holding the split's last byte.
    let stop = if window(end - 1, end) == b"\n" {
        end
    } else {
        // Past what was fetched only if the object goes on (no request otherwise).
        match newline_in(end, fetched_end) {
            Some(at) => at + 1,
            None => find_newline(s3, key, fetched_end, size)?.map_or(size, |at| at + 1),
        }
    };
    let mut contents = window(start, stop).to_vec();
    if stop > fetched_end {
        contents.extend_from_slice(&s3.get_range(key, fetched_end..stop)?);
    }
    Ok((start, contents))
}

/// The position of the first newline in `key`'s bytes `from..to`, if any.
fn find_newline(s3: &S3Store, key: &str, from: u64, to: u64) -> Result<Option<u64>, TaskError> {
    let mut at = from;
    while at < to {
        let chunk = s3.get_range(key, at..at.saturating_add(TAIL_STEP).min(to))?;
        if let Some(i) = chunk.iter().position(|&b| b == b'\n') {
            return Ok(Some(at + i as u64));
        }
        at += chunk.len().max(1) as u64;
    }
    Ok(None)
}

/// Bytes fetched at a time past a split's end to finish its last line.
const TAIL_STEP: u64 = 64 << 10;

/// Most intermediate files (or merged runs) a reduce holds open at once: the merge's
/// fan-in, unless the open-file limit leaves room for fewer ([`merge_fan_in`]). A reduce
/// with more inputs merges them in passes.
pub const MAX_MERGE_FAN_IN: usize = 256;

/// Open files left for everything but a reduce's inputs: the coordinator connection, the
/// runtime's descriptors, logs, the output file.
const RESERVED_FILES: u64 = 64;

/// The merge fan-in under a soft open-file limit of `open_file_limit` (unknown: `None`):
/// [`MAX_MERGE_FAN_IN`], or what the limit leaves after [`RESERVED_FILES`], at least 2.
pub fn merge_fan_in(open_file_limit: Option<u64>) -> usize {
    let room = open_file_limit.map_or(u64::MAX, |l| l.saturating_sub(RESERVED_FILES));
    usize::try_from(room)
        .unwrap_or(usize::MAX)
        .clamp(2, MAX_MERGE_FAN_IN)
}

/// One input of a merge pass: a map task's intermediate, or a run an earlier pass wrote.
#[derive(Clone, Debug)]
enum Input {
    Map { task: u32, path: PathBuf },
    Run(PathBuf),
}

impl Input {
    fn path(&self) -> &Path {
        match self {
            Input::Map { path, .. } | Input::Run(path) => path,
        }
    }

    /// What a failure to open or read this input means. Only an intermediate found missing
    /// or corrupt is lost (its map runs again); any other error (EMFILE, ENFILE, EIO,
    /// permissions, …) is this attempt's own I/O failure, and a run is this attempt's own file.
    fn error(&self, error: ShuffleError) -> TaskError {
        match self {
            Input::Map { task, path } if is_lost(&error) => TaskError::BadIntermediate {
                maps: vec![*task],
                message: format!("{}: {error}", path.display()),
            },
            _ => shuffle_io(self.path(), error),
        }
    }
}

/// Whether an error reading an intermediate says the file itself is missing or damaged.
fn is_lost(error: &ShuffleError) -> bool {
    match error {
        ShuffleError::Io(e) => e.kind() == io::ErrorKind::NotFound,
        ShuffleError::BadMagic
        | ShuffleError::Truncated
        | ShuffleError::Corrupt(_)
        | ShuffleError::Unsorted => true,
    }
}

/// Opens `input` with a read buffer of at most `per_source` bytes (less for a small file).
fn open_input(input: &Input, per_source: usize) -> Result<Reader<File>, TaskError> {
    // The reader buffers by itself: no BufReader (and no second copy) around the file.
    File::open(input.path())
        .and_then(|f| {
            let size = usize::try_from(f.metadata()?.len()).unwrap_or(usize::MAX);
            Ok((f, per_source.min(size.saturating_add(1))))
        })
        .map_err(ShuffleError::Io)
        .and_then(|(f, capacity)| Reader::with_buffer(f, capacity))
        .map_err(|e| input.error(e))
}

/// Opens `inputs` and starts their merge.
fn start_merge(inputs: &[Input]) -> Result<Merger<File>, TaskError> {
    // Read buffers: 64 KiB each, less when there are many sources (memory stays bounded
    // by READ_BUFFERS_TOTAL) or the file is small (a tiny task's file needs no 64 KiB;
    // one byte more than the file lets the reader see the end in one read).
    let per_source = (READ_BUFFERS_TOTAL / inputs.len().max(1)).clamp(4 << 10, 64 << 10);
    let sources = inputs
        .iter()
        .map(|input| open_input(input, per_source))
        .collect::<Result<Vec<_>, _>>()?;
    Merger::new(sources).map_err(|e| inputs[e.source_index].error(e.error))
}

/// Run files of an attempt's merge passes: removed once merged, and in any case when
/// the attempt ends (dropped), whether it succeeded or not.
#[derive(Default)]
struct RunFiles(Vec<PathBuf>);

impl RunFiles {
    fn remove(&mut self, paths: impl IntoIterator<Item = PathBuf>) {
        for path in paths {
            let _ = std::fs::remove_file(&path);
            self.0.retain(|p| *p != path);
        }
    }
}

impl Drop for RunFiles {
    fn drop(&mut self) {
        for path in &self.0 {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// A reduce's inputs ready to merge: at most the fan-in of them open, after as many passes
/// as it took.
struct MergedInputs {
    merger: Merger<File>,
    /// What each of the merger's sources is, to tell whose fault an error is.
    inputs: Vec<Input>,
    /// Keeps the runs the merger reads until the reduce is done.
    _runs: RunFiles,
}

/// Checks that every listed intermediate is there, then merges them with at most
/// `ctx.merge_fan_in` files open at once: while there are more inputs than that, each
/// range of `merge_fan_in` consecutive inputs is merged into a run (same format,
/// [`DataDir::merge_run_tmp`]), and the runs become the next pass's inputs. Consecutive
/// ranges merged in order keep every group's values in map-task order, so the groups are
/// exactly those of one merge over all inputs.
fn merge_inputs(
    ctx: &TaskContext<'_>,
    partition: u32,
    map_tasks: &[u32],
    app: &str,
    cancelled: &dyn Fn() -> bool,
) -> Result<MergedInputs, TaskError> {
    let mut level: Vec<Input> = map_tasks
        .iter()
        .map(|&task| Input::Map {
            task,
            path: ctx.data.intermediate(ctx.job_id, task, partition),
        })
        .collect();
    // Every missing file at once (a stat holds no descriptor), so all their maps rerun together.
    let mut missing = Vec::new();
    let mut first_problem = String::new();
    for input in &level {
        if let Err(e) = std::fs::metadata(input.path()) {
            match input.error(ShuffleError::Io(e)) {
                TaskError::BadIntermediate { maps, message } => {
                    if first_problem.is_empty() {
                        first_problem = message;
                    }
                    missing.extend(maps);
                }
                other => return Err(other),
            }
        }
    }
    if !missing.is_empty() {
        return Err(TaskError::BadIntermediate {
            maps: missing,
            message: first_problem,
        });
    }

    let fan_in = ctx.merge_fan_in.max(2);
    let mut runs = RunFiles::default();
    let mut next_run = 0;
    while level.len() > fan_in {
        let mut next = Vec::with_capacity(level.len().div_ceil(fan_in));
        for chunk in level.chunks(fan_in) {
            if let [single] = chunk {
                next.push(single.clone());
                continue;
            }
            if cancelled() {
                return Err(TaskError::App(AppError::Cancelled {
                    app: app.to_string(),
                }));
            }
            let path = ctx
                .data
                .merge_run_tmp(ctx.job_id, partition, next_run, ctx.attempt_id);
            next_run += 1;
            let mut merger = start_merge(chunk)?;
            let file = File::create(&path).map_err(io_error(&path))?;
            runs.0.push(path.clone());
            let mut writer = Writer::new(BufWriter::with_capacity(WRITE_BUFFER, file))
                .map_err(|e| shuffle_io(&path, e))?;
            merger.write_run(&mut writer).map_err(|e| match e {
                RunError::Source(e) => chunk[e.source_index].error(e.error),
                RunError::Output(e) => shuffle_io(&path, e),
            })?;
            writer
                .finish()
                .map_err(|e| shuffle_io(&path, e))?
                .into_inner()
                .map_err(|e| e.into_error())
                .map_err(io_error(&path))?;
            next.push(Input::Run(path));
        }
        // The runs just merged are no longer needed: disk use stays at about twice the input.
        let merged = level.iter().filter_map(|i| match i {
            Input::Run(p) if !next.iter().any(|n| n.path() == p) => Some(p.clone()),
            _ => None,
        });
        let merged: Vec<PathBuf> = merged.collect();
        runs.remove(merged);
        level = next;
    }
    if next_run > 0 {
        tracing::info!(
            inputs = map_tasks.len(),
            fan_in,
            runs = next_run,
            "merged the reduce's inputs in passes"
        );
    }
    Ok(MergedInputs {
        merger: start_merge(&level)?,
        inputs: level,
        _runs: runs,
    })
}

/// Runs reduce task `partition`: merges `mr-X-partition` for every map task X in
/// `map_tasks` (those that wrote records for it), in passes when they are more than the
/// merge fan-in ([`merge_inputs`]).
pub fn run_reduce(
    ctx: &TaskContext<'_>,
    app: &AppModule,
    partition: u32,
    map_tasks: &[u32],
) -> Result<TaskStats, TaskError> {
    // With S3 storage the intermediates are fetched into the scratch folder first, then
    // merged as local files (as Hadoop and Spark spill to local disks).
    let _fetched = match ctx.store {
        Storage::Local => RunFiles::default(),
        Storage::S3(s3) => fetch_intermediates(ctx, s3, partition, map_tasks)?,
    };
    let mut merged = merge_inputs(ctx, partition, map_tasks, app.name(), &|| {
        app.is_cancelled()
    })?;
    let inputs = &merged.inputs;
    let bad_source = |e: mr_shuffle::MergeError| inputs[e.source_index].error(e.error);

    let final_path = ctx.data.output(ctx.job_id, partition);
    let tmp = DataDir::attempt_tmp(&final_path, ctx.attempt_id);
    let temps = TempFiles(vec![tmp.clone()]);
    let mut out =
        BufWriter::with_capacity(WRITE_BUFFER, File::create(&tmp).map_err(io_error(&tmp))?);
    let clock = TaskClock::start(ctx.limits);
    let mut reducer = app.reducer(&ctx.limits)?;
    let mut batch = ReduceBatch::new();
    let mut keys = KeyList::default();
    let mut group = Group::default();
    let mut stats = TaskStats::default();
    loop {
        let more = merged.merger.next_group(&mut group).map_err(bad_source)?;
        if more {
            stats.records_in += group.len() as u64;
            batch.push_group(group.key(), group.values());
            keys.push(group.key());
        }
        if !batch.is_empty() && (!more || batch.bytes() >= REDUCE_BATCH_BYTES) {
            let budget = ctx.skip_budget.saturating_sub(stats.skipped.len() as u64);
            match reducer.reduce_batch(&batch) {
                Ok(values) => {
                    for (key, value) in keys.iter().zip(&values) {
                        stats.output_bytes +=
                            write_line(&mut out, key, value).map_err(io_error(&tmp))?;
                    }
                    stats.records_out += values.len() as u64;
                    add_counters(&mut stats.counters, reducer.take_counters());
                }
                Err(error) if budget > 0 && skip::is_record_failure(&error) => {
                    tracing::warn!(%error, groups = batch.len(), "the app failed on a batch; narrowing it down to skip the keys it fails on");
                    let key_list: Vec<&[u8]> = keys.iter().collect();
                    let narrowed = skip::narrow(batch.len(), error, budget, &mut |r| {
                        // A fresh instance for each try: a trapped one is done for.
                        let limits = clock.limits(app.name())?;
                        let mut fresh = app.reducer(&limits).map_err(|e| clock.error(e))?;
                        let values = fresh
                            .reduce_batch(&batch.sub_batch(r))
                            .map_err(|e| clock.error(e))?;
                        Ok((values, fresh.take_counters()))
                    })
                    .map_err(|e| match e {
                        NarrowError::App(e) => TaskError::App(e),
                        NarrowError::OverBudget { item, error } => TaskError::TooManySkipped {
                            record: Box::new(SkippedRecord::key(key_list[item], &error)),
                            budget: ctx.skip_budget,
                            source: Box::new(error),
                        },
                    })?;
                    for (range, (values, counters)) in narrowed.done {
                        for (key, value) in key_list[range.clone()].iter().zip(&values) {
                            stats.output_bytes +=
                                write_line(&mut out, key, value).map_err(io_error(&tmp))?;
                        }
                        stats.records_out += values.len() as u64;
                        add_counters(&mut stats.counters, counters);
                    }
                    stats.skipped.extend(
                        narrowed
                            .bad
                            .iter()
                            .map(|(i, e)| SkippedRecord::key(key_list[*i], e)),
                    );
                    // The session's instance trapped: later batches get a fresh one, within
                    // the task's time.
                    reducer = app
                        .reducer(&clock.limits(app.name())?)
                        .map_err(|e| clock.error(e))?;
                }
                Err(error) => return Err(error.into()),
            }
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
    match ctx.store {
        Storage::Local => temps.keep(),
        // Uploaded under the attempt's key; the local copy goes with `temps`.
        Storage::S3(s3) => s3.upload_file(&ctx.data.key_of(&tmp)?, &tmp)?,
    }
    Ok(stats)
}

/// Downloads the intermediates of `partition` into the scratch folder, where
/// [`merge_inputs`] finds them; removed when the returned guard is dropped. Every missing
/// one is named at once, so that all their maps run again together.
fn fetch_intermediates(
    ctx: &TaskContext<'_>,
    s3: &S3Store,
    partition: u32,
    map_tasks: &[u32],
) -> Result<RunFiles, TaskError> {
    let dir = ctx.data.job_dir(ctx.job_id);
    std::fs::create_dir_all(&dir).map_err(io_error(&dir))?;
    let mut pairs = Vec::with_capacity(map_tasks.len());
    for &task in map_tasks {
        let path = ctx.data.intermediate(ctx.job_id, task, partition);
        pairs.push((ctx.data.key_of(&path)?, path));
    }
    // Every local file made (a missing object's partial one too) goes with the guard.
    let fetched = RunFiles(pairs.iter().map(|(_, path)| path.clone()).collect());
    let mut missing = Vec::new();
    let mut first_problem = String::new();
    for (result, &task) in s3.download_each(pairs).into_iter().zip(map_tasks) {
        match result {
            Ok(()) => {}
            Err(e) if e.is_not_found() => {
                if first_problem.is_empty() {
                    first_problem = e.to_string();
                }
                missing.push(task);
            }
            Err(e) => return Err(e.into()),
        }
    }
    if !missing.is_empty() {
        return Err(TaskError::BadIntermediate {
            maps: missing,
            message: first_problem,
        });
    }
    Ok(fetched)
}

/// One output line, as the lab writes it: `key value\n`; returns its bytes.
pub fn write_line(out: &mut impl Write, key: &[u8], value: &[u8]) -> io::Result<u64> {
    out.write_all(key)?;
    out.write_all(b" ")?;
    out.write_all(value)?;
    out.write_all(b"\n")?;
    Ok((key.len() + value.len() + 2) as u64)
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
    use std::collections::BTreeMap;
    use std::time::Duration;

    const JOB: &str = "job1";
    const PARTITION: u32 = 0;

    type Groups = Vec<(Vec<u8>, Vec<Vec<u8>>)>;
    /// The records of each intermediate file, in file order.
    type Files = Vec<Vec<(Vec<u8>, Vec<u8>)>>;

    fn context(data: &DataDir, merge_fan_in: usize) -> TaskContext<'_> {
        TaskContext {
            data,
            store: &Storage::Local,
            job_id: JOB,
            attempt_id: 7,
            n_reduce: 1,
            limits: Limits {
                time: Duration::from_secs(60),
                memory_bytes: 64 << 20,
            },
            merge_fan_in,
            skip_budget: 0,
        }
    }

    /// `n` intermediates `mr-X-0` with repeating keys (some files empty) and values naming
    /// their file and position; returns the folder and the records per file.
    fn intermediates(n: u32) -> (tempfile::TempDir, DataDir, Files) {
        let tmp = tempfile::tempdir().expect("tempdir");
        let data = DataDir::open(tmp.path()).expect("data dir");
        std::fs::create_dir_all(data.job_dir(JOB)).expect("job dir");
        let mut all = Vec::new();
        for x in 0..n {
            let mut records: Vec<(Vec<u8>, Vec<u8>)> = (0..(x * 7 % 5))
                .map(|i| {
                    let key = format!("k{}", (x * 31 + i * 17) % 9).into_bytes();
                    (key, format!("m{x}v{i}").into_bytes())
                })
                .collect();
            records.sort_by(|a, b| a.0.cmp(&b.0));
            let mut w = Writer::new(Vec::new()).expect("header");
            for (k, v) in &records {
                w.append(k, v).expect("append");
            }
            let bytes = w.finish().expect("finish");
            std::fs::write(data.intermediate(JOB, x, PARTITION), bytes).expect("write");
            all.push(records);
        }
        (tmp, data, all)
    }

    fn merged_groups(data: &DataDir, maps: &[u32], fan_in: usize) -> Result<Groups, TaskError> {
        let ctx = context(data, fan_in);
        let mut merged = merge_inputs(&ctx, PARTITION, maps, "test", &|| false)?;
        let mut out = Vec::new();
        let mut group = Group::new();
        while merged.merger.next_group(&mut group).expect("group") {
            out.push((
                group.key().to_vec(),
                group.values().map(<[u8]>::to_vec).collect(),
            ));
        }
        Ok(out)
    }

    /// Every file in the job folder but the intermediates: temp files left behind.
    fn leftovers(data: &DataDir) -> Vec<String> {
        std::fs::read_dir(data.job_dir(JOB))
            .expect("read job dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with("mr-") || n.starts_with("mr-run"))
            .collect()
    }

    /// Larger outputs against the plain definition: keys of 0 to 12 bytes over three
    /// letters and the zero byte (many share their first 8 bytes, or differ only by zero
    /// padding, or repeat), for several partition counts.
    #[test]
    fn large_map_outputs_sort_as_a_stable_sort_by_partition_and_key() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for (round, n) in [256usize, 3000, 20_000].into_iter().enumerate() {
            let keys: Vec<Vec<u8>> = (0..n)
                .map(|_| {
                    let len = (next() % 13) as usize;
                    (0..len).map(|_| b"ab\0z"[(next() % 4) as usize]).collect()
                })
                .collect();
            for n_reduce in [1, 7, 300] {
                let mut want: Vec<usize> = (0..n).collect();
                want.sort_by_key(|&i| (mr_shuffle::partition(&keys[i], n_reduce), &keys[i]));
                let starts: Vec<u32> = (0..n as u32).collect();
                let got: Vec<usize> = sort_order(&starts, |i| &keys[i as usize], n_reduce)
                    .iter()
                    .map(|e| e.start as usize)
                    .collect();
                assert_eq!(got, want, "round {round}, n_reduce {n_reduce}");
            }
        }
    }

    #[test]
    fn map_records_sort_by_partition_then_key_then_emit_order() {
        // Keys that share 8-byte prefixes, differ only past them or in zero padding, and
        // repeat (whose emit order must survive).
        let keys: Vec<&[u8]> = vec![
            b"abcdefgh2",
            b"abcdefgh1",
            b"ab",
            b"ab\0",
            b"",
            b"abcdefgh",
            b"zz",
            b"ab",
            b"abcdefgh1",
            b"\xff\xfe",
            b"Ab",
            b"abcdefgh10",
            b"",
            b"zz",
        ];
        for n_reduce in [1, 3, 10] {
            let mut want: Vec<usize> = (0..keys.len()).collect();
            // The plain definition: a stable sort by (partition, key).
            want.sort_by_key(|&i| (mr_shuffle::partition(keys[i], n_reduce), keys[i]));
            let starts: Vec<u32> = (0..keys.len() as u32).collect();
            let got: Vec<usize> = sort_order(&starts, |i| keys[i as usize], n_reduce)
                .iter()
                .map(|e| e.start as usize)
                .collect();
            assert_eq!(got, want, "n_reduce {n_reduce}");
        }
    }

    #[test]
    fn the_fan_in_follows_the_open_file_limit() {
        assert_eq!(merge_fan_in(None), MAX_MERGE_FAN_IN);
        assert_eq!(merge_fan_in(Some(1 << 20)), MAX_MERGE_FAN_IN);
        assert_eq!(merge_fan_in(Some(128)), 128 - RESERVED_FILES as usize);
        assert_eq!(merge_fan_in(Some(10)), 2);
    }

    /// A merge in passes gives exactly the groups of one pass, and of a map built from
    /// the records; it never holds more than the fan-in open, and leaves no runs behind.
    #[test]
    fn multi_pass_merge_equals_single_pass_and_the_reference() {
        let n = 300;
        let (_tmp, data, records) = intermediates(n);
        let maps: Vec<u32> = (0..n).collect();
        let mut reference: BTreeMap<Vec<u8>, Vec<Vec<u8>>> = BTreeMap::new();
        for file in &records {
            for (k, v) in file {
                reference.entry(k.clone()).or_default().push(v.clone());
            }
        }
        let reference: Groups = reference.into_iter().collect();
        let single = merged_groups(&data, &maps, usize::MAX).expect("single pass");
        assert_eq!(single, reference);
        for fan_in in [2, 3, 16, 64, MAX_MERGE_FAN_IN] {
            let ctx = context(&data, fan_in);
            let merged = merge_inputs(&ctx, PARTITION, &maps, "test", &|| false).expect("merge");
            assert!(merged.inputs.len() <= fan_in, "fan-in {fan_in}");
            drop(merged);
            assert_eq!(
                merged_groups(&data, &maps, fan_in).expect("multi pass"),
                single,
                "fan-in {fan_in}"
            );
            assert!(leftovers(&data).is_empty(), "{:?}", leftovers(&data));
        }
    }

    #[test]
    fn missing_intermediates_are_all_named_at_once() {
        let (_tmp, data, _) = intermediates(10);
        for x in [3, 8] {
            std::fs::remove_file(data.intermediate(JOB, x, PARTITION)).expect("rm");
        }
        let maps: Vec<u32> = (0..10).collect();
        match merged_groups(&data, &maps, 2) {
            Err(TaskError::BadIntermediate { maps, .. }) => assert_eq!(maps, [3, 8]),
            other => panic!("expected a bad intermediate, got {other:?}"),
        }
    }

    /// A corrupt intermediate found in a late pass is named, and the runs written before
    /// are removed.
    #[test]
    fn a_corrupt_intermediate_is_named_and_no_run_is_left() {
        let (_tmp, data, _) = intermediates(40);
        let victim = data.intermediate(JOB, 33, PARTITION);
        let mut bytes = std::fs::read(&victim).expect("read");
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(&victim, bytes).expect("write");
        let maps: Vec<u32> = (0..40).collect();
        match merged_groups(&data, &maps, 4) {
            Err(TaskError::BadIntermediate { maps, .. }) => assert_eq!(maps, [33]),
            other => panic!("expected a bad intermediate, got {other:?}"),
        }
        assert!(leftovers(&data).is_empty(), "{:?}", leftovers(&data));
    }

    /// Any error but "missing" or "corrupt" is the attempt's own, not a lost intermediate:
    /// too many open files, I/O errors, a file that cannot be read.
    #[test]
    fn other_io_errors_are_the_attempts_own() {
        let input = Input::Map {
            task: 5,
            path: PathBuf::from("mr-5-0"),
        };
        for errno in [libc::EMFILE, libc::ENFILE, libc::EIO, libc::EACCES] {
            let error = input.error(ShuffleError::Io(io::Error::from_raw_os_error(errno)));
            assert!(
                matches!(&error, TaskError::Io { source, .. } if source.raw_os_error() == Some(errno)),
                "errno {errno}: {error:?}"
            );
        }
        let missing = input.error(ShuffleError::Io(io::ErrorKind::NotFound.into()));
        assert!(matches!(missing, TaskError::BadIntermediate { ref maps, .. } if maps == &[5]));
        for lost in [
            ShuffleError::Truncated,
            ShuffleError::BadMagic,
            ShuffleError::Unsorted,
        ] {
            assert!(matches!(
                input.error(lost),
                TaskError::BadIntermediate { .. }
            ));
        }
        // A run is the attempt's own file, whatever is wrong with it.
        let run = Input::Run(PathBuf::from(".mr-run-0-0.a7.tmp"));
        assert!(matches!(
            run.error(ShuffleError::Truncated),
            TaskError::Io { .. }
        ));

        // For real: an intermediate that is a folder opens, but reading it fails (EISDIR).
        let (_tmp, data, _) = intermediates(3);
        let path = data.intermediate(JOB, 1, PARTITION);
        std::fs::remove_file(&path).expect("rm");
        std::fs::create_dir(&path).expect("mkdir");
        match merged_groups(&data, &[0, 1, 2], 2) {
            Err(TaskError::Io { path: p, source }) => {
                assert_eq!(p, path);
                assert_eq!(source.raw_os_error(), Some(libc::EISDIR));
            }
            other => panic!("expected an I/O error, got {other:?}"),
        }
    }

    #[test]
    fn a_cancelled_attempt_stops_between_runs() {
        let (_tmp, data, _) = intermediates(20);
        let ctx = context(&data, 2);
        let maps: Vec<u32> = (0..20).collect();
        let result = merge_inputs(&ctx, PARTITION, &maps, "test", &|| true);
        assert!(matches!(
            result,
            Err(TaskError::App(AppError::Cancelled { .. }))
        ));
        assert!(leftovers(&data).is_empty());
    }

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

    /// A split is the lines that start in `[offset, offset + length)`, by a plain reading
    /// of that rule, for every offset and many lengths: lines longer than one search read,
    /// a file without a final newline, empty lines, splits past the end, an empty file.
    #[test]
    fn a_split_is_the_lines_that_start_in_its_range() {
        let dir = tempfile::tempdir().expect("tempdir");
        let long = "x".repeat(9000);
        let texts = [
            format!("a b\n{long}\n\nc\n{long} d\nend"),
            format!("\n\n{long}\n"),
            "one line, no newline".to_string(),
            String::new(),
        ];
        for (n, text) in texts.iter().enumerate() {
            let path = dir.path().join(format!("f{n}.txt"));
            std::fs::write(&path, text).expect("write");
            let size = text.len() as u64;
            for offset in (0..=size + 2)
                .step_by(7)
                .chain([1, size.saturating_sub(1), size])
            {
                for length in [1, 2, 5, 4095, 4096, 9001, size + 1] {
                    let (mut want, mut want_start, mut at) = (Vec::new(), None, 0u64);
                    for line in text.as_bytes().split_inclusive(|&b| b == b'\n') {
                        if (offset..offset + length).contains(&at) {
                            want.extend_from_slice(line);
                            want_start.get_or_insert(at);
                        }
                        at += line.len() as u64;
                    }
                    let (start, got) = read_split_at(&path, offset, length).expect("read");
                    assert_eq!(got, want, "file {n}, offset {offset}, length {length}");
                    if let Some(want_start) = want_start {
                        assert_eq!(start, want_start, "file {n}, offset {offset}");
                    }
                }
            }
        }
    }
}
