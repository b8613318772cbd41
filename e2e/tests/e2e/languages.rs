//! Apps in other languages: Python apps (componentize-py components) and C apps (core
//! modules built by clang), run by real workers next to the Rust apps.
//!
//! Their outputs must equal the Rust apps' byte for byte, and an independent reference
//! (the bench's native word count, written apart from every SDK), on the lab texts, on
//! a file of Unicode traps and on a slice of the bench's multilingual corpus, with a
//! worker SIGKILLed in the middle of a job. Hostile Python and C apps must each end as a
//! clear task failure that names the app, with the worker alive for the next job.

use mr_e2e::v1 as pb;
use mr_e2e::{Cluster, ClusterOptions, assert_same_lines};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

/// Word rule traps, one per line: combining marks, letter-like numbers, digits of other
/// scripts, letters outside the BMP, and bytes that are not UTF-8 (lone continuation
/// bytes, truncated and overlong sequences, encoded surrogates, 0xFF).
fn unicode_traps() -> Vec<u8> {
    let mut text: Vec<u8> = Vec::new();
    for line in [
        "Ça ira, señor Ñandú! Straße ÆØÅ æøå",
        "cafe\u{301} re\u{301}sume\u{301} naïve",
        "Ⅻ Ⅳ ⅻ chapter Ⅻ: xii ² ³ ½",
        "١٢٣ arabic ٤٥ digits ۱۲۳ and 𝟘𝟙",
        "Москва́ ЁЖИК ёжик Ελληνικά ΣΊΣΥΦΟΣ σίσυφος",
        "日本語のテキスト、漢字。한국어 텍스트 中文",
        "𐐀𐐨𐑉 deseret 𝐀𝐁𝐂 bold 𝔸𝔹 double-struck",
        "tab\tseparated\u{a0}nbsp\u{2009}thin\u{3000}ideographic",
        "emoji 😀 between words 👍🏽 and ZWJ 👨\u{200d}👩",
    ] {
        text.extend_from_slice(line.as_bytes());
        text.push(b'\n');
    }
    for bytes in [
        &b"lone\x80continuation\xbfbytes"[..],
        b"truncated\xe2\x82 three \xf0\x9f\x98 four",
        b"overlong\xc0\xafslash \xe0\x80\xaf again",
        b"surrogate\xed\xa0\x80half \xed\xbf\xbf",
        b"ff\xffbyte\xfe and \xf8\x88\x80\x80\x80 five-byte",
        b"mixed\xc3word\xa9 caf\xc3\xa9 ok",
    ] {
        text.extend_from_slice(bytes);
        text.push(b'\n');
    }
    text
}

/// `word count` lines from the bench's native word count (an implementation of the word
/// rule apart from the SDKs).
fn native_wc(data: &Path, inputs: &[String]) -> Vec<String> {
    let files: Vec<_> = inputs.iter().map(|i| data.join(i)).collect();
    let counts = mr_bench::native_word_count(&files, 2, 1 << 20).expect("native word count");
    let mut lines: Vec<String> = counts
        .iter()
        .map(|(w, n)| format!("{} {n}", String::from_utf8_lossy(w)))
        .collect();
    lines.sort();
    lines
}

/// The inverted index computed here from the same native word rule: word → "{n}
/// {docs}" with the distinct input names holding the word, sorted.
fn native_index(data: &Path, inputs: &[String]) -> Vec<String> {
    let mut index: BTreeMap<Vec<u8>, BTreeSet<&str>> = BTreeMap::new();
    for input in inputs {
        let text = std::fs::read(data.join(input)).expect("read input");
        mr_bench::for_each_word(&text, |w| {
            index.entry(w.to_vec()).or_default().insert(input.as_str());
        });
    }
    let mut lines: Vec<String> = index
        .into_iter()
        .map(|(w, docs)| {
            let docs: Vec<&str> = docs.into_iter().collect();
            format!(
                "{} {} {}",
                String::from_utf8_lossy(&w),
                docs.len(),
                docs.join(",")
            )
        })
        .collect();
    lines.sort();
    lines
}

