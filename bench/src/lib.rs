//! The benchmarks of issue 6 (`make bench`): a deterministic corpus generator, a native
//! single-process word count with the same word rule as the `wc` app, and the driver that
//! runs a real local cluster against it (`src/bin/mr-bench.rs`).
//!
//! The native word count is written independently of the guest SDK (its own UTF-8 decoder,
//! its own loops), on purpose: the bench compares the cluster's output with it, so a bug
//! in the SDK's fast paths shows up as a mismatch instead of being shared by both sides.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use unicode_general_category::{GeneralCategory, get_general_category};

// ---------------------------------------------------------------------------------------
// The word rule.

/// Go's `unicode.IsLetter`: general category L (Lu, Ll, Lt, Lm, Lo).
pub fn is_letter(c: char) -> bool {
    matches!(
        get_general_category(c),
        GeneralCategory::UppercaseLetter
            | GeneralCategory::LowercaseLetter
            | GeneralCategory::TitlecaseLetter
            | GeneralCategory::ModifierLetter
            | GeneralCategory::OtherLetter
    )
}

/// Decodes one UTF-8 character at the start of `b` (non-empty, first byte >= 0x80):
/// `Some((char, len))`, or `None` when the byte does not start a valid sequence (then
/// the byte is a separator, as Go's U+FFFD would be).
fn decode(b: &[u8]) -> Option<(char, usize)> {
    let lead = b[0];
    let (len, min, init) = match lead {
        0xC2..=0xDF => (2, 0x80, u32::from(lead & 0x1F)),
        0xE0..=0xEF => (3, 0x800, u32::from(lead & 0x0F)),
        0xF0..=0xF4 => (4, 0x1_0000, u32::from(lead & 0x07)),
        _ => return None,
    };
    let tail = b.get(1..len)?;
    let mut c = init;
    for &t in tail {
        if t & 0xC0 != 0x80 {
            return None;
        }
        c = (c << 6) | u32::from(t & 0x3F);
    }
    if c < min {
        return None; // overlong
    }
    char::from_u32(c).map(|c| (c, len)) // None for surrogates and > U+10FFFF
}

/// Word counts keyed by the word's bytes.
pub type Counts = HashMap<Box<[u8]>, u64, rustc_hash::FxBuildHasher>;

/// Calls `f` for every word of `text`: maximal runs of letters ([`is_letter`]), with
/// bytes that are not valid UTF-8 separating words.
#[inline]
pub fn for_each_word(text: &[u8], mut f: impl FnMut(&[u8])) {
    let n = text.len();
    let mut i = 0;
    let mut start: Option<usize> = None;
    while i < n {
        let b = text[i];
        let (letter, len) = if b < 0x80 {
            (b.is_ascii_alphabetic(), 1)
        } else {
            match decode(&text[i..]) {
                Some((c, len)) => (is_letter(c), len),
                None => (false, 1),
            }
        };
        match (letter, start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                f(&text[s..i]);
                start = None;
            }
            _ => {}
        }
        i += len;
    }
    if let Some(s) = start {
        f(&text[s..]);
    }
}

/// Adds the words of `text` to `counts`.
pub fn count_words(text: &[u8], counts: &mut Counts) {
    for_each_word(text, |w| match counts.get_mut(w) {
        Some(n) => *n += 1,
        None => {
            counts.insert(w.into(), 1);
        }
    });
}

// ---------------------------------------------------------------------------------------
// Native word count.

/// Counts the words of `files` with `threads` threads, each taking pieces of at most
/// `piece` bytes from a shared queue, and returns the merged counts sorted by word.
pub fn native_word_count(
    files: &[PathBuf],
    threads: usize,
    piece: u64,
) -> io::Result<Vec<(Box<[u8]>, u64)>> {
    let mut pieces = Vec::new();
    for f in files {
        let size = std::fs::metadata(f)?.len();
        let mut off = 0;
        while off < size {
            let len = piece.min(size - off);
            pieces.push((f.as_path(), off, len));
            off += len;
        }
    }
    let next = AtomicUsize::new(0);
    let maps: Vec<io::Result<Counts>> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads.max(1))
            .map(|_| {
                s.spawn(|| {
                    let mut counts = Counts::default();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(&(path, off, len)) = pieces.get(i) else {
                            return Ok(counts);
                        };
                        count_words(&mr_worker::tasks::read_split(path, off, len)?, &mut counts);
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("counting thread"))
            .collect()
    });
    let mut maps = maps.into_iter().collect::<io::Result<Vec<_>>>()?;
    maps.sort_by_key(|m| std::cmp::Reverse(m.len()));
    let mut total = maps.remove(0);
    for m in maps {
        for (w, n) in m {
            *total.entry(w).or_insert(0) += n;
        }
    }
    let mut sorted: Vec<(Box<[u8]>, u64)> = total.into_iter().collect();
    sorted.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    Ok(sorted)
}

