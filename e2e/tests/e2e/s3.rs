//! S3 storage (`--storage s3://BUCKET/PREFIX`) against a real S3 server on loopback
//! (moto_server, installed by `make setup`): inputs, intermediates and outputs in the
//! bucket, the workers with no shared folder. Outputs are compared line for line with
//! the sequential reference over the same inputs, through a worker SIGKILLed and the
//! coordinator SIGKILLed and restarted; a missing bucket is named at start-up.

use mr_e2e::v1 as pb;
use mr_e2e::{
    Cluster, ClusterOptions, assert_same_lines, bin, free_port, lab_inputs, write_big_inputs,
};
use mr_storage::{S3Store, Storage};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const BUCKET: &str = "mr-e2e";
const PREFIX: &str = "team/data";
const JOB_TIMEOUT: Duration = Duration::from_secs(240);

/// A moto S3 server on a free loopback port, killed when dropped.
struct S3Server {
    port: u16,
    child: Child,
    _dir: tempfile::TempDir,
}

impl S3Server {
    fn start() -> S3Server {
        Self::start_with(&[])
    }

    /// With moto's settings `env`, e.g. `INITIAL_NO_AUTH_ACTION_COUNT=0`: check every
    /// request's credentials (none are known, so every one is refused).
    fn start_with(env: &[(&str, &str)]) -> S3Server {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("moto.log")).expect("moto log");
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("moto_server (PyPI moto[server]; run `make setup`)");
        let server = S3Server {
            port,
            child,
            _dir: dir,
        };
        for _ in 0..300 {
            if server.request("GET", "/").is_some() {
                return server;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("moto_server did not answer on port {port}");
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
        assert_eq!(self.request("PUT", &format!("/{bucket}")), Some(200));
    }

    /// The AWS_* settings every process gets.
    fn env(&self) -> Vec<(String, String)> {
        [
            ("AWS_ENDPOINT_URL", self.endpoint()),
            ("AWS_ACCESS_KEY_ID", "test".into()),
            ("AWS_SECRET_ACCESS_KEY", "test".into()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_ALLOW_HTTP", "true".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// A client of `bucket/prefix`, configured without touching this process's environment.
    fn client(&self, url: &str) -> S3Store {
        let endpoint = self.endpoint();
        let settings = [
            ("aws_endpoint", endpoint.as_str()),
            ("aws_access_key_id", "test"),
            ("aws_secret_access_key", "test"),
            ("aws_region", "us-east-1"),
            ("aws_allow_http", "true"),
        ];
        match Storage::open_with(url, &settings).expect("S3 client") {
            Storage::S3(s3) => s3,
            Storage::Local => unreachable!("an s3:// URL"),
        }
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
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
async fn wc_and_indexer_on_s3_match_the_sequential_reference() {
    let s3 = S3Server::start();
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

#[tokio::test(flavor = "multi_thread")]
async fn s3_output_is_exact_through_a_worker_kill_and_a_coordinator_restart() {
    let s3 = S3Server::start();
    let (mut cluster, client) = s3_cluster(&s3, 2, "2s").await;
    let inputs = write_big_inputs(&cluster.data, 2, 1);
    upload(&client, &cluster, &inputs);
    let job_id = cluster
        .submit_request(pb::SubmitJobRequest {
            app: "wc".into(),
            inputs: vec!["input/big/*.txt".into()],
            n_reduce: 4,
            split_bytes: 512 << 10,
            max_skipped_records: 0,
        })
        .await;
    // Once some maps are committed: SIGKILL a worker (its attempt times out and runs
    // again), start another, then SIGKILL the coordinator and restart it on its journal.
    let deadline = tokio::time::Instant::now() + JOB_TIMEOUT;
    loop {
        let job = cluster.job(&job_id).await;
        let done = job
            .tasks
            .iter()
            .filter(|t| t.state() == pb::TaskState::Completed)
            .count();
        if done >= 3 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no maps done: {}",
            cluster.coordinator_log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let job = cluster.job(&job_id).await;
    assert_eq!(
        job.state(),
        pb::JobState::Running,
        "the faults come mid-job"
    );
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
