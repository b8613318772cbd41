//! The guest side of mr's app ABI: an app is a map and a reduce function plus one
//! [`mr_app!`] line, and this crate turns them into the exports the worker calls.
//!
//! The worker runs each app as a core Wasm module (wasm32-unknown-unknown) with no WASI:
//! the app sees its input, its output and four host functions (`mr.log`, `mr.fail`,
//! `mr.random_u64`, `mr.sleep_ms`), nothing else. The byte layouts are in
//! `apps-wasm/README.md`; this crate is the only place apps need to know them.
//!
//! Speed matters because a map call covers a whole split (16 MiB and more): buffers live
//! in the instance between calls, words borrow from the input, and an app that declares
//! a combiner folds repeated keys in a hash map inside the guest, so the host receives
//! one record per distinct key instead of one per word.
//!
//! ```no_run
//! use mr_app_sdk::{mr_app, words, Emitter};
//! fn map(_name: &str, contents: &[u8], out: &mut Emitter) {
//!     for w in words(contents) { out.count(w, 1); }
//! }
//! fn reduce(_key: &str, counts: &[&str]) -> String { mr_app_sdk::sum_counts(counts).to_string() }
//! mr_app!(map = map, reduce = reduce, combine = mr_app_sdk::add_count);
//! ```

use std::hash::Hasher;

use unicode_general_category::{GeneralCategory, get_general_category};

/// The ABI version this SDK speaks; the host refuses modules that report another one.
pub const ABI_VERSION: i32 = 1;

/// `map(input_name, contents, out)`: called once per split; emit records with `out`.
pub type MapFn = fn(&str, &[u8], &mut Emitter<'_>);
/// `reduce(key, values) -> value`: called once per key with all of its values.
pub type ReduceFn = fn(&str, &[&str]) -> String;
/// `combine(key, acc, value)`: folds `value` into `acc`, the key's accumulated value.
/// In place rather than returning a new `String` so that the hot path of a combining map
/// (one call per repeated word) does not allocate.
pub type CombineFn = fn(&str, &mut String, &str);

// ---------------------------------------------------------------------------------------
// Host functions.

#[cfg(target_arch = "wasm32")]
mod host {
    #[link(wasm_import_module = "mr")]
    unsafe extern "C" {
        #[link_name = "log"]
        fn mr_log(ptr: *const u8, len: usize);
        #[link_name = "fail"]
        fn mr_fail(ptr: *const u8, len: usize);
        #[link_name = "random_u64"]
        fn mr_random_u64() -> i64;
        #[link_name = "sleep_ms"]
        fn mr_sleep_ms(ms: i32);
        #[link_name = "counter"]
        fn mr_counter(ptr: *const u8, len: usize, delta: i64);
    }

    pub fn log(msg: &str) {
        // SAFETY: the host only reads `len` bytes at `ptr`, which is a live &str.
        unsafe { mr_log(msg.as_ptr(), msg.len()) }
    }
    pub fn fail(msg: &str) {
        // SAFETY: as for log; the host traps the instance, so this does not return.
        unsafe { mr_fail(msg.as_ptr(), msg.len()) }
    }
    pub fn random_u64() -> u64 {
        // SAFETY: no arguments, no memory access.
        unsafe { mr_random_u64() as u64 }
    }
    pub fn sleep_ms(ms: u32) {
        // SAFETY: no memory access.
        unsafe { mr_sleep_ms(i32::try_from(ms).unwrap_or(i32::MAX)) }
    }
    pub fn counter(name: &str, delta: u64) {
        // SAFETY: the host only reads `len` bytes at `ptr`, which is a live &str.
        unsafe { mr_counter(name.as_ptr(), name.len(), delta as i64) }
    }
}

// Stand-ins so that the SDK's logic can be unit-tested on the build machine.
#[cfg(not(target_arch = "wasm32"))]
mod host {
    use std::sync::atomic::{AtomicU64, Ordering};

    pub fn log(msg: &str) {
        eprintln!("app: {msg}");
    }
    pub fn fail(msg: &str) {
        eprintln!("app failed: {msg}");
    }
    pub fn random_u64() -> u64 {
        // splitmix64: good enough for tests, no dependency.
        static STATE: AtomicU64 = AtomicU64::new(0x853c_49e6_748f_ea9b);
        let mut z = STATE
            .fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed)
            .wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    pub fn sleep_ms(ms: u32) {
        std::thread::sleep(std::time::Duration::from_millis(ms.into()));
    }
    pub fn counter(name: &str, delta: u64) {
        eprintln!("app counter: {name} += {delta}");
    }
}

/// Writes a message to the worker's log (the host keeps the first 4 KiB of it).
pub fn log(msg: &str) {
    host::log(msg)
}

/// 64 random bits from the host (the module has no entropy source of its own).
pub fn random_u64() -> u64 {
    host::random_u64()
}

/// Adds `delta` to the job's counter `name` (Google MapReduce §4.9, Hadoop counters):
/// counted once per committed task, whatever attempts failed or were superseded, and
/// shown in `GetJob`, `mr status` and the status page. Call it with totals (once per map
/// or reduce call, not per record) where you can: each call crosses into the host. A task
/// may use at most 64 names of at most 128 bytes, not starting with `mr.` (the built-ins).
pub fn counter(name: &str, delta: u64) {
    host::counter(name, delta)
}

/// Sleeps `ms` milliseconds. The host never sleeps past the task's deadline: if the
/// deadline comes first, the call ends the task with the time-limit error.
pub fn sleep_ms(ms: u32) {
    host::sleep_ms(ms)
}

// ---------------------------------------------------------------------------------------
// Words.

/// Whether `c` is a letter by Go's `unicode.IsLetter`: general category L (Lu, Ll, Lt,
/// Lm, Lo). Not `char::is_alphabetic`, which also accepts Nl (`Ⅻ`) and combining marks,
/// and would make the output differ from the lab's reference results.
#[inline]
pub fn is_letter(c: char) -> bool {
    if c.is_ascii() {
        c.is_ascii_alphabetic()
    } else {
        matches!(
            get_general_category(c),
            GeneralCategory::UppercaseLetter
                | GeneralCategory::LowercaseLetter
                | GeneralCategory::TitlecaseLetter
                | GeneralCategory::ModifierLetter
                | GeneralCategory::OtherLetter
        )
    }
}

/// [`is_letter`] through a cache: the general-category table is a binary search, too
/// slow once per character of non-ASCII text. Each 256-code-point block of the Basic
/// Multilingual Plane is looked up on first use (256 table calls) and kept as bits
/// (8 KiB in all); other planes go to the table. Atomics only so that the statics are
/// safe; on wasm32 they are plain loads and stores, and filling a block twice is harmless.
#[inline]
fn is_letter_cached(c: char) -> bool {
    use std::sync::atomic::Ordering::Relaxed;
    let cp = c as usize;
    if cp >= 0x1_0000 {
        return is_letter(c);
    }
    let block = cp >> 8;
    if BLOCKS_DONE[block / 64].load(Relaxed) >> (block % 64) & 1 == 0 {
        fill_block(block);
    }
    LETTER_BITS[cp / 64].load(Relaxed) >> (cp % 64) & 1 != 0
}

static LETTER_BITS: [std::sync::atomic::AtomicU64; 1024] =
    [const { std::sync::atomic::AtomicU64::new(0) }; 1024];
static BLOCKS_DONE: [std::sync::atomic::AtomicU64; 4] =
    [const { std::sync::atomic::AtomicU64::new(0) }; 4];

#[cold]
#[inline(never)]
fn fill_block(block: usize) {
    use std::sync::atomic::Ordering::Relaxed;
    for (word, slot) in LETTER_BITS.iter().enumerate().skip(block * 4).take(4) {
        let mut bits = 0u64;
        for bit in 0..64 {
            if char::from_u32((word * 64 + bit) as u32).is_some_and(is_letter) {
                bits |= 1 << bit;
            }
        }
        slot.store(bits, Relaxed);
    }
    BLOCKS_DONE[block / 64].fetch_or(1 << (block % 64), Relaxed);
}

/// The character at the start of `bytes` (whose first byte is not ASCII) and its length,
/// or `None` if the bytes there are not valid UTF-8 (then the first byte separates, as
/// Go's U+FFFD of width 1 would). Decoded by hand: `str::from_utf8` over each character's
/// bytes was a call per character and ~10% of wc's map on non-English text. Valid means
/// what the standard library means (the tests compare with `utf8_chunks`): no overlong
/// form (the lead bytes C0, C1 are refused here, E0 and F0 by the minimum below), no
/// surrogate and nothing above U+10FFFF (`char::from_u32`).
#[inline]
fn decode_at(bytes: &[u8]) -> Option<(char, usize)> {
    let lead = u32::from(bytes[0]);
    let cont = |i: usize| match bytes.get(i) {
        Some(&b) if b & 0xC0 == 0x80 => Some(u32::from(b & 0x3F)),
        _ => None,
    };
    let (cp, len, min) = match lead {
        0xC2..=0xDF => ((lead & 0x1F) << 6 | cont(1)?, 2, 0x80),
        0xE0..=0xEF => ((lead & 0x0F) << 12 | cont(1)? << 6 | cont(2)?, 3, 0x800),
        0xF0..=0xF4 => (
            (lead & 0x07) << 18 | cont(1)? << 12 | cont(2)? << 6 | cont(3)?,
            4,
            0x1_0000,
        ),
        _ => return None,
    };
    if cp < min {
        return None;
    }
    Some((char::from_u32(cp)?, len))
}

/// The words of `contents`: maximal runs of letters ([`is_letter`]), as the lab's
/// `strings.FieldsFunc(contents, func(r rune) bool { return !unicode.IsLetter(r) })`.
/// Bytes that are not valid UTF-8 separate words, as Go's U+FFFD would. The words
/// borrow from `contents`: nothing is allocated.
pub fn words(contents: &[u8]) -> Words<'_> {
    Words { rest: contents }
}

