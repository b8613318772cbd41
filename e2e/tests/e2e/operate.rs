//! What an operator reads over the API, against a real cluster: a job's output streamed by
//! `ReadOutput` (no data folder needed), the workers as `ListWorkers` shows them, and how
//! their processes are set up.

use mr_e2e::v1 as pb;
use mr_e2e::{Cluster, ClusterOptions, TestStorage, assert_same_lines, lab_inputs};
use std::time::Duration;

/// Every chunk of a job's output, in order.
async fn read_output(
    cluster: &Cluster,
    job_id: &str,
) -> Result<Vec<pb::OutputChunk>, tonic::Status> {
    let mut stream = cluster
        .jobs()
        .await
        .read_output(pb::ReadOutputRequest {
            job_id: job_id.into(),
        })
        .await?
        .into_inner();
    let mut chunks = Vec::new();
    while let Some(chunk) = stream.message().await? {
        chunks.push(chunk);
    }
    Ok(chunks)
}

async fn read_output_streams_exactly_the_committed_lines_in_whole_line_chunks(
    storage: TestStorage,
) {
    let cluster = Cluster::start(ClusterOptions {
        workers: 2,
        storage,
        ..Default::default()
    })
    .await;
    // Big enough that an output spans several 64 KiB chunks.
    let inputs = lab_inputs();
    let job_id = cluster.submit("indexer", &inputs, 2).await;
    let job = cluster.wait(&job_id, Duration::from_secs(120)).await;
    assert_eq!(job.state(), pb::JobState::Succeeded, "{}", job.error);
    let chunks = read_output(&cluster, &job_id).await.expect("read output");
    assert!(chunks.len() > 2, "{} chunks", chunks.len());
    assert!(
        chunks
            .iter()
            .all(|c| c.data.ends_with(b"\n") && c.data.len() <= 64 << 10),
        "every chunk is whole lines of at most 64 KiB"
    );
    // The files come in partition order, each from the job's outputs.
    let mut files: Vec<&str> = chunks.iter().map(|c| c.file.as_str()).collect();
    files.dedup();
    assert_eq!(
        files,
        job.outputs.iter().map(String::as_str).collect::<Vec<_>>()
    );
    let text: Vec<u8> = chunks.into_iter().flat_map(|c| c.data).collect();
    let mut lines: Vec<String> = String::from_utf8(text)
        .expect("utf-8")
        .lines()
        .map(str::to_string)
        .collect();
    // Partition after partition, as the files are: sorted, the lines of the reference.
    lines.sort();
    assert_same_lines(&lines, &cluster.reference("indexer", &inputs), "ReadOutput");
}

#[tokio::test(flavor = "multi_thread")]
async fn read_output_refuses_an_unknown_or_unfinished_job_by_its_code() {
    let cluster = Cluster::start(ClusterOptions {
        workers: 0,
        ..Default::default()
    })
    .await;
    let err = read_output(&cluster, "nope")
        .await
        .expect_err("unknown job");
    assert_eq!(err.code(), tonic::Code::NotFound, "{err:?}");
    assert!(err.message().contains("nope"), "{}", err.message());
    // No worker: the job stays PENDING.
    let job_id = cluster.submit("wc", &lab_inputs(), 2).await;
    let err = read_output(&cluster, &job_id)
        .await
        .expect_err("pending job");
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains(&job_id), "{}", err.message());
}

async fn list_workers(cluster: &Cluster) -> Vec<pb::WorkerInfo> {
    cluster
        .jobs()
        .await
        .list_workers(pb::ListWorkersRequest {})
        .await
        .expect("list workers")
        .into_inner()
        .workers
}

