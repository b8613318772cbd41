//! S3 storage (`--storage s3://BUCKET/PREFIX`) against real S3 servers on loopback: moto
//! (PyPI, installed by `make setup`) and s3s-fs (crates.io, built as `mr-s3-server`).
//! Inputs, intermediates and outputs in the bucket, the workers with no shared folder.
//! Outputs are compared line for line with the sequential reference over the same
//! inputs, on both servers, through a worker SIGKILLed and the coordinator SIGKILLed and
//! restarted, and through the S3 server itself SIGKILLed and restarted; a missing bucket
//! and unknown credentials are named at start-up.

use mr_e2e::v1 as pb;
use mr_e2e::{
    Cluster, ClusterOptions, assert_same_lines, bin, free_port, lab_inputs, write_big_inputs,
};
use mr_storage::{Endpoint, S3Store};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const BUCKET: &str = "mr-e2e";
const PREFIX: &str = "team/data";
const JOB_TIMEOUT: Duration = Duration::from_secs(240);

/// Which S3 server.
enum Kind {
    /// moto_server (PyPI `moto[server]`): objects in memory.
    Moto { env: Vec<(String, String)> },
    /// `mr-s3-server` (crates.io s3s-fs): objects as files under the server's folder, so
    /// they survive a restart.
    S3sFs,
}

/// An S3 server on a free loopback port, killed when dropped.
struct S3Server {
    kind: Kind,
    port: u16,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

impl S3Server {
    fn start() -> S3Server {
        Self::start_with(&[])
    }

    /// moto with its settings `env`, e.g. `INITIAL_NO_AUTH_ACTION_COUNT=0`: check every
    /// request's credentials (none are known, so every one is refused).
    fn start_with(env: &[(&str, &str)]) -> S3Server {
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        Self::launch(Kind::Moto { env: env.collect() })
    }

    fn s3s_fs() -> S3Server {
        Self::launch(Kind::S3sFs)
    }

    fn launch(kind: Kind) -> S3Server {
        let mut server = S3Server {
            kind,
            port: free_port(),
            child: None,
            dir: tempfile::tempdir().expect("tempdir"),
        };
        server.spawn();
        server
    }

    /// Starts the server process (again) on its port and folder; returns once it answers.
    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("server.log"))
            .expect("server log");
        let port = self.port.to_string();
        let mut cmd = match &self.kind {
            Kind::Moto { env } => {
                let mut cmd = Command::new("moto_server");
                cmd.args(["-H", "127.0.0.1", "-p", &port])
                    .envs(env.iter().cloned());
                cmd
            }
            Kind::S3sFs => {
                let mut cmd = Command::new(bin("mr-s3-server"));
                cmd.arg("--listen")
                    .arg(format!("127.0.0.1:{port}"))
                    .arg("--root")
                    .arg(self.dir.path().join("root"))
                    .args(["--bucket", BUCKET])
                    // s3s checks signatures only against keys it was given.
                    .args(["--access-key", "test", "--secret-key", "test"]);
                cmd
            }
        };
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect(
                "the S3 server (moto_server: PyPI moto[server]; both: `make setup`, `make build`)",
            );
        self.child = Some(child);
        for _ in 0..300 {
            if self.request("GET", "/").is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the S3 server did not answer on port {port}");
    }

    /// SIGKILLs the server process.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// One unsigned HTTP request (moto accepts them); the status code.
    fn request(&self, method: &str, path: &str) -> Option<u16> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.port
        );
        stream.write_all(request.as_bytes()).ok()?;
        let mut reply = String::new();
        stream.read_to_string(&mut reply).ok()?;
        reply.split(' ').nth(1)?.parse().ok()
    }

    fn create_bucket(&self, bucket: &str) {
        match self.kind {
            Kind::Moto { .. } => {
                assert_eq!(self.request("PUT", &format!("/{bucket}")), Some(200))
            }
            // Made at start (--bucket).
            Kind::S3sFs => assert_eq!(bucket, BUCKET),
        }
    }

    fn endpoint_of<'a>(&self, url: &'a str) -> Endpoint<'a> {
        Endpoint {
            url,
            access_key: "test",
            secret_key: "test",
        }
    }

    /// The AWS_* settings every process gets.
    fn env(&self) -> Vec<(String, String)> {
        self.endpoint_of(&self.endpoint()).env()
    }

    /// A client of `url` (`s3://bucket/prefix`).
    fn client(&self, url: &str) -> S3Store {
        let endpoint = self.endpoint();
        self.endpoint_of(&endpoint).client(url).expect("S3 client")
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.kill();
    }
}

