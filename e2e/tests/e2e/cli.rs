//! The `mr` command-line client, run as a process against a real cluster: a job submitted,
//! watched, read back and listed; every task paged in; the workers listed; errors as one
//! line with the right exit code (an unknown job, a finished job cancelled, an unreachable
//! coordinator, a missing token, a wrong flag); a FAILED job's watch exits 1, a CANCELLED
//! one's 2.

use mr_e2e::v1 as pb;
use mr_e2e::{Cluster, ClusterOptions, TestStorage, assert_same_lines, bin, lab_inputs};
use serde_json::Value;
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

const TOKEN: &str = "cli-e2e-Token_42";

/// `mr` for the cluster at `addr`, without any MR_* setting inherited from the environment.
fn mr_command(addr: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(bin("mr"));
    for var in [
        "MR_COORDINATOR",
        "MR_AUTH_TOKEN",
        "MR_TLS_CA",
        "MR_TLS_DOMAIN",
    ] {
        cmd.env_remove(var);
    }
    cmd.arg("--coordinator").arg(addr).args(args);
    cmd.stdin(Stdio::null());
    cmd
}

fn mr_at(addr: &str, args: &[&str]) -> Output {
    mr_command(addr, args)
        .output()
        .unwrap_or_else(|e| panic!("run mr {args:?}: {e}"))
}

fn mr(cluster: &Cluster, args: &[&str]) -> Output {
    mr_at(&cluster.addr, args)
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Runs `mr` and expects exit 0; returns its stdout.
fn mr_ok(cluster: &Cluster, args: &[&str]) -> String {
    let output = mr(cluster, args);
    assert_eq!(
        output.status.code(),
        Some(0),
        "mr {args:?} failed: {}",
        stderr(&output)
    );
    stdout(&output)
}

/// Runs `mr ... --json` and parses its stdout.
fn mr_json(cluster: &Cluster, args: &[&str]) -> Value {
    let out = mr_ok(cluster, args);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("mr {args:?}: not JSON ({e}): {out}"))
}

/// Expects `mr` to fail with `code` and exactly one line on stderr, `mr: …`; returns it.
fn one_line_error(output: &Output, code: i32, what: &str) -> String {
    let err = stderr(output);
    assert_eq!(output.status.code(), Some(code), "{what}: stderr {err}");
    assert!(
        err.starts_with("mr: ") && err.ends_with('\n') && err.lines().count() == 1,
        "{what}: not one `mr: ` line: {err:?}"
    );
    for debug in ["panicked", "backtrace", "Status {", "Error {", "code:"] {
        assert!(!err.contains(debug), "{what}: a dump, not a message: {err}");
    }
    err.trim_end().to_string()
}

/// `mr submit ... --json`: the job id.
fn submit(cluster: &Cluster, args: &[&str]) -> String {
    let reply = mr_json(cluster, &[&["submit"], args, &["--json"]].concat());
    reply["job_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no job_id in {reply}"))
        .to_string()
}

/// `map 3/8 reduce 0/10 RUNNING`: (maps done, maps, reduces done, reduces, state).
fn parse_progress_line(line: &str) -> Option<(u32, u32, u32, u32, String)> {
    let words: Vec<&str> = line.split(' ').collect();
    let [map, m, reduce, r, state] = words.as_slice() else {
        return None;
    };
    if *map != "map" || *reduce != "reduce" {
        return None;
    }
    let (md, mt) = m.split_once('/')?;
    let (rd, rt) = r.split_once('/')?;
    Some((
        md.parse().ok()?,
        mt.parse().ok()?,
        rd.parse().ok()?,
        rt.parse().ok()?,
        state.to_string(),
    ))
}

