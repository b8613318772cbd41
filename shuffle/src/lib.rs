//! The shuffle stage of the MapReduce service: the intermediate file format that map
//! tasks write (`mr-X-Y`, map task `X`, reduce partition `Y`), the partition hash that
//! decides which `Y` a key goes to, and the streaming k-way merge that a reduce task runs
//! over the `X` files of its partition.
//!
//! # Why this design
//!
//! * **Map tasks sort, reduce tasks merge.** Each map task sorts its records per partition
//!   before writing them, so a reduce task never has to load a whole partition into memory
//!   to sort it: it merges its already-sorted inputs in one streaming pass ([`Merger`]),
//!   with memory bounded by the largest record (per input) and the largest group, not by
//!   the input size. A reduce with more inputs than it may hold open merges them in
//!   passes: consecutive ranges of inputs into sorted runs ([`Merger::write_run`], same
//!   format), then the runs, which gives the very groups one pass would.
//! * **Every file is self-verifying.** A map task can crash, a disk can fill up, a copy
//!   can be cut short. The end marker, the record count and a CRC-32 over the whole file
//!   make truncation and corruption detectable, so a reduce task fails loudly (and the
//!   coordinator can re-run the map task) instead of silently producing a partial output.
//!   [`Reader::next_record`] only reports the end of a file once all of this was verified.
//! * **Compact and cheap to parse.** Lengths are LEB128 varints (most words need one
//!   byte per length), there is no per-record checksum or padding, and the reader hands
//!   out records borrowed from its own buffer, so the hot path copies nothing.
//! * **Hash-compatible with the lab.** [`partition`] is the 6.5840 `ihash` (FNV-1a
//!   32-bit), so keys land in the same reduce partition as with the reference Go code.
//!
//! # File format (version 1)
//!
//! ```text
//! file    = header record* end footer
//! header  = "MRI1"                           4 bytes: magic and format version
//! record  = varint(key_len + 1)              LEB128, unsigned
//!           varint(value_len)                LEB128, unsigned
//!           key bytes                        key_len bytes
//!           value bytes                      value_len bytes
//! end     = varint(0)                        a single 0x00 byte
//! footer  = record_count: u64 little-endian
//!           crc: u32 little-endian           CRC-32 (IEEE, as crc32fast computes it) of
//!                                            every byte before it: header, records,
//!                                            end marker and record count
//! ```
//!
//! * Keys are in non-decreasing bytewise order (equal keys allowed, in any number); the
//!   writer refuses out-of-order keys and the reader checks the order again.
//! * The key length is stored plus one so that a single `0` byte can mark the end of the
//!   records (a record with an empty key starts with `0x01`).
//! * A key or a value is at most [`MAX_LEN`] bytes (64 MiB). The writer refuses longer
//!   ones; the reader treats a longer length as corruption and never allocates for it.
//!   Varints are therefore at most [`MAX_VARINT_LEN`] bytes long.
//! * Nothing may follow the footer.
//! * An empty file (no records) is the 17 bytes `"MRI1" 00 <8 zero bytes> <crc>`.
//!
//! # Example
//!
//! ```
//! use mr_shuffle::{Group, Merger, Reader, Writer};
//!
//! let mut w = Writer::new(Vec::new())?;
//! w.append(b"apple", b"1")?;
//! w.append(b"pear", b"1")?;
//! let file0 = w.finish()?;
//!
//! let mut w = Writer::new(Vec::new())?;
//! w.append(b"apple", b"2")?;
//! let file1 = w.finish()?;
//!
//! let sources = vec![Reader::new(&file0[..])?, Reader::new(&file1[..])?];
//! let mut merger = Merger::new(sources)?;
//! let mut group = Group::default();
//! assert!(merger.next_group(&mut group)?);
//! assert_eq!(group.key(), b"apple");
//! assert_eq!(group.values().collect::<Vec<_>>(), [b"1", b"2"]);
//! assert!(merger.next_group(&mut group)?);
//! assert_eq!(group.key(), b"pear");
//! assert!(!merger.next_group(&mut group)?);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod format;
mod merge;

