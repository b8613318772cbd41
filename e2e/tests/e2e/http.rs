//! The coordinator's HTTP side (`--http-listen`) against real binaries and real tools: a lab
//! word count runs to SUCCEEDED, then `/metrics` goes through Debian's `promtool check
//! metrics` and a real Prometheus scrapes it; the status page is loaded in a real browser
//! (the system's Chromium driven by Playwright, `tests/browser/status_page.py`): the job's
//! row, its page with one Gantt bar per attempt, the 404 page; and with a token, the page,
//! the API and `/metrics` refuse a request without it and let a browser in with `?token=`.
//!
//! `scripts/setup.sh` installs the tools (Debian `chromium`, `prometheus` with `promtool`,
//! PyPI `playwright`); a part whose tool is missing is skipped with a `SKIPPED` line.
//!
//! `cargo test --release -p mr-e2e --test e2e http:: -- --ignored` also renews the screenshot in
//! docs/status-page.png from a real run (a lab `crash` job on three workers: failures,
//! retries, backups, batches).

use mr_e2e::v1 as pb;
use mr_e2e::{Cluster, ClusterOptions, free_port, lab_inputs, repo_root};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A cluster whose coordinator also serves HTTP; returns it with the HTTP address.
async fn start(workers: usize, token: Option<&str>) -> (Cluster, String) {
    let port = free_port();
    let cluster = Cluster::start(ClusterOptions {
        workers,
        coordinator_args: vec!["--http-listen".into(), format!("127.0.0.1:{port}")],
        auth_token: token.map(str::to_string),
        ..Default::default()
    })
    .await;
    let addr = format!("127.0.0.1:{port}");
    // The HTTP server starts beside the gRPC one: wait until it answers.
    let deadline = Instant::now() + Duration::from_secs(10);
    while get(&addr, "/assets/style.css", &[]).is_err() {
        assert!(
            Instant::now() < deadline,
            "the HTTP side did not start:\n{}",
            cluster.coordinator_log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    (cluster, addr)
}

/// An HTTP response, as read by [`get`].
#[derive(Debug)]
struct Reply {
    status: u16,
    /// Lower-case names.
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// One HTTP/1.1 GET on a fresh connection (`Connection: close`), read to its end.
fn get(addr: &str, path: &str, headers: &[(&str, &str)]) -> std::io::Result<Reply> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes())?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string());
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no end of headers"))?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("no status line"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"))
    {
        body = dechunk(&body).ok_or_else(|| bad("bad chunked body"))?;
    }
    Ok(Reply {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&data[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(data.get(..size)?);
        data = data.get(size + 2..)?;
    }
}

fn must_get(addr: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
    get(addr, path, headers).unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

/// `text` with everything but unreserved characters percent-encoded (for a query).
fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The value of the sample written exactly as `series` (`name{labels}`) in a text exposition.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// A program on PATH (or at an absolute path), if it is there.
fn tool(name: &str) -> Option<PathBuf> {
    if name.starts_with('/') {
        return Path::new(name).exists().then(|| PathBuf::from(name));
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    })
}

/// Whether Python can drive the system's Chromium with Playwright.
fn browser_available(test: &str) -> bool {
    if tool("/usr/bin/chromium").is_none() {
        eprintln!(
            "SKIPPED {test} (browser part): /usr/bin/chromium is missing (scripts/setup.sh installs it)"
        );
        return false;
    }
    let playwright = Command::new("python3")
        .args(["-c", "import playwright.sync_api"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !playwright {
        eprintln!(
            "SKIPPED {test} (browser part): Python's playwright is missing (scripts/setup.sh installs it)"
        );
    }
    playwright
}

/// Runs tests/browser/status_page.py with `spec`; returns what it saw.
fn browse(spec: serde_json::Value) -> serde_json::Value {
    let script = repo_root().join("e2e/tests/browser/status_page.py");
    let output = Command::new("python3")
        .arg(&script)
        .arg(spec.to_string())
        .output()
        .expect("run python3");
    assert!(
        output.status.success(),
        "{} failed ({}):\n{}\n{}",
        script.display(),
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "status_page.py printed no JSON ({e}):\n{}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

/// Attempt outcomes of a job by (phase, metric outcome), from GetJob's task histories.
fn outcomes(job: &pb::Job) -> BTreeMap<(&'static str, &'static str), u64> {
    let mut counts = BTreeMap::new();
    for task in &job.tasks {
        let phase = match task.kind() {
            pb::TaskKind::Map => "map",
            _ => "reduce",
        };
        for attempt in &task.history {
            let outcome = match attempt.outcome() {
                pb::AttemptOutcome::Succeeded => "succeeded",
                pb::AttemptOutcome::Failed => "failed",
                pb::AttemptOutcome::TimedOut => "timed_out",
                pb::AttemptOutcome::Superseded => "superseded",
                pb::AttemptOutcome::Abandoned => "cancelled",
                _ => continue,
            };
            *counts.entry((phase, outcome)).or_default() += 1;
        }
    }
    counts
}

/// A child process killed when dropped.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_prometheus_and_the_status_page_after_a_word_count() {
    const TEST: &str = "metrics_prometheus_and_the_status_page_after_a_word_count";
    let (cluster, addr) = start(3, None).await;
    let job_id = cluster.submit("wc", &lab_inputs(), 3).await;
    let job = cluster.wait(&job_id, Duration::from_secs(60)).await;
    assert_eq!(job.state(), pb::JobState::Succeeded, "{}", job.error);
    let map = job.map.unwrap_or_default();
    let reduce = job.reduce.unwrap_or_default();
    let attempts: usize = job.tasks.iter().map(|t| t.history.len()).sum();

    // /metrics in the classic text format: promtool finds nothing wrong, and the counts are
    // the job's.
    let metrics = must_get(&addr, "/metrics", &[]);
    assert_eq!(metrics.status, 200, "{}", metrics.body);
    assert!(
        metrics
            .header("content-type")
            .is_some_and(|t| t.starts_with("text/plain; version=0.0.4")),
        "{:?}",
        metrics.headers
    );
    let text = &metrics.body;
    match tool("promtool") {
        None => eprintln!(
            "SKIPPED {TEST} (promtool part): promtool is missing (Debian prometheus; scripts/setup.sh)"
        ),
        Some(promtool) => {
            let mut check = Command::new(promtool)
                .args(["check", "metrics"])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("run promtool");
            check
                .stdin
                .take()
                .expect("stdin")
                .write_all(text.as_bytes())
                .expect("write to promtool");
            let out = check.wait_with_output().expect("promtool");
            assert!(
                out.status.success() && out.stderr.is_empty(),
                "promtool check metrics ({}):\n{}{}\n--- metrics:\n{text}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    let value = |series: &str| {
        sample(text, series).unwrap_or_else(|| panic!("no sample {series} in:\n{text}"))
    };
    let expected = outcomes(&job);
    for phase in ["map", "reduce"] {
        for outcome in [
            "succeeded",
            "failed",
            "timed_out",
            "superseded",
            "cancelled",
        ] {
            let want = expected.get(&(phase, outcome)).copied().unwrap_or(0);
            assert_eq!(
                value(&format!(
                    r#"mr_tasks_total{{phase="{phase}",outcome="{outcome}"}}"#
                )),
                want as f64,
                "{phase} attempts {outcome}"
            );
        }
    }
    assert_eq!(
        value(r#"mr_tasks_total{phase="map",outcome="succeeded"}"#),
        f64::from(map.total)
    );
    assert_eq!(
        value(r#"mr_tasks_total{phase="reduce",outcome="succeeded"}"#),
        f64::from(reduce.total)
    );
    assert_eq!(
        value(r#"mr_task_duration_seconds_count{phase="map"}"#),
        f64::from(map.total)
    );
    assert_eq!(
        value(r#"mr_task_duration_seconds_count{phase="reduce"}"#),
        f64::from(reduce.total)
    );
    assert_eq!(value(r#"mr_jobs_total{state="succeeded"}"#), 1.0);
    assert_eq!(value(r#"mr_jobs_current{state="succeeded"}"#), 1.0);
    assert_eq!(value(r#"mr_jobs_current{state="running"}"#), 0.0);
    assert_eq!(value(r#"mr_tasks_pending{phase="map"}"#), 0.0);
    assert_eq!(
        value(r#"mr_workers{state="idle"}"#) + value(r#"mr_workers{state="busy"}"#),
        3.0
    );
    // Bytes and records: the job's own counters (checked against the inputs elsewhere).
    let counter = |name: &str| job.counters.get(name).copied().unwrap_or(0) as f64;
    assert_eq!(
        value(r#"mr_bytes_total{direction="in"}"#),
        counter("mr.map_input_bytes")
    );
    assert!(counter("mr.map_input_bytes") > 0.0);
    assert_eq!(
        value(r#"mr_bytes_total{direction="out"}"#),
        counter("mr.output_bytes")
    );
    assert_eq!(
        value(r#"mr_records_total{phase="reduce",direction="out"}"#),
        counter("mr.reduce_groups")
    );
    assert_eq!(
        value(r#"mr_records_total{phase="map",direction="out"}"#),
        counter("mr.map_output_records")
    );
    // The workers' compiled-app caches: each compiled wc once at most (none did when the
    // shared compile cache folder already held it), and every later task found it.
    let misses = value(r#"mr_app_compile_cache{result="miss"}"#);
    assert!(
        (0.0..=3.0).contains(&misses),
        "{misses} compilations by 3 workers"
    );
    assert!(value(r#"mr_app_compile_cache{result="hit"}"#) >= 1.0);
    // Submitted, every assignment, every task's commit, the end: one record each at least.
    let records = 1 + attempts + (map.total + reduce.total) as usize + 1;
    assert!(value("mr_journal_appends_total") >= records as f64);
    assert_eq!(
        value(r#"mr_grpc_requests_total{method="mapreduce.v1.JobService/SubmitJob",code="OK"}"#),
        1.0
    );
    assert!(
        value(
            r#"mr_grpc_request_duration_seconds_count{method="mapreduce.v1.Coordinator/RequestTask"}"#
        ) >= 1.0
    );
    let open = must_get(
        &addr,
        "/metrics",
        &[("Accept", "application/openmetrics-text;version=1.0.0")],
    );
    assert!(
        open.header("content-type")
            .is_some_and(|t| t.starts_with("application/openmetrics-text")),
        "{:?}",
        open.headers
    );
    assert!(open.body.ends_with("# EOF\n"));

    // A real Prometheus scrapes it every second and has the job's count.
    match tool("prometheus") {
        None => eprintln!(
            "SKIPPED {TEST} (Prometheus part): prometheus is missing (Debian prometheus; scripts/setup.sh)"
        ),
        Some(prometheus) => {
            let dir = tempfile::tempdir().expect("tempdir");
            let config = dir.path().join("prometheus.yml");
            std::fs::write(
                &config,
                format!(
                    "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
                     scrape_configs:\n  - job_name: mr\n    static_configs:\n      \
                     - targets: ['{addr}']\n"
                ),
            )
            .expect("write prometheus.yml");
            let prom_addr = format!("127.0.0.1:{}", free_port());
            let log = std::fs::File::create(dir.path().join("prometheus.log")).expect("log");
            let _prometheus = Killed(
                Command::new(prometheus)
                    .arg(format!("--config.file={}", config.display()))
                    .arg(format!(
                        "--storage.tsdb.path={}",
                        dir.path().join("tsdb").display()
                    ))
                    .arg(format!("--web.listen-address={prom_addr}"))
                    .stdin(Stdio::null())
                    .stdout(log.try_clone().expect("log"))
                    .stderr(log)
                    .spawn()
                    .expect("start prometheus"),
            );
            let query = format!(
                "/api/v1/query?query={}",
                url_encode(r#"mr_tasks_total{phase="map",outcome="succeeded"}"#)
            );
            let deadline = Instant::now() + Duration::from_secs(30);
            let mut last = String::new();
            loop {
                if let Ok(reply) = get(&prom_addr, &query, &[]) {
                    let parsed: serde_json::Value =
                        serde_json::from_str(&reply.body).unwrap_or_default();
                    let scraped = parsed["data"]["result"][0]["value"][1]
                        .as_str()
                        .and_then(|v| v.parse::<f64>().ok());
                    if scraped == Some(f64::from(map.total)) {
                        assert_eq!(parsed["data"]["result"][0]["metric"]["job"], "mr");
                        break;
                    }
                    last = reply.body;
                }
                assert!(
                    Instant::now() < deadline,
                    "Prometheus never had the job's {} maps; last answer: {last}\nlog:\n{}",
                    map.total,
                    std::fs::read_to_string(dir.path().join("prometheus.log")).unwrap_or_default()
                );
                std::thread::sleep(Duration::from_millis(250));
            }
            // It saw the endpoint as up, in the format it asked for.
            let up = must_get(
                &prom_addr,
                &format!("/api/v1/query?query={}", url_encode(r#"up{job="mr"}"#)),
                &[],
            );
            assert!(up.body.contains(r#""1"]"#), "{}", up.body);
        }
    }

    // The JSON behind the page.
    let list: serde_json::Value =
        serde_json::from_str(&must_get(&addr, "/api/jobs", &[]).body).expect("json");
    assert_eq!(list["jobs"][0]["id"], job_id.as_str());
    assert_eq!(list["jobs"][0]["state"], "SUCCEEDED");
    let detail: serde_json::Value =
        serde_json::from_str(&must_get(&addr, &format!("/api/jobs/{job_id}"), &[]).body)
            .expect("json");
    assert_eq!(
        detail["timeline"]["attempts"].as_array().map(Vec::len),
        Some(attempts)
    );
    assert_eq!(must_get(&addr, "/api/jobs/nosuchjob", &[]).status, 404);
    let unknown = must_get(&addr, "/jobs/nosuchjob", &[]);
    assert_eq!(unknown.status, 404);
    assert!(unknown.body.contains("No job <code>nosuchjob</code>"));

    // The page in a real browser.
    if browser_available(TEST) {
        let shot = cluster.dir.path().join("job.png");
        let seen = browse(serde_json::json!({
            "base": format!("http://{addr}"),
            "job": job_id,
            "unknown_job": "nosuchjob",
            "screenshot": shot,
        }));
        assert_eq!(seen["index_status"], 200, "{seen}");
        assert_eq!(seen["index_job_state"], "SUCCEEDED", "{seen}");
        assert!(
            seen["index_job_text"]
                .as_str()
                .is_some_and(|t| t.contains("wc")),
            "{seen}"
        );
        assert_eq!(seen["workers"], 3, "{seen}");
        assert_eq!(seen["job_status"], 200, "{seen}");
        assert_eq!(seen["bars"], attempts, "one bar per attempt: {seen}");
        let mut ids: Vec<u64> = job
            .tasks
            .iter()
            .flat_map(|t| t.history.iter().map(|a| a.attempt_id))
            .collect();
        ids.sort_unstable();
        assert_eq!(seen["bar_attempts"], serde_json::json!(ids), "{seen}");
        let workers_used = job
            .tasks
            .iter()
            .flat_map(|t| t.history.iter().map(|a| a.worker.as_str()))
            .collect::<std::collections::BTreeSet<_>>()
            .len();
        assert_eq!(seen["rows"], workers_used, "one row per worker: {seen}");
        assert!(
            seen["legend"]
                .as_array()
                .is_some_and(|keys| keys.len() >= 7),
            "{seen}"
        );
        assert_eq!(seen["unknown_status"], 404, "{seen}");
        assert!(
            seen["unknown_text"]
                .as_str()
                .is_some_and(|t| t.contains("No job nosuchjob")),
            "{seen}"
        );
        assert_eq!(seen["page_errors"], serde_json::json!([]), "{seen}");
        assert!(shot.exists(), "a screenshot of the job page");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_token_guards_the_page_the_api_and_metrics() {
    const TEST: &str = "the_token_guards_the_page_the_api_and_metrics";
    const TOKEN: &str = "s3cret+token/=";
    let (cluster, addr) = start(1, Some(TOKEN)).await;
    let bearer = format!("Bearer {TOKEN}");
    // A worker whose id is markup: the page must show it as text.
    const HOSTILE: &str = r#"<img src=x onerror="document.title='owned'"><b id=x>&w'"#;
    let _hostile = Killed(
        Command::new(mr_e2e::bin("mr-worker"))
            .args(["--coordinator", &cluster.addr, "--worker-id", HOSTILE])
            .arg("--data-dir")
            .arg(&cluster.data)
            .env("MR_AUTH_TOKEN", TOKEN)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start a worker"),
    );

    for path in ["/", "/api/jobs", "/api/workers", "/metrics", "/jobs/x"] {
        let refused = must_get(&addr, path, &[]);
        assert_eq!(refused.status, 401, "{path} without the token");
        assert_eq!(
            refused.header("www-authenticate"),
            Some(r#"Bearer realm="mr""#)
        );
        let wrong = must_get(&addr, path, &[("Authorization", "Bearer nope")]);
        assert_eq!(wrong.status, 401, "{path} with a wrong token");
        let let_in = must_get(&addr, path, &[("Authorization", &bearer)]);
        let want = if path == "/jobs/x" { 404 } else { 200 };
        assert_eq!(
            let_in.status, want,
            "{path} with the token: {}",
            let_in.body
        );
    }
    // The page's script and style are not secret.
    assert_eq!(must_get(&addr, "/assets/app.js", &[]).status, 200);
    // ?token= once: a cookie (not the token), and the same page without the query.
    assert_eq!(must_get(&addr, "/?token=nope", &[]).status, 401);
    let login = must_get(&addr, &format!("/?token={}", url_encode(TOKEN)), &[]);
    assert_eq!(login.status, 303, "{}", login.body);
    assert_eq!(login.header("location"), Some("/"));
    let cookie = login.header("set-cookie").expect("a cookie").to_string();
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(
        !cookie.contains(TOKEN),
        "the cookie is not the token: {cookie}"
    );
    let pair = cookie.split(';').next().expect("name=value");
    assert_eq!(
        must_get(&addr, "/api/jobs", &[("Cookie", pair)]).status,
        200
    );
    assert_eq!(
        must_get(&addr, "/metrics", &[("Cookie", "mr_session=forged")]).status,
        401
    );

    if browser_available(TEST) {
        let seen = browse(serde_json::json!({
            "base": format!("http://{addr}"),
            "token": url_encode(TOKEN),
            "unknown_job": "nosuchjob",
            "expect_workers": 2,
        }));
        assert_eq!(seen["without_token_status"], 401, "{seen}");
        assert_eq!(seen["with_token_status"], 200, "{seen}");
        assert!(
            seen["with_token_url"]
                .as_str()
                .is_some_and(|u| !u.contains("token")),
            "{seen}"
        );
        assert_eq!(seen["cookie_http_only"], true, "{seen}");
        assert_eq!(
            seen["workers"], 2,
            "the page's API calls pass with the cookie: {seen}"
        );
        assert!(
            seen["worker_ids"]
                .as_array()
                .is_some_and(|ids| ids.iter().any(|id| id == HOSTILE)),
            "the hostile id shown as text: {seen}"
        );
        assert_eq!(seen["injected"], 0, "no markup from a worker id: {seen}");
        assert_eq!(seen["unknown_status"], 404, "{seen}");
        assert_eq!(seen["page_errors"], serde_json::json!([]), "{seen}");
    }
}

/// Renews docs/status-page.png from a real run: a lab `crash` job (failures, retries,
/// stalls) in small splits on three workers, after a word count.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "writes docs/status-page.png; run with --ignored to renew it"]
async fn screenshot_for_the_docs() {
    if !browser_available("screenshot_for_the_docs") {
        return;
    }
    let port = free_port();
    let cluster = Cluster::start(ClusterOptions {
        workers: 3,
        coordinator_args: vec![
            "--http-listen".into(),
            format!("127.0.0.1:{port}"),
            "--max-task-failures".into(),
            "12".into(),
            "--backup-min-runtime".into(),
            "300ms".into(),
        ],
        ..Default::default()
    })
    .await;
    let addr = format!("127.0.0.1:{port}");
    let wc = cluster.submit("wc", &lab_inputs(), 3).await;
    cluster.wait(&wc, Duration::from_secs(60)).await;
    let job_id = cluster
        .submit_request(pb::SubmitJobRequest {
            app: "crash".into(),
            inputs: lab_inputs(),
            n_reduce: 4,
            split_bytes: 128 << 10,
            ..Default::default()
        })
        .await;
    let job = cluster.wait(&job_id, Duration::from_secs(120)).await;
    assert_eq!(job.state(), pb::JobState::Succeeded, "{}", job.error);
    let shot = repo_root().join("docs/status-page.png");
    let seen = browse(serde_json::json!({
        "base": format!("http://{addr}"),
        "job": job_id,
        "screenshot": shot,
    }));
    eprintln!("{seen}\nwrote {}", shot.display());
}