async fn mr_submits_watches_reads_and_lists_a_job(storage: TestStorage) {
    let cluster = Cluster::start(ClusterOptions {
        workers: 2,
        storage,
        ..Default::default()
    })
    .await;
    let inputs = lab_inputs();
    let input_args: Vec<&str> = inputs.iter().map(String::as_str).collect();
    let job_id = submit(
        &cluster,
        &[&["wc"], &input_args[..], &["--reduce", "3"]].concat(),
    );

    // watch: stdout is a pipe, so plain progress lines, then the final state; exit 0.
    let watched = mr(&cluster, &["watch", &job_id]);
    assert_eq!(
        watched.status.code(),
        Some(0),
        "watch: {}\n{}",
        stdout(&watched),
        stderr(&watched)
    );
    let text = stdout(&watched);
    let lines: Vec<&str> = text.lines().collect();
    let (last, updates) = lines.split_last().expect("watch printed lines");
    assert!(last.ends_with("SUCCEEDED"), "final line: {last}");
    assert!(last.contains(&job_id), "final line names the job: {last}");
    let progress: Vec<_> = updates
        .iter()
        .filter(|l| !l.starts_with("warning: "))
        .map(|l| parse_progress_line(l).unwrap_or_else(|| panic!("not a progress line: {l}")))
        .collect();
    let (md, mt, rd, rt, state) = progress.last().expect("at least one update").clone();
    assert_eq!((md, mt, rd, rt), (8, 8, 3, 3), "{text}");
    assert_eq!(state, "SUCCEEDED");
    assert!(
        progress.windows(2).all(|w| w[0] != w[1]),
        "a line per change only: {text}"
    );

    // cat: the output, every line of every mr-out-Y, equals the reference.
    let cat = mr(&cluster, &["cat", &job_id]);
    assert_eq!(cat.status.code(), Some(0), "cat: {}", stderr(&cat));
    let mut lines: Vec<String> = stdout(&cat).lines().map(str::to_string).collect();
    lines.sort();
    assert_same_lines(&lines, &cluster.reference("wc", &inputs), "mr cat");

    // cat into a pipe closed early (`mr cat J | head -1`): quietly, exit 0.
    let mut child = mr_command(&cluster.addr, &["cat", &job_id])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn mr cat");
    let mut first = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut first)
        .expect("read a line");
    // The reader is dropped here: the pipe is closed.
    assert!(!first.is_empty(), "mr cat printed nothing");
    let closed = child.wait_with_output().expect("wait for mr cat");
    assert_eq!(
        closed.status.code(),
        Some(0),
        "cat | head: {}",
        stderr(&closed)
    );
    assert!(closed.stderr.is_empty(), "cat | head: {}", stderr(&closed));

    // jobs --json lists it, SUCCEEDED with its progress; the table names it too.
    let jobs = mr_json(&cluster, &["jobs", "--json"]);
    let listed = jobs["jobs"]
        .as_array()
        .expect("jobs array")
        .iter()
        .find(|j| j["job_id"] == job_id.as_str())
        .unwrap_or_else(|| panic!("{job_id} not listed: {jobs}"));
    assert_eq!(listed["state"], "SUCCEEDED");
    assert_eq!(listed["app"], "wc");
    assert_eq!(listed["map"]["completed"], 8);
    assert_eq!(listed["reduce"]["completed"], 3);
    assert_eq!(listed["outputs"].as_array().map(Vec::len), Some(3));
    assert!(mr_ok(&cluster, &["jobs"]).contains(&job_id));

    // status --tasks --json: every task, completed, each once.
    let status = mr_json(&cluster, &["status", &job_id, "--tasks", "--json"]);
    assert_eq!(status["state"], "SUCCEEDED");
    assert_eq!(status["input_files"].as_array().map(Vec::len), Some(8));
    // Counters: the built-ins, as the API has them.
    let lines = cluster.reference("wc", &lab_inputs()).len() as u64;
    assert_eq!(
        status["counters"]["mr.reduce_groups"].as_u64(),
        Some(lines),
        "{status}"
    );
    assert!(mr_ok(&cluster, &["status", &job_id]).contains(&format!("mr.reduce_groups = {lines}")));
    let tasks = status["tasks"].as_array().expect("tasks");
    let kinds: BTreeSet<(String, u64)> = tasks
        .iter()
        .map(|t| {
            assert_eq!(t["state"], "COMPLETED", "{t}");
            assert!(t["attempts"].as_u64() >= Some(1), "{t}");
            (
                t["kind"].as_str().unwrap_or_default().to_string(),
                t["index"].as_u64().unwrap_or(u64::MAX),
            )
        })
        .collect();
    let expected: BTreeSet<(String, u64)> = (0..8)
        .map(|i| ("map".to_string(), i))
        .chain((0..3).map(|i| ("reduce".to_string(), i)))
        .collect();
    assert_eq!(kinds, expected);
    let summary = mr_ok(&cluster, &["status", &job_id, "--tasks"]);
    assert!(
        summary.contains("SUCCEEDED") && summary.contains("mr-out-2"),
        "{summary}"
    );

    // workers --json: both workers, with the tasks they did.
    let workers = mr_json(&cluster, &["workers", "--json"]);
    let workers = workers["workers"].as_array().expect("workers array");
    let ids: Vec<&str> = workers.iter().filter_map(|w| w["id"].as_str()).collect();
    assert_eq!(ids, ["worker-0", "worker-1"], "{workers:?}");
    let done: u64 = workers
        .iter()
        .filter_map(|w| w["tasks_succeeded"].as_u64())
        .sum();
    assert!(done >= 11, "the workers did the 11 tasks: {workers:?}");
    assert!(mr_ok(&cluster, &["workers"]).contains("worker-1"));

    // A job of more tasks than one GetJob page holds (5,000): status pages through all.
    let many = submit(
        &cluster,
        &[
            &["wc"],
            &input_args[..],
            &["--reduce", "2", "--split-bytes", "600"],
        ]
        .concat(),
    );
    let watched = mr(&cluster, &["watch", &many]);
    assert_eq!(watched.status.code(), Some(0), "{}", stderr(&watched));
    let status = mr_json(&cluster, &["status", &many, "--tasks", "--json"]);
    let n_map = status["map"]["total"].as_u64().expect("map total");
    assert!(n_map > 5_000, "{n_map} map tasks: too few to page");
    let tasks = status["tasks"].as_array().expect("tasks");
    assert_eq!(tasks.len() as u64, n_map + 2, "every task, over the pages");
    let distinct: BTreeSet<(&str, u64)> = tasks
        .iter()
        .filter_map(|t| Some((t["kind"].as_str()?, t["index"].as_u64()?)))
        .collect();
    assert_eq!(distinct.len(), tasks.len(), "no task twice");
}

