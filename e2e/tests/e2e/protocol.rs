//! The worker protocol over real gRPC, with the test in the worker's seat: the next task can
//! ride on a report's reply, and a report that lists impossible partitions is refused as
//! the attempt's failure, not committed; a worker holding a batch of tasks that dies loses
//! none of them.

use mr_e2e::v1 as pb;
use mr_e2e::v1::coordinator_client::CoordinatorClient;
use mr_e2e::{Cluster, ClusterOptions, TestStorage};

const WORKER: &str = "hand-driven";

async fn coordinator(cluster: &Cluster) -> CoordinatorClient<tonic::transport::Channel> {
    CoordinatorClient::new(cluster.channel().await.expect("connect"))
}

async fn next_task(client: &mut CoordinatorClient<tonic::transport::Channel>) -> pb::Assignment {
    client
        .request_task(pb::RequestTaskRequest {
            worker: WORKER.into(),
            wait_ms: 5_000,
            max_tasks: 1,
            ..Default::default()
        })
        .await
        .expect("request_task")
        .into_inner()
        .task
        .expect("a task is ready")
}

fn map_index(task: &pb::Assignment) -> u32 {
    match &task.task {
        Some(pb::assignment::Task::Map(m)) => m.index,
        other => panic!("expected a map task, got {other:?}"),
    }
}

fn report(
    task: &pb::Assignment,
    result: pb::report_task_request::Result,
    want_next: bool,
) -> pb::ReportTaskRequest {
    pb::ReportTaskRequest {
        worker: WORKER.into(),
        job_id: task.job_id.clone(),
        attempt_id: task.attempt_id,
        result: Some(result),
        want_next,
    }
}

