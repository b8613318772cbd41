//! The k-way merge.

mod common;

use common::{Records, Rng, random_records, write};
use mr_shuffle::{Group, MergeError, Merger, Reader, ShuffleError, Writer};

fn file(records: &[(&str, &str)]) -> Vec<u8> {
    let owned: Records = records
        .iter()
        .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
        .collect();
    write(&owned)
}

fn merger(files: &[Vec<u8>]) -> Result<Merger<&[u8]>, MergeError> {
    let readers = files.iter().map(|f| Reader::new(&f[..]).unwrap()).collect();
    Merger::new(readers)
}

/// Merge output: (key, values) per group.
type Groups = Vec<(Vec<u8>, Vec<Vec<u8>>)>;

/// All groups of a merge.
fn merge_all(files: &[Vec<u8>]) -> Result<Groups, MergeError> {
    let mut merger = merger(files)?;
    let mut group = Group::default();
    let mut out = Vec::new();
    while merger.next_group(&mut group)? {
        assert!(!group.is_empty());
        assert_eq!(group.len(), group.values().len());
        out.push((
            group.key().to_vec(),
            group.values().map(<[u8]>::to_vec).collect(),
        ));
    }
    assert!(group.is_empty());
    Ok(out)
}

fn strings(groups: &[(Vec<u8>, Vec<Vec<u8>>)]) -> Vec<(String, Vec<String>)> {
    groups
        .iter()
        .map(|(k, vs)| {
            (
                String::from_utf8(k.clone()).unwrap(),
                vs.iter()
                    .map(|v| String::from_utf8(v.clone()).unwrap())
                    .collect(),
            )
        })
        .collect()
}

#[test]
fn three_sources_with_overlapping_and_equal_keys() {
    let files = [
        file(&[("a", "0a"), ("b", "0b1"), ("b", "0b2"), ("d", "0d")]),
        file(&[("b", "1b"), ("c", "1c"), ("d", "1d1"), ("d", "1d2")]),
        file(&[("", "2empty"), ("a", "2a"), ("b", "2b"), ("e", "2e")]),
    ];
    let got = strings(&merge_all(&files).unwrap());
    let want: Vec<(String, Vec<String>)> = [
        ("", &["2empty"][..]),
        ("a", &["0a", "2a"]),
        ("b", &["0b1", "0b2", "1b", "2b"]),
        ("c", &["1c"]),
        ("d", &["0d", "1d1", "1d2"]),
        ("e", &["2e"]),
    ]
    .iter()
    .map(|(k, vs)| (k.to_string(), vs.iter().map(|v| v.to_string()).collect()))
    .collect();
    assert_eq!(got, want);
}

#[test]
fn no_sources_and_empty_sources() {
    assert!(merge_all(&[]).unwrap().is_empty());
    assert!(merge_all(&[write(&[]), write(&[])]).unwrap().is_empty());
    let got = merge_all(&[write(&[]), file(&[("k", "v")]), write(&[])]).unwrap();
    assert_eq!(strings(&got), [("k".to_string(), vec!["v".to_string()])]);
}

#[test]
fn matches_a_naive_merge() {
    check_random_merges(7, |rng, n| random_records(rng, n, 3, 5));
}

/// Keys of up to 12 bytes over `a` and zero bytes: many share their first 8 bytes or
/// differ only by zero padding, where the merge's 8-byte prefixes cannot decide.
#[test]
fn matches_a_naive_merge_on_keys_that_share_8_byte_prefixes() {
    check_random_merges(11, |rng, n| {
        let mut records: Records = (0..n)
            .map(|_| (rng.bytes(12, b"a\x00"), rng.bytes(3, b"xyz")))
            .collect();
        records.sort_by(|a, b| a.0.cmp(&b.0));
        records
    });
}

/// 20 rounds of 1 to 12 sources of up to 300 records each, from `records(rng, n)`, each
/// merge checked against [`check_against_naive_merge`].
fn check_random_merges(seed: u64, mut records: impl FnMut(&mut Rng, usize) -> Records) {
    let mut rng = Rng::new(seed);
    for round in 0..20 {
        let n_sources = 1 + rng.below(12) as usize;
        let sources: Vec<Records> = (0..n_sources)
            .map(|_| {
                let n = rng.below(300) as usize;
                records(&mut rng, n)
            })
            .collect();
        check_against_naive_merge(&sources, round);
    }
}

