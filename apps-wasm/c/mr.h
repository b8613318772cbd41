/* mr.h: the C SDK for mr's MapReduce apps, header-only. See apps-wasm/README.md for the
 * ABI it implements (version 1) and apps-wasm/c/README.md for how to write and build an
 * app; the Rust SDK (apps-wasm/sdk) is the reference it matches.
 *
 * An app is ONE .c file that includes this header once and ends with
 *
 *     MR_APP(my_map, my_reduce)
 *
 * where
 *
 *     void my_map(const char *name, size_t name_len, const uint8_t *contents, size_t len);
 *     void my_reduce(const char *key, size_t key_len, mr_values *values);
 *
 * The map emits records with mr_emit(), or counts words with mr_counts_add() (a combiner:
 * the map then returns one record per distinct key, its value the decimal total). The
 * reduce reads its values with mr_values_next() and writes the key's one output value
 * with mr_value() / mr_value_u64() (appending; nothing written = an empty value).
 *
 * Everything the SDK hands out (names, contents, keys, values, mr_arena_alloc() memory)
 * lives until the call returns. Memory is one bump arena over the module's linear memory,
 * grown with memory.grow and reset at every call: nothing is ever freed, nothing needs
 * to be. No libc: the module imports only the host functions of module "mr".
 *
 * Build with apps-wasm/c/build.sh (clang-19, --target=wasm32-unknown-unknown -nostdlib).
 */
#ifndef MR_H
#define MR_H

#if !defined(__wasm32__)
#error "mr.h targets wasm32 (build with apps-wasm/c/build.sh: --target=wasm32-unknown-unknown)"
#endif

#include <stddef.h>
#include <stdint.h>

#include "mr_letters.h"

/* The ABI version this SDK speaks; the host refuses modules that report another one. */
#define MR_ABI_VERSION 1

#define MR_INLINE static inline __attribute__((always_inline))
#define MR_NOINLINE static __attribute__((noinline))
#define MR_COLD static __attribute__((noinline, cold))
#define MR_LIKELY(x) __builtin_expect(!!(x), 1)
#define MR_UNLIKELY(x) __builtin_expect(!!(x), 0)

/* ------------------------------------------------------------------------------------
 * Host functions (import module "mr").
 */

#define MR__IMPORT(fn) __attribute__((import_module("mr"), import_name(#fn)))
MR__IMPORT(log) void mr__host_log(const void *ptr, size_t len);
MR__IMPORT(fail) void mr__host_fail(const void *ptr, size_t len);
MR__IMPORT(random_u64) int64_t mr__host_random_u64(void);
MR__IMPORT(sleep_ms) void mr__host_sleep_ms(int32_t ms);
MR__IMPORT(counter) void mr__host_counter(const void *ptr, size_t len, int64_t delta);

/* A message for the worker's log (the host keeps its first 4 KiB). */
static inline void mr_log(const char *msg, size_t len) { mr__host_log(msg, len); }

/* Fails the call with this message: the task fails and the worker reports it. */
__attribute__((noreturn, cold)) static void mr_fail(const char *msg, size_t len) {
    mr__host_fail(msg, len);
    __builtin_trap(); /* the host ends the call in mr.fail; never reached */
}

/* Adds delta to the job counter `name` (at most 64 names of 1..128 bytes per task, not
 * starting with "mr."). Counted once per committed task. Call it with totals, not per
 * record: each call crosses into the host. */
static inline void mr_counter(const char *name, size_t len, uint64_t delta) {
    mr__host_counter(name, len, (int64_t)delta);
}

/* 64 random bits from the host; sleeping (bounded by the task's deadline). For test apps. */
static inline uint64_t mr_random_u64(void) { return (uint64_t)mr__host_random_u64(); }
static inline void mr_sleep_ms(uint32_t ms) {
    mr__host_sleep_ms(ms > INT32_MAX ? INT32_MAX : (int32_t)ms);
}

/* The same with NUL-terminated strings, e.g. mr_fail_str("bad input"). */
static inline size_t mr_strlen(const char *s) {
    size_t n = 0;
    while (s[n]) n++;
    return n;
}
#define mr_log_str(s) mr_log((s), mr_strlen(s))
#define mr_fail_str(s) mr_fail((s), mr_strlen(s))
#define mr_counter_str(s, delta) mr_counter((s), mr_strlen(s), (delta))

