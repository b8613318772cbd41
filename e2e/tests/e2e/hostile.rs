//! Apps that misbehave: each task fails with a message naming the app, the task, the input
//! and the reason; the job fails after the configured number of attempts instead of
//! retrying forever; the same worker process then runs the next job correctly.

use mr_e2e::v1 as pb;
use mr_e2e::{Cluster, ClusterOptions, TestStorage};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread")]
async fn misbehaving_apps_fail_their_job_clearly_and_the_worker_carries_on() {
    let mut cluster = Cluster::start(ClusterOptions {
        workers: 1,
        coordinator_args: [
            "--task-time-limit",
            "1s",
            "--task-memory-mib",
            "64",
            "--max-task-failures",
            "2",
        ]
        .map(String::from)
        .to_vec(),
        ..Default::default()
    })
    .await;
    let input = "input/pg-metamorphosis.txt".to_string();
    let cases = [
        ("loop_forever", "time limit"),
        ("trap", "deliberate failure"),
        ("alloc_forever", "memory limit"),
        ("open_file", "open_file"),
        ("big_output", "big_output"),
    ];
    for (app, reason) in cases {
        let job_id = cluster.submit(app, std::slice::from_ref(&input), 1).await;
        let job = cluster.wait(&job_id, Duration::from_secs(60)).await;
        assert_eq!(job.state(), pb::JobState::Failed, "{app}");
        for needle in [app, "map-0", input.as_str(), "failed 2 times", reason] {
            assert!(
                job.error.contains(needle),
                "{app}: error '{}' lacks '{needle}'",
                job.error
            );
        }
        assert!(
            job.outputs.is_empty(),
            "{app}: a failed job lists no outputs"
        );
        assert_eq!(
            cluster.live_workers(),
            [0],
            "{app}: the worker is still there"
        );
        assert_eq!(
            cluster.wait_worker(0, Duration::ZERO),
            None,
            "{app}: worker exited"
        );
    }
    let job_id = cluster.submit("wc", std::slice::from_ref(&input), 2).await;
    let job = cluster.wait(&job_id, Duration::from_secs(60)).await;
    assert_eq!(job.state(), pb::JobState::Succeeded, "{}", job.error);
    assert_eq!(
        cluster.output_lines(&job),
        cluster.reference("wc", std::slice::from_ref(&input))
    );
}

/// Skipping bad records: the `poison` app (word count) fails on every line holding
/// `POISON` in map and on the key `poison` in reduce. Without a budget the job fails as
/// always; with enough, it succeeds with exactly the clean inputs' output and lists every
/// skipped record; with too little, it fails naming the record over the budget.
async fn bad_records_are_skipped_within_the_jobs_budget_and_listed(storage: TestStorage) {
    let cluster = Cluster::start(ClusterOptions {
        workers: 2,
        coordinator_args: ["--max-task-failures", "2"].map(String::from).to_vec(),
        storage,
        ..Default::default()
    })
    .await;
    let poisoned = "input/poison.txt";
    let lines = [
        "the first clean line of the file",
        "a POISON line the map fails on",
        "more clean words here",
        "POISON again, at the start",
        "a lowercase poison word for the reduce",
        "clean words, then POISON at the end",
        "the last clean line",
    ];
    let mut text = String::new();
    let mut bad_offsets = Vec::new();
    let mut clean = String::new();
    for line in lines {
        if line.contains("POISON") {
            bad_offsets.push(text.len() as u64);
        } else {
            clean.push_str(line);
            clean.push('\n');
        }
        text.push_str(line);
        text.push('\n');
    }
    std::fs::write(cluster.data.join(poisoned), &text).expect("write the poisoned input");
    let mut inputs = mr_e2e::lab_inputs();
    inputs.push(poisoned.to_string());
    // The reference: word count over the same inputs with the poisoned lines removed, in
    // a folder of its own, less the key the reduce fails on.
    let clean_dir = cluster.dir.path().join("clean");
    std::fs::create_dir_all(clean_dir.join("input")).expect("mkdir");
    for name in mr_e2e::lab_inputs() {
        std::fs::copy(cluster.data.join(&name), clean_dir.join(&name)).expect("copy");
    }
    std::fs::write(clean_dir.join(poisoned), clean).expect("write the clean input");
    let reference: Vec<String> = mr_e2e::reference_in(&clean_dir, "wc", &inputs)
        .into_iter()
        .filter(|l| !l.starts_with("poison "))
        .collect();
    let expected_skips = bad_offsets.len() as u64 + 1;

    let submit = |max_skipped_records: u64| {
        cluster.submit_request(pb::SubmitJobRequest {
            app: "poison".into(),
            inputs: inputs.clone(),
            n_reduce: 3,
            split_bytes: 0,
            max_skipped_records,
        })
    };
    let poisoned_map = |job: &pb::Job| {
        job.tasks
            .iter()
            .find(|t| t.input.starts_with(poisoned))
            .map(|t| t.index)
            .expect("the poisoned file's map task")
    };

    // No budget: the job fails as it always did, naming the app and the task.
    let job = cluster
        .wait(&submit(0).await, Duration::from_secs(120))
        .await;
    assert_eq!(job.state(), pb::JobState::Failed);
    let task = format!("map-{}", poisoned_map(&job));
    for needle in ["poison", task.as_str(), "failed 2 times", "a poisoned line"] {
        assert!(
            job.error.contains(needle),
            "'{}' lacks '{needle}'",
            job.error
        );
    }
    assert_eq!((job.skipped_records, job.skipped.len()), (0, 0));

    // Enough budget: the output is exactly that of the clean inputs, every skip listed.
    let job = cluster
        .wait(&submit(expected_skips).await, Duration::from_secs(120))
        .await;
    assert_eq!(job.state(), pb::JobState::Succeeded, "{}", job.error);
    mr_e2e::assert_same_lines(&cluster.output_lines(&job), &reference, "poison with skips");
    assert_eq!(job.skipped_records, expected_skips);
    let map = poisoned_map(&job);
    let lines: Vec<(u32, &str, u64)> = job
        .skipped
        .iter()
        .filter(|s| s.kind() == pb::TaskKind::Map)
        .map(|s| (s.task, s.input.as_str(), s.offset))
        .collect();
    let expected: Vec<(u32, &str, u64)> = bad_offsets.iter().map(|&o| (map, poisoned, o)).collect();
    assert_eq!(lines, expected);
    let keys: Vec<&str> = job
        .skipped
        .iter()
        .filter(|s| s.kind() == pb::TaskKind::Reduce)
        .map(|s| s.key.as_str())
        .collect();
    assert_eq!(keys, ["poison"]);
    assert!(job.skipped.iter().all(|s| s.error.contains("poison app")));

    // Too little budget: the job fails, naming the task and the first record over it.
    let budget = bad_offsets.len() as u64 - 1;
    let job = cluster
        .wait(&submit(budget).await, Duration::from_secs(120))
        .await;
    assert_eq!(job.state(), pb::JobState::Failed);
    let record = format!("{poisoned}@{}", bad_offsets[budget as usize]);
    for needle in [
        "poison",
        task.as_str(),
        record.as_str(),
        "max_skipped_records",
    ] {
        assert!(
            job.error.contains(needle),
            "'{}' lacks '{needle}'",
            job.error
        );
    }
    assert!(job.outputs.is_empty());
    assert_eq!(job.skipped_records, 0, "a failed task's skips never count");
}

on_both_storages!(bad_records_are_skipped_within_the_jobs_budget_and_listed,);