/// The merge of `sources` equals a plain one: every record tagged by (source, position),
/// stable-sorted by key, grouped.
fn check_against_naive_merge(sources: &[Records], round: usize) {
    let files: Vec<Vec<u8>> = sources.iter().map(|r| write(r)).collect();
    let mut all: Vec<(&[u8], usize, usize, &[u8])> = Vec::new();
    for (s, records) in sources.iter().enumerate() {
        for (i, (k, v)) in records.iter().enumerate() {
            all.push((k, s, i, v));
        }
    }
    all.sort();
    let mut want: Groups = Vec::new();
    for (k, _, _, v) in all {
        match want.last_mut() {
            Some((key, values)) if key.as_slice() == k => values.push(v.to_vec()),
            _ => want.push((k.to_vec(), vec![v.to_vec()])),
        }
    }
    assert_eq!(merge_all(&files).unwrap(), want, "round {round}");
}

#[test]
fn error_reports_the_corrupt_source() {
    let good = file(&[("a", "1"), ("b", "2"), ("c", "3")]);
    for bad_index in 0..3 {
        let mut files = vec![good.clone(), good.clone(), good.clone()];
        // Damage the last value of that source: the error surfaces mid-merge, at its end.
        let at = files[bad_index].len() - 14;
        files[bad_index][at] ^= 0x01;
        let err = merge_all(&files).unwrap_err();
        assert_eq!(err.source_index, bad_index);
        assert!(matches!(err.error, ShuffleError::Corrupt(_)), "{err}");
        assert!(err.to_string().contains(&format!("map task {bad_index}")));
    }
}

#[test]
fn error_on_first_record_is_reported_by_new() {
    let good = file(&[("a", "1")]);
    let truncated = good[..6].to_vec();
    let err = merger(&[good.clone(), good, truncated]).err().unwrap();
    assert_eq!(err.source_index, 2);
    assert!(matches!(err.error, ShuffleError::Truncated));
}

#[test]
fn merge_is_fused_after_an_error() {
    let good = file(&[("a", "1"), ("b", "2")]);
    let mut bad = good.clone();
    let last = bad.len() - 1;
    bad[last] ^= 0xff; // checksum
    let files = [good, bad];
    let mut merger = merger(&files).unwrap();
    let mut group = Group::new();
    let mut first_error = None;
    for _ in 0..3 {
        match merger.next_group(&mut group) {
            Ok(true) => {}
            Ok(false) => panic!("corrupt source not detected"),
            Err(e) => {
                first_error = Some(e.source_index);
                break;
            }
        }
    }
    assert_eq!(first_error, Some(1));
    assert_eq!(merger.next_group(&mut group).unwrap_err().source_index, 1);
}

#[test]
fn unsorted_source_is_an_error() {
    // Files whose keys go down, with a valid checksum: hand-made, as the writer refuses.
    // The last two differ only where the first 8 bytes, zero-padded, cannot tell.
    for keys in [
        [&b"b"[..], b"a"],
        [b"b\0", b"b"],
        [b"abcdefgh1", b"abcdefgh"],
    ] {
        let mut bytes = b"MRI1".to_vec();
        for key in keys {
            bytes.extend_from_slice(&[key.len() as u8 + 1, 1]);
            bytes.extend_from_slice(key);
            bytes.push(b'v');
        }
        bytes.push(0);
        bytes.extend_from_slice(&2u64.to_le_bytes());
        let crc = crc32fast::hash(&bytes);
        bytes.extend_from_slice(&crc.to_le_bytes());
        let err = merge_all(&[file(&[("a", "x")]), bytes]).unwrap_err();
        assert_eq!(err.source_index, 1);
        assert!(matches!(err.error, ShuffleError::Unsorted), "{keys:?}");
    }
}

/// Perf sanity (nothing timed): many sources, many records, one big group.
#[test]
fn many_sources() {
    let n_sources = 64u32;
    let files: Vec<Vec<u8>> = (0..n_sources)
        .map(|s| {
            let mut w = Writer::new(Vec::new()).unwrap();
            for i in 0..5_000u32 {
                w.append(format!("{:06}", i * n_sources + s).as_bytes(), b"v")
                    .unwrap();
            }
            w.append(b"zzz", &s.to_le_bytes()).unwrap();
            w.finish().unwrap()
        })
        .collect();
    let mut merger = merger(&files).unwrap();
    let mut group = Group::default();
    let mut expected = 0u32;
    while merger.next_group(&mut group).unwrap() {
        if group.key() == b"zzz" {
            let sources: Vec<u32> = group
                .values()
                .map(|v| u32::from_le_bytes(v.try_into().unwrap()))
                .collect();
            assert_eq!(sources, (0..n_sources).collect::<Vec<_>>());
        } else {
            assert_eq!(group.key(), format!("{expected:06}").as_bytes());
            assert_eq!(group.len(), 1);
            expected += 1;
        }
    }
    assert_eq!(expected, 5_000 * n_sources);
}
