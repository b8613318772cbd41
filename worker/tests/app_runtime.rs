//! The app runtime against the real apps of `apps-wasm/` (build them first with
//! `apps-wasm/build.sh`) and against tiny hand-written modules that break the ABI in
//! the ways a hostile or buggy app could.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mr_worker::app_runtime::{
    AppError, AppModule, AppRuntime, CancelToken, Limits, MapOutput, ReduceBatch, Reducer,
};
use sha2::{Digest, Sha256};

const APPS: [&str; 14] = [
    "wordstats",
    "wc",
    "indexer",
    "nocrash",
    "crash",
    "mtiming",
    "rtiming",
    "jobcount",
    "early_exit",
    "loop_forever",
    "alloc_forever",
    "trap",
    "big_output",
    "open_file",
];

fn apps_dir() -> PathBuf {
    let dir = match std::env::var_os("MR_APPS_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/apps"),
    };
    assert!(
        dir.join("wc.wasm").is_file(),
        "{} has no wc.wasm: build the Wasm apps first with `apps-wasm/build.sh`",
        dir.display()
    );
    dir
}

fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn load(rt: &AppRuntime, app: &str) -> AppModule {
    let wasm = std::fs::read(apps_dir().join(format!("{app}.wasm")))
        .unwrap_or_else(|e| panic!("{app}.wasm: {e} (run apps-wasm/build.sh)"));
    rt.load(app, &sha256(&wasm), &wasm)
        .unwrap_or_else(|e| panic!("{e}"))
}

fn load_wat(rt: &AppRuntime, app: &str, wat: &str) -> Result<AppModule, AppError> {
    let wasm = wat::parse_str(wat).expect("test module is valid WAT");
    rt.load(app, &sha256(&wasm), &wasm)
}

const LIMITS: Limits = Limits {
    time: Duration::from_secs(10),
    memory_bytes: 256 << 20,
};

fn records(out: &MapOutput) -> Vec<(String, String)> {
    out.iter()
        .map(|(k, v)| {
            let s = |b: &[u8]| String::from_utf8(b.to_vec()).unwrap();
            (s(k), s(v))
        })
        .collect()
}

fn reduce_all(reducer: &mut Reducer, groups: &[(&str, &[&str])]) -> Vec<String> {
    let mut batch = ReduceBatch::default();
    for (key, values) in groups {
        batch.push_group(key.as_bytes(), values.iter().map(|v| v.as_bytes()));
    }
    assert_eq!(batch.len(), groups.len());
    let out = reducer
        .reduce_batch(&batch)
        .unwrap_or_else(|e| panic!("{e}"));
    out.into_iter()
        .map(|v| String::from_utf8(v).unwrap())
        .collect()
}

#[test]
fn types_can_cross_threads() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<AppRuntime>();
    send_sync::<AppModule>();
    send_sync::<MapOutput>();
    send::<Reducer>();
    send_sync::<AppError>();
}

#[test]
fn every_app_loads_with_only_the_mr_imports() {
    // The linker defines nothing but the "mr" functions, so a load that succeeds proves
    // the module imports nothing else (no WASI, no env).
    let rt = AppRuntime::new().unwrap();
    for app in APPS {
        let module = load(&rt, app);
        assert_eq!(module.name(), app);
    }
}

#[test]
fn modules_are_cached_by_hash() {
    let rt = AppRuntime::new().unwrap();
    let wasm = std::fs::read(apps_dir().join("wc.wasm")).unwrap();
    let hash = sha256(&wasm);
    assert!(rt.cached(&hash).is_none());
    rt.load("wc", &hash, &wasm).unwrap();
    let again = rt.cached(&hash.to_uppercase()).expect("cached");
    assert_eq!(again.name(), "wc");
    // A cache hit under another name reports that name.
    assert_eq!(rt.load("wc2", &hash, &wasm).unwrap().name(), "wc2");
}

