//! The lab's crash.go: nocrash's output, but every call may fail (1 in 5) or stall for
//! up to 2 s (1 in 5), to show that the coordinator re-runs failed and slow tasks.

use mr_app_sdk::{Emitter, mr_app, random_u64, sleep_ms};

fn maybe_crash() {
    let r = random_u64();
    match r % 5 {
        0 => panic!("crash app: simulated crash"),
        1 => sleep_ms(((r >> 8) % 2000) as u32),
        _ => {}
    }
}

fn map(name: &str, contents: &[u8], out: &mut Emitter) {
    maybe_crash();
    out.emit("a", name);
    out.emit("b", &name.len().to_string());
    out.emit("c", &contents.len().to_string());
    out.emit("d", "xyzzy");
}

fn reduce(_key: &str, values: &[&str]) -> String {
    maybe_crash();
    let mut values = values.to_vec();
    values.sort_unstable();
    values.join(" ")
}

mr_app!(map = map, reduce = reduce);