/* A byte string borrowed from the input (or the arena). */
typedef struct {
    const uint8_t *ptr;
    size_t len;
} mr_bytes;

/* ------------------------------------------------------------------------------------
 * Memory: one bump arena from the linker's __heap_base to the end of linear memory,
 * grown by memory.grow, reset when the host starts a call (mr_alloc). memcpy & co. are
 * the bulk-memory instructions (build with -mbulk-memory).
 */

extern unsigned char __heap_base;

static uintptr_t mr__heap_cur; /* the next free byte */
static uintptr_t mr__heap_end; /* the end of linear memory (clamped below 4 GiB) */

#define MR__PAGE 65536u

static inline uintptr_t mr__memory_end(void) {
    size_t pages = __builtin_wasm_memory_size(0);
    return pages >= 65536 ? (uintptr_t)0xFFFF0000u : (uintptr_t)pages * MR__PAGE;
}

static void mr__heap_reset(void) {
    mr__heap_cur = (uintptr_t)&__heap_base;
    mr__heap_end = mr__memory_end();
}

/* Grows memory so that `need` bytes fit from mr__heap_cur on: by at least an eighth of the
 * memory (fewer memory.grow calls as it grows), or exactly what is needed near the limit. */
MR_COLD void mr__heap_grow(size_t need) {
    uint64_t want = (uint64_t)mr__heap_cur + need;
    if (want > 0xFFFF0000u) mr_fail_str("mr.h: out of memory (the arena would pass 4 GiB)");
    size_t have = __builtin_wasm_memory_size(0);
    size_t pages = (size_t)((want - (uint64_t)have * MR__PAGE + MR__PAGE - 1) / MR__PAGE);
    size_t extra = have / 8 > pages ? have / 8 : pages;
    if (have + extra > 65535) extra = pages; /* the arena stays below 0xFFFF0000 */
    if (__builtin_wasm_memory_grow(0, extra) == (size_t)-1 &&
        (extra == pages || __builtin_wasm_memory_grow(0, pages) == (size_t)-1)) {
        mr_fail_str("mr.h: out of memory (memory.grow refused: the task's memory limit)");
    }
    mr__heap_end = mr__memory_end();
}

/* `size` bytes aligned to `align` (a power of two), valid until the call returns. */
MR_INLINE void *mr_arena_alloc(size_t size, size_t align) {
    uintptr_t p = (mr__heap_cur + (align - 1)) & ~(uintptr_t)(align - 1);
    if (MR_UNLIKELY(p > mr__heap_end || size > mr__heap_end - p)) {
        mr__heap_grow(p - mr__heap_cur + size);
    }
    mr__heap_cur = p + size;
    return (void *)p;
}

MR_INLINE void mr__copy(void *dst, const void *src, size_t n) { __builtin_memcpy(dst, src, n); }

MR_INLINE uint64_t mr__load64(const uint8_t *p) {
    uint64_t v;
    __builtin_memcpy(&v, p, 8);
    return v;
}

MR_INLINE uint32_t mr__load32(const uint8_t *p) {
    uint32_t v;
    __builtin_memcpy(&v, p, 4);
    return v;
}

MR_INLINE void mr__store32(uint8_t *p, uint32_t v) { __builtin_memcpy(p, &v, 4); }

/* Equal bytes? 8 at a time, the tail by an overlapping load; no reads outside a or b. */
static inline int mr__equal(const uint8_t *a, const uint8_t *b, size_t n) {
    if (n < 8) {
        for (size_t i = 0; i < n; i++)
            if (a[i] != b[i]) return 0;
        return 1;
    }
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        if (mr__load64(a + i) != mr__load64(b + i)) return 0;
    return i == n || mr__load64(a + n - 8) == mr__load64(b + n - 8);
}

/* ------------------------------------------------------------------------------------
 * The output buffer: map records or reduce values, at the top of the arena when it can
 * be (then it grows in place).
 */

static uint8_t *mr__out;
static size_t mr__out_len, mr__out_cap;

