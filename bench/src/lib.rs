//! The benchmarks of issue 6 (`make bench`): a deterministic corpus generator, a native
//! single-process word count with the same word rule as the `wc` app, and the driver that
//! runs a real local cluster against it (`src/bin/mr-bench.rs`).
//!
//! The native word count is written independently of the guest SDK (its own UTF-8 decoder,
//! its own loops), on purpose: the bench compares the cluster's output with it, so a bug
//! in the SDK's fast paths shows up as a mismatch instead of being shared by both sides.

#[cfg(feature = "bench")]
pub mod boundary;

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

/// Letter-ness of every code point of the Basic Multilingual Plane, one bit each (8 KiB,
/// stays in L1): the general-category table is a binary search, too slow per character.
pub struct Letters {
    bmp: Box<[u64; 1024]>,
}

impl Letters {
    pub fn new() -> Self {
        let mut bmp = Box::new([0u64; 1024]);
        for cp in 0..0x1_0000u32 {
            if char::from_u32(cp).is_some_and(is_letter) {
                bmp[cp as usize / 64] |= 1 << (cp % 64);
            }
        }
        Self { bmp }
    }

    #[inline]
    pub fn is_letter(&self, c: char) -> bool {
        let cp = c as usize;
        if cp < 0x1_0000 {
            self.bmp[cp / 64] >> (cp % 64) & 1 != 0
        } else {
            is_letter(c)
        }
    }
}

impl Default for Letters {
    fn default() -> Self {
        Self::new()
    }
}

/// Calls `f(start, end)` for every word of `text`: maximal runs of letters
/// ([`is_letter`]), with bytes that are not valid UTF-8 separating words. ASCII bytes are
/// tested directly; only other characters are decoded.
#[inline]
pub fn for_each_word_at(text: &[u8], letters: &Letters, mut f: impl FnMut(usize, usize)) {
    let n = text.len();
    let mut i = 0;
    loop {
        // Separators.
        let start = loop {
            let Some(&b) = text.get(i) else { return };
            if b < 0x80 {
                if b.is_ascii_alphabetic() {
                    break i;
                }
                i += 1;
            } else {
                match decode(&text[i..]) {
                    Some((c, len)) => {
                        let at = i;
                        i += len;
                        if letters.is_letter(c) {
                            break at;
                        }
                    }
                    None => i += 1,
                }
            }
        };
        // Letters.
        loop {
            let Some(&b) = text.get(i) else {
                f(start, n);
                return;
            };
            if b < 0x80 {
                if !b.is_ascii_alphabetic() {
                    break;
                }
                i += 1;
            } else {
                match decode(&text[i..]) {
                    Some((c, len)) if letters.is_letter(c) => i += len,
                    _ => break,
                }
            }
        }
        f(start, i);
        // The byte at `i` separates; the loop above looks at it again.
    }
}

/// Calls `f` for every word of `text` (see [`for_each_word_at`]).
pub fn for_each_word(text: &[u8], mut f: impl FnMut(&[u8])) {
    let letters = Letters::new();
    for_each_word_at(text, &letters, |s, e| f(&text[s..e]));
}

/// Word counts: an open-addressing table (linear probing) whose slots hold a word's first
/// 16 bytes inline, so that a lookup of a short word (nearly all of them) touches one
/// slot and nothing else; longer words live in an arena. Nothing is allocated per word
/// occurrence, and only the arena grows per distinct long word.
pub struct WordTable {
    slots: Vec<Slot>,
    shift: u32,
    used: usize,
    arena: Vec<u8>,
}

#[derive(Clone, Copy, Default)]
struct Slot {
    /// The word's first 16 bytes, zero-padded.
    key: [u64; 2],
    /// 0: an empty slot (words are never empty).
    len: u32,
    /// Where the whole word starts in the arena, for words longer than 16 bytes.
    off: u32,
    count: u64,
}

const INLINE: usize = 16;

#[inline]
fn prefix_of(word: &[u8]) -> [u64; 2] {
    let mut buf = [0u8; INLINE];
    let n = word.len().min(INLINE);
    buf[..n].copy_from_slice(&word[..n]);
    [
        u64::from_le_bytes(buf[..8].try_into().expect("8 bytes")),
        u64::from_le_bytes(buf[8..].try_into().expect("8 bytes")),
    ]
}

