//! The test harness: starts a real coordinator and real workers (the release binaries) on
//! 127.0.0.1 with a fresh data folder, talks to them over gRPC, and computes references with
//! the one-process runner (`mr-worker sequential`).
//!
//! Binaries come from `target/release` (or `MR_BIN_DIR`), apps from `target/apps`
//! (or `MR_APPS_DIR`): `make build` makes both, and `make test` runs it first.

#![allow(clippy::missing_panics_doc)]

use mr_proto::v1 as pb;
use mr_proto::v1::job_service_client::JobServiceClient;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tonic::metadata::AsciiMetadataValue;
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig};

pub use mr_proto::v1;

/// The repository's root folder.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("e2e/ has a parent")
        .to_path_buf()
}

/// A release binary of the project; fails with a hint when it was not built.
pub fn bin(name: &str) -> PathBuf {
    let dir = std::env::var_os("MR_BIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/release"));
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: run `make build` first (make test does)",
        path.display()
    );
    path
}

/// The folder with the apps' `.wasm` files.
pub fn apps_dir() -> PathBuf {
    let dir = std::env::var_os("MR_APPS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/apps"));
    assert!(
        dir.join("wc.wasm").exists(),
        "{} has no wc.wasm: run `make build` first (make test does)",
        dir.display()
    );
    dir
}

/// The compile cache every test's workers and reference runs share (`--cache-dir`):
/// a CPython component is compiled once per test run, not once per worker and test.
/// Kept under `target/`, so a later run finds it warm; the worker's own tests cover a
/// cold and a damaged cache.
pub fn compile_cache_dir() -> PathBuf {
    repo_root().join("target/mr-test-cache")
}

/// The lab's input texts shipped in the repository, as `input/pg-*.txt` names.
pub fn lab_inputs() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(repo_root().join("data/input"))
        .expect("data/input exists")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("pg-") && n.ends_with(".txt"))
        .map(|n| format!("input/{n}"))
        .collect();
    names.sort();
    assert_eq!(names.len(), 8, "the eight lab texts are in data/input");
    names
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// How to start a cluster.
#[derive(Clone, Debug)]
pub struct ClusterOptions {
    pub workers: usize,
    /// `--task-timeout` of the coordinator.
    pub task_timeout: String,
    /// More coordinator flags.
    pub coordinator_args: Vec<String>,
    /// Extra environment for every process.
    pub env: Vec<(String, String)>,
    /// RLIMIT_FSIZE for workers: writes past it fail (EFBIG), like a full disk.
    pub worker_file_size_limit: Option<u64>,
    /// RLIMIT_NOFILE (soft and hard) for workers: at most this many open files.
    pub worker_open_files_limit: Option<u64>,
    /// RLIMIT_NOFILE (soft and hard) for the coordinator, as `ulimit -n` would set it.
    pub coordinator_open_files: Option<u64>,
    /// More worker flags.
    pub worker_args: Vec<String>,
    /// Token the coordinator requires (`--auth-token`) and the workers (env `MR_AUTH_TOKEN`)
    /// and the harness's clients send.
    pub auth_token: Option<String>,
    /// Serve TLS: the coordinator gets the certificate and key, the address becomes
    /// `https://localhost:PORT`, and the workers and the harness's clients trust the CA.
    pub tls: Option<TlsFiles>,
    /// Where inputs, intermediates and outputs live.
    pub storage: TestStorage,
}

/// The storage a test cluster runs on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TestStorage {
    /// The data folder (`file://`).
    #[default]
    Folder,
    /// S3: an `mr-s3-server` (s3s-fs) whose bucket is the data folder itself (s3s-fs keeps
    /// each object as a file of its bucket's folder). The coordinator and the workers get
    /// `--storage s3://data` and reach every input, intermediate and output over S3 only;
    /// the test reads and writes the same files through the folder, as it does on `file://`.
    S3,
}

/// Bucket of [`TestStorage::S3`]: the data folder's own name.
const S3_BUCKET: &str = "data";

impl ClusterOptions {
    /// The defaults on `storage`.
    pub fn on(storage: TestStorage) -> Self {
        ClusterOptions {
            storage,
            ..Default::default()
        }
    }
}