/// Iterator returned by [`words`]: one pass over the bytes, eight at a time while they
/// are ASCII (one 64-bit load and a few bit operations find the next letter or the next
/// separator), other characters decoded (and so validated) one at a time.
pub struct Words<'a> {
    rest: &'a [u8],
}

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// The 8 bytes at `bytes[i..]`, the first in the lowest bits.
#[inline]
fn load8(bytes: &[u8], i: usize) -> Option<u64> {
    Some(u64::from_le_bytes(bytes.get(i..i + 8)?.try_into().ok()?))
}

/// The high bit of each byte of `x` that is an ASCII letter, and of no other byte.
/// Every byte sum below stays under 0x100, so no carry crosses into the next byte.
#[inline]
fn ascii_letters(x: u64) -> u64 {
    // Fold case: 'A'..='Z' become 'a'..='z', and only they and those land there.
    let folded = (x & !HI) | (0x20 * LO);
    let from_a = folded + (0x80 - u64::from(b'a')) * LO;
    let past_z = folded + (0x80 - u64::from(b'z') - 1) * LO;
    from_a & !past_z & !x & HI
}

/// Index of the first byte whose high bit is set in `mask` (not 0).
#[inline]
fn first_byte(mask: u64) -> usize {
    (mask.trailing_zeros() / 8) as usize
}

impl<'a> Iterator for Words<'a> {
    type Item = &'a str;

