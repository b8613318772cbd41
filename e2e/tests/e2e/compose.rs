//! The compose deployment with real containers, as a user runs it: `docker-compose.yml` at
//! the repository's root on a fresh project name, a free host port and a temporary data
//! folder, jobs submitted with the `grpcurl` binary, outputs read as plain files; and
//! `docker-compose.s3.yml`, whose workers share no volume and reach the data over S3 only.
//!
//! Needs a Docker engine, the image (`make images`; `make test` builds it first) and
//! `docker compose` or `docker-compose`. Skipped, with a message, only when `docker info`
//! fails. The tests run one after the other (each brings up its own cluster), and every
//! cluster is taken down, even when a test fails.

use mr_common::privileges::NOT_WRITABLE;
use mr_e2e::{
    assert_same_lines, files_under, free_port, lab_inputs, read_output_lines, reference_in,
    repo_root, tail, write_big_inputs,
};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
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

/// The owner (uid, gid) of a path.
fn owner_of(path: &Path) -> (u32, u32) {
    let meta = std::fs::metadata(path).unwrap_or_else(|e| panic!("stat {}: {e}", path.display()));
    (meta.uid(), meta.gid())
}

/// Everything the cluster writes in the data folder: `jobs/` and `.mr/` with all that is
/// under them (folders too), as (path, uid, gid).
fn written_by_cluster(data: &Path) -> Vec<(PathBuf, u32, u32)> {
    walk(&[data.join("jobs"), data.join(".mr")])
}

/// The given paths and everything under them (folders too), as (path, uid, gid).
fn walk(roots: &[PathBuf]) -> Vec<(PathBuf, u32, u32)> {
    let mut found = Vec::new();
    let mut stack = roots.to_vec();
    while let Some(path) = stack.pop() {
        let meta = std::fs::symlink_metadata(&path)
            .unwrap_or_else(|e| panic!("stat {}: {e}", path.display()));
        if meta.is_dir() {
            for entry in std::fs::read_dir(&path).expect("list a folder") {
                stack.push(entry.expect("a folder entry").path());
            }
        }
        found.push((path, meta.uid(), meta.gid()));
    }
    found
}

/// Who a container's main process runs as, from /proc on the host (the image has no shell).
#[derive(Debug, PartialEq, Eq)]
struct ProcessIdentity {
    /// Real, effective, saved and file-system uid.
    uids: Vec<u32>,
    /// The same for the gid.
    gids: Vec<u32>,
    /// Effective and permitted capabilities.
    cap_eff: u64,
    cap_prm: u64,
}

impl ProcessIdentity {
    /// What the binaries must run as after start-up: `uid`/`gid`, no capability.
    fn expected(uid: u32, gid: u32) -> Self {
        ProcessIdentity {
            uids: vec![uid; 4],
            gids: vec![gid; 4],
            cap_eff: 0,
            cap_prm: 0,
        }
    }

    fn of(container: &str) -> Self {
        let pid = docker(&["inspect", "--format", "{{.State.Pid}}", container]);
        let path = format!("/proc/{}/status", pid.trim());
        let status = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {path}: {e}"));
        let field = |name: &str| -> Vec<&str> {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .unwrap_or_else(|| panic!("no {name} in {path}"))
                .split_whitespace()
                .collect()
        };
        let ids = |name| -> Vec<u32> {
            field(name)
                .iter()
                .map(|v| v.parse().expect("an id"))
                .collect()
        };
        let caps = |name| u64::from_str_radix(field(name)[0], 16).expect("a capability mask");
        ProcessIdentity {
            uids: ids("Uid:"),
            gids: ids("Gid:"),
            cap_eff: caps("CapEff:"),
            cap_prm: caps("CapPrm:"),
        }
    }
}

/// The coordinator and every running worker run as the data folder's owner with no
/// capability, and every file and folder the cluster wrote belongs to that owner.
fn assert_runs_as_folder_owner(project: &Project) {
    let (uid, gid) = owner_of(&project.data);
    let mut containers = project.containers("coordinator", false);
    containers.extend(project.containers("worker", false));
    for id in &containers {
        assert_eq!(
            ProcessIdentity::of(id),
            ProcessIdentity::expected(uid, gid),
            "container {id} runs as the data folder's owner {uid}:{gid}, without capabilities"
        );
    }
    let written = written_by_cluster(&project.data);
    assert_all_owned_by(&written, (uid, gid));
    eprintln!(
        "{} containers run as {uid}:{gid} with no capability; {} files and folders written, all {uid}:{gid}",
        containers.len(),
        written.len()
    );
}