/// PEM files of a TLS setup.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    /// The CA that signed `cert`.
    pub ca: PathBuf,
    /// The coordinator's certificate (for `localhost` and 127.0.0.1).
    pub cert: PathBuf,
    /// The coordinator's private key.
    pub key: PathBuf,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        Self {
            workers: 3,
            task_timeout: "10s".into(),
            coordinator_args: Vec::new(),
            env: Vec::new(),
            worker_file_size_limit: None,
            worker_open_files_limit: None,
            coordinator_open_files: None,
            worker_args: Vec::new(),
            auth_token: None,
            tls: None,
            storage: TestStorage::Folder,
        }
    }
}

/// A coordinator and workers as child processes, with their own data folder.
pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub data: PathBuf,
    pub addr: String,
    pub options: ClusterOptions,
    coordinator: Option<Child>,
    workers: Vec<Option<Child>>,
    /// The S3 server of [`TestStorage::S3`].
    s3_server: Option<Child>,
}

impl Cluster {
    /// Starts a coordinator with the lab texts in `input/`, waits until it serves, then
    /// starts the workers.
    pub async fn start(options: ClusterOptions) -> Cluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        std::fs::create_dir_all(data.join("input")).expect("mkdir input");
        for name in lab_inputs() {
            std::fs::copy(repo_root().join("data").join(&name), data.join(&name))
                .expect("copy input");
        }
        let port = free_port();
        let addr = match options.tls {
            // The name the test certificate is for.
            Some(_) => format!("https://localhost:{port}"),
            None => format!("http://127.0.0.1:{port}"),
        };
        let mut cluster = Cluster {
            addr,
            data,
            dir,
            options,
            coordinator: None,
            workers: Vec::new(),
            s3_server: None,
        };
        if cluster.options.storage == TestStorage::S3 {
            cluster.start_s3_server().await;
        }
        cluster.start_coordinator(port).await;
        if cluster.options.storage == TestStorage::S3 {
            // It logs its storage once it serves (a connection may be accepted just before).
            let mut storage = None;
            for _ in 0..100 {
                let started = log_events(&cluster.coordinator_log(), "coordinator listening");
                storage = started.first().map(|e| e["fields"]["storage"].clone());
                if storage.is_some() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            assert_eq!(
                storage,
                Some(serde_json::json!(format!("s3://{S3_BUCKET}"))),
                "the coordinator runs on the S3 server"
            );
        }
        for _ in 0..cluster.options.workers {
            cluster.spawn_worker();
        }
        cluster
    }

    /// Starts the S3 server of [`TestStorage::S3`] on the data folder's parent, so that the
    /// data folder is its bucket, and gives every process the settings to reach it.
    async fn start_s3_server(&mut self) {
        assert_eq!(
            self.data.file_name().and_then(|n| n.to_str()),
            Some(S3_BUCKET),
            "the bucket is the data folder"
        );
        let port = free_port();
        let child = Command::new(bin("mr-s3-server"))
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--root")
            .arg(self.dir.path())
            .args(["--access-key", "test", "--secret-key", "test"])
            .stdin(Stdio::null())
            .stdout(self.log_file("s3-server.log"))
            .stderr(self.log_file("s3-server.log"))
            .env("RUST_LOG", "warn")
            .spawn()
            .expect("spawn mr-s3-server (make build)");
        self.s3_server = Some(child);
        let mut tries = 0;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            tries += 1;
            assert!(tries < 200, "mr-s3-server did not start on port {port}");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        let endpoint = format!("http://127.0.0.1:{port}");
        let server = mr_storage::Endpoint {
            url: &endpoint,
            access_key: "test",
            secret_key: "test",
        };
        self.options.env.extend(server.env());
        let storage = ["--storage".to_string(), format!("s3://{S3_BUCKET}")];
        self.options.coordinator_args.extend(storage.clone());
        self.options.worker_args.extend(storage);
    }

