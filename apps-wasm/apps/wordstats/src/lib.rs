//! Word count with user counters (Google MapReduce §4.9): the output is `wc`'s, and each
//! map call adds its split's `lines`, `words` and `empty_lines` to the job's counters, each
//! reduce call its `distinct_words`. Counted once per committed task, so the job's totals
//! equal the input's, whatever attempts failed or ran twice.

use mr_app_sdk::{Emitter, counter, mr_app, words};

fn map(_name: &str, contents: &[u8], out: &mut Emitter) {
    let (mut lines, mut empty, mut n_words) = (0u64, 0u64, 0u64);
    for line in contents.split_inclusive(|&b| b == b'\n') {
        lines += 1;
        if line == b"\n" || line == b"\r\n" {
            empty += 1;
        }
    }
    for w in words(contents) {
        n_words += 1;
        out.count(w, 1);
    }
    counter("lines", lines);
    counter("words", n_words);
    counter("empty_lines", empty);
}

fn reduce(_key: &str, counts: &[&str]) -> String {
    counter("distinct_words", 1);
    mr_app_sdk::sum_counts(counts).to_string()
}

mr_app!(map = map, reduce = reduce, combine = mr_app_sdk::add_count);
