//! Runs map/reduce apps: WebAssembly, sandboxed in wasmtime.
//!
//! An app is untrusted code uploaded by a user, in one of two forms
//! (`mr_common::app_interface`):
//! - a core Wasm module with no WASI (Rust and C apps, the fast path): it can touch its
//!   own linear memory and call the functions of import module `"mr"` (`log`, `fail`,
//!   `counter`, `random_u64`, `sleep_ms`), nothing else;
//! - a component of the WIT world `mapreduce:app/app` (Python apps; [`component`]): the
//!   same calls with the same flat record buffers, plus, if it imports it, WASI 0.2 with
//!   no files, sockets, environment or real clock.
//!
//! Each call also gets a wall-clock deadline and a memory cap, in either form, so a looping
//! or hoarding app costs one failed task and never the worker. The byte layouts of the
//! ABI are specified in `apps-wasm/README.md`.
//!
//! Design choices:
//! - One [`wasmtime::Engine`] per worker, with epoch interruption: a background thread
//!   bumps the epoch every [`TICK`], and each store's epoch callback compares the clock
//!   with its deadline. Epochs cost one load and compare per loop back-edge, far less
//!   than fuel metering, and the deadline stays in wall-clock time, as the lab's tasks'.
//! - Compiled apps are cached by their sha256, in memory (a job's thousands of tasks
//!   compile the app once per worker) and on disk ([`cache`], `--cache-dir`: once per
//!   cache folder, not again after a restart; a CPython component takes seconds to
//!   compile).
//! - A map call gets a fresh instance (zeroed memory): no state leaks between tasks, and
//!   a 16 MiB split's garbage is dropped with the instance. A reduce task keeps one
//!   instance for all its batches, because instantiating per key would cost more than
//!   most reduce functions.
//! - Every call is synchronous and may block for up to its time limit (`sleep_ms`
//!   sleeps the thread): async callers run it on a blocking thread, and stop a call they
//!   no longer want with a [`CancelToken`] (checked at every tick, in `sleep_ms` too).
//! - Instances come from wasmtime's pooling allocator: a map task's fresh instance reuses
//!   a slot's mapping instead of mmap/munmap per task, and the pages its predecessor used
//!   (up to `MEMORY_KEEP_RESIDENT`, zeroed in place) instead of faulting them in again.
//! - Errors are classified by what the host saw (its own deadline check, its memory
//!   limiter, the app's `mr.fail`), not by parsing wasmtime's messages.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use wasmtime::{
    Caller, Config, Engine, Extern, InstanceAllocationStrategy, InstancePre, Linker, Memory,
    Module, PoolingAllocationConfig, ResourceLimiter, Store, StoreLimits, StoreLimitsBuilder, Trap,
    TypedFunc, UpdateDeadline,
};

pub mod cache;
pub(crate) mod component;

use mr_common::app_interface::Kind;

/// The app ABI version this host speaks (`mr_abi_version()` must return it).
pub const ABI_VERSION: i32 = 1;

/// How often the epoch advances, hence how late past its deadline a looping app can be.
pub const TICK: Duration = Duration::from_millis(10);

/// The host keeps at most this much of one `mr.log` or `mr.fail` message.
const MAX_MESSAGE: usize = 4096;

/// An instance logging in a loop must not flood the worker's log.
const MAX_LOGS_PER_INSTANCE: u32 = 1000;

/// Instances that may exist at once in one worker: the running task's, plus those of
/// dropped attempts still winding down (each until its time limit at most).
const POOL_SLOTS: u32 = 64;

/// Core instances (and tables, and memories) a component may consist of: a CPython
/// component (componentize-py with stubbed WASI) has 38 core instances.
const CORE_PER_COMPONENT: u32 = 64;

/// Largest table a pooled instance may have: CPython's function table has tens of
/// thousands of entries.
const TABLE_ELEMENTS: usize = 1 << 18;

/// Bytes of each pooled linear memory kept mapped when its instance ends, and zeroed in
/// place (only the pages it touched, where the kernel has PAGEMAP_SCAN) for the next one.
/// Beyond this the memory goes back to the kernel and its next use faults every page in
/// again: with 2 MiB, the ~12,000 page faults of each 16 MiB wc map (its split, the
/// combiner's table, its records: ~48 MiB) were 12% of the map's time (BENCHMARKS.md,
/// "Pooled memory kept resident"). The cost is resident memory: each pool slot an app
/// has used keeps up to this much after its task (zeroed), and a slot is reused by the
/// next instance of the same app, so a worker running one app keeps ~one map's memory.
const MEMORY_KEEP_RESIDENT: usize = 64 << 20;

/// The same for each pooled table.
const TABLE_KEEP_RESIDENT: usize = 2 << 20;

/// Most distinct counter names one task may use, and the longest name.
pub const MAX_COUNTERS: usize = 64;
pub const MAX_COUNTER_NAME: usize = 128;

/// Counter names the app may not use: the built-in counters' prefix.
pub const RESERVED_COUNTER_PREFIX: &str = "mr.";

/// A task's user counters, by name.
pub type Counters = std::collections::BTreeMap<String, u64>;

/// What one task may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Wall-clock time from the start of a map call, or of a reduce session, to its end.
    pub time: Duration,
    /// Cap on the app's linear memory (input and output buffers included).
    pub memory_bytes: u64,
}

