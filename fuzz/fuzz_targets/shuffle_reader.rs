//! Fuzzes the intermediate-file reader (`mr_shuffle::Reader`) and the k-way merge
//! (`mr_shuffle::Merger`) with arbitrary bytes.
//!
//! Besides "never panics" (and, through `-rss_limit_mb`, "never allocates absurdly"), it
//! checks the reader against a small, independent model of the format documented in
//! `shuffle/src/lib.rs`:
//!
//! * the reader accepts a file exactly when the model does, yields the same records before
//!   it stops, and fails with the same kind of error (`Truncated`, `BadMagic`, `Unsorted`,
//!   `Corrupt`; never `Io`, the input being a slice);
//! * a file it accepts is re-encoded by `Writer`: if all of the file's varints are minimal,
//!   the result is byte-for-byte the input (the format is canonical); the reader also
//!   accepts non-minimal LEB128 varints (e.g. `81 00` for 1, `80 00` for the end marker),
//!   for which the re-encoding is the shorter canonical form, which must read back as the
//!   same records;
//! * read through a `Read` that hands out a few bytes per call (and sometimes
//!   `Interrupted`) into a reader with a tiny initial buffer (`Reader::with_buffer`), the
//!   buffer's refills, growth, compaction and incremental checksum run all the time: the
//!   outcome must be the same as from one slice with `Reader::new`;
//! * the input cut at each inner occurrence of the magic "MRI1" (at most 3 sources; in two
//!   halves if there is none) is merged: the merge ends cleanly exactly when every source
//!   is valid, then yields the documented groups (keys ascending, values by source, then
//!   by position); otherwise it fails with the error of an invalid source.
//!
//! An input that claims a record of over 64 KiB is only read once, from a slice (see
//! `check_single_file`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use mr_shuffle::{Group, MAGIC, MAX_LEN, Merger, Reader, ShuffleError, Writer};
use std::io::{ErrorKind, Read};

type Records = Vec<(Vec<u8>, Vec<u8>)>;

/// The kind of a `ShuffleError`, for comparing the reader with the model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Io,
    BadMagic,
    Truncated,
    Corrupt,
    Unsorted,
}

fn kind(e: &ShuffleError) -> Kind {
    match e {
        ShuffleError::Io(_) => Kind::Io,
        ShuffleError::BadMagic => Kind::BadMagic,
        ShuffleError::Truncated => Kind::Truncated,
        ShuffleError::Corrupt(_) => Kind::Corrupt,
        ShuffleError::Unsorted => Kind::Unsorted,
    }
}

/// What reading a whole file gave: the records returned, then the end or an error.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    records: Records,
    end: Result<(), Kind>,
}

/// A `Read` that returns at most a few bytes per call (1 to 13, cycling from a start
/// derived from the data), and `Interrupted` on every 7th call.
struct Trickle<'a> {
    data: &'a [u8],
    calls: usize,
}

impl<'a> Trickle<'a> {
    fn new(data: &'a [u8]) -> Self {
        Self {
            data,
            calls: data.len() % 13,
        }
    }
}

impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.calls += 1;
        if self.calls.is_multiple_of(7) {
            return Err(ErrorKind::Interrupted.into());
        }
        let n = (self.calls % 13 + 1).min(buf.len()).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

/// `Reader::new` on a slice.
fn from_slice(data: &[u8]) -> Result<Reader<&[u8]>, ShuffleError> {
    Reader::new(data)
}

/// A reader that gets a few bytes per `read` into a buffer of 4 to 40 bytes to start with.
fn trickling(data: &[u8]) -> Result<Reader<Trickle<'_>>, ShuffleError> {
    Reader::with_buffer(Trickle::new(data), 1 + data.len() % 40)
}

/// Reads a whole file with the real `Reader` until `Ok(None)` or an error.
fn read_with_reader<R: Read>(reader: Result<Reader<R>, ShuffleError>) -> Outcome {
    let mut reader = match reader {
        Ok(reader) => reader,
        Err(e) => {
            return Outcome {
                records: Vec::new(),
                end: Err(kind(&e)),
            };
        }
    };
    let mut records = Vec::new();
    let end = loop {
        match reader.next_record() {
            Ok(Some((k, v))) => records.push((k.to_vec(), v.to_vec())),
            Ok(None) => break Ok(()),
            Err(e) => break Err(kind(&e)),
        }
    };
    // Documented: after the end, `Ok(None)` again; after an error, errors (`Corrupt`).
    match end {
        Ok(()) => assert!(matches!(reader.next_record(), Ok(None))),
        Err(_) => assert!(matches!(
            reader.next_record(),
            Err(ShuffleError::Corrupt(_))
        )),
    }
    assert_eq!(reader.records(), records.len() as u64);
    Outcome { records, end }
}

