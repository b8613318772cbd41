//! Prometheus metrics: what they are, how they are counted, and `/metrics`.
//!
//! Counters and histograms live in one process-wide registry ([`metrics`]), as Prometheus
//! clients usually keep them. They are fed from three places:
//!
//! - [`observe`], called by the scheduler for every journal record it appends
//!   (`Transition::record`), before the record is applied: task attempts by phase and
//!   outcome, committed attempts' durations, ended jobs, journal appends. Recovery applies
//!   records without that call, so nothing is counted twice after a restart: the counters
//!   start at zero with the process, as Prometheus expects of counters.
//! - [`RequestMetricsLayer`], one tower layer on the gRPC server and on the HTTP router:
//!   requests per gRPC method (with their status code) and per HTTP route (with their
//!   status), and their latency (until the response starts: a stream's opening, not its end).
//! - [`render`], at each scrape: gauges read from the scheduler and the workers (jobs and
//!   workers by state, Idle tasks).
//!
//! Adding a metric is one line in the [`metrics!`] block below (name, type, help), then
//! `metrics().<field>` where it is counted.
//!
//! `/metrics` answers in the OpenMetrics text format when the scraper asks for it (Prometheus
//! does) and in the classic Prometheus text format (0.0.4) otherwise (curl, `promtool check
//! metrics`); both come from `prometheus-client`.

