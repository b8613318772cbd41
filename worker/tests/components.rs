//! Apps as components (Python, through componentize-py) and the disk cache of compiled
//! apps, against the real apps in `target/apps` (`make build` builds them).
//!
//! The Python components are compiled once per test run into `target/mr-test-cache`, the
//! cache the end-to-end tests share; the cache's own behaviour (cold, warm, damaged) is
//! tested on a fresh folder with a small module.

use std::path::PathBuf;
use std::time::Duration;

use mr_common::app_interface::Kind;
use mr_worker::app_runtime::cache::DiskCache;
use mr_worker::app_runtime::{AppError, AppModule, AppRuntime, CancelToken, Limits, ReduceBatch};
use sha2::{Digest, Sha256};

fn target() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target")
}

fn app_bytes(app: &str) -> (Vec<u8>, String) {
    let path = target().join("apps").join(format!("{app}.wasm"));
    let wasm = std::fs::read(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run `make build`)", path.display()));
    let sha = hex::encode(Sha256::digest(&wasm));
    (wasm, sha)
}

/// A runtime on the shared test cache, and `app` loaded in it.
fn load_shared(app: &str) -> (AppRuntime, AppModule) {
    let rt = AppRuntime::with_cache_dir(Some(&target().join("mr-test-cache"))).unwrap();
    let (wasm, sha) = app_bytes(app);
    let module = rt.load(app, &sha, &wasm).unwrap_or_else(|e| panic!("{e}"));
    (rt, module)
}

const LIMITS: Limits = Limits {
    time: Duration::from_secs(60),
    memory_bytes: 256 << 20,
};

fn records(module: &AppModule, contents: &[u8]) -> Vec<(String, String)> {
    let out = module.map(&LIMITS, "input/x.txt", contents).unwrap();
    let mut records: Vec<(String, String)> = out
        .iter()
        .map(|(k, v)| {
            (
                String::from_utf8(k.to_vec()).unwrap(),
                String::from_utf8(v.to_vec()).unwrap(),
            )
        })
        .collect();
    records.sort();
    records
}

#[test]
fn compiled_apps_are_kept_on_disk_and_a_damaged_entry_is_compiled_again() {
    let dir = tempfile::tempdir().unwrap();
    let (wasm, sha) = app_bytes("wc");
    let text = b"the cat and the hat\n";

    // Cold: compiled, then saved.
    let cold = AppRuntime::with_cache_dir(Some(dir.path())).unwrap();
    let expected = records(&cold.load("wc", &sha, &wasm).unwrap(), text);
    assert_eq!(cold.cache_stats(), (0, 1));
    let entry = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "bin"))
        .expect("an entry was written");
    assert!(entry.to_string_lossy().contains(&sha));

    // Warm: a new runtime (as after a restart) loads it without compiling.
    let warm = AppRuntime::with_cache_dir(Some(dir.path())).unwrap();
    assert_eq!(
        records(&warm.load("wc", &sha, &wasm).unwrap(), text),
        expected
    );
    assert_eq!(warm.cache_stats(), (1, 0));

    // Damaged (one flipped byte in the code), then truncated: detected, never trusted,
    // compiled again and rewritten.
    for damage in [
        |bytes: &mut Vec<u8>| {
            let at = bytes.len() / 2;
            bytes[at] ^= 0x40;
        },
        |bytes: &mut Vec<u8>| bytes.truncate(bytes.len() / 3),
    ] {
        let mut bytes = std::fs::read(&entry).unwrap();
        let sound = bytes.clone();
        damage(&mut bytes);
        std::fs::write(&entry, &bytes).unwrap();
        let rt = AppRuntime::with_cache_dir(Some(dir.path())).unwrap();
        assert_eq!(
            records(&rt.load("wc", &sha, &wasm).unwrap(), text),
            expected
        );
        assert_eq!(rt.cache_stats(), (0, 1), "a damaged entry is a miss");
        assert_eq!(std::fs::read(&entry).unwrap(), sound, "rewritten whole");
    }

    // The entry's name is the cache's to make: the same app as a component is another.
    let cache = DiskCache::open(dir.path(), &wasmtime::Engine::default()).unwrap();
    assert_ne!(
        cache.path(&sha, Kind::Module),
        cache.path(&sha, Kind::Component)
    );
}

#[test]
fn an_unusable_cache_folder_only_costs_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"not a folder").unwrap();
    let rt = AppRuntime::with_cache_dir(Some(&file.join("cache"))).unwrap();
    let (wasm, sha) = app_bytes("wc");
    assert_eq!(
        records(&rt.load("wc", &sha, &wasm).unwrap(), b"a b a"),
        [("a".into(), "2".into()), ("b".into(), "1".into())]
    );
}