    #[inline]
    fn next(&mut self) -> Option<&'a str> {
        let bytes = self.rest;
        let mut i = 0;
        // Separators: find the first ASCII letter or non-ASCII byte, 8 bytes at a time.
        let start = loop {
            let b = if let Some(x) = load8(bytes, i) {
                let found = ascii_letters(x) | (x & HI);
                if found == 0 {
                    i += 8;
                    continue;
                }
                i += first_byte(found);
                bytes[i]
            } else {
                let Some(&b) = bytes.get(i) else {
                    self.rest = &[];
                    return None;
                };
                b
            };
            if b < 0x80 {
                if b.is_ascii_alphabetic() {
                    break i;
                }
                i += 1;
            } else {
                match decode_at(&bytes[i..]) {
                    Some((c, len)) => {
                        let at = i;
                        i += len;
                        if is_letter_cached(c) {
                            break at;
                        }
                    }
                    None => i += 1,
                }
            }
        };
        // Letters: find the first byte that is not an ASCII letter, 8 bytes at a time;
        // a non-ASCII one may still continue the word.
        loop {
            let b = if let Some(x) = load8(bytes, i) {
                let stop = !ascii_letters(x) & HI;
                if stop == 0 {
                    i += 8;
                    continue;
                }
                i += first_byte(stop);
                bytes[i]
            } else {
                let Some(&b) = bytes.get(i) else { break };
                b
            };
            if b < 0x80 {
                if !b.is_ascii_alphabetic() {
                    break;
                }
                i += 1;
            } else {
                match decode_at(&bytes[i..]) {
                    Some((c, len)) if is_letter_cached(c) => i += len,
                    _ => break,
                }
            }
        }
        self.rest = &bytes[i..];
        let word = &bytes[start..i];
        debug_assert!(std::str::from_utf8(word).is_ok());
        // SAFETY: every byte of `word` is either an ASCII letter or part of a character
        // that `decode_at` decoded and validated over exactly its bytes, and
        // the word starts and ends on those characters' boundaries: it is valid UTF-8.
        // (A second validation pass over every word cost 7% of wc's map.)
        Some(unsafe { std::str::from_utf8_unchecked(word) })
    }
}

// ---------------------------------------------------------------------------------------
// Counting helpers (for wc-like apps).

/// Sums decimal counts; panics (a failed task with this message) on a non-number.
pub fn sum_counts(values: &[&str]) -> u64 {
    values.iter().map(|v| parse_count(v)).sum()
}

/// A combiner for counts: `acc += value`, in decimal, in place. A count is mostly
/// bumped by one, which touches only its last digits and does not allocate.
pub fn add_count(_key: &str, acc: &mut String, value: &str) {
    if value == "1"
        && let Some(last @ b'0'..=b'8') = acc.as_bytes().last().copied()
    {
        let at = acc.len() - 1;
        // SAFETY: one ASCII byte replaced by another: `acc` stays UTF-8. (If the rest
        // of `acc` is not a number, the slow path below or the reduce's parse says so.)
        unsafe { acc.as_mut_vec()[at] = last + 1 };
        return;
    }
    let mut carry = parse_count(value);
    if acc.is_empty() || !acc.bytes().all(|b| b.is_ascii_digit()) {
        panic!("count {acc:?} is not a decimal number");
    }
    // SAFETY: `acc` is all ASCII digits and only ASCII digits are written into it, so
    // it stays valid UTF-8. (Rebuilding the String safely tripled wc's map time.)
    let digits = unsafe { acc.as_mut_vec() };
    for d in digits.iter_mut().rev() {
        if carry == 0 {
            return;
        }
        let sum = u64::from(*d - b'0') + carry % 10;
        carry = carry / 10 + sum / 10;
        *d = b'0' + (sum % 10) as u8;
    }
    if carry > 0 {
        acc.insert_str(0, &carry.to_string());
    }
}

fn parse_count(s: &str) -> u64 {
    match s.parse() {
        Ok(n) => n,
        Err(e) => panic!("count {s:?} is not a decimal number: {e}"),
    }
}

// ---------------------------------------------------------------------------------------
// Emitting map output.

/// Collects a map call's records. With a combiner it holds one accumulated value per
/// distinct key; without, it appends every record in emission order.
pub struct Emitter<'a> {
    out: &'a mut Vec<u8>,
    combiner: Option<(&'a mut CombineMap, CombineFn)>,
}

/// A combiner's accumulated values: an open-addressing table (linear probing) whose
/// 32-byte slots hold a key's first 16 bytes inline next to its count, so that finding a
/// short key (nearly every word) reads one slot and no key elsewhere; whole keys live in
/// one arena, for long keys' comparisons and for the records at the end, and values given
/// with [`Emitter::emit`] beside the table, by key number. Nothing is allocated per
/// repeated key. (Before: a `HashMap<Box<str>, String>`, whose probes read each key from
/// its own allocation: `memcmp` and the map were a third of wc's map time. Then 48-byte
/// slots with the value inline: 32 bytes made wc's map ~10% faster.)
#[derive(Default)]
pub struct CombineMap {
    slots: Vec<Slot>,
    shift: u32,
    used: usize,
    keys: Vec<u8>,
    /// Where key number `id` starts in `keys`.
    offs: Vec<u32>,
    /// The value [`Emitter::emit`] gave key number `id`, if any (kept short: only as
    /// long as the last key that was given one).
    values: Vec<Option<String>>,
}

#[derive(Default, Clone, Copy)]
struct Slot {
    /// The key's first 16 bytes, zero-padded.
    prefix: [u64; 2],
    /// The key's length; 0 marks an empty slot (an empty key has `EMPTY_KEY`).
    len: u32,
    /// The key's number: its place in `offs` and `values`.
    id: u32,
    /// What [`Emitter::count`] added for the key: kept as a number, formatted once when
    /// the map ends (no `String` per key, no decimal arithmetic per word).
    count: u64,
}

const INLINE: usize = 16;
const EMPTY_KEY: u32 = u32::MAX;
const K1: u64 = 0x9e37_79b9_7f4a_7c15;
const K2: u64 = 0xc2b2_ae3d_27d4_eb4f;