use crate::journal::{Record, StoredEnding, StoredJobEnd};
use crate::scheduler::{JobState, Scheduler, TaskKind};
use crate::state::{State, millis};
use crate::workers::Workers;
use axum::extract::MatchedPath;
use axum::http::{Request, Response};
use futures::future::BoxFuture;
use mr_proto::v1 as pb;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::collections::HashSet;
use std::sync::{LazyLock, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;
use tower::{Layer, Service};

/// A family of histograms, each made by a plain constructor function.
pub(crate) type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

/// Declares the metrics: one line per metric, `field: Type = constructor, "name", "help";`.
/// A counter's name gets `_total` appended by the encoder.
macro_rules! metrics {
    ($($field:ident: $ty:ty = $init:expr, $name:literal, $help:literal;)*) => {
        /// Every metric of the process, and the registry that encodes them.
        pub(crate) struct Metrics {
            registry: Registry,
            $(#[doc = $help] pub(crate) $field: $ty,)*
        }

        impl Metrics {
            fn new() -> Self {
                let mut registry = Registry::default();
                $(let $field: $ty = $init; registry.register($name, $help, $field.clone());)*
                Self { registry, $($field,)* }
            }
        }
    };
}

metrics! {
    tasks: Family<PhaseOutcome, Counter> = Family::default(), "mr_tasks",
        "Task attempts that ended, by phase (map, reduce) and outcome (succeeded, failed, timed_out, superseded, cancelled)";
    task_duration: Histograms<Phase> = Family::new_with_constructor(task_buckets), "mr_task_duration_seconds",
        "Duration of committed attempts, from assignment to commit, by phase";
    jobs_ended: Family<JobStateLabel, Counter> = Family::default(), "mr_jobs",
        "Jobs that ended since the coordinator started, by end state (succeeded, failed, cancelled)";
    jobs_current: Family<JobStateLabel, Gauge> = Family::default(), "mr_jobs_current",
        "Jobs the coordinator holds now, by state (pending, running, succeeded, failed, cancelled)";
    tasks_pending: Family<Phase, Gauge> = Family::default(), "mr_tasks_pending",
        "Idle tasks of jobs that have not ended, by phase";
    workers: Family<WorkerStateLabel, Gauge> = Family::default(), "mr_workers",
        "Workers heard from, by state (idle, busy, lost)";
    records: Family<PhaseDirection, Counter> = Family::default(), "mr_records",
        "Records of committed attempts, by phase and direction: map out, reduce in, reduce out (one per key group)";
    bytes: Family<Direction, Counter> = Family::default(), "mr_bytes",
        "Bytes of committed attempts: in, the maps' input splits; out, the reduces' output files";
    compile_cache: Family<CacheResult, Gauge> = Family::default(), "mr_app_compile_cache",
        "Compiled-app cache lookups the workers heard from report (hit: found compiled; miss: compiled), summed over them (a restarted worker starts again from 0)";
    journal_appends: Counter = Counter::default(), "mr_journal_appends",
        "Records appended to the journal by scheduler events";
    grpc_requests: Family<GrpcLabels, Counter> = Family::default(), "mr_grpc_requests",
        "gRPC calls answered, by method and status code";
    grpc_duration: Histograms<GrpcMethod> = Family::new_with_constructor(request_buckets), "mr_grpc_request_duration_seconds",
        "Time until a gRPC call's response starts (a stream's opening), by method";
    http_requests: Family<HttpLabels, Counter> = Family::default(), "mr_http_requests",
        "HTTP requests answered by the status page server, by route and status";
    http_duration: Histograms<HttpRoute> = Family::new_with_constructor(request_buckets), "mr_http_request_duration_seconds",
        "Time until an HTTP response starts, by route";
}

fn task_buckets() -> Histogram {
    // 5 ms .. ~164 s.
    Histogram::new(exponential_buckets(0.005, 2.0, 16))
}

fn request_buckets() -> Histogram {
    // 0.5 ms .. ~33 s (a long poll lasts up to 20 s).
    Histogram::new(exponential_buckets(0.0005, 2.0, 17))
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct Phase {
    pub(crate) phase: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct PhaseOutcome {
    pub(crate) phase: &'static str,
    pub(crate) outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct PhaseDirection {
    pub(crate) phase: &'static str,
    pub(crate) direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct CacheResult {
    pub(crate) result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct Direction {
    pub(crate) direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct JobStateLabel {
    pub(crate) state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct WorkerStateLabel {
    pub(crate) state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct GrpcLabels {
    pub(crate) method: String,
    pub(crate) code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct GrpcMethod {
    pub(crate) method: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct HttpLabels {
    pub(crate) route: String,
    pub(crate) status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct HttpRoute {
    pub(crate) route: String,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    let metrics = Metrics::new();
    preset(&metrics);
    metrics
});

/// The process's metrics.
pub(crate) fn metrics() -> &'static Metrics {
    &METRICS
}

impl Metrics {
    /// Bytes and records of a commit, from its built-in counters.
    fn count_data(&self, counters: &crate::journal::Counters) {
        use crate::scheduler::commit::counter;
        let get = |name: &str| counters.get(name).unwrap_or(0);
        for (phase, direction, name) in [
            ("map", "out", counter::MAP_OUTPUT_RECORDS),
            ("reduce", "in", counter::REDUCE_INPUT_RECORDS),
            ("reduce", "out", counter::REDUCE_GROUPS),
        ] {
            self.records
                .get_or_create(&PhaseDirection { phase, direction })
                .inc_by(get(name));
        }
        for (direction, name) in [
            ("in", counter::MAP_INPUT_BYTES),
            ("out", counter::OUTPUT_BYTES),
        ] {
            self.bytes
                .get_or_create(&Direction { direction })
                .inc_by(get(name));
        }
    }

    fn task_ended(&self, phase: &'static str, outcome: &'static str, n: u64) {
        self.tasks
            .get_or_create(&PhaseOutcome { phase, outcome })
            .inc_by(n);
    }
}

pub(crate) fn phase_name(kind: TaskKind) -> &'static str {
    match kind {
        TaskKind::Map => "map",
        TaskKind::Reduce => "reduce",
    }
}

/// A job state as a label value (lower case, as Prometheus labels usually are).
pub(crate) fn job_state_label(state: JobState) -> &'static str {
    match state {
        JobState::Pending => "pending",
        JobState::Running => "running",
        JobState::Succeeded => "succeeded",
        JobState::Failed => "failed",
        JobState::Cancelled => "cancelled",
    }
}

const JOB_STATES: [JobState; 5] = [
    JobState::Pending,
    JobState::Running,
    JobState::Succeeded,
    JobState::Failed,
    JobState::Cancelled,
];

/// Counts what a journal record about to be applied to `state` does. Called by the
/// scheduler for each record it appends (never at replay), before `State::apply`, so the
/// attempts are still as they were: the one committed, the ones a commit supersedes or a
/// job's end cancels, and when each started.
///
/// Outcomes: `succeeded` (committed), `superseded` (still running when another copy of its
/// task committed), `failed` (reported failed, whether it counts against the task or not),
/// `timed_out` (no report or heartbeat within the task timeout), `cancelled` (still running
/// when its job ended, or handed back by a stopping worker).
pub(crate) fn observe(state: &State, record: &Record) {
    observe_into(metrics(), state, record);
}

fn observe_into(m: &Metrics, state: &State, record: &Record) {
    m.journal_appends.inc();
    match record {
        Record::TaskCommitted {
            job_id,
            kind,
            index,
            attempt_id,
            at_ms,
            counters,
            ..
        } => {
            let kind = TaskKind::from(*kind);
            let phase = phase_name(kind);
            m.count_data(counters);
            let Some(task) = state
                .job(job_id)
                .and_then(|job| job.tasks(kind).get(*index as usize))
            else {
                return;
            };
            for attempt in task.running() {
                if attempt.id == *attempt_id {
                    m.task_ended(phase, "succeeded", 1);
                    let took_ms = at_ms.saturating_sub(millis(attempt.started_at)).max(0);
                    m.task_duration
                        .get_or_create(&Phase { phase })
                        .observe(took_ms as f64 / 1000.0);
                } else {
                    m.task_ended(phase, "superseded", 1);
                }
            }
        }
        Record::AttemptEnded {
            job_id,
            kind,
            index,
            attempt_id,
            ending,
            ..
        } => {
            let kind = TaskKind::from(*kind);
            let running = state
                .job(job_id)
                .and_then(|job| job.tasks(kind).get(*index as usize))
                .is_some_and(|task| task.running().any(|a| a.id == *attempt_id));
            if running {
                let outcome = match ending {
                    StoredEnding::Failed => "failed",
                    StoredEnding::TimedOut => "timed_out",
                    StoredEnding::Abandoned => "cancelled",
                };
                m.task_ended(phase_name(kind), outcome, 1);
            }
        }
        Record::JobEnded { job_id, end, .. } => {
            let label = match end {
                StoredJobEnd::Succeeded => "succeeded",
                StoredJobEnd::Failed => "failed",
                StoredJobEnd::Cancelled => "cancelled",
            };
            m.jobs_ended
                .get_or_create(&JobStateLabel { state: label })
                .inc();
            if let Some(job) = state.job(job_id) {
                for kind in [TaskKind::Map, TaskKind::Reduce] {
                    // The running-attempt index: no scan of the job's tasks.
                    let running = job.running_by_age(kind).count() as u64;
                    if running > 0 {
                        m.task_ended(phase_name(kind), "cancelled", running);
                    }
                }
            }
        }
        _ => {}
    }
}

/// Makes sure every label of the closed sets is present, so a query sees zeros rather than
/// nothing before the first event.
fn preset(m: &Metrics) {
    for kind in [TaskKind::Map, TaskKind::Reduce] {
        let phase = phase_name(kind);
        for outcome in [
            "succeeded",
            "failed",
            "timed_out",
            "superseded",
            "cancelled",
        ] {
            let _ = m.tasks.get_or_create(&PhaseOutcome { phase, outcome });
        }
    }
    for state in ["succeeded", "failed", "cancelled"] {
        let _ = m.jobs_ended.get_or_create(&JobStateLabel { state });
    }
}

/// Whether the scraper asked for OpenMetrics (Prometheus does, in its `Accept` header).
pub(crate) fn wants_openmetrics(accept: Option<&str>) -> bool {
    accept.is_some_and(|a| a.contains("application/openmetrics-text"))
}

/// `/metrics`: the gauges read now, then every metric encoded; returns the content type and
/// the body. Reads the scheduler under its lock (one pass over the jobs' counts, no task
/// scan): call it off the async threads.
pub(crate) fn render(
    scheduler: &Scheduler,
    workers: &Workers,
    openmetrics: bool,
) -> (&'static str, String) {
    let m = metrics();
    let mut jobs = [0i64; JOB_STATES.len()];
    let mut pending = [0i64; 2];
    scheduler.map_jobs(|job| {
        if let Some(i) = JOB_STATES.iter().position(|s| *s == job.state) {
            jobs[i] += 1;
        }
        if !job.state.is_terminal() {
            pending[0] += i64::from(job.progress(TaskKind::Map).idle);
            pending[1] += i64::from(job.progress(TaskKind::Reduce).idle);
        }
    });
    for (state, n) in JOB_STATES.iter().zip(jobs) {
        m.jobs_current
            .get_or_create(&JobStateLabel {
                state: job_state_label(*state),
            })
            .set(n);
    }
    for (kind, n) in [TaskKind::Map, TaskKind::Reduce].into_iter().zip(pending) {
        m.tasks_pending
            .get_or_create(&Phase {
                phase: phase_name(kind),
            })
            .set(n);
    }
    let mut by_state = [0i64; 3];
    for worker in workers.list(scheduler.config().task_timeout) {
        match worker.state() {
            pb::WorkerState::Busy => by_state[1] += 1,
            pb::WorkerState::Lost => by_state[2] += 1,
            _ => by_state[0] += 1,
        }
    }
    for (state, n) in ["idle", "busy", "lost"].into_iter().zip(by_state) {
        m.workers.get_or_create(&WorkerStateLabel { state }).set(n);
    }
    let (hits, misses) = workers.compile_cache_totals();
    for (result, n) in [("hit", hits), ("miss", misses)] {
        m.compile_cache
            .get_or_create(&CacheResult { result })
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }
    let mut body = String::new();
    if openmetrics {
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut body, &m.registry);
        (
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            body,
        )
    } else {
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut body, &m.registry);
        (
            prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
            body,
        )
    }
}

/// Which server a [`RequestMetricsLayer`] counts for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Protocol {
    Grpc,
    Http,
}

/// Counts requests and their latency, per gRPC method or per HTTP route. The same layer
/// goes on both servers: `RequestMetricsLayer::grpc()` outside tonic's services,
/// `RequestMetricsLayer::http()` on the axum router (`Router::layer`, which runs after
/// routing, so the matched route template is known: `/jobs/{id}`, never the id).
#[derive(Clone, Copy, Debug)]
pub(crate) struct RequestMetricsLayer {
    protocol: Protocol,
}

impl RequestMetricsLayer {
    pub(crate) fn grpc() -> Self {
        Self {
            protocol: Protocol::Grpc,
        }
    }

    pub(crate) fn http() -> Self {
        Self {
            protocol: Protocol::Http,
        }
    }
}

impl<S> Layer<S> for RequestMetricsLayer {
    type Service = RequestMetrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestMetrics {
            inner,
            protocol: self.protocol,
        }
    }
}

/// See [`RequestMetricsLayer`].
#[derive(Clone, Debug)]
pub(crate) struct RequestMetrics<S> {
    inner: S,
    protocol: Protocol,
}

impl<S, B, RB> Service<Request<B>> for RequestMetrics<S>
where
    S: Service<Request<B>, Response = Response<RB>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    RB: Send + 'static,
{
    type Response = Response<RB>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let protocol = self.protocol;
        let route = match protocol {
            Protocol::Grpc => grpc_method(request.uri().path()),
            Protocol::Http => request
                .extensions()
                .get::<MatchedPath>()
                .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string()),
        };
        let start = Instant::now();
        let future = self.inner.call(request);
        Box::pin(async move {
            let result = future.await;
            let seconds = start.elapsed().as_secs_f64();
            let m = metrics();
            match protocol {
                Protocol::Grpc => {
                    let code = match &result {
                        Ok(response) => grpc_code(response),
                        Err(_) => "Unknown",
                    };
                    m.grpc_requests
                        .get_or_create(&GrpcLabels {
                            method: route.clone(),
                            code,
                        })
                        .inc();
                    m.grpc_duration
                        .get_or_create(&GrpcMethod { method: route })
                        .observe(seconds);
                }
                Protocol::Http => {
                    let status = match &result {
                        Ok(response) => response.status().as_u16(),
                        Err(_) => 500,
                    };
                    m.http_requests
                        .get_or_create(&HttpLabels {
                            route: route.clone(),
                            status,
                        })
                        .inc();
                    m.http_duration
                        .get_or_create(&HttpRoute { route })
                        .observe(seconds);
                }
            }
            result
        })
    }
}

/// Services whose methods are counted by name; any other path is `other`.
const GRPC_SERVICES: [&str; 5] = [
    "mapreduce.v1.JobService",
    "mapreduce.v1.Coordinator",
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
];

/// Most distinct method labels: a client inventing method names of a known service cannot
/// grow the metrics without bound.
const MAX_GRPC_METHODS: usize = 128;

static GRPC_METHODS_SEEN: LazyLock<Mutex<HashSet<String>>> = LazyLock::new(Mutex::default);

/// `mapreduce.v1.JobService/GetJob` for the path `/mapreduce.v1.JobService/GetJob`.
fn grpc_method(path: &str) -> String {
    let named = path
        .strip_prefix('/')
        .filter(|p| {
            p.split_once('/').is_some_and(|(service, method)| {
                GRPC_SERVICES.contains(&service)
                    && (1..=64).contains(&method.len())
                    && method
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_')
            })
        })
        .map(str::to_string);
    let Some(method) = named else {
        return "other".into();
    };
    let mut seen = GRPC_METHODS_SEEN.lock().unwrap_or_else(|e| e.into_inner());
    if seen.contains(&method) {
        return method;
    }
    if seen.len() >= MAX_GRPC_METHODS {
        return "other".into();
    }
    seen.insert(method.clone());
    method
}

/// The gRPC status of a response that carries it in its headers (an error answered at once,
/// "trailers only"); a response that starts normally is counted `OK` (its real status comes
/// in trailers, after the body).
fn grpc_code<B>(response: &Response<B>) -> &'static str {
    const NAMES: [&str; 17] = [
        "OK",
        "Canceled",
        "Unknown",
        "InvalidArgument",
        "DeadlineExceeded",
        "NotFound",
        "AlreadyExists",
        "PermissionDenied",
        "ResourceExhausted",
        "FailedPrecondition",
        "Aborted",
        "OutOfRange",
        "Unimplemented",
        "Internal",
        "Unavailable",
        "DataLoss",
        "Unauthenticated",
    ];
    match response.headers().get("grpc-status") {
        None => "OK",
        Some(value) => value
            .to_str()
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
            .and_then(|n| NAMES.get(n).copied())
            .unwrap_or("Unknown"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_methods_are_bounded() {
        assert_eq!(
            grpc_method("/mapreduce.v1.JobService/GetJob"),
            "mapreduce.v1.JobService/GetJob"
        );
        assert_eq!(grpc_method("/evil.Service/X"), "other");
        assert_eq!(grpc_method("/mapreduce.v1.JobService/a{b}"), "other");
        assert_eq!(grpc_method("no-slash"), "other");
    }

    #[test]
    fn grpc_codes_come_from_headers() {
        let ok = Response::new(());
        assert_eq!(grpc_code(&ok), "OK");
        let mut denied = Response::new(());
        denied
            .headers_mut()
            .insert("grpc-status", "16".parse().expect("header"));
        assert_eq!(grpc_code(&denied), "Unauthenticated");
        denied
            .headers_mut()
            .insert("grpc-status", "99".parse().expect("header"));
        assert_eq!(grpc_code(&denied), "Unknown");
    }

    /// A record from its journal JSON (fields added later keep their defaults).
    fn record(json: serde_json::Value) -> Record {
        serde_json::from_value(json).expect("a record")
    }

    #[test]
    fn records_count_as_outcomes_before_they_apply() {
        let m = Metrics::new();
        let mut state = State::default();
        let now = tokio::time::Instant::now();
        let timeout = std::time::Duration::from_secs(10);
        let assign = |attempt: u64, kind: &str, worker: &str, backup: bool, at_ms: i64| {
            record(serde_json::json!({"TaskAssigned": {
                "job_id": "j", "kind": kind, "index": 0, "attempt_id": attempt,
                "worker": worker, "backup": backup, "at_ms": at_ms}}))
        };
        let records = [
            record(serde_json::json!({"JobSubmitted": {
                "job_id": "j", "app": "wc", "app_sha256": "00", "inputs": ["in"],
                "input_files": [["in", 10]], "n_reduce": 1, "split_bytes": 100, "at_ms": 0}})),
            assign(1, "Map", "a", false, 1_000),
            assign(2, "Map", "b", true, 2_000),
            // The backup commits: it succeeded after 1.5 s, the first copy is superseded.
            record(serde_json::json!({"TaskCommitted": {
                "job_id": "j", "kind": "Map", "index": 0, "attempt_id": 2, "at_ms": 3_500}})),
            assign(3, "Reduce", "a", false, 4_000),
            record(serde_json::json!({"AttemptEnded": {
                "job_id": "j", "kind": "Reduce", "index": 0, "attempt_id": 3,
                "ending": "TimedOut", "error": "silent", "counts": false, "at_ms": 15_000}})),
            assign(4, "Reduce", "b", false, 15_000),
            // Cancelled while attempt 4 runs.
            record(serde_json::json!({"JobEnded": {
                "job_id": "j", "end": "Cancelled", "error": "", "at_ms": 16_000}})),
        ];
        let n = records.len() as u64;
        for r in records {
            observe_into(&m, &state, &r);
            state.apply(r, now, timeout);
        }
        let count = |phase, outcome| {
            m.tasks
                .get_or_create(&PhaseOutcome { phase, outcome })
                .get()
        };
        assert_eq!(count("map", "succeeded"), 1);
        assert_eq!(count("map", "superseded"), 1);
        assert_eq!(count("reduce", "timed_out"), 1);
        assert_eq!(count("reduce", "cancelled"), 1);
        assert_eq!(count("reduce", "succeeded"), 0);
        let mut text = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut text, &m.registry)
            .expect("encode");
        assert!(
            text.contains("mr_task_duration_seconds_sum{phase=\"map\"} 1.5\n"),
            "{text}"
        );
        assert!(
            text.contains("mr_task_duration_seconds_count{phase=\"map\"} 1\n"),
            "{text}"
        );
        let cancelled = JobStateLabel { state: "cancelled" };
        assert_eq!(m.jobs_ended.get_or_create(&cancelled).get(), 1);
        assert_eq!(m.journal_appends.get(), n);
    }

    #[test]
    fn counters_are_named_with_total_in_both_formats() {
        let m = Metrics::new();
        preset(&m);
        m.journal_appends.inc();
        let mut text = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut text, &m.registry)
            .expect("encode");
        assert!(text.contains("# TYPE mr_tasks_total counter"), "{text}");
        assert!(
            text.contains(r#"mr_tasks_total{phase="map",outcome="succeeded"} 0"#),
            "{text}"
        );
        assert!(text.contains("mr_journal_appends_total 1"), "{text}");
        let mut open = String::new();
        prometheus_client::encoding::text::encode(&mut open, &m.registry).expect("encode");
        assert!(open.ends_with("# EOF\n"), "{open}");
    }
}
