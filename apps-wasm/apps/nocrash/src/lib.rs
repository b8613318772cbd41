//! The lab's crash.go without the crashes: a small, fully deterministic output that the
//! crash test compares against.

use mr_app_sdk::{Emitter, mr_app};

fn map(name: &str, contents: &[u8], out: &mut Emitter) {
    out.emit("a", name);
    out.emit("b", &name.len().to_string());
    out.emit("c", &contents.len().to_string());
    out.emit("d", "xyzzy");
}

fn reduce(_key: &str, values: &[&str]) -> String {
    // Sorted, so the output does not depend on the order tasks finished in.
    let mut values = values.to_vec();
    values.sort_unstable();
    values.join(" ")
}

mr_app!(map = map, reduce = reduce);