/// Stops an app from outside, for an attempt the coordinator no longer wants: once set,
/// the app's next epoch tick ends its call with [`AppError::Cancelled`].
#[derive(Clone, Debug, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// Why an app call failed. Every message names the app.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AppError {
    /// The module is not valid WebAssembly, or not the bytes its hash names.
    #[error("app `{app}`: cannot load the module: {message}")]
    Compile { app: String, message: String },
    /// The module breaks the app ABI: a missing or mistyped export, a forbidden import,
    /// an out-of-bounds pointer or length, malformed output.
    #[error("app `{app}` broke the app ABI: {message}")]
    Abi { app: String, message: String },
    /// The app panicked (the message is the one it passed to `mr.fail`) or trapped.
    #[error("app `{app}` failed: {message}")]
    Trap { app: String, message: String },
    /// The call (or reduce session) ran past its time limit.
    #[error("app `{app}` exceeded its time limit of {limit:?}")]
    TimeLimit { app: String, limit: Duration },
    /// The app tried to grow its memory past the limit.
    #[error("app `{app}` exceeded its memory limit of {limit_bytes} bytes")]
    MemoryLimit { app: String, limit_bytes: u64 },
    /// The call was stopped through its [`CancelToken`]: nobody wants its result.
    #[error("app `{app}` was stopped: its attempt is no longer wanted")]
    Cancelled { app: String },
}

// ---------------------------------------------------------------------------------------
// The runtime and its module cache.

/// Compiles and caches apps. Cheap to clone; clones share the engine and the cache.
#[derive(Clone)]
pub struct AppRuntime {
    engine: Engine,
    linker: Arc<Linker<HostState>>,
    component_linker: Arc<wasmtime::component::Linker<HostState>>,
    cache: Arc<Mutex<HashMap<String, AppModule>>>,
    /// Compiled code on disk, when the worker has a cache folder.
    disk: Option<Arc<cache::DiskCache>>,
    ticker: Arc<Ticker>,
    /// Cache lookups that found the module, and compilations (shared by clones).
    hits: Arc<AtomicU64>,
    misses: Arc<AtomicU64>,
}

/// Owns the epoch thread: it stops when the last runtime or module is dropped.
struct Ticker {
    _stop: mpsc::Sender<()>,
}

impl Ticker {
    fn start(engine: Engine) -> std::io::Result<Self> {
        let (stop, stopped) = mpsc::channel::<()>();
        std::thread::Builder::new()
            .name("mr-wasm-epoch".into())
            .spawn(move || {
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(TICK) {
                    engine.increment_epoch();
                }
            })?;
        Ok(Self { _stop: stop })
    }
}

impl fmt::Debug for AppRuntime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cached = self.cache.lock().map_or(0, |c| c.len());
        f.debug_struct("AppRuntime")
            .field("cached", &cached)
            .finish()
    }
}

impl AppRuntime {
    /// Creates the engine and starts its epoch thread, with compiled apps cached in memory
    /// only. Fails (as `Compile`, app "(runtime)") only if the engine or the thread cannot
    /// be created.
    pub fn new() -> Result<Self, AppError> {
        Self::with_cache_dir(None)
    }

