//! The lab's early_exit.go: some tasks are much slower than others, so a worker or
//! coordinator that exits before the last task has finished is caught.

use mr_app_sdk::{Emitter, mr_app, sleep_ms};

fn map(name: &str, _contents: &[u8], out: &mut Emitter) {
    if name.contains("sherlock") || name.contains("tom") {
        sleep_ms(3000);
    }
    out.emit(name, "1");
}

fn reduce(key: &str, values: &[&str]) -> String {
    if key.contains("sherlock") {
        sleep_ms(1000);
    }
    values.len().to_string()
}

mr_app!(map = map, reduce = reduce);