MR_COLD void mr__out_grow(size_t more) {
    size_t need = mr__out_len + more;
    if (need < mr__out_len) mr_fail_str("mr.h: output over 4 GiB");
    size_t cap = mr__out_cap * 2 > need ? mr__out_cap * 2 : need;
    if (cap < 4096) cap = 4096;
    if (mr__out && (uintptr_t)(mr__out + mr__out_cap) == mr__heap_cur) {
        mr_arena_alloc(cap - mr__out_cap, 1); /* extends the buffer in place */
    } else {
        uint8_t *fresh = (uint8_t *)mr_arena_alloc(cap, 8);
        if (mr__out_len) mr__copy(fresh, mr__out, mr__out_len);
        mr__out = fresh;
    }
    mr__out_cap = cap;
}

/* Room for `more` bytes at mr__out + mr__out_len. */
MR_INLINE uint8_t *mr__out_reserve(size_t more) {
    if (MR_UNLIKELY(more > mr__out_cap - mr__out_len)) mr__out_grow(more);
    return mr__out + mr__out_len;
}

/* Which call the instance is in: emitting from a reduce (or vice versa) is a bug. */
enum { MR__IDLE, MR__IN_MAP, MR__IN_REDUCE };
static int mr__phase;

/* ------------------------------------------------------------------------------------
 * Decimal numbers.
 */

/* Writes n in decimal at buf (room for 20 digits); returns the number of digits. */
static inline size_t mr_fmt_u64(char *buf, uint64_t n) {
    char tmp[20];
    size_t k = 0;
    do {
        tmp[k++] = (char)('0' + n % 10);
        n /= 10;
    } while (n);
    for (size_t i = 0; i < k; i++) buf[i] = tmp[k - 1 - i];
    return k;
}

static inline size_t mr__digits(uint64_t n) {
    size_t k = 1;
    while (n >= 10) {
        n /= 10;
        k++;
    }
    return k;
}

/* Parses a decimal u64 as Rust's u64::from_str does (an optional '+', then 1..20 digits,
 * no overflow). Returns 1 and sets *out, or 0. */
static inline int mr_parse_u64(const uint8_t *s, size_t len, uint64_t *out) {
    size_t i = 0;
    if (len > 0 && s[0] == '+') i = 1;
    if (i == len) return 0;
    uint64_t n = 0;
    for (; i < len; i++) {
        uint32_t d = (uint32_t)s[i] - '0';
        if (d > 9) return 0;
        if (n > (UINT64_MAX - d) / 10) return 0;
        n = n * 10 + d;
    }
    *out = n;
    return 1;
}

/* ------------------------------------------------------------------------------------
 * Words: the lab's rule, exactly as the Rust SDK's words(). A word is a maximal run of
 * letters, Unicode general category L (Go's unicode.IsLetter; not Nl like U+216B, not
 * marks like U+0301, not digits). Bytes that are not valid UTF-8 (0xC0, 0xFF, lone
 * continuation bytes, overlong forms, surrogates, truncated sequences, > U+10FFFF) are
 * separators, one byte at a time.
 */

/* Is U+cp a letter? A bitmap for the BMP, a binary search of ranges above it. */
static inline int mr_is_letter(uint32_t cp) {
    if (MR_LIKELY(cp < 0x10000)) return (int)(mr_letter_bmp[cp >> 5] >> (cp & 31)) & 1;
    size_t lo = 0, hi = MR_LETTER_ASTRAL_COUNT;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (cp > mr_letter_astral[mid][1]) lo = mid + 1;
        else hi = mid;
    }
    return lo < MR_LETTER_ASTRAL_COUNT && cp >= mr_letter_astral[lo][0];
}

/* Decodes the UTF-8 character at p (p < end): returns its length (1..4) and sets *cp, or
 * returns 0 if the bytes there are not a valid UTF-8 sequence (Rust's str::from_utf8 over
 * the sequence its first byte announces). */
