//! Hostile app: a map that panics, to check the host reports the app's own message.

use mr_app_sdk::{Emitter, mr_app};

fn map(name: &str, _contents: &[u8], _out: &mut Emitter) {
    panic!("trap app: deliberate failure on {name}");
}

fn reduce(_key: &str, values: &[&str]) -> String {
    values.len().to_string()
}

mr_app!(map = map, reduce = reduce);