pub use format::{Reader, Record, Writer};
pub use merge::{Group, MergeError, Merger, RunError};

/// The 4-byte header of every intermediate file: magic and format version.
pub const MAGIC: [u8; 4] = *b"MRI1";

/// The largest key or value, in bytes, that the format allows (64 MiB).
pub const MAX_LEN: usize = 64 << 20;

/// The longest varint a valid file contains: `MAX_LEN + 1` needs 27 bits, 4 bytes of 7.
/// One more byte is tolerated so that the limit check, not the varint decoder, reports
/// an oversized length.
pub const MAX_VARINT_LEN: usize = 5;

/// Errors reading or writing one intermediate file.
#[derive(Debug, thiserror::Error)]
pub enum ShuffleError {
    /// The underlying reader or writer failed (also: a key or value longer than
    /// [`MAX_LEN`] given to [`Writer::append`], as [`std::io::ErrorKind::InvalidInput`]).
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The file does not start with [`MAGIC`]: not an intermediate file, or another version.
    #[error("not an intermediate file (bad magic or unsupported format version)")]
    BadMagic,
    /// The file ended before its footer was complete.
    #[error("intermediate file is truncated (it ends before its footer)")]
    Truncated,
    /// The file is damaged: checksum or record count mismatch, absurd length, bytes after
    /// the footer, or a reader used again after it reported an error.
    #[error("intermediate file is corrupt: {0}")]
    Corrupt(String),
    /// Keys out of non-decreasing byte order: writer misuse, or a corrupt input file.
    #[error("keys are not in sorted order")]
    Unsorted,
}

/// The reduce partition of `key`: the lab's `ihash`, i.e. the FNV-1a 32-bit hash of the
/// key, masked to 31 bits (`& 0x7fffffff`), modulo `n_reduce`.
///
/// # Panics
///
/// If `n_reduce` is 0.
#[inline]
pub fn partition(key: &[u8], n_reduce: u32) -> u32 {
    assert!(n_reduce >= 1, "n_reduce must be at least 1");
    (fnv1a32(key) & 0x7fff_ffff) % n_reduce
}

/// FNV-1a, 32-bit (offset basis 0x811c9dc5, prime 0x01000193), as Go's `hash/fnv.New32a`.
#[inline]
fn fnv1a32(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5_u32, |h, &b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// `key`'s first 8 bytes, zero-padded, big-endian: the numbers order as the keys do,
/// except that equal numbers may hide different keys (`b"ab"` and `b"ab\0"`, or keys that
/// differ past 8 bytes), which must then be compared whole. The map's sort and the
/// reduce's merge settle nearly every comparison with them, without reading the keys.
#[inline]
pub fn key_prefix(key: &[u8]) -> u64 {
    match key.first_chunk::<8>() {
        Some(first) => u64::from_be_bytes(*first),
        None => {
            let mut padded = [0u8; 8];
            for (to, from) in padded.iter_mut().zip(key) {
                *to = *from;
            }
            u64::from_be_bytes(padded)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a32_known_vectors() {
        assert_eq!(fnv1a32(b""), 0x811c_9dc5);
        assert_eq!(fnv1a32(b"a"), 0xe40c_292c);
        assert_eq!(fnv1a32(b"foobar"), 0xbf9c_f968);
    }

    #[test]
    fn partition_is_masked_fnv_mod_n() {
        assert_eq!(partition(b"", 10), 3);
        assert_eq!(partition(b"a", 10), 2);
        assert_eq!(partition(b"a", 7), 3);
        assert_eq!(partition(b"foobar", 7), 5);
        assert_eq!(partition(b"hello", 10), 3);
        assert_eq!(partition(b"the", 7), 1);
        for key in [&b""[..], b"a", b"zebra", b"\xff\xfe"] {
            assert_eq!(partition(key, 1), 0);
            assert_eq!(partition(key, 1000), (fnv1a32(key) & 0x7fff_ffff) % 1000);
        }
    }

    #[test]
    #[should_panic(expected = "n_reduce")]
    fn partition_rejects_zero_partitions() {
        partition(b"a", 0);
    }
}