static inline size_t mr_utf8_decode(const uint8_t *p, const uint8_t *end, uint32_t *cp) {
    uint32_t b0 = p[0];
    size_t avail = (size_t)(end - p);
    if (b0 < 0x80) {
        *cp = b0;
        return 1;
    }
    if (b0 < 0xC2) return 0; /* continuation byte, or an overlong 2-byte lead */
    if (b0 < 0xE0) {
        if (avail < 2 || (p[1] & 0xC0) != 0x80) return 0;
        *cp = ((b0 & 0x1F) << 6) | (p[1] & 0x3Fu);
        return 2;
    }
    if (b0 < 0xF0) {
        if (avail < 3) return 0;
        uint32_t b1 = p[1], b2 = p[2];
        uint32_t lo = b0 == 0xE0 ? 0xA0 : 0x80; /* overlong */
        uint32_t hi = b0 == 0xED ? 0x9F : 0xBF; /* surrogates */
        if (b1 < lo || b1 > hi || (b2 & 0xC0) != 0x80) return 0;
        *cp = ((b0 & 0x0F) << 12) | ((b1 & 0x3F) << 6) | (b2 & 0x3F);
        return 3;
    }
    if (b0 < 0xF5) {
        if (avail < 4) return 0;
        uint32_t b1 = p[1], b2 = p[2], b3 = p[3];
        uint32_t lo = b0 == 0xF0 ? 0x90 : 0x80; /* overlong */
        uint32_t hi = b0 == 0xF4 ? 0x8F : 0xBF; /* > U+10FFFF */
        if (b1 < lo || b1 > hi || (b2 & 0xC0) != 0x80 || (b3 & 0xC0) != 0x80) return 0;
        *cp = ((b0 & 0x07) << 18) | ((b1 & 0x3F) << 12) | ((b2 & 0x3F) << 6) | (b3 & 0x3F);
        return 4;
    }
    return 0;
}

/* An ASCII letter? (Bytes >= 0x80 are not: (b | 0x20) - 'a' is then >= 0x3F.) */
#define MR__ASCII_LETTER(b) ((uint32_t)(((b) | 0x20u) - 'a') < 26u)

/* The non-ASCII character at p (*p >= 0x80): its length if it is a letter, minus its
 * length if it is a valid non-letter, -1 if it is not valid UTF-8. */
MR_NOINLINE int mr__classify_nonascii(const uint8_t *p, const uint8_t *end) {
    uint32_t cp;
    size_t n = mr_utf8_decode(p, end, &cp);
    if (n == 0) return -1;
    return mr_is_letter(cp) ? (int)n : -(int)n;
}

/* Iterator over the words of a buffer; the words point into it. */
typedef struct {
    const uint8_t *p, *end;
} mr_words;

static inline mr_words mr_words_of(const void *contents, size_t len) {
    mr_words it = {(const uint8_t *)contents, (const uint8_t *)contents + len};
    return it;
}

/* The next word into *word, returning 1; 0 at the end. */
MR_INLINE int mr_words_next(mr_words *it, mr_bytes *word) {
    const uint8_t *p = it->p, *end = it->end, *start;
    /* Separators. */
    for (;;) {
        if (MR_UNLIKELY(p == end)) {
            it->p = p;
            return 0;
        }
        uint32_t b = *p;
        if (MR__ASCII_LETTER(b)) {
            start = p++;
            break;
        }
        if (MR_LIKELY(b < 0x80)) {
            p++;
            continue;
        }
        int k = mr__classify_nonascii(p, end);
        if (k > 0) {
            start = p;
            p += k;
            break;
        }
        p += -k;
    }
    /* Letters. */
    while (p != end) {
        uint32_t b = *p;
        if (MR__ASCII_LETTER(b)) {
            p++;
            continue;
        }
        if (MR_LIKELY(b < 0x80)) break;
        int k = mr__classify_nonascii(p, end);
        if (k <= 0) break;
        p += k;
    }
    it->p = p;
    word->ptr = start;
    word->len = (size_t)(p - start);
    return 1;
}

/* ------------------------------------------------------------------------------------
 * Map output.
 */

