//! Slow reduces (1 s per key): with two workers, two reduce tasks must overlap in time.
//! Ten keys, so that every reduce partition is likely to get some.

use mr_app_sdk::{Emitter, mr_app, sleep_ms};

fn map(_name: &str, _contents: &[u8], out: &mut Emitter) {
    for key in ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j"] {
        out.emit(key, "1");
    }
}

fn reduce(_key: &str, values: &[&str]) -> String {
    sleep_ms(1000);
    values.len().to_string()
}

mr_app!(map = map, reduce = reduce);
