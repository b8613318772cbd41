//! [`Writer`] and [`Reader`] for one intermediate file (format: see the crate docs).
//!
//! Both do their own buffering instead of wrapping `BufWriter`/`BufReader`: the CRC is
//! computed over whole buffers rather than byte by byte, the reader hands out records
//! borrowed straight from its buffer, and callers can pass raw `File`s.

use std::io::{self, ErrorKind, Read, Write};

use crate::{MAGIC, MAX_LEN, MAX_VARINT_LEN, ShuffleError};

/// Size of the write buffer, and initial size of the read buffer.
const BUF_SIZE: usize = 64 << 10;

/// Appends `v` to `buf` as an unsigned LEB128 varint.
#[inline]
fn put_varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push(v as u8 | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

fn too_long(what: &str, len: usize) -> ShuffleError {
    ShuffleError::Io(io::Error::new(
        ErrorKind::InvalidInput,
        format!("{what} of {len} bytes exceeds the {MAX_LEN}-byte limit"),
    ))
}

/// A record as `(key, value)`, borrowed from a [`Reader`]'s buffer.
pub type Record<'a> = (&'a [u8], &'a [u8]);

/// Writes one intermediate file: the header on creation, sorted records, then the footer.
///
/// Output is buffered internally (pass a raw `File`). If a write fails, the writer is
/// poisoned: later calls fail too, and the partial output must be discarded (the reader
/// would reject it anyway).
pub struct Writer<W: Write> {
    inner: W,
    /// Bytes not yet written to `inner` (and not yet fed to `hasher`).
    buf: Vec<u8>,
    /// CRC of every byte already written to `inner`.
    hasher: crc32fast::Hasher,
    last_key: Vec<u8>,
    records: u64,
    failed: bool,
}

impl<W: Write> Writer<W> {
    /// Starts a file on `inner` by writing the header (buffered: no I/O happens yet).
    pub fn new(inner: W) -> Result<Self, ShuffleError> {
        let mut buf = Vec::with_capacity(BUF_SIZE + 2 * MAX_VARINT_LEN);
        buf.extend_from_slice(&MAGIC);
        Ok(Self {
            inner,
            buf,
            hasher: crc32fast::Hasher::new(),
            last_key: Vec::new(),
            records: 0,
            failed: false,
        })
    }

    /// Appends one record.
    ///
    /// Keys must come in non-decreasing byte order (equal keys allowed); otherwise
    /// [`ShuffleError::Unsorted`], and nothing is written (the writer stays usable). A key or
    /// value longer than [`MAX_LEN`] is refused with an [`ErrorKind::InvalidInput`] I/O error.
    pub fn append(&mut self, key: &[u8], value: &[u8]) -> Result<(), ShuffleError> {
        self.check_usable()?;
        if key.len() > MAX_LEN {
            return Err(too_long("key", key.len()));
        }
        if value.len() > MAX_LEN {
            return Err(too_long("value", value.len()));
        }
        if key < self.last_key.as_slice() {
            return Err(ShuffleError::Unsorted);
        }
        put_varint(&mut self.buf, key.len() as u64 + 1);
        put_varint(&mut self.buf, value.len() as u64);
        if key.len() + value.len() >= BUF_SIZE {
            // Large record: write it through rather than copying it into the buffer.
            self.flush_buf()?;
            self.write_through(key)?;
            self.write_through(value)?;
        } else {
            self.buf.extend_from_slice(key);
            self.buf.extend_from_slice(value);
            if self.buf.len() >= BUF_SIZE {
                self.flush_buf()?;
            }
        }
        self.last_key.clear();
        self.last_key.extend_from_slice(key);
        self.records += 1;
        Ok(())
    }

    /// Number of records appended so far.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Writes the end marker, the record count and the checksum, flushes, and returns
    /// the inner writer. (Syncing a file to disk is left to the caller.)
    pub fn finish(mut self) -> Result<W, ShuffleError> {
        self.check_usable()?;
        self.buf.push(0);
        self.buf.extend_from_slice(&self.records.to_le_bytes());
        self.hasher.update(&self.buf);
        let crc = self.hasher.clone().finalize();
        self.buf.extend_from_slice(&crc.to_le_bytes());
        self.inner.write_all(&self.buf)?;
        self.inner.flush()?;
        Ok(self.inner)
    }

    fn check_usable(&self) -> Result<(), ShuffleError> {
        if self.failed {
            return Err(ShuffleError::Io(io::Error::other(
                "intermediate file writer used after a write error",
            )));
        }
        Ok(())
    }

    fn flush_buf(&mut self) -> Result<(), ShuffleError> {
        self.hasher.update(&self.buf);
        let result = self.inner.write_all(&self.buf);
        self.buf.clear();
        self.failed = result.is_err();
        Ok(result?)
    }

    fn write_through(&mut self, bytes: &[u8]) -> Result<(), ShuffleError> {
        self.hasher.update(bytes);
        let result = self.inner.write_all(bytes);
        self.failed = result.is_err();
        Ok(result?)
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum State {
    /// Between records: the next call reads a record or the end marker.
    Records,
    /// The footer was read and verified.
    Done,
    /// An error was reported; the reader refuses to go on.
    Failed,
}

/// Reads one intermediate file as a stream of records, verifying it as it goes.
///
/// Input is buffered internally (pass a raw `File`). Memory use is bounded by the largest
/// record (plus the previous key, kept for the order check), never by the file size.
pub struct Reader<R: Read> {
    inner: R,
    /// Read buffer; valid data is `buf[..end]`, unconsumed data `buf[pos..end]`.
    buf: Vec<u8>,
    pos: usize,
    end: usize,
    /// `buf[..hashed]` was fed to `hasher` (`hashed <= pos`).
    hashed: usize,
    hasher: crc32fast::Hasher,
    /// The current record (the last one returned) is `buf[key_start..key_end]` (key) and
    /// `buf[key_end..value_end]` (value); meaningful only when `records > 0`.
    key_start: usize,
    key_end: usize,
    value_end: usize,
    records: u64,
    state: State,
}

impl<R: Read> Reader<R> {
    /// Starts reading a file from `inner`: reads and checks the header.
    ///
    /// A file shorter than the header is [`ShuffleError::Truncated`] if what it has is a
    /// prefix of [`MAGIC`], [`ShuffleError::BadMagic`] otherwise.
    pub fn new(inner: R) -> Result<Self, ShuffleError> {
        Self::with_buffer(inner, BUF_SIZE)
    }

    /// As [`Reader::new`], with a read buffer of `capacity` bytes to start with (it grows
    /// when a record needs more). A merge of thousands of small files reads them with
    /// small buffers rather than 64 KiB each.
    pub fn with_buffer(inner: R, capacity: usize) -> Result<Self, ShuffleError> {
        let mut reader = Self {
            inner,
            buf: vec![0; capacity.max(MAGIC.len())],
            pos: 0,
            end: 0,
            hashed: 0,
            hasher: crc32fast::Hasher::new(),
            key_start: 0,
            key_end: 0,
            value_end: 0,
            records: 0,
            state: State::Records,
        };
        let header_len = MAGIC.len();
        if !reader.fill(header_len)? {
            let got = &reader.buf[..reader.end];
            return Err(if MAGIC.starts_with(got) {
                ShuffleError::Truncated
            } else {
                ShuffleError::BadMagic
            });
        }
        if reader.buf[..header_len] != MAGIC {
            return Err(ShuffleError::BadMagic);
        }
        reader.pos = header_len;
        Ok(reader)
    }

    /// The next record as `(key, value)`, borrowed from the reader's internal buffer
    /// (valid until the next call).
    ///
    /// `Ok(None)` only after the footer was read, the checksum and the record count
    /// verified, and nothing follows the footer; later calls return `Ok(None)` again.
    /// After an error, later calls fail with [`ShuffleError::Corrupt`].
    #[inline]
    pub fn next_record(&mut self) -> Result<Option<Record<'_>>, ShuffleError> {
        if self.advance()? {
            Ok(Some((self.key(), self.value())))
        } else {
            Ok(None)
        }
    }

    /// Number of records read so far.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Moves to the next record: `Ok(true)` if there is one (see [`Self::key`] and
    /// [`Self::value`]), `Ok(false)` at the verified end of the file.
    #[inline]
    pub(crate) fn advance(&mut self) -> Result<bool, ShuffleError> {
        match self.state {
            State::Records => {}
            State::Done => return Ok(false),
            State::Failed => {
                return Err(ShuffleError::Corrupt(
                    "reader used again after it reported an error".into(),
                ));
            }
        }
        let result = self.advance_inner();
        if result.is_err() {
            self.state = State::Failed;
        }
        result
    }

    /// Key of the current record; only meaningful after `advance` returned `Ok(true)`.
    #[inline]
    pub(crate) fn key(&self) -> &[u8] {
        &self.buf[self.key_start..self.key_end]
    }

    /// Value of the current record; only meaningful after `advance` returned `Ok(true)`.
    #[inline]
    pub(crate) fn value(&self) -> &[u8] {
        &self.buf[self.key_end..self.value_end]
    }

    fn advance_inner(&mut self) -> Result<bool, ShuffleError> {
        let key_len_plus_one = self.read_len()?;
        if key_len_plus_one == 0 {
            self.read_footer()?;
            self.state = State::Done;
            return Ok(false);
        }
        let key_len = key_len_plus_one - 1;
        if key_len > MAX_LEN {
            return Err(ShuffleError::Corrupt(format!(
                "record {}: key length {key_len} exceeds the limit",
                self.records
            )));
        }
        let value_len = self.read_len()?;
        if value_len > MAX_LEN {
            return Err(ShuffleError::Corrupt(format!(
                "record {}: value length {value_len} exceeds the limit",
                self.records
            )));
        }
        // May move the buffer's contents: take positions afterwards.
        self.ensure(key_len + value_len)?;
        let key_start = self.pos;
        let key_end = key_start + key_len;
        if self.records > 0 && self.buf[key_start..key_end] < *self.key() {
            return Err(ShuffleError::Unsorted);
        }
        self.key_start = key_start;
        self.key_end = key_end;
        self.value_end = key_end + value_len;
        self.pos = self.value_end;
        self.records += 1;
        Ok(true)
    }

    /// Reads a length varint; a valid file has at most `MAX_VARINT_LEN` bytes per varint.
    #[inline]
    fn read_len(&mut self) -> Result<usize, ShuffleError> {
        let mut value = 0usize;
        for i in 0..MAX_VARINT_LEN {
            if self.pos == self.end {
                self.ensure(1)?;
            }
            let byte = self.buf[self.pos];
            self.pos += 1;
            value |= usize::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(ShuffleError::Corrupt(format!(
            "record {}: length varint longer than {MAX_VARINT_LEN} bytes",
            self.records
        )))
    }

    /// Reads and verifies the footer (the end marker is already consumed), then checks
    /// that nothing follows it.
    fn read_footer(&mut self) -> Result<(), ShuffleError> {
        self.ensure(8)?;
        let count = u64::from_le_bytes(self.take::<8>());
        self.hasher.update(&self.buf[self.hashed..self.pos]);
        self.hashed = self.pos;
        let computed = self.hasher.clone().finalize();

        self.ensure(4)?;
        let stored = u32::from_le_bytes(self.take::<4>());
        // The CRC field itself is not part of the checksum.
        self.hashed = self.pos;
        if stored != computed {
            return Err(ShuffleError::Corrupt(format!(
                "checksum mismatch: stored {stored:#010x}, computed {computed:#010x}"
            )));
        }
        if count != self.records {
            return Err(ShuffleError::Corrupt(format!(
                "footer says {count} records, read {}",
                self.records
            )));
        }
        if self.fill(1)? {
            return Err(ShuffleError::Corrupt("bytes after the footer".into()));
        }
        Ok(())
    }

    /// Consumes `N` bytes that `ensure` made available.
    #[inline]
    fn take<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0; N];
        out.copy_from_slice(&self.buf[self.pos..self.pos + N]);
        self.pos += N;
        out
    }

    /// Makes `n` unconsumed bytes available in `buf[pos..]`, or fails with `Truncated`.
    #[inline]
    fn ensure(&mut self, n: usize) -> Result<(), ShuffleError> {
        if self.fill(n)? {
            Ok(())
        } else {
            Err(ShuffleError::Truncated)
        }
    }

    /// Reads until `n` unconsumed bytes are available: `Ok(false)` if the input ends first.
    fn fill(&mut self, n: usize) -> io::Result<bool> {
        if self.end - self.pos >= n {
            return Ok(true);
        }
        self.make_room();
        while self.end - self.pos < n {
            if self.end == self.buf.len() {
                // Grow only as bytes actually arrive, doubling: a corrupt length makes the
                // reader allocate at most about twice what the file really holds.
                let target = (self.pos + n).min(self.buf.len() * 2);
                self.buf.resize(target, 0);
            }
            match self.inner.read(&mut self.buf[self.end..]) {
                Ok(0) => return Ok(false),
                Ok(read) => self.end += read,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    /// Moves what must be kept (the current key, for the order check, and the
    /// unconsumed bytes) to the front of the buffer, checksumming the consumed bytes on
    /// the way.
    fn make_room(&mut self) {
        self.hasher.update(&self.buf[self.hashed..self.pos]);
        let keep_from = if self.records > 0 {
            self.key_start
        } else {
            self.pos
        };
        if keep_from > 0 {
            self.buf.copy_within(keep_from..self.end, 0);
            self.pos -= keep_from;
            self.end -= keep_from;
            if self.records > 0 {
                self.key_start -= keep_from;
                self.key_end -= keep_from;
                self.value_end -= keep_from;
            }
        }
        self.hashed = self.pos;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Encodes records without any checks (for crafting invalid files), with a valid footer.
    fn raw_file(records: &[(&[u8], &[u8])]) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        for (k, v) in records {
            put_varint(&mut out, k.len() as u64 + 1);
            put_varint(&mut out, v.len() as u64);
            out.extend_from_slice(k);
            out.extend_from_slice(v);
        }
        seal(out, records.len() as u64)
    }

    fn seal(mut out: Vec<u8>, count: u64) -> Vec<u8> {
        out.push(0);
        out.extend_from_slice(&count.to_le_bytes());
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    #[test]
    fn varint_encoding() {
        let cases: [(u64, &[u8]); 5] = [
            (0, &[0]),
            (1, &[1]),
            (127, &[0x7f]),
            (128, &[0x80, 0x01]),
            (300, &[0xac, 0x02]),
        ];
        for (v, want) in cases {
            let mut buf = Vec::new();
            put_varint(&mut buf, v);
            assert_eq!(buf, want, "{v}");
        }
        let mut buf = Vec::new();
        put_varint(&mut buf, MAX_LEN as u64 + 1);
        assert!(buf.len() < MAX_VARINT_LEN);
    }

    #[test]
    fn empty_file_layout() {
        let bytes = Writer::new(Vec::new()).unwrap().finish().unwrap();
        assert_eq!(bytes, raw_file(&[]));
        assert_eq!(bytes.len(), 17);
    }

    #[test]
    fn writer_output_matches_the_documented_layout() {
        let mut w = Writer::new(Vec::new()).unwrap();
        w.append(b"", b"x").unwrap();
        w.append(b"k", b"").unwrap();
        w.append(b"k", b"vv").unwrap();
        let bytes = w.finish().unwrap();
        let want = raw_file(&[(b"", b"x"), (b"k", b""), (b"k", b"vv")]);
        assert_eq!(bytes, want);
        assert_eq!(&bytes[4..7], &[0x01, 0x01, b'x']);
    }

    #[test]
    fn reader_rejects_unsorted_input_with_a_valid_checksum() {
        let bytes = raw_file(&[(b"b", b"1"), (b"a", b"2")]);
        let mut r = Reader::new(&bytes[..]).unwrap();
        assert!(r.next_record().unwrap().is_some());
        assert!(matches!(r.next_record(), Err(ShuffleError::Unsorted)));
        // Fused: no resuming after an error.
        assert!(matches!(r.next_record(), Err(ShuffleError::Corrupt(_))));
    }

    #[test]
    fn reader_rejects_absurd_lengths_without_allocating() {
        // Key length 2^32 (varint of 2^32 + 1), then nothing.
        let mut bytes = MAGIC.to_vec();
        put_varint(&mut bytes, (1 << 32) + 1);
        bytes.push(0);
        let mut r = Reader::new(&bytes[..]).unwrap();
        assert!(matches!(r.next_record(), Err(ShuffleError::Corrupt(_))));
        assert_eq!(r.buf.len(), BUF_SIZE);

        // Value length just over the limit.
        let mut bytes = MAGIC.to_vec();
        put_varint(&mut bytes, 1);
        put_varint(&mut bytes, MAX_LEN as u64 + 1);
        let mut r = Reader::new(&bytes[..]).unwrap();
        assert!(matches!(r.next_record(), Err(ShuffleError::Corrupt(_))));
        assert_eq!(r.buf.len(), BUF_SIZE);

        // A varint that never ends.
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&[0xff; 16]);
        let mut r = Reader::new(&bytes[..]).unwrap();
        assert!(matches!(r.next_record(), Err(ShuffleError::Corrupt(_))));
    }

    #[test]
    fn reader_rejects_wrong_count_with_a_valid_checksum() {
        let mut bytes = MAGIC.to_vec();
        put_varint(&mut bytes, 2);
        put_varint(&mut bytes, 1);
        bytes.extend_from_slice(b"kv");
        let bytes = seal(bytes, 2);
        let mut r = Reader::new(&bytes[..]).unwrap();
        assert_eq!(r.next_record().unwrap(), Some((&b"k"[..], &b"v"[..])));
        let err = r.next_record().unwrap_err();
        assert!(
            matches!(&err, ShuffleError::Corrupt(m) if m.contains("records")),
            "{err}"
        );
    }

    #[test]
    fn reader_memory_is_bounded_by_the_largest_record() {
        let mut w = Writer::new(Vec::new()).unwrap();
        let value = [7u8; 100];
        for i in 0..50_000u32 {
            w.append(format!("key{i:08}").as_bytes(), &value).unwrap();
        }
        let bytes = w.finish().unwrap();
        assert!(bytes.len() > 20 * BUF_SIZE);
        let mut r = Reader::new(&bytes[..]).unwrap();
        while r.next_record().unwrap().is_some() {}
        assert_eq!(r.records(), 50_000);
        assert_eq!(r.buf.len(), BUF_SIZE);
    }

    #[test]
    fn large_records_grow_the_buffer_and_round_trip() {
        let big = vec![b'a'; 3 * BUF_SIZE + 17];
        let mut w = Writer::new(Vec::new()).unwrap();
        w.append(b"a", b"small").unwrap();
        w.append(&big, b"").unwrap();
        w.append(b"b", &big).unwrap();
        w.append(b"c", b"small").unwrap();
        let bytes = w.finish().unwrap();
        let mut r = Reader::new(&bytes[..]).unwrap();
        assert_eq!(r.next_record().unwrap(), Some((&b"a"[..], &b"small"[..])));
        assert_eq!(r.next_record().unwrap(), Some((&big[..], &b""[..])));
        assert_eq!(r.next_record().unwrap(), Some((&b"b"[..], &big[..])));
        assert_eq!(r.next_record().unwrap(), Some((&b"c"[..], &b"small"[..])));
        assert_eq!(r.next_record().unwrap(), None);
        assert!(r.buf.len() <= 8 * BUF_SIZE);
    }
}