#[test]
fn python_wc_maps_and_reduces_as_the_rust_app() {
    let (_rt, py) = load_shared("wc-py");
    let rust = AppRuntime::new().unwrap();
    let (wasm, sha) = app_bytes("wc");
    let rs = rust.load("wc", &sha, &wasm).unwrap();
    let text = "Ça ira! The cat, the HAT; ﬁsh Ⅻ Straße 日本語 x1y \u{301}e \u{10400}b\n"
        .as_bytes()
        .iter()
        .chain(b"bad\xffutf\xc3 8\n")
        .copied()
        .collect::<Vec<u8>>();
    assert_eq!(records(&py, &text), records(&rs, &text));

    // One reducer serves several batches, as a reduce task's session does.
    let mut reducer = py.reducer(&LIMITS).unwrap();
    for groups in [
        vec![("a", vec!["1", "2"]), ("b", vec!["5"])],
        vec![("c", vec!["10", "20", "30"])],
    ] {
        let mut batch = ReduceBatch::new();
        for (key, values) in &groups {
            batch.push_group(key.as_bytes(), values.iter().copied());
        }
        let values: Vec<String> = reducer
            .reduce_batch(&batch)
            .unwrap()
            .into_iter()
            .map(|v| String::from_utf8(v).unwrap())
            .collect();
        let sums: Vec<String> = groups
            .iter()
            .map(|(_, vs)| {
                vs.iter()
                    .map(|v| v.parse::<u64>().unwrap())
                    .sum::<u64>()
                    .to_string()
            })
            .collect();
        assert_eq!(values, sums);
    }
}

#[test]
fn a_component_obeys_the_limits_and_cancellation_and_sees_no_host() {
    let (_rt, app) = load_shared("hostile-py");
    let name = || "hostile-py".to_string();
    let short = Limits {
        time: Duration::from_millis(500),
        memory_bytes: 128 << 20,
    };
    assert_eq!(
        app.map(&short, "input/x", b"LOOP\n").unwrap_err(),
        AppError::TimeLimit {
            app: name(),
            limit: short.time
        }
    );
    // Time enough to reach the memory limit first, however loaded the machine.
    let small = Limits {
        time: Duration::from_secs(60),
        ..short
    };
    assert_eq!(
        app.map(&small, "input/x", b"ALLOC\n").unwrap_err(),
        AppError::MemoryLimit {
            app: name(),
            limit_bytes: small.memory_bytes
        }
    );
    // Cancelled from another thread while it loops, long before its time limit.
    let token = CancelToken::default();
    let cancel = token.clone();
    let canceller = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(200));
        cancel.cancel();
    });
    let err = app
        .with_cancel(token)
        .map(&LIMITS, "input/x", b"LOOP\n")
        .unwrap_err();
    canceller.join().unwrap();
    assert_eq!(err, AppError::Cancelled { app: name() });

    // WASI is there (hostile-py imports it), with nothing behind it: no file system,
    // and an exception's type and message reach the task's error.
    for (command, needle) in [
        (&b"PASSWD\n"[..], "FileNotFoundError"),
        (b"RAISE\n", "ValueError: poisoned input input/x"),
    ] {
        match app.map(&LIMITS, "input/x", command).unwrap_err() {
            AppError::Trap { app, message } => {
                assert_eq!(app, name());
                assert!(message.contains(needle), "{message}");
            }
            other => panic!("{other:?}"),
        }
    }
    // No environment, and a clock stuck at 1970.
    assert_eq!(records(&app, b"ENV\n"), [("env".into(), "[]".into())]);
    assert_eq!(records(&app, b"CLOCK\n"), [("clock".into(), "0".into())]);
    // The same module still runs clean input after all that.
    assert_eq!(
        records(&app, b"fine words fine\n"),
        [("fine".into(), "2".into()), ("words".into(), "1".into())]
    );
}

/// Both kinds of component are built and run: the Python apps with stubbed WASI import
/// only the world's host interface; hostile-py imports WASI 0.2, which the test above
/// finds empty.
#[test]
fn stubbed_apps_import_only_the_host_and_hostile_py_imports_wasi() {
    use mr_common::app_interface::{HOST_INTERFACE, component_imports};
    for app in ["wc-py", "indexer-py"] {
        let imports = component_imports(&app_bytes(app).0).unwrap();
        assert_eq!(imports, [HOST_INTERFACE], "{app}");
    }
    let imports = component_imports(&app_bytes("hostile-py").0).unwrap();
    assert!(imports.iter().any(|i| i == HOST_INTERFACE), "{imports:?}");
    for wasi in ["wasi:cli/environment@0.2", "wasi:filesystem/preopens@0.2"] {
        assert!(
            imports.iter().any(|i| i.starts_with(wasi)),
            "{wasi} not in {imports:?}"
        );
    }
}
