//! Slow maps (1 s each): with two workers, two map tasks must overlap in time.

use mr_app_sdk::{Emitter, mr_app, sleep_ms};

fn map(name: &str, _contents: &[u8], out: &mut Emitter) {
    sleep_ms(1000);
    out.emit("m", name);
}

fn reduce(_key: &str, values: &[&str]) -> String {
    values.len().to_string()
}

mr_app!(map = map, reduce = reduce);
