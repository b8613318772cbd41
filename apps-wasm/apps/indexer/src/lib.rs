//! Inverted index, as the lab's indexer.go: key = word, value = "{n} {doc1,doc2,...}"
//! with the distinct documents containing the word, sorted.

use mr_app_sdk::{Emitter, mr_app, words};

fn map(name: &str, contents: &[u8], out: &mut Emitter) {
    for w in words(contents) {
        out.emit(w, name);
    }
}

// Every value of one map call is the same document, so keeping the first one is the
// dedupe: the split yields each of its distinct words once.
fn keep_first(_key: &str, _doc: &mut String, _same_doc: &str) {}

fn reduce(_key: &str, docs: &[&str]) -> String {
    // A document split into several parts reaches reduce once per part.
    let mut docs = docs.to_vec();
    docs.sort_unstable();
    docs.dedup();
    format!("{} {}", docs.len(), docs.join(","))
}

mr_app!(map = map, reduce = reduce, combine = keep_first);
