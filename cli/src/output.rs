//! What the commands print: aligned tables and summaries for people, JSON (`--json`) for
//! scripts, and the short names, times and durations both use.

use mr_proto::v1 as pb;
use serde_json::{Value, json};
use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Rows under a header, each column as wide as its widest cell, two spaces apart.
pub(crate) fn table(
    out: &mut impl Write,
    header: &[&str],
    rows: &[Vec<String>],
) -> std::io::Result<()> {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let header: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, (cell, width)) in row.iter().zip(&widths).enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$}  "));
            }
        }
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
}

/// Pretty JSON and a newline.
pub(crate) fn json_out(out: &mut impl Write, value: &Value) -> std::io::Result<()> {
    serde_json::to_writer_pretty(&mut *out, value)?;
    writeln!(out)
}

/// `SUCCEEDED`, `RUNNING`, … (the protobuf name without its prefix).
pub(crate) fn job_state(state: pb::JobState) -> &'static str {
    match state {
        pb::JobState::Unspecified => "UNKNOWN",
        pb::JobState::Pending => "PENDING",
        pb::JobState::Running => "RUNNING",
        pb::JobState::Succeeded => "SUCCEEDED",
        pb::JobState::Failed => "FAILED",
        pb::JobState::Cancelled => "CANCELLED",
    }
}

fn task_kind(kind: pb::TaskKind) -> &'static str {
    match kind {
        pb::TaskKind::Unspecified => "unknown",
        pb::TaskKind::Map => "map",
        pb::TaskKind::Reduce => "reduce",
    }
}

fn task_state(state: pb::TaskState) -> &'static str {
    match state {
        pb::TaskState::Unspecified => "UNKNOWN",
        pb::TaskState::Idle => "IDLE",
        pb::TaskState::InProgress => "IN_PROGRESS",
        pb::TaskState::Completed => "COMPLETED",
    }
}

fn worker_state(state: pb::WorkerState) -> &'static str {
    match state {
        pb::WorkerState::Unspecified => "UNKNOWN",
        pb::WorkerState::Idle => "IDLE",
        pb::WorkerState::Busy => "BUSY",
        pb::WorkerState::Lost => "LOST",
    }
}

/// `done/total` of a phase (`-` before the job has one).
pub(crate) fn progress(phase: Option<&pb::PhaseProgress>) -> String {
    match phase {
        Some(p) => format!("{}/{}", p.completed, p.total),
        None => "-".into(),
    }
}

/// Milliseconds since the epoch as UTC RFC 3339 to the second; `-` for 0 (not yet).
pub(crate) fn timestamp(ms: i64) -> String {
    match u64::try_from(ms) {
        Ok(ms) if ms > 0 => {
            humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
        }
        _ => "-".into(),
    }
}

/// Milliseconds since the epoch, now.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// A duration as people read it at a glance: `850ms`, `4.2s`, `3m07s`, `2h05m`.
pub(crate) fn short_duration(duration: Duration) -> String {
    let secs = duration.as_secs();
    if duration < Duration::from_secs(1) {
        format!("{}ms", duration.as_millis())
    } else if secs < 60 {
        format!("{:.1}s", duration.as_secs_f64())
    } else if secs < 3600 {
        format!("{}m{:02}s", secs / 60, secs % 60)
    } else {
        format!("{}h{:02}m", secs / 3600, secs % 3600 / 60)
    }
}

/// How long the job ran (until now while it runs); `-` without a submission time.
pub(crate) fn job_duration(job: &pb::Job) -> String {
    if job.submitted_at_ms <= 0 {
        return "-".into();
    }
    let end = if job.finished_at_ms > 0 {
        job.finished_at_ms
    } else {
        now_ms()
    };
    let ms = u64::try_from(end - job.submitted_at_ms).unwrap_or(0);
    short_duration(Duration::from_millis(ms))
}

/// How long ago `ms` was: `3s ago`.
fn ago(ms: i64) -> String {
    if ms <= 0 {
        return "-".into();
    }
    let since = u64::try_from(now_ms() - ms).unwrap_or(0);
    format!("{} ago", short_duration(Duration::from_millis(since)))
}

fn or_dash(text: &str) -> String {
    if text.is_empty() {
        "-".into()
    } else {
        text.to_string()
    }
}

// ---------------------------------------------------------------------------------------
// Jobs
// ---------------------------------------------------------------------------------------

pub(crate) const JOBS_HEADER: [&str; 7] = [
    "ID",
    "APP",
    "STATE",
    "MAP",
    "REDUCE",
    "SUBMITTED",
    "DURATION",
];