    /// The same, with compiled apps also kept in `cache_dir` (created if missing). A
    /// folder that cannot be used is logged and skipped: the cache saves time, it is never
    /// needed.
    pub fn with_cache_dir(cache_dir: Option<&std::path::Path>) -> Result<Self, AppError> {
        let setup = |message: String| AppError::Compile {
            app: "(runtime)".into(),
            message,
        };
        let mut config = Config::new();
        config.epoch_interruption(true);
        // No memfd-backed memory images: the worker then creates no hidden files, so a full
        // disk (or a file size limit) hits only the task's own writes, with their names.
        config.memory_init_cow(false);
        // Instances come from a small pool of pre-reserved slots, and a slot's first pages
        // (MEMORY_KEEP_RESIDENT) stay mapped and are zeroed in place when it is freed: a
        // task then costs no mmap/munmap (and no TLB shootdown across threads), nor fresh
        // page faults for memory the slot's previous instance used.
        let mut pool = PoolingAllocationConfig::new();
        pool.total_component_instances(POOL_SLOTS)
            .total_core_instances(POOL_SLOTS * 8)
            .total_memories(POOL_SLOTS * 2)
            .total_tables(POOL_SLOTS * 4)
            .max_core_instances_per_component(CORE_PER_COMPONENT)
            .max_memories_per_component(CORE_PER_COMPONENT)
            .max_tables_per_component(CORE_PER_COMPONENT)
            .max_component_instance_size(1 << 20)
            .max_core_instance_size(4 << 20)
            .table_elements(TABLE_ELEMENTS)
            .max_unused_warm_slots(POOL_SLOTS)
            .linear_memory_keep_resident(MEMORY_KEEP_RESIDENT)
            .table_keep_resident(TABLE_KEEP_RESIDENT)
            // Where the kernel has PAGEMAP_SCAN (Linux 6.7+), only the pages a task really
            // touched are zeroed, not the whole resident part of the slot.
            .pagemap_scan(wasmtime::Enabled::Auto);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        // Apps are stripped, so backtraces would be bare function indices: the app's
        // own message (mr.fail) is what helps, and skipping the capture is cheaper.
        config.wasm_backtrace_max_frames(None);
        // Nor a map from machine code back to Wasm offsets (which only backtraces and
        // debuggers read), nor native unwind tables (for native profilers and debuggers;
        // wasmtime walks Wasm frames by frame pointer): both are a large part of a
        // compiled CPython, in the cold compile's peak memory (bench figure 11) and in
        // the cache entry.
        config.generate_address_map(false);
        config.native_unwind_info(false);
        // For profiling only: `MR_WASM_PERFMAP=1` writes /tmp/perf-<pid>.map, so that `perf
        // report` names the apps' functions (see BENCHMARKS.md).
        if std::env::var_os("MR_WASM_PERFMAP").is_some() {
            config.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        let engine = Engine::new(&config).map_err(|e| setup(format!("{e:#}")))?;
        let linker = host_linker(&engine).map_err(|e| setup(format!("{e:#}")))?;
        let component_linker = component::linker(&engine).map_err(|e| setup(format!("{e:#}")))?;
        let ticker = Ticker::start(engine.clone())
            .map_err(|e| setup(format!("cannot start the epoch thread: {e}")))?;
        let disk = cache_dir.and_then(|dir| cache::DiskCache::open(dir, &engine).map(Arc::new));
        Ok(Self {
            engine,
            linker: Arc::new(linker),
            component_linker: Arc::new(component_linker),
            cache: Arc::default(),
            disk,
            hits: Arc::default(),
            misses: Arc::default(),
            ticker: Arc::new(ticker),
        })
    }

    /// Compiles (or returns the cached) app for this content hash. `app` is the app's
    /// name for messages. The bytes must hash to `sha256` (hex): the caches trust the
    /// hash, so a mismatch is refused rather than cached under the wrong name.
    pub fn load(&self, app: &str, sha256: &str, wasm: &[u8]) -> Result<AppModule, AppError> {
        if let Some(module) = self.cached(sha256) {
            return Ok(module.named(app));
        }
        let sha256 = sha256.to_ascii_lowercase();
        let actual = hex::encode(Sha256::digest(wasm));
        if actual != sha256 {
            return Err(AppError::Compile {
                app: app.into(),
                message: format!("the module's sha256 is {actual}, not {sha256}"),
            });
        }
        let kind = mr_common::app_interface::kind(wasm).map_err(|message| AppError::Compile {
            app: app.into(),
            message,
        })?;
        let compile_error = |e: wasmtime::Error| AppError::Compile {
            app: app.into(),
            message: format!("{e:#}"),
        };
        let abi_error = |e: wasmtime::Error| AppError::Abi {
            app: app.into(),
            message: format!("{e:#}"),
        };
        // Valid Wasm (it compiled, or it was compiled before): now the app interface, as
        // the coordinator checks uploads, whose messages say more than a failed link.
        let interface = || {
            mr_common::app_interface::check(wasm)
                .map(|_| ())
                .map_err(|message| AppError::Abi {
                    app: app.into(),
                    message,
                })
        };
        let code = match kind {
            Kind::Module => {
                let module = self
                    .compile(
                        &sha256,
                        kind,
                        || Module::new(&self.engine, wasm),
                        |bytes| {
                            // SAFETY: `bytes` were written by `Module::serialize` of an engine with
                            // this configuration (the cache key holds its hash) and are checked
                            // against their own sha256 before use (cache::DiskCache::get).
                            unsafe { Module::deserialize(&self.engine, bytes) }
                        },
                        Module::serialize,
                    )
                    .map_err(compile_error)?;
                interface()?;
                Code::Core(self.linker.instantiate_pre(&module).map_err(abi_error)?)
            }
            Kind::Component => {
                let component = self
                    .compile(
                        &sha256,
                        kind,
                        || wasmtime::component::Component::new(&self.engine, wasm),
                        |bytes| {
                            // SAFETY: as for modules above, from `Component::serialize`.
                            unsafe {
                                wasmtime::component::Component::deserialize(&self.engine, bytes)
                            }
                        },
                        wasmtime::component::Component::serialize,
                    )
                    .map_err(compile_error)?;
                interface()?;
                Code::Component(
                    component::Pre::new(&self.component_linker, &component).map_err(abi_error)?,
                )
            }
        };
        let loaded = AppModule {
            name: app.into(),
            code,
            cancel: None,
            _ticker: self.ticker.clone(),
        };
        // Two tasks may have compiled the same app at once: either result will do.
        self.cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(sha256, loaded.clone());
        Ok(loaded)
    }

    /// The compiled code of an app: from the disk cache when it holds a sound entry,
    /// else compiled now (and saved there for next time).
    fn compile<T>(
        &self,
        sha256: &str,
        kind: Kind,
        compile: impl FnOnce() -> wasmtime::Result<T>,
        deserialize: impl Fn(&[u8]) -> wasmtime::Result<T>,
        serialize: impl Fn(&T) -> wasmtime::Result<Vec<u8>>,
    ) -> wasmtime::Result<T> {
        let Some(disk) = &self.disk else {
            self.misses.fetch_add(1, Ordering::Relaxed);
            return compile();
        };
        if let Some(bytes) = disk.get(sha256, kind) {
            match deserialize(&bytes) {
                Ok(code) => {
                    self.hits.fetch_add(1, Ordering::Relaxed);
                    return Ok(code);
                }
                // Sound bytes the engine refuses (another build of the worker): rebuilt.
                Err(e) => disk.discard(sha256, kind, &format!("{e:#}")),
            }
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        let code = compile()?;
        match serialize(&code) {
            Ok(bytes) => disk.put(sha256, kind, &bytes),
            Err(e) => tracing::warn!(error = %format!("{e:#}"), "cannot serialize compiled app"),
        }
        Ok(code)
    }

    /// The module compiled earlier for this content hash, if any.
    pub fn cached(&self, sha256: &str) -> Option<AppModule> {
        let cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        let found = cache.get(&sha256.to_ascii_lowercase()).cloned();
        if found.is_some() {
            self.hits.fetch_add(1, Ordering::Relaxed);
        }
        found
    }

    /// Lookups that found a module compiled, and compilations, since this runtime started.
    pub fn cache_stats(&self) -> (u64, u64) {
        (
            self.hits.load(Ordering::Relaxed),
            self.misses.load(Ordering::Relaxed),
        )
    }
}

// ---------------------------------------------------------------------------------------
// Host state and host functions.

/// Per-store state: the deadline, the limiter, and what ended the call, when the host
/// is the one that ended it.
struct HostState {
    app: Arc<str>,
    deadline: Instant,
    limiter: Limiter,
    cause: Option<Cause>,
    logs: u32,
    cancel: Option<CancelToken>,
    /// What the app added to its counters since they were last taken.
    counters: Counters,
    /// WASI for a component that imports it, made on its first use.
    wasi: Option<Box<component::Wasi>>,
}

impl HostState {
    /// Whether the task's owner no longer wants this call's result.
    fn cancelled(&self) -> bool {
        self.cancel.as_ref().is_some_and(CancelToken::is_cancelled)
    }
}

/// A failure seen by the host itself, which is more precise than the trap it raises.
enum Cause {
    TimeLimit,
    Cancelled,
    AppFailed(String),
    Abi(String),
}

/// wasmtime's [`StoreLimits`], plus a record of whether *our* limit refused memory, so
/// that the resulting trap is reported as [`AppError::MemoryLimit`].
struct Limiter {
    inner: StoreLimits,
    limit: usize,
    hit: bool,
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.limit {
            self.hit = true;
        }
        self.inner.memory_growing(current, desired, maximum)
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        // The machine itself is out of memory: to the task, the same verdict.
        self.hit = true;
        self.inner.memory_grow_failed(error)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.inner.table_growing(current, desired, maximum)
    }

    fn table_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.inner.table_grow_failed(error)
    }