/// Runs `app` to the end; fails the test unless the job succeeded.
async fn run(cluster: &Cluster, app: &str, inputs: &[String], split_bytes: u64) -> Vec<String> {
    let job_id = cluster
        .submit_request(pb::SubmitJobRequest {
            app: app.into(),
            inputs: inputs.to_vec(),
            n_reduce: 3,
            split_bytes,
            max_skipped_records: 0,
        })
        .await;
    let job = cluster.wait(&job_id, Duration::from_secs(300)).await;
    assert_eq!(job.state(), pb::JobState::Succeeded, "{app}: {}", job.error);
    cluster.output_lines(&job)
}

#[tokio::test(flavor = "multi_thread")]
async fn python_and_c_apps_give_the_rust_apps_output_byte_for_byte() {
    let mut cluster = Cluster::start(ClusterOptions {
        workers: 3,
        ..Default::default()
    })
    .await;
    let mut inputs = mr_e2e::lab_inputs();
    std::fs::write(cluster.data.join("input/traps.txt"), unicode_traps()).expect("write traps");
    inputs.push("input/traps.txt".into());
    // Two files of the bench's corpus: Latin, accented, Cyrillic, Greek, CJK, long lines.
    let corpus =
        mr_bench::generate_corpus(&cluster.data.join("input/corpus"), 2, 1 << 20).expect("corpus");
    for path in &corpus {
        let relative = path.strip_prefix(&cluster.data).expect("under data");
        inputs.push(relative.to_string_lossy().into_owned());
    }
    // Splits of 256 KiB: the corpus files are cut into several maps each.
    let split = 256 << 10;

    // The sequential references also compile the Python apps into the shared cache, so
    // the workers load them from there instead of each compiling them.
    let wc_expected = native_wc(&cluster.data, &inputs);
    for app in ["wc", "wc-py", "wc-c"] {
        assert_same_lines(
            &cluster.reference(app, &inputs),
            &wc_expected,
            &format!("{app} sequential against the native word count"),
        );
    }
    let index_expected = native_index(&cluster.data, &inputs);
    for app in ["indexer", "indexer-py"] {
        assert_same_lines(
            &cluster.reference(app, &inputs),
            &index_expected,
            &format!("{app} sequential against the native index"),
        );
    }

    for (app, expected) in [
        ("wc", &wc_expected),
        ("wc-c", &wc_expected),
        ("indexer", &index_expected),
        ("indexer-py", &index_expected),
    ] {
        let got = run(&cluster, app, &inputs, split).await;
        assert_same_lines(&got, expected, app);
    }

    // wc-py again, with a worker SIGKILLed once the job is under way: its tasks are
    // reassigned and the output is still exact.
    let job_id = cluster
        .submit_request(pb::SubmitJobRequest {
            app: "wc-py".into(),
            inputs: inputs.clone(),
            n_reduce: 3,
            split_bytes: split,
            max_skipped_records: 0,
        })
        .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let job = cluster.job(&job_id).await;
        let done = job.map.as_ref().map_or(0, |p| p.completed);
        if done >= 2 || mr_e2e::is_terminal(job.state()) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "wc-py made no progress"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cluster.signal_worker(0, libc::SIGKILL);
    let job = cluster.wait(&job_id, Duration::from_secs(300)).await;
    assert_eq!(job.state(), pb::JobState::Succeeded, "{}", job.error);
    assert_same_lines(
        &cluster.output_lines(&job),
        &wc_expected,
        "wc-py with a worker killed",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_python_and_c_apps_fail_clearly_and_the_worker_carries_on() {
    let mut cluster = Cluster::start(ClusterOptions {
        workers: 1,
        coordinator_args: [
            "--task-time-limit",
            "5s",
            "--task-memory-mib",
            "128",
            "--max-task-failures",
            "2",
        ]
        .map(String::from)
        .to_vec(),
        ..Default::default()
    })
    .await;
    // Warm the shared compile cache (and check the app's plain path) in one go.
    let words = "input/words.txt".to_string();
    std::fs::write(cluster.data.join(&words), "some words, some more\n").expect("write");
    assert_eq!(
        cluster.reference("hostile-py", std::slice::from_ref(&words)),
        ["more 1", "some 2", "words 1"]
    );
    let cases = [
        ("hostile-py", "PASSWD", "FileNotFoundError"),
        ("hostile-py", "SOCKET", "No module named 'socket'"),
        ("hostile-py", "LOOP", "time limit"),
        ("hostile-py", "ALLOC", "memory limit"),
        ("hostile-py", "RAISE", "ValueError: poisoned input"),
        ("hostile-c", "OOB", "out of bounds"),
    ];
    for (app, command, reason) in cases {
        let input = format!("input/{command}.txt");
        std::fs::write(cluster.data.join(&input), format!("{command}\nand words\n"))
            .expect("write");
        let job_id = cluster.submit(app, std::slice::from_ref(&input), 1).await;
        let job = cluster.wait(&job_id, Duration::from_secs(120)).await;
        assert_eq!(job.state(), pb::JobState::Failed, "{app} {command}");
        for needle in [app, "map-0", input.as_str(), "failed 2 times", reason] {
            assert!(
                job.error.contains(needle),
                "{app} {command}: error '{}' lacks '{needle}'",
                job.error
            );
        }
        assert_eq!(
            cluster.wait_worker(0, Duration::ZERO),
            None,
            "{app} {command}: the worker exited"
        );
    }
    // The same worker process runs the next Python and C jobs correctly.
    let inputs = mr_e2e::lab_inputs();
    let expected = cluster.reference("wc", &inputs);
    for app in ["wc-py", "wc-c"] {
        let got = run(&cluster, app, &inputs, 0).await;
        assert_same_lines(&got, &expected, app);
    }
}

/// The component entries of a compile cache folder: (name, inode).
fn component_entries(dir: &Path) -> Vec<(String, u64)> {
    use std::os::unix::fs::MetadataExt;
    let mut entries: Vec<(String, u64)> = std::fs::read_dir(dir)
        .map(|read| {
            read.filter_map(Result::ok)
                .filter_map(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    let inode = e.metadata().ok()?.ino();
                    (name.contains("-component-") && name.ends_with(".bin"))
                        .then_some((name, inode))
                })
                .collect()
        })
        .unwrap_or_default();
    entries.sort();
    entries
}

/// A cold compile of a CPython component takes longer than the task timeout: the
/// attempt heartbeats through it instead of timing out, the compiled code lands in the
/// worker's cache folder, and a new worker process on that folder uses it as it is.
#[tokio::test(flavor = "multi_thread")]
async fn a_cold_compile_is_heartbeated_and_kept_for_the_next_worker() {
    let cache = tempfile::tempdir().expect("tempdir");
    let mut cluster = Cluster::start(ClusterOptions {
        workers: 1,
        task_timeout: "3s".into(),
        worker_args: vec![
            "--cache-dir".into(),
            cache.path().to_string_lossy().into_owned(),
        ],
        ..Default::default()
    })
    .await;
    let inputs = vec!["input/pg-metamorphosis.txt".to_string()];
    let expected = cluster.reference("wc", &inputs);

    let job_id = cluster.submit("wc-py", &inputs, 2).await;
    let job = cluster.wait(&job_id, Duration::from_secs(300)).await;
    assert_eq!(job.state(), pb::JobState::Succeeded, "{}", job.error);
    assert_same_lines(&cluster.output_lines(&job), &expected, "wc-py, cold");
    assert_eq!(
        mr_e2e::attempts_with(&job, pb::AttemptOutcome::TimedOut),
        0,
        "no attempt timed out while the app compiled"
    );
    let entries = component_entries(cache.path());
    assert_eq!(entries.len(), 1, "one compiled component: {entries:?}");

    // A new worker process on the same folder: the entry is used, not written again.
    cluster.signal_worker(0, libc::SIGKILL);
    cluster.wait_worker(0, Duration::from_secs(10));
    cluster.spawn_worker();
    let job_id = cluster.submit("wc-py", &inputs, 2).await;
    let job = cluster.wait(&job_id, Duration::from_secs(120)).await;
    assert_eq!(job.state(), pb::JobState::Succeeded, "{}", job.error);
    assert_same_lines(&cluster.output_lines(&job), &expected, "wc-py, warm");
    assert_eq!(
        component_entries(cache.path()),
        entries,
        "the entry was reused"
    );
}