/* Emits one (key, value) record. Keys and values must be UTF-8 (the host checks). */
static inline void mr_emit(const void *key, size_t key_len, const void *value, size_t value_len) {
    if (MR_UNLIKELY(mr__phase != MR__IN_MAP)) mr_fail_str("mr_emit called outside a map");
    if (MR_UNLIKELY(key_len > SIZE_MAX - 8 - value_len)) mr_fail_str("mr_emit: a record over 4 GiB");
    uint8_t *at = mr__out_reserve(8 + key_len + value_len);
    mr__store32(at, (uint32_t)key_len);
    mr__copy(at + 4, key, key_len);
    at += 4 + key_len;
    mr__store32(at, (uint32_t)value_len);
    mr__copy(at + 4, value, value_len);
    mr__out_len += 8 + key_len + value_len;
}

/* ------------------------------------------------------------------------------------
 * The counting combiner: mr_counts_add(key, len, delta) adds to key's count; when the map
 * returns, the SDK emits one record per distinct key, its value the count in decimal
 * (after any records from mr_emit). Open addressing with linear probing; each 32-byte
 * slot holds the key's first 16 bytes (zero-padded: a short key is compared and emitted
 * from the slot itself), its length, a pointer to longer keys' bytes in the arena, and
 * the count. Nothing is allocated per occurrence; a new key longer than 16 bytes costs
 * one bump of the arena.
 */

typedef struct {
    uint64_t p0, p1;   /* the key's first 16 bytes, zero-padded */
    uint32_t len1;     /* the key's length + 1; 0 = an empty slot */
    uint32_t key;      /* the key's bytes (for keys over 16 bytes) */
    uint64_t count;
} mr__slot;

static mr__slot *mr__slots;
static uint32_t mr__slots_mask, mr__slots_used, mr__slots_shift;

#define MR__K1 0x9e3779b97f4a7c15ull
#define MR__K2 0xc2b2ae3d27d4eb4full

MR_INLINE uint64_t mr__rotl(uint64_t x, unsigned r) { return (x << r) | (x >> (64 - r)); }

/* The hash of a key from its prefix; keys over 16 bytes mix in the rest (8 bytes at a
 * time, the tail by an overlapping load: no read past the key). */
MR_INLINE uint64_t mr__key_hash(uint64_t p0, uint64_t p1, const uint8_t *key, size_t len) {
    uint64_t h = ((p0 ^ mr__rotl((uint64_t)len, 56)) * MR__K1) ^ (p1 * MR__K2);
    if (MR_UNLIKELY(len > 16)) {
        size_t i = 16;
        for (; i + 8 <= len; i += 8) h = (mr__rotl(h, 5) ^ mr__load64(key + i)) * 0x517cc1b727220a95ull;
        if (i < len) h = (mr__rotl(h, 5) ^ mr__load64(key + len - 8)) * 0x517cc1b727220a95ull;
    }
    return (h ^ (h >> 32)) * MR__K2;
}

MR_INLINE const uint8_t *mr__slot_key(const mr__slot *s) {
    return s->len1 - 1 <= 16 ? (const uint8_t *)&s->p0 : (const uint8_t *)(uintptr_t)s->key;
}

static void mr__slots_init(uint32_t n) {
    mr__slots = (mr__slot *)mr_arena_alloc((size_t)n * sizeof(mr__slot), 64);
    __builtin_memset(mr__slots, 0, (size_t)n * sizeof(mr__slot));
    mr__slots_mask = n - 1;
    mr__slots_shift = 64 - (uint32_t)__builtin_ctz(n);
}

MR_COLD void mr__slots_grow(void) {
    mr__slot *old = mr__slots;
    uint32_t n = mr__slots_mask + 1;
    if (n >= (1u << 26)) mr_fail_str("mr.h: over 50 million distinct keys in one map");
    mr__slots_init(n * 2); /* the old table stays in the arena, unused */
    for (uint32_t i = 0; i < n; i++) {
        const mr__slot *s = &old[i];
        if (!s->len1) continue;
        uint64_t h = mr__key_hash(s->p0, s->p1, mr__slot_key(s), s->len1 - 1);
        uint32_t j = (uint32_t)(h >> mr__slots_shift);
        while (mr__slots[j].len1) j = (j + 1) & mr__slots_mask;
        mr__slots[j] = *s;
    }
}

