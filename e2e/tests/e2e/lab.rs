//! The MIT 6.5840 Lab 1 tests (`test-mr.sh`), against real processes: every output is
//! compared line for line with the sequential reference run of the same app. Each one runs
//! twice, on both storages: `lab::folder::*` on the data folder (`file://`), `lab::s3::*`
//! on S3 (an `mr-s3-server` whose bucket is the data folder: the test reads and writes the
//! same files, the cluster reaches them over S3 only; see `TestStorage::S3`).

use mr_e2e::v1 as pb;
use mr_e2e::{Cluster, ClusterOptions, TestStorage, assert_same_lines, lab_inputs, log_events};
use rand::Rng;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::time::Duration;

const JOB_TIMEOUT: Duration = Duration::from_secs(120);

fn input_globs() -> Vec<String> {
    vec!["input/pg-*.txt".to_string()]
}

async fn wc_matches_the_sequential_reference_and_the_known_digest(storage: TestStorage) {
    let cluster = Cluster::start(ClusterOptions::on(storage)).await;
    let job_id = cluster.submit("wc", &input_globs(), 10).await;
    let job = cluster.wait(&job_id, JOB_TIMEOUT).await;
    assert_eq!(job.state(), pb::JobState::Succeeded, "{}", job.error);
    assert_eq!(job.input_files, lab_inputs());
    let lines = cluster.output_lines(&job);
    assert_same_lines(&lines, &cluster.reference("wc", &lab_inputs()), "wc");

    // An independent check: the digest of the sorted lab output given with the texts.
    assert_eq!(lines.len(), 22_107, "distinct words");
    let mut text = lines.join("\n");
    text.push('\n');
    assert_eq!(
        hex::encode(Sha256::digest(text.as_bytes())),
        "08d25f8329d8b7054a8330033736775249ffd98ca861f12e24e0cda079322c19"
    );
}

async fn wc_with_small_splits_counts_words_on_split_boundaries_once(storage: TestStorage) {
    let cluster = Cluster::start(ClusterOptions::on(storage)).await;
    let job_id = cluster
        .submit_request(pb::SubmitJobRequest {
            app: "wc".into(),
            inputs: input_globs(),
            n_reduce: 3,
            // Prime-sized splits fall mid-word and mid-line all over the texts.
            split_bytes: 65_521,
            max_skipped_records: 0,
        })
        .await;
    let job = cluster.wait(&job_id, JOB_TIMEOUT).await;
    assert_eq!(job.state(), pb::JobState::Succeeded, "{}", job.error);
    assert!(
        job.map.as_ref().is_some_and(|m| m.total > 40),
        "many splits"
    );
    assert_same_lines(
        &cluster.output_lines(&job),
        &cluster.reference("wc", &lab_inputs()),
        "wc with small splits",
    );
}

/// The lab's `ihash`, written out here (FNV-1a, 31 bits) so the test does not trust the
/// code under test to say where a key goes.
fn lab_partition(key: &str, n_reduce: u32) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in key.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    (h & 0x7fff_ffff) % n_reduce
}

/// A map task writes `mr-X-Y` only for the partitions its records fall in, and the reduces
/// read exactly those: with one word per input, each map leaves one file, and no task has
/// to run twice for a file it was told to read but that was never written.
async fn maps_write_files_only_for_partitions_that_hold_records(storage: TestStorage) {
    let cluster = Cluster::start(ClusterOptions {
        workers: 2,
        // Keep the intermediates after the job, to look at them.
        coordinator_args: vec!["--intermediate-retention".into(), "1h".into()],
        ..ClusterOptions::on(storage)
    })
    .await;
    let words = [
        "apple", "banana", "cherry", "damson", "elder", "fig", "grape", "hazel",
    ];
    let dir = cluster.data.join("input/one-word");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let mut inputs = Vec::new();
    for (i, word) in words.iter().cycle().take(24).enumerate() {
        let name = format!("input/one-word/w-{i:02}.txt");
        std::fs::write(cluster.data.join(&name), format!("{word} {word}\n")).expect("write");
        inputs.push(name);
    }
    let n_reduce = 8;
    let job_id = cluster
        .submit("wc", &["input/one-word/*.txt".into()], n_reduce)
        .await;
    let job = cluster.wait(&job_id, JOB_TIMEOUT).await;
    assert_eq!(job.state(), pb::JobState::Succeeded, "{}", job.error);
    assert_same_lines(
        &cluster.output_lines(&job),
        &cluster.reference("wc", &inputs),
        "wc over one-word files",
    );
    let mut expected: Vec<String> = inputs
        .iter()
        .enumerate()
        .map(|(x, _)| format!("mr-{x}-{}", lab_partition(words[x % words.len()], n_reduce)))
        .collect();
    expected.extend((0..n_reduce).map(|y| format!("mr-out-{y}")));
    expected.sort();
    let mut found: Vec<String> = std::fs::read_dir(cluster.data.join("jobs").join(&job_id))
        .expect("job folder")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    found.sort();
    assert_eq!(found, expected, "files in the job folder");
    for task in &job.tasks {
        assert_eq!(task.attempts, 1, "task {:?} {}", task.kind(), task.index);
    }
}