/// Writes `word count` lines.
pub fn write_counts(out: &mut impl Write, counts: &[(Box<[u8]>, u64)]) -> io::Result<()> {
    for (w, n) in counts {
        out.write_all(w)?;
        writeln!(out, " {n}")?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// The corpus.

/// splitmix64: small, fast, deterministic.
#[derive(Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed ^ 0x853c_49e6_748f_ea9b)
    }
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n`.
    #[inline]
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }
}

const LATIN: &[&str] = &[
    "ka", "to", "re", "mi", "an", "el", "or", "us", "in", "de", "la", "ne", "th", "st", "er", "on",
    "ri", "ve", "po", "ga", "sh", "qu", "wy", "ba", "fe", "lo", "nu", "ti", "ck", "str",
];
const ACCENTED: &[&str] = &[
    "é", "ñ", "ü", "ø", "ß", "à", "ç", "ő", "ł", "ž", "å", "ê", "í", "ã", "ś", "ď",
];
const CYRILLIC: &[&str] = &[
    "ка", "то", "ре", "ми", "ан", "ел", "ор", "ус", "ин", "де", "ла", "не", "щи", "жё", "ый", "ть",
    "бы", "эх", "юн", "ся",
];
const GREEK: &[&str] = &[
    "κα", "το", "ρε", "μι", "αν", "ελ", "ορ", "υς", "ιν", "δε", "λα", "νε", "ψη", "ξω", "θά", "ώς",
];
const CJK: &[&str] = &[
    "中", "文", "日", "本", "語", "人", "大", "学", "生", "時", "の", "を", "が", "한", "국", "어",
    "水", "火", "山", "川", "東", "京", "電", "気", "ア", "イ", "ン", "ー",
];

/// Word number `rank` of the vocabulary: frequent words are short, and about 70% are
/// ASCII Latin, 10% accented Latin, 8% Cyrillic, 6% Greek and 6% CJK (kana, hangul,
/// ideographs).
pub fn vocab_word(rank: usize) -> String {
    let mut r = Rng::new(rank as u64 * 0x2545_f491_4f6c_dd1d + 17);
    let syllables = 1 + (usize::BITS - rank.leading_zeros()) as usize / 5 + r.below(2) as usize;
    let script = r.below(100);
    let mut w = String::new();
    let pick = |r: &mut Rng, set: &[&'static str]| set[r.below(set.len() as u64) as usize];
    for i in 0..syllables {
        let s = match script {
            0..70 => pick(&mut r, LATIN),
            70..80 if i % 2 == 1 => pick(&mut r, ACCENTED),
            70..80 => pick(&mut r, LATIN),
            80..88 => pick(&mut r, CYRILLIC),
            88..94 => pick(&mut r, GREEK),
            _ => pick(&mut r, CJK),
        };
        w.push_str(s);
    }
    if script < 80 && r.below(10) == 0 {
        // Capitalized: a different word to a case-sensitive count.
        let mut c = w.chars();
        if let Some(first) = c.next() {
            w = first.to_uppercase().chain(c).collect();
        }
    }
    // Rank is part of the word only through its syllables: distinct ranks may collide,
    // which only merges two vocabulary entries.
    w
}

/// Zipf(s) over `n` ranks, sampled by inverting a cumulative table.
pub struct Zipf {
    cdf: Vec<u32>,
}

impl Zipf {
    pub fn new(n: usize, s: f64) -> Self {
        let weights: Vec<f64> = (1..=n).map(|k| 1.0 / (k as f64).powf(s)).collect();
        let total: f64 = weights.iter().sum();
        let mut acc = 0.0;
        let cdf = weights
            .iter()
            .map(|w| {
                acc += w;
                ((acc / total) * f64::from(u32::MAX)).min(f64::from(u32::MAX)) as u32
            })
            .collect();
        Self { cdf }
    }
    #[inline]
    pub fn sample(&self, r: &mut Rng) -> usize {
        let u = r.next_u64() as u32;
        self.cdf.partition_point(|&c| c < u).min(self.cdf.len() - 1)
    }
}

/// The corpus's vocabulary and frequency model.
pub struct CorpusModel {
    words: Vec<String>,
    zipf: Zipf,
}

/// Distinct words of the vocabulary and the Zipf exponent.
pub const VOCABULARY: usize = 400_000;
pub const ZIPF_S: f64 = 1.05;

impl CorpusModel {
    pub fn new() -> Self {
        Self {
            words: (0..VOCABULARY).map(vocab_word).collect(),
            zipf: Zipf::new(VOCABULARY, ZIPF_S),
        }
    }

    /// Writes about `bytes` bytes of text (whole lines) for file number `seed` to `out`.
    /// Lines are long (1 to 16 KiB); separators are spaces, punctuation, digits, CJK
    /// punctuation, and now and then a character that looks like a letter and is not
    /// (a combining accent, a Roman numeral, Arabic-Indic digits) or an invalid byte.
    pub fn write_text(&self, seed: u64, bytes: u64, out: &mut impl Write) -> io::Result<()> {
        let mut r = Rng::new(seed.wrapping_mul(0x9e37_79b9).wrapping_add(1));
        let mut buf: Vec<u8> = Vec::with_capacity(1 << 20);
        let mut written = 0u64;
        while written < bytes {
            let line_len = 1024 + r.below(15 * 1024) as usize;
            let line_start = buf.len();
            while buf.len() - line_start < line_len {
                let w = &self.words[self.zipf.sample(&mut r)];
                buf.extend_from_slice(w.as_bytes());
                let sep: &[u8] = match r.below(1000) {
                    0..800 => b" ",
                    800..880 => b", ",
                    880..930 => b". ",
                    930..950 => "\u{3001}".as_bytes(),
                    950..970 => b" 1984 ",
                    970..980 => b"-",
                    980..985 => "\u{301} ".as_bytes(),
                    985..990 => "\u{216B}".as_bytes(),
                    990..995 => "\u{661}\u{662}".as_bytes(),
                    995..998 => b"'",
                    998 => b"\xff",
                    _ => b"\t(",
                };
                buf.extend_from_slice(sep);
            }
            buf.push(b'\n');
            if buf.len() >= 1 << 20 {
                out.write_all(&buf)?;
                written += buf.len() as u64;
                buf.clear();
            }
        }
        out.write_all(&buf)
    }
}

impl Default for CorpusModel {
    fn default() -> Self {
        Self::new()
    }
}

/// Writes `files` corpus files of about `file_bytes` each into `dir` as
/// `c-NNN.txt` (NNN = 0..files), with 2 threads; files already there with a size of at
/// least `file_bytes` are kept (the corpus is deterministic). Returns their paths.
pub fn generate_corpus(dir: &Path, files: usize, file_bytes: u64) -> io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let paths: Vec<PathBuf> = (0..files)
        .map(|i| dir.join(format!("c-{i:03}.txt")))
        .collect();
    let todo: Vec<(usize, &PathBuf)> = paths
        .iter()
        .enumerate()
        .filter(|(_, p)| std::fs::metadata(p).map_or(true, |m| m.len() < file_bytes))
        .collect();
    if todo.is_empty() {
        return Ok(paths);
    }
    let model = CorpusModel::new();
    let next = AtomicUsize::new(0);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..2)
            .map(|_| {
                s.spawn(|| -> io::Result<()> {
                    loop {
                        let Some(&(i, path)) = todo.get(next.fetch_add(1, Ordering::Relaxed))
                        else {
                            return Ok(());
                        };
                        let tmp = path.with_extension("tmp");
                        let mut out = io::BufWriter::new(File::create(&tmp)?);
                        model.write_text(i as u64, file_bytes, &mut out)?;
                        out.into_inner().map_err(|e| e.into_error())?;
                        std::fs::rename(&tmp, path)?;
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .try_for_each(|h| h.join().expect("generator thread"))
    })?;
    Ok(paths)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &[u8]) -> Vec<String> {
        let mut v = Vec::new();
        for_each_word(s, |w| v.push(String::from_utf8(w.to_vec()).unwrap()));
        v
    }

    #[test]
    fn word_rule_matches_go() {
        assert_eq!(
            words(b"Hello, world! it's 42x"),
            ["Hello", "world", "it", "s", "x"]
        );
        assert_eq!(
            words("ǅemal ʰa 中文 ªb".as_bytes()),
            ["ǅemal", "ʰa", "中文", "ªb"]
        );
        assert_eq!(words("aⅫb".as_bytes()), ["a", "b"]);
        assert_eq!(words("cafe\u{301}s".as_bytes()), ["cafe", "s"]);
        assert_eq!(words("नमस्ते".as_bytes()), ["नमस", "त"]);
        assert_eq!(words("x١٢y".as_bytes()), ["x", "y"]);
        assert_eq!(words(b"ab\xffcd\xe4\xb8"), ["ab", "cd"]);
        assert_eq!(words(b"\xc3(x"), ["x"]);
        assert_eq!(words(b"a\xed\xa0\x80b\xc0\xafc"), ["a", "b", "c"]);
        assert_eq!(words("жё\u{1F600}ψ".as_bytes()), ["жё", "ψ"]);
    }

    #[test]
    fn corpus_is_deterministic_and_mixed() {
        let m = CorpusModel::new();
        let (mut a, mut b) = (Vec::new(), Vec::new());
        m.write_text(3, 100_000, &mut a).unwrap();
        m.write_text(3, 100_000, &mut b).unwrap();
        assert_eq!(a, b);
        assert!(a.len() >= 100_000 && a.ends_with(b"\n"));
        let text = String::from_utf8_lossy(&a);
        for probe in ['é', 'к', 'α', '中'] {
            assert!(
                text.chars().any(|c| c == probe)
                    || text.chars().any(|c| c.len_utf8() > 1 && is_letter(c))
            );
        }
    }
}
