//! `make bench`: the figures of issue 6, measured side by side on this machine.
//!
//! Starts real `mr-coordinator` / `mr-worker` processes on 127.0.0.1, runs every figure
//! `BENCH_RUNS` times (default 3; the latency figure 5 times), takes medians, checks every
//! job's output against the native word count, prints a table with the targets and writes
//! the raw numbers to `bench-out/results.json`.
//!
//! Environment: `BENCH_RUNS` (runs per figure), `BENCH_FIGURES` (e.g. `1,3`; default all),
//! `BENCH_FILE_MIB` (corpus file size, default 32: the throughput corpus is 4 files, the
//! scaling corpus 16, the memory corpus 32).
//!
//! Figures 8–11 run the apps of other languages: the Python components (`wc-py`,
//! `indexer-py`: CPython inside, ~25 s to compile) with the workers' compile cache in
//! `bench-out/cache` (kept between runs, as the corpus is) or, for figure 11's cold side,
//! in a fresh `bench-out/cache-cold`; and the C `wc-c` against the Rust `wc`. The
//! indexer's reference is a native inverted index ([`mr_bench::native_index`]).
//!
//! Figure 12 runs no cluster: it times one Python map call in-process with its records
//! returned two ways ([`mr_bench::boundary`]).

use mr_proto::v1 as pb;
use mr_proto::v1::job_service_client::JobServiceClient;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tonic::transport::Channel;

type Res<T> = Result<T, Box<dyn std::error::Error>>;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("bench/ has a parent")
        .to_path_buf()
}

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

// ---------------------------------------------------------------------------------------
// A local cluster of real processes.

struct Cluster {
    /// With S3 storage: the S3 server (figure 13), stopped when the cluster is dropped.
    _s3: Option<S3Setup>,
    coordinator: Child,
    workers: Vec<Child>,
    client: JobServiceClient<Channel>,
    data: PathBuf,
    port: u16,
    logs: PathBuf,
}

impl Cluster {
    async fn start(data: &Path, workers: usize, logs: &Path) -> Res<Cluster> {
        Self::start_cached(data, workers, logs, None).await
    }

    /// [`Cluster::start`] with the workers' compile cache in `cache_dir` (`--cache-dir`)
    /// instead of the default `.mr/cache` of the data folder, which `start` clears.
    async fn start_cached(
        data: &Path,
        workers: usize,
        logs: &Path,
        cache_dir: Option<&Path>,
    ) -> Res<Cluster> {
        Self::start_with(data, workers, logs, cache_dir, None).await
    }

    /// [`Cluster::start_cached`], with the data in S3 when `s3` is given: the coordinator's
    /// journal then in `data`, the objects (so the outputs [`Cluster::check`] reads) in
    /// the S3 server's bucket folder.
    async fn start_with(
        data: &Path,
        workers: usize,
        logs: &Path,
        cache_dir: Option<&Path>,
        s3: Option<S3Setup>,
    ) -> Res<Cluster> {
        // A fresh journal and jobs folder: every cluster starts from nothing.
        let _ = std::fs::remove_dir_all(data.join(".mr"));
        let _ = std::fs::remove_dir_all(data.join("jobs"));
        let bin = root().join("target/release");
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let log = |name: &str| -> Res<Stdio> {
            Ok(std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(logs.join(name))?
                .into())
        };
        let storage_args = s3.as_ref().map(S3Setup::args).unwrap_or_default();
        let env = s3.as_ref().map(S3Setup::env).unwrap_or_default();
        let coordinator = spawn_coordinator_with(data, port, logs, &storage_args, &env)?;
        let addr = format!("http://127.0.0.1:{port}");
        let (channel, _) = connect(&addr).await?;
        let checked = s3.as_ref().map_or(data.to_path_buf(), |s| s.bucket_dir());
        let mut cluster = Cluster {
            _s3: s3,
            coordinator,
            workers: Vec::new(),
            client: JobServiceClient::new(channel).max_decoding_message_size(256 << 20),
            data: checked,
            port,
            logs: logs.to_path_buf(),
        };
        for i in 0..workers {
            let mut w = Command::new(bin.join("mr-worker"));
            w.arg("--coordinator")
                .arg(&addr)
                .arg("--data-dir")
                .arg(data)
                .arg("--worker-id")
                .arg(format!("w{}", i + 1));
            if let Some(dir) = cache_dir {
                w.arg("--cache-dir").arg(dir);
            }
            w.args(&storage_args).envs(env.iter().cloned());
            let w = w
                .stdin(Stdio::null())
                .stdout(log(&format!("worker-{}.log", i + 1))?)
                .stderr(log(&format!("worker-{}.log", i + 1))?)
                .spawn()?;
            cluster.workers.push(w);
        }
        Ok(cluster)
    }

    /// Runs a wc job to its end: (seconds from submit to SUCCEEDED, the job).
    async fn run(&mut self, inputs: &[String], n_reduce: u32) -> Res<(f64, pb::Job)> {
        self.run_split(inputs, n_reduce, 0).await
    }

    /// Kills the coordinator (SIGKILL) and starts it again on the same folder and port;
    /// returns the seconds until it answered ListJobs.
    async fn restart_coordinator(&mut self) -> Res<f64> {
        let _ = self.coordinator.kill();
        let _ = self.coordinator.wait();
        let started = Instant::now();
        self.coordinator = spawn_coordinator(&self.data, self.port, &self.logs)?;
        let (channel, _) = connect(&format!("http://127.0.0.1:{}", self.port)).await?;
        self.client = JobServiceClient::new(channel).max_decoding_message_size(256 << 20);
        self.client.list_jobs(pb::ListJobsRequest {}).await?;
        Ok(started.elapsed().as_secs_f64())
    }

    /// The coordinator's peak resident set (VmHWM), in MiB.
    fn coordinator_peak_mib(&self) -> f64 {
        peak_mib(self.coordinator.id())
    }

    /// Like [`Cluster::run`], with splits of at most `split_bytes` (0: the default).
    async fn run_split(
        &mut self,
        inputs: &[String],
        n_reduce: u32,
        split_bytes: u64,
    ) -> Res<(f64, pb::Job)> {
        self.run_app("wc", inputs, n_reduce, split_bytes).await
    }

