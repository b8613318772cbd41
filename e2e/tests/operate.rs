//! What an operator reads over the API, against a real cluster: a job's output streamed by
//! `ReadOutput` (no data folder needed), and the workers as `ListWorkers` shows them.

use mr_e2e::v1 as pb;
use mr_e2e::{Cluster, ClusterOptions, assert_same_lines, lab_inputs};
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

#[tokio::test(flavor = "multi_thread")]
async fn read_output_streams_exactly_the_committed_lines_in_whole_line_chunks() {
    let cluster = Cluster::start(ClusterOptions {
        workers: 2,
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