    fn instances(&self) -> usize {
        self.inner.instances()
    }

    fn tables(&self) -> usize {
        self.inner.tables()
    }

    fn memories(&self) -> usize {
        self.inner.memories()
    }
}

impl HostState {
    /// `log`: an app's message for the worker's log, rate-limited per instance.
    fn log(&mut self, msg: &str) {
        self.logs = self.logs.saturating_add(1);
        if self.logs <= MAX_LOGS_PER_INSTANCE {
            tracing::info!(target: "app", app = %self.app, "{msg}");
        } else if self.logs == MAX_LOGS_PER_INSTANCE + 1 {
            tracing::warn!(target: "app", app = %self.app,
                "more than {MAX_LOGS_PER_INSTANCE} log messages: dropping the rest");
        }
    }

    /// `fail`: ends the call with the app's message (the error traps the instance).
    fn fail(&mut self, msg: String) -> wasmtime::Error {
        self.cause = Some(Cause::AppFailed(msg));
        wasmtime::Error::msg("the app called mr.fail")
    }

    /// An ABI violation seen by a host function: ends the call with `msg`.
    fn abi_violation(&mut self, msg: String) -> wasmtime::Error {
        self.cause = Some(Cause::Abi(msg.clone()));
        wasmtime::Error::msg(msg)
    }

    /// `counter`: adds `delta` to the app counter `name`, within the limits.
    fn counter(&mut self, name: String, delta: u64) -> wasmtime::Result<()> {
        if name.is_empty() || name.starts_with(RESERVED_COUNTER_PREFIX) {
            return Err(self.abi_violation(format!("mr.counter: {name:?} is not a counter name an app may use (empty, or starts with {RESERVED_COUNTER_PREFIX:?}, the built-ins)")));
        }
        if name.len() > MAX_COUNTER_NAME {
            return Err(self.abi_violation(format!(
                "mr.counter: a counter name is at most {MAX_COUNTER_NAME} bytes"
            )));
        }
        if !self.counters.contains_key(&name) && self.counters.len() >= MAX_COUNTERS {
            return Err(self.abi_violation(format!(
                "mr.counter: more than {MAX_COUNTERS} counter names in one task"
            )));
        }
        let slot = self.counters.entry(name).or_default();
        *slot = slot.saturating_add(delta);
        Ok(())
    }
}

fn host_linker(engine: &Engine) -> wasmtime::Result<Linker<HostState>> {
    let mut linker = Linker::new(engine);
    linker.func_wrap(
        "mr",
        "log",
        |mut caller: Caller<'_, HostState>, ptr: i32, len: i32| -> wasmtime::Result<()> {
            let msg = guest_message(&mut caller, "mr.log", ptr, len)?;
            caller.data_mut().log(&msg);
            Ok(())
        },
    )?;
    linker.func_wrap(
        "mr",
        "fail",
        |mut caller: Caller<'_, HostState>, ptr: i32, len: i32| -> wasmtime::Result<()> {
            let msg = guest_message(&mut caller, "mr.fail", ptr, len)?;
            // Trap here rather than trusting the app to trap after the call.
            Err(caller.data_mut().fail(msg))
        },
    )?;
    linker.func_wrap(
        "mr",
        "counter",
        |mut caller: Caller<'_, HostState>,
         ptr: i32,
         len: i32,
         delta: i64|
         -> wasmtime::Result<()> {
            // Checked before the name is read, so that a huge length costs nothing.
            if usize::try_from(len).map_or(true, |l| l > MAX_COUNTER_NAME) {
                return Err(caller.data_mut().abi_violation(format!(
                    "mr.counter: a counter name is at most {MAX_COUNTER_NAME} bytes"
                )));
            }
            let name = guest_message(&mut caller, "mr.counter", ptr, len)?;
            caller.data_mut().counter(name, delta as u64)
        },
    )?;
    linker.func_wrap("mr", "random_u64", || -> i64 { rand::random() })?;
    linker.func_wrap(
        "mr",
        "sleep_ms",
        |mut caller: Caller<'_, HostState>, ms: i32| -> wasmtime::Result<()> {
            let ms = u64::try_from(ms).unwrap_or(0);
            let deadline = caller.data().deadline;
            // Sleeping past the deadline would only delay the verdict.
            let (wake, in_time) = match Instant::now().checked_add(Duration::from_millis(ms)) {
                Some(wake) if wake <= deadline => (wake, true),
                _ => (deadline, false),
            };
            // In slices of a tick, so that a cancelled attempt stops as soon as a computing
            // one does.
            loop {
                if caller.data().cancelled() {
                    caller.data_mut().cause = Some(Cause::Cancelled);
                    return Err(wasmtime::Error::msg("cancelled in mr.sleep_ms"));
                }
                let left = wake.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                std::thread::sleep(left.min(TICK));
            }
            if in_time {
                return Ok(());
            }
            caller.data_mut().cause = Some(Cause::TimeLimit);
            Err(wasmtime::Error::msg("time limit reached in mr.sleep_ms"))
        },
    )?;
    Ok(linker)
}

