//! The reduce side's streaming k-way merge: sorted intermediate files in, one
//! [`Group`] (a key and all its values) at a time out.
//!
//! A tournament tree of source indices (a loser tree), ordered by (current key, source
//! index), picks the next record: ⌈log₂ k⌉ comparisons a record, about half what a binary
//! heap makes. Ties go to the lower source index, which is what orders a group's values
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
    /// source advances: most comparisons of the tree are settled by them, without reading
    /// the keys (a `memcmp` call each, a large part of a reduce's merge before).
    prefixes: Vec<u64>,
    /// Whether each source has a current record (it is not exhausted).
    live: Vec<bool>,
    /// The loser tree over k sources: `tree[0]` is the source whose record comes next (the
    /// winner), and `tree[n]`, for 1 ≤ n < k, the loser of the match at node n, whose
    /// children are nodes 2n and 2n + 1; source i is leaf k + i. Advancing the winner
    /// replays only its own path to the root. Empty when there are no sources.
    tree: Vec<usize>,
    /// Set once an error was reported: the source it came from.
    failed: Option<usize>,
}

impl<R: Read> Merger<R> {
    /// Starts the merge by reading the first record of every source.
    ///
    /// `sources[i]` is map task i's file for this partition; the index is reported in errors.
    pub fn new(sources: Vec<Reader<R>>) -> Result<Self, MergeError> {
        let mut merger = Self {
            live: vec![false; sources.len()],
            tree: Vec::new(),
            prefixes: vec![0; sources.len()],
            sources,
            failed: None,
        };
        for (source_index, source) in merger.sources.iter_mut().enumerate() {
            match source.advance() {
                Ok(true) => {
                    merger.prefixes[source_index] = key_prefix(source.key());
                    merger.live[source_index] = true;
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
        merger.build();
        Ok(merger)
    }

    /// Plays every match of the tree, from the leaves up.
    fn build(&mut self) {
        let k = self.sources.len();
        if k == 0 {
            return;
        }
        self.tree = vec![0; k];
        // The winner of the match at each internal node, while building.
        let mut winners = vec![0; k];
        for node in (1..k).rev() {
            let player = |child: usize| {
                if child >= k {
                    child - k
                } else {
                    winners[child]
                }
            };
            let (a, b) = (player(2 * node), player(2 * node + 1));
            let (winner, loser) = if self.before(a, b) { (a, b) } else { (b, a) };
            winners[node] = winner;
            self.tree[node] = loser;
        }
        self.tree[0] = if k == 1 { 0 } else { winners[1] };
    }

    /// Replays the matches on `source`'s path to the root after its record changed.
    #[inline]
    fn replay(&mut self, mut source: usize) {
        let mut node = (source + self.sources.len()) / 2;
        while node > 0 {
            let other = self.tree[node];
            if self.before(other, source) {
                self.tree[node] = source;
                source = other;
            }
            node /= 2;
        }
        self.tree[0] = source;
    }

    /// The source whose record comes next, if any has one.
    #[inline]
    fn top(&self) -> Option<usize> {
        let &winner = self.tree.first()?;
        self.live[winner].then_some(winner)
    }

    /// Whether source `a`'s current record comes before source `b`'s: by key, then by
    /// source (so that equal keys keep the sources' order); an exhausted source comes after
    /// every live one.
    #[inline]
    fn before(&self, a: usize, b: usize) -> bool {
        match (self.live[a], self.live[b]) {
            (true, true) => match self.prefixes[a].cmp(&self.prefixes[b]) {
                std::cmp::Ordering::Equal => {
                    (self.sources[a].key(), a) < (self.sources[b].key(), b)
                }
                order => order.is_lt(),
            },
            (true, false) => true,
            (false, true) => false,
            (false, false) => a < b,
        }
    }

    /// Fills `group` with the next key and all its values (values ordered by source index,
    /// then by order within the file). Returns `Ok(false)`, with `group` emptied, when every
    /// source is exhausted and all of them verified their checksums.
    ///
    /// After an error the merge cannot go on: later calls fail too (same `source_index`).
    pub fn next_group(&mut self, group: &mut Group) -> Result<bool, MergeError> {
        group.clear();
        self.usable()?;
        let Some(first) = self.top() else {
            return Ok(false);
        };
        group.key.extend_from_slice(self.sources[first].key());
        while let Some(top) = self.top() {
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

    /// Moves the winning source to its next record (out of play once exhausted and
    /// verified) and replays its matches; an error is remembered.
    fn advance_top(&mut self, top: usize) -> Result<(), MergeError> {
        match self.sources[top].advance() {
            Ok(true) => self.prefixes[top] = key_prefix(self.sources[top].key()),
            Ok(false) => self.live[top] = false,
            Err(error) => {
                self.failed = Some(top);
                return Err(MergeError {
                    source_index: top,
                    error,
                });
            }
        }
        self.replay(top);
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
        while let Some(top) = self.top() {
            let source = &self.sources[top];
            out.append(source.key(), source.value())
                .map_err(RunError::Output)?;
            written += 1;
            self.advance_top(top).map_err(RunError::Source)?;
        }
        Ok(written)
    }
}
