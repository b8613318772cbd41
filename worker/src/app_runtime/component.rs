//! Apps as WebAssembly components of the world `mapreduce:app/app@1.0.0`
//! (`apps-wasm/wit/app.wit`): what componentize-py builds from a Python app, and what
//! any other component toolchain can target.
//!
//! The world mirrors the core-module ABI: `map(name, contents) -> records` and
//! `reduce(groups) -> values`, with the records in the same flat buffers (one
//! `list<u8>` each way, so one copy per call, never one call per record), and the same
//! host functions (`log`, `fail`, `counter`) through the same [`HostState`]. The
//! deadline, memory cap and cancellation are the store's, exactly as for modules.
//!
//! A component built with stubbed WASI (`componentize-py --stub-wasi`, as our Python
//! apps are) imports nothing else. One that imports WASI 0.2 (CPython does without the
//! stubs, for its startup and its standard library) gets [`Wasi`]: no preopened folder
//! (so no file at all), no sockets and no name lookup, no environment or arguments,
//! stdin closed, stdout and stderr discarded, and clocks that do not tell the time (the
//! wall clock stays at 1970-01-01, the monotonic clock advances a nanosecond per
//! reading). Randomness is real: it grants no access to anything. The context is made
//! on a store's first WASI call, so a stubbed app never pays for it.

use wasmtime::component::{HasSelf, Linker, ResourceTable};
use wasmtime::{Engine, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use super::{AppError, Counters, HostState, Limits, classify};

wasmtime::component::bindgen!({
    path: "../apps-wasm/wit",
    world: "app",
    imports: { default: trappable },
});

/// The component linker: the world's host interface and the sandbox's WASI.
pub(super) fn linker(engine: &Engine) -> wasmtime::Result<Linker<HostState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
    mapreduce::app::host::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |s| s)?;
    Ok(linker)
}

impl mapreduce::app::host::Host for HostState {
    fn log(&mut self, message: String) -> wasmtime::Result<()> {
        let mut message = message;
        if message.len() > super::MAX_MESSAGE {
            let mut end = super::MAX_MESSAGE;
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            message.truncate(end);
            message.push_str(" […]");
        }
        HostState::log(self, &message);
        Ok(())
    }

    fn fail(&mut self, message: String) -> wasmtime::Result<()> {
        Err(HostState::fail(self, message))
    }

    fn counter(&mut self, name: String, delta: u64) -> wasmtime::Result<()> {
        HostState::counter(self, name, delta)
    }
}

/// WASI with nothing behind it (see the module's docs), made for a store on first use.
pub(crate) struct Wasi {
    ctx: WasiCtx,
    table: ResourceTable,
}

impl Wasi {
    fn sandbox() -> Self {
        let mut builder = WasiCtxBuilder::new();
        builder
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .wall_clock(StoppedWallClock)
            .monotonic_clock(CountingClock::default());
        Self {
            ctx: builder.build(),
            table: ResourceTable::new(),
        }
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        let wasi = self.wasi.get_or_insert_with(|| Box::new(Wasi::sandbox()));
        WasiCtxView {
            ctx: &mut wasi.ctx,
            table: &mut wasi.table,
        }
    }
}

/// A wall clock that always reads the Unix epoch.
struct StoppedWallClock;

impl wasmtime_wasi::HostWallClock for StoppedWallClock {
    fn resolution(&self) -> std::time::Duration {
        std::time::Duration::from_secs(1)
    }
    fn now(&self) -> std::time::Duration {
        std::time::Duration::ZERO
    }
}

/// A monotonic clock that advances one nanosecond per reading: monotonic, as WASI
/// promises, but it tells nothing about real time.
#[derive(Default)]
struct CountingClock(std::sync::atomic::AtomicU64);

impl wasmtime_wasi::HostMonotonicClock for CountingClock {
    fn resolution(&self) -> u64 {
        1
    }
    fn now(&self) -> u64 {
        self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }
}

/// A compiled component, linked: instances are made from it per task.
#[derive(Clone)]
pub(crate) struct Pre(AppPre<HostState>);

impl Pre {
    /// Links `component`; fails if it needs an import the host does not have, or if its
    /// exports do not have the world's types.
    pub(super) fn new(
        linker: &Linker<HostState>,
        component: &wasmtime::component::Component,
    ) -> wasmtime::Result<Self> {
        AppPre::new(linker.instantiate_pre(component)?).map(Self)
    }

    pub(super) fn engine(&self) -> &Engine {
        self.0.engine()
    }
}

/// A live component instance and its store: one map call, or a reduce task's batches.
pub(super) struct Session {
    store: Store<HostState>,
    app: App,
}

impl Session {
    /// Instantiates; on failure the store comes back with the error, for [`classify`].
    pub(super) fn new(
        pre: &Pre,
        mut store: Store<HostState>,
    ) -> Result<Self, (Store<HostState>, wasmtime::Error)> {
        match pre.0.instantiate(&mut store) {
            Ok(app) => Ok(Self { store, app }),
            Err(e) => Err((store, e)),
        }
    }

    pub(super) fn state(&self) -> &HostState {
        self.store.data()
    }

    pub(super) fn take_counters(&mut self) -> Counters {
        std::mem::take(&mut self.store.data_mut().counters)
    }

    pub(super) fn map(
        &mut self,
        limits: &Limits,
        name: &str,
        contents: &[u8],
    ) -> Result<Vec<u8>, AppError> {
        let result = self.app.call_map(&mut self.store, name, contents);
        result.map_err(|e| self.error(limits, e))
    }

    pub(super) fn reduce(&mut self, limits: &Limits, groups: &[u8]) -> Result<Vec<u8>, AppError> {
        let result = self.app.call_reduce(&mut self.store, groups);
        result.map_err(|e| self.error(limits, e))
    }

    fn error(&mut self, limits: &Limits, e: wasmtime::Error) -> AppError {
        let app = self.store.data().app.clone();
        classify(&app, limits, &mut self.store, e)
    }
}
