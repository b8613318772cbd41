//! Fuzzes the coordinator's job-request validation,
//! `mr_coordinator::service::validate_submission`, against a fixed data folder:
//!
//! ```text
//! <tmp>/data/input/{a.txt, b.txt, sub/c.txt, .hidden}
//! <tmp>/data/input/out     -> <tmp>/secret     (symlink out of the data folder)
//! <tmp>/data/input/outdir  -> <tmp>/outside/   (directory symlink out of it)
//! <tmp>/data/.mr/apps/     (where the AppStore saves the modules it loads)
//! <tmp>/secret, <tmp>/outside/secret2
//! <tmp>/apps/wc.wasm
//! ```
//!
//! Checks: it never panics, and an accepted request only names regular files that lie
//! inside the data folder once symlinks are resolved (never a secret), with sizes as on
//! disk, sorted and without duplicates; dot files only when a pattern spells a leading dot;
//! `n_reduce` in 1..=10000; `split_bytes` as asked, or the default for 0.
//!
//! `MR_FUZZ_VERBOSE=1` prints each decoded request and its result (to check seeds).
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use mr_common::DataDir;
use mr_coordinator::apps::AppStore;
use mr_coordinator::config::{CoordinatorConfig, MAX_N_REDUCE};
use mr_coordinator::service::validate_submission;
use mr_proto::v1::SubmitJobRequest;
use std::path::{Component, Path, PathBuf};
use std::sync::OnceLock;

/// The smallest module with the app interface (a submission is checked for it): imports
/// `mr.log`, exports `memory` and the four `mr_*` functions, which do nothing.
const NOOP_APP: &[u8] = b"\x00\x61\x73\x6d\x01\x00\x00\x00\x01\x15\x04\x60\x02\x7f\x7f\x00\x60\x00\x01\x7f\
      \x60\x01\x7f\x01\x7f\x60\x02\x7f\x7f\x01\x7e\x02\x0a\x01\x02\x6d\x72\x03\x6c\x6f\
      \x67\x00\x00\x03\x05\x04\x01\x02\x03\x03\x05\x03\x01\x00\x01\x07\x3b\x05\x06\x6d\
      \x65\x6d\x6f\x72\x79\x02\x00\x0e\x6d\x72\x5f\x61\x62\x69\x5f\x76\x65\x72\x73\x69\
      \x6f\x6e\x00\x01\x08\x6d\x72\x5f\x61\x6c\x6c\x6f\x63\x00\x02\x06\x6d\x72\x5f\x6d\
      \x61\x70\x00\x03\x09\x6d\x72\x5f\x72\x65\x64\x75\x63\x65\x00\x04\x0a\x15\x04\x04\
      \x00\x41\x01\x0b\x04\x00\x41\x00\x0b\x04\x00\x42\x00\x0b\x04\x00\x42\x00\x0b";

/// The fuzzed request. (Field order matters for the seed encoding in `fuzz/seeds.py`.)
#[derive(Arbitrary, Debug)]
struct Submission {
    app: String,
    inputs: Vec<String>,
    n_reduce: u32,
    split_bytes: u64,
}

struct Fixture {
    tmp: PathBuf,
    data: DataDir,
    apps: AppStore,
    config: CoordinatorConfig,
    /// Canonical paths of the files outside the data folder that symlinks point to.
    secrets: Vec<PathBuf>,
    verbose: bool,
}

static FIXTURE: OnceLock<Fixture> = OnceLock::new();

/// Removes the temporary folder when libFuzzer exits (statics are never dropped).
extern "C" fn remove_fixture() {
    if let Some(f) = FIXTURE.get() {
        let _ = std::fs::remove_dir_all(&f.tmp);
    }
}

