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
//! A component imports nothing else: no WASI. Python apps are built with
//! `componentize-py --stub-wasi`, which replaces CPython's WASI imports with stubs that
//! trap, so an app that opens a file or reads the clock fails its task. (Linking an
//! empty WASI through `wasmtime-wasi` worked, but took CI past its 25 minutes together
//! with the rest; see ARCHITECTURE.md.)

use wasmtime::component::{HasSelf, Linker};
use wasmtime::{Engine, Store};

use super::{AppError, Counters, HostState, Limits, classify};

wasmtime::component::bindgen!({
    path: "../apps-wasm/wit",
    world: "app",
    imports: { default: trappable },
});

/// The component linker: the world's host interface, nothing else.
pub(super) fn linker(engine: &Engine) -> wasmtime::Result<Linker<HostState>> {
    let mut linker = Linker::new(engine);
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
