//! Hostile app: a map that emits 1 KiB values without end, until its memory runs out.

use mr_app_sdk::{Emitter, mr_app};

fn map(_name: &str, _contents: &[u8], out: &mut Emitter) {
    let value = "x".repeat(1024);
    loop {
        out.emit("k", &value);
    }
}

fn reduce(_key: &str, values: &[&str]) -> String {
    values.len().to_string()
}

mr_app!(map = map, reduce = reduce);