/// The zero-padded first 16 bytes of `key`, with fixed-size loads only (a variable-length
/// copy is a `memcpy` call in Wasm).
#[inline]
fn key_prefix(key: &[u8]) -> [u64; 2] {
    let n = key.len();
    let u64_at = |at: usize| u64::from_le_bytes(key[at..at + 8].try_into().expect("8 bytes"));
    let u32_at = |at: usize| {
        u64::from(u32::from_le_bytes(
            key[at..at + 4].try_into().expect("4 bytes"),
        ))
    };
    if n >= INLINE {
        [u64_at(0), u64_at(8)]
    } else if n > 8 {
        // The last 8 bytes overlap the first 8; shift out the overlap.
        [u64_at(0), u64_at(n - 8) >> ((INLINE - n) * 8)]
    } else if n == 8 {
        [u64_at(0), 0]
    } else if n >= 4 {
        [u32_at(0) | (u32_at(n - 4) << ((n - 4) * 8)), 0]
    } else {
        let mut lo = 0u64;
        for (i, &b) in key.iter().enumerate() {
            lo |= u64::from(b) << (i * 8);
        }
        [lo, 0]
    }
}

#[inline]
fn key_hash(prefix: [u64; 2], key: &[u8]) -> u64 {
    let mut h = (prefix[0] ^ (key.len() as u64).rotate_left(56)).wrapping_mul(K1)
        ^ prefix[1].wrapping_mul(K2);
    if key.len() > INLINE {
        let mut hasher = FxHasher { hash: h };
        hasher.write(&key[INLINE..]);
        h = hasher.hash;
    }
    (h ^ (h >> 32)).wrapping_mul(K2)
}

impl CombineMap {
    /// Folds `value` into `key`'s accumulated value with `combine`, or makes it the first.
    #[inline]
    pub fn fold(&mut self, key: &str, value: &str, combine: CombineFn) {
        let (slot, new) = self.slot(key);
        let id = slot.id as usize;
        if self.values.len() <= id {
            self.values.resize(id + 1, None);
        }
        match &mut self.values[id] {
            Some(acc) => combine(key, acc, value),
            none => *none = Some(value.to_owned()),
        }
        if new {
            self.grow_if_full();
        }
    }

    /// Adds `n` to `key`'s count.
    #[inline]
    pub fn add(&mut self, key: &str, n: u64) {
        let (slot, new) = self.slot(key);
        // Checked: in a release build `+=` would wrap, and a wrong count is worse than a
        // failed task.
        let Some(sum) = slot.count.checked_add(n) else {
            panic!("the count of {key:?} passes u64::MAX");
        };
        slot.count = sum;
        if new {
            self.grow_if_full();
        }
    }

    /// `key`'s slot, and whether it was empty before (the key is then recorded in it).
    #[inline]
    fn slot(&mut self, key: &str) -> (&mut Slot, bool) {
        if self.slots.is_empty() {
            self.slots.resize_with(1 << 12, Slot::default);
            self.shift = 64 - 12;
        }
        let bytes = key.as_bytes();
        let prefix = key_prefix(bytes);
        let Ok(len) = u32::try_from(bytes.len()) else {
            panic!("a key of {} bytes", bytes.len());
        };
        let len = if len == 0 { EMPTY_KEY } else { len };
        let mask = self.slots.len() - 1;
        let mut i = (key_hash(prefix, bytes) >> self.shift) as usize;
        loop {
            let slot = &self.slots[i];
            if slot.len == 0 {
                break;
            }
            if slot.len == len
                && slot.prefix == prefix
                && (bytes.len() <= INLINE
                    || self.keys[self.offs[slot.id as usize] as usize + INLINE..]
                        [..bytes.len() - INLINE]
                        == bytes[INLINE..])
            {
                return (&mut self.slots[i], false);
            }
            i = (i + 1) & mask;
        }
        let Ok(off) = u32::try_from(self.keys.len()) else {
            panic!("combined keys over 4 GiB");
        };
        let id = self.offs.len() as u32;
        self.offs.push(off);
        if bytes.len() <= INLINE {
            push_inline(&mut self.keys, prefix, bytes.len());
        } else {
            self.keys.extend_from_slice(bytes);
        }
        self.used += 1;
        let slot = &mut self.slots[i];
        *slot = Slot {
            prefix,
            len,
            id,
            count: 0,
        };
        (slot, true)
    }

    /// Doubles the table once it is three quarters full.
    #[inline]
    fn grow_if_full(&mut self) {
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
            let key = self.key_of(&slot);
            let mut i = (key_hash(slot.prefix, key) >> self.shift) as usize;
            while self.slots[i].len != 0 {
                i = (i + 1) & mask;
            }
            self.slots[i] = slot;
        }
    }

    fn key_of(&self, slot: &Slot) -> &[u8] {
        let len = if slot.len == EMPTY_KEY {
            0
        } else {
            slot.len as usize
        };
        &self.keys[self.offs[slot.id as usize] as usize..][..len]
    }

    /// Empties the map (its memory kept).
    fn clear(&mut self) {
        if self.used > 0 {
            self.slots.fill(Slot::default());
            self.used = 0;
            self.keys.clear();
            self.offs.clear();
            self.values.clear();
        }
    }

    /// Appends every (key, value) record to `out` and empties the map (its memory kept).
    /// A counted key's value is its count in decimal, folded with `combine` into what
    /// [`Emitter::emit`] gave the same key, if anything.
    fn drain_into(&mut self, out: &mut Vec<u8>, combine: CombineFn) {
        // Room for every record at once: growing `out` by doubling copied it (a Wasm
        // memcpy) several times per map, 7% of wc's map. Values are mostly short counts.
        out.reserve(self.keys.len() + self.used * (8 + 4));
        let mut digits = [0u8; 20];
        for i in 0..self.slots.len() {
            if self.slots[i].len == 0 {
                continue;
            }
            let slot = std::mem::take(&mut self.slots[i]);
            let value = self.values.get_mut(slot.id as usize).and_then(Option::take);
            if value.is_none() && slot.len as usize <= INLINE {
                // A counted short key (nearly every word): the slot holds all of it, so
                // neither the key arena nor a `memory.copy` is touched.
                let n = slot.len as usize;
                out.extend_from_slice(&(n as u32).to_le_bytes());
                push_inline(out, slot.prefix, n);
                put_bytes(out, decimal(slot.count, &mut digits));
                continue;
            }
            let key = self.key_of(&slot);
            match (value, slot.count) {
                (None, n) => put_record(out, key, decimal(n, &mut digits)),
                (Some(value), 0) => put_record(out, key, value.as_bytes()),
                (Some(mut value), n) => {
                    let count = decimal(n, &mut digits);
                    // SAFETY: `decimal` writes ASCII digits only.
                    let count = unsafe { std::str::from_utf8_unchecked(count) };
                    // SAFETY: the key came from a &str.
                    let key_str = unsafe { std::str::from_utf8_unchecked(key) };
                    combine(key_str, &mut value, count);
                    put_record(out, key, value.as_bytes());
                }
            }
        }
        self.used = 0;
        self.keys.clear();
        self.offs.clear();
        self.values.clear();
    }
}