    fn log_file(&self, name: &str) -> std::fs::File {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join(name))
            .expect("log file")
    }

    fn command(&self, binary: &str, log: &str) -> Command {
        let mut cmd = Command::new(bin(binary));
        cmd.stdin(Stdio::null())
            .stdout(self.log_file(log))
            .stderr(self.log_file(log))
            .env("RUST_LOG", "info")
            .env("MR_LOG_FORMAT", "json");
        for (k, v) in &self.options.env {
            cmd.env(k, v);
        }
        cmd
    }

    /// Starts (or restarts) the coordinator on `port` and waits for it to serve.
    pub async fn start_coordinator(&mut self, port: u16) {
        let mut cmd = self.command("mr-coordinator", "coordinator.log");
        cmd.arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--data-dir")
            .arg(&self.data)
            .arg("--apps-dir")
            .arg(apps_dir())
            .arg("--task-timeout")
            .arg(&self.options.task_timeout)
            .args(&self.options.coordinator_args);
        if let Some(token) = &self.options.auth_token {
            cmd.arg("--auth-token").arg(token);
        }
        if let Some(tls) = &self.options.tls {
            cmd.arg("--tls-cert")
                .arg(&tls.cert)
                .arg("--tls-key")
                .arg(&tls.key);
        }
        if let Some(limit) = self.options.coordinator_open_files {
            set_rlimit(&mut cmd, libc::RLIMIT_NOFILE, limit);
        }
        self.coordinator = Some(cmd.spawn().expect("spawn coordinator"));
        for _ in 0..200 {
            if self.channel().await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("coordinator did not start:\n{}", self.coordinator_log());
    }

    /// Starts one more worker; returns its index.
    pub fn spawn_worker(&mut self) -> usize {
        let index = self.workers.len();
        let mut cmd = self.command("mr-worker", &format!("worker-{index}.log"));
        cmd.env("MR_CACHE_DIR", compile_cache_dir())
            .arg("--coordinator")
            .arg(&self.addr)
            .arg("--data-dir")
            .arg(&self.data)
            .arg("--worker-id")
            .arg(format!("worker-{index}"))
            .args(&self.options.worker_args);
        if let Some(token) = &self.options.auth_token {
            cmd.env("MR_AUTH_TOKEN", token);
        }
        if let Some(tls) = &self.options.tls {
            cmd.arg("--tls-ca").arg(&tls.ca);
        }
        if let Some(limit) = self.options.worker_file_size_limit {
            set_rlimit(&mut cmd, libc::RLIMIT_FSIZE, limit);
        }
        if let Some(limit) = self.options.worker_open_files_limit {
            set_rlimit(&mut cmd, libc::RLIMIT_NOFILE, limit);
        }
        self.workers.push(Some(cmd.spawn().expect("spawn worker")));
        index
    }

    /// The coordinator's port, to restart it on the same address.
    pub fn port(&self) -> u16 {
        self.addr
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("address has a port")
    }

    /// The coordinator's process id, while it runs.
    pub fn coordinator_pid(&self) -> Option<u32> {
        self.coordinator.as_ref().map(Child::id)
    }

    pub fn worker_pid(&self, index: usize) -> Option<i32> {
        self.workers.get(index)?.as_ref().map(|c| c.id() as i32)
    }

    /// Sends `signal` to worker `index` (SIGKILL also reaps it).
    pub fn signal_worker(&mut self, index: usize, signal: i32) {
        if let Some(pid) = self.worker_pid(index) {
            // SAFETY: kill(2) on our own child's pid has no memory-safety preconditions.
            unsafe { libc::kill(pid, signal) };
        }
        if signal == libc::SIGKILL
            && let Some(mut child) = self.workers[index].take()
        {
            let _ = child.wait();
        }
    }

    /// Indices of workers not killed by the test.
    pub fn live_workers(&self) -> Vec<usize> {
        (0..self.workers.len())
            .filter(|&i| self.workers[i].is_some())
            .collect()
    }

    /// Waits for worker `index` to exit on its own; returns its exit code.
    pub fn wait_worker(&mut self, index: usize, timeout: Duration) -> Option<i32> {
        let child = self.workers.get_mut(index)?.as_mut()?;
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Kills the coordinator with SIGKILL.
    pub fn kill_coordinator(&mut self) {
        if let Some(mut child) = self.coordinator.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// A connection to the coordinator (TLS, trusting the cluster's CA, when it serves TLS).
    /// It carries no token: see [`Cluster::bearer`].
    pub async fn channel(&self) -> Result<Channel, tonic::transport::Error> {
        let ca = self.options.tls.as_ref().map(|tls| tls.ca.as_path());
        connect(&self.addr, ca).await
    }

    /// The interceptor that sends the cluster's token (none when it has none).
    pub fn bearer(&self) -> Bearer {
        Bearer::new(self.options.auth_token.as_deref())
    }

    /// A job API client that sends the cluster's token.
    pub async fn jobs(&self) -> JobServiceClient<InterceptedService<Channel, Bearer>> {
        JobServiceClient::with_interceptor(
            self.channel().await.expect("connect to coordinator"),
            self.bearer(),
        )
    }

    /// Submits a job and returns its id; panics with the status if refused.
    pub async fn submit(&self, app: &str, inputs: &[String], n_reduce: u32) -> String {
        self.submit_request(pb::SubmitJobRequest {
            app: app.into(),
            inputs: inputs.to_vec(),
            n_reduce,
            split_bytes: 0,
            max_skipped_records: 0,
        })
        .await
    }

    pub async fn submit_request(&self, request: pb::SubmitJobRequest) -> String {
        self.jobs()
            .await
            .submit_job(request)
            .await
            .expect("job accepted")
            .into_inner()
            .job_id
    }

    /// The job now, in full (GetJob).
    pub async fn job(&self, job_id: &str) -> pb::Job {
        let mut jobs = self.jobs().await;
        let mut job = jobs
            .get_job(pb::GetJobRequest {
                job_id: job_id.into(),
                ..Default::default()
            })
            .await
            .expect("get job")
            .into_inner();
        // Every task, page after page.
        while !job.next_task_page_token.is_empty() {
            let page = jobs
                .get_job(pb::GetJobRequest {
                    job_id: job_id.into(),
                    task_page_token: std::mem::take(&mut job.next_task_page_token),
                    task_page_size: 5_000,
                })
                .await
                .expect("get job page")
                .into_inner();
            job.tasks.extend(page.tasks);
            job.next_task_page_token = page.next_task_page_token;
        }
        job
    }

    /// Follows the job with WatchJob until it ends, then returns it in full (GetJob), or
    /// panics after `timeout`.
    pub async fn wait(&self, job_id: &str, timeout: Duration) -> pb::Job {
        let watch = async {
            let mut stream = self
                .jobs()
                .await
                .watch_job(pb::WatchJobRequest {
                    job_id: job_id.into(),
                    detailed: false,
                    ..Default::default()
                })
                .await
                .expect("watch job")
                .into_inner();
            while stream.message().await.expect("watch stream").is_some() {}
            // Updates carry no per-task records; the ended job with them:
            self.job(job_id).await
        };
        match tokio::time::timeout(timeout, watch).await {
            Ok(job) => job,
            Err(_) => panic!(
                "job {job_id} did not end within {timeout:?}; coordinator log:\n{}",
                tail(&self.coordinator_log(), 60)
            ),
        }
    }

    /// Follows the job with GetJob polls (survives coordinator restarts) until it ends.
    pub async fn poll_until_done(&self, job_id: &str, timeout: Duration) -> pb::Job {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Ok(channel) = self.channel().await {
                let reply = JobServiceClient::with_interceptor(channel, self.bearer())
                    .get_job(pb::GetJobRequest {
                        job_id: job_id.into(),
                        ..Default::default()
                    })
                    .await;
                if let Ok(job) = reply {
                    let job = job.into_inner();
                    if is_terminal(job.state()) {
                        return job;
                    }
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "job {job_id} did not end within {timeout:?}; coordinator log:\n{}",
                tail(&self.coordinator_log(), 60)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Every line of the job's outputs, sorted (as the lab's `sort mr-out*`).
    pub fn output_lines(&self, job: &pb::Job) -> Vec<String> {
        assert_eq!(
            job.outputs.len() as u32,
            job.n_reduce,
            "one output per reduce"
        );
        let mut lines = Vec::new();
        for output in &job.outputs {
            let text = std::fs::read_to_string(self.data.join(output)).expect("read output");
            lines.extend(text.lines().map(str::to_string));
        }
        lines.sort();
        lines
    }

    pub fn coordinator_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("coordinator.log")).unwrap_or_default()
    }

    pub fn worker_log(&self, index: usize) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("worker-{index}.log")))
            .unwrap_or_default()
    }

    /// The reference output: the app run by `mr-worker sequential` over whole files.
    pub fn reference(&self, app: &str, inputs: &[String]) -> Vec<String> {
        reference_in(&self.data, app, inputs)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for child in self.workers.iter_mut().flatten() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.kill_coordinator();
        if let Some(mut child) = self.s3_server.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The type of `setrlimit`'s resource argument (glibc and musl differ).
#[cfg(target_env = "gnu")]
type Resource = libc::__rlimit_resource_t;
#[cfg(not(target_env = "gnu"))]
type Resource = libc::c_int;

/// Sets a resource limit (soft and hard) of the process `cmd` starts.
fn set_rlimit(cmd: &mut Command, resource: Resource, limit: u64) {
    use std::os::unix::process::CommandExt;
    let rlimit = libc::rlimit {
        rlim_cur: limit,
        rlim_max: limit,
    };
    // SAFETY: setrlimit is async-signal-safe and touches only the child being spawned.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setrlimit(resource, &rlimit) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
}

/// Connects to `addr`; over TLS trusting `ca` when given (the address must be `https://`).
pub async fn connect(addr: &str, ca: Option<&Path>) -> Result<Channel, tonic::transport::Error> {
    let mut endpoint = Channel::from_shared(addr.to_string())
        .expect("valid address")
        .connect_timeout(Duration::from_secs(2));
    if let Some(ca) = ca {
        let pem = std::fs::read(ca).expect("read the CA");
        endpoint = endpoint
            .tls_config(ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem)))?;
    }
    endpoint.connect().await
}