/// The zero-padded first 16 bytes of `text[s..e]`, with two unaligned loads when the
/// text has 16 bytes from `s` on.
#[inline]
fn prefix_at(text: &[u8], s: usize, e: usize) -> [u64; 2] {
    let Some(chunk) = text.get(s..s + INLINE) else {
        return prefix_of(&text[s..e]);
    };
    let lo = u64::from_le_bytes(chunk[..8].try_into().expect("8 bytes"));
    let hi = u64::from_le_bytes(chunk[8..].try_into().expect("8 bytes"));
    let len = e - s;
    if len >= INLINE {
        [lo, hi]
    } else if len >= 8 {
        [lo, hi & ((1u64 << ((len - 8) * 8)) - 1)]
    } else {
        [lo & ((1u64 << (len * 8)) - 1), 0]
    }
}

const K1: u64 = 0x9e37_79b9_7f4a_7c15;
const K2: u64 = 0xc2b2_ae3d_27d4_eb4f;

#[inline]
fn hash_of(key: [u64; 2], word: &[u8]) -> u64 {
    let mut h =
        (key[0] ^ (word.len() as u64).rotate_left(56)).wrapping_mul(K1) ^ key[1].wrapping_mul(K2);
    if word.len() > INLINE {
        // Fixed-size reads (a variable-length copy would call memcpy), then byte by byte.
        let mut chunks = word[INLINE..].chunks_exact(8);
        for chunk in &mut chunks {
            let w = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
            h = (h.rotate_left(23) ^ w).wrapping_mul(K1);
        }
        for &b in chunks.remainder() {
            h = (h.rotate_left(23) ^ u64::from(b)).wrapping_mul(K1);
        }
    }
    h ^ (h >> 32)
}

impl WordTable {
    pub fn new() -> Self {
        let bits = 16;
        Self {
            slots: vec![Slot::default(); 1 << bits],
            shift: 64 - bits,
            used: 0,
            arena: Vec::new(),
        }
    }

    /// Distinct words.
    pub fn len(&self) -> usize {
        self.used
    }

    pub fn is_empty(&self) -> bool {
        self.used == 0
    }

    /// Adds `n` to the count of `text[s..e]`.
    #[inline]
    pub fn add_at(&mut self, text: &[u8], s: usize, e: usize, n: u64) {
        self.add_key(prefix_at(text, s, e), &text[s..e], n);
    }

    /// Adds `n` to the count of `word`.
    pub fn add(&mut self, word: &[u8], n: u64) {
        self.add_key(prefix_of(word), word, n);
    }

    #[inline]
    fn add_key(&mut self, key: [u64; 2], word: &[u8], n: u64) {
        let len = u32::try_from(word.len()).expect("a word under 4 GiB");
        let mask = self.slots.len() - 1;
        let mut i = (hash_of(key, word).wrapping_mul(K2) >> self.shift) as usize;
        loop {
            let slot = &mut self.slots[i];
            if slot.len == 0 {
                break;
            }
            if slot.len == len
                && slot.key == key
                && (word.len() <= INLINE
                    || self.arena[slot.off as usize + INLINE..][..word.len() - INLINE]
                        == word[INLINE..])
            {
                slot.count += n;
                return;
            }
            i = (i + 1) & mask;
        }
        let off = if word.len() > INLINE {
            let off = u32::try_from(self.arena.len()).expect("arena under 4 GiB");
            self.arena.extend_from_slice(word);
            off
        } else {
            0
        };
        self.slots[i] = Slot {
            key,
            len,
            off,
            count: n,
        };
        self.used += 1;
        if self.used * 4 > self.slots.len() * 3 {
            self.grow();
        }
    }

    fn grow(&mut self) {
        let doubled = vec![Slot::default(); self.slots.len() * 2];
        let old = std::mem::replace(&mut self.slots, doubled);
        self.shift -= 1;
        let mask = self.slots.len() - 1;
        for slot in old.into_iter().filter(|s| s.len != 0) {
            let h = self.slot_hash(&slot);
            let mut i = (h.wrapping_mul(K2) >> self.shift) as usize;
            while self.slots[i].len != 0 {
                i = (i + 1) & mask;
            }
            self.slots[i] = slot;
        }
    }

    fn slot_hash(&self, slot: &Slot) -> u64 {
        let len = slot.len as usize;
        if len > INLINE {
            hash_of(slot.key, &self.arena[slot.off as usize..][..len])
        } else {
            // Only the word's length matters to hash_of for inline words.
            hash_of(slot.key, &[0u8; INLINE][..len])
        }
    }

