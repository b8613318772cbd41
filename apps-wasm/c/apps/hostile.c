/* Hostile app for the worker's sandbox tests: word count (as wc.c), except that a map
 * whose split contains the text "OOB" stores outside the module's linear memory. Wasm
 * bounds-checks every access, so the store traps and the worker reports the task as
 * failed instead of anything outside the sandbox being touched. */
#include "mr.h"

static int contains_oob(const uint8_t *s, size_t len) {
    for (size_t i = 0; i + 3 <= len; i++)
        if (s[i] == 'O' && s[i + 1] == 'O' && s[i + 2] == 'B') return 1;
    return 0;
}

static void hostile_map(const char *name, size_t name_len, const uint8_t *contents, size_t len) {
    (void)name;
    (void)name_len;
    if (contains_oob(contents, len)) {
        mr_log_str("hostile: the split contains OOB; storing to 0xFFFFFFF0");
        /* 16 bytes below 4 GiB: past the end of any memory this module has. */
        *(volatile uint32_t *)(uintptr_t)0xFFFFFFF0u = 0xDEADBEEF;
        mr_fail_str("hostile: the out-of-bounds store did not trap");
    }
    mr_words words = mr_words_of(contents, len);
    mr_bytes w;
    while (mr_words_next(&words, &w)) mr_counts_add(w.ptr, w.len, 1);
}

static void hostile_reduce(const char *key, size_t key_len, mr_values *counts) {
    (void)key;
    (void)key_len;
    mr_value_u64(mr_sum_counts(counts));
}

MR_APP(hostile_map, hostile_reduce)