/// One `mr jobs` row.
pub(crate) fn job_row(job: &pb::Job) -> Vec<String> {
    vec![
        job.job_id.clone(),
        job.app.clone(),
        job_state(job.state()).into(),
        progress(job.map.as_ref()),
        progress(job.reduce.as_ref()),
        timestamp(job.submitted_at_ms),
        job_duration(job),
    ]
}

fn phase_json(phase: Option<&pb::PhaseProgress>) -> Value {
    let p = phase.copied().unwrap_or_default();
    json!({
        "total": p.total,
        "idle": p.idle,
        "in_progress": p.in_progress,
        "completed": p.completed,
    })
}

/// A job as JSON: the summary always, `input_files`, `skipped` and `tasks` as given.
pub(crate) fn job_json(job: &pb::Job) -> Value {
    let mut value = json!({
        "job_id": job.job_id,
        "app": job.app,
        "state": job_state(job.state()),
        "map": phase_json(job.map.as_ref()),
        "reduce": phase_json(job.reduce.as_ref()),
        "n_reduce": job.n_reduce,
        "inputs": job.inputs,
        "outputs": job.outputs,
        "error": job.error,
        "warning": job.warning,
        "submitted_at_ms": job.submitted_at_ms,
        "finished_at_ms": job.finished_at_ms,
        "archived": job.archived,
        "skipped_records": job.skipped_records,
        "counters": job.counters.iter().collect::<std::collections::BTreeMap<_, _>>(),
    });
    if let Some(object) = value.as_object_mut() {
        if !job.input_files.is_empty() {
            object.insert("input_files".into(), json!(job.input_files));
        }
        if !job.skipped.is_empty() {
            let skipped: Vec<Value> = job.skipped.iter().map(skipped_json).collect();
            object.insert("skipped".into(), Value::Array(skipped));
        }
        if !job.tasks.is_empty() {
            let tasks: Vec<Value> = job.tasks.iter().map(task_json).collect();
            object.insert("tasks".into(), Value::Array(tasks));
        }
    }
    value
}

fn skipped_json(record: &pb::SkippedRecord) -> Value {
    json!({
        "kind": task_kind(record.kind()),
        "task": record.task,
        "input": record.input,
        "offset": record.offset,
        "key": record.key,
        "error": record.error,
    })
}

fn task_json(task: &pb::TaskInfo) -> Value {
    json!({
        "kind": task_kind(task.kind()),
        "index": task.index,
        "state": task_state(task.state()),
        "attempts": task.attempts,
        "worker": task.worker,
        "input": task.input,
    })
}

pub(crate) const TASKS_HEADER: [&str; 6] =
    ["KIND", "INDEX", "STATE", "ATTEMPTS", "WORKER", "INPUT"];

/// One row of `mr status --tasks`.
pub(crate) fn task_row(task: &pb::TaskInfo) -> Vec<String> {
    vec![
        task_kind(task.kind()).into(),
        task.index.to_string(),
        task_state(task.state()).into(),
        task.attempts.to_string(),
        or_dash(&task.worker),
        or_dash(&task.input),
    ]
}

/// `mr status`: the job's summary as `field  value` lines (lists one item a line).
pub(crate) fn job_summary(out: &mut impl Write, job: &pb::Job) -> std::io::Result<()> {
    let mut fields: Vec<(&str, String)> = vec![
        ("job", job.job_id.clone()),
        ("app", job.app.clone()),
        ("state", job_state(job.state()).into()),
        ("map", phase_line(job.map.as_ref())),
        ("reduce", phase_line(job.reduce.as_ref())),
        ("submitted", timestamp(job.submitted_at_ms)),
        ("finished", timestamp(job.finished_at_ms)),
        ("duration", job_duration(job)),
    ];
    for input in &job.inputs {
        fields.push(("inputs", input.clone()));
    }
    if !job.input_files.is_empty() {
        fields.push(("input files", job.input_files.len().to_string()));
    }
    for output in &job.outputs {
        fields.push(("outputs", output.clone()));
    }
    if !job.error.is_empty() {
        fields.push(("error", job.error.clone()));
    }
    if !job.warning.is_empty() {
        fields.push(("warning", job.warning.clone()));
    }
    fields.push(("skipped", format!("{} records", job.skipped_records)));
    for record in &job.skipped {
        let at = match record.kind() {
            pb::TaskKind::Reduce => format!("reduce-{} key {:?}", record.task, record.key),
            _ => format!(
                "map-{} {} at byte {}",
                record.task, record.input, record.offset
            ),
        };
        fields.push(("", format!("{at}: {}", record.error)));
    }
    // Sorted by name: the built-ins (`mr.`) first, then the app's own.
    let counters: std::collections::BTreeMap<_, _> = job.counters.iter().collect();
    for (name, value) in counters {
        fields.push(("counters", format!("{name} = {value}")));
    }
    if job.archived {
        fields.push(("archived", "yes: only the summary is kept".into()));
    }
    let width = fields.iter().map(|(name, _)| name.len()).max().unwrap_or(0);
    let mut previous = "";
    for (name, value) in &fields {
        // A list's later items go under its first one, without repeating the name.
        let shown = if *name == previous { "" } else { name };
        writeln!(out, "{shown:<width$}  {value}")?;
        previous = name;
    }
    Ok(())
}

