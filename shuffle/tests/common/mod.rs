//! Helpers shared by the integration tests.

#![allow(dead_code)]

use std::io::{self, Read};

use mr_shuffle::{Reader, ShuffleError, Writer};

/// A small deterministic PRNG (xorshift64*), so the tests need no extra dependency.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform-ish in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    pub fn bytes(&mut self, max_len: u64, alphabet: &[u8]) -> Vec<u8> {
        let len = self.below(max_len + 1);
        (0..len)
            .map(|_| alphabet[self.below(alphabet.len() as u64) as usize])
            .collect()
    }
}

pub type Records = Vec<(Vec<u8>, Vec<u8>)>;

/// Random records, sorted by key (stable: equal keys keep their generation order).
pub fn random_records(rng: &mut Rng, n: usize, max_key: u64, max_value: u64) -> Records {
    let mut records: Records = (0..n)
        .map(|_| {
            (
                rng.bytes(max_key, b"abc"),
                rng.bytes(max_value, b"0123456789\x00\xff"),
            )
        })
        .collect();
    records.sort_by(|a, b| a.0.cmp(&b.0));
    records
}

pub fn write(records: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let mut w = Writer::new(Vec::new()).unwrap();
    for (k, v) in records {
        w.append(k, v).unwrap();
    }
    assert_eq!(w.records(), records.len() as u64);
    w.finish().unwrap()
}

/// Reads a whole file; the error if any, with the records read before it.
pub fn read_all(input: impl Read) -> (Records, Result<(), ShuffleError>) {
    let mut out = Vec::new();
    let mut reader = match Reader::new(input) {
        Ok(r) => r,
        Err(e) => return (out, Err(e)),
    };
    loop {
        match reader.next_record() {
            Ok(Some((k, v))) => out.push((k.to_vec(), v.to_vec())),
            Ok(None) => return (out, Ok(())),
            Err(e) => return (out, Err(e)),
        }
    }
}

/// A reader that returns at most `chunk` bytes per call, and `Interrupted` every other
/// call: exercises every refill path of the reader.
pub struct Trickle<'a> {
    pub data: &'a [u8],
    pub chunk: usize,
    pub interrupt: bool,
}

impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.interrupt = !self.interrupt;
        if self.interrupt {
            return Err(io::ErrorKind::Interrupted.into());
        }
        let n = self.chunk.min(buf.len()).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}
