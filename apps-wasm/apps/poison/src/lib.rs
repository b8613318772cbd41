//! Bad records, for skipping tests: word count (as `wc`, so `wc` is its reference on clean
//! input) that panics on any line containing `POISON` in map, and on the key `poison` in
//! reduce.

use mr_app_sdk::{Emitter, mr_app, words};

fn map(name: &str, contents: &[u8], out: &mut Emitter) {
    for line in contents.split(|&b| b == b'\n') {
        if line.windows(6).any(|w| w == b"POISON") {
            panic!("poison app: a poisoned line in {name}");
        }
        for w in words(line) {
            out.count(w, 1);
        }
    }
}

fn reduce(key: &str, counts: &[&str]) -> String {
    if key == "poison" {
        panic!("poison app: the poisoned key");
    }
    mr_app_sdk::sum_counts(counts).to_string()
}

mr_app!(map = map, reduce = reduce, combine = mr_app_sdk::add_count);