MR_COLD void mr__counts_insert(mr__slot *s, uint64_t p0, uint64_t p1, const uint8_t *key,
                               size_t len, uint64_t delta) {
    if (mr__phase != MR__IN_MAP) mr_fail_str("mr_counts_add called outside a map");
    if (len >= 0xFFFFFFFFu) mr_fail_str("mr_counts_add: a key over 4 GiB");
    uint32_t stored = 0;
    if (len > 16) {
        uint8_t *copy = (uint8_t *)mr_arena_alloc(len, 1);
        mr__copy(copy, key, len);
        stored = (uint32_t)(uintptr_t)copy;
    }
    s->p0 = p0;
    s->p1 = p1;
    s->len1 = (uint32_t)len + 1;
    s->key = stored;
    s->count = delta;
    if (++mr__slots_used * 4 > (mr__slots_mask + 1) * 3) mr__slots_grow();
}

/* A key's first 16 bytes, zero-padded, for a key within 16 bytes of the end of memory. */
MR_COLD void mr__prefix_at_end(const uint8_t *key, size_t len, uint64_t *p0, uint64_t *p1) {
    uint8_t tmp[16] = {0};
    for (size_t i = 0; i < len && i < 16; i++) tmp[i] = key[i];
    *p0 = mr__load64(tmp);
    *p1 = mr__load64(tmp + 8);
}

/* The first 16 bytes of key, zero-padded. Reads 16 bytes whatever the length (the input
 * has 16 bytes of padding), never past the end of memory. */
MR_INLINE void mr__prefix(const uint8_t *key, size_t len, uint64_t *p0, uint64_t *p1) {
    uint64_t a, b;
    if (MR_LIKELY((uintptr_t)key <= mr__heap_end - 16)) {
        a = mr__load64(key);
        b = mr__load64(key + 8);
    } else {
        mr__prefix_at_end(key, len, &a, &b);
    }
    a = len >= 8 ? a : a & ((1ull << (8 * len)) - 1);
    b = len >= 16 ? b : len <= 8 ? 0 : b & ((1ull << (8 * (len - 8))) - 1);
    *p0 = a;
    *p1 = b;
}

/* Adds delta to key's count (the key must be UTF-8; words are). Only in a map. */
MR_INLINE void mr_counts_add(const void *key_, size_t len, uint64_t delta) {
    const uint8_t *key = (const uint8_t *)key_;
    uint64_t p0, p1;
    mr__prefix(key, len, &p0, &p1);
    uint64_t h = mr__key_hash(p0, p1, key, len);
    uint32_t len1 = (uint32_t)len + 1;
    uint32_t i = (uint32_t)(h >> mr__slots_shift);
    for (;;) {
        mr__slot *s = &mr__slots[i];
        if (s->len1 == len1 && s->p0 == p0 && s->p1 == p1 &&
            (len <= 16 || mr__equal((const uint8_t *)(uintptr_t)s->key + 16, key + 16, len - 16))) {
            s->count += delta;
            return;
        }
        if (!s->len1) {
            mr__counts_insert(s, p0, p1, key, len, delta);
            return;
        }
        i = (i + 1) & mr__slots_mask;
    }
}

/* The number of distinct keys counted so far in this map. */
static inline size_t mr_counts_len(void) { return mr__slots_used; }

/* Emits a record per counted key and empties the table. */
static void mr__counts_drain(void) {
    if (!mr__slots_used) return;
    size_t total = 0;
    for (uint32_t i = 0; i <= mr__slots_mask; i++) {
        const mr__slot *s = &mr__slots[i];
        if (s->len1) total += 8 + (s->len1 - 1) + mr__digits(s->count);
    }
    uint8_t *at = mr__out_reserve(total);
    for (uint32_t i = 0; i <= mr__slots_mask; i++) {
        const mr__slot *s = &mr__slots[i];
        if (!s->len1) continue;
        uint32_t len = s->len1 - 1;
        mr__store32(at, len);
        mr__copy(at + 4, mr__slot_key(s), len);
        at += 4 + len;
        uint32_t digits = (uint32_t)mr_fmt_u64((char *)at + 4, s->count);
        mr__store32(at, digits);
        at += 4 + digits;
    }
    mr__out_len += total;
    mr__slots_used = 0;
}