    /// Every (word, count).
    pub fn for_each(&self, mut f: impl FnMut(&[u8], u64)) {
        for slot in self.slots.iter().filter(|s| s.len != 0) {
            if slot.len as usize > INLINE {
                f(
                    &self.arena[slot.off as usize..][..slot.len as usize],
                    slot.count,
                );
            } else {
                let mut b = [0u8; INLINE];
                b[..8].copy_from_slice(&slot.key[0].to_le_bytes());
                b[8..].copy_from_slice(&slot.key[1].to_le_bytes());
                f(&b[..slot.len as usize], slot.count);
            }
        }
    }
}

impl Default for WordTable {
    fn default() -> Self {
        Self::new()
    }
}

/// Adds the words of `text` to `counts`.
pub fn count_words(text: &[u8], letters: &Letters, counts: &mut WordTable) {
    for_each_word_at(text, letters, |s, e| counts.add_at(text, s, e, 1));
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
    let letters = Letters::new();
    let next = AtomicUsize::new(0);
    let maps: Vec<io::Result<WordTable>> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads.max(1))
            .map(|_| {
                s.spawn(|| {
                    let mut counts = WordTable::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(&(path, off, len)) = pieces.get(i) else {
                            return Ok(counts);
                        };
                        let text = mr_worker::tasks::read_split(path, off, len)?;
                        count_words(&text, &letters, &mut counts);
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
        m.for_each(|w, n| total.add(w, n));
    }
    let mut sorted: Vec<(Box<[u8]>, u64)> = Vec::with_capacity(total.len());
    total.for_each(|w, n| sorted.push((w.into(), n)));
    sorted.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    Ok(sorted)
}

/// Writes `word count` lines.
pub fn write_counts(out: &mut impl Write, counts: &[(Box<[u8]>, u64)]) -> io::Result<()> {
    // Built in one buffer with hand-formatted numbers: `writeln!` per line was 5% of the
    // whole program.
    let mut buf = Vec::with_capacity(counts.iter().map(|(w, _)| w.len() + 8).sum());
    for (w, n) in counts {
        buf.extend_from_slice(w);
        buf.push(b' ');
        let mut digits = [0u8; 20];
        let mut at = digits.len();
        let mut n = *n;
        loop {
            at -= 1;
            digits[at] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        buf.extend_from_slice(&digits[at..]);
        buf.push(b'\n');
    }
    out.write_all(&buf)
}

/// The inverted index of the `indexer` apps, computed natively: one line per word,
/// `word n doc1,doc2,...` with the `n` distinct documents holding it (sorted), lines sorted.
/// `docs` pairs each document's name (what the app sees: the data-relative input path)
/// with its file. Independent of the apps, as [`native_word_count`] is.
pub fn native_index(docs: &[(String, PathBuf)]) -> io::Result<Vec<u8>> {
    let mut docs: Vec<&(String, PathBuf)> = docs.iter().collect();
    docs.sort_by(|a, b| a.0.cmp(&b.0));
    docs.dedup_by(|a, b| a.0 == b.0);
    let letters = Letters::new();
    // word -> indexes into `docs`, ascending (documents are visited in order).
    let mut index: rustc_hash::FxHashMap<Box<[u8]>, Vec<usize>> = Default::default();
    for (d, (_, path)) in docs.iter().enumerate() {
        let text = std::fs::read(path)?;
        for_each_word_at(&text, &letters, |s, e| {
            let word = &text[s..e];
            match index.get_mut(word) {
                Some(list) => {
                    if list.last() != Some(&d) {
                        list.push(d);
                    }
                }
                None => {
                    index.insert(word.into(), vec![d]);
                }
            }
        });
    }
    let mut lines: Vec<Vec<u8>> = index
        .into_iter()
        .map(|(word, list)| {
            let mut line = word.into_vec();
            line.extend_from_slice(format!(" {} ", list.len()).as_bytes());
            let names: Vec<&str> = list.iter().map(|&d| docs[d].0.as_str()).collect();
            line.extend_from_slice(names.join(",").as_bytes());
            line.push(b'\n');
            line
        })
        .collect();
    lines.sort_unstable();
    Ok(lines.concat())
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
    fn native_index_lists_distinct_sorted_documents() {
        let dir = std::env::temp_dir().join(format!("mr-bench-index-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let doc = |name: &str, text: &str| {
            std::fs::write(dir.join(name), text).unwrap();
            (format!("input/{name}"), dir.join(name))
        };
        let docs = [doc("b.txt", "beta alpha beta"), doc("a.txt", "alpha, γ!")];
        let index = native_index(&docs).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(
            String::from_utf8(index).unwrap(),
            "alpha 2 input/a.txt,input/b.txt\nbeta 1 input/b.txt\nγ 1 input/a.txt\n"
        );
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