/// An independent model of the documented format (version 1).
mod model {
    use super::*;

    pub struct Parsed {
        pub outcome: Outcome,
        /// Every varint read was minimal LEB128 (meaningful when the file was accepted).
        pub canonical: bool,
        /// A record claims more than `BIG_CLAIM` bytes (see `check_single_file`).
        pub big_claim: bool,
    }

    pub const BIG_CLAIM: u64 = 64 << 10;

    /// Longest varint the reader looks at (`mr_shuffle::MAX_VARINT_LEN`).
    const MAX_VARINT_LEN: usize = 5;

    struct Cursor<'a> {
        data: &'a [u8],
        pos: usize,
        canonical: bool,
        big_claim: bool,
    }

    impl Cursor<'_> {
        fn take(&mut self, n: usize) -> Result<&[u8], Kind> {
            if self.data.len() - self.pos < n {
                return Err(Kind::Truncated);
            }
            let out = &self.data[self.pos..self.pos + n];
            self.pos += n;
            Ok(out)
        }

        fn varint(&mut self) -> Result<u64, Kind> {
            let mut value = 0u64;
            for i in 0..MAX_VARINT_LEN {
                let byte = self.take(1)?[0];
                value |= u64::from(byte & 0x7f) << (7 * i);
                if byte & 0x80 == 0 {
                    // Minimal LEB128: one byte, or a non-zero last byte.
                    if i > 0 && byte == 0 {
                        self.canonical = false;
                    }
                    return Ok(value);
                }
            }
            Err(Kind::Corrupt)
        }
    }

    pub fn parse(data: &[u8]) -> Parsed {
        let mut records: Records = Vec::new();
        let mut c = Cursor {
            data,
            pos: 0,
            canonical: true,
            big_claim: false,
        };
        let end = parse_into(&mut c, &mut records);
        Parsed {
            outcome: Outcome { records, end },
            canonical: c.canonical,
            big_claim: c.big_claim,
        }
    }

    fn parse_into(c: &mut Cursor<'_>, records: &mut Records) -> Result<(), Kind> {
        if c.data.len() < MAGIC.len() {
            return Err(if MAGIC.starts_with(c.data) {
                Kind::Truncated
            } else {
                Kind::BadMagic
            });
        }
        if c.take(MAGIC.len())? != MAGIC {
            return Err(Kind::BadMagic);
        }
        loop {
            let key_len_plus_one = c.varint()?;
            if key_len_plus_one == 0 {
                break;
            }
            let key_len = key_len_plus_one - 1;
            if key_len > MAX_LEN as u64 {
                return Err(Kind::Corrupt);
            }
            let value_len = c.varint()?;
            if value_len > MAX_LEN as u64 {
                return Err(Kind::Corrupt);
            }
            c.big_claim |= key_len + value_len > BIG_CLAIM;
            if ((c.data.len() - c.pos) as u64) < key_len + value_len {
                return Err(Kind::Truncated);
            }
            let key = c.take(key_len as usize)?.to_vec();
            let value = c.take(value_len as usize)?.to_vec();
            if records.last().is_some_and(|(last, _)| key < *last) {
                return Err(Kind::Unsorted);
            }
            records.push((key, value));
        }
        let count = u64::from_le_bytes(c.take(8)?.try_into().unwrap());
        let computed = crc32(&c.data[..c.pos]);
        let stored = u32::from_le_bytes(c.take(4)?.try_into().unwrap());
        if stored != computed || count != records.len() as u64 || c.pos != c.data.len() {
            return Err(Kind::Corrupt);
        }
        Ok(())
    }

    /// CRC-32 (IEEE, reflected, polynomial 0xEDB88320), bit by bit: independent of crc32fast.
    fn crc32(bytes: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &b in bytes {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 != 0 {
                    (crc >> 1) ^ 0xedb8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }
}

fn encode(records: &Records) -> Vec<u8> {
    let mut w = Writer::new(Vec::new()).expect("Writer::new");
    for (k, v) in records {
        w.append(k, v)
            .expect("re-encoding records the reader accepted");
    }
    assert_eq!(w.records(), records.len() as u64);
    w.finish().expect("Writer::finish")
}

/// Returns whether the other checks should be skipped: by design the reader grows its
/// buffer to a record's claimed size before reading it, up to 256 MiB (2 x 64 MiB, rounded
/// up to a power of two). Zeroing that takes up to ~100 ms, so an input that claims a record
/// over 64 KiB (which, fuzz inputs being at most 4 KiB, is truncated) is read only once.
fn check_single_file(data: &[u8]) -> bool {
    let got = read_with_reader(from_slice(data));
    let model = model::parse(data);
    assert_ne!(got.end, Err(Kind::Io), "I/O error reading a slice");
    assert_eq!(got, model.outcome, "reader and format model disagree");
    if model.big_claim && data.len() < model::BIG_CLAIM as usize {
        return true;
    }
    assert_eq!(
        read_with_reader(trickling(data)),
        got,
        "outcome depends on read sizes"
    );
    if got.end.is_err() {
        return false;
    }
    let encoded = encode(&got.records);
    if model.canonical {
        assert_eq!(
            encoded, data,
            "accepted canonical file is not what Writer writes"
        );
    } else {
        // Non-minimal varints: the canonical form is strictly shorter and means the same.
        assert!(encoded.len() < data.len());
        let again = model::parse(&encoded);
        assert!(again.canonical);
        assert_eq!(
            read_with_reader(from_slice(&encoded)),
            got,
            "re-encoded file reads differently"
        );
    }
    false
}

/// Cuts `data` at inner occurrences of the magic (at most 3 pieces), else in two halves.
fn sources(data: &[u8]) -> Vec<&[u8]> {
    let mut cuts: Vec<usize> = (1..data.len().saturating_sub(MAGIC.len() - 1))
        .filter(|&i| data[i..i + MAGIC.len()] == MAGIC)
        .take(2)
        .collect();
    if cuts.is_empty() {
        cuts.push(data.len() / 2);
    }
    let mut pieces = Vec::new();
    let mut start = 0;
    for cut in cuts {
        pieces.push(&data[start..cut]);
        start = cut;
    }
    pieces.push(&data[start..]);
    pieces
}

/// Merges the pieces of `data` (see `sources`), each read by `open`.
fn check_merge<'a, R: Read>(
    data: &'a [u8],
    open: impl Fn(&'a [u8]) -> Result<Reader<R>, ShuffleError>,
) {
    let pieces = sources(data);
    let models: Vec<Outcome> = pieces.iter().map(|p| model::parse(p).outcome).collect();
    let mut readers = Vec::new();
    for (i, piece) in pieces.iter().enumerate() {
        match open(piece) {
            Ok(r) => readers.push(r),
            Err(e) => {
                // Header errors come from opening the reader, before any merge.
                assert_eq!(Err(kind(&e)), models[i].end);
                return;
            }
        }
    }
    let check_error = |index: usize, error: &ShuffleError| {
        assert_eq!(
            Err(kind(error)),
            models[index].end,
            "merge blamed source {index} with an error its model does not give"
        );
    };
    let mut merger = match Merger::new(readers) {
        Ok(m) => m,
        Err(e) => return check_error(e.source_index, &e.error),
    };
    let mut groups: Vec<(Vec<u8>, Vec<Vec<u8>>)> = Vec::new();
    let mut group = Group::new();
    loop {
        match merger.next_group(&mut group) {
            Ok(true) => {
                assert!(!group.is_empty());
                assert_eq!(group.len(), group.values().len());
                groups.push((
                    group.key().to_vec(),
                    group.values().map(<[u8]>::to_vec).collect(),
                ));
            }
            Ok(false) => {
                assert!(group.is_empty());
                break;
            }
            Err(e) => {
                check_error(e.source_index, &e.error);
                let again = merger
                    .next_group(&mut group)
                    .expect_err("merge used after an error");
                assert_eq!(again.source_index, e.source_index);
                return;
            }
        }
    }
    assert!(
        models.iter().all(|m| m.end.is_ok()),
        "merge ended cleanly over an invalid source"
    );
    // Expected: all records sorted by (key, source, position), grouped by key.
    let mut all: Vec<(&[u8], usize, usize, &[u8])> = models
        .iter()
        .enumerate()
        .flat_map(|(s, m)| {
            m.records
                .iter()
                .enumerate()
                .map(move |(p, (k, v))| (k.as_slice(), s, p, v.as_slice()))
        })
        .collect();
    all.sort();
    let mut expected: Vec<(Vec<u8>, Vec<Vec<u8>>)> = Vec::new();
    for (k, _, _, v) in all {
        match expected.last_mut() {
            Some((key, values)) if key.as_slice() == k => values.push(v.to_vec()),
            _ => expected.push((k.to_vec(), vec![v.to_vec()])),
        }
    }
    assert_eq!(
        groups, expected,
        "merge output differs from the sorted union"
    );
}

fuzz_target!(|data: &[u8]| {
    if check_single_file(data) {
        return;
    }
    check_merge(data, from_slice);
    check_merge(data, trickling);
});