/// Reads a (bounds-checked) message of the guest for `mr.log` or `mr.fail`.
fn guest_message(
    caller: &mut Caller<'_, HostState>,
    what: &str,
    ptr: i32,
    len: i32,
) -> wasmtime::Result<String> {
    let memory = caller.get_export("memory").and_then(Extern::into_memory);
    let bytes = memory.and_then(|m| guest_slice(m.data(&*caller), ptr as u32, len as u32));
    match bytes {
        Some(bytes) => {
            let kept = &bytes[..bytes.len().min(MAX_MESSAGE)];
            let mut msg = String::from_utf8_lossy(kept).into_owned();
            if kept.len() < bytes.len() {
                msg.push_str(" […]");
            }
            Ok(msg)
        }
        None => {
            let msg = format!("{what}({ptr}, {len}) points outside the module's memory");
            caller.data_mut().cause = Some(Cause::Abi(msg.clone()));
            Err(wasmtime::Error::msg(msg))
        }
    }
}

/// `memory[ptr..ptr + len]`, or None when that is out of bounds.
fn guest_slice(memory: &[u8], ptr: u32, len: u32) -> Option<&[u8]> {
    let start = usize::try_from(ptr).ok()?;
    let end = start.checked_add(usize::try_from(len).ok()?)?;
    memory.get(start..end)
}

// ---------------------------------------------------------------------------------------
// Modules and instances.

/// A compiled, checked app. Cheap to clone; safe to use from several threads at once
/// (each call gets its own store).
#[derive(Clone)]
pub struct AppModule {
    name: Arc<str>,
    code: Code,
    /// Set for one task's use of the module: stops its calls when cancelled.
    cancel: Option<CancelToken>,
    /// Keeps the epoch ticking while the module can run, even without its runtime:
    /// without ticks, no deadline would ever fire.
    _ticker: Arc<Ticker>,
}

impl fmt::Debug for AppModule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppModule")
            .field("name", &self.name)
            .finish()
    }
}

/// An app's compiled code, linked to the host functions.
#[derive(Clone)]
enum Code {
    Core(InstancePre<HostState>),
    Component(component::Pre),
}

/// Why a call that writes its input in place ([`Instance::call_with`]) failed: the app, or
/// the code that fills the input (reading the split).
enum Failed<E> {
    App(AppError),
    Fill(E),
}

impl<E> From<AppError> for Failed<E> {
    fn from(e: AppError) -> Self {
        Self::App(e)
    }
}

impl<E> Failed<E> {
    /// The filler's error outside, the app's inside.
    fn split<T>(result: Result<T, Self>) -> Result<Result<T, AppError>, E> {
        match result {
            Ok(value) => Ok(Ok(value)),
            Err(Self::App(e)) => Ok(Err(e)),
            Err(Self::Fill(e)) => Err(e),
        }
    }
}

/// A live instance and its ABI exports.
struct Instance {
    store: Store<HostState>,
    memory: Memory,
    alloc: TypedFunc<i32, i32>,
    call: TypedFunc<(i32, i32), i64>,
    limits: Limits,
}

impl AppModule {
    /// The app's name, as given to [`AppRuntime::load`].
    pub fn name(&self) -> &str {
        &self.name
    }

    /// This module, its calls stopped (at the next epoch tick) once `token` is cancelled.
    pub fn with_cancel(&self, token: CancelToken) -> Self {
        Self {
            cancel: Some(token),
            ..self.clone()
        }
    }

    /// Whether the task using this module was cancelled: work around the app (a reduce's
    /// merge passes) checks it to stop early too.
    pub fn is_cancelled(&self) -> bool {
        self.cancel.as_ref().is_some_and(CancelToken::is_cancelled)
    }

    fn named(mut self, app: &str) -> Self {
        if *self.name != *app {
            self.name = app.into();
        }
        self
    }

    /// One map call over a whole split. Fresh instance (fresh memory) per call.
    pub fn map(
        &self,
        limits: &Limits,
        input_name: &str,
        contents: &[u8],
    ) -> Result<MapOutput, AppError> {
        let copy = |dest: &mut [u8]| {
            dest.copy_from_slice(contents);
            Ok::<_, std::convert::Infallible>(())
        };
        match self.map_with(limits, input_name, contents.len(), copy) {
            Ok(result) => result,
            Err(never) => match never {},
        }
    }

    /// [`Self::map`] over a split of `len` bytes that `fill` writes: for a core module,
    /// straight into the instance's memory (a task reading a file then holds no copy of
    /// its split on the host). The outer error is `fill`'s: the split could not be read.
    pub fn map_with<E>(
        &self,
        limits: &Limits,
        input_name: &str,
        len: usize,
        fill: impl FnOnce(&mut [u8]) -> Result<(), E>,
    ) -> Result<Result<MapOutput, AppError>, E> {
        Failed::split(self.map_filled(limits, input_name, len, fill))
    }

    fn map_filled<E>(
        &self,
        limits: &Limits,
        input_name: &str,
        len: usize,
        fill: impl FnOnce(&mut [u8]) -> Result<(), E>,
    ) -> Result<MapOutput, Failed<E>> {
        let (output, counters) = match &self.code {
            Code::Core(pre) => {
                let Ok(name_len) = u32::try_from(input_name.len()) else {
                    return Err(self
                        .abi("the input name is longer than 4 GiB".into())
                        .into());
                };
                let mut instance = self.instantiate(pre, limits, "mr_map")?;
                let header = name_len.to_le_bytes();
                let (ptr, len) =
                    instance.call_with(&[&header, input_name.as_bytes()], len, fill)?;
                let output = instance.output(ptr, len)?.to_vec();
                let counters = std::mem::take(&mut instance.store.data_mut().counters);
                (output, counters)
            }
            Code::Component(pre) => {
                let mut contents = vec![0; len];
                fill(&mut contents).map_err(Failed::Fill)?;
                let mut session = component::Session::new(pre, self.store(pre.engine(), limits))
                    .map_err(|(mut store, e)| classify(&self.name, limits, &mut store, e))?;
                let output = session.map(limits, input_name, &contents)?;
                (output, session.take_counters())
            }
        };
        let mut output =
            MapOutput::parse(output).map_err(|e| self.abi(format!("malformed map output: {e}")))?;
        output.counters = counters;
        Ok(output)
    }