#[tokio::test(flavor = "multi_thread")]
async fn list_workers_shows_each_worker_its_reports_and_a_lost_one() {
    let mut cluster = Cluster::start(ClusterOptions {
        workers: 2,
        task_timeout: "2s".into(),
        ..Default::default()
    })
    .await;
    let inputs = lab_inputs();
    let job_id = cluster.submit("wc", &inputs, 3).await;
    let job = cluster.wait(&job_id, Duration::from_secs(120)).await;
    assert_eq!(job.state(), pb::JobState::Succeeded, "{}", job.error);
    let workers = list_workers(&cluster).await;
    assert_eq!(workers.len(), 2, "{workers:?}");
    // Every task of this job was reported succeeded by one of them (a backup copy that
    // lost is reported too).
    let succeeded: u64 = workers.iter().map(|w| w.tasks_succeeded).sum();
    assert!(succeeded >= (inputs.len() + 3) as u64, "{workers:?}");
    assert_eq!(workers.iter().map(|w| w.tasks_failed).sum::<u64>(), 0);
    for w in &workers {
        assert_eq!(w.host, "127.0.0.1");
        assert!(w.first_seen_ms > 0 && w.last_seen_ms >= w.first_seen_ms);
        assert_eq!(w.state(), pb::WorkerState::Idle, "{w:?}");
        assert!(w.current_task.is_empty());
    }
    // A worker killed is LOST once silent past the task timeout.
    cluster.signal_worker(0, libc::SIGKILL);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let workers = list_workers(&cluster).await;
        let states: Vec<pb::WorkerState> = workers.iter().map(|w| w.state()).collect();
        if states.contains(&pb::WorkerState::Lost) {
            assert_eq!(
                states
                    .iter()
                    .filter(|s| **s == pb::WorkerState::Idle)
                    .count(),
                1,
                "the other one still polls: {workers:?}"
            );
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{workers:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Workers and the coordinator run with transparent huge pages off (`mr_common::limits::
/// disable_transparent_huge_pages`: a quarter of a large map's CPU otherwise, and ~12% of
/// a large job's coordinator memory): the kernel shows `THP_enabled: 0` in their status
/// once they have started.
#[tokio::test(flavor = "multi_thread")]
async fn workers_and_the_coordinator_run_with_transparent_huge_pages_off() {
    let cluster = Cluster::start(ClusterOptions {
        workers: 1,
        ..Default::default()
    })
    .await;
    // Once it has called the coordinator, its `main` is well past the call.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while list_workers(&cluster).await.is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the worker never called"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let worker = cluster.worker_pid(0).expect("the worker runs");
    let coordinator = cluster.coordinator_pid().expect("the coordinator runs");
    for (who, pid) in [("worker", worker as u32), ("coordinator", coordinator)] {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
        let thp = status
            .lines()
            .find_map(|l| l.strip_prefix("THP_enabled:"))
            .map(str::trim);
        assert_eq!(thp, Some("0"), "{who}: {status}");
    }
}

/// Counters (Google MapReduce §4.9) count each committed task once: with a worker
/// SIGKILLed mid-job, the `wordstats` app's counters and the built-ins still equal figures
/// computed here from the inputs and the sequential reference.
async fn counters_equal_the_inputs_figures_when_workers_are_killed_mid_job(storage: TestStorage) {
    let mut cluster = Cluster::start(ClusterOptions {
        workers: 3,
        task_timeout: "2s".into(),
        storage,
        ..Default::default()
    })
    .await;
    let inputs = lab_inputs();
    let job_id = cluster
        .submit_request(pb::SubmitJobRequest {
            app: "wordstats".into(),
            inputs: inputs.clone(),
            n_reduce: 3,
            // Many small maps, so that the kill lands mid-phase.
            split_bytes: 64 << 10,
            ..Default::default()
        })
        .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let job = cluster.job(&job_id).await;
        let map = job.map.unwrap_or_default();
        if map.completed * 3 >= map.total || mr_e2e::is_terminal(job.state()) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the maps never got going"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cluster.signal_worker(0, libc::SIGKILL);
    cluster.signal_worker(1, libc::SIGKILL);
    cluster.spawn_worker();
    let job = cluster.wait(&job_id, Duration::from_secs(120)).await;
    assert_eq!(job.state(), pb::JobState::Succeeded, "{}", job.error);
    // A killed worker's attempt times out, or a backup copy beats it first (sooner when
    // the phase is slow, as on S3): either way it ran again elsewhere.
    let lost = mr_e2e::attempts_with(&job, pb::AttemptOutcome::TimedOut)
        + mr_e2e::attempts_with(&job, pb::AttemptOutcome::Superseded);
    assert!(
        lost > 0,
        "the killed workers' attempts were lost and ran again: {:?}",
        job.tasks
            .iter()
            .flat_map(|t| &t.history)
            .map(|a| (a.worker.as_str(), a.outcome()))
            .collect::<Vec<_>>()
    );
    let output = cluster.output_lines(&job);
    let reference = cluster.reference("wc", &inputs);
    assert_same_lines(&output, &reference, "wordstats is wc");

    // The figures, computed independently of the cluster.
    let (mut lines, mut empty, mut bytes) = (0u64, 0u64, 0u64);
    for input in &inputs {
        let text = std::fs::read(cluster.data.join(input)).expect("read input");
        bytes += text.len() as u64;
        for line in text.split_inclusive(|&b| b == b'\n') {
            lines += 1;
            empty += u64::from(line == b"\n" || line == b"\r\n");
        }
    }
    let words: u64 = reference
        .iter()
        .map(|l| {
            l.rsplit(' ')
                .next()
                .and_then(|n| n.parse::<u64>().ok())
                .expect("a count")
        })
        .sum();
    let output_bytes: u64 = job
        .outputs
        .iter()
        .map(|o| {
            std::fs::metadata(cluster.data.join(o))
                .expect("output")
                .len()
        })
        .sum();
    let c = |name: &str| job.counters.get(name).copied().unwrap_or(0);
    assert_eq!(c("lines"), lines, "{:?}", job.counters);
    assert_eq!(c("empty_lines"), empty, "{:?}", job.counters);
    assert_eq!(c("words"), words, "{:?}", job.counters);
    assert_eq!(c("distinct_words"), reference.len() as u64);
    assert_eq!(c("mr.map_input_bytes"), bytes);
    assert_eq!(c("mr.reduce_groups"), reference.len() as u64);
    assert_eq!(c("mr.output_bytes"), output_bytes);
    assert_eq!(c("mr.reduce_input_records"), c("mr.map_output_records"));
    assert!(c("mr.map_output_records") >= reference.len() as u64);
}

on_both_storages!(
    read_output_streams_exactly_the_committed_lines_in_whole_line_chunks,
    counters_equal_the_inputs_figures_when_workers_are_killed_mid_job,
);