/// `n` in decimal, in the tail of `buf`.
#[inline]
fn decimal(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[at..];
        }
    }
}

impl Emitter<'_> {
    /// Emits one (key, value) record.
    #[inline]
    pub fn emit(&mut self, key: &str, value: &str) {
        match &mut self.combiner {
            None => put_record(self.out, key.as_bytes(), value.as_bytes()),
            Some((map, combine)) => map.fold(key, value, *combine),
        }
    }

    /// Emits `(key, n)` with `n` in decimal, as `emit(key, &n.to_string())` would, but
    /// with a combiner the count is added to the key's count as a number and formatted
    /// once when the map ends: the fast path for counting apps (wc), with no `String`
    /// per key. The combiner (normally [`add_count`]) still decides how a count meets a
    /// value that `emit` gave the same key.
    #[inline]
    pub fn count(&mut self, key: &str, n: u64) {
        match &mut self.combiner {
            None => {
                let mut digits = [0u8; 20];
                put_record(self.out, key.as_bytes(), decimal(n, &mut digits));
            }
            Some((map, _)) => map.add(key, n),
        }
    }
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    // The host bounds every length by the module's memory (< 4 GiB), so this fits.
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    extend_short(out, bytes);
}

/// `out.extend_from_slice(bytes)`, with fixed-size loads and stores for up to 16 bytes:
/// in Wasm a copy of a variable length is a `memory.copy`, a call out of the instance into
/// the host, and a combining map made three per distinct key (into the key arena, then the
/// key and its count into the records): ~2% of wc's whole job.
#[inline]
fn extend_short(out: &mut Vec<u8>, bytes: &[u8]) {
    if bytes.len() <= INLINE {
        push_inline(out, key_prefix(bytes), bytes.len());
    } else {
        out.extend_from_slice(bytes);
    }
}

/// Appends the first `n` (at most 16) bytes of `words`, little-endian (as [`key_prefix`]
/// gives a key's), to `out` with two 8-byte stores.
#[inline]
fn push_inline(out: &mut Vec<u8>, words: [u64; 2], n: usize) {
    assert!(n <= INLINE);
    out.reserve(INLINE);
    let len = out.len();
    // SAFETY: `reserve` left room for INLINE bytes after `len`, all 16 are written (so
    // initialized), and only the first `n` <= INLINE become part of the vector.
    unsafe {
        let end = out.as_mut_ptr().add(len);
        end.cast::<[u8; 8]>()
            .write_unaligned(words[0].to_le_bytes());
        end.add(8)
            .cast::<[u8; 8]>()
            .write_unaligned(words[1].to_le_bytes());
        out.set_len(len + n);
    }
}

fn put_record(out: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    put_bytes(out, key);
    put_bytes(out, value);
}

/// rustc's FxHash: a multiply-rotate hash, several times faster than SipHash for the
/// short keys of a combiner. Hash flooding is no concern inside a sandboxed task.
#[derive(Default, Clone, Copy)]
pub struct FxHasher {
    hash: u64,
}

impl FxHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, mut bytes: &[u8]) {
        // Fixed-size reads only: a copy of a variable-length tail costs a memcpy call.
        while let Some((word, rest)) = bytes.split_first_chunk::<8>() {
            self.add(u64::from_le_bytes(*word));
            bytes = rest;
        }
        if let Some((word, rest)) = bytes.split_first_chunk::<4>() {
            self.add(u32::from_le_bytes(*word).into());
            bytes = rest;
        }
        for &byte in bytes {
            self.add(byte.into());
        }
    }

    #[inline]
    fn write_u8(&mut self, byte: u8) {
        self.add(byte.into());
    }

    #[inline]
    fn finish(&self) -> u64 {
        // The multiply leaves its best bits high; hashbrown picks buckets from low bits.
        self.hash.rotate_left(26)
    }
}

// ---------------------------------------------------------------------------------------
// The exports' implementation (called by the code that mr_app! generates).

#[doc(hidden)]
pub mod __rt {
    use super::*;
    use std::cell::RefCell;

    /// Buffers kept for the instance's life: a reduce session makes many calls, and
    /// reallocating them each time would be wasted work.
    #[derive(Default)]
    struct State {
        input: Vec<u8>,
        out: Vec<u8>,
        combined: CombineMap,
    }

    thread_local! {
        static STATE: RefCell<State> = RefCell::default();
    }

    fn init() {
        static HOOK: std::sync::Once = std::sync::Once::new();
        HOOK.call_once(|| {
            std::panic::set_hook(Box::new(|info| {
                let payload = info.payload();
                let what = match payload.downcast_ref::<&str>() {
                    Some(s) => s,
                    None => payload
                        .downcast_ref::<String>()
                        .map_or("panic", String::as_str),
                };
                let msg = match info.location() {
                    Some(at) => format!("{what} (at {}:{})", at.file(), at.line()),
                    None => what.to_owned(),
                };
                // The host traps on mr.fail; on the build machine the abort follows.
                host::fail(&msg);
            }));
        });
    }

    pub fn alloc(len: i32) -> i32 {
        init();
        let Ok(len) = usize::try_from(len) else {
            panic!("mr_alloc: negative length {len}");
        };
        STATE.with_borrow_mut(|s| {
            // Zero-filling keeps this free of unsafe; it costs far less than the map.
            s.input.clear();
            s.input.resize(len, 0);
            s.input.as_mut_ptr() as usize as i32
        })
    }

