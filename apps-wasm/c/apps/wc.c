/* Word count, as the lab's wc.go and the Rust apps-wasm/apps/wc: key = word, value = its
 * number of occurrences. The map counts inside the guest (mr_counts_add), so a split
 * yields one record per distinct word with its count; the reduce sums those counts. */
#include "mr.h"

static void wc_map(const char *name, size_t name_len, const uint8_t *contents, size_t len) {
    (void)name;
    (void)name_len;
    mr_words words = mr_words_of(contents, len);
    mr_bytes w;
    while (mr_words_next(&words, &w)) mr_counts_add(w.ptr, w.len, 1);
}

/* Sums rather than counting values: with the combiner a value is a partial count. */
static void wc_reduce(const char *key, size_t key_len, mr_values *counts) {
    (void)key;
    (void)key_len;
    mr_value_u64(mr_sum_counts(counts));
}

MR_APP(wc_map, wc_reduce)