fn url() -> String {
    format!("s3://{BUCKET}/{PREFIX}")
}

/// A cluster on the bucket, its inputs uploaded from the harness's data folder (where the
/// sequential reference reads them).
async fn s3_cluster(s3: &S3Server, workers: usize, task_timeout: &str) -> (Cluster, S3Store) {
    s3.create_bucket(BUCKET);
    let storage = ["--storage".to_string(), url()];
    let cluster = Cluster::start(ClusterOptions {
        workers,
        task_timeout: task_timeout.into(),
        coordinator_args: storage.to_vec(),
        worker_args: storage.to_vec(),
        env: s3.env(),
        ..Default::default()
    })
    .await;
    let client = s3.client(&url());
    (cluster, client)
}

fn upload(client: &S3Store, cluster: &Cluster, inputs: &[String]) {
    for input in inputs {
        let bytes = std::fs::read(cluster.data.join(input)).expect("read input");
        client.put(input, bytes).expect("upload input");
    }
}

/// The job's outputs through ReadOutput (as `mr cat`), as sorted lines.
async fn output_lines(cluster: &Cluster, job_id: &str) -> Vec<String> {
    let mut stream = cluster
        .jobs()
        .await
        .read_output(pb::ReadOutputRequest {
            job_id: job_id.into(),
        })
        .await
        .expect("ReadOutput")
        .into_inner();
    let mut text = Vec::new();
    while let Some(chunk) = stream.message().await.expect("output chunk") {
        text.extend_from_slice(&chunk.data);
    }
    let text = String::from_utf8(text).expect("UTF-8 output");
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    lines.sort();
    lines
}