    /// Checks that the host passed back the buffer mr_alloc handed out.
    fn input_of(s: &State, ptr: i32, len: i32) {
        let ok = ptr as usize == s.input.as_ptr() as usize && len as usize == s.input.len();
        assert!(
            ok,
            "the host passed ({ptr}, {len}), not the buffer from mr_alloc"
        );
    }

    fn pack(out: &[u8]) -> i64 {
        (((out.as_ptr() as usize as u64) << 32) | out.len() as u64) as i64
    }

    pub fn map(ptr: i32, len: i32, map: MapFn, combine: Option<CombineFn>) -> i64 {
        init();
        STATE.with_borrow_mut(|s| {
            input_of(s, ptr, len);
            let State {
                input,
                out,
                combined,
            } = s;
            run_map(input, map, combine, out, combined);
            pack(out)
        })
    }

    pub fn reduce(ptr: i32, len: i32, reduce: ReduceFn) -> i64 {
        init();
        STATE.with_borrow_mut(|s| {
            input_of(s, ptr, len);
            run_reduce(&s.input, reduce, &mut s.out);
            pack(&s.out)
        })
    }

    /// Runs `map` over an encoded map input, leaving the encoded records in `out`.
    pub fn run_map(
        input: &[u8],
        map: MapFn,
        combine: Option<CombineFn>,
        out: &mut Vec<u8>,
        combined: &mut CombineMap,
    ) {
        let mut rest = input;
        let name = take_str(&mut rest, "input name");
        out.clear();
        combined.clear();
        let mut emitter = Emitter {
            out,
            combiner: combine.map(|c| (&mut *combined, c)),
        };
        map(name, rest, &mut emitter);
        if let Some(combine) = combine {
            combined.drain_into(out, combine);
        }
    }

    /// Runs `reduce` over each group of an encoded batch, leaving the values in `out`.
    pub fn run_reduce(input: &[u8], reduce: ReduceFn, out: &mut Vec<u8>) {
        out.clear();
        let mut rest = input;
        let mut values: Vec<&str> = Vec::new();
        while !rest.is_empty() {
            let key = take_str(&mut rest, "key");
            let n = take_u32(&mut rest);
            values.clear();
            for _ in 0..n {
                values.push(take_str(&mut rest, "value"));
            }
            let value = reduce(key, &values);
            put_bytes(out, value.as_bytes());
        }
    }

    fn take_u32(rest: &mut &[u8]) -> u32 {
        let Some((head, tail)) = rest.split_first_chunk::<4>() else {
            panic!("malformed input from the host: truncated length");
        };
        *rest = tail;
        u32::from_le_bytes(*head)
    }

    fn take_str<'a>(rest: &mut &'a [u8], what: &str) -> &'a str {
        let len = take_u32(rest) as usize;
        let Some((bytes, tail)) = rest.split_at_checked(len) else {
            panic!("malformed input from the host: truncated {what}");
        };
        *rest = tail;
        match std::str::from_utf8(bytes) {
            Ok(s) => s,
            Err(e) => panic!("the {what} is not UTF-8: {e}"),
        }
    }
}

