//! Figure 12: how a map's records should cross the component boundary. The same Python
//! map (wc-py's words and `Counter`) returns them either as mr's flat buffer
//! (`apps-wasm/wit/app.wit`: `list<u8>`, the lengths packed by `mrapp` in Python) or as
//! a WIT `list<tuple<list<u8>, list<u8>>>` (`bench/wit/tuples`, lowered by
//! componentize-py's runtime and lifted by wasmtime into one `Vec` per key and value).
//!
//! Both run here in one engine with the same configuration, each call on a fresh
//! instance as the worker makes one per map call, and are timed from the call to the
//! records in hand on the host: for the flat buffer, the walk over it that the worker
//! does too. Both sides must return the same records.

use std::time::Instant;

use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine, Store};

mod flat {
    wasmtime::component::bindgen!({ path: "../apps-wasm/wit", world: "app" });
}

mod tuples {
    wasmtime::component::bindgen!({ path: "wit/tuples", world: "app" });
}

/// The host side of both worlds: logs and counters are dropped; `fail` is an error.
#[derive(Default)]
struct Host;

impl flat::mapreduce::app::host::Host for Host {
    fn log(&mut self, _: String) {}
    fn fail(&mut self, message: String) {
        panic!("the app failed: {message}");
    }
    fn counter(&mut self, _: String, _: u64) {}
}

impl tuples::mapreduce::bench_tuples::host::Host for Host {
    fn log(&mut self, _: String) {}
    fn fail(&mut self, message: String) {
        panic!("the app failed: {message}");
    }
    fn counter(&mut self, _: String, _: u64) {}
}

/// One input's timings, in seconds per map call: (flat, tuples), `runs` samples each,
/// interleaved.
pub struct Samples {
    pub flat: Vec<f64>,
    pub tuples: Vec<f64>,
    pub records: usize,
}

/// Compiles both apps and times `runs` map calls of each over `contents`.
pub fn measure(
    flat_wasm: &[u8],
    tuples_wasm: &[u8],
    name: &str,
    contents: &[u8],
    runs: usize,
) -> wasmtime::Result<Samples> {
    let mut config = Config::new();
    config.wasm_component_model(true);
    let engine = Engine::new(&config)?;

    let mut flat_linker = Linker::<Host>::new(&engine);
    flat::mapreduce::app::host::add_to_linker::<Host, HasSelf<Host>>(&mut flat_linker, |h| h)?;
    let flat_pre =
        flat::AppPre::new(flat_linker.instantiate_pre(&Component::new(&engine, flat_wasm)?)?)?;
    let mut tuples_linker = Linker::<Host>::new(&engine);
    tuples::mapreduce::bench_tuples::host::add_to_linker::<Host, HasSelf<Host>>(
        &mut tuples_linker,
        |h| h,
    )?;
    let tuples_pre = tuples::AppPre::new(
        tuples_linker.instantiate_pre(&Component::new(&engine, tuples_wasm)?)?,
    )?;

    let mut samples = Samples {
        flat: Vec::new(),
        tuples: Vec::new(),
        records: 0,
    };
    for _ in 0..runs {
        let mut store = Store::new(&engine, Host);
        let app = flat_pre.instantiate(&mut store)?;
        let started = Instant::now();
        let buf = app.call_map(&mut store, name, contents)?;
        let mut flat_records = records_of(&buf)?;
        samples.flat.push(started.elapsed().as_secs_f64());

        let mut store = Store::new(&engine, Host);
        let app = tuples_pre.instantiate(&mut store)?;
        let started = Instant::now();
        let got = app.call_map(&mut store, name, contents)?;
        samples.tuples.push(started.elapsed().as_secs_f64());

        let mut tuple_records: Vec<(&[u8], &[u8])> =
            got.iter().map(|(k, v)| (&k[..], &v[..])).collect();
        flat_records.sort_unstable();
        tuple_records.sort_unstable();
        if flat_records != tuple_records {
            wasmtime::bail!(
                "the two apps returned different records ({} and {})",
                flat_records.len(),
                tuple_records.len()
            );
        }
        samples.records = flat_records.len();
    }
    Ok(samples)
}

/// The (key, value) records of a flat buffer: `u32 len, key, u32 len, value`, repeated.
fn records_of(mut buf: &[u8]) -> wasmtime::Result<Vec<(&[u8], &[u8])>> {
    let mut records = Vec::new();
    while !buf.is_empty() {
        let key = take(&mut buf)?;
        let value = take(&mut buf)?;
        records.push((key, value));
    }
    Ok(records)
}

fn take<'a>(buf: &mut &'a [u8]) -> wasmtime::Result<&'a [u8]> {
    let Some((len, rest)) = buf.split_first_chunk::<4>() else {
        wasmtime::bail!("a truncated record length");
    };
    let Some((bytes, rest)) = rest.split_at_checked(u32::from_le_bytes(*len) as usize) else {
        wasmtime::bail!("a truncated record");
    };
    *buf = rest;
    Ok(bytes)
}