#[tokio::test(flavor = "multi_thread")]
async fn mr_errors_are_one_line_with_an_exit_code() {
    let cluster = Cluster::start(ClusterOptions {
        workers: 1,
        ..Default::default()
    })
    .await;
    let mut jobs = cluster.jobs().await;

    // An unknown job: the server's NotFound message, as it sent it.
    let not_found = jobs
        .get_job(pb::GetJobRequest {
            job_id: "nope".into(),
            ..Default::default()
        })
        .await
        .expect_err("no such job");
    assert_eq!(not_found.code(), tonic::Code::NotFound);
    let line = one_line_error(&mr(&cluster, &["status", "nope"]), 1, "unknown job");
    assert_eq!(line, format!("mr: {}", not_found.message()));
    for args in [
        &["watch", "nope"][..],
        &["cat", "nope"],
        &["cancel", "nope"],
    ] {
        let line = one_line_error(&mr(&cluster, args), 1, "unknown job");
        assert!(line.contains("'nope'"), "{args:?}: {line}");
    }

    // Cancelling a finished job: refused with the server's message.
    let job_id = submit(
        &cluster,
        &["wc", "input/pg-metamorphosis.txt", "--reduce", "1"],
    );
    let job = cluster.wait(&job_id, Duration::from_secs(120)).await;
    assert_eq!(job.state(), pb::JobState::Succeeded, "{}", job.error);
    let refusal = jobs
        .cancel_job(pb::CancelJobRequest {
            job_id: job_id.clone(),
        })
        .await
        .expect_err("a finished job cannot be cancelled");
    let line = one_line_error(&mr(&cluster, &["cancel", &job_id]), 1, "cancel");
    assert_eq!(line, format!("mr: {}", refusal.message()));
    let status = mr_json(&cluster, &["status", &job_id, "--json"]);
    assert_eq!(
        status["state"], "SUCCEEDED",
        "still SUCCEEDED after the refusal"
    );

    // A refused submission: the server's message (InvalidArgument naming the field).
    let bad = mr(
        &cluster,
        &["submit", "wc", "input/pg-*.txt", "--reduce", "0"],
    );
    one_line_error(&bad, 1, "n_reduce 0");

    // Nobody at the address: one line naming it and what to set.
    let unreachable = "http://127.0.0.1:1";
    let line = one_line_error(&mr_at(unreachable, &["jobs"]), 1, "unreachable");
    assert!(line.contains(unreachable), "{line}");
    assert!(line.contains("MR_COORDINATOR"), "{line}");
    // Not a URL; https:// without a CA; a CA file that is not there.
    one_line_error(&mr_at("127.0.0.1:50051", &["jobs"]), 1, "no scheme");
    let line = one_line_error(&mr_at("https://localhost:1", &["jobs"]), 1, "no CA");
    assert!(line.contains("--tls-ca"), "{line}");
    let missing = cluster.dir.path().join("no-such-ca.pem");
    let missing = missing.to_str().expect("utf-8 path");
    let line = one_line_error(
        &mr_at("https://localhost:1", &["jobs", "--tls-ca", missing]),
        1,
        "missing CA",
    );
    assert!(line.contains(missing), "{line}");

    // A wrong flag or a missing argument: clap's usage error, exit 2.
    for args in [
        &["jobs", "--no-such-flag"][..],
        &["submit", "wc"],
        &["frobnicate"],
    ] {
        let out = mr(&cluster, args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("Usage:"),
            "{args:?}: {}",
            stderr(&out)
        );
        assert!(out.stdout.is_empty(), "{args:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn mr_watch_exits_1_for_a_failed_job() {
    let cluster = Cluster::start(ClusterOptions {
        workers: 2,
        coordinator_args: ["--max-task-failures", "2"].map(String::from).to_vec(),
        ..Default::default()
    })
    .await;
    // `trap` fails every task: submit --watch --json follows it to FAILED.
    let out = mr(
        &cluster,
        &[
            "submit",
            "trap",
            "input/pg-metamorphosis.txt",
            "--reduce",
            "1",
            "--watch",
            "--json",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let updates: Vec<Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let job_id = updates
        .first()
        .and_then(|v| v["job_id"].as_str())
        .expect("first the job id")
        .to_string();
    let last = updates.last().expect("updates");
    assert_eq!(last["job_id"], job_id.as_str());
    assert_eq!(last["state"], "FAILED");
    assert!(
        last["error"].as_str().is_some_and(|e| e.contains("trap")),
        "{last}"
    );
    // Watching the failed job again: straight to the end, exit 1, the error on the last line.
    let out = mr(&cluster, &["watch", &job_id]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let text = stdout(&out);
    let last = text.lines().last().unwrap_or_default();
    assert!(last.contains("FAILED") && last.contains("trap"), "{text}");
    let status = mr_json(&cluster, &["status", &job_id, "--json"]);
    assert_eq!(status["state"], "FAILED");
    // Its output cannot be read: the server says why, exit 1.
    one_line_error(&mr(&cluster, &["cat", &job_id]), 1, "cat of a failed job");
}

#[tokio::test(flavor = "multi_thread")]
async fn mr_watch_exits_2_for_a_cancelled_job_and_sends_the_token() {
    // No workers: the job stays PENDING until it is cancelled.
    let cluster = Cluster::start(ClusterOptions {
        workers: 0,
        auth_token: Some(TOKEN.into()),
        ..Default::default()
    })
    .await;
    let with_token = |args: &[&str]| {
        mr_command(&cluster.addr, args)
            .env("MR_AUTH_TOKEN", TOKEN)
            .output()
            .expect("run mr")
    };
    // Without the token: Unauthenticated, one line saying how to pass it.
    let line = one_line_error(&mr(&cluster, &["jobs"]), 1, "no token");
    assert!(line.contains("--auth-token"), "{line}");
    let line = one_line_error(
        &mr(&cluster, &["jobs", "--auth-token", "wrong-token"]),
        1,
        "wrong token",
    );
    assert!(line.contains("MR_AUTH_TOKEN"), "{line}");

    let out = with_token(&["submit", "wc", "input/pg-grimm.txt", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let reply: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let job_id = reply["job_id"].as_str().expect("job_id").to_string();

    // A watch that follows the job live, while another mr cancels it.
    let mut watch = mr_command(&cluster.addr, &["watch", &job_id])
        .env("MR_AUTH_TOKEN", TOKEN)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn mr watch");
    let mut reader = BufReader::new(watch.stdout.take().expect("stdout"));
    let mut first = String::new();
    // The first update (after a warning about the missing workers, if one came first).
    while first.is_empty() || first.starts_with("warning: ") {
        first.clear();
        let n = reader.read_line(&mut first).expect("the first update");
        assert!(n > 0, "mr watch ended before its first update");
    }
    assert_eq!(
        parse_progress_line(first.trim_end()).map(|p| p.4),
        Some("PENDING".to_string()),
        "{first}"
    );
    let out = with_token(&["cancel", &job_id]);
    assert_eq!(out.status.code(), Some(0), "cancel: {}", stderr(&out));
    assert!(stdout(&out).contains("CANCELLED"), "{}", stdout(&out));
    let mut rest = String::new();
    reader.read_to_string(&mut rest).expect("the rest");
    let status = watch.wait().expect("wait for mr watch");
    assert_eq!(
        status.code(),
        Some(2),
        "watch of a cancelled job: {first}{rest}"
    );
    let last = rest.lines().last().unwrap_or_default();
    assert!(last.contains("CANCELLED"), "{first}{rest}");

    let out = with_token(&["jobs", "--json"]);
    let jobs: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(jobs["jobs"][0]["state"], "CANCELLED", "{jobs}");
    // No workers yet: an empty list, not an error.
    let out = with_token(&["workers", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let workers: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(workers["workers"].as_array().map(Vec::len), Some(0));
}

/// `mr apps`: an upload is checked, kept by hash across a restart, runs jobs under its
/// name (which records the module's hash), and goes again with `delete`; junk and
/// oversized uploads are refused with a message that says why.
#[tokio::test(flavor = "multi_thread")]
async fn mr_apps_pushes_checks_lists_and_deletes_uploads() {
    let mut cluster = Cluster::start(ClusterOptions {
        workers: 1,
        coordinator_args: vec!["--max-app-bytes".into(), (4u64 << 20).to_string()],
        ..Default::default()
    })
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let wasm = mr_e2e::apps_dir().join("wordstats.wasm");
    let pushed = mr_json(
        &cluster,
        &[
            "apps",
            "push",
            wasm.to_str().expect("utf-8"),
            "--name",
            "mywc",
            "--json",
        ],
    );
    assert_eq!(pushed["name"], "mywc");
    assert_eq!(pushed["uploaded"], true);
    let sha = pushed["sha256"].as_str().expect("sha256").to_string();
    assert_eq!(sha.len(), 64);

    // Junk: not Wasm; Wasm without the app interface; too large. Each refused, naming why.
    let junk = dir.path().join("junk.wasm");
    std::fs::write(&junk, b"this is not a module").expect("write");
    let err = one_line_error(
        &mr(&cluster, &["apps", "push", junk.to_str().expect("utf-8")]),
        1,
        "junk",
    );
    assert!(err.contains("not a WebAssembly module"), "{err}");
    let empty = dir.path().join("empty.wasm");
    std::fs::write(&empty, b"\0asm\x01\0\0\0").expect("write");
    let err = one_line_error(
        &mr(&cluster, &["apps", "push", empty.to_str().expect("utf-8")]),
        1,
        "no interface",
    );
    assert!(err.contains("does not export `mr_abi_version`"), "{err}");
    let big = dir.path().join("big.wasm");
    std::fs::write(&big, vec![0u8; 5 << 20]).expect("write");
    let err = one_line_error(
        &mr(&cluster, &["apps", "push", big.to_str().expect("utf-8")]),
        1,
        "too big",
    );
    assert!(err.contains("--max-app-bytes"), "{err}");

    // Listed, over a restart (SIGKILL), with the built-ins after it.
    let port = cluster.port();
    cluster.kill_coordinator();
    cluster.start_coordinator(port).await;
    let listed = mr_json(&cluster, &["apps", "list", "--json"]);
    let apps = listed["apps"].as_array().expect("apps");
    assert_eq!(apps[0]["name"], "mywc", "{listed}");
    assert_eq!(apps[0]["sha256"], sha.as_str());
    assert!(
        apps.iter()
            .any(|a| a["name"] == "wc" && a["uploaded"] == false),
        "{listed}"
    );
    assert!(
        !apps
            .iter()
            .any(|a| a["name"] == "junk" || a["name"] == "empty")
    );

    // A job under the uploaded name runs that module and records its hash.
    let inputs = lab_inputs();
    let mut args = vec!["submit", "mywc", "--reduce", "2", "--json"];
    args.extend(inputs.iter().map(String::as_str));
    let job_id = mr_json(&cluster, &args)["job_id"]
        .as_str()
        .expect("job_id")
        .to_string();
    let job = cluster.wait(&job_id, Duration::from_secs(120)).await;
    assert_eq!(job.state(), pb::JobState::Succeeded, "{}", job.error);
    assert_eq!(job.app_sha256, sha);
    assert_same_lines(
        &cluster.output_lines(&job),
        &cluster.reference("wc", &inputs),
        "mywc",
    );

    // Deleted: gone from the list, and a job can no longer name it.
    mr_ok(&cluster, &["apps", "delete", "mywc"]);
    let listed = mr_json(&cluster, &["apps", "list", "--json"]);
    assert!(
        !listed["apps"]
            .as_array()
            .expect("apps")
            .iter()
            .any(|a| a["name"] == "mywc")
    );
    let err = one_line_error(
        &mr(&cluster, &["submit", "mywc", "input/pg-grimm.txt"]),
        1,
        "deleted app",
    );
    assert!(err.contains("mywc"), "{err}");
    let err = one_line_error(&mr(&cluster, &["apps", "delete", "wc"]), 1, "a built-in");
    assert!(err.contains("wc"), "{err}");
}

on_both_storages!(mr_submits_watches_reads_and_lists_a_job,);