/// A client interceptor that sends `authorization: Bearer <token>`, when it has a token.
#[derive(Clone, Debug, Default)]
pub struct Bearer(Option<AsciiMetadataValue>);

impl Bearer {
    pub fn new(token: Option<&str>) -> Self {
        Self(token.map(|t| format!("Bearer {t}").parse().expect("an ASCII token")))
    }
}

impl Interceptor for Bearer {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// How many of the job's attempts (in its task records) ended with `outcome`.
pub fn attempts_with(job: &pb::Job, outcome: pb::AttemptOutcome) -> usize {
    job.tasks
        .iter()
        .flat_map(|t| &t.history)
        .filter(|a| a.outcome() == outcome)
        .count()
}

pub fn is_terminal(state: pb::JobState) -> bool {
    matches!(
        state,
        pb::JobState::Succeeded | pb::JobState::Failed | pb::JobState::Cancelled
    )
}

/// The last `n` lines of a log, for failure messages.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Asserts two sorted line lists are equal, showing the first difference, not 20k lines.
pub fn assert_same_lines(actual: &[String], expected: &[String], what: &str) {
    if actual == expected {
        return;
    }
    let first = actual
        .iter()
        .zip(expected)
        .position(|(a, e)| a != e)
        .unwrap_or(actual.len().min(expected.len()));
    panic!(
        "{what}: output differs from the reference at line {first}: got {:?}, expected {:?} ({} vs {} lines)",
        actual.get(first),
        expected.get(first),
        actual.len(),
        expected.len()
    );
}

/// Parsed JSON log lines with the given message.
pub fn log_events(log: &str, message: &str) -> Vec<serde_json::Value> {
    log.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["fields"]["message"] == message)
        .collect()
}