    /// A reduce session: ONE instance for a whole reduce task; the deadline covers the
    /// session, from this call on.
    pub fn reducer(&self, limits: &Limits) -> Result<Reducer, AppError> {
        let session = match &self.code {
            Code::Core(pre) => Session::Core(self.instantiate(pre, limits, "mr_reduce")?),
            Code::Component(pre) => Session::Component(
                component::Session::new(pre, self.store(pre.engine(), limits))
                    .map_err(|(mut store, e)| classify(&self.name, limits, &mut store, e))?,
            ),
        };
        Ok(Reducer {
            session,
            limits: *limits,
            failed: None,
        })
    }

    fn abi(&self, message: String) -> AppError {
        AppError::Abi {
            app: self.name.to_string(),
            message,
        }
    }

    /// A store for one instance: its deadline, memory cap and cancellation.
    fn store(&self, engine: &Engine, limits: &Limits) -> Store<HostState> {
        let limit = usize::try_from(limits.memory_bytes).unwrap_or(usize::MAX);
        let state = HostState {
            app: self.name.clone(),
            deadline: Instant::now()
                .checked_add(limits.time)
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(86_400 * 365)),
            limiter: Limiter {
                inner: StoreLimitsBuilder::new()
                    .memory_size(limit)
                    .trap_on_grow_failure(true)
                    .build(),
                limit,
                hit: false,
            },
            cause: None,
            logs: 0,
            cancel: self.cancel.clone(),
            counters: Counters::new(),
            wasi: None,
        };
        let mut store = Store::new(engine, state);
        store.limiter(|state| &mut state.limiter);
        // Consulted at every tick: the wall clock, not a tick count, decides, so a late
        // or skipped tick cannot stretch or shrink the limit.
        store.epoch_deadline_callback(|mut ctx| {
            if ctx.data().cancelled() {
                ctx.data_mut().cause = Some(Cause::Cancelled);
                return Err(wasmtime::Error::msg("cancelled"));
            }
            if Instant::now() < ctx.data().deadline {
                return Ok(UpdateDeadline::Continue(1));
            }
            ctx.data_mut().cause = Some(Cause::TimeLimit);
            Err(wasmtime::Error::msg("time limit reached"))
        });
        store.set_epoch_deadline(1);
        store
    }

    fn instantiate(
        &self,
        pre: &InstancePre<HostState>,
        limits: &Limits,
        entry: &str,
    ) -> Result<Instance, AppError> {
        let mut store = self.store(pre.module().engine(), limits);
        let instance = match pre.instantiate(&mut store) {
            Ok(instance) => instance,
            Err(e) => return Err(classify(&self.name, limits, &mut store, e)),
        };
        // app_interface::check verified these exports at load time.
        let missing = |what: &str| self.abi(format!("export `{what}` vanished"));
        let memory = instance
            .get_memory(&mut store, "memory")
            .ok_or_else(|| missing("memory"))?;
        let version = instance
            .get_typed_func::<(), i32>(&mut store, "mr_abi_version")
            .map_err(|_| missing("mr_abi_version"))?;
        let alloc = instance
            .get_typed_func::<i32, i32>(&mut store, "mr_alloc")
            .map_err(|_| missing("mr_alloc"))?;
        let call = instance
            .get_typed_func::<(i32, i32), i64>(&mut store, entry)
            .map_err(|_| missing(entry))?;
        let mut instance = Instance {
            store,
            memory,
            alloc,
            call,
            limits: *limits,
        };
        let got = version
            .call(&mut instance.store, ())
            .map_err(|e| instance.error(e))?;
        if got != ABI_VERSION {
            return Err(self.abi(format!(
                "the module speaks app ABI version {got}; this worker speaks {ABI_VERSION}"
            )));
        }
        Ok(instance)
    }
}

impl Instance {
    fn app(&self) -> String {
        self.store.data().app.to_string()
    }

    fn abi(&self, message: String) -> AppError {
        AppError::Abi {
            app: self.app(),
            message,
        }
    }

    fn error(&mut self, e: wasmtime::Error) -> AppError {
        let app = self.store.data().app.clone();
        classify(&app, &self.limits, &mut self.store, e)
    }

    /// Copies `parts` (concatenated) into a buffer from `mr_alloc`, calls the entry
    /// point on it, and returns the (unchecked) output pointer and length.
    fn call(&mut self, parts: &[&[u8]]) -> Result<(u32, u32), AppError> {
        let nothing = |_: &mut [u8]| Ok::<_, std::convert::Infallible>(());
        self.call_with(parts, 0, nothing)
            .map_err(|failed| match failed {
                Failed::App(e) => e,
                Failed::Fill(never) => match never {},
            })
    }

    /// [`Self::call`] with `tail` more bytes after `parts`, written in place by `fill`.
    fn call_with<E>(
        &mut self,
        parts: &[&[u8]],
        tail: usize,
        fill: impl FnOnce(&mut [u8]) -> Result<(), E>,
    ) -> Result<(u32, u32), Failed<E>> {
        let total: usize = parts
            .iter()
            .map(|p| p.len())
            .sum::<usize>()
            .saturating_add(tail);
        let Ok(len) = i32::try_from(total) else {
            return Err(self
                .abi(format!(
                    "an input of {total} bytes does not fit a 32-bit app (2 GiB at most)"
                ))
                .into());
        };
        let ptr = self
            .alloc
            .call(&mut self.store, len)
            .map_err(|e| self.error(e))?;
        let memory = self.memory.data_mut(&mut self.store);
        let end = (ptr as u32 as usize).checked_add(total);
        let Some(dest) = end.and_then(|end| memory.get_mut(ptr as u32 as usize..end)) else {
            return Err(self
                .abi(format!(
                    "mr_alloc({len}) returned {ptr}, outside the module's memory"
                ))
                .into());
        };
        let mut at = 0;
        for part in parts {
            dest[at..at + part.len()].copy_from_slice(part);
            at += part.len();
        }
        fill(&mut dest[at..]).map_err(Failed::Fill)?;
        let packed = self
            .call
            .call(&mut self.store, (ptr, len))
            .map_err(|e| self.error(e))? as u64;
        Ok(((packed >> 32) as u32, packed as u32))
    }

