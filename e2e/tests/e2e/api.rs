//! The job API over real gRPC: bad input gets a clear status and loses nothing, several jobs
//! run at once, jobs can be listed, watched and cancelled, and reflection and health work.

use mr_e2e::v1 as pb;
use mr_e2e::{Cluster, ClusterOptions, TestStorage, lab_inputs};
use std::io::Write;
use std::time::Duration;
use tonic::Code;

const JOB_TIMEOUT: Duration = Duration::from_secs(120);

fn request(app: &str, inputs: &[&str], n_reduce: u32) -> pb::SubmitJobRequest {
    pb::SubmitJobRequest {
        app: app.into(),
        inputs: inputs.iter().map(|s| s.to_string()).collect(),
        n_reduce,
        split_bytes: 0,
        max_skipped_records: 0,
    }
}

async fn refused(cluster: &Cluster, req: pb::SubmitJobRequest) -> tonic::Status {
    cluster
        .jobs()
        .await
        .submit_job(req)
        .await
        .expect_err("the request must be refused")
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_requests_get_clear_statuses_and_the_server_stays_healthy() {
    let cluster = Cluster::start(ClusterOptions {
        workers: 1,
        ..Default::default()
    })
    .await;
    let outside = cluster.dir.path().join("secret.txt");
    std::fs::write(&outside, "secret words").expect("write secret");
    std::os::unix::fs::symlink(&outside, cluster.data.join("input/link.txt")).expect("symlink");

    let cases: Vec<(pb::SubmitJobRequest, Code, &str)> = vec![
        (
            request("nosuchapp", &["input/pg-grimm.txt"], 1),
            Code::NotFound,
            "nosuchapp",
        ),
        (
            request("../wc", &["input/pg-grimm.txt"], 1),
            Code::InvalidArgument,
            "app",
        ),
        (request("wc", &[], 1), Code::InvalidArgument, "inputs"),
        (
            request("wc", &["input/*.csv"], 1),
            Code::InvalidArgument,
            "inputs[0]",
        ),
        (
            request("wc", &["input/pg-grimm.txt"], 0),
            Code::InvalidArgument,
            "n_reduce",
        ),
        (
            request("wc", &["input/pg-grimm.txt"], 10_001),
            Code::InvalidArgument,
            "n_reduce",
        ),
        (
            request("wc", &["input/pg-grimm.txt", "../secret.txt"], 1),
            Code::InvalidArgument,
            "inputs[1]",
        ),
        (
            request("wc", &["/etc/passwd"], 1),
            Code::InvalidArgument,
            "inputs[0]",
        ),
        (
            request("wc", &["input/link.txt"], 1),
            Code::PermissionDenied,
            "outside the data folder",
        ),
        (
            request("wc", &["input/*"], 1),
            Code::PermissionDenied,
            "outside the data folder",
        ),
        (
            request("wc", &["input"], 1),
            Code::InvalidArgument,
            "not a regular file",
        ),
    ];
    for (req, code, needle) in cases {
        let what = format!("{req:?}");
        let status = refused(&cluster, req).await;
        assert_eq!(status.code(), code, "{what}: {status:?}");
        assert!(
            status.message().contains(needle),
            "{what}: '{}' lacks '{needle}'",
            status.message()
        );
    }

    let mut jobs = cluster.jobs().await;
    let status = jobs
        .get_job(pb::GetJobRequest {
            job_id: "nope".into(),
            ..Default::default()
        })
        .await
        .expect_err("unknown job");
    assert_eq!(status.code(), Code::NotFound);
    assert!(status.message().contains("nope"));
    for status in [
        jobs.cancel_job(pb::CancelJobRequest {
            job_id: "nope".into(),
        })
        .await
        .expect_err("cancel"),
        jobs.watch_job(pb::WatchJobRequest {
            job_id: "nope".into(),
            detailed: false,
            ..Default::default()
        })
        .await
        .expect_err("watch"),
    ] {
        assert_eq!(status.code(), Code::NotFound);
    }

    // Garbage on the port: the server drops that connection and goes on serving.
    let port = cluster.addr.rsplit(':').next().expect("port").to_string();
    for garbage in [
        &b"GET / HTTP/1.1\r\n\r\n"[..],
        &[0xff; 4096][..],
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00",
    ] {
        if let Ok(mut stream) = std::net::TcpStream::connect(format!("127.0.0.1:{port}")) {
            let _ = stream.write_all(garbage);
        }
    }
    assert!(cluster.coordinator_log().contains("coordinator listening"));
    assert_eq!(
        std::fs::read_to_string(&outside).expect("still there"),
        "secret words"
    );

    // Nothing was lost: a good job still runs to the right answer.
    let job_id = cluster
        .submit("wc", &["input/pg-metamorphosis.txt".into()], 2)
        .await;
    let job = cluster.wait(&job_id, JOB_TIMEOUT).await;
    assert_eq!(job.state(), pb::JobState::Succeeded, "{}", job.error);
    assert_eq!(
        cluster.output_lines(&job),
        cluster.reference("wc", &["input/pg-metamorphosis.txt".into()])
    );
}

async fn several_jobs_at_once_all_finish_correctly(storage: TestStorage) {
    let cluster = Cluster::start(ClusterOptions::on(storage)).await;
    let wc = cluster.submit("wc", &["input/pg-*.txt".into()], 5).await;
    let indexer = cluster
        .submit("indexer", &["input/pg-*.txt".into()], 3)
        .await;
    let small = cluster
        .submit("wc", &["input/pg-grimm.txt".into()], 1)
        .await;
    for (job_id, app, inputs) in [
        (&wc, "wc", lab_inputs()),
        (&indexer, "indexer", lab_inputs()),
        (&small, "wc", vec!["input/pg-grimm.txt".to_string()]),
    ] {
        let job = cluster.wait(job_id, JOB_TIMEOUT).await;
        assert_eq!(job.state(), pb::JobState::Succeeded, "{app}: {}", job.error);
        assert_eq!(
            cluster.output_lines(&job),
            cluster.reference(app, &inputs),
            "{app}"
        );
    }
    let listed = cluster
        .jobs()
        .await
        .list_jobs(pb::ListJobsRequest {})
        .await
        .expect("list")
        .into_inner()
        .jobs;
    let ids: Vec<&str> = listed.iter().map(|j| j.job_id.as_str()).collect();
    assert_eq!(
        ids,
        [small.as_str(), indexer.as_str(), wc.as_str()],
        "newest first"
    );
    assert!(listed.iter().all(|j| j.state() == pb::JobState::Succeeded));
}

async fn a_cancelled_job_stops_and_the_next_one_runs(storage: TestStorage) {
    let cluster = Cluster::start(ClusterOptions {
        workers: 1,
        storage,
        ..Default::default()
    })
    .await;
    // mtiming takes a second per map: plenty of time to cancel.
    let slow = cluster
        .submit("mtiming", &["input/pg-*.txt".into()], 2)
        .await;
    let mut jobs = cluster.jobs().await;
    let mut watch = jobs
        .watch_job(pb::WatchJobRequest {
            job_id: slow.clone(),
            detailed: false,
            ..Default::default()
        })
        .await
        .expect("watch")
        .into_inner();
    let first = watch
        .message()
        .await
        .expect("stream")
        .expect("first update");
    assert_eq!(first.job_id, slow);
    assert_eq!(first.map.as_ref().map(|m| m.total), Some(8), "progress");
    assert!(first.tasks.is_empty(), "no per-task records unless asked");
    let mut detailed = jobs
        .watch_job(pb::WatchJobRequest {
            job_id: slow.clone(),
            detailed: true,
            ..Default::default()
        })
        .await
        .expect("watch with tasks")
        .into_inner();
    let tasks = detailed
        .message()
        .await
        .expect("stream")
        .expect("update")
        .tasks;
    assert_eq!(tasks.len(), 8 + 2, "every task's record when asked");
    let cancelled = jobs
        .cancel_job(pb::CancelJobRequest {
            job_id: slow.clone(),
        })
        .await
        .expect("cancel")
        .into_inner();
    assert_eq!(cancelled.state(), pb::JobState::Cancelled);
    let mut last = first;
    while let Some(job) = watch.message().await.expect("stream") {
        last = job;
    }
    assert_eq!(
        last.state(),
        pb::JobState::Cancelled,
        "the watch ends with the job"
    );
    assert!(last.outputs.is_empty());

    let next = cluster
        .submit("wc", &["input/pg-metamorphosis.txt".into()], 1)
        .await;
    let job = cluster.wait(&next, JOB_TIMEOUT).await;
    assert_eq!(job.state(), pb::JobState::Succeeded, "{}", job.error);
    let status = jobs
        .cancel_job(pb::CancelJobRequest { job_id: next })
        .await
        .expect_err("a finished job cannot be cancelled");
    assert_eq!(status.code(), Code::FailedPrecondition);
}

#[tokio::test(flavor = "multi_thread")]
async fn reflection_lists_both_services_and_health_serves() {
    let cluster = Cluster::start(ClusterOptions {
        workers: 0,
        ..Default::default()
    })
    .await;
    let target = cluster.addr.trim_start_matches("http://").to_string();
    let grpcurl = |args: &[&str]| {
        let out = std::process::Command::new("grpcurl")
            .arg("-plaintext")
            .args(args)
            .output()
            .expect("grpcurl is installed (make setup installs it)");
        assert!(
            out.status.success(),
            "grpcurl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let services = grpcurl(&[&target, "list"]);
    for service in [
        "mapreduce.v1.JobService",
        "mapreduce.v1.Coordinator",
        "grpc.health.v1.Health",
    ] {
        assert!(
            services.contains(service),
            "{service} missing from:\n{services}"
        );
    }
    let health = grpcurl(&[&target, "grpc.health.v1.Health/Check"]);
    assert!(health.contains("SERVING"), "{health}");
    let health = std::process::Command::new(mr_e2e::bin("mr-coordinator"))
        .args(["health", "--addr", &cluster.addr])
        .output()
        .expect("run health");
    assert!(health.status.success(), "mr-coordinator health");
    let unhealthy = std::process::Command::new(mr_e2e::bin("mr-coordinator"))
        .args([
            "health",
            "--addr",
            &format!("http://127.0.0.1:{}", mr_e2e::free_port()),
        ])
        .output()
        .expect("run health");
    assert!(!unhealthy.status.success(), "no coordinator there");
}

/// Cancelling a job stops its apps where they run: the worker hears it at its next
/// heartbeat and the app ends at the next epoch tick, not at its 60 s time limit.
#[tokio::test(flavor = "multi_thread")]
async fn a_cancelled_jobs_running_app_stops_at_once() {
    let cluster = Cluster::start(ClusterOptions {
        workers: 1,
        // Heartbeats every second.
        task_timeout: "3s".into(),
        ..Default::default()
    })
    .await;
    let job_id = cluster
        .submit("loop_forever", &["input/pg-grimm.txt".into()], 1)
        .await;
    let started = std::time::Instant::now();
    loop {
        let job = cluster.job(&job_id).await;
        if job.map.as_ref().is_some_and(|m| m.in_progress > 0) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no map started"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    cluster
        .jobs()
        .await
        .cancel_job(pb::CancelJobRequest { job_id })
        .await
        .expect("cancel");
    let cancelled = std::time::Instant::now();
    let stopped = loop {
        let events = mr_e2e::log_events(
            &cluster.worker_log(0),
            "dropped attempt stopped; its files removed",
        );
        if let Some(event) = events.first() {
            break event["fields"]["after_ms"].as_u64().expect("after_ms");
        }
        assert!(
            cancelled.elapsed() < Duration::from_secs(30),
            "the app still runs 30 s after the cancel; worker log:\n{}",
            mr_e2e::tail(&cluster.worker_log(0), 20)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // Its 60 s time limit would have stopped it only after 60 s.
    assert!(stopped < 30_000, "stopped {stopped} ms after the drop");
}

on_both_storages!(
    several_jobs_at_once_all_finish_correctly,
    a_cancelled_job_stops_and_the_next_one_runs,
);