/// The reference output for inputs in any data folder (e.g. one shared with containers):
/// the app run by `mr-worker sequential` over whole files, sorted lines.
pub fn reference_in(data: &Path, app: &str, inputs: &[String]) -> Vec<String> {
    let output = Command::new(bin("mr-worker"))
        .env("MR_CACHE_DIR", compile_cache_dir())
        .arg("--data-dir")
        .arg(data)
        .arg("sequential")
        .arg("--app")
        .arg(apps_dir().join(format!("{app}.wasm")))
        .args(inputs)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run mr-worker sequential");
    assert!(
        output.status.success(),
        "sequential run failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut lines: Vec<String> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    lines.sort();
    lines
}

/// Every line of the given output files (relative to `data`), sorted, as `sort mr-out*`.
pub fn read_output_lines(data: &Path, outputs: &[String]) -> Vec<String> {
    let mut lines = Vec::new();
    for output in outputs {
        let path = data.join(output);
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("read output {}: {e}", path.display()));
        lines.extend(text.lines().map(str::to_string));
    }
    lines.sort();
    lines
}

/// A name made of letters only (words are runs of letters), distinct for each `n`.
fn letter_tag(mut n: usize) -> String {
    let mut s = Vec::new();
    loop {
        s.push(b'a' + (n % 26) as u8);
        n /= 26;
        if n == 0 {
            break;
        }
    }
    s.reverse();
    String::from_utf8(s).expect("ascii")
}

