//! Hostile app: a map that allocates (and writes) memory until it runs out. The
//! worker's memory limit must end it without hurting the worker.

use mr_app_sdk::{Emitter, mr_app};

fn map(_name: &str, _contents: &[u8], _out: &mut Emitter) {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        let mut block = vec![0u8; 1 << 20];
        for page in block.chunks_mut(4096) {
            page[0] = 1;
        }
        hoard.push(std::hint::black_box(block));
    }
}

fn reduce(_key: &str, values: &[&str]) -> String {
    values.len().to_string()
}

mr_app!(map = map, reduce = reduce);
