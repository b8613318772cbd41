//! Robustness at the gRPC edge: odd file names, over-long or NUL-laden input, dangling links,
//! idle connections past the open-file limit, and unread or too many `WatchJob` streams all
//! get a clear, short status (or a clear refusal), never a hang, a panic or unbounded memory.

use mr_e2e::v1 as pb;
use mr_e2e::v1::job_service_client::JobServiceClient;
use mr_e2e::{Cluster, ClusterOptions};
use std::io::{Read, Write};
use std::net::{IpAddr, TcpStream};
use std::os::unix::ffi::OsStrExt;
use std::time::{Duration, Instant};
use tonic::Code;
use tonic::transport::{Channel, Endpoint};

/// The coordinator's cap on a status message (`mr_coordinator::error::MAX_STATUS_MESSAGE`).
const MAX_STATUS_MESSAGE: usize = 1024;

fn request(app: &str, inputs: &[&str]) -> pb::SubmitJobRequest {
    pb::SubmitJobRequest {
        app: app.into(),
        inputs: inputs.iter().map(|s| s.to_string()).collect(),
        n_reduce: 1,
        split_bytes: 0,
        max_skipped_records: 0,
    }
}

async fn idle_cluster(args: &[&str]) -> Cluster {
    Cluster::start(ClusterOptions {
        workers: 0,
        coordinator_args: args.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    })
    .await
}

