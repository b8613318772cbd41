//! Round trips, truncation and corruption of single intermediate files.

mod common;

use std::io::{self, Seek, SeekFrom, Write};

use common::{Records, Rng, Trickle, random_records, read_all, write};
use mr_shuffle::{MAGIC, MAX_LEN, Reader, ShuffleError, Writer};

#[test]
fn round_trip() {
    let mut rng = Rng::new(1);
    let records = random_records(&mut rng, 5_000, 6, 300);
    let bytes = write(&records);
    let (got, result) = read_all(&bytes[..]);
    result.unwrap();
    assert_eq!(got, records);
}

#[test]
fn round_trip_through_a_trickling_reader() {
    let mut rng = Rng::new(2);
    let records = random_records(&mut rng, 500, 20, 200);
    let bytes = write(&records);
    for chunk in [1, 2, 3, 7, 64] {
        let input = Trickle {
            data: &bytes,
            chunk,
            interrupt: false,
        };
        let (got, result) = read_all(input);
        result.unwrap();
        assert_eq!(got, records, "chunk {chunk}");
    }
}

#[test]
fn round_trip_through_a_real_file() {
    let mut rng = Rng::new(3);
    let records = random_records(&mut rng, 20_000, 8, 40);
    let mut w = Writer::new(tempfile::tempfile().unwrap()).unwrap();
    for (k, v) in &records {
        w.append(k, v).unwrap();
    }
    let mut file = w.finish().unwrap();
    file.seek(SeekFrom::Start(0)).unwrap();
    let (got, result) = read_all(file);
    result.unwrap();
    assert_eq!(got, records);
}

#[test]
fn empty_file_round_trips() {
    let bytes = write(&[]);
    assert_eq!(&bytes[..4], &MAGIC);
    let mut reader = Reader::new(&bytes[..]).unwrap();
    assert!(reader.next_record().unwrap().is_none());
    // The end is sticky.
    assert!(reader.next_record().unwrap().is_none());
    assert_eq!(reader.records(), 0);
}

#[test]
fn equal_and_empty_keys_and_values() {
    let records: Records = vec![
        (b"".to_vec(), b"".to_vec()),
        (b"".to_vec(), b"x".to_vec()),
        (b"k".to_vec(), b"".to_vec()),
        (b"k".to_vec(), b"".to_vec()),
        (b"k\x00".to_vec(), b"1".to_vec()),
        (b"\xff".to_vec(), b"2".to_vec()),
    ];
    let (got, result) = read_all(&write(&records)[..]);
    result.unwrap();
    assert_eq!(got, records);
}

#[test]
fn writer_refuses_unsorted_keys_and_stays_usable() {
    let mut w = Writer::new(Vec::new()).unwrap();
    w.append(b"b", b"1").unwrap();
    assert!(matches!(w.append(b"a", b"2"), Err(ShuffleError::Unsorted)));
    assert!(matches!(
        w.append(b"a\xff", b"2"),
        Err(ShuffleError::Unsorted)
    ));
    w.append(b"b", b"3").unwrap();
    w.append(b"ba", b"4").unwrap();
    assert_eq!(w.records(), 3);
    // Keys that the first 8 bytes, zero-padded, cannot tell apart.
    for (first, second) in [(&b"ba\0"[..], &b"ba"[..]), (b"bacdefgh1", b"bacdefgh")] {
        let mut w = Writer::new(Vec::new()).unwrap();
        w.append(first, b"").unwrap();
        assert!(matches!(w.append(second, b""), Err(ShuffleError::Unsorted)));
        w.append(first, b"").unwrap();
    }
    let (got, result) = read_all(&w.finish().unwrap()[..]);
    result.unwrap();
    let keys: Vec<&[u8]> = got.iter().map(|(k, _)| k.as_slice()).collect();
    assert_eq!(keys, [&b"b"[..], b"b", b"ba"]);
}

#[test]
fn writer_refuses_oversized_records() {
    let mut w = Writer::new(Vec::new()).unwrap();
    let huge = vec![0u8; MAX_LEN + 1];
    let err = w.append(b"k", &huge).unwrap_err();
    assert!(matches!(&err, ShuffleError::Io(e) if e.kind() == io::ErrorKind::InvalidInput));
    let err = w.append(&huge, b"v").unwrap_err();
    assert!(matches!(&err, ShuffleError::Io(e) if e.kind() == io::ErrorKind::InvalidInput));
    assert_eq!(w.records(), 0);
}

/// Fails every write after `budget` bytes.
struct FailingWriter {
    budget: usize,
}