    /// The guest's output buffer, bounds-checked.
    fn output(&self, ptr: u32, len: u32) -> Result<&[u8], AppError> {
        guest_slice(self.memory.data(&self.store), ptr, len).ok_or_else(|| {
            self.abi(format!(
                "the output ({len} bytes at {ptr}) lies outside the module's memory"
            ))
        })
    }
}

/// Turns a failed call into an [`AppError`], trusting the host's own records first.
fn classify(
    app: &str,
    limits: &Limits,
    store: &mut Store<HostState>,
    e: wasmtime::Error,
) -> AppError {
    let app = app.to_string();
    let state = store.data_mut();
    match state.cause.take() {
        Some(Cause::TimeLimit) => {
            return AppError::TimeLimit {
                app,
                limit: limits.time,
            };
        }
        Some(Cause::Cancelled) => return AppError::Cancelled { app },
        Some(Cause::AppFailed(message)) => return AppError::Trap { app, message },
        Some(Cause::Abi(message)) => return AppError::Abi { app, message },
        None => {}
    }
    if state.limiter.hit {
        return AppError::MemoryLimit {
            app,
            limit_bytes: limits.memory_bytes,
        };
    }
    match e.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => AppError::TimeLimit {
            app,
            limit: limits.time,
        },
        Some(trap) => AppError::Trap {
            app,
            message: format!("{trap}"),
        },
        None => AppError::Trap {
            app,
            message: format!("{e:#}"),
        },
    }
}

// ---------------------------------------------------------------------------------------
// Map output.

/// The records of one map call: the raw buffer copied out of the guest, validated once,
/// plus the offset of each record so that they can be sorted by index.
#[derive(Debug, Clone, Default)]
pub struct MapOutput {
    buf: Vec<u8>,
    starts: Vec<u32>,
    /// What the call added to the app's counters.
    pub counters: Counters,
}

impl MapOutput {
    fn parse(buf: Vec<u8>) -> Result<Self, String> {
        let mut starts = Vec::new();
        let mut at = 0usize;
        while at < buf.len() {
            let start = at;
            for part in ["key", "value"] {
                let len = read_len(&buf, at).ok_or_else(|| {
                    format!("record {} is cut in its {part} length", starts.len())
                })?;
                at = (at + 4)
                    .checked_add(len)
                    .filter(|&end| end <= buf.len())
                    .ok_or_else(|| {
                        format!("the {part} of record {} runs past the buffer", starts.len())
                    })?;
            }
            // The buffer came from a 32-bit memory, so offsets fit in u32.
            let start = u32::try_from(start).map_err(|_| "buffer over 4 GiB".to_string())?;
            starts.push(start);
        }
        Ok(Self {
            buf,
            starts,
            counters: Counters::new(),
        })
    }

    /// The number of records.
    pub fn len(&self) -> usize {
        self.starts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.starts.is_empty()
    }

    /// The records, in the order the app returned them.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&[u8], &[u8])> + '_ {
        (0..self.len()).map(|i| self.get(i))
    }

    /// Record `i` as (key, value). Panics if `i >= len()`, like slice indexing.
    pub fn get(&self, i: usize) -> (&[u8], &[u8]) {
        self.at(self.starts[i])
    }

    /// The records as the app returned them, encoded (see `apps-wasm/README.md`).
    pub fn buffer(&self) -> &[u8] {
        &self.buf
    }

    /// Where each record starts in the output's buffer, in the order the app returned
    /// them (so increasing): what [`MapOutput::at`] takes.
    pub fn starts(&self) -> &[u32] {
        &self.starts
    }

    /// The record that starts at byte `start` (one of [`MapOutput::starts`]), as (key,
    /// value): one read of the buffer, where [`MapOutput::get`] reads `starts` first.
    pub fn at(&self, start: u32) -> (&[u8], &[u8]) {
        let at = start as usize;
        // parse() checked every length, so these slices are in bounds.
        let key_len = read_len(&self.buf, at).unwrap_or(0);
        let key = &self.buf[at + 4..at + 4 + key_len];
        let at = at + 4 + key_len;
        let value_len = read_len(&self.buf, at).unwrap_or(0);
        (key, &self.buf[at + 4..at + 4 + value_len])
    }

    /// The records of several calls, in order, as one output.
    pub fn concat(parts: Vec<MapOutput>) -> MapOutput {
        let mut out = MapOutput::default();
        for part in parts {
            add_counters(&mut out.counters, part.counters);
            let base = out.buf.len() as u32;
            out.starts.extend(part.starts.iter().map(|s| s + base));
            out.buf.extend_from_slice(&part.buf);
        }
        out
    }

    /// The validated buffer, in the ABI's record format (u32 LE length-prefixed key,
    /// then value, per record).
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }
}

fn read_len(buf: &[u8], at: usize) -> Option<usize> {
    let bytes = buf.get(at..at.checked_add(4)?)?;
    let mut le = [0u8; 4];
    le.copy_from_slice(bytes);
    usize::try_from(u32::from_le_bytes(le)).ok()
}

// ---------------------------------------------------------------------------------------
// Reduce.

/// Groups to reduce in one call, encoded as the guest reads them. Reuse one with
/// [`ReduceBatch::clear`] to keep its buffer. Keep batches to a few MiB: the batch is
/// copied into the app's memory, which counts toward its limit.
#[derive(Debug, Clone, Default)]
pub struct ReduceBatch {
    buf: Vec<u8>,
    groups: usize,
    /// Where each group starts in `buf`.
    starts: Vec<usize>,
    /// A length did not fit the ABI's u32: reduce_batch refuses the batch.
    oversize: bool,
}