/// Every one of `written` (the journal among them) belongs to `owner` (uid, gid).
fn assert_all_owned_by(written: &[(PathBuf, u32, u32)], owner: (u32, u32)) {
    assert!(
        written.iter().any(|(p, ..)| p.ends_with("journal")),
        "the journal is among the files checked: {written:?}"
    );
    let others: Vec<_> = written
        .iter()
        .filter(|(_, u, g)| (*u, *g) != owner)
        .collect();
    assert!(
        others.is_empty(),
        "files not owned by the data folder's owner {owner:?}: {others:?}"
    );
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

/// The compose file of the shared-folder cluster, at the repository's root.
const SHARED_FOLDER: &str = "docker-compose.yml";
/// The compose file of the cluster on object storage (an S3 server, workers without a volume).
const OBJECT_STORAGE: &str = "docker-compose.s3.yml";

/// A compose project of one of the repository's compose files with its own name, ports and
/// data folder; taken down (with its network) when dropped.
struct Project {
    name: String,
    /// SHARED_FOLDER or OBJECT_STORAGE.
    file: &'static str,
    port: u16,
    /// Host port of the status page (MR_HTTP_PORT): projects side by side need their own.
    http_port: u16,
    /// Host port of the S3 server (MR_S3_PORT; OBJECT_STORAGE only).
    s3_port: u16,
    data: PathBuf,
    compose: Vec<String>,
    /// MR_AUTH_TOKEN of the cluster: every API call but health needs it.
    token: String,
    /// Settings of this project's own, over the defaults of `command`.
    settings: Vec<(&'static str, &'static str)>,
    down: bool,
    // Last: removed after the project is down.
    _dir: tempfile::TempDir,
}

impl Project {
    /// A new project of SHARED_FOLDER with the lab texts in `input/`, or None (after saying
    /// why) when no Docker engine is reachable.
    fn new(test: &str) -> Option<Project> {
        Self::of_file(test, SHARED_FOLDER)
    }

    /// The same with compose file `file`.
    fn of_file(test: &str, file: &'static str) -> Option<Project> {
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
            file,
            port: free_port(),
            http_port: free_port(),
            s3_port: free_port(),
            data,
            compose: compose_tool(),
            token: format!("t{suffix}{}", rand::rng().random::<u64>()),
            settings: Vec::new(),
            down: false,
            _dir: dir,
        };
        eprintln!(
            "{test}: project {} of {file} on 127.0.0.1:{} with data in {} ({})",
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
            .arg(repo_root().join(self.file))
            .args(args)
            // No MR_UID/MR_GID (cleared, should our environment have them): the services
            // must find the data folder's owner by themselves.
            .env("MR_UID", "")
            .env("MR_GID", "")
            .env("MR_DATA", &self.data)
            .env("MR_PORT", self.port.to_string())
            .env("MR_HTTP_PORT", self.http_port.to_string())
            .env("MR_S3_PORT", self.s3_port.to_string())
            .env("MR_BIND", "127.0.0.1")
            .env("MR_IMAGE", image())
            .env("MR_TASK_TIMEOUT", TASK_TIMEOUT)
            .env("MR_TASK_TIME_LIMIT", TASK_TIME_LIMIT)
            .env("MR_AUTH_TOKEN", &self.token)
            .env("MR_LOG_FORMAT", "text")
            .env("RUST_LOG", "info")
            .envs(self.settings.iter().copied());
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

    /// `run --rm -T coordinator`: the coordinator alone, in the foreground, without the
    /// restart policy; its exit status and output, once it exits (within `timeout`).
    fn run_coordinator(&self, timeout: Duration) -> Output {
        let child = self
            .command(&["run", "--rm", "-T", "coordinator"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start compose run");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || tx.send(child.wait_with_output()));
        rx.recv_timeout(timeout)
            .unwrap_or_else(|_| panic!("the coordinator still runs after {timeout:?}"))
            .expect("compose run")
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
    // No MR_UID: the services run as the folder's owner (root, when the tests run as root).
    assert_runs_as_folder_owner(&project);

    // A larger job: dozens of 1 MiB splits; one worker is killed mid-job and the workers
    // are scaled up to 4 meanwhile.
    // Large enough that the job is still running when the test has found a busy worker
    // (each GetJob through grpcurl costs ~0.2 s).
    let big_inputs = write_big_inputs(&project.data, 6, 4);
    let bytes: u64 = big_inputs
        .iter()
        .map(|n| std::fs::metadata(project.data.join(n)).expect("stat").len())
        .sum();
    assert!(bytes > 30 << 20, "tens of MiB: {bytes} bytes");
    let big = project.submit(&json!({
        "app": "wc",
        "inputs": ["input/big/*.txt"],
        "n_reduce": 8,
        "split_bytes": 512 << 10,
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

/// A uint64 of grpcurl's JSON (proto3 JSON writes them as strings; absent means 0).
fn uint(v: &Value) -> u64 {
    v.as_u64().or_else(|| v.as_str()?.parse().ok()).unwrap_or(0)
}

/// The attempt with this id, from any task's history.
fn find_attempt(job: &Value, attempt_id: u64) -> Option<Value> {
    tasks(job).iter().find_map(|t| {
        t["history"]
            .as_array()?
            .iter()
            .find(|a| uint(&a["attemptId"]) == attempt_id)
            .cloned()
    })
}

/// A map task running one attempt, and nothing else: (task index, attempt id, worker).
fn running_map_attempt(project: &Project, job_id: &str) -> (u64, u64, String) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let job = project.get_job(job_id);
        assert!(!is_terminal(&job), "job ended early: {}", progress(&job));
        let found = tasks(&job).iter().find_map(|t| {
            if t["kind"] != "TASK_KIND_MAP" || t["state"] != "TASK_STATE_IN_PROGRESS" {
                return None;
            }
            let history = t["history"].as_array()?;
            let mut running = history
                .iter()
                .filter(|a| a["outcome"] == "ATTEMPT_OUTCOME_RUNNING");
            let only = running.next()?;
            if running.next().is_some() {
                return None;
            }
            let worker = only["worker"].as_str()?.to_string();
            Some((uint(&t["index"]), uint(&only["attemptId"]), worker))
        });
        if let Some(found) = found {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "no map task in progress: {}",
            progress(&job)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Polls GetJob until the attempt is no longer running; its outcome.
fn wait_attempt_end(project: &Project, job_id: &str, attempt_id: u64, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        let job = project.get_job(job_id);
        let attempt = find_attempt(&job, attempt_id)
            .unwrap_or_else(|| panic!("no attempt {attempt_id} in job {job_id}"));
        let outcome = attempt["outcome"].as_str().unwrap_or("").to_string();
        if outcome != "ATTEMPT_OUTCOME_RUNNING" {
            return outcome;
        }
        assert!(
            Instant::now() < deadline,
            "attempt {attempt_id} still runs after {timeout:?}: {}",
            progress(&job)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Whether a text log line is about this attempt (`attempt=N` as a whole field).
fn names_attempt(line: &str, attempt_id: u64) -> bool {
    let field = format!("attempt={attempt_id}");
    line.match_indices(&field).any(|(at, _)| {
        !line[at + field.len()..]
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_digit())
    })
}

/// The lines of a container's logs.
fn container_logs(id: &str) -> String {
    let out = run(Command::new("docker").args(["logs", id]));
    text(&out.stdout) + &text(&out.stderr)
}

/// Polls a container's logs until a line has `message` and names the attempt; that line.
fn wait_log_line(
    what: &str,
    logs: impl Fn() -> String,
    message: &str,
    attempt_id: u64,
    timeout: Duration,
) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        let logs = logs();
        if let Some(line) = logs
            .lines()
            .find(|l| l.contains(message) && names_attempt(l, attempt_id))
        {
            return line.to_string();
        }
        assert!(
            Instant::now() < deadline,
            "no \"{message}\" about attempt {attempt_id} in the {what}'s logs within {timeout:?}:\n{}",
            tail(&logs, 30)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_partitioned_workers_late_report_is_ignored_and_the_output_is_exact() {
    let _serial = serial();
    let started = Instant::now();
    let Some(mut project) = Project::new("compose partition") else {
        return;
    };
    // The worker's debug lines say when a report fails and is retried.
    project.settings = vec![
        ("MR_TASK_TIMEOUT", "2s"),
        ("RUST_LOG", "info,mr_worker=debug"),
    ];
    // Slow maps (1 s each) over the lab texts five times over: 40 tasks, so that the job
    // most likely still runs when the partitioned worker's report comes, some 25 s on.
    let mut inputs = lab_inputs();
    for name in lab_inputs() {
        let stem = name.strip_suffix(".txt").expect("a .txt");
        for copy in 2..=5 {
            let copy = format!("{stem}-{copy}.txt");
            std::fs::copy(project.data.join(&name), project.data.join(&copy)).expect("copy");
            inputs.push(copy);
        }
    }
    // The reference runs the maps one after the other (40 s): meanwhile, in the background.
    let reference = {
        let (data, inputs) = (project.data.clone(), inputs.clone());
        std::thread::spawn(move || reference_in(&data, "mtiming", &inputs))
    };
    project.up(2, &[]);
    assert_eq!(project.containers("worker", false).len(), 2, "2 workers");
    let network = format!("{}_default", project.name);
    let job_id = project.submit(&json!({
        "app": "mtiming",
        "inputs": ["input/pg-*.txt"],
        "n_reduce": 2,
    }));

    // Cut a worker off the network while it runs a map task. Should its report have got
    // through just before the cut, reconnect it and try again with another task.
    let mut cuts = 0;
    let (task, attempt_id, worker, container, outcome, cut) = loop {
        cuts += 1;
        let (task, attempt_id, worker) = running_map_attempt(&project, &job_id);
        let container = project.worker_container(&worker);
        docker(&["network", "disconnect", &network, &container]);
        let cut = Instant::now();
        eprintln!(
            "disconnected {worker} (map-{task}, attempt {attempt_id}) from {network} after {:?}",
            started.elapsed()
        );
        let outcome = wait_attempt_end(&project, &job_id, attempt_id, Duration::from_secs(30));
        if outcome != "ATTEMPT_OUTCOME_SUCCEEDED" {
            break (task, attempt_id, worker, container, outcome, cut);
        }
        eprintln!("attempt {attempt_id} reported before the cut; reconnecting, trying again");
        docker(&["network", "connect", &network, &container]);
        assert!(cuts < 4, "every attempt cut off had reported already");
    };
    // No report nor heartbeat: the attempt times out (or a backup copy wins first).
    assert!(
        matches!(
            outcome.as_str(),
            "ATTEMPT_OUTCOME_TIMED_OUT" | "ATTEMPT_OUTCOME_SUPERSEDED"
        ),
        "the partitioned attempt {attempt_id} ended {outcome}"
    );
    eprintln!(
        "attempt {attempt_id}: {outcome} {:?} after the cut",
        cut.elapsed()
    );

    // The task runs again on the other worker, which finishes it.
    let deadline = Instant::now() + Duration::from_secs(60);
    let winner = loop {
        let job = project.get_job(&job_id);
        let winner = tasks(&job)
            .iter()
            .find(|t| t["kind"] == "TASK_KIND_MAP" && uint(&t["index"]) == task)
            .and_then(|t| {
                t["history"].as_array()?.iter().find_map(|a| {
                    (a["outcome"] == "ATTEMPT_OUTCOME_SUCCEEDED")
                        .then(|| a["worker"].as_str().unwrap_or("").to_string())
                })
            });
        if let Some(winner) = winner {
            break winner;
        }
        assert!(
            Instant::now() < deadline,
            "map-{task} not done again: {}",
            progress(&job)
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_ne!(winner, worker, "map-{task} was done by another worker");
    eprintln!(
        "map-{task} done by {winner} {:?} after the cut",
        cut.elapsed()
    );

    // The partitioned worker finished its map meanwhile; once its connection is known dead
    // (HTTP/2 keepalive), its report fails and is retried with backoff. Reconnect it then:
    // before, its hung heartbeat would get an answer on the old connection and the worker
    // would drop the attempt without reporting.
    let failed = wait_log_line(
        "partitioned worker",
        || container_logs(&container),
        "report failed; retrying",
        attempt_id,
        Duration::from_secs(90),
    );
    eprintln!(
        "the report fails {:?} after the cut: {failed}",
        cut.elapsed()
    );
    // The attempt's files, written under temporary names; none is renamed into place.
    let attempt_files = || -> Vec<String> {
        let suffix = format!(".a{attempt_id}.tmp");
        files_under(&project.data.join("jobs"))
            .into_iter()
            .filter(|f| f.ends_with(&suffix))
            .collect()
    };
    // Listed first: if the job still runs after, nothing has swept the job folder yet.
    let written = attempt_files();
    let running = state(&project.get_job(&job_id)) == "JOB_STATE_RUNNING";
    if running {
        assert!(
            !written.is_empty(),
            "the partitioned attempt wrote its files"
        );
    }
    docker(&["network", "connect", &network, &container]);
    let reconnected = Instant::now();

    // The retried report reaches the coordinator, which ignores it; the worker, told so,
    // deletes the attempt's files (the coordinator sweeps them too, once the job ends).
    let ignored = wait_log_line(
        "coordinator",
        || project.logs("coordinator"),
        "late report of a superseded attempt ignored",
        attempt_id,
        Duration::from_secs(60),
    );
    eprintln!(
        "late report ignored {:?} after the reconnection: {ignored}",
        reconnected.elapsed()
    );
    wait_log_line(
        "partitioned worker",
        || container_logs(&container),
        "report not accepted",
        attempt_id,
        Duration::from_secs(10),
    );
    // The worker logs that line before it removes the files (off its async threads):
    // give it that moment.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut left = attempt_files();
    while !left.is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        left = attempt_files();
    }
    assert!(
        left.is_empty(),
        "the files of the ignored attempt are left: {left:?}"
    );
    let job = project.get_job(&job_id);
    eprintln!(
        "the job {} when the late report came ({})",
        if running && !is_terminal(&job) {
            "still ran: the worker removed its files"
        } else {
            "had ended: the coordinator swept the files"
        },
        progress(&job)
    );

    let job = project.wait_job(&job_id, Duration::from_secs(180));
    assert_eq!(state(&job), "JOB_STATE_SUCCEEDED", "{}", progress(&job));
    assert_eq!(count(&job, "map", "total"), 40, "{}", progress(&job));
    let attempt = find_attempt(&job, attempt_id).expect("the partitioned attempt");
    assert_eq!(
        attempt["outcome"],
        outcome.as_str(),
        "the late report changed nothing"
    );
    assert_eq!(outputs(&job).len(), 2, "one output per reduce");
    assert_same_lines(
        &read_output_lines(&project.data, &outputs(&job)),
        &reference.join().expect("the reference"),
        "mtiming with a partitioned worker",
    );
    mr_e2e::assert_no_temp_files(&project.data);
    assert_eq!(
        project.containers("worker", false).len(),
        2,
        "both workers run"
    );
    eprintln!(
        "the partitioned worker's logs:\n{}",
        tail(&container_logs(&container), 12)
    );
    project.down_leaving_nothing();
    eprintln!(
        "partition test done after {:?} ({cuts} cut(s))",
        started.elapsed()
    );
}

#[test]
fn a_folder_of_uid_1000_is_served_as_1000_and_an_unwritable_one_is_refused_clearly() {
    let _serial = serial();
    let started = Instant::now();
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIPPED compose owner 1000: giving the data folder to uid 1000 needs root");
        return;
    }
    let Some(mut project) = Project::new("compose owner 1000") else {
        return;
    };
    let chown = |mode: u32| {
        let out = run(Command::new("chown")
            .arg("-R")
            .arg("1000:1000")
            .arg(&project.data));
        assert!(out.status.success(), "chown: {}", text(&out.stderr));
        std::fs::set_permissions(&project.data, std::fs::Permissions::from_mode(mode))
            .expect("chmod the data folder");
    };

    // Read-only for its owner: the coordinator stops at once, with one message saying so.
    chown(0o555);
    let out = project.run_coordinator(Duration::from_secs(60));
    let said = text(&out.stdout) + &text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "the coordinator fails:\n{said}");
    let line = said
        .lines()
        .find(|l| l.contains(NOT_WRITABLE))
        .unwrap_or_else(|| panic!("no \"{NOT_WRITABLE}\" in:\n{said}"));
    assert!(
        line.contains("/data ") && line.contains("1000:1000"),
        "the message names the folder and the uid:gid: {line}"
    );
    assert!(
        !project.data.join(".mr").exists(),
        "nothing is created in an unwritable folder"
    );
    eprintln!(
        "unwritable folder refused after {:?}: {line}",
        started.elapsed()
    );

    // Writable by its owner 1000: the cluster runs as 1000, and so does all it writes.
    chown(0o755);
    project.up(2, &[]);
    assert_eq!(project.containers("worker", false).len(), 2, "2 workers");
    let job_id = project.submit(&json!({"app": "wc", "inputs": ["input/pg-*.txt"], "n_reduce": 3}));
    let job = project.wait_job(&job_id, Duration::from_secs(120));
    assert_eq!(state(&job), "JOB_STATE_SUCCEEDED", "{}", progress(&job));
    assert_eq!(outputs(&job).len(), 3, "one output per reduce");
    assert_same_lines(
        &read_output_lines(&project.data, &outputs(&job)),
        &reference_in(&project.data, "wc", &lab_inputs()),
        "wc as uid 1000",
    );
    assert_eq!(owner_of(&project.data), (1000, 1000));
    assert_runs_as_folder_owner(&project);
    project.down_leaving_nothing();
    eprintln!("owner 1000 test done after {:?}", started.elapsed());
}

/// `docker-compose.s3.yml` on a data folder owned by uid 1000 (when the tests run as root):
/// the S3 server and the coordinator run as 1000, the workers as the image's user with no
/// capability and no volume at all; wc over the lab texts, copied into the bucket as plain
/// files, equals the reference; the attempts' keys are gone, and everything written in the
/// data folder (objects and journal) belongs to its owner.
#[test]
fn on_object_storage_the_workers_share_no_volume_and_the_output_is_exact() {
    let _serial = serial();
    let started = Instant::now();
    let Some(mut project) = Project::of_file("compose s3", OBJECT_STORAGE) else {
        return;
    };
    // Bucket `mr-data` of the S3 server is the folder s3/mr-data: the inputs are copied in as files.
    let bucket = project.data.join("s3/mr-data");
    std::fs::create_dir_all(bucket.join("input")).expect("mkdir the bucket's input/");
    for name in lab_inputs() {
        std::fs::copy(project.data.join(&name), bucket.join(&name)).expect("copy a lab text");
    }
    // SAFETY: geteuid has no preconditions.
    let owner = if unsafe { libc::geteuid() } == 0 {
        let out = run(Command::new("chown")
            .arg("-R")
            .arg("1000:1000")
            .arg(&project.data));
        assert!(out.status.success(), "chown: {}", text(&out.stderr));
        (1000, 1000)
    } else {
        owner_of(&project.data)
    };
    project.up(2, &[]);
    assert_eq!(project.containers("worker", false).len(), 2, "2 workers");
    for service in ["s3", "coordinator"] {
        for id in project.containers(service, false) {
            assert_eq!(
                ProcessIdentity::of(&id),
                ProcessIdentity::expected(owner.0, owner.1),
                "{service} runs as the data folder's owner, without capabilities"
            );
        }
    }
    for id in project.containers("worker", false) {
        assert_eq!(
            docker(&["inspect", "--format", "{{json .Mounts}}", &id]).trim(),
            "[]",
            "worker {id} mounts no volume"
        );
        assert_eq!(
            ProcessIdentity::of(&id),
            ProcessIdentity::expected(10001, 10001),
            "worker {id} runs as the image's user, without capabilities"
        );
    }
    eprintln!(
        "up with the S3 server and 2 workers after {:?}",
        started.elapsed()
    );

    let job_id = project.submit(&json!({"app": "wc", "inputs": ["input/pg-*.txt"], "n_reduce": 3}));
    let job = project.wait_job(&job_id, Duration::from_secs(180));
    assert_eq!(state(&job), "JOB_STATE_SUCCEEDED", "{}", progress(&job));
    assert_eq!(outputs(&job).len(), 3, "one output per reduce");
    assert_same_lines(
        &read_output_lines(&bucket, &outputs(&job)),
        &reference_in(&project.data, "wc", &lab_inputs()),
        "wc on object storage in containers",
    );
    // Only accepted objects under their final names: no attempt's key is left.
    let objects = files_under(&bucket.join("jobs"));
    assert!(
        !objects.is_empty(),
        "the job's objects are files of the bucket"
    );
    let debris: Vec<_> = objects.iter().filter(|p| p.contains(".tmp")).collect();
    assert!(debris.is_empty(), "attempt keys left behind: {debris:?}");
    // s3s-fs keeps up to two sidecar files per object beside the buckets; a deleted
    // object's go with it (mr-s3-server sees to it), so promoted attempts leave none.
    let sidecars = std::fs::read_dir(project.data.join("s3"))
        .expect("list the S3 server's folder")
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.file_name().to_string_lossy().starts_with(".bucket-"))
        })
        .count();
    let all_objects = files_under(&bucket).len();
    assert!(
        sidecars <= 2 * all_objects,
        "{sidecars} sidecar files for {all_objects} objects: deleted objects left theirs"
    );
    let written = walk(&[project.data.join(".mr"), project.data.join("s3")]);
    assert_all_owned_by(&written, owner);
    eprintln!(
        "job {job_id} exact after {:?}; {} objects and files, all {owner:?}; \
         {sidecars} sidecars for {all_objects} objects",
        started.elapsed(),
        written.len()
    );
    project.down_leaving_nothing();
}