fn app_error(message: &str) -> pb::report_task_request::Result {
    pb::report_task_request::Result::Failed(pb::TaskFailed {
        kind: pb::FailureKind::AppError.into(),
        error: message.into(),
        bad_map_tasks: Vec::new(),
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn a_report_carries_the_next_task_when_asked() {
    let cluster = Cluster::start(ClusterOptions {
        workers: 0,
        ..Default::default()
    })
    .await;
    let job_id = cluster
        .submit(
            "wc",
            &[
                "input/pg-being_ernest.txt".into(),
                "input/pg-grimm.txt".into(),
            ],
            2,
        )
        .await;
    let mut client = coordinator(&cluster).await;
    let first = next_task(&mut client).await;
    assert_eq!(first.job_id, job_id);
    assert_eq!(
        map_index(&first),
        1,
        "the larger split (grimm) goes out first"
    );

    // Asked for: the reply holds the next idle task, under a new attempt.
    let reply = client
        .report_task(report(&first, app_error("first try fails"), true))
        .await
        .expect("report")
        .into_inner();
    assert!(reply.accepted);
    let second = reply.next_task.expect("the next task rides on the reply");
    assert_ne!(second.attempt_id, first.attempt_id);
    assert_eq!(second.job_id, job_id);

    // Not asked for (a worker about to stop): no task is handed out, so none is stranded.
    let reply = client
        .report_task(report(&second, app_error("second try fails"), false))
        .await
        .expect("report")
        .into_inner();
    assert!(reply.accepted);
    assert!(reply.next_task.is_none(), "{:?}", reply.next_task);
    let job = cluster.job(&job_id).await;
    let running = mr_e2e::attempts_with(&job, pb::AttemptOutcome::Running);
    assert_eq!(
        running, 0,
        "no attempt was handed out without being asked for"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_success_listing_impossible_partitions_fails_the_attempt() {
    let cluster = Cluster::start(ClusterOptions {
        workers: 0,
        ..Default::default()
    })
    .await;
    let job_id = cluster
        .submit("wc", &["input/pg-grimm.txt".into()], 4)
        .await;
    let mut client = coordinator(&cluster).await;
    for partitions in [vec![2, 1], vec![4], vec![1, 1]] {
        let task = next_task(&mut client).await;
        let succeeded = pb::report_task_request::Result::Succeeded(pb::TaskSucceeded {
            records_in: 1,
            records_out: 1,
            partitions: partitions.clone(),
            skipped: Vec::new(),
            ..Default::default()
        });
        let reply = client
            .report_task(report(&task, succeeded, false))
            .await
            .expect("report")
            .into_inner();
        assert!(reply.accepted, "the report is taken, as a failure");
        let job = cluster.job(&job_id).await;
        let map0 = &job.tasks[0];
        assert_eq!(
            map0.state(),
            pb::TaskState::Idle,
            "{partitions:?}: not committed"
        );
        let last = map0.history.last().expect("an attempt");
        assert_eq!(last.outcome(), pb::AttemptOutcome::Failed);
        assert!(
            last.error.contains("not ascending partitions of 0..4"),
            "{partitions:?}: {}",
            last.error
        );
    }
    // Nothing became visible in the job folder.
    let dir = cluster.data.join("jobs").join(&job_id);
    let files = mr_e2e::files_under(&dir);
    assert!(files.is_empty(), "{files:?}");
}

/// A reduce that keeps reporting its intermediates lost (say, a disk that damages what maps
/// write) sends the maps round again only a bounded number of times: the job then fails
/// instead of staying RUNNING forever.
async fn a_reduce_that_keeps_finding_lost_intermediates_fails_the_job(storage: TestStorage) {
    const MAX_FAILURES: u32 = 2;
    let cluster = Cluster::start(ClusterOptions {
        workers: 0,
        coordinator_args: vec!["--max-task-failures".into(), MAX_FAILURES.to_string()],
        storage,
        ..Default::default()
    })
    .await;
    let job_id = cluster
        .submit("wc", &["input/pg-grimm.txt".into()], 1)
        .await;
    let mut client = coordinator(&cluster).await;
    let job_dir = cluster.data.join("jobs").join(&job_id);
    // On S3 a job has no folder until its first object: make one to write in.
    std::fs::create_dir_all(&job_dir).expect("the job's folder");
    for _round in 0..4 * MAX_FAILURES {
        let task = next_task(&mut client).await;
        let result = match &task.task {
            Some(pb::assignment::Task::Map(m)) => {
                // What a map writes; the coordinator renames it into place.
                let tmp = job_dir.join(format!(".mr-{}-0.a{}.tmp", m.index, task.attempt_id));
                std::fs::write(&tmp, b"whatever").expect("write the map's file");
                pb::report_task_request::Result::Succeeded(pb::TaskSucceeded {
                    records_in: 1,
                    records_out: 1,
                    partitions: vec![0],
                    skipped: Vec::new(),
                    ..Default::default()
                })
            }
            Some(pb::assignment::Task::Reduce(r)) => {
                pb::report_task_request::Result::Failed(pb::TaskFailed {
                    kind: pb::FailureKind::BadIntermediate.into(),
                    error: "intermediate files of map tasks [0] are missing or corrupt".into(),
                    bad_map_tasks: r.map_tasks.clone(),
                })
            }
            None => panic!("an assignment without a task"),
        };
        client
            .report_task(report(&task, result, false))
            .await
            .expect("report");
        if mr_e2e::is_terminal(cluster.job(&job_id).await.state()) {
            break;
        }
    }
    let job = cluster.job(&job_id).await;
    assert_eq!(
        job.state(),
        pb::JobState::Failed,
        "the job must not loop forever"
    );
    let reduce = job
        .tasks
        .iter()
        .find(|t| t.kind() == pb::TaskKind::Reduce)
        .expect("the reduce task");
    assert_eq!(reduce.attempts, MAX_FAILURES, "{:?}", reduce.history);
    assert!(
        reduce
            .history
            .iter()
            .all(|a| a.outcome() == pb::AttemptOutcome::Failed)
    );
    let map = &job.tasks[0];
    assert_eq!(
        map.attempts, MAX_FAILURES,
        "the map ran once per lost report but the last"
    );
    assert!(
        job.error.contains("reduce-0"),
        "names the task: {}",
        job.error
    );
}

/// A worker that asks for several tasks gets a batch of small maps, each its own attempt;
/// its heartbeat keeps the queued ones alive. When it dies holding the batch, every task
/// of it times out and runs elsewhere, and the output is exact.
async fn a_worker_that_dies_holding_a_batch_loses_nothing(storage: TestStorage) {
    let mut cluster = Cluster::start(ClusterOptions {
        workers: 0,
        task_timeout: "2s".into(),
        storage,
        ..Default::default()
    })
    .await;
    let inputs = mr_e2e::write_one_line_inputs(&cluster.data, 64);
    let job_id = cluster.submit("wc", &inputs, 3).await;
    let mut client = coordinator(&cluster).await;
    let reply = client
        .request_task(pb::RequestTaskRequest {
            worker: WORKER.into(),
            wait_ms: 5_000,
            max_tasks: 16,
            ..Default::default()
        })
        .await
        .expect("request")
        .into_inner();
    let batch: Vec<pb::Assignment> = reply.task.into_iter().chain(reply.more_tasks).collect();
    // 63 Idle behind the first: at most an eighth of them come along, in dispatch order
    // (the largest splits first, then the lowest index).
    assert_eq!(batch.len(), 8, "{batch:?}");
    let indices: Vec<u32> = batch.iter().map(map_index).collect();
    let size = |i: u32| {
        std::fs::metadata(cluster.data.join(&inputs[i as usize]))
            .expect("an input")
            .len()
    };
    let mut order: Vec<u32> = (0..inputs.len() as u32).collect();
    order.sort_by_key(|&i| (std::cmp::Reverse(size(i)), i));
    assert_eq!(indices, order[..8]);
    let ids: Vec<u64> = batch.iter().map(|t| t.attempt_id).collect();
    let heartbeat = |ids: &[u64]| pb::HeartbeatRequest {
        worker: WORKER.into(),
        attempt_id: ids[0],
        more_attempt_ids: ids[1..].to_vec(),
    };
    let reply = client
        .heartbeat(heartbeat(&ids))
        .await
        .expect("heartbeat")
        .into_inner();
    assert!(reply.keep_going);
    assert!(reply.dropped.is_empty(), "{:?}", reply.dropped);

    // The hand-driven worker goes silent; a real one finishes the job.
    cluster.spawn_worker();
    let job = cluster
        .wait(&job_id, std::time::Duration::from_secs(60))
        .await;
    assert_eq!(job.state(), pb::JobState::Succeeded, "{}", job.error);
    mr_e2e::assert_same_lines(
        &cluster.output_lines(&job),
        &cluster.reference("wc", &inputs),
        "wc after a batch was lost",
    );
    // Each task of the lost batch ran again: its attempt timed out, or a backup copy beat
    // it first (when the rest of the phase ends before the timeout, as on slower storage).
    let lost: Vec<pb::AttemptOutcome> = job
        .tasks
        .iter()
        .flat_map(|t| &t.history)
        .filter(|a| a.worker == WORKER)
        .map(|a| a.outcome())
        .collect();
    assert_eq!(lost.len(), 8, "{lost:?}");
    assert!(
        lost.iter().all(|o| matches!(
            o,
            pb::AttemptOutcome::TimedOut | pb::AttemptOutcome::Superseded
        )),
        "every task of the lost batch ran again: {lost:?}"
    );
    // Its attempts are over: a late heartbeat hears that all of them are dropped.
    let reply = client
        .heartbeat(heartbeat(&ids))
        .await
        .expect("heartbeat")
        .into_inner();
    assert!(!reply.keep_going);
    assert_eq!(reply.dropped, ids[1..].to_vec());
}

on_both_storages!(
    a_reduce_that_keeps_finding_lost_intermediates_fails_the_job,
    a_worker_that_dies_holding_a_batch_loses_nothing,
);