async fn indexer_matches_the_sequential_reference(storage: TestStorage) {
    let cluster = Cluster::start(ClusterOptions::on(storage)).await;
    let job_id = cluster
        .submit_request(pb::SubmitJobRequest {
            app: "indexer".into(),
            inputs: input_globs(),
            n_reduce: 10,
            split_bytes: 200_000,
            max_skipped_records: 0,
        })
        .await;
    let job = cluster.wait(&job_id, JOB_TIMEOUT).await;
    assert_eq!(job.state(), pb::JobState::Succeeded, "{}", job.error);
    let lines = cluster.output_lines(&job);
    assert_same_lines(
        &lines,
        &cluster.reference("indexer", &lab_inputs()),
        "indexer",
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("Gregor 1 input/pg-metamorphosis.txt")),
        "documents are named by their path in the data folder"
    );
}

/// True if two tasks of `kind` ran at the same time on different workers.
fn overlapped_on_different_workers(job: &pb::Job, kind: pb::TaskKind) -> bool {
    let runs: Vec<(String, i64, i64)> = job
        .tasks
        .iter()
        .filter(|t| t.kind() == kind)
        .flat_map(|t| &t.history)
        .filter(|a| a.outcome() == pb::AttemptOutcome::Succeeded)
        .map(|a| (a.worker.clone(), a.started_at_ms, a.finished_at_ms))
        .collect();
    runs.iter()
        .any(|a| runs.iter().any(|b| a.0 != b.0 && a.1 < b.2 && b.1 < a.2))
}

async fn map_tasks_run_in_parallel(storage: TestStorage) {
    let cluster = Cluster::start(ClusterOptions {
        workers: 2,
        ..ClusterOptions::on(storage)
    })
    .await;
    let job_id = cluster.submit("mtiming", &input_globs(), 1).await;
    let job = cluster.wait(&job_id, JOB_TIMEOUT).await;
    assert_eq!(job.state(), pb::JobState::Succeeded, "{}", job.error);
    assert!(overlapped_on_different_workers(&job, pb::TaskKind::Map));
}

async fn reduce_tasks_run_in_parallel(storage: TestStorage) {
    let cluster = Cluster::start(ClusterOptions {
        workers: 2,
        ..ClusterOptions::on(storage)
    })
    .await;
    let job_id = cluster.submit("rtiming", &input_globs(), 4).await;
    let job = cluster.wait(&job_id, JOB_TIMEOUT).await;
    assert_eq!(job.state(), pb::JobState::Succeeded, "{}", job.error);
    assert!(overlapped_on_different_workers(&job, pb::TaskKind::Reduce));
}

async fn each_map_runs_exactly_once_when_nothing_fails(storage: TestStorage) {
    let mut cluster = Cluster::start(ClusterOptions {
        workers: 3,
        ..ClusterOptions::on(storage)
    })
    .await;
    let job_id = cluster.submit("jobcount", &input_globs(), 2).await;
    let job = cluster.wait(&job_id, JOB_TIMEOUT).await;
    assert_eq!(job.state(), pb::JobState::Succeeded, "{}", job.error);
    assert_eq!(cluster.output_lines(&job), ["a 8"]);
    // Count executions where they happen, in the workers' own logs, not in the coordinator.
    let mut executions = 0;
    for i in cluster.live_workers() {
        cluster.signal_worker(i, libc::SIGTERM);
        assert_eq!(
            cluster.wait_worker(i, Duration::from_secs(10)),
            Some(0),
            "graceful exit"
        );
        executions += log_events(&cluster.worker_log(i), "task finished")
            .iter()
            .filter(|e| e["fields"]["kind"] == "map")
            .count();
    }
    assert_eq!(executions, 8, "map executions across all workers");
    for task in &job.tasks {
        assert_eq!(task.attempts, 1, "task {:?} {}", task.kind(), task.index);
    }
}