/* ------------------------------------------------------------------------------------
 * Reduce input and output.
 */

/* A key's values: mr_values_next() yields them in the host's (unspecified) order. Copy
 * the struct to walk them again. */
typedef struct {
    const uint8_t *p;
    uint32_t left;
} mr_values;

static inline uint32_t mr_values_len(const mr_values *v) { return v->left; }

MR_INLINE int mr_values_next(mr_values *v, mr_bytes *value) {
    if (!v->left) return 0;
    uint32_t len = mr__load32(v->p);
    value->ptr = v->p + 4;
    value->len = len;
    v->p += 4 + len;
    v->left--;
    return 1;
}

/* Appends bytes to the reduce's output value (only inside a reduce). */
static inline void mr_value(const void *bytes, size_t len) {
    if (MR_UNLIKELY(mr__phase != MR__IN_REDUCE)) mr_fail_str("mr_value called outside a reduce");
    uint8_t *at = mr__out_reserve(len);
    mr__copy(at, bytes, len);
    mr__out_len += len;
}

/* Appends n in decimal to the reduce's output value. */
static inline void mr_value_u64(uint64_t n) {
    char buf[20];
    mr_value(buf, mr_fmt_u64(buf, n));
}

MR_COLD void mr__bad_count(const mr_bytes *v) {
    char msg[160];
    size_t k = 0;
    const char *a = "count \"", *b = "\" is not a decimal number";
    while (*a) msg[k++] = *a++;
    size_t n = v->len < 96 ? v->len : 96;
    mr__copy(msg + k, v->ptr, n);
    k += n;
    if (n < v->len) {
        msg[k++] = '.';
        msg[k++] = '.';
        msg[k++] = '.';
    }
    while (*b) msg[k++] = *b++;
    mr_fail(msg, k);
}

/* The sum of decimal counts (wrapping, as the Rust SDK's release build); fails the task
 * on a value that is not a decimal number. Does not consume *values. */
static inline uint64_t mr_sum_counts(const mr_values *values) {
    mr_values it = *values;
    mr_bytes v;
    uint64_t sum = 0, n;
    while (mr_values_next(&it, &v)) {
        if (!mr_parse_u64(v.ptr, v.len, &n)) mr__bad_count(&v);
        sum += n;
    }
    return sum;
}

/* ------------------------------------------------------------------------------------
 * The exports' implementation (MR_APP calls these).
 */

typedef void (*mr_map_fn)(const char *name, size_t name_len, const uint8_t *contents, size_t len);
typedef void (*mr_reduce_fn)(const char *key, size_t key_len, mr_values *values);

static uint8_t *mr__input;
static size_t mr__input_len;

/* mr_alloc: a new call begins; everything from the previous one is dropped. */
static int32_t mr__rt_alloc(int32_t len) {
    if (len < 0) mr_fail_str("mr_alloc: negative length");
    mr__heap_reset();
    mr__out = 0;
    mr__out_len = mr__out_cap = 0;
    mr__slots = 0;
    mr__slots_used = 0;
    mr__phase = MR__IDLE;
    /* 16 more bytes: the combiner reads keys 16 bytes at a time. */
    mr__input = (uint8_t *)mr_arena_alloc((size_t)len + 16, 16);
    mr__input_len = (size_t)len;
    return (int32_t)(uintptr_t)mr__input;
}

static void mr__check_input(int32_t ptr, int32_t len) {
    if ((uintptr_t)(uint32_t)ptr != (uintptr_t)mr__input || (size_t)(uint32_t)len != mr__input_len)
        mr_fail_str("the host passed a buffer other than the one from mr_alloc");
}

MR_COLD void mr__malformed(const char *what) {
    char msg[96];
    size_t k = 0;
    const char *a = "malformed input from the host: truncated ";
    while (*a) msg[k++] = *a++;
    while (*what && k < sizeof msg) msg[k++] = *what++;
    mr_fail(msg, k);
}

static inline int64_t mr__pack(void) {
    return (int64_t)(((uint64_t)(uintptr_t)mr__out << 32) | (uint64_t)mr__out_len);
}

