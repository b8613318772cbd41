//! Word count, as the lab's wc.go: key = word, value = its number of occurrences.
//! The combiner sums counts inside the map, so a split yields one record per word.

use mr_app_sdk::{Emitter, mr_app, words};

fn map(_name: &str, contents: &[u8], out: &mut Emitter) {
    for w in words(contents) {
        out.count(w, 1);
    }
}

// Sums rather than counting values: with the combiner a value is a partial count.
fn reduce(_key: &str, counts: &[&str]) -> String {
    mr_app_sdk::sum_counts(counts).to_string()
}

mr_app!(map = map, reduce = reduce, combine = mr_app_sdk::add_count);