/// What is left under the job's prefix once the coordinator has swept it (it does so
/// right after the job ends): exactly its outputs, no intermediate, no attempt's object.
async fn assert_only_outputs(client: &S3Store, job: &pb::Job) {
    let mut outputs = job.outputs.clone();
    outputs.sort();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let left: Vec<String> = client
            .list(&format!("jobs/{}/", job.job_id))
            .expect("list the job's objects")
            .into_iter()
            .map(|o| o.key)
            .collect();
        if left == outputs || tokio::time::Instant::now() > deadline {
            assert_eq!(left, outputs, "objects left under jobs/{}/", job.job_id);
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn wc_and_indexer_on_moto_match_the_sequential_reference() {
    wc_and_indexer_match_the_sequential_reference(S3Server::start()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn wc_and_indexer_on_s3s_fs_match_the_sequential_reference() {
    wc_and_indexer_match_the_sequential_reference(S3Server::s3s_fs()).await;
}

async fn wc_and_indexer_match_the_sequential_reference(s3: S3Server) {
    let (cluster, client) = s3_cluster(&s3, 3, "10s").await;
    let inputs = lab_inputs();
    upload(&client, &cluster, &inputs);
    for app in ["wc", "indexer"] {
        // Splits of 256 KiB: ranged GETs that start and end inside lines.
        let job_id = cluster
            .submit_request(pb::SubmitJobRequest {
                app: app.into(),
                inputs: vec!["input/pg-*.txt".into()],
                n_reduce: 3,
                split_bytes: 256 << 10,
                max_skipped_records: 0,
            })
            .await;
        let job = cluster.wait(&job_id, JOB_TIMEOUT).await;
        assert_eq!(job.state(), pb::JobState::Succeeded, "{app}: {}", job.error);
        assert!(job.tasks.len() > inputs.len(), "{app}: files were split");
        let got = output_lines(&cluster, &job_id).await;
        assert_same_lines(&got, &cluster.reference(app, &inputs), app);
        assert_only_outputs(&client, &job).await;
    }
    // A glob that matches no object names the bucket; so does a missing file.
    for pattern in ["input/nothing-*.txt", "input/missing.txt"] {
        let status = cluster
            .jobs()
            .await
            .submit_job(pb::SubmitJobRequest {
                app: "wc".into(),
                inputs: vec![pattern.into()],
                n_reduce: 1,
                ..Default::default()
            })
            .await
            .expect_err("no such input");
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{pattern}");
        assert!(
            status.message().contains(pattern) && status.message().contains(&url()),
            "{pattern}: {}",
            status.message()
        );
    }
    // The workers had no shared folder: nothing of the job is in the harness's folder.
    assert!(
        !cluster
            .data
            .join("jobs")
            .read_dir()
            .is_ok_and(|mut d| d.next().is_some())
    );
}

/// Uploads two big inputs and submits wc over them in splits of 512 KiB: (inputs, job id).
async fn submit_big_wc(cluster: &Cluster, client: &S3Store) -> (Vec<String>, String) {
    let inputs = write_big_inputs(&cluster.data, 2, 1);
    upload(client, cluster, &inputs);
    let job_id = cluster
        .submit_request(pb::SubmitJobRequest {
            app: "wc".into(),
            inputs: vec!["input/big/*.txt".into()],
            n_reduce: 4,
            split_bytes: 512 << 10,
            max_skipped_records: 0,
        })
        .await;
    (inputs, job_id)
}

/// Waits until `n` of the job's tasks are done, and checks that it is still running: a
/// fault injected next comes mid-job.
async fn wait_mid_job(cluster: &Cluster, job_id: &str, n: usize) {
    let deadline = tokio::time::Instant::now() + JOB_TIMEOUT;
    loop {
        let job = cluster.job(job_id).await;
        let done = job
            .tasks
            .iter()
            .filter(|t| t.state() == pb::TaskState::Completed)
            .count();
        if done >= n {
            assert_eq!(
                job.state(),
                pb::JobState::Running,
                "the fault comes mid-job"
            );
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no {n} tasks done: {}",
            cluster.coordinator_log()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn s3_output_is_exact_through_a_worker_kill_and_a_coordinator_restart() {
    let s3 = S3Server::start();
    let (mut cluster, client) = s3_cluster(&s3, 2, "2s").await;
    let (inputs, job_id) = submit_big_wc(&cluster, &client).await;
    // Once some maps are committed: SIGKILL a worker (its attempt times out and runs
    // again), start another, then SIGKILL the coordinator and restart it on its journal.
    wait_mid_job(&cluster, &job_id, 3).await;
    cluster.signal_worker(0, libc::SIGKILL);
    cluster.spawn_worker();
    let port = cluster.port();
    cluster.kill_coordinator();
    cluster.start_coordinator(port).await;
    let job = cluster.wait(&job_id, JOB_TIMEOUT).await;
    assert_eq!(job.state(), pb::JobState::Succeeded, "{}", job.error);
    let got = output_lines(&cluster, &job_id).await;
    assert_same_lines(&got, &cluster.reference("wc", &inputs), "wc after faults");
    assert_only_outputs(&client, &job).await;
}

/// Runs `binary` (which must refuse to start) on `storage`; its stderr.
fn refused_start(
    binary: &str,
    args: &[String],
    storage: &str,
    env: Vec<(String, String)>,
) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let output = Command::new(bin(binary))
        .args(args)
        .arg("--data-dir")
        .arg(dir.path())
        .args(["--storage", storage])
        .envs(env)
        .stdin(Stdio::null())
        .output()
        .expect("run");
    assert!(!output.status.success(), "{binary} started on {storage}");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_bucket_or_refused_credentials_stop_the_services_at_start_with_a_clear_error() {
    let s3 = S3Server::start();
    let checking = S3Server::start_with(&[("INITIAL_NO_AUTH_ACTION_COUNT", "0")]);
    let missing = "s3://no-such-bucket/x";
    for (binary, args) in [
        (
            "mr-coordinator",
            vec!["--listen".to_string(), format!("127.0.0.1:{}", free_port())],
        ),
        (
            "mr-worker",
            vec!["--coordinator".into(), "http://127.0.0.1:1".into()],
        ),
    ] {
        let stderr = refused_start(binary, &args, missing, s3.env());
        assert!(
            stderr.contains(missing) && stderr.contains("NoSuchBucket") && stderr.contains("AWS_"),
            "{binary}: {stderr}"
        );
        // Credentials the server does not know: its own error code, and the bucket.
        let stderr = refused_start(binary, &args, &url(), checking.env());
        assert!(
            stderr.contains(&url()) && stderr.contains("InvalidAccessKeyId"),
            "{binary}: {stderr}"
        );
    }
}

/// The S3 server SIGKILLed mid-job and started again on the same folder after a pause:
/// requests in between fail and are retried (or their tasks run again), and the output is
/// exact.
#[tokio::test(flavor = "multi_thread")]
async fn s3_output_is_exact_through_an_s3_server_restart() {
    let mut s3 = S3Server::s3s_fs();
    let (cluster, client) = s3_cluster(&s3, 2, "3s").await;
    let (inputs, job_id) = submit_big_wc(&cluster, &client).await;
    wait_mid_job(&cluster, &job_id, 2).await;
    s3.kill();
    tokio::time::sleep(Duration::from_secs(2)).await;
    s3.spawn();
    let job = cluster.wait(&job_id, JOB_TIMEOUT).await;
    assert_eq!(job.state(), pb::JobState::Succeeded, "{}", job.error);
    let got = output_lines(&cluster, &job_id).await;
    assert_same_lines(
        &got,
        &cluster.reference("wc", &inputs),
        "wc through an S3 restart",
    );
    assert_only_outputs(&client, &job).await;
}

/// A split read with ranged GETs is byte for byte the split read from a file: the lines
/// that start inside `[offset, offset + length)`, for every cut of a file whose lines
/// are empty, short, longer than the GETs that look for a line's end, and unterminated.
#[tokio::test(flavor = "multi_thread")]
async fn split_reads_on_s3_equal_split_reads_of_a_file() {
    let s3 = S3Server::s3s_fs();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut text = Vec::new();
    for i in 0..400usize {
        let len = match i % 7 {
            0 => 0,
            1 => 150_000, // longer than a GET that looks for a line's end
            _ => (i * 37) % 900,
        };
        text.extend((0..len).map(|j| b'a' + ((i + j) % 26) as u8));
        text.push(b'\n');
    }
    text.extend_from_slice(b"no newline at the end");
    let path = dir.path().join("lines.txt");
    std::fs::write(&path, &text).expect("write");
    let client = s3.client(&url());
    client.put("input/lines.txt", text.clone()).expect("put");
    let size = text.len() as u64;
    let mut cuts: Vec<(u64, u64)> = vec![(0, size), (0, 1), (size - 1, 1), (size, 10)];
    // Around the first lines' ends, and spread over the file.
    let ends: Vec<u64> = text
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == b'\n')
        .map(|(i, _)| i as u64)
        .take(6)
        .collect();
    for length in [1u64, 899, 150_001, 400_000] {
        for &end in &ends {
            for offset in [end.saturating_sub(1), end, end + 1, end + 2] {
                cuts.push((offset, length));
            }
        }
        let mut offset = 7;
        while offset < size {
            cuts.push((offset, length));
            offset += size / 11;
        }
    }
    for (offset, length) in cuts {
        let (s3_client, (offset_, length_)) = (client.clone(), (offset, length));
        let got = tokio::task::spawn_blocking(move || {
            mr_worker::tasks::read_split_s3(&s3_client, "input/lines.txt", offset_, length_)
        })
        .await
        .expect("join")
        .expect("read_split_s3");
        let want = mr_worker::tasks::read_split_at(&path, offset, length).expect("read_split_at");
        assert!(
            got.1 == want.1,
            "contents of [{offset}, +{length}): {} vs {} bytes",
            got.1.len(),
            want.1.len()
        );
        // Where the first line starts (skipped records are named by it), when there is one.
        if !want.1.is_empty() {
            assert_eq!(got.0, want.0, "start of [{offset}, +{length})");
        }
    }
}