/// Declares the app: generates the module's exports around a map, a reduce and an
/// optional combine function ([`MapFn`], [`ReduceFn`], [`CombineFn`]).
#[macro_export]
macro_rules! mr_app {
    (map = $map:path, reduce = $reduce:path $(, combine = $combine:path)? $(,)?) => {
        #[unsafe(no_mangle)]
        pub extern "C" fn mr_abi_version() -> i32 {
            $crate::ABI_VERSION
        }

        #[unsafe(no_mangle)]
        pub extern "C" fn mr_alloc(len: i32) -> i32 {
            $crate::__rt::alloc(len)
        }

        #[unsafe(no_mangle)]
        pub extern "C" fn mr_map(ptr: i32, len: i32) -> i64 {
            let combine: ::core::option::Option<$crate::CombineFn> = None;
            $(let combine = Some($combine as $crate::CombineFn);)?
            $crate::__rt::map(ptr, len, $map, combine)
        }

        #[unsafe(no_mangle)]
        pub extern "C" fn mr_reduce(ptr: i32, len: i32) -> i64 {
            $crate::__rt::reduce(ptr, len, $reduce)
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(s: &[u8]) -> Vec<&str> {
        words(s).collect()
    }

    #[test]
    fn words_are_runs_of_go_letters() {
        assert_eq!(
            all(b"Hello, world! it's 42x"),
            ["Hello", "world", "it", "s", "x"]
        );
        // Lt, Lm, Lo and Latin-1 letters (ª is Lo) are letters, as in Go.
        assert_eq!(
            all("ǅemal ʰa 中文 ªb".as_bytes()),
            ["ǅemal", "ʰa", "中文", "ªb"]
        );
        // Nl (Roman numeral twelve) and Mn (combining acute) separate words in Go...
        assert_eq!(all("aⅫb".as_bytes()), ["a", "b"]);
        assert_eq!(all("cafe\u{301}s".as_bytes()), ["cafe", "s"]);
        // ...as do the vowel signs and virama of Indic scripts (Mn, Mc)...
        assert_eq!(all("नमस्ते".as_bytes()), ["नमस", "त"]);
        // ...though Rust's is_alphabetic calls Nl and many marks letters: hence the table.
        assert!('Ⅻ'.is_alphabetic() && '\u{345}'.is_alphabetic() && '\u{947}'.is_alphabetic());
        assert!(!is_letter('Ⅻ') && !is_letter('\u{345}') && !is_letter('\u{947}'));
        // Digits of other scripts (Nd) are not letters either.
        assert_eq!(all("x١٢y".as_bytes()), ["x", "y"]);
    }

    #[test]
    fn ascii_letters_marks_exactly_the_ascii_letters() {
        // Every byte value at every position, next to every other byte value.
        for b in 0..=255u8 {
            for other in 0..=255u8 {
                for at in 0..8 {
                    let mut bytes = [other; 8];
                    bytes[at] = b;
                    let got = ascii_letters(u64::from_le_bytes(bytes));
                    for (k, &byte) in bytes.iter().enumerate() {
                        let marked = got >> (k * 8 + 7) & 1 == 1;
                        assert_eq!(marked, byte.is_ascii_alphabetic(), "{bytes:?} at {k}");
                    }
                    assert_eq!(got & !HI, 0);
                }
            }
        }
    }

    #[test]
    fn invalid_utf8_separates_words() {
        assert_eq!(all(b"ab\xffcd\xe4\xb8"), ["ab", "cd"]);
        assert_eq!(all(b"\xc3(x"), ["x"]);
        assert!(all(b"").is_empty());
        assert!(all(b" \n\t123 ").is_empty());
    }

    /// `decode_at` against the standard library on every sequence of 2 and 3 bytes that
    /// starts with a non-ASCII byte, and on 4-byte ones whose continuation bytes are each
    /// one of the values around every boundary of the rule.
    #[test]
    fn decode_at_agrees_with_std_on_every_short_sequence() {
        fn std_decode(b: &[u8]) -> Option<(char, usize)> {
            let valid = b.utf8_chunks().next()?.valid();
            let c = valid.chars().next()?;
            Some((c, c.len_utf8()))
        }
        let mut checked = 0u64;
        for lead in 0x80..=0xFFu8 {
            for b1 in 0..=0xFFu8 {
                assert_eq!(
                    decode_at(&[lead, b1]),
                    std_decode(&[lead, b1]),
                    "{lead:x} {b1:x}"
                );
                for b2 in 0..=0xFFu8 {
                    let seq = [lead, b1, b2];
                    assert_eq!(decode_at(&seq), std_decode(&seq), "{seq:x?}");
                    checked += 1;
                }
            }
        }
        let edges = [0x00, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xFF];
        for lead in 0xF0..=0xFFu8 {
            for b1 in edges {
                for b2 in edges {
                    for b3 in edges {
                        let seq = [lead, b1, b2, b3];
                        assert_eq!(decode_at(&seq), std_decode(&seq), "{seq:x?}");
                        assert_eq!(decode_at(&seq[..3]), std_decode(&seq[..3]), "{seq:x?}");
                        checked += 1;
                    }
                }
            }
        }
        assert!(checked > 8_000_000);
    }

    /// The words by the plainest rule there is: std's UTF-8 chunks, `is_letter` per char.
    fn reference_words(s: &[u8]) -> Vec<String> {
        let mut out = Vec::new();
        for chunk in s.utf8_chunks() {
            let mut word = String::new();
            for c in chunk.valid().chars() {
                if is_letter(c) {
                    word.push(c);
                } else if !word.is_empty() {
                    out.push(std::mem::take(&mut word));
                }
            }
            if !word.is_empty() {
                out.push(word);
            }
        }
        out
    }

    #[test]
    fn words_match_a_plain_reference_on_random_bytes() {
        let pieces: [&[u8]; 18] = [
            b"a",
            b"Zq",
            b"@[`{",
            b"AZazMm",
            b" ",
            b",",
            b"\n",
            "é".as_bytes(),
            "жё".as_bytes(),
            "中".as_bytes(),
            "\u{301}".as_bytes(),
            "Ⅻ".as_bytes(),
            "\u{1F600}".as_bytes(),
            "𝒜".as_bytes(),
            b"\xff",
            b"\xe4\xb8",
            b"\xed\xa0\x80",
            b"\xc0\xaf",
        ];
        let mut state = 0x1234_5678_u64;
        for _ in 0..2000 {
            let mut text = Vec::new();
            for _ in 0..(random_u64() % 48) {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let p = pieces[(state >> 59) as usize % pieces.len()];
                // Sometimes only part of a piece: cut sequences.
                let cut = if state & 7 == 0 {
                    p.len().div_ceil(2)
                } else {
                    p.len()
                };
                text.extend_from_slice(&p[..cut]);
            }
            let got: Vec<String> = words(&text).map(String::from).collect();
            assert_eq!(got, reference_words(&text), "text {text:?}");
        }
    }

    fn encode_map_input(name: &str, contents: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        put_bytes(&mut v, name.as_bytes());
        v.extend_from_slice(contents);
        v
    }

    fn decode_records(mut b: &[u8]) -> Vec<(String, String)> {
        let mut take = || {
            let n = u32::from_le_bytes(b[..4].try_into().unwrap()) as usize;
            let s = String::from_utf8(b[4..4 + n].to_vec()).unwrap();
            b = &b[4 + n..];
            (s, b.is_empty())
        };
        let mut v = Vec::new();
        loop {
            let (k, _) = take();
            let (val, end) = take();
            v.push((k, val));
            if end {
                return v;
            }
        }
    }

    fn wc_map(_name: &str, contents: &[u8], out: &mut Emitter) {
        for w in words(contents) {
            out.emit(w, "1");
        }
    }

    #[test]
    fn map_without_combiner_keeps_every_record_in_order() {
        let input = encode_map_input("doc", b"b a b");
        let (mut out, mut map) = (Vec::new(), CombineMap::default());
        __rt::run_map(&input, wc_map, None, &mut out, &mut map);
        let recs = decode_records(&out);
        assert_eq!(
            recs,
            [("b", "1"), ("a", "1"), ("b", "1")].map(|(k, v)| (k.into(), v.into()))
        );
    }

    #[test]
    fn map_with_combiner_folds_repeated_keys() {
        let input = encode_map_input("doc", b"b a b c b");
        let (mut out, mut map) = (Vec::new(), CombineMap::default());
        __rt::run_map(&input, wc_map, Some(add_count), &mut out, &mut map);
        let mut recs = decode_records(&out);
        recs.sort();
        assert_eq!(
            recs,
            [("a", "1"), ("b", "3"), ("c", "1")].map(|(k, v)| (k.into(), v.into()))
        );
    }

    #[test]
    fn combine_map_matches_a_hash_map() {
        let mut map = CombineMap::default();
        let mut reference = std::collections::HashMap::new();
        let mut out = Vec::new();
        for round in 0..2 {
            for i in 0..20_000u64 {
                let n = (i * 7919) % 5003;
                // Keys of every length from 0 to 40 bytes, some sharing 16-byte prefixes.
                let key = format!("{}{n}", "k".repeat((n % 41) as usize)).replace("k0", "");
                let key = &key[..key.len().min(40)];
                map.fold(key, "1", add_count);
                *reference.entry(key.to_owned()).or_insert(0u64) += 1;
            }
            let (got, want) = drain_both(&mut map, &mut reference, &mut out);
            assert_eq!(got, want, "round {round}");
        }
        map.fold("", "1", add_count);
        map.fold("", "1", add_count);
        out.clear();
        map.drain_into(&mut out, add_count);
        assert_eq!(decode_records(&out), [(String::new(), "2".to_owned())]);
    }

    /// Drains `map` (through `out`) and `reference` into sorted (key, count) lists.
    fn drain_both(
        map: &mut CombineMap,
        reference: &mut std::collections::HashMap<String, u64>,
        out: &mut Vec<u8>,
    ) -> (Vec<(String, String)>, Vec<(String, String)>) {
        out.clear();
        map.drain_into(out, add_count);
        let mut got = decode_records(out);
        got.sort();
        let mut want: Vec<(String, String)> =
            reference.drain().map(|(k, v)| (k, v.to_string())).collect();
        want.sort();
        (got, want)
    }

    /// The counting path (`add`, drained from the slots without the key arena for keys of
    /// up to 16 bytes) against a hash map: keys of 1 to 40 bytes, counts of 1 to 19 digits.
    #[test]
    fn counted_keys_match_a_hash_map() {
        let mut map = CombineMap::default();
        let mut reference = std::collections::HashMap::new();
        let mut out = Vec::new();
        for round in 0..2u64 {
            for i in 0..30_000u64 {
                let n = (i * 7919 + round) % 6007;
                // 1 to 4 digits and 0 to 18 two-byte letters: 1 to 40 bytes.
                let key = format!("{n}{}", "é".repeat((n % 19) as usize));
                let key = key.as_str();
                let add = if n % 97 == 0 {
                    u64::MAX / 16
                } else {
                    1 + n % 3
                };
                map.add(key, add);
                *reference.entry(key.to_owned()).or_insert(0u64) += add;
            }
            let (got, want) = drain_both(&mut map, &mut reference, &mut out);
            assert!(want.iter().any(|(k, _)| k.len() > INLINE));
            assert!(want.iter().any(|(_, v)| v.len() > INLINE));
            assert_eq!(got, want, "round {round}");
        }
    }

    fn wc_count_map(_name: &str, contents: &[u8], out: &mut Emitter) {
        for w in words(contents) {
            out.count(w, 1);
        }
        // A key that is emitted and counted: the combiner folds the two.
        out.emit("mixed", "40");
        out.count("mixed", 2);
        out.count("big", u64::MAX);
    }

    #[test]
    fn counts_are_kept_as_numbers_and_formatted_once() {
        let input = encode_map_input("doc", b"b a b c b");
        let (mut out, mut map) = (Vec::new(), CombineMap::default());
        __rt::run_map(&input, wc_count_map, Some(add_count), &mut out, &mut map);
        let mut recs = decode_records(&out);
        recs.sort();
        let max = u64::MAX.to_string();
        assert_eq!(
            recs,
            [
                ("a", "1"),
                ("b", "3"),
                ("big", &max[..]),
                ("c", "1"),
                ("mixed", "42")
            ]
            .map(|(k, v)| (k.into(), v.into()))
        );
        // Without a combiner, a count is a record of its own, in order.
        __rt::run_map(&input, wc_count_map, None, &mut out, &mut map);
        let recs = decode_records(&out);
        assert_eq!(recs.len(), 5 + 3);
        assert_eq!(recs[0], ("b".into(), "1".into()));
        assert_eq!(
            recs[5..],
            [
                ("mixed".into(), "40".into()),
                ("mixed".into(), "2".into()),
                ("big".into(), max.clone())
            ]
        );
    }

    #[test]
    #[should_panic(expected = "passes u64::MAX")]
    fn a_count_past_u64_max_fails_the_task() {
        let mut map = CombineMap::default();
        map.add("big", u64::MAX);
        map.add("big", 1);
    }

    #[test]
    fn reduce_runs_once_per_group() {
        let mut input = Vec::new();
        for (k, vals) in [("a", &["1", "2"][..]), ("b", &[][..]), ("c", &["7"][..])] {
            put_bytes(&mut input, k.as_bytes());
            input.extend_from_slice(&(vals.len() as u32).to_le_bytes());
            for v in vals {
                put_bytes(&mut input, v.as_bytes());
            }
        }
        let mut out = Vec::new();
        __rt::run_reduce(&input, |_, v| sum_counts(v).to_string(), &mut out);
        let mut expect = Vec::new();
        for v in ["3", "0", "7"] {
            put_bytes(&mut expect, v.as_bytes());
        }
        assert_eq!(out, expect);
    }

    #[test]
    fn add_count_adds_in_decimal() {
        let mut acc = String::from("41");
        add_count("k", &mut acc, "1");
        assert_eq!(acc, "42");
        let mut acc = String::from("99");
        add_count("k", &mut acc, "1");
        assert_eq!(acc, "100");
        add_count("k", &mut acc, "905");
        assert_eq!(acc, "1005");
        add_count("k", &mut acc, "18446744073709551515");
        assert_eq!(acc, "18446744073709552520", "counts may outgrow u64");
    }

    #[test]
    #[should_panic(expected = "not a decimal number")]
    fn add_count_refuses_non_numbers() {
        add_count("k", &mut String::from("x9"), "1");
    }
}