MR_INLINE int64_t mr__rt_map(int32_t ptr, int32_t len, mr_map_fn map) {
    mr__check_input(ptr, len);
    const uint8_t *in = mr__input;
    size_t n = mr__input_len;
    if (n < 4) mr__malformed("input name length");
    uint32_t name_len = mr__load32(in);
    if (name_len > n - 4) mr__malformed("input name");
    mr__phase = MR__IN_MAP;
    mr__slots_init(4096);
    map((const char *)in + 4, name_len, in + 4 + name_len, n - 4 - name_len);
    mr__counts_drain();
    mr__phase = MR__IDLE;
    return mr__pack();
}

MR_INLINE int64_t mr__rt_reduce(int32_t ptr, int32_t len, mr_reduce_fn reduce) {
    mr__check_input(ptr, len);
    const uint8_t *p = mr__input, *end = mr__input + mr__input_len;
    mr__phase = MR__IN_REDUCE;
    while (p != end) {
        /* The group: a key, then its values; checked before the app sees any of it. */
        if (end - p < 4) mr__malformed("key length");
        uint32_t key_len = mr__load32(p);
        if (key_len > (size_t)(end - p) - 4) mr__malformed("key");
        const char *key = (const char *)p + 4;
        p += 4 + key_len;
        if (end - p < 4) mr__malformed("value count");
        mr_values values = {p + 4, mr__load32(p)};
        p += 4;
        for (uint32_t i = 0; i < values.left; i++) {
            if (end - p < 4) mr__malformed("value length");
            uint32_t vlen = mr__load32(p);
            if (vlen > (size_t)(end - p) - 4) mr__malformed("value");
            p += 4 + vlen;
        }
        /* Its output value: a length patched once the app has written the bytes. */
        size_t at = mr__out_len;
        mr__out_reserve(4);
        mr__out_len += 4;
        reduce(key, key_len, &values);
        mr__store32(mr__out + at, (uint32_t)(mr__out_len - at - 4));
    }
    mr__phase = MR__IDLE;
    return mr__pack();
}

/* Defines the module's exports around the app's map and reduce functions. */
#define MR_APP(map_fn, reduce_fn)                                                               \
    __attribute__((export_name("mr_abi_version"))) int32_t mr_abi_version(void) {              \
        return MR_ABI_VERSION;                                                                  \
    }                                                                                           \
    __attribute__((export_name("mr_alloc"))) int32_t mr_alloc(int32_t len) {                    \
        return mr__rt_alloc(len);                                                               \
    }                                                                                           \
    __attribute__((export_name("mr_map"))) int64_t mr_map(int32_t ptr, int32_t len) {          \
        return mr__rt_map(ptr, len, (map_fn));                                                  \
    }                                                                                           \
    __attribute__((export_name("mr_reduce"))) int64_t mr_reduce(int32_t ptr, int32_t len) {    \
        return mr__rt_reduce(ptr, len, (reduce_fn));                                            \
    }

/* ------------------------------------------------------------------------------------
 * memcpy & co., should the compiler emit calls to them (it does for struct copies and
 * recognised loops). With -mbulk-memory they are the memory.copy / memory.fill
 * instructions; weak, so that an app may bring its own.
 */

__attribute__((weak)) void *memcpy(void *dst, const void *src, size_t n) {
    __builtin_memcpy(dst, src, n);
    return dst;
}
__attribute__((weak)) void *memmove(void *dst, const void *src, size_t n) {
    __builtin_memmove(dst, src, n);
    return dst;
}
__attribute__((weak)) void *memset(void *dst, int c, size_t n) {
    __builtin_memset(dst, c, n);
    return dst;
}
__attribute__((weak, no_builtin("memcmp", "bcmp"))) int memcmp(const void *a_, const void *b_, size_t n) {
    const unsigned char *a = (const unsigned char *)a_, *b = (const unsigned char *)b_;
    for (size_t i = 0; i < n; i++)
        if (a[i] != b[i]) return a[i] < b[i] ? -1 : 1;
    return 0;
}

#if !defined(__wasm_bulk_memory__)
#error "build with -mbulk-memory (apps-wasm/c/build.sh does): memcpy and memset are its instructions"
#endif

#endif /* MR_H */
