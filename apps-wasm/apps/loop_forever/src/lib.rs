//! Hostile app: a map that never returns. The worker's time limit must end it.

use mr_app_sdk::{Emitter, mr_app};

fn map(_name: &str, _contents: &[u8], _out: &mut Emitter) {
    let mut n = 0u64;
    loop {
        // black_box keeps the loop from being proven side-effect free.
        n = std::hint::black_box(n.wrapping_add(1));
    }
}

fn reduce(_key: &str, values: &[&str]) -> String {
    values.len().to_string()
}

mr_app!(map = map, reduce = reduce);