#[test]
fn wc_map_combines_repeated_words() {
    let rt = AppRuntime::new().unwrap();
    let wc = load(&rt, "wc");
    let text = "The cat and the hat; the END. Ⅻ café ǅx ʰ 中文 x\u{301}y \u{ff}";
    let out = wc
        .map(&LIMITS, "input/pg-test.txt", text.as_bytes())
        .unwrap();
    let got: BTreeMap<String, String> = records(&out).into_iter().collect();
    // One record per distinct word (the combiner ran in the guest).
    assert_eq!(got.len(), out.len());
    let want: BTreeMap<String, String> = [
        ("The", "1"),
        ("cat", "1"),
        ("and", "1"),
        ("the", "2"),
        ("hat", "1"),
        ("END", "1"),
        ("café", "1"),
        ("ǅx", "1"),
        ("ʰ", "1"),
        ("中文", "1"),
        ("x", "1"),
        ("y", "1"),
        ("ÿ", "1"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(got, want);
    // Bytes that are not UTF-8 separate words.
    let out = wc.map(&LIMITS, "bin", b"ab\xffab\xc3").unwrap();
    assert_eq!(records(&out), [("ab".to_string(), "2".to_string())]);
    assert!(wc.map(&LIMITS, "empty", b"").unwrap().is_empty());
}

#[test]
fn wc_reduce_sums_and_a_reducer_serves_many_batches() {
    let rt = AppRuntime::new().unwrap();
    let wc = load(&rt, "wc");
    let mut reducer = wc.reducer(&LIMITS).unwrap();
    let got = reduce_all(
        &mut reducer,
        &[("the", &["2", "3", "1"]), ("cat", &["1"]), ("dog", &[])],
    );
    assert_eq!(got, ["6", "1", "0"]);
    assert_eq!(reduce_all(&mut reducer, &[("x", &["40", "2"])]), ["42"]);
    assert!(
        reducer
            .reduce_batch(&ReduceBatch::new())
            .unwrap()
            .is_empty()
    );

    // Values streamed one by one, and a batch reused after clear().
    let mut batch = ReduceBatch::new();
    let mut group = batch.begin_group(b"k");
    for _ in 0..1000 {
        group.push_value(b"1");
    }
    assert_eq!(reducer.reduce_batch(&batch).unwrap(), [b"1000".to_vec()]);
    let size = batch.bytes();
    assert_eq!(size, batch.as_bytes().len());
    batch.clear();
    assert!(batch.is_empty() && batch.bytes() == 0);
}

#[test]
fn wc_over_a_16_mib_split() {
    let rt = AppRuntime::new().unwrap();
    let wc = load(&rt, "wc");
    let vocabulary = ["alpha", "beta", "gamma", "delta", "épsilon", "zeta", "eta"];
    let mut text = Vec::with_capacity(16 << 20);
    let mut n = 0u64;
    while text.len() < 16 << 20 {
        text.extend_from_slice(vocabulary[(n % 7) as usize].as_bytes());
        text.extend_from_slice(if n.is_multiple_of(13) { b".\n" } else { b" " });
        n += 1;
    }
    let start = Instant::now();
    let out = wc.map(&LIMITS, "input/big.txt", &text).unwrap();
    let elapsed = start.elapsed();
    eprintln!("wc map over 16 MiB ({n} words): {elapsed:?}");
    assert_eq!(out.len(), vocabulary.len());
    let total: u64 = out
        .iter()
        .map(|(_, v)| std::str::from_utf8(v).unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(total, n);
}

/// Minor page faults of the calling thread so far.
fn thread_page_faults() -> i64 {
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes one `rusage` through a pointer to a live local.
    assert_eq!(
        unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut usage) },
        0
    );
    usage.ru_minflt
}

/// A map's instance memory stays mapped for the next instance of the app (the pool's
/// `MEMORY_KEEP_RESIDENT`): the second 16 MiB map faults in almost nothing, where the first
/// faulted in its whole memory (at least the 4,096 pages of the split it was given).
#[test]
fn a_maps_memory_stays_resident_for_the_next_map() {
    let rt = AppRuntime::new().unwrap();
    let wc = load(&rt, "wc");
    let line = b"lorem ipsum dolor sit amet\n";
    let text = line.repeat((16 << 20) / line.len());
    let mut faults = Vec::new();
    for _ in 0..2 {
        let before = thread_page_faults();
        let out = wc.map(&LIMITS, "input/big.txt", &text).unwrap();
        faults.push(thread_page_faults() - before);
        assert_eq!(out.len(), 5);
    }
    assert!(
        faults[0] > 4096,
        "the first map faulted in its memory: {faults:?}"
    );
    assert!(faults[1] < 1024, "the second map reused it: {faults:?}");
}

#[test]
fn indexer_maps_distinct_words_and_reduces_distinct_sorted_documents() {
    let rt = AppRuntime::new().unwrap();
    let indexer = load(&rt, "indexer");
    let out = indexer
        .map(&LIMITS, "input/pg-a.txt", b"x y x, y z")
        .unwrap();
    let mut got = records(&out);
    got.sort();
    let doc = "input/pg-a.txt".to_string();
    assert_eq!(
        got,
        [
            ("x".to_string(), doc.clone()),
            ("y".to_string(), doc.clone()),
            ("z".to_string(), doc)
        ]
    );
    let mut reducer = indexer.reducer(&LIMITS).unwrap();
    let got = reduce_all(
        &mut reducer,
        &[
            ("x", &["pg-b.txt", "pg-a.txt", "pg-b.txt"]),
            ("y", &["pg-a.txt"]),
        ],
    );
    assert_eq!(got, ["2 pg-a.txt,pg-b.txt", "1 pg-a.txt"]);
}

#[test]
fn nocrash_matches_the_lab() {
    let rt = AppRuntime::new().unwrap();
    let app = load(&rt, "nocrash");
    let out = app.map(&LIMITS, "input/pg-x.txt", b"12345").unwrap();
    let want = [
        ("a", "input/pg-x.txt"),
        ("b", "14"),
        ("c", "5"),
        ("d", "xyzzy"),
    ];
    let want: Vec<_> = want
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    assert_eq!(records(&out), want);
    assert_eq!(out.get(1), (&b"b"[..], &b"14"[..]));
    let mut reducer = app.reducer(&LIMITS).unwrap();
    assert_eq!(
        reduce_all(&mut reducer, &[("c", &["9", "10", "5"])]),
        ["10 5 9"]
    );
}

#[test]
fn crash_app_either_works_or_reports_its_crash() {
    let rt = AppRuntime::new().unwrap();
    let app = load(&rt, "crash");
    let (mut ok, mut crashed) = (0, 0);
    for i in 0..15 {
        match app.map(&LIMITS, &format!("f{i}"), b"abc") {
            Ok(out) => {
                assert_eq!(out.len(), 4);
                ok += 1;
            }
            Err(AppError::Trap { message, .. }) => {
                assert!(message.contains("crash app: simulated crash"), "{message}");
                crashed += 1;
            }
            Err(e) => panic!("unexpected error: {e}"),
        }
    }
    eprintln!("crash app: {ok} ok, {crashed} crashed");
    assert!(ok > 0);
}

#[test]
fn loop_forever_hits_the_time_limit_on_time() {
    let rt = AppRuntime::new().unwrap();
    let app = load(&rt, "loop_forever");
    let limits = Limits {
        time: Duration::from_millis(300),
        memory_bytes: 64 << 20,
    };
    let start = Instant::now();
    let err = app.map(&limits, "input/x", b"data").unwrap_err();
    let elapsed = start.elapsed();
    assert_eq!(
        err,
        AppError::TimeLimit {
            app: "loop_forever".into(),
            limit: limits.time
        }
    );
    assert!(err.to_string().contains("loop_forever"), "{err}");
    assert!(
        elapsed >= limits.time && elapsed < limits.time + Duration::from_millis(250),
        "stopped after {elapsed:?}"
    );
}

#[test]
fn sleep_never_outlasts_the_deadline() {
    let rt = AppRuntime::new().unwrap();
    let app = load(&rt, "mtiming"); // sleeps 1000 ms
    let limits = Limits {
        time: Duration::from_millis(300),
        memory_bytes: 64 << 20,
    };
    let start = Instant::now();
    let err = app.map(&limits, "input/x", b"").unwrap_err();
    let elapsed = start.elapsed();
    assert!(matches!(err, AppError::TimeLimit { .. }), "{err}");
    assert!(
        elapsed >= limits.time && elapsed < Duration::from_millis(700),
        "{elapsed:?}"
    );
    // With time to spare, the sleep happens and the map completes.
    let start = Instant::now();
    let out = app.map(&LIMITS, "input/x", b"").unwrap();
    assert!(start.elapsed() >= Duration::from_millis(1000));
    assert_eq!(records(&out), [("m".to_string(), "input/x".to_string())]);
}

#[test]
fn reduce_deadline_covers_the_whole_session() {
    let rt = AppRuntime::new().unwrap();
    let app = load(&rt, "rtiming"); // reduce sleeps 1000 ms per key
    let limits = Limits {
        time: Duration::from_millis(1500),
        memory_bytes: 64 << 20,
    };
    let mut reducer = app.reducer(&limits).unwrap();
    assert_eq!(reduce_all(&mut reducer, &[("a", &["1", "1"])]), ["2"]);
    let mut batch = ReduceBatch::new();
    batch.push_group(b"b", [b"1"]);
    let err = reducer.reduce_batch(&batch).unwrap_err();
    assert!(matches!(err, AppError::TimeLimit { .. }), "{err}");
    // The session is over: later batches get the same verdict.
    assert_eq!(reducer.reduce_batch(&batch).unwrap_err(), err);
}

#[test]
fn alloc_forever_hits_the_memory_limit() {
    let rt = AppRuntime::new().unwrap();
    let app = load(&rt, "alloc_forever");
    let limits = Limits {
        time: Duration::from_secs(20),
        memory_bytes: 64 << 20,
    };
    let err = app.map(&limits, "input/x", b"").unwrap_err();
    assert_eq!(
        err,
        AppError::MemoryLimit {
            app: "alloc_forever".into(),
            limit_bytes: 64 << 20
        }
    );
}

#[test]
fn big_output_fails_cleanly() {
    let rt = AppRuntime::new().unwrap();
    let app = load(&rt, "big_output");
    let limits = Limits {
        time: Duration::from_secs(20),
        memory_bytes: 64 << 20,
    };
    let err = app.map(&limits, "input/x", b"").unwrap_err();
    eprintln!("{err}");
    assert!(
        matches!(err, AppError::MemoryLimit { .. } | AppError::Trap { .. }),
        "{err}"
    );
}

#[test]
fn an_input_larger_than_the_memory_limit_is_a_memory_error() {
    let rt = AppRuntime::new().unwrap();
    let wc = load(&rt, "wc");
    let limits = Limits {
        time: Duration::from_secs(20),
        memory_bytes: 8 << 20,
    };
    let err = wc
        .map(&limits, "input/x", &vec![b'a'; 16 << 20])
        .unwrap_err();
    assert!(matches!(err, AppError::MemoryLimit { .. }), "{err}");
}

#[test]
fn trap_reports_the_apps_own_message() {
    let rt = AppRuntime::new().unwrap();
    let app = load(&rt, "trap");
    let err = app.map(&LIMITS, "input/pg-x.txt", b"").unwrap_err();
    eprintln!("{err}");
    let AppError::Trap { app, message } = &err else {
        panic!("not a trap: {err}");
    };
    assert_eq!(app, "trap");
    assert!(
        message.contains("trap app: deliberate failure on input/pg-x.txt"),
        "{message}"
    );
    assert!(err.to_string().contains("deliberate failure"), "{err}");
}

#[test]
fn open_file_cannot_read_files() {
    let rt = AppRuntime::new().unwrap();
    let app = load(&rt, "open_file");
    let err = app.map(&LIMITS, "input/x", b"").unwrap_err();
    eprintln!("{err}");
    let AppError::Trap { message, .. } = &err else {
        panic!("not a trap: {err}");
    };
    assert!(message.contains("cannot read /etc/passwd"), "{message}");
    assert!(!message.contains("bytes of /etc/passwd"), "{message}");
}

// ---------------------------------------------------------------------------------------
// Hand-written modules.

/// A minimal well-formed app; `MAP` and `REDUCE` are replaced by function bodies. The
/// data segment at 1024 holds one valid map record ("k", "v") and one reduce value "x".
const TEMPLATE: &str = r#"
(module
  (import "mr" "log" (func $log (param i32 i32)))
  (import "mr" "sleep_ms" (func $sleep (param i32)))
  (memory (export "memory") 1)
  (global $calls (mut i32) (i32.const 0))
  (data (i32.const 1024) "\01\00\00\00k\01\00\00\00v")
  (data (i32.const 2048) "\01\00\00\00x")
  (data (i32.const 3072) "hello from the app")
  (func (export "mr_abi_version") (result i32) VERSION)
  (func (export "mr_alloc") (param i32) (result i32) ALLOC)
  (func (export "mr_map") (param i32 i32) (result i64) MAP)
  (func (export "mr_reduce") (param i32 i32) (result i64) REDUCE)
)"#;

const GOOD_MAP: &str = "i64.const 4398046511114"; // (1024 << 32) | 10
const GOOD_REDUCE: &str = "i64.const 8796093022213"; // (2048 << 32) | 5

fn module(version: &str, alloc: &str, map: &str, reduce: &str) -> String {
    TEMPLATE
        .replace("VERSION", version)
        .replace("ALLOC", alloc)
        .replace("MAP", map)
        .replace("REDUCE", reduce)
}

fn with_map(map: &str) -> String {
    module("i32.const 1", "i32.const 4096", map, GOOD_REDUCE)
}

fn abi_message(result: Result<impl std::fmt::Debug, AppError>) -> String {
    match result {
        Err(AppError::Abi { message, .. }) => message,
        other => panic!("expected an ABI error, got {other:?}"),
    }
}

#[test]
fn the_template_module_works() {
    let rt = AppRuntime::new().unwrap();
    let app = load_wat(&rt, "tpl", &with_map(GOOD_MAP)).unwrap();
    let out = app.map(&LIMITS, "in", b"abc").unwrap();
    assert_eq!(records(&out), [("k".to_string(), "v".to_string())]);
    let mut reducer = app.reducer(&LIMITS).unwrap();
    assert_eq!(reduce_all(&mut reducer, &[("k", &["v"])]), ["x"]);
}

#[test]
fn only_mr_functions_may_be_imported() {
    let rt = AppRuntime::new().unwrap();
    for (import, name) in [
        (r#"(import "env" "foo" (func))"#, "env::foo"),
        (
            r#"(import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))"#,
            "wasi_snapshot_preview1::fd_write",
        ),
        (r#"(import "mr" "exec" (func))"#, "mr::exec"),
        (r#"(import "mr" "log" (global i32))"#, "mr::log"),
    ] {
        let wat = with_map(GOOD_MAP).replacen("(module", &format!("(module {import}"), 1);
        let message = abi_message(load_wat(&rt, "bad", &wat));
        eprintln!("{message}");
        assert!(message.contains(name), "{message}");
        assert!(message.contains("only the functions"), "{message}");
    }
    // The right name with the wrong type is refused too.
    let wat = with_map(GOOD_MAP).replace("(func $sleep (param i32))", "(func $sleep (param i64))");
    let err = load_wat(&rt, "bad", &wat).unwrap_err();
    assert!(matches!(err, AppError::Abi { .. }), "{err}");
}

#[test]
fn exports_are_checked_at_load() {
    let rt = AppRuntime::new().unwrap();
    let wat = with_map(GOOD_MAP).replace(r#"(export "mr_reduce")"#, "");
    assert!(abi_message(load_wat(&rt, "bad", &wat)).contains("mr_reduce"));
    let wat = with_map(GOOD_MAP).replace(
        r#"(func (export "mr_alloc") (param i32) (result i32) i32.const 4096)"#,
        r#"(func (export "mr_alloc") (param i64) (result i32) i32.const 4096)"#,
    );
    let message = abi_message(load_wat(&rt, "bad", &wat));
    assert!(
        message.contains("mr_alloc") && message.contains("(i64) -> i32"),
        "{message}"
    );
    let wat = with_map(GOOD_MAP).replace(r#"(memory (export "memory") 1)"#, "(memory 1)");
    assert!(abi_message(load_wat(&rt, "bad", &wat)).contains("memory"));
}

#[test]
fn bad_modules_and_hashes_fail_to_compile() {
    let rt = AppRuntime::new().unwrap();
    let junk = b"\0asm\x01\0\0\0garbage";
    let err = rt.load("junk", &sha256(junk), junk).unwrap_err();
    assert!(matches!(err, AppError::Compile { .. }), "{err}");
    assert!(err.to_string().contains("junk"), "{err}");
    let wasm = wat::parse_str(with_map(GOOD_MAP)).unwrap();
    let err = rt.load("tpl", &sha256(b"other"), &wasm).unwrap_err();
    assert!(err.to_string().contains("sha256"), "{err}");
}

#[test]
fn a_wrong_abi_version_is_refused() {
    let rt = AppRuntime::new().unwrap();
    let wat = module("i32.const 2", "i32.const 4096", GOOD_MAP, GOOD_REDUCE);
    let app = load_wat(&rt, "v2", &wat).unwrap();
    assert!(abi_message(app.map(&LIMITS, "in", b"")).contains("version 2"));
}

#[test]
fn guest_pointers_are_bounds_checked() {
    let rt = AppRuntime::new().unwrap();
    // Output outside memory.
    let app = load_wat(&rt, "oob", &with_map("i64.const -1")).unwrap();
    assert!(abi_message(app.map(&LIMITS, "in", b"")).contains("outside"));
    // Output whose records overrun the buffer.
    let app = load_wat(&rt, "cut", &with_map("i64.const 4398046511111")).unwrap(); // len 7
    assert!(abi_message(app.map(&LIMITS, "in", b"")).contains("malformed"));
    // An input buffer that does not fit in memory.
    let wat = module("i32.const 1", "i32.const 65530", GOOD_MAP, GOOD_REDUCE);
    let app = load_wat(&rt, "alloc", &wat).unwrap();
    assert!(abi_message(app.map(&LIMITS, "in", b"0123456789")).contains("mr_alloc"));
    // A log message outside memory.
    let map = format!("i32.const 65000 i32.const 10000 call $log {GOOD_MAP}");
    let app = load_wat(&rt, "log", &with_map(&map)).unwrap();
    assert!(abi_message(app.map(&LIMITS, "in", b"")).contains("mr.log"));
}

#[test]
fn reduce_output_must_have_one_value_per_group() {
    let rt = AppRuntime::new().unwrap();
    let app = load_wat(&rt, "tpl", &with_map(GOOD_MAP)).unwrap();
    let mut reducer = app.reducer(&LIMITS).unwrap();
    let mut batch = ReduceBatch::new();
    batch.push_group(b"a", [b"1"]);
    batch.push_group(b"b", [b"1"]);
    let message = abi_message(reducer.reduce_batch(&batch));
    assert!(message.contains("2 groups"), "{message}");
}

#[test]
fn a_failed_reducer_stays_failed() {
    let rt = AppRuntime::new().unwrap();
    // Traps on its first call only: a second call would succeed if it were made.
    let reduce = format!(
        "global.get $calls i32.const 1 i32.add global.set $calls \
         global.get $calls i32.const 1 i32.eq (if (then unreachable)) {GOOD_REDUCE}"
    );
    let wat = module("i32.const 1", "i32.const 4096", GOOD_MAP, &reduce);
    let app = load_wat(&rt, "once", &wat).unwrap();
    let mut reducer = app.reducer(&LIMITS).unwrap();
    let mut batch = ReduceBatch::new();
    batch.push_group(b"a", [b"1"]);
    let first = reducer.reduce_batch(&batch).unwrap_err();
    eprintln!("{first}");
    let AppError::Trap { message, .. } = &first else {
        panic!("{first}");
    };
    assert!(message.contains("unreachable"), "{message}");
    assert_eq!(reducer.reduce_batch(&batch).unwrap_err(), first);
}

#[test]
fn a_plain_wasm_loop_is_interrupted() {
    let rt = AppRuntime::new().unwrap();
    let app = load_wat(&rt, "spin", &with_map("(loop br 0) unreachable")).unwrap();
    let limits = Limits {
        time: Duration::from_millis(100),
        memory_bytes: 1 << 20,
    };
    let err = app.map(&limits, "in", b"").unwrap_err();
    assert!(matches!(err, AppError::TimeLimit { .. }), "{err}");
}

#[test]
fn initial_memory_over_the_limit_is_a_memory_error() {
    let rt = AppRuntime::new().unwrap();
    let wat = with_map(GOOD_MAP).replace(
        r#"(memory (export "memory") 1)"#,
        r#"(memory (export "memory") 100)"#,
    );
    let app = load_wat(&rt, "fat", &wat).unwrap();
    let limits = Limits {
        time: Duration::from_secs(1),
        memory_bytes: 1 << 20,
    };
    let err = app.map(&limits, "in", b"").unwrap_err();
    assert!(matches!(err, AppError::MemoryLimit { .. }), "{err}");
}

#[test]
fn negative_sleeps_return_at_once() {
    let rt = AppRuntime::new().unwrap();
    let map = format!("i32.const -5 call $sleep {GOOD_MAP}");
    let app = load_wat(&rt, "nap", &with_map(&map)).unwrap();
    let start = Instant::now();
    app.map(&LIMITS, "in", b"").unwrap();
    assert!(start.elapsed() < Duration::from_millis(500));
}

/// A `tracing` writer that keeps what it is given, to check what apps log.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn app_log_messages_reach_the_worker_log() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let rt = AppRuntime::new().unwrap();
    let map = format!("i32.const 3072 i32.const 18 call $log {GOOD_MAP}");
    let app = load_wat(&rt, "chatty", &with_map(&map)).unwrap();
    tracing::subscriber::with_default(subscriber, || {
        app.map(&LIMITS, "in", b"").unwrap();
    });
    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(log.contains("hello from the app"), "{log}");
    assert!(log.contains(" app:") && log.contains("chatty"), "{log}");
}

/// A cancelled call stops at the next epoch tick, long before its time limit: a dropped
/// attempt does not keep a core busy until then.
#[test]
fn a_cancelled_call_stops_at_once() {
    let rt = AppRuntime::new().unwrap();
    let token = CancelToken::default();
    let app = load(&rt, "loop_forever").with_cancel(token.clone());
    let limits = Limits {
        time: Duration::from_secs(120),
        memory_bytes: 64 << 20,
    };
    let canceller = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(200));
        token.cancel();
    });
    let err = app.map(&limits, "input/x", b"data").unwrap_err();
    canceller.join().unwrap();
    assert_eq!(
        err,
        AppError::Cancelled {
            app: "loop_forever".into()
        }
    );
    // Another use of the same module is not affected.
    let other = load(&rt, "loop_forever");
    let short = Limits {
        time: Duration::from_millis(100),
        ..limits
    };
    assert!(matches!(
        other.map(&short, "input/x", b"data"),
        Err(AppError::TimeLimit { .. })
    ));
}

/// `with_map(map)` importing `mr.counter` as `$counter`, with "mr.x" at 3500.
fn counting_module(map: &str) -> String {
    with_map(map).replacen(
        "(module",
        r#"(module (import "mr" "counter" (func $counter (param i32 i32 i64))) (data (i32.const 3500) "mr.x")"#,
        1,
    )
}

#[test]
fn a_map_call_returns_what_it_counted_and_built_in_names_are_refused() {
    let rt = AppRuntime::new().unwrap();
    let body = format!(
        "(call $counter (i32.const 3072) (i32.const 5) (i64.const 7)) \
         (call $counter (i32.const 3072) (i32.const 5) (i64.const 2)) {GOOD_MAP}"
    );
    let app = load_wat(&rt, "counting", &counting_module(&body)).unwrap();
    let out = app.map(&LIMITS, "in", b"abc").unwrap();
    assert_eq!(out.counters, BTreeMap::from([("hello".to_string(), 9)]));
    let body = format!("(call $counter (i32.const 3500) (i32.const 4) (i64.const 1)) {GOOD_MAP}");
    let app = load_wat(&rt, "forger", &counting_module(&body)).unwrap();
    let message = abi_message(app.map(&LIMITS, "in", b"abc"));
    assert!(message.contains("\"mr.x\""), "{message}");
}

#[test]
fn wordstats_counts_lines_words_and_distinct_keys() {
    let rt = AppRuntime::new().unwrap();
    let app = load(&rt, "wordstats");
    let out = app.map(&LIMITS, "in", b"a b\n\nc a\n").unwrap();
    let expected =
        [("empty_lines", 1), ("lines", 3), ("words", 4)].map(|(k, v)| (k.to_string(), v));
    assert_eq!(out.counters, BTreeMap::from(expected));
    let mut reducer = app.reducer(&LIMITS).unwrap();
    assert_eq!(
        reduce_all(&mut reducer, &[("a", &["2"]), ("b", &["1"])]),
        ["2", "1"]
    );
    assert_eq!(
        reducer.take_counters(),
        BTreeMap::from([("distinct_words".to_string(), 2)])
    );
    assert!(reducer.take_counters().is_empty(), "taken once");
}
