//! The lab's jobcount.go: maps take a random 0..300 ms, so that a coordinator that
//! schedules a task twice without cause shows up as extra executions in the logs.

use mr_app_sdk::{Emitter, mr_app, random_u64, sleep_ms};

fn map(_name: &str, _contents: &[u8], out: &mut Emitter) {
    sleep_ms((random_u64() % 300) as u32);
    out.emit("a", "1");
}

fn reduce(_key: &str, values: &[&str]) -> String {
    values.len().to_string()
}

mr_app!(map = map, reduce = reduce);