/// Tens of MiB in `input/big/` of `data`: the lab texts again and again, each line varied by
/// its repetition (an extra word, some lines upper-cased or reversed). Returns the names.
pub fn write_big_inputs(data: &Path, files: usize, reps_per_file: usize) -> Vec<String> {
    let mut lab = String::new();
    for name in lab_inputs() {
        let path = repo_root().join("data").join(&name);
        lab.push_str(&String::from_utf8_lossy(
            &std::fs::read(path).expect("read a lab text"),
        ));
    }
    std::fs::create_dir_all(data.join("input/big")).expect("mkdir input/big");
    let mut names = Vec::new();
    for f in 0..files {
        let mut out = String::with_capacity(lab.len() * reps_per_file * 11 / 10);
        for r in 0..reps_per_file {
            let rep = f * reps_per_file + r;
            for (i, line) in lab.lines().enumerate() {
                match (i + rep) % 7 {
                    0 => out.push_str(&line.to_uppercase()),
                    1 => out.push_str(&line.split(' ').rev().collect::<Vec<_>>().join(" ")),
                    _ => out.push_str(line),
                }
                out.push(' ');
                out.push_str(&letter_tag(rep * 13 + i % 11));
                out.push('\n');
            }
        }
        let name = format!("input/big/part-{f:02}.txt");
        std::fs::write(data.join(&name), out).expect("write a big input");
        names.push(name);
    }
    names
}

/// `n` one-line files `input/many/fNNNNN.txt` in `data` (one map task each): a word they
/// all share and one of their own. Returns the names.
pub fn write_one_line_inputs(data: &Path, n: usize) -> Vec<String> {
    std::fs::create_dir_all(data.join("input/many")).expect("mkdir input/many");
    (0..n)
        .map(|i| {
            let name = format!("input/many/f{i:05}.txt");
            let line = format!("shared {}\n", letter_tag(i));
            std::fs::write(data.join(&name), line).expect("write a one-line input");
            name
        })
        .collect()
}

/// Every file under `dir`, as sorted paths relative to it.
pub fn files_under(dir: &Path) -> Vec<String> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(rel) = path.strip_prefix(dir) {
                files.push(rel.to_string_lossy().into_owned());
            }
        }
    }
    files.sort();
    files
}

/// The temp files (`*.tmp`) under `data/jobs`.
fn temp_files(data: &Path) -> Vec<String> {
    files_under(&data.join("jobs"))
        .into_iter()
        .filter(|f| f.ends_with(".tmp"))
        .collect()
}

/// Asserts that no temp file (`*.tmp`) is left under `data/jobs`, once the workers have
/// had up to 10 s to remove them: a worker removes a superseded attempt's files only after
/// the coordinator has answered its late report, so they may outlive the job by a moment.
pub fn assert_no_temp_files(data: &Path) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut temps = temp_files(data);
    while !temps.is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        temps = temp_files(data);
    }
    assert!(temps.is_empty(), "temp files left: {temps:?}");
}