    /// Runs a job of `app` (`target/apps/<app>.wasm`) to its end: (seconds from submit to
    /// SUCCEEDED, the job).
    async fn run_app(
        &mut self,
        app: &str,
        inputs: &[String],
        n_reduce: u32,
        split_bytes: u64,
    ) -> Res<(f64, pb::Job)> {
        let started = Instant::now();
        let id = self
            .client
            .submit_job(pb::SubmitJobRequest {
                app: app.into(),
                inputs: inputs.to_vec(),
                n_reduce,
                split_bytes,
                max_skipped_records: 0,
            })
            .await?
            .into_inner()
            .job_id;
        let mut stream = self
            .client
            .watch_job(pb::WatchJobRequest {
                job_id: id.clone(),
                detailed: false,
                ..Default::default()
            })
            .await?
            .into_inner();
        let mut last = None;
        while let Some(job) = stream.message().await? {
            let done = !matches!(
                job.state(),
                pb::JobState::Pending | pb::JobState::Running | pb::JobState::Unspecified
            );
            last = Some(job);
            if done {
                break;
            }
        }
        let elapsed = started.elapsed().as_secs_f64();
        let job = last.ok_or("no job update")?;
        if job.state() != pb::JobState::Succeeded {
            return Err(format!("job {id} ended {:?}: {}", job.state(), job.error).into());
        }
        Ok((elapsed, job))
    }

    /// The workers' peak resident set (VmHWM), in MiB.
    fn worker_peaks_mib(&self) -> Vec<f64> {
        self.workers.iter().map(|w| peak_mib(w.id())).collect()
    }

    /// The job's task records (GetJob, every page).
    async fn tasks(&mut self, job_id: &str) -> Res<Vec<pb::TaskInfo>> {
        let mut tasks = Vec::new();
        let mut token = String::new();
        loop {
            let page = self
                .client
                .get_job(pb::GetJobRequest {
                    job_id: job_id.into(),
                    task_page_size: 5000,
                    task_page_token: token,
                })
                .await?
                .into_inner();
            tasks.extend(page.tasks);
            if page.next_task_page_token.is_empty() {
                return Ok(tasks);
            }
            token = page.next_task_page_token;
        }
    }

    /// The job's first map task, from GetJob: the first map attempt that succeeded (ended
    /// first). Returns its duration, the seconds from the job's submission to its end, and
    /// how many of the job's map attempts did not succeed (timed out, failed, ...).
    async fn first_map(&mut self, job: &pb::Job) -> Res<(f64, f64, usize)> {
        let tasks = self.tasks(&job.job_id).await?;
        let attempts: Vec<&pb::TaskAttempt> = tasks
            .iter()
            .filter(|t| t.kind() == pb::TaskKind::Map)
            .flat_map(|t| &t.history)
            .collect();
        let first = attempts
            .iter()
            .filter(|a| a.outcome() == pb::AttemptOutcome::Succeeded)
            .min_by_key(|a| a.finished_at_ms)
            .ok_or_else(|| format!("job {}: no map attempt succeeded", job.job_id))?;
        let lost = attempts
            .iter()
            .filter(|a| a.outcome() != pb::AttemptOutcome::Succeeded)
            .count();
        Ok((
            (first.finished_at_ms - first.started_at_ms) as f64 / 1000.0,
            (first.finished_at_ms - job.submitted_at_ms) as f64 / 1000.0,
            lost,
        ))
    }

    /// Where a job's time went, from GetJob's attempts: per phase, the committed attempts'
    /// median and longest duration and when the phase's last one ended (after submit).
    async fn phases(&mut self, job: &pb::Job) -> Res<String> {
        let tasks = self.tasks(&job.job_id).await?;
        let mut shown = Vec::new();
        for (kind, name) in [
            (pb::TaskKind::Map, "maps"),
            (pb::TaskKind::Reduce, "reduces"),
        ] {
            let done: Vec<&pb::TaskAttempt> = tasks
                .iter()
                .filter(|t| t.kind() == kind)
                .flat_map(|t| &t.history)
                .filter(|a| a.outcome() == pb::AttemptOutcome::Succeeded)
                .collect();
            let secs: Vec<f64> = done
                .iter()
                .map(|a| (a.finished_at_ms - a.started_at_ms) as f64 / 1000.0)
                .collect();
            let end = done.iter().map(|a| a.finished_at_ms).max().unwrap_or(0);
            shown.push(format!(
                "{} {name}: median {:.2} s, longest {:.2} s, last done {:.2} s after submit",
                secs.len(),
                median(&secs),
                secs.iter().copied().fold(0.0, f64::max),
                (end - job.submitted_at_ms) as f64 / 1000.0
            ));
        }
        Ok(shown.join("; "))
    }

    /// The workers (`--worker-id`) that ran none of the job's tasks.
    async fn idle_workers(&mut self, job_id: &str) -> Res<Vec<String>> {
        let tasks = self.tasks(job_id).await?;
        Ok((1..=self.workers.len())
            .map(|i| format!("w{i}"))
            .filter(|w| {
                !tasks
                    .iter()
                    .flat_map(|t| &t.history)
                    .any(|a| &a.worker == w)
            })
            .collect())
    }

    /// Checks the job's outputs against the native reference and removes the job folder.
    fn check(&self, job: &pb::Job, reference: &Path) -> Res<()> {
        let mut lines: Vec<Vec<u8>> = Vec::new();
        for out in &job.outputs {
            let text = std::fs::read(self.data.join(out))?;
            lines.extend(
                text.split(|&b| b == b'\n')
                    .filter(|l| !l.is_empty())
                    .map(<[u8]>::to_vec),
            );
        }
        lines.sort_unstable();
        let mut joined = Vec::new();
        for l in &lines {
            joined.extend_from_slice(l);
            joined.push(b'\n');
        }
        let expected = std::fs::read(reference)?;
        if joined != expected {
            let first = lines
                .iter()
                .zip(expected.split(|&b| b == b'\n'))
                .find(|(a, b)| a.as_slice() != *b)
                .map(|(a, b)| {
                    format!(
                        "{:?} vs native {:?}",
                        String::from_utf8_lossy(a),
                        String::from_utf8_lossy(b)
                    )
                });
            return Err(format!(
                "job {} output differs from the native word count ({} lines vs {} bytes): first difference {}",
                job.job_id,
                lines.len(),
                expected.len(),
                first.unwrap_or_default()
            )
            .into());
        }
        let _ = std::fs::remove_dir_all(self.data.join("jobs").join(&job.job_id));
        Ok(())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for w in &mut self.workers {
            let _ = w.kill();
            let _ = w.wait();
        }
        let _ = self.coordinator.kill();
        let _ = self.coordinator.wait();
    }
}

/// A process's peak resident set (VmHWM), in MiB.
fn peak_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// `mr-s3-server` (s3s-fs) serving `root` on loopback, with the bucket `bench`: objects
/// are files under `root/bench/`, so inputs are put there by copying them.
struct S3Setup {
    server: Child,
    root: PathBuf,
    port: u16,
}

