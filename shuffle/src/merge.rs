//! The reduce side's streaming k-way merge: sorted intermediate files in, one
//! [`Group`] (a key and all its values) at a time out.
//!
//! A binary min-heap of source indices, ordered by (current key, source index), picks the
//! next record. Ties go to the lower source index, which is what orders a group's values
//! by map task and then by position in the file. Records stay in the readers' buffers
//! until they are copied into the group, so memory is bounded by one buffer per source
//! plus the largest group.

use std::io::{Read, Write};

use crate::{Reader, ShuffleError, Writer, key_prefix};

/// Error from one of the [`Merger`]'s sources.
#[derive(Debug, thiserror::Error)]
#[error("intermediate file of map task {source_index}: {error}")]
pub struct MergeError {
    /// Index in the `sources` given to [`Merger::new`] (the map task number).
    pub source_index: usize,
    /// What went wrong with that source.
    #[source]
    pub error: ShuffleError,
}

/// Error of [`Merger::write_run`]: a source failed, or writing the run did.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Reading one of the merge's sources failed.
    #[error(transparent)]
    Source(#[from] MergeError),
    /// Writing the run failed.
    #[error("writing a merged run: {0}")]
    Output(#[source] ShuffleError),
}

/// One key and all its values, in reusable flat storage: once its buffers have grown to
/// the largest group, filling it again allocates nothing.
#[derive(Debug, Default, Clone)]
pub struct Group {
    key: Vec<u8>,
    /// All values, concatenated.
    data: Vec<u8>,
    /// End offset in `data` of each value.
    ends: Vec<usize>,
}

impl Group {
    /// An empty group (same as `Group::default()`).
    pub fn new() -> Self {
        Self::default()
    }

    /// The group's key.
    pub fn key(&self) -> &[u8] {
        &self.key
    }

    /// Number of values.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether the group has no values: true only when it holds no group (before the first
    /// successful [`Merger::next_group`], or after one returned `Ok(false)` or an error).
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The values, ordered by source index, then by order within the source file.
    pub fn values(&self) -> impl ExactSizeIterator<Item = &[u8]> + '_ {
        (0..self.ends.len()).map(move |i| {
            let start = if i == 0 { 0 } else { self.ends[i - 1] };
            &self.data[start..self.ends[i]]
        })
    }

    fn clear(&mut self) {
        self.key.clear();
        self.data.clear();
        self.ends.clear();
    }

    #[inline]
    fn push_value(&mut self, value: &[u8]) {
        self.data.extend_from_slice(value);
        self.ends.push(self.data.len());
    }
}

/// Streaming k-way merge of several sorted intermediate files (one per map task).
pub struct Merger<R: Read> {
    sources: Vec<Reader<R>>,
    /// Each source's current key's first 8 bytes as a number ([`key_prefix`]), kept as the
    /// source advances: most comparisons of the heap are settled by them, without reading
    /// the keys (a `memcmp` call each, a large part of a reduce's merge before).
    prefixes: Vec<u64>,
    /// Min-heap of the indices of the sources that have a current record.
    heap: Vec<usize>,
    /// Set once an error was reported: the source it came from.
    failed: Option<usize>,
}

impl<R: Read> Merger<R> {
    /// Starts the merge by reading the first record of every source.
    ///
    /// `sources[i]` is map task i's file for this partition; the index is reported in errors.
    pub fn new(sources: Vec<Reader<R>>) -> Result<Self, MergeError> {
        let mut merger = Self {
            heap: Vec::with_capacity(sources.len()),
            prefixes: vec![0; sources.len()],
            sources,
            failed: None,
        };
        for (source_index, source) in merger.sources.iter_mut().enumerate() {
            match source.advance() {
                Ok(true) => {
                    merger.prefixes[source_index] = key_prefix(source.key());
                    merger.heap.push(source_index);
                }
                Ok(false) => {}
                Err(error) => {
                    return Err(MergeError {
                        source_index,
                        error,
                    });
                }
            }
        }
        for i in (0..merger.heap.len() / 2).rev() {
            sift_down(&mut merger.heap, &merger.sources, &merger.prefixes, i);
        }
        Ok(merger)
    }