impl ReduceBatch {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a group: a key and all of its values.
    pub fn push_group<V: AsRef<[u8]>>(&mut self, key: &[u8], values: impl IntoIterator<Item = V>) {
        let mut group = self.begin_group(key);
        for value in values {
            group.push_value(value.as_ref());
        }
    }

    /// Starts a group whose values are added one by one, for callers that stream them
    /// (e.g. from a merge) rather than holding them in a collection.
    pub fn begin_group(&mut self, key: &[u8]) -> GroupWriter<'_> {
        self.starts.push(self.buf.len());
        self.put(key);
        let count_at = self.buf.len();
        self.buf.extend_from_slice(&0u32.to_le_bytes());
        self.groups += 1;
        GroupWriter {
            batch: self,
            count_at,
        }
    }

    /// The number of groups.
    pub fn len(&self) -> usize {
        self.groups
    }

    pub fn is_empty(&self) -> bool {
        self.groups == 0
    }

    /// The encoded size in bytes (what the app's memory must hold).
    pub fn bytes(&self) -> usize {
        self.buf.len()
    }

    /// The encoded batch, as the app receives it.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }

    /// A batch of groups `range` of this one (to retry them apart).
    pub fn sub_batch(&self, range: std::ops::Range<usize>) -> ReduceBatch {
        let at = |i: usize| self.starts.get(i).copied().unwrap_or(self.buf.len());
        let (start, end) = (at(range.start), at(range.end.max(range.start)));
        ReduceBatch {
            buf: self.buf[start..end].to_vec(),
            groups: range.len(),
            starts: self.starts[range.start..range.end.max(range.start)]
                .iter()
                .map(|s| s - start)
                .collect(),
            oversize: self.oversize,
        }
    }

    /// Empties the batch, keeping its buffer.
    pub fn clear(&mut self) {
        self.buf.clear();
        self.starts.clear();
        self.groups = 0;
        self.oversize = false;
    }

    fn put(&mut self, bytes: &[u8]) {
        let len = u32::try_from(bytes.len()).unwrap_or_else(|_| {
            self.oversize = true;
            0
        });
        self.buf.extend_from_slice(&len.to_le_bytes());
        if !self.oversize {
            self.buf.extend_from_slice(bytes);
        }
    }
}

/// Adds values to the group that [`ReduceBatch::begin_group`] started.
pub struct GroupWriter<'a> {
    batch: &'a mut ReduceBatch,
    count_at: usize,
}

impl GroupWriter<'_> {
    pub fn push_value(&mut self, value: &[u8]) {
        self.batch.put(value);
        // Counting in place keeps the batch well-formed after every push.
        let count = &mut self.batch.buf[self.count_at..self.count_at + 4];
        let mut le = [0u8; 4];
        le.copy_from_slice(count);
        match u32::from_le_bytes(le).checked_add(1) {
            Some(n) => count.copy_from_slice(&n.to_le_bytes()),
            None => self.batch.oversize = true,
        }
    }
}

/// A reduce session: one instance for a whole reduce task.
pub struct Reducer {
    session: Session,
    limits: Limits,
    /// After a failure the instance's state is unknown: later batches get this error.
    failed: Option<AppError>,
}

/// The instance of a reduce session, in the app's form.
enum Session {
    Core(Instance),
    Component(component::Session),
}

impl fmt::Debug for Reducer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reducer")
            .field("app", &self.state().app)
            .field("failed", &self.failed)
            .finish()
    }
}

impl Reducer {
    fn state(&self) -> &HostState {
        match &self.session {
            Session::Core(instance) => instance.store.data(),
            Session::Component(session) => session.state(),
        }
    }

    fn abi(&self, message: String) -> AppError {
        AppError::Abi {
            app: self.state().app.to_string(),
            message,
        }
    }

    /// Takes what the app added to its counters in the calls since the last take. Only
    /// meaningful after successful calls: a failed one poisons the session.
    pub fn take_counters(&mut self) -> Counters {
        match &mut self.session {
            Session::Core(instance) => std::mem::take(&mut instance.store.data_mut().counters),
            Session::Component(session) => session.take_counters(),
        }
    }

    /// Reduces a batch of groups; returns one value per group (same order).
    pub fn reduce_batch(&mut self, batch: &ReduceBatch) -> Result<Vec<Vec<u8>>, AppError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let result = self.run(batch);
        if let Err(e) = &result {
            self.failed = Some(e.clone());
        }
        result
    }

    fn run(&mut self, batch: &ReduceBatch) -> Result<Vec<Vec<u8>>, AppError> {
        if batch.oversize {
            return Err(self.abi("a key or value of the batch is over 4 GiB".into()));
        }
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let parsed = match &mut self.session {
            Session::Core(instance) => {
                let (ptr, len) = instance.call(&[batch.as_bytes()])?;
                parse_values(instance.output(ptr, len)?, batch.len())
            }
            Session::Component(session) => {
                let output = session.reduce(&self.limits, batch.as_bytes())?;
                parse_values(&output, batch.len())
            }
        };
        parsed.map_err(|e| {
            self.abi(format!(
                "malformed reduce output for {} groups: {e}",
                batch.len()
            ))
        })
    }
}

fn parse_values(buf: &[u8], n: usize) -> Result<Vec<Vec<u8>>, String> {
    let mut values = Vec::with_capacity(n);
    let mut at = 0usize;
    for i in 0..n {
        let len = read_len(buf, at).ok_or_else(|| format!("value {i} is missing"))?;
        let value = (at + 4)
            .checked_add(len)
            .and_then(|end| buf.get(at + 4..end))
            .ok_or_else(|| format!("value {i} runs past the buffer"))?;
        values.push(value.to_vec());
        at += 4 + len;
    }
    if at != buf.len() {
        return Err(format!("{} bytes follow the last value", buf.len() - at));
    }
    Ok(values)
}

/// Adds `more` into `into`, name by name.
pub fn add_counters(into: &mut Counters, more: Counters) {
    for (name, delta) in more {
        let slot = into.entry(name).or_default();
        *slot = slot.saturating_add(delta);
    }
}