impl S3Setup {
    const BUCKET: &str = "bench";

    async fn start(root: &Path, logs: &Path) -> Res<S3Setup> {
        let _ = std::fs::remove_dir_all(root);
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(logs.join("s3-server.log"))?;
        let server = Command::new(root_dir_bin("mr-s3-server"))
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--root")
            .arg(root)
            .args([
                "--bucket",
                Self::BUCKET,
                "--access-key",
                "bench",
                "--secret-key",
                "bench",
            ])
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(S3Setup {
                    server,
                    root: root.to_path_buf(),
                    port,
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err("mr-s3-server did not start".into())
    }

    /// A client of the bucket (the services' own, from `mr-storage`).
    fn client(&self) -> Res<mr_storage::S3Store> {
        let url = format!("http://127.0.0.1:{}", self.port);
        Ok(Self::endpoint(&url).client(&format!("s3://{}", Self::BUCKET))?)
    }

    fn endpoint(url: &str) -> mr_storage::Endpoint<'_> {
        mr_storage::Endpoint {
            url,
            access_key: "bench",
            secret_key: "bench",
        }
    }

    fn bucket_dir(&self) -> PathBuf {
        self.root.join(Self::BUCKET)
    }

    fn args(&self) -> Vec<String> {
        vec!["--storage".into(), format!("s3://{}", Self::BUCKET)]
    }

    fn env(&self) -> Vec<(String, String)> {
        Self::endpoint(&format!("http://127.0.0.1:{}", self.port)).env()
    }
}

impl Drop for S3Setup {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}

fn root_dir_bin(name: &str) -> PathBuf {
    root().join("target/release").join(name)
}

fn spawn_coordinator(data: &Path, port: u16, logs: &Path) -> Res<Child> {
    spawn_coordinator_with(data, port, logs, &[], &[])
}

fn spawn_coordinator_with(
    data: &Path,
    port: u16,
    logs: &Path,
    args: &[String],
    env: &[(String, String)],
) -> Res<Child> {
    let log = || -> Res<Stdio> {
        Ok(std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(logs.join("coordinator.log"))?
            .into())
    };
    Ok(Command::new(root().join("target/release/mr-coordinator"))
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--data-dir")
        .arg(data)
        .arg("--apps-dir")
        .arg(root().join("target/apps"))
        .args(args)
        .envs(env.iter().cloned())
        .stdin(Stdio::null())
        .stdout(log()?)
        .stderr(log()?)
        .spawn()?)
}

/// A channel to `addr` once it accepts connections (within 10 s), and how long that took.
async fn connect(addr: &str) -> Res<(Channel, Duration)> {
    let started = Instant::now();
    loop {
        match Channel::from_shared(addr.to_string())?.connect().await {
            Ok(c) => return Ok((c, started.elapsed())),
            Err(e) if started.elapsed() > Duration::from_secs(10) => return Err(e.into()),
            Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
        }
    }
}

/// Bytes of the coordinator's own state (`.mr/` without the saved app modules).
fn state_bytes(data: &Path) -> u64 {
    ["journal", "snapshot"]
        .iter()
        .map(|f| std::fs::metadata(data.join(".mr").join(f)).map_or(0, |m| m.len()))
        .sum()
}

// ---------------------------------------------------------------------------------------
// Inputs and references.

struct Bench {
    out: PathBuf,
    data: PathBuf,
    logs: PathBuf,
    runs: usize,
    raw: String,
    rows: Vec<Row>,
}

struct Row {
    figure: String,
    measured: String,
    target: String,
    /// `None` for context figures without a target.
    pass: Option<bool>,
}

impl Bench {
    /// Runs the native word count (2 threads) over `inputs` (data-relative), writing its
    /// output to `bench-out/ref-<name>.txt`; returns the seconds it took (process start to
    /// exit, output written).
    fn native(&self, name: &str, inputs: &[String]) -> Res<(f64, PathBuf)> {
        self.native_threads(name, inputs, 2)
    }

    /// [`Self::native`] with `threads` threads.
    fn native_threads(&self, name: &str, inputs: &[String], threads: u32) -> Res<(f64, PathBuf)> {
        let exe = std::env::current_exe()?;
        let native = exe.with_file_name("mr-native-wc");
        let out = self.out.join(format!("ref-{name}.txt"));
        self.warm_page_cache(inputs)?;
        let started = Instant::now();
        let status = Command::new(native)
            .arg(threads.to_string())
            .arg(&out)
            .args(inputs.iter().map(|i| self.data.join(i)))
            .stdout(Stdio::null())
            .status()?;
        let secs = started.elapsed().as_secs_f64();
        if !status.success() {
            return Err(format!("mr-native-wc failed: {status}").into());
        }
        Ok((secs, out))
    }

    /// Reads the input files once, untimed, so that every timed run (native or cluster)
    /// starts with them in the page cache: the figures compare computation, not the disk.
    /// (This machine's kernel evicts cold pages early, DAMON reclaim, so a 0.5 GiB corpus
    /// read a minute ago may be back on disk.) Globs are skipped.
    fn warm_page_cache(&self, inputs: &[String]) -> Res<()> {
        use std::io::Read;
        let mut buf = vec![0u8; 1 << 20];
        for input in inputs.iter().filter(|i| !i.contains('*')) {
            let mut file = std::fs::File::open(self.data.join(input))?;
            while file.read(&mut buf)? > 0 {}
        }
        Ok(())
    }

    fn record(&mut self, key: &str, samples: &[f64]) {
        let list: Vec<String> = samples.iter().map(|s| format!("{s:.4}")).collect();
        let _ = writeln!(
            self.raw,
            "  \"{key}\": {{\"median\": {:.4}, \"samples\": [{}]}},",
            median(samples),
            list.join(", ")
        );
        eprintln!(
            "  {key}: median {:.4} of [{}]",
            median(samples),
            list.join(", ")
        );
    }

    fn row(&mut self, figure: &str, measured: String, target: &str, pass: bool) {
        self.rows.push(Row {
            figure: figure.into(),
            measured,
            target: target.into(),
            pass: Some(pass),
        });
    }

    /// A figure without a target of its own (context for another).
    fn info(&mut self, figure: &str, measured: String, note: &str) {
        self.rows.push(Row {
            figure: figure.into(),
            measured,
            target: note.into(),
            pass: None,
        });
    }