impl Write for FailingWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.budget == 0 {
            return Err(io::Error::other("disk full"));
        }
        let n = buf.len().min(self.budget);
        self.budget -= n;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn writer_is_poisoned_by_a_write_error() {
    let mut w = Writer::new(FailingWriter { budget: 1000 }).unwrap();
    let value = [1u8; 1000];
    let mut failed = false;
    for i in 0..1000u32 {
        if w.append(&i.to_be_bytes(), &value).is_err() {
            failed = true;
            break;
        }
    }
    assert!(failed);
    assert!(matches!(
        w.append(b"\xff\xff\xff\xff", b""),
        Err(ShuffleError::Io(_))
    ));
    assert!(matches!(w.finish(), Err(ShuffleError::Io(_))));
}

fn small_file() -> (Records, Vec<u8>) {
    let records: Records = [
        ("", "e"),
        ("apple", "1"),
        ("apple", ""),
        ("banana", "22"),
        ("cherry", &"x".repeat(200)),
    ]
    .iter()
    .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
    .collect();
    let bytes = write(&records);
    (records, bytes)
}

#[test]
fn truncation_at_every_offset_is_detected() {
    let (records, bytes) = small_file();
    for len in 0..bytes.len() {
        for chunk in [usize::MAX, 1] {
            let input = Trickle {
                data: &bytes[..len],
                chunk,
                interrupt: false,
            };
            let (got, result) = read_all(input);
            assert!(
                matches!(result, Err(ShuffleError::Truncated)),
                "cut at {len}: {result:?}"
            );
            assert!(got.len() <= records.len());
            assert_eq!(got[..], records[..got.len()], "cut at {len}");
        }
    }
}

#[test]
fn trailing_bytes_are_detected() {
    let (_, mut bytes) = small_file();
    bytes.push(0);
    let (_, result) = read_all(&bytes[..]);
    assert!(
        matches!(result, Err(ShuffleError::Corrupt(_))),
        "{result:?}"
    );

    let mut empty = write(&[]);
    empty.extend_from_slice(b"junk");
    let (_, result) = read_all(&empty[..]);
    assert!(
        matches!(result, Err(ShuffleError::Corrupt(_))),
        "{result:?}"
    );
}

#[test]
fn any_single_byte_change_is_detected() {
    let (_, small) = small_file();
    let empty = write(&[]);
    for bytes in [small, empty] {
        for offset in 0..bytes.len() {
            for mask in [0x01, 0x80, 0xff, 0x5a] {
                let mut damaged = bytes.clone();
                damaged[offset] ^= mask;
                let (_, result) = read_all(&damaged[..]);
                assert!(result.is_err(), "byte {offset} ^ {mask:#x} not detected");
            }
        }
    }
}

#[test]
fn bad_magic() {
    let (_, mut bytes) = small_file();
    bytes[3] = b'2';
    assert!(matches!(
        Reader::new(&bytes[..]),
        Err(ShuffleError::BadMagic)
    ));
    assert!(matches!(
        Reader::new(&b"MX"[..]),
        Err(ShuffleError::BadMagic)
    ));
    assert!(matches!(
        Reader::new(&b"{\"json\": 1}"[..]),
        Err(ShuffleError::BadMagic)
    ));
    assert!(matches!(
        Reader::new(&b"MR"[..]),
        Err(ShuffleError::Truncated)
    ));
    assert!(matches!(
        Reader::new(&b""[..]),
        Err(ShuffleError::Truncated)
    ));
}

#[test]
fn read_errors_are_reported_as_io() {
    struct Broken;
    impl io::Read for Broken {
        fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
            Err(io::Error::other("bad sector"))
        }
    }
    assert!(matches!(Reader::new(Broken), Err(ShuffleError::Io(_))));
}

/// Perf sanity (nothing timed): a million records stream through with small buffers.
#[test]
fn a_million_records() {
    let n = 1_000_000u32;
    let mut w = Writer::new(Vec::new()).unwrap();
    for i in 0..n {
        w.append(&(i / 3).to_be_bytes(), b"1").unwrap();
    }
    let bytes = w.finish().unwrap();
    assert_eq!(bytes.len(), 4 + n as usize * 7 + 1 + 8 + 4);
    let mut reader = Reader::new(&bytes[..]).unwrap();
    let mut count = 0u32;
    while let Some((k, v)) = reader.next_record().unwrap() {
        assert_eq!(k, (count / 3).to_be_bytes());
        assert_eq!(v, b"1");
        count += 1;
    }
    assert_eq!(count, n);
}

/// A 15-byte file claiming a 64 MiB key and value must not make the reader allocate
/// hundreds of MiB before it finds the file truncated.
#[test]
fn a_corrupt_huge_length_is_reported_truncated() {
    let bytes = [
        0x4d, 0x52, 0x49, 0x31, 0x02, 0x00, 0x61, 0x81, 0x80, 0x80, 0x20, 0x80, 0x80, 0x80, 0x20,
    ];
    let mut reader = mr_shuffle::Reader::new(&bytes[..]).expect("header");
    assert!(reader.next_record().expect("first record").is_some());
    assert!(matches!(
        reader.next_record(),
        Err(mr_shuffle::ShuffleError::Truncated)
    ));
}