/// Asserts the status is `code`, short, and names `needle` (a field, a cap).
fn assert_clear(status: &tonic::Status, code: Code, needle: &str, what: &str) {
    assert_eq!(status.code(), code, "{what}: {status:?}");
    let message = status.message();
    assert!(
        message.len() <= MAX_STATUS_MESSAGE,
        "{what}: a {}-byte message",
        message.len()
    );
    assert!(
        message.contains(needle),
        "{what}: '{message}' lacks '{needle}'"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn names_that_are_not_utf8_and_dangling_links_do_not_break_globs() {
    let cluster = idle_cluster(&[]).await;
    let input = cluster.data.join("input");
    // Not UTF-8, next to the lab texts and in a folder of its own.
    let odd = std::ffi::OsStr::from_bytes(b"pg-odd-\xff.txt");
    std::fs::write(input.join(odd), "odd words").expect("write odd");
    std::fs::create_dir_all(input.join("odd")).expect("mkdir");
    std::fs::write(input.join("odd").join(odd), "odd words").expect("write odd");
    std::os::unix::fs::symlink(input.join("missing.txt"), input.join("pg-dangling.txt"))
        .expect("symlink");
    let mut jobs = cluster.jobs().await;

    let job_id = jobs
        .submit_job(request("wc", &["input/pg-*.txt"]))
        .await
        .expect("the usable files are accepted")
        .into_inner()
        .job_id;
    let job = cluster.job(&job_id).await;
    assert_eq!(
        job.input_files,
        mr_e2e::lab_inputs(),
        "odd and dangling skipped"
    );

    for (inputs, needle) in [
        (vec!["input/odd/*"], "inputs[0]"),
        (
            vec!["input/pg-grimm.txt", "input/pg-dangling.txt"],
            "inputs[1]",
        ),
    ] {
        let status = jobs
            .submit_job(request("wc", &inputs))
            .await
            .expect_err("nothing usable");
        assert_clear(
            &status,
            Code::InvalidArgument,
            needle,
            &format!("{inputs:?}"),
        );
    }
    let named = jobs
        .submit_job(request("wc", &["input/pg-dangling.txt"]))
        .await
        .expect_err("a named dangling link");
    assert_clear(
        &named,
        Code::InvalidArgument,
        "pg-dangling.txt",
        "named link",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn huge_nul_laden_and_overlong_input_gets_short_invalid_argument() {
    let cluster = idle_cluster(&[]).await;
    let mut jobs = cluster.jobs().await;
    let huge = "x".repeat(1 << 20);
    let long_path = format!("input/{}", "p/".repeat(2500));
    let long_name = format!("input/{}.txt", "n".repeat(300));
    let cases: Vec<(pb::SubmitJobRequest, &str)> = vec![
        (request(&huge, &["input/pg-grimm.txt"]), "app"),
        (request("w\0c", &["input/pg-grimm.txt"]), "app"),
        (
            request("wc", &["input/pg-grimm.txt", "input/a\0b.txt"]),
            "inputs[1]",
        ),
        (request("wc", &["input/*\0"]), "inputs[0]"),
        (request("wc", &[&long_path]), "inputs[0]"),
        (request("wc", &[&long_name]), "inputs[0]"),
        (request("wc", &[&huge]), "inputs[0]"),
    ];
    for (req, field) in cases {
        let what = format!(
            "app {} bytes, inputs {:?}",
            req.app.len(),
            req.inputs.iter().map(String::len).collect::<Vec<_>>()
        );
        let status = jobs.submit_job(req).await.expect_err("refused");
        assert_clear(&status, Code::InvalidArgument, field, &what);
        assert!(!status.message().contains('\0'), "{what}: NUL echoed");
    }
    let status = jobs
        .get_job(pb::GetJobRequest {
            job_id: huge.clone(),
            ..Default::default()
        })
        .await
        .expect_err("no such job");
    assert_clear(&status, Code::NotFound, "xxxx", "a 1 MB job id");
    // Still serving.
    jobs.list_jobs(pb::ListJobsRequest {}).await.expect("list");
}

/// The coordinator's CPU time so far, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    // Fields after the command name (which may hold spaces) start at state (field 3).
    let rest = &stat[stat.rfind(')').expect("comm") + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime")
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// Whether the peer closed the socket (without blocking).
fn closed_by_peer(stream: &mut TcpStream) -> bool {
    stream.set_nonblocking(true).expect("nonblocking");
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return false,
            Err(_) => return true,
        }
    }
}

/// One ListJobs on a fresh connection: `Ok` or a status / transport error, bounded in time.
async fn one_call(addr: &str) -> Result<Result<(), String>, tokio::time::error::Elapsed> {
    tokio::time::timeout(Duration::from_secs(10), async {
        let channel = mr_e2e::connect(addr, None)
            .await
            .map_err(|e| format!("{e:?}"))?;
        JobServiceClient::new(channel)
            .list_jobs(pb::ListJobsRequest {})
            .await
            .map(|_| ())
            .map_err(|s| format!("{s:?}"))
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_connections_past_the_open_file_limit_neither_hang_clients_nor_spin() {
    let cluster = Cluster::start(ClusterOptions {
        workers: 0,
        coordinator_open_files: Some(256),
        coordinator_args: [
            "--connection-idle-timeout",
            "3s",
            "--http2-keepalive-interval",
            "1s",
            "--http2-keepalive-timeout",
            "1s",
        ]
        .map(String::from)
        .to_vec(),
        ..Default::default()
    })
    .await;
    let pid = cluster.coordinator_pid().expect("coordinator runs");
    let target = format!("127.0.0.1:{}", cluster.port());
    let target = target.parse().expect("address");
    let mut idle = Vec::new();
    for i in 0..300 {
        let Ok(mut stream) = TcpStream::connect_timeout(&target, Duration::from_secs(1)) else {
            continue;
        };
        if i % 2 == 0 {
            // An HTTP/2 preface and empty SETTINGS, then silence.
            let _ = stream.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0");
        }
        idle.push(stream);
    }
    assert!(idle.len() > 256, "only {} connections opened", idle.len());

    // A new client gets an answer or a clear refusal at once, not a hang.
    let first = one_call(&cluster.addr).await;
    assert!(
        first.is_ok(),
        "a new client hangs behind 300 idle connections"
    );

    // No core spins on a full descriptor table.
    let before = cpu_ticks(pid);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let used = cpu_ticks(pid) - before;
    assert!(
        used < 100,
        "the coordinator used {used} ticks of CPU in 2 s while idle"
    );

    // Silent connections are closed after the idle timeout; then new clients get through.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let open = idle
        .iter_mut()
        .filter_map(|s| (!closed_by_peer(s)).then_some(()))
        .count();
    assert_eq!(
        open, 0,
        "idle connections still open after the idle timeout"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match one_call(&cluster.addr).await {
            Ok(Ok(())) => break,
            other => assert!(
                Instant::now() < deadline,
                "no client gets through: {other:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn client_from(cluster: &Cluster, ip: [u8; 4]) -> JobServiceClient<Channel> {
    let channel = Endpoint::from_shared(cluster.addr.clone())
        .expect("address")
        .local_address(Some(IpAddr::from(ip)))
        .connect_timeout(Duration::from_secs(2))
        .connect()
        .await
        .expect("connect");
    JobServiceClient::new(channel)
}

fn watch(job_id: &str, detailed: bool) -> pb::WatchJobRequest {
    pb::WatchJobRequest {
        job_id: job_id.into(),
        detailed,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn watch_streams_are_capped_per_client_and_in_all() {
    let cluster = idle_cluster(&[
        "--max-watch-streams",
        "3",
        "--max-watch-streams-per-client",
        "2",
    ])
    .await;
    let job_id = cluster
        .submit("wc", &["input/pg-grimm.txt".into()], 1)
        .await;
    let mut a = client_from(&cluster, [127, 0, 0, 1]).await;
    let mut b = client_from(&cluster, [127, 0, 0, 2]).await;
    let mut held = Vec::new();
    for _ in 0..2 {
        held.push(
            a.watch_job(watch(&job_id, false))
                .await
                .expect("watch")
                .into_inner(),
        );
    }
    let status = a
        .watch_job(watch(&job_id, true))
        .await
        .expect_err("per client");
    assert_clear(
        &status,
        Code::ResourceExhausted,
        "--max-watch-streams-per-client",
        "a's third",
    );
    let b1 = b
        .watch_job(watch(&job_id, false))
        .await
        .expect("another client");
    let status = b
        .watch_job(watch(&job_id, false))
        .await
        .expect_err("in all");
    assert_clear(
        &status,
        Code::ResourceExhausted,
        "at most 3",
        "the fourth in all",
    );
    assert!(
        status.message().contains("(--max-watch-streams)"),
        "{}",
        status.message()
    );
    // A closed stream gives its place back.
    drop(held.pop());
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match b.watch_job(watch(&job_id, false)).await {
            Ok(_) => break,
            Err(status) => {
                assert_eq!(status.code(), Code::ResourceExhausted);
                assert!(
                    Instant::now() < deadline,
                    "the closed stream's slot never came back"
                );
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(b1);
}

#[tokio::test(flavor = "multi_thread")]
async fn unread_detailed_watches_of_a_big_job_stay_small() {
    const STREAMS: usize = 60;
    let cluster = idle_cluster(&["--max-watch-streams-per-client", "100"]).await;
    // A 6,000-line input cut into one map task per line, under a ~750-byte path: a full
    // detailed snapshot is ~5 MB.
    let dir = ["d".repeat(240), "e".repeat(240), "f".repeat(240)].join("/");
    std::fs::create_dir_all(cluster.data.join("input").join(&dir)).expect("mkdir");
    let name = format!("input/{dir}/words.txt");
    std::fs::write(cluster.data.join(&name), "some word\n".repeat(6000)).expect("write");
    let job_id = cluster
        .submit_request(pb::SubmitJobRequest {
            app: "wc".into(),
            inputs: vec![name],
            n_reduce: 1,
            split_bytes: 10,
            max_skipped_records: 0,
        })
        .await;
    let pid = cluster.coordinator_pid().expect("coordinator runs");
    let mut jobs = cluster.jobs().await;

    // A detailed update carries one page of records.
    let mut one = jobs
        .watch_job(watch(&job_id, true))
        .await
        .expect("watch")
        .into_inner();
    let update = one.message().await.expect("stream").expect("update");
    assert_eq!(update.map.as_ref().map(|m| m.total), Some(6000));
    assert_eq!(update.tasks.len(), 500, "a page, not 6,001 records");
    let mut tail = jobs
        .watch_job(pb::WatchJobRequest {
            job_id: job_id.clone(),
            detailed: true,
            task_offset: 5990,
            task_page_size: 50,
        })
        .await
        .expect("watch")
        .into_inner();
    let update = tail.message().await.expect("stream").expect("update");
    let kinds: Vec<_> = update.tasks.iter().map(|t| (t.kind(), t.index)).collect();
    assert_eq!(kinds.len(), 11, "the last 10 maps and the reduce");
    assert_eq!(kinds[0], (pb::TaskKind::Map, 5990));
    assert_eq!(kinds[10], (pb::TaskKind::Reduce, 0));
    drop((one, tail));

    let before = rss_kib(pid);
    let mut unread = Vec::new();
    for _ in 0..STREAMS {
        // A connection each, as separate clients would, so that the transport's windows do
        // not limit what the coordinator could hold.
        let mut client = cluster.jobs().await;
        let open = tokio::time::timeout(
            Duration::from_secs(10),
            client.watch_job(watch(&job_id, true)),
        );
        unread.push(
            open.await
                .expect("watch in time")
                .expect("watch")
                .into_inner(),
        );
    }
    // A change each stream has to fold into its next update. (On another connection: the
    // unread streams hold this one's flow-control window.)
    let mut other = cluster.jobs().await;
    let cancel = other.cancel_job(pb::CancelJobRequest {
        job_id: job_id.clone(),
    });
    // Its reply (the whole job, over 4 MB here) may exceed the client's limit: look at the
    // job with ListJobs instead.
    let _ = tokio::time::timeout(Duration::from_secs(10), cancel)
        .await
        .expect("cancel in time");
    let listed = other
        .list_jobs(pb::ListJobsRequest {})
        .await
        .expect("list")
        .into_inner();
    assert_eq!(listed.jobs[0].state(), pb::JobState::Cancelled);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let grown_mib = rss_kib(pid).saturating_sub(before) / 1024;
    eprintln!(
        "{STREAMS} unread detailed watches: coordinator RSS {before} KiB, grown by {grown_mib} MiB"
    );
    // Paged, a stream holds about 1 MB here (its update in the transport's buffers and the
    // encoder's); unpaged, each held at least one ~5 MB snapshot: 280 MB and more.
    assert!(
        grown_mib < 100,
        "{STREAMS} unread detailed watches grew the coordinator by {grown_mib} MiB"
    );
    drop(unread);
}