    /// Figure 2 with the data folder at `data`: records the samples under `key`; returns
    /// the figure as printed and the median rate.
    async fn scheduling(
        &mut self,
        data: &Path,
        lab: &[String],
        reference: &Path,
        key: &str,
    ) -> Res<(String, f64)> {
        let tiny = vec!["input/tiny/*.txt".to_string()];
        let mut cluster = Cluster::start(data, 2, &self.logs).await?;
        self.warm(&mut cluster, lab).await?;
        let secs = self
            .cluster_runs(&mut cluster, &tiny, 8, reference, self.runs)
            .await?;
        let rates: Vec<f64> = secs.iter().map(|s| 2008.0 / s).collect();
        self.record(&format!("{key}_s"), &secs);
        self.record(&format!("{key}_tasks_per_s"), &rates);
        let rate = median(&rates);
        let shown = format!(
            "{rate:.0} tasks/s ({:.2} s; best {:.0})",
            median(&secs),
            rates.iter().copied().fold(0.0, f64::max)
        );
        Ok((shown, rate))
    }

    fn size_mib(&self, inputs: &[String]) -> f64 {
        inputs
            .iter()
            .map(|i| std::fs::metadata(self.data.join(i)).map_or(0, |m| m.len()))
            .sum::<u64>() as f64
            / (1u64 << 20) as f64
    }

    /// Runs a job `runs` times on a warm cluster, checking each output.
    async fn cluster_runs(
        &self,
        cluster: &mut Cluster,
        inputs: &[String],
        n_reduce: u32,
        reference: &Path,
        runs: usize,
    ) -> Res<Vec<f64>> {
        self.app_runs(cluster, "wc", inputs, n_reduce, reference, runs)
            .await
    }

    /// [`Self::cluster_runs`] for a job of `app`.
    async fn app_runs(
        &self,
        cluster: &mut Cluster,
        app: &str,
        inputs: &[String],
        n_reduce: u32,
        reference: &Path,
        runs: usize,
    ) -> Res<Vec<f64>> {
        let mut v = Vec::new();
        for _ in 0..runs {
            self.warm_page_cache(inputs)?;
            let (secs, job) = cluster.run_app(app, inputs, n_reduce, 0).await?;
            cluster.check(&job, reference)?;
            v.push(secs);
        }
        Ok(v)
    }

    /// Warm-up jobs of `app` over `inputs` (n_reduce 10, outputs checked against
    /// `reference`) until every worker has run one of its tasks, so that every worker has
    /// the app loaded (compiled, or read from its compile cache) before a timed run.
    async fn warm_app(
        &self,
        cluster: &mut Cluster,
        app: &str,
        inputs: &[String],
        reference: &Path,
    ) -> Res<()> {
        for _ in 0..5 {
            let (secs, job) = cluster.run_app(app, inputs, 10, 0).await?;
            let idle = cluster.idle_workers(&job.job_id).await?;
            cluster.check(&job, reference)?;
            eprintln!("  warm-up {app}: {secs:.2} s; workers without a task: {idle:?}");
            if idle.is_empty() {
                return Ok(());
            }
        }
        Err(format!("warm-up of {app}: a worker got no task in 5 jobs").into())
    }

    /// The workers' compile cache for the Python apps' figures, kept between runs of the
    /// bench (as the corpus is): compiling a CPython component takes ~25 s.
    fn app_cache(&self) -> PathBuf {
        self.out.join("cache")
    }

    /// The native inverted index of `inputs` (data-relative) in `bench-out/ref-<name>.txt`:
    /// the reference for the indexer apps.
    fn native_index(&self, name: &str, inputs: &[String]) -> Res<PathBuf> {
        let docs: Vec<(String, PathBuf)> = inputs
            .iter()
            .map(|i| (i.clone(), self.data.join(i)))
            .collect();
        let out = self.out.join(format!("ref-{name}.txt"));
        std::fs::write(&out, mr_bench::native_index(&docs)?)?;
        Ok(out)
    }

    async fn warm(&self, cluster: &mut Cluster, lab: &[String]) -> Res<()> {
        let (_, job) = cluster.run(lab, 2).await?;
        let _ = std::fs::remove_dir_all(self.data.join("jobs").join(&job.job_id));
        Ok(())
    }
}

/// The entries of a compile cache folder (`--cache-dir`).
fn cache_entries(dir: &Path) -> Vec<std::ffi::OsString> {
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .map(|d| d.filter_map(|e| Some(e.ok()?.file_name())).collect())
        .unwrap_or_default();
    names.sort();
    names
}

/// Copies `files` and `lab` (data-relative) from the data folder `from` to one at `to`.
fn copy_inputs(from: &Path, to: &Path, files: &[String], lab: &[String]) -> Res<()> {
    for f in files.iter().chain(lab) {
        let target = to.join(f);
        if let Some(dir) = target.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::copy(from.join(f), &target)?;
    }
    Ok(())
}

fn corpus_inputs(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("input/corpus/c-{i:03}.txt"))
        .collect()
}

fn prepare(data: &Path, file_mib: u64) -> Res<Vec<String>> {
    let input = data.join("input");
    std::fs::create_dir_all(&input)?;
    let mut lab = Vec::new();
    for e in std::fs::read_dir(root().join("data/input"))? {
        let name = e?.file_name().to_string_lossy().into_owned();
        if name.starts_with("pg-") && name.ends_with(".txt") {
            std::fs::copy(root().join("data/input").join(&name), input.join(&name))?;
            lab.push(format!("input/{name}"));
        }
    }
    lab.sort();
    let started = Instant::now();
    mr_bench::generate_corpus(&input.join("corpus"), 32, file_mib << 20)?;
    eprintln!("corpus ready in {:.1?}", started.elapsed());
    let tiny = input.join("tiny");
    std::fs::create_dir_all(&tiny)?;
    let model_words = ["alpha", "beta", "gamma", "δέλτα", "эпсилон", "中文"];
    for i in 0..2000 {
        let p = tiny.join(format!("t-{i:04}.txt"));
        if !p.exists() {
            let w = model_words[i % model_words.len()];
            std::fs::write(&p, format!("{w} tiny {i} task {w}\n"))?;
        }
    }
    Ok(lab)
}

// ---------------------------------------------------------------------------------------

#[tokio::main(flavor = "current_thread")]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("mr-bench: {e}");
        std::process::exit(1);
    }
}

