//! `crate::run` in-process on `127.0.0.1:0`, as mini-redis tests its server: real
//! gRPC from a real client, the test in the worker's seat. Covers a job of thousands of
//! tasks end to end through the API, with GetJob reading its task records in pages that
//! stay far below gRPC's 4 MiB message limit.

use crate::config::CoordinatorConfig;
use crate::service::{DEFAULT_TASK_PAGE, MAX_TASK_PAGE};
use mr_common::DataDir;
use mr_proto::v1 as pb;
use mr_proto::v1::coordinator_client::CoordinatorClient;
use mr_proto::v1::job_service_client::JobServiceClient;
use prost::Message;
use std::time::Duration;
use tokio::net::TcpListener;
use tonic::transport::Channel;

const MAPS: u64 = 6_000;

async fn start(
    data: &std::path::Path,
    apps: &std::path::Path,
) -> (Channel, tokio::sync::oneshot::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let config = CoordinatorConfig {
        listen: addr,
        data_dir: data.to_path_buf(),
        apps_dir: apps.to_path_buf(),
        ..CoordinatorConfig::default()
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        crate::run(listener, config, async {
            let _ = stopped.await;
        })
        .await
        .expect("coordinator");
    });
    let channel = Channel::from_shared(format!("http://{addr}"))
        .expect("uri")
        .connect()
        .await
        .expect("connect");
    (channel, stop)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_of_thousands_of_tasks_runs_and_pages_through_the_api() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (data, apps) = (dir.path().join("data"), dir.path().join("apps"));
    std::fs::create_dir_all(data.join("input")).expect("mkdir");
    std::fs::create_dir_all(&apps).expect("mkdir");
    // One split per byte: MAPS map tasks.
    std::fs::write(data.join("input/bytes.txt"), vec![b'x'; MAPS as usize]).expect("input");
    // The coordinator checks the app interface, not what the app does: the test is the
    // worker.
    let noop = wat::parse_str(
        r#"(module
            (import "mr" "log" (func (param i32 i32)))
            (memory (export "memory") 1)
            (func (export "mr_abi_version") (result i32) i32.const 1)
            (func (export "mr_alloc") (param i32) (result i32) i32.const 0)
            (func (export "mr_map") (param i32 i32) (result i64) i64.const 0)
            (func (export "mr_reduce") (param i32 i32) (result i64) i64.const 0))"#,
    )
    .expect("wat");
    std::fs::write(apps.join("noop.wasm"), noop).expect("app");
    let (channel, stop) = start(&data, &apps).await;
    let mut jobs = JobServiceClient::new(channel.clone());
    let mut worker = CoordinatorClient::new(channel);

    let job_id = jobs
        .submit_job(pb::SubmitJobRequest {
            app: "noop".into(),
            inputs: vec!["input/bytes.txt".into()],
            n_reduce: 1,
            split_bytes: 1,
            max_skipped_records: 0,
        })
        .await
        .expect("submit")
        .into_inner()
        .job_id;
    let dd = DataDir::open(&data).expect("data dir");

    // Work through every task, each report bringing back the next task.
    let mut task = worker
        .request_task(pb::RequestTaskRequest {
            worker: "test".into(),
            wait_ms: 1_000,
            max_tasks: 1,
            ..Default::default()
        })
        .await
        .expect("request")
        .into_inner()
        .task;
    let mut done = 0;
    while let Some(t) = task {
        if let Some(pb::assignment::Task::Reduce(r)) = &t.task {
            let out = dd.output(&job_id, r.partition);
            std::fs::write(DataDir::attempt_tmp(&out, t.attempt_id), b"").expect("output");
        }
        let reply = worker
            .report_task(pb::ReportTaskRequest {
                worker: "test".into(),
                job_id: job_id.clone(),
                attempt_id: t.attempt_id,
                result: Some(pb::report_task_request::Result::Succeeded(
                    pb::TaskSucceeded {
                        partitions: vec![],
                        skipped: Vec::new(),
                        ..Default::default()
                    },
                )),
                want_next: true,
            })
            .await
            .expect("report")
            .into_inner();
        assert!(reply.accepted);
        done += 1;
        task = reply.next_task;
    }
    assert_eq!(done, MAPS + 1);

    // GetJob pages: the default page, then the largest, until the token runs out.
    let mut token = String::new();
    let mut seen = Vec::new();
    let mut sizes = Vec::new();
    loop {
        let job = jobs
            .get_job(pb::GetJobRequest {
                job_id: job_id.clone(),
                task_page_size: if token.is_empty() { 0 } else { 1_000_000 },
                task_page_token: token.clone(),
            })
            .await
            .expect("get_job")
            .into_inner();
        assert_eq!(job.state(), pb::JobState::Succeeded);
        assert!(
            job.encoded_len() < 1 << 20,
            "a page is {} bytes",
            job.encoded_len()
        );
        sizes.push(job.tasks.len());
        seen.extend(job.tasks.iter().map(|t| (t.kind(), t.index)));
        token = job.next_task_page_token;
        if token.is_empty() {
            break;
        }
    }
    assert_eq!(sizes[0], DEFAULT_TASK_PAGE);
    assert!(sizes.iter().all(|&n| n <= MAX_TASK_PAGE));
    let expected: Vec<(pb::TaskKind, u32)> = (0..MAPS as u32)
        .map(|i| (pb::TaskKind::Map, i))
        .chain([(pb::TaskKind::Reduce, 0)])
        .collect();
    assert_eq!(seen, expected, "every task exactly once, in order");

    let bad = jobs
        .get_job(pb::GetJobRequest {
            job_id: job_id.clone(),
            task_page_size: 0,
            task_page_token: "not-a-token".into(),
        })
        .await
        .expect_err("a bad token");
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);
    assert!(
        bad.message().contains("task_page_token"),
        "{}",
        bad.message()
    );

    let _ = stop.send(());
    tokio::time::sleep(Duration::from_millis(50)).await;
}