    /// Fills `group` with the next key and all its values (values ordered by source index,
    /// then by order within the file). Returns `Ok(false)`, with `group` emptied, when every
    /// source is exhausted and all of them verified their checksums.
    ///
    /// After an error the merge cannot go on: later calls fail too (same `source_index`).
    pub fn next_group(&mut self, group: &mut Group) -> Result<bool, MergeError> {
        group.clear();
        self.usable()?;
        let Some(&first) = self.heap.first() else {
            return Ok(false);
        };
        group.key.extend_from_slice(self.sources[first].key());
        while let Some(&top) = self.heap.first() {
            let source = &mut self.sources[top];
            if source.key() != group.key.as_slice() {
                break;
            }
            group.push_value(source.value());
            self.advance_top(top)?;
        }
        Ok(true)
    }

    /// Fails if an earlier call reported an error: the merge cannot go on after one.
    fn usable(&self) -> Result<(), MergeError> {
        match self.failed {
            Some(source_index) => Err(MergeError {
                source_index,
                error: ShuffleError::Corrupt("merge used again after it reported an error".into()),
            }),
            None => Ok(()),
        }
    }

    /// Moves the source at the top of the heap to its next record (dropping it from the
    /// heap once exhausted and verified) and restores the heap; an error is remembered.
    fn advance_top(&mut self, top: usize) -> Result<(), MergeError> {
        match self.sources[top].advance() {
            Ok(true) => self.prefixes[top] = key_prefix(self.sources[top].key()),
            Ok(false) => {
                self.heap.swap_remove(0);
            }
            Err(error) => {
                self.failed = Some(top);
                return Err(MergeError {
                    source_index: top,
                    error,
                });
            }
        }
        sift_down(&mut self.heap, &self.sources, &self.prefixes, 0);
        Ok(())
    }
}

impl<R: Read> Merger<R> {
    /// Writes every remaining record to `out`, in exactly the order [`Merger::next_group`]
    /// would give them (by key, then source index, then position in the source), and
    /// returns how many it wrote. `out` is not finished: the caller does that.
    ///
    /// This is one pass of a multi-pass merge: merging consecutive ranges of sources into
    /// runs this way and then merging the runs, in the same order, gives every group the
    /// same values in the same order as one merge of all sources.
    pub fn write_run<W: Write>(&mut self, out: &mut Writer<W>) -> Result<u64, RunError> {
        self.usable().map_err(RunError::Source)?;
        let mut written = 0;
        while let Some(&top) = self.heap.first() {
            let source = &self.sources[top];
            out.append(source.key(), source.value())
                .map_err(RunError::Output)?;
            written += 1;
            self.advance_top(top).map_err(RunError::Source)?;
        }
        Ok(written)
    }
}

/// Whether source `a`'s current record comes before source `b`'s: by key, then by source
/// (so that equal keys keep the sources' order).
#[inline]
fn before<R: Read>(sources: &[Reader<R>], prefixes: &[u64], a: usize, b: usize) -> bool {
    match prefixes[a].cmp(&prefixes[b]) {
        std::cmp::Ordering::Equal => (sources[a].key(), a) < (sources[b].key(), b),
        order => order.is_lt(),
    }
}

/// Restores the heap property below position `i`.
#[inline]
fn sift_down<R: Read>(heap: &mut [usize], sources: &[Reader<R>], prefixes: &[u64], mut i: usize) {
    loop {
        let left = 2 * i + 1;
        if left >= heap.len() {
            return;
        }
        let right = left + 1;
        let child = if right < heap.len() && before(sources, prefixes, heap[right], heap[left]) {
            right
        } else {
            left
        };
        if !before(sources, prefixes, heap[child], heap[i]) {
            return;
        }
        heap.swap(i, child);
        i = child;
    }
}
