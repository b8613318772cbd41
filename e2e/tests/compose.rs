//! The compose deployment with real containers, as a user runs it: `docker-compose.yml` at
//! the repository's root on a fresh project name, a free host port and a temporary data
//! folder, jobs submitted with the `grpcurl` binary, outputs read as plain files.
//!
//! Needs a Docker engine, the image (`make images`; `make test` builds it first) and
//! `docker compose` or `docker-compose`. Skipped, with a message, only when `docker info`
//! fails. The tests run one after the other (each brings up its own cluster), and every
//! cluster is taken down, even when a test fails.

use mr_e2e::{
    assert_same_lines, free_port, lab_inputs, read_output_lines, reference_in, repo_root, tail,
};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One cluster at a time: the machine has two cores.
static SERIAL: Mutex<()> = Mutex::new(());

const TASK_TIMEOUT: &str = "3s";
const TASK_TIME_LIMIT: &str = "10s";

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn image() -> String {
    std::env::var("MR_IMAGE").unwrap_or_else(|_| "mr:latest".into())
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

/// `docker ARGS`, which must succeed; its stdout.
fn docker(args: &[&str]) -> String {
    let out = run(Command::new("docker").args(args));
    assert!(
        out.status.success(),
        "docker {args:?} failed: {}",
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// Why no Docker engine can be used, if none can.
fn no_engine() -> Option<String> {
    match Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .stdin(Stdio::null())
        .output()
    {
        Ok(out) if out.status.success() => None,
        Ok(out) => Some(text(&out.stderr).trim().to_string()),
        Err(e) => Some(format!("no docker client: {e}")),
    }
}

/// `docker compose` (v2) if installed, else `docker-compose` (v1).
fn compose_tool() -> Vec<String> {
    let works = |program: &str, args: &[&str]| {
        Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if works("docker", &["compose", "version"]) {
        vec!["docker".into(), "compose".into()]
    } else if works("docker-compose", &["version"]) {
        vec!["docker-compose".into()]
    } else {
        panic!(
            "a Docker engine is reachable but neither `docker compose` nor `docker-compose` is installed"
        )
    }
}

/// A compose project of the repository's docker-compose.yml with its own name, port and
/// data folder; taken down (with its network) when dropped.
struct Project {
    name: String,
    port: u16,
    data: PathBuf,
    compose: Vec<String>,
    /// MR_AUTH_TOKEN of the cluster: every API call but health needs it.
    token: String,
    down: bool,
    // Last: removed after the project is down.
    _dir: tempfile::TempDir,
}

impl Project {
    /// A new project with the lab texts in `input/`, or None (after saying why) when no
    /// Docker engine is reachable.
    fn new(test: &str) -> Option<Project> {
        if let Some(why) = no_engine() {
            eprintln!(
                "SKIPPED {test}: no Docker engine is reachable (`docker info` failed: {why})"
            );
            return None;
        }
        let inspect = run(Command::new("docker").args(["image", "inspect", &image()]));
        assert!(
            inspect.status.success(),
            "the image {} is missing: run `make images` (make test does)",
            image()
        );
        assert!(
            run(Command::new("grpcurl").arg("-version"))
                .status
                .success(),
            "grpcurl does not run: run `make setup`"
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        std::fs::create_dir_all(data.join("input")).expect("mkdir input");
        for name in lab_inputs() {
            std::fs::copy(repo_root().join("data").join(&name), data.join(&name))
                .expect("copy a lab text");
        }
        use rand::Rng;
        let suffix: String = (0..8)
            .map(|_| (b'a' + rand::rng().random_range(0..26u8)) as char)
            .collect();
        let project = Project {
            name: format!("mrtest{suffix}"),
            port: free_port(),
            data,
            compose: compose_tool(),
            token: format!("t{suffix}{}", rand::rng().random::<u64>()),
            down: false,
            _dir: dir,
        };
        eprintln!(
            "{test}: project {} on 127.0.0.1:{} with data in {} ({})",
            project.name,
            project.port,
            project.data.display(),
            project.compose.join(" ")
        );
        Some(project)
    }

    /// The compose command line for this project, with its settings in the environment.
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.compose[0]);
        cmd.args(&self.compose[1..])
            .arg("--project-name")
            .arg(&self.name)
            .arg("--file")
            .arg(repo_root().join("docker-compose.yml"))
            .args(args)
            // The containers run as the owner of the data folder (us), so that they can
            // write it and the temporary folder can be removed afterwards.
            // SAFETY: geteuid/getegid have no preconditions.
            .env("MR_UID", unsafe { libc::geteuid() }.to_string())
            .env("MR_GID", unsafe { libc::getegid() }.to_string())
            .env("MR_DATA", &self.data)
            .env("MR_PORT", self.port.to_string())
            .env("MR_BIND", "127.0.0.1")
            .env("MR_IMAGE", image())
            .env("MR_TASK_TIMEOUT", TASK_TIMEOUT)
            .env("MR_TASK_TIME_LIMIT", TASK_TIME_LIMIT)
            .env("MR_AUTH_TOKEN", &self.token)
            .env("MR_LOG_FORMAT", "text")
            .env("RUST_LOG", "info");
        cmd
    }

    /// Runs compose with ARGS, which must succeed; its stdout.
    fn compose(&self, args: &[&str]) -> String {
        let out = run(&mut self.command(args));
        assert!(
            out.status.success(),
            "compose {args:?} failed: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        text(&out.stdout)
    }

    /// `up -d` with this many workers; waits until the API answers on the host port.
    fn up(&self, workers: usize, more: &[&str]) {
        let scale = format!("worker={workers}");
        let mut args = vec!["up", "-d", "--scale", &scale];
        args.extend_from_slice(more);
        self.compose(&args);
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.grpcurl("ListJobs", &json!({})).is_err() {
            assert!(
                Instant::now() < deadline,
                "the coordinator does not answer on 127.0.0.1:{}:\n{}",
                self.port,
                tail(&self.logs("coordinator"), 40)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Container ids of a service: running ones, or all.
    fn containers(&self, service: &str, all: bool) -> Vec<String> {
        let project = format!("label=com.docker.compose.project={}", self.name);
        let service = format!("label=com.docker.compose.service={service}");
        let mut args = vec!["ps", "-q", "--no-trunc", "--filter", &project];
        args.extend(["--filter", &service]);
        if all {
            args.push("-a");
        }
        docker(&args).lines().map(str::to_string).collect()
    }

    /// The container of a worker, from its id in the coordinator's records
    /// (`<hostname>-<pid>`, the hostname being the container's short id).
    fn worker_container(&self, worker: &str) -> String {
        let host = worker.rsplit_once('-').map_or(worker, |(h, _)| h);
        self.containers("worker", true)
            .into_iter()
            .find(|id| !host.is_empty() && id.starts_with(host))
            .unwrap_or_else(|| panic!("no worker container is named by {worker}"))
    }

    fn logs(&self, service: &str) -> String {
        let out = run(&mut self.command(&["logs", "--no-color", service]));
        text(&out.stdout) + &text(&out.stderr)
    }

    /// `grpcurl` against the coordinator's published port, with the token: every JSON
    /// message it printed.
    fn grpcurl(&self, method: &str, body: &Value) -> Result<Vec<Value>, String> {
        self.grpcurl_as(Some(&self.token), method, body)
    }

    fn grpcurl_as(
        &self,
        token: Option<&str>,
        method: &str,
        body: &Value,
    ) -> Result<Vec<Value>, String> {
        let mut cmd = Command::new("grpcurl");
        if let Some(token) = token {
            cmd.arg("-H").arg(format!("authorization: Bearer {token}"));
        }
        let out = run(cmd
            .args(["-plaintext", "-max-time", "600", "-d"])
            .arg(body.to_string())
            .arg(format!("127.0.0.1:{}", self.port))
            .arg(format!("mapreduce.v1.JobService/{method}")));
        if !out.status.success() {
            return Err(format!("grpcurl {method}: {}", text(&out.stderr)));
        }
        serde_json::Deserializer::from_slice(&out.stdout)
            .into_iter::<Value>()
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("grpcurl {method}: unreadable output: {e}"))
    }

    fn call(&self, method: &str, body: &Value) -> Value {
        let mut replies = self.grpcurl(method, body).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(replies.len(), 1, "{method}: one reply");
        replies.remove(0)
    }

    fn submit(&self, request: &Value) -> String {
        let reply = self.call("SubmitJob", request);
        reply["jobId"]
            .as_str()
            .unwrap_or_else(|| panic!("SubmitJob answered {reply}"))
            .to_string()
    }

    fn get_job(&self, job_id: &str) -> Value {
        self.call("GetJob", &json!({ "job_id": job_id }))
    }

    /// Polls GetJob until the job ends.
    fn wait_job(&self, job_id: &str, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let job = self.get_job(job_id);
            if is_terminal(&job) {
                return job;
            }
            assert!(
                Instant::now() < deadline,
                "job {job_id} did not end within {timeout:?}: {}\n{}",
                progress(&job),
                tail(&self.logs("coordinator"), 40)
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Waits for a container to stop; its exit code.
    fn wait_exit(&self, id: &str, timeout: Duration) -> i64 {
        let deadline = Instant::now() + timeout;
        loop {
            let state = docker(&[
                "inspect",
                "--format",
                "{{.State.Running}} {{.State.ExitCode}}",
                id,
            ]);
            let (running, code) = state.trim().split_once(' ').expect("running and code");
            if running == "false" {
                return code.parse().expect("an exit code");
            }
            assert!(
                Instant::now() < deadline,
                "container {id} still runs after {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// What of this project is still on the engine: containers, networks, volumes.
    fn leftovers(&self) -> Vec<String> {
        let label = format!("label=com.docker.compose.project={}", self.name);
        let mut left = Vec::new();
        for (what, args) in [
            ("container", vec!["ps", "-a", "-q", "--filter", &label]),
            ("network", vec!["network", "ls", "-q", "--filter", &label]),
            ("volume", vec!["volume", "ls", "-q", "--filter", &label]),
        ] {
            left.extend(docker(&args).lines().map(|id| format!("{what} {id}")));
        }
        left
    }

    /// `down -v --remove-orphans`, then nothing of the project may remain.
    fn down_leaving_nothing(&mut self) {
        self.compose(&["down", "--volumes", "--remove-orphans", "--timeout", "20"]);
        self.down = true;
        assert_eq!(
            self.leftovers(),
            Vec::<String>::new(),
            "left behind by down"
        );
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let out = run(&mut self.command(&["logs", "--no-color", "--tail", "40"]));
            eprintln!(
                "compose logs of {} (last lines per container):\n{}",
                self.name,
                text(&out.stdout)
            );
        }
        if !self.down {
            let _ = run(&mut self.command(&[
                "down",
                "--volumes",
                "--remove-orphans",
                "--timeout",
                "5",
            ]));
        }
    }
}

fn state(job: &Value) -> &str {
    job["state"].as_str().unwrap_or("JOB_STATE_UNSPECIFIED")
}

fn is_terminal(job: &Value) -> bool {
    matches!(
        state(job),
        "JOB_STATE_SUCCEEDED" | "JOB_STATE_FAILED" | "JOB_STATE_CANCELLED"
    )
}

/// A count from a PhaseProgress (grpcurl leaves zeros out).
fn count(job: &Value, phase: &str, field: &str) -> u64 {
    job[phase][field].as_u64().unwrap_or(0)
}

fn progress(job: &Value) -> String {
    format!(
        "{} map {}/{} reduce {}/{} {}",
        state(job),
        count(job, "map", "completed"),
        count(job, "map", "total"),
        count(job, "reduce", "completed"),
        count(job, "reduce", "total"),
        job["error"].as_str().unwrap_or("")
    )
}

fn outputs(job: &Value) -> Vec<String> {
    job["outputs"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|o| o.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

fn tasks(job: &Value) -> Vec<Value> {
    job["tasks"].as_array().cloned().unwrap_or_default()
}

/// Every attempt of the job: (worker, outcome).
fn attempts(job: &Value) -> Vec<(String, String)> {
    tasks(job)
        .iter()
        .flat_map(|t| t["history"].as_array().cloned().unwrap_or_default())
        .map(|a| {
            (
                a["worker"].as_str().unwrap_or("").to_string(),
                a["outcome"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

/// The worker of a task in progress, once at least `completed_maps` maps are done.
fn busy_worker(project: &Project, job_id: &str, completed_maps: u64) -> String {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let job = project.get_job(job_id);
        assert!(!is_terminal(&job), "job ended early: {}", progress(&job));
        if count(&job, "map", "completed") >= completed_maps
            && let Some(worker) = tasks(&job)
                .iter()
                .filter(|t| t["state"] == "TASK_STATE_IN_PROGRESS")
                .find_map(|t| t["worker"].as_str().map(String::from))
        {
            return worker;
        }
        assert!(
            Instant::now() < deadline,
            "no task in progress: {}",
            progress(&job)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Letters for a number (0 → "a", 26 → "ba"): words that differ between repetitions.
fn tag(mut n: usize) -> String {
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

/// Tens of MiB in `input/big/`: the lab texts again and again, each line varied by its
/// repetition (an extra word, some lines upper-cased or reversed). Returns the names.
fn write_big_inputs(data: &Path, files: usize, reps_per_file: usize) -> Vec<String> {
    let mut lab = String::new();
    for name in lab_inputs() {
        lab.push_str(&String::from_utf8_lossy(
            &std::fs::read(data.join(&name)).expect("read a lab text"),
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
                out.push_str(&tag(rep * 13 + i % 11));
                out.push('\n');
            }
        }
        let name = format!("input/big/part-{f:02}.txt");
        std::fs::write(data.join(&name), out).expect("write a big input");
        names.push(name);
    }
    names
}

#[test]
fn lab_and_big_jobs_are_exact_through_a_kill_and_a_scale_up() {
    let _serial = serial();
    let started = Instant::now();
    let Some(mut project) = Project::new("compose") else {
        return;
    };
    project.up(3, &[]);
    assert_eq!(project.containers("worker", false).len(), 3, "3 workers");
    let coordinator = project.containers("coordinator", false);
    assert_eq!(coordinator.len(), 1, "one coordinator");
    assert_eq!(
        docker(&[
            "inspect",
            "--format",
            "{{.State.Health.Status}}",
            &coordinator[0]
        ])
        .trim(),
        "healthy",
        "the healthcheck passes"
    );
    eprintln!("up with 3 workers after {:?}", started.elapsed());
    // MR_AUTH_TOKEN reaches the coordinator (and the workers, or no job would run).
    let refused = project
        .grpcurl_as(None, "ListJobs", &json!({}))
        .expect_err("a call without the token is refused");
    assert!(refused.contains("Unauthenticated"), "{refused}");

    // The lab: wc over the texts, followed with WatchJob as a user would.
    let lab = project.submit(&json!({"app": "wc", "inputs": ["input/pg-*.txt"], "n_reduce": 4}));
    let updates = project
        .grpcurl("WatchJob", &json!({ "job_id": lab }))
        .unwrap_or_else(|e| panic!("{e}"));
    let job = updates.last().expect("at least one update").clone();
    assert_eq!(state(&job), "JOB_STATE_SUCCEEDED", "{}", progress(&job));
    let lines = read_output_lines(&project.data, &outputs(&job));
    assert_eq!(outputs(&job).len(), 4, "one output per reduce");
    assert_same_lines(
        &lines,
        &reference_in(&project.data, "wc", &lab_inputs()),
        "wc in containers",
    );
    let mut joined = lines.join("\n");
    joined.push('\n');
    assert_eq!(
        hex::encode(Sha256::digest(joined.as_bytes())),
        "08d25f8329d8b7054a8330033736775249ffd98ca861f12e24e0cda079322c19",
        "the lab's known digest"
    );
    eprintln!("lab job {lab} exact after {:?}", started.elapsed());

    // A larger job: dozens of 1 MiB splits; one worker is killed mid-job and the workers
    // are scaled up to 4 meanwhile.
    let big_inputs = write_big_inputs(&project.data, 6, 2);
    let bytes: u64 = big_inputs
        .iter()
        .map(|n| std::fs::metadata(project.data.join(n)).expect("stat").len())
        .sum();
    assert!(bytes > 30 << 20, "tens of MiB: {bytes} bytes");
    let big = project.submit(&json!({
        "app": "wc",
        "inputs": ["input/big/*.txt"],
        "n_reduce": 8,
        "split_bytes": 1 << 20,
    }));
    let victim_worker = busy_worker(&project, &big, 2);
    let victim = project.worker_container(&victim_worker);
    docker(&["kill", &victim]);
    eprintln!(
        "killed worker {victim_worker} of job {big} ({} MiB) after {:?}",
        bytes >> 20,
        started.elapsed()
    );
    project.up(4, &["--no-recreate"]);
    let running = project.containers("worker", false);
    assert_eq!(running.len(), 4, "scaled up to 4 running workers");
    let job = project.wait_job(&big, Duration::from_secs(600));
    assert_eq!(state(&job), "JOB_STATE_SUCCEEDED", "{}", progress(&job));
    assert!(
        count(&job, "map", "total") >= 30,
        "dozens of map tasks: {}",
        progress(&job)
    );
    assert_eq!(outputs(&job).len(), 8, "one output per reduce");
    let victim_attempts: Vec<String> = attempts(&job)
        .into_iter()
        .filter(|(w, _)| *w == victim_worker)
        .map(|(_, outcome)| outcome)
        .collect();
    assert!(
        !victim_attempts.is_empty(),
        "the killed worker had attempts"
    );
    eprintln!(
        "job {big} done after {:?}: {}; the killed worker's attempts: {victim_attempts:?}",
        started.elapsed(),
        progress(&job)
    );
    assert_same_lines(
        &read_output_lines(&project.data, &outputs(&job)),
        &reference_in(&project.data, "wc", &big_inputs),
        "wc over the big inputs, with a worker killed",
    );
    eprintln!("big job exact after {:?}", started.elapsed());

    let logs = project.logs("coordinator");
    for job_id in [&lab, &big] {
        assert!(
            logs.contains(job_id.as_str()),
            "the coordinator's logs name job {job_id}"
        );
    }
    project.down_leaving_nothing();
    eprintln!("down, nothing left, after {:?}", started.elapsed());
}

#[test]
fn a_stopped_worker_hands_its_task_back_at_once_and_exits_0() {
    let _serial = serial();
    let started = Instant::now();
    let Some(mut project) = Project::new("compose graceful stop") else {
        return;
    };
    project.up(2, &[]);
    let workers = project.containers("worker", false);
    assert_eq!(workers.len(), 2, "2 workers");
    // An app that never finishes: its task is in progress until the worker lets it go.
    let job_id = project.submit(&json!({
        "app": "loop_forever",
        "inputs": ["input/pg-grimm.txt"],
        "n_reduce": 1,
    }));
    let worker = busy_worker(&project, &job_id, 0);
    let container = project.worker_container(&worker);
    let signalled = Instant::now();
    docker(&["kill", "--signal", "TERM", &container]);

    // Handed back: ABANDONED, not TIMED_OUT (which would take the task timeout).
    let deadline = Instant::now() + Duration::from_secs(20);
    let outcome = loop {
        let job = project.get_job(&job_id);
        let outcome = attempts(&job)
            .into_iter()
            .find(|(w, _)| *w == worker)
            .map(|(_, o)| o)
            .unwrap_or_default();
        if outcome != "ATTEMPT_OUTCOME_RUNNING" {
            break outcome;
        }
        assert!(
            Instant::now() < deadline,
            "the attempt of {worker} is still running"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let handed_back = signalled.elapsed();
    assert_eq!(
        outcome, "ATTEMPT_OUTCOME_ABANDONED",
        "the stopped worker hands its task back"
    );
    let code = project.wait_exit(&container, Duration::from_secs(60));
    let exited = signalled.elapsed();
    assert_eq!(code, 0, "a worker stopped with SIGTERM exits 0");
    assert!(
        exited < Duration::from_secs(8),
        "the worker exits at once, not when its looping app hits the time limit: {exited:?}"
    );
    eprintln!(
        "SIGTERM: task handed back after {handed_back:?}, exit 0 after {exited:?} (task timeout {TASK_TIMEOUT}, time limit {TASK_TIME_LIMIT})"
    );

    // `compose stop` on the rest (one of them now runs the task): every one exits 0.
    let cancelled = project.call("CancelJob", &json!({ "job_id": job_id }));
    assert_eq!(state(&cancelled), "JOB_STATE_CANCELLED");
    let running = project.containers("worker", false);
    assert!(!running.is_empty(), "a worker is left");
    let stopping = Instant::now();
    project.compose(&["stop", "--timeout", "30", "worker"]);
    for id in &running {
        assert_eq!(
            project.wait_exit(id, Duration::from_secs(5)),
            0,
            "worker {id} exits 0 on compose stop"
        );
    }
    eprintln!(
        "compose stop: {} workers exited 0 after {:?}",
        running.len(),
        stopping.elapsed()
    );
    project.down_leaving_nothing();
    eprintln!("graceful stop test done after {:?}", started.elapsed());
}