/// `3/8 done, 2 running, 3 waiting`.
fn phase_line(phase: Option<&pb::PhaseProgress>) -> String {
    match phase {
        None => "-".into(),
        Some(p) => format!(
            "{}/{} done, {} running, {} waiting",
            p.completed, p.total, p.in_progress, p.idle
        ),
    }
}

// ---------------------------------------------------------------------------------------
// Workers
// ---------------------------------------------------------------------------------------

pub(crate) const APPS_HEADER: [&str; 5] = ["NAME", "SOURCE", "SIZE", "SHA256", "UPLOADED"];

/// One `mr apps list` row.
pub(crate) fn app_row(app: &pb::AppInfo) -> Vec<String> {
    vec![
        app.name.clone(),
        if app.uploaded { "uploaded" } else { "built-in" }.into(),
        app.size_bytes.to_string(),
        app.sha256.chars().take(12).collect(),
        if app.uploaded {
            timestamp(app.uploaded_at_ms)
        } else {
            "-".into()
        },
    ]
}

pub(crate) fn app_json(app: &pb::AppInfo) -> Value {
    json!({
        "name": app.name,
        "sha256": app.sha256,
        "size_bytes": app.size_bytes,
        "uploaded": app.uploaded,
        "uploaded_at_ms": app.uploaded_at_ms,
    })
}

pub(crate) const WORKERS_HEADER: [&str; 7] =
    ["ID", "HOST", "STATE", "TASK", "DONE", "FAILED", "LAST SEEN"];

/// One `mr workers` row.
pub(crate) fn worker_row(worker: &pb::WorkerInfo) -> Vec<String> {
    vec![
        worker.id.clone(),
        or_dash(&worker.host),
        worker_state(worker.state()).into(),
        or_dash(&worker.current_task),
        worker.tasks_succeeded.to_string(),
        worker.tasks_failed.to_string(),
        ago(worker.last_seen_ms),
    ]
}

pub(crate) fn worker_json(worker: &pb::WorkerInfo) -> Value {
    json!({
        "id": worker.id,
        "host": worker.host,
        "state": worker_state(worker.state()),
        "current_task": worker.current_task,
        "tasks_succeeded": worker.tasks_succeeded,
        "tasks_failed": worker.tasks_failed,
        "first_seen_ms": worker.first_seen_ms,
        "last_seen_ms": worker.last_seen_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_columns_and_trim_line_ends() {
        let mut out = Vec::new();
        let rows = vec![
            vec!["a".to_string(), "long cell".to_string(), String::new()],
            vec!["bbbb".to_string(), "x".to_string(), "z".to_string()],
        ];
        table(&mut out, &["ID", "WHAT", "LAST"], &rows).expect("write");
        let text = String::from_utf8(out).expect("utf-8");
        assert_eq!(
            text,
            "ID    WHAT       LAST\na     long cell\nbbbb  x          z\n"
        );
    }

    #[test]
    fn durations_are_short() {
        assert_eq!(short_duration(Duration::from_millis(850)), "850ms");
        assert_eq!(short_duration(Duration::from_millis(4_240)), "4.2s");
        assert_eq!(short_duration(Duration::from_secs(187)), "3m07s");
        assert_eq!(short_duration(Duration::from_secs(7_500)), "2h05m");
    }

    #[test]
    fn timestamps_are_utc_and_zero_is_a_dash() {
        assert_eq!(timestamp(0), "-");
        assert_eq!(timestamp(1_700_000_000_000), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn a_job_in_json_names_its_states() {
        let job = pb::Job {
            job_id: "j1".into(),
            app: "wc".into(),
            state: pb::JobState::Succeeded as i32,
            map: Some(pb::PhaseProgress {
                total: 8,
                completed: 8,
                ..Default::default()
            }),
            tasks: vec![pb::TaskInfo {
                kind: pb::TaskKind::Reduce as i32,
                index: 2,
                state: pb::TaskState::Completed as i32,
                ..Default::default()
            }],
            ..Default::default()
        };
        let value = job_json(&job);
        assert_eq!(value["state"], "SUCCEEDED");
        assert_eq!(value["map"]["completed"], 8);
        assert_eq!(value["reduce"]["total"], 0);
        assert_eq!(value["tasks"][0]["kind"], "reduce");
        assert_eq!(value["tasks"][0]["state"], "COMPLETED");
        assert!(value.get("input_files").is_none());
    }
}