fn fixture() -> &'static Fixture {
    FIXTURE.get_or_init(|| {
        let tmp = tempfile::Builder::new()
            .prefix("mr-fuzz-submit-")
            .tempdir()
            .expect("temp dir")
            .keep();
        let write = |rel: &str, bytes: &[u8]| {
            let path = tmp.join(rel);
            std::fs::create_dir_all(path.parent().unwrap()).expect("mkdir");
            std::fs::write(&path, bytes).expect("write fixture");
        };
        write("data/input/a.txt", b"the quick brown fox\n");
        write("data/input/b.txt", b"jumps over\nthe lazy dog\n");
        write("data/input/sub/c.txt", b"c\n");
        write("data/input/.hidden", b"hidden\n");
        write("secret", b"SECRET\n");
        write("outside/secret2", b"SECRET2\n");
        write("apps/wc.wasm", NOOP_APP);
        std::os::unix::fs::symlink(tmp.join("secret"), tmp.join("data/input/out"))
            .expect("symlink");
        std::os::unix::fs::symlink(tmp.join("outside"), tmp.join("data/input/outdir"))
            .expect("symlink");
        let data = DataDir::open(tmp.join("data")).expect("data dir");
        let config = CoordinatorConfig {
            data_dir: tmp.join("data"),
            apps_dir: tmp.join("apps"),
            ..CoordinatorConfig::default()
        };
        let secrets = ["secret", "outside/secret2"]
            .iter()
            .map(|s| tmp.join(s).canonicalize().expect("canonical secret"))
            .collect();
        // SAFETY: registers a plain `extern "C" fn` with no preconditions.
        unsafe { libc::atexit(remove_fixture) };
        Fixture {
            // As the coordinator does (`run` in coordinator/src/lib.rs).
            apps: AppStore::new(tmp.join("apps"), data.state_dir().join("apps")),
            tmp,
            data,
            config,
            secrets,
            verbose: std::env::var_os("MR_FUZZ_VERBOSE").is_some(),
        }
    })
}

/// Whether a request path is relative and free of `..` (what validation must enforce).
fn is_relative_inside(path: &str) -> bool {
    !path.is_empty()
        && Path::new(path)
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
}

fuzz_target!(|s: Submission| {
    let f = fixture();
    let req = SubmitJobRequest {
        app: s.app.clone(),
        inputs: s.inputs.clone(),
        n_reduce: s.n_reduce,
        split_bytes: s.split_bytes,
        max_skipped_records: 0,
    };
    let result = validate_submission(req, &f.apps, &f.data, &f.config);
    if f.verbose {
        eprintln!("{s:?}\n  -> {result:?}");
    }
    let Ok(spec) = result else { return };

    assert_eq!(spec.app.name, s.app);
    assert_eq!(s.app, "wc", "only wc.wasm exists");
    assert!((1..=10_000).contains(&spec.n_reduce) && spec.n_reduce <= MAX_N_REDUCE);
    assert_eq!(spec.n_reduce, s.n_reduce);
    let split = if s.split_bytes == 0 {
        f.config.default_split_bytes
    } else {
        s.split_bytes
    };
    assert_eq!(spec.split_bytes, split);
    assert_eq!(spec.inputs, s.inputs);
    assert!(!s.inputs.is_empty());
    assert!(
        s.inputs.iter().all(|p| is_relative_inside(p)),
        "accepted {:?}",
        s.inputs
    );
    assert!(!spec.input_files.is_empty());
    assert!(
        spec.input_files.windows(2).all(|w| w[0].0 < w[1].0),
        "input files not sorted or duplicated: {:?}",
        spec.input_files
    );

    let root = f.data.root();
    // A pattern component with a literal leading dot (`.` itself included) may select
    // dot files; otherwise none may appear.
    let dot_allowed = s
        .inputs
        .iter()
        .any(|p| p.split('/').any(|c| c.starts_with('.')));
    for (relative, size) in &spec.input_files {
        assert!(is_relative_inside(relative), "input file name {relative:?}");
        let canonical = root
            .join(relative)
            .canonicalize()
            .unwrap_or_else(|e| panic!("accepted input {relative:?} does not resolve: {e}"));
        assert!(
            canonical.starts_with(root),
            "accepted input {relative:?} resolves to {} outside the data folder {}",
            canonical.display(),
            root.display()
        );
        assert!(
            !f.secrets.contains(&canonical),
            "accepted input {relative:?} is a secret"
        );
        let meta = std::fs::metadata(&canonical).expect("metadata");
        assert!(
            meta.is_file(),
            "accepted input {relative:?} is not a regular file"
        );
        assert_eq!(meta.len(), *size, "size of {relative:?}");
        if !dot_allowed {
            assert!(
                !relative.split('/').any(|c| c.starts_with('.')),
                "dot file {relative:?} selected by {:?}",
                s.inputs
            );
        }
    }
});