async fn run() -> Res<()> {
    let out = root().join("bench-out");
    let data = out.join("data");
    let logs = out.join("logs");
    let _ = std::fs::remove_dir_all(&logs);
    std::fs::create_dir_all(&logs)?;
    for b in ["mr-coordinator", "mr-worker"] {
        if !root().join("target/release").join(b).exists() {
            return Err(format!("target/release/{b} is missing: run `make build`").into());
        }
    }
    let runs = env_num("BENCH_RUNS", 3).max(1) as usize;
    let file_mib = env_num("BENCH_FILE_MIB", 32).max(1);
    let figures: Vec<u32> = std::env::var("BENCH_FIGURES")
        .unwrap_or_else(|_| "1,2,3,4,5,6,7,8,9,10,11,12,13".into())
        .split(',')
        .filter_map(|f| f.trim().parse().ok())
        .collect();
    let lab = prepare(&data, file_mib)?;
    let mut b = Bench {
        out: out.clone(),
        data: data.clone(),
        logs,
        runs,
        raw: String::new(),
        rows: Vec::new(),
    };
    let total = Instant::now();
    let small = corpus_inputs(4);
    let large = corpus_inputs(16);
    let huge = corpus_inputs(32);

    // 1: throughput against the native word count, runs interleaved.
    if figures.contains(&1) {
        let mib = b.size_mib(&small);
        eprintln!("figure 1: wc over {mib:.0} MiB, 2 workers vs native 2 threads");
        let mut cluster = Cluster::start(&data, 2, &b.logs).await?;
        b.warm(&mut cluster, &lab).await?;
        let (mut native, mut t2_small) = (Vec::new(), Vec::new());
        for _ in 0..b.runs {
            let (secs, reference) = b.native("small", &small)?;
            native.push(secs);
            let v = b
                .cluster_runs(&mut cluster, &small, 4, &reference, 1)
                .await?;
            t2_small.extend(v);
        }
        b.record("throughput_native_s", &native);
        b.record("throughput_cluster_s", &t2_small);
        let ratio = median(&t2_small) / median(&native);
        let _ = writeln!(b.raw, "  \"throughput_ratio\": {ratio:.4},");
        b.row(
            &format!("1. throughput: wc {mib:.0} MiB, cluster(2w) / native(2 threads)"),
            format!(
                "{ratio:.2}x ({:.2} s vs {:.2} s; {:.0} MiB/s)",
                median(&t2_small),
                median(&native),
                mib / median(&t2_small)
            ),
            "<= 1.3x",
            ratio <= 1.3,
        );
    }

    // 2: scheduling rate, with the data folder on this disk, then on tmpfs (which shows
    // what the coordinator and workers do when the file system is not the bound).
    if figures.contains(&2) {
        eprintln!("figure 2: 2000 tiny maps + 8 reduces, 2 workers");
        let files: Vec<String> = (0..2000)
            .map(|i| format!("input/tiny/t-{i:04}.txt"))
            .collect();
        let (_, reference) = b.native("tiny", &files)?;
        let (shown, rate) = b.scheduling(&data, &lab, &reference, "scheduling").await?;
        b.row(
            "2. scheduling: 2000 maps + 8 reduces, 2 workers",
            shown,
            ">= 5000 tasks/s",
            rate >= 5000.0,
        );
        let shm = Path::new("/dev/shm");
        if shm.is_dir() {
            let tmpfs = shm.join(format!("mr-bench-{}", std::process::id()));
            copy_inputs(&data, &tmpfs, &files, &lab)?;
            let measured = b
                .scheduling(&tmpfs, &lab, &reference, "scheduling_tmpfs")
                .await;
            let _ = std::fs::remove_dir_all(&tmpfs);
            let (shown, rate) = measured?;
            b.row(
                "2b. the same, data folder on tmpfs (/dev/shm)",
                shown,
                ">= 5000 tasks/s",
                rate >= 5000.0,
            );
        }
    }

    // 3: latency of a small job on a warm cluster.
    if figures.contains(&3) {
        eprintln!("figure 3: wc over the lab's texts, 3 warm workers");
        let (_, reference) = b.native("lab", &lab)?;
        let mut cluster = Cluster::start(&data, 3, &b.logs).await?;
        b.warm(&mut cluster, &lab).await?;
        let secs = b
            .cluster_runs(&mut cluster, &lab, 10, &reference, b.runs.max(5))
            .await?;
        let ms: Vec<f64> = secs.iter().map(|s| s * 1000.0).collect();
        b.record("latency_ms", &ms);
        let m = median(&ms);
        b.row(
            "3. latency: wc lab texts (n_reduce 10), 3 warm workers",
            format!("{m:.0} ms"),
            "< 50 ms",
            m < 50.0,
        );
    }

    // 4: memory over 1 GiB.
    if figures.contains(&4) {
        let mib = b.size_mib(&huge);
        eprintln!("figure 4: wc over {mib:.0} MiB, n_reduce 4, peak RSS per worker");
        let (_, reference) = b.native("huge", &huge)?;
        let mut peaks = Vec::new();
        let mut secs = Vec::new();
        for _ in 0..b.runs {
            let mut cluster = Cluster::start(&data, 2, &b.logs).await?;
            let (s, job) = cluster.run(&huge, 4).await?;
            let p = cluster.worker_peaks_mib();
            cluster.check(&job, &reference)?;
            eprintln!("  run: {s:.2} s, worker peaks {p:.0?} MiB");
            peaks.push(p.iter().copied().fold(0.0, f64::max));
            secs.push(s);
        }
        b.record("memory_peak_rss_mib", &peaks);
        b.record("memory_job_s", &secs);
        let m = median(&peaks);
        b.row(
            &format!("4. memory: wc {mib:.0} MiB, n_reduce 4, max worker peak RSS"),
            format!("{m:.0} MiB"),
            "< 256 MiB",
            m < 256.0 && peaks.iter().all(|&p| p < 256.0),
        );
    }

    // 5: scaling with input size and workers.
    if figures.contains(&5) {
        let (s_mib, l_mib) = (b.size_mib(&small), b.size_mib(&large));
        eprintln!("figure 5: {s_mib:.0} MiB and {l_mib:.0} MiB on 1 and 2 workers");
        let (_, ref_small) = b.native("small", &small)?;
        let (_, ref_large) = b.native("large", &large)?;
        // Small and large runs alternate on the same cluster, so that a drift in this
        // shared machine's speed hits both sides of each ratio alike.
        let mut times = Vec::new();
        for workers in [1, 2] {
            let mut cluster = Cluster::start(&data, workers, &b.logs).await?;
            b.warm(&mut cluster, &lab).await?;
            let (mut t_small, mut t_large) = (Vec::new(), Vec::new());
            for _ in 0..b.runs {
                t_small.extend(
                    b.cluster_runs(&mut cluster, &small, 4, &ref_small, 1)
                        .await?,
                );
                t_large.extend(
                    b.cluster_runs(&mut cluster, &large, 4, &ref_large, 1)
                        .await?,
                );
            }
            times.push((t_small, t_large));
        }
        let [(t1_small, t1_large), (t2_small, t2_large)] =
            <[_; 2]>::try_from(times).map_err(|_| "two cluster sizes")?;
        b.record("scaling_1w_small_s", &t1_small);
        b.record("scaling_1w_large_s", &t1_large);
        b.record("scaling_2w_small_s", &t2_small);
        b.record("scaling_2w_large_s", &t2_large);
        let per = |t: &[f64], mib: f64| median(t) / mib * 1000.0;
        let flat2 = per(&t2_large, l_mib) / per(&t2_small, s_mib);
        let flat1 = per(&t1_large, l_mib) / per(&t1_small, s_mib);
        let speedup = median(&t1_large) / median(&t2_large);
        let _ = writeln!(
            b.raw,
            "  \"scaling_flat_2w\": {flat2:.4},\n  \"scaling_flat_1w\": {flat1:.4},\n  \"scaling_speedup\": {speedup:.4},"
        );
        b.row(
            &format!("5a. scaling: ms/MiB at {l_mib:.0} vs {s_mib:.0} MiB, 2 workers"),
            format!(
                "{flat2:.2}x ({:.1} vs {:.1} ms/MiB)",
                per(&t2_large, l_mib),
                per(&t2_small, s_mib)
            ),
            "<= 1.10x (flat)",
            flat2 <= 1.10,
        );
        b.row(
            &format!("5b. scaling: ms/MiB at {l_mib:.0} vs {s_mib:.0} MiB, 1 worker"),
            format!(
                "{flat1:.2}x ({:.1} vs {:.1} ms/MiB)",
                per(&t1_large, l_mib),
                per(&t1_small, s_mib)
            ),
            "<= 1.10x (flat)",
            flat1 <= 1.10,
        );
        b.row(
            &format!("5c. scaling: speedup 1 -> 2 workers at {l_mib:.0} MiB"),
            format!(
                "{speedup:.2}x ({:.2} s vs {:.2} s)",
                median(&t1_large),
                median(&t2_large)
            ),
            ">= 1.7x",
            speedup >= 1.7,
        );
        // What two cores give a plain native program here: the ceiling for 5c.
        let (mut native1, mut native2) = (Vec::new(), Vec::new());
        for _ in 0..b.runs {
            native1.push(b.native_threads("large-1t", &large, 1)?.0);
            native2.push(b.native_threads("large-2t", &large, 2)?.0);
        }
        b.record("scaling_native_1t_large_s", &native1);
        b.record("scaling_native_2t_large_s", &native2);
        let ceiling = median(&native1) / median(&native2);
        let _ = writeln!(b.raw, "  \"scaling_native_speedup\": {ceiling:.4},");
        b.info(
            &format!("5d. machine: native speedup 1 -> 2 threads at {l_mib:.0} MiB"),
            format!(
                "{ceiling:.2}x ({:.2} s vs {:.2} s)",
                median(&native1),
                median(&native2)
            ),
            "(ceiling for 5c)",
        );
    }

    // 6: one job of 100,000+ map tasks: dispatch and commit cost per task, memory and
    // GetJob at that size.
    if figures.contains(&6) {
        let file = vec![small[0].clone()];
        let size = std::fs::metadata(data.join(&file[0]))?.len();
        let split = (size / 100_000).max(1);
        let (_, reference) = b.native("one-file", &file)?;
        eprintln!(
            "figure 6: wc over {} MiB with split_bytes {split}, 2 workers",
            size >> 20
        );
        let (mut rates, mut peaks) = (Vec::new(), Vec::new());
        let mut page_kib = 0.0;
        for _ in 0..b.runs {
            let mut cluster = Cluster::start(&data, 2, &b.logs).await?;
            let (secs, job) = cluster.run_split(&file, 2, split).await?;
            let tasks = job.map.map_or(0, |m| m.total) + job.reduce.map_or(0, |r| r.total);
            rates.push(tasks as f64 / secs);
            peaks.push(cluster.coordinator_peak_mib());
            // A stock client: default limits (4 MiB per message), the default page.
            let stock = JobServiceClient::new(
                connect(&format!("http://127.0.0.1:{}", cluster.port))
                    .await?
                    .0,
            );
            let page = stock
                .clone()
                .get_job(pb::GetJobRequest {
                    job_id: job.job_id.clone(),
                    ..Default::default()
                })
                .await?
                .into_inner();
            page_kib = prost::Message::encoded_len(&page) as f64 / 1024.0;
            eprintln!(
                "  run: {tasks} tasks in {secs:.1} s, coordinator peak {:.0} MiB",
                peaks.last().unwrap_or(&0.0)
            );
            cluster.check(&job, &reference)?;
        }
        b.record("big_job_tasks_per_s", &rates);
        b.record("big_job_coordinator_peak_mib", &peaks);
        let (rate, peak) = (median(&rates), median(&peaks));
        b.row(
            "6. 100k+ map tasks (split_bytes ~size/100k), 2 workers",
            format!(
                "{rate:.0} tasks/s, coordinator peak {peak:.0} MiB, GetJob page {page_kib:.0} KiB"
            ),
            ">= 3000 tasks/s, < 512 MiB",
            rate >= 3000.0 && peak < 512.0,
        );
    }

    // 7: state after 300 ended lab-sized jobs, and a restart on it.
    if figures.contains(&7) {
        eprintln!("figure 7: 300 lab jobs (8 maps + 4 reduces), then a restart");
        let mut cluster = Cluster::start(&data, 2, &b.logs).await?;
        for _ in 0..300 {
            let (_, job) = cluster.run(&lab, 4).await?;
            let _ = std::fs::remove_dir_all(data.join("jobs").join(&job.job_id));
        }
        let before = state_bytes(&data) as f64 / 1024.0;
        let mut restarts = Vec::new();
        for _ in 0..b.runs {
            restarts.push(cluster.restart_coordinator().await? * 1000.0);
        }
        let after = state_bytes(&data) as f64 / 1024.0;
        b.record("state_restart_ms", &restarts);
        let _ = writeln!(
            b.raw,
            "  \"state_kib_before\": {before:.1},\n  \"state_kib_after\": {after:.1},"
        );
        let restart = median(&restarts);
        b.row(
            "7. state: 300 ended lab jobs, after compaction; restart",
            format!("{after:.0} KiB (journal was {before:.0} KiB); restart {restart:.0} ms"),
            "<= 512 KiB, < 1 s",
            after <= 512.0 && restart < 1000.0,
        );
    }

    // 8: latency of a Python app (a CPython component) on warm workers.
    if figures.contains(&8) {
        eprintln!("figure 8: wc-py over the lab's texts, 2 warm workers");
        let (_, reference) = b.native("lab", &lab)?;
        let cache = b.app_cache();
        let mut cluster = Cluster::start_cached(&data, 2, &b.logs, Some(&cache)).await?;
        b.warm_app(&mut cluster, "wc-py", &lab, &reference).await?;
        let mut secs = Vec::new();
        for _ in 0..b.runs.max(5) {
            b.warm_page_cache(&lab)?;
            let (s, job) = cluster.run_app("wc-py", &lab, 10, 0).await?;
            eprintln!("  run: {s:.2} s; {}", cluster.phases(&job).await?);
            cluster.check(&job, &reference)?;
            secs.push(s);
        }
        b.record("py_latency_s", &secs);
        let m = median(&secs);
        b.row(
            "8. latency: wc-py lab texts (n_reduce 10), 2 warm workers",
            format!("{m:.2} s"),
            "< 2.0 s",
            m < 2.0,
        );
    }

    // 9: a worker's memory with Python apps: each holds a CPython per app (and instance).
    if figures.contains(&9) {
        eprintln!("figure 9: wc-py then indexer-py over the lab's texts, 2 workers, peak RSS");
        let (_, ref_wc) = b.native("lab", &lab)?;
        let ref_index = b.native_index("lab-index", &lab)?;
        let cache = b.app_cache();
        {
            // Untimed: fills the compile cache if it is empty, so that the measured
            // workers load both apps from it (figure 11 shows a compile).
            let mut cluster = Cluster::start_cached(&data, 2, &b.logs, Some(&cache)).await?;
            b.warm_app(&mut cluster, "wc-py", &lab, &ref_wc).await?;
            b.warm_app(&mut cluster, "indexer-py", &lab, &ref_index)
                .await?;
        }
        let (mut peaks, mut peaks_wc, mut secs) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..b.runs {
            let entries = cache_entries(&cache);
            let mut cluster = Cluster::start_cached(&data, 2, &b.logs, Some(&cache)).await?;
            let mut job_secs = Vec::new();
            let mut after = Vec::new();
            for (app, reference) in [("wc-py", &ref_wc), ("indexer-py", &ref_index)] {
                b.warm_page_cache(&lab)?;
                let (s, job) = cluster.run_app(app, &lab, 10, 0).await?;
                after.push(cluster.worker_peaks_mib());
                cluster.check(&job, reference)?;
                job_secs.push(s);
            }
            eprintln!(
                "  run: wc-py {:.2} s, indexer-py {:.2} s; worker peaks after wc-py {:.0?} MiB, after both {:.0?} MiB",
                job_secs[0], job_secs[1], after[0], after[1]
            );
            if cache_entries(&cache) != entries {
                // Someone rebuilt an app since the warm-up: this run compiled it.
                eprintln!("  (this run compiled an app: target/apps changed during the bench)");
            }
            peaks_wc.push(after[0].iter().copied().fold(0.0, f64::max));
            peaks.push(after[1].iter().copied().fold(0.0, f64::max));
            secs.push(job_secs[0] + job_secs[1]);
        }
        b.record("py_memory_peak_rss_mib", &peaks);
        b.record("py_memory_wc_py_peak_rss_mib", &peaks_wc);
        b.record("py_memory_jobs_s", &secs);
        let m = median(&peaks);
        b.row(
            "9. memory: wc-py + indexer-py lab texts, 2 workers, peak RSS",
            format!(
                "{m:.0} MiB (after wc-py alone {:.0} MiB)",
                median(&peaks_wc)
            ),
            "< 512 MiB",
            m < 512.0 && peaks.iter().all(|&p| p < 512.0),
        );
    }

    // 10: the C word count against the Rust one, runs interleaved on one cluster.
    if figures.contains(&10) {
        let mib = b.size_mib(&small);
        eprintln!("figure 10: wc-c vs wc (Rust) over {mib:.0} MiB, 2 workers, interleaved");
        let (_, ref_lab) = b.native("lab", &lab)?;
        let (_, reference) = b.native("small", &small)?;
        let mut cluster = Cluster::start(&data, 2, &b.logs).await?;
        b.warm_app(&mut cluster, "wc", &lab, &ref_lab).await?;
        b.warm_app(&mut cluster, "wc-c", &lab, &ref_lab).await?;
        let (mut rust, mut c) = (Vec::new(), Vec::new());
        for i in 0..b.runs {
            // Which app goes first alternates, so neither always follows the other.
            let order = if i % 2 == 0 {
                ["wc", "wc-c"]
            } else {
                ["wc-c", "wc"]
            };
            for app in order {
                let v = b
                    .app_runs(&mut cluster, app, &small, 4, &reference, 1)
                    .await?;
                if app == "wc" { &mut rust } else { &mut c }.extend(v);
            }
        }
        b.record("c_vs_rust_rust_s", &rust);
        b.record("c_vs_rust_c_s", &c);
        let ratio = median(&c) / median(&rust);
        let _ = writeln!(b.raw, "  \"c_vs_rust_ratio\": {ratio:.4},");
        b.row(
            &format!("10. wc-c / wc (Rust): {mib:.0} MiB, 2 workers (interleaved)"),
            format!(
                "{ratio:.2}x ({:.2} s vs {:.2} s)",
                median(&c),
                median(&rust)
            ),
            "<= 1.2x",
            ratio <= 1.2,
        );
    }

    // 11: a Python app's first job on fresh workers, with an empty compile cache (each
    // worker compiles CPython with Cranelift) and with the cache that run filled.
    if figures.contains(&11) {
        eprintln!("figure 11: wc-py over the lab's texts, 2 fresh workers, cold vs warm cache");
        let (_, reference) = b.native("lab", &lab)?;
        let cache = b.out.join("cache-cold");
        // [cold, warm]: job seconds, seconds to the first map's end, worker peak MiB, map
        // attempts lost.
        let mut sides: [[Vec<f64>; 4]; 2] = Default::default();
        for _ in 0..b.runs {
            let _ = std::fs::remove_dir_all(&cache);
            for (side, name) in sides.iter_mut().zip(["cold", "warm"]) {
                let mut cluster = Cluster::start_cached(&data, 2, &b.logs, Some(&cache)).await?;
                b.warm_page_cache(&lab)?;
                let (secs, job) = cluster.run_app("wc-py", &lab, 10, 0).await?;
                let (first, first_done, lost) = cluster.first_map(&job).await?;
                let peak = cluster.worker_peaks_mib().into_iter().fold(0.0, f64::max);
                cluster.check(&job, &reference)?;
                eprintln!(
                    "  {name}: job {secs:.2} s; first map done {first_done:.2} s after submit (its attempt {first:.2} s); {lost} map attempts lost (timed out or failed); worker peak {peak:.0} MiB"
                );
                for (v, x) in side.iter_mut().zip([secs, first_done, peak, lost as f64]) {
                    v.push(x);
                }
            }
        }
        let _ = std::fs::remove_dir_all(&cache);
        for ([secs, first, peak, lost], (key, label)) in sides.iter().zip([
            (
                "cold",
                "11a. first job, cold compile cache: wc-py lab, 2 fresh workers",
            ),
            (
                "warm",
                "11b. first job, warm compile cache: wc-py lab, 2 fresh workers",
            ),
        ]) {
            b.record(&format!("py_first_job_{key}_s"), secs);
            b.record(&format!("py_first_map_done_{key}_s"), first);
            b.record(&format!("py_first_job_{key}_worker_peak_mib"), peak);
            b.record(&format!("py_first_job_{key}_map_attempts_lost"), lost);
            b.info(
                label,
                format!(
                    "job {:.2} s; 1st map done {:.2} s; {:.0} map attempts lost; worker peak {:.0} MiB",
                    median(secs),
                    median(first),
                    median(lost),
                    median(peak)
                ),
                "(no target)",
            );
        }
    }

    // 12: how a map's records cross the component boundary (ARCHITECTURE.md, "The app
    // interface"): mr's flat buffer against a WIT list of tuples, the same Python map.
    if figures.contains(&12) {
        eprintln!("figure 12: records across the component boundary, flat vs list<tuple>");
        let read = |name: &str| std::fs::read(root().join("target/apps").join(name));
        let flat_wasm = read("wc-py.wasm")?;
        let tuples_wasm = read("bench/wc-tuples-py.wasm")
            .map_err(|e| format!("target/apps/bench/wc-tuples-py.wasm: {e} (run `make bench`)"))?;
        let mut lab_text = Vec::new();
        for input in &lab {
            lab_text.extend(std::fs::read(data.join(input))?);
        }
        let mut corpus = std::fs::read(data.join(&small[0]))?;
        corpus.truncate(16 << 20);
        for (key, what, contents) in [
            ("lab", "the lab texts", &lab_text),
            ("corpus", "16 MiB of the corpus", &corpus),
        ] {
            let s = mr_bench::boundary::measure(
                &flat_wasm,
                &tuples_wasm,
                "input/x.txt",
                contents,
                b.runs.max(7),
            )?;
            b.record(&format!("boundary_{key}_flat_s"), &s.flat);
            b.record(&format!("boundary_{key}_tuples_s"), &s.tuples);
            let ratio = median(&s.tuples) / median(&s.flat);
            b.info(
                &format!("12. one map call over {what}: list<tuple> / flat buffer"),
                format!(
                    "{ratio:.2}x ({:.3} s vs {:.3} s; {} records)",
                    median(&s.tuples),
                    median(&s.flat),
                    s.records
                ),
                "(no target: the faster is the interface)",
            );
        }
    }

    // 13: wc from S3 (mr-s3-server, i.e. s3s-fs, on loopback) against the same job on
    // file://, two clusters side by side, runs interleaved (issue 13).
    if figures.contains(&13) {
        let mib = b.size_mib(&small);
        eprintln!("figure 13: wc over {mib:.0} MiB on s3:// (s3s-fs) vs file://, 2 workers");
        let s3 = S3Setup::start(&b.out.join("s3"), &b.logs).await?;
        // PUT, not copied into the server's folder: s3s-fs keeps a PUT object's MD5 (its
        // ETag) beside it, and would hash the whole file on every GET and HEAD of one
        // copied in behind its back.
        let client = s3.client()?;
        for input in &small {
            let bytes = std::fs::read(data.join(input))?;
            let key = input.clone();
            tokio::task::spawn_blocking({
                let client = client.clone();
                move || client.put(&key, bytes)
            })
            .await??;
        }
        let state = b.out.join("s3-state");
        std::fs::create_dir_all(&state)?;
        let mut on_s3 = Cluster::start_with(&state, 2, &b.logs, None, Some(s3)).await?;
        let mut on_files = Cluster::start(&data, 2, &b.logs).await?;
        let (_, reference) = b.native("small", &small)?;
        let (mut s3_s, mut file_s) = (Vec::new(), Vec::new());
        for _ in 0..b.runs {
            s3_s.extend(b.cluster_runs(&mut on_s3, &small, 4, &reference, 1).await?);
            file_s.extend(
                b.cluster_runs(&mut on_files, &small, 4, &reference, 1)
                    .await?,
            );
        }
        drop(on_s3);
        b.record("s3_s", &s3_s);
        b.record("s3_file_s", &file_s);
        let ratio = median(&s3_s) / median(&file_s);
        b.row(
            &format!("13. wc {mib:.0} MiB, 2 workers: s3:// (s3s-fs) / file://"),
            format!(
                "{ratio:.2}x ({:.2} s vs {:.2} s)",
                median(&s3_s),
                median(&file_s)
            ),
            "<= 1.5x",
            ratio <= 1.5,
        );
    }

    // The table and the raw numbers.
    let mut table = String::new();
    let _ = writeln!(
        table,
        "\n{:<62} {:<44} {:<16} result",
        "figure", "measured (median)", "target"
    );
    for r in &b.rows {
        let _ = writeln!(
            table,
            "{:<62} {:<44} {:<16} {}",
            r.figure,
            r.measured,
            r.target,
            match r.pass {
                Some(true) => "PASS",
                Some(false) => "MISS",
                None => "info",
            }
        );
    }
    let _ = writeln!(
        table,
        "\n{} runs per figure, outputs checked against the native word count; {:.0} s in all; raw numbers in bench-out/results.json",
        b.runs,
        total.elapsed().as_secs_f64()
    );
    print!("{table}");
    let machine = format!(
        "nproc {}, load at end {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
    let json = format!(
        "{{\n{}  \"machine\": \"{machine}\",\n  \"runs\": {}\n}}\n",
        b.raw, b.runs
    );
    std::fs::write(b.out.join("results.json"), json)?;
    std::fs::write(b.out.join("results.txt"), &table)?;
    Ok(())
}
