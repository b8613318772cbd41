//! Hostile app: a map that tries to read a file of the worker's machine. The module has
//! no file system (no WASI), so this must fail, and the panic says how.

use mr_app_sdk::{Emitter, mr_app};

fn map(_name: &str, _contents: &[u8], _out: &mut Emitter) {
    match std::fs::read("/etc/passwd") {
        Ok(bytes) => panic!("open_file app: read {} bytes of /etc/passwd", bytes.len()),
        Err(e) => panic!("open_file app: cannot read /etc/passwd: {e}"),
    }
}

fn reduce(_key: &str, values: &[&str]) -> String {
    values.len().to_string()
}

mr_app!(map = map, reduce = reduce);