async fn no_output_changes_after_the_job_is_reported_done(storage: TestStorage) {
    let cluster = Cluster::start(ClusterOptions::on(storage)).await;
    let job_id = cluster.submit("early_exit", &input_globs(), 4).await;
    let job = cluster.wait(&job_id, JOB_TIMEOUT).await;
    assert_eq!(job.state(), pb::JobState::Succeeded, "{}", job.error);
    let at_done = cluster.output_lines(&job);
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        cluster.output_lines(&job),
        at_done,
        "outputs changed after SUCCEEDED"
    );
    assert_same_lines(
        &at_done,
        &cluster.reference("early_exit", &lab_inputs()),
        "early_exit",
    );
}

/// Workers are SIGKILLed (and replaced) and SIGSTOPped at random while the crash app fails
/// at random too; the output must still be exactly the reference.
async fn output_is_exact_while_workers_crash_and_stall(storage: TestStorage) {
    let mut cluster = Cluster::start(ClusterOptions {
        workers: 3,
        task_timeout: "2s".into(),
        coordinator_args: vec!["--max-task-failures".into(), "100".into()],
        ..ClusterOptions::on(storage)
    })
    .await;
    // One map per file, as in the lab: crash's output names each map call's file.
    let job_id = cluster.submit("crash", &input_globs(), 10).await;
    let mut stopped: HashMap<usize, tokio::time::Instant> = HashMap::new();
    let (mut kills, mut stops) = (0, 0);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(240);
    let job = loop {
        let job = cluster.job(&job_id).await;
        if mr_e2e::is_terminal(job.state()) {
            break job;
        }
        assert!(tokio::time::Instant::now() < deadline, "job did not finish");
        let now = tokio::time::Instant::now();
        for (&i, &until) in &stopped {
            if now >= until {
                cluster.signal_worker(i, libc::SIGCONT);
            }
        }
        stopped.retain(|_, until| now < *until);
        let live = cluster.live_workers();
        let (victim, action, pause) = {
            let mut rng = rand::rng();
            (
                live[rng.random_range(0..live.len())],
                // The first round always kills, so every run injects at least one fault.
                if kills + stops == 0 {
                    0
                } else {
                    rng.random_range(0..4)
                },
                Duration::from_millis(rng.random_range(500..4000)),
            )
        };
        match action {
            0 if live.len() > 1 => {
                cluster.signal_worker(victim, libc::SIGKILL);
                stopped.remove(&victim);
                cluster.spawn_worker();
                kills += 1;
            }
            1 if !stopped.contains_key(&victim) => {
                cluster.signal_worker(victim, libc::SIGSTOP);
                stopped.insert(victim, now + pause);
                stops += 1;
            }
            _ => {}
        }
        if cluster.live_workers().len() - stopped.len() < 2 {
            cluster.spawn_worker();
        }
        tokio::time::sleep(Duration::from_millis(700)).await;
    };
    for i in stopped.keys() {
        cluster.signal_worker(*i, libc::SIGCONT);
    }
    assert_eq!(job.state(), pb::JobState::Succeeded, "{}", job.error);
    assert_same_lines(
        &cluster.output_lines(&job),
        &cluster.reference("nocrash", &lab_inputs()),
        "crash",
    );
    eprintln!("survived {kills} kills and {stops} stops");
    assert!(kills > 0, "faults were injected");
}

on_both_storages!(
    wc_matches_the_sequential_reference_and_the_known_digest,
    wc_with_small_splits_counts_words_on_split_boundaries_once,
    maps_write_files_only_for_partitions_that_hold_records,
    indexer_matches_the_sequential_reference,
    map_tasks_run_in_parallel,
    reduce_tasks_run_in_parallel,
    each_map_runs_exactly_once_when_nothing_fails,
    no_output_changes_after_the_job_is_reported_done,
    output_is_exact_while_workers_crash_and_stall,
);
