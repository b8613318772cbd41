//! A multi-pass merge (consecutive ranges of sources into runs with `Merger::write_run`,
//! then the runs, again and again until few enough are left) gives what one merge of all
//! sources gives, byte for byte, and what a plain map built from the records gives.

use mr_shuffle::{Group, Merger, Reader, RunError, Writer};
use std::collections::BTreeMap;

type Groups = Vec<(Vec<u8>, Vec<Vec<u8>>)>;

/// A small deterministic generator (xorshift64*), so failures replay.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// `n` sorted intermediate files: keys from a small alphabet (so they repeat within and
/// across files, the empty key included), values naming file and position, some files empty.
fn sources(seed: u64, n: usize) -> Vec<Vec<u8>> {
    let mut rng = Rng(seed | 1);
    (0..n)
        .map(|file| {
            let records = if rng.below(5) == 0 { 0 } else { rng.below(12) };
            let mut keys: Vec<Vec<u8>> = (0..records)
                .map(|_| {
                    let len = rng.below(3) as usize;
                    (0..len).map(|_| b'a' + rng.below(4) as u8).collect()
                })
                .collect();
            keys.sort();
            let mut w = Writer::new(Vec::new()).expect("header");
            for (i, key) in keys.iter().enumerate() {
                w.append(key, format!("f{file}r{i}").as_bytes())
                    .expect("append");
            }
            w.finish().expect("finish")
        })
        .collect()
}

fn merger(files: &[Vec<u8>]) -> Merger<&[u8]> {
    let readers = files
        .iter()
        .map(|f| Reader::new(&f[..]).expect("header"))
        .collect();
    Merger::new(readers).expect("merge")
}

/// Every record of the merge, as one intermediate file.
fn run_of(files: &[Vec<u8>]) -> Result<Vec<u8>, RunError> {
    let readers = files
        .iter()
        .map(|f| Reader::new(&f[..]).expect("header"))
        .collect();
    let mut out = Writer::new(Vec::new()).map_err(RunError::Output)?;
    Merger::new(readers)?.write_run(&mut out)?;
    out.finish().map_err(RunError::Output)
}

fn groups(mut merger: Merger<&[u8]>) -> Groups {
    let mut out = Vec::new();
    let mut group = Group::new();
    while merger.next_group(&mut group).expect("next group") {
        let values = group.values().map(<[u8]>::to_vec).collect();
        out.push((group.key().to_vec(), values));
    }
    out
}

/// Merges at most `fan_in` files at a time until at most `fan_in` are left; returns those.
fn passes(mut level: Vec<Vec<u8>>, fan_in: usize) -> (Vec<Vec<u8>>, usize) {
    let mut rounds = 0;
    while level.len() > fan_in {
        level = level
            .chunks(fan_in)
            .map(|chunk| run_of(chunk).expect("run"))
            .collect();
        rounds += 1;
    }
    (level, rounds)
}

fn reference(files: &[Vec<u8>]) -> Groups {
    let mut map: BTreeMap<Vec<u8>, Vec<Vec<u8>>> = BTreeMap::new();
    for file in files {
        let mut reader = Reader::new(&file[..]).expect("header");
        while let Some((key, value)) = reader.next_record().expect("record") {
            map.entry(key.to_vec()).or_default().push(value.to_vec());
        }
    }
    map.into_iter().collect()
}

#[test]
fn multi_pass_equals_single_pass_and_the_reference() {
    for (seed, n) in [
        (1, 1),
        (2, 2),
        (3, 5),
        (4, 37),
        (5, 100),
        (6, 257),
        (7, 600),
    ] {
        let files = sources(seed, n);
        let single = groups(merger(&files));
        assert_eq!(single, reference(&files), "single pass, {n} sources");
        let single_bytes = run_of(&files).expect("single run");
        for fan_in in [2, 3, 4, 16, 256] {
            let (left, rounds) = passes(files.clone(), fan_in);
            assert!(left.len() <= fan_in);
            let expected_rounds = {
                let (mut k, mut r) = (n, 0);
                while k > fan_in {
                    k = k.div_ceil(fan_in);
                    r += 1;
                }
                r
            };
            assert_eq!(rounds, expected_rounds, "{n} sources, fan-in {fan_in}");
            assert_eq!(
                groups(merger(&left)),
                single,
                "{n} sources, fan-in {fan_in}"
            );
            assert_eq!(
                run_of(&left).expect("final run"),
                single_bytes,
                "{n} sources, fan-in {fan_in}: byte for byte"
            );
        }
    }
}

#[test]
fn fan_in_two_over_many_sources_takes_log_passes() {
    let files = sources(42, 1000);
    let (left, rounds) = passes(files.clone(), 2);
    assert_eq!(rounds, 9, "1000 → 500 → … → 2");
    assert_eq!(groups(merger(&left)), reference(&files));
}

#[test]
fn a_corrupt_source_is_named_in_a_run_error() {
    let mut files = sources(9, 6);
    files[4] = run_of(&sources(10, 3)).expect("a non-empty file");
    let last = files[4].len() - 1;
    files[4][last] ^= 0xff;
    match run_of(&files) {
        Err(RunError::Source(e)) => assert_eq!(e.source_index, 4),
        other => panic!("expected a source error, got {other:?}"),
    }
}
