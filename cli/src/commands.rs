//! The commands other than `watch`: each makes its call(s) and prints the answer as a table
//! or summary, or as JSON with `--json`. Each returns the process's exit code.

use crate::client::{self, Client};
use crate::error::CliError;
use crate::output::{self, json_out, table};
use crate::watch;
use mr_proto::v1 as pb;
use serde_json::json;
use std::io::Write;

/// What `mr submit` sends.
pub(crate) struct Submit {
    pub(crate) app: String,
    pub(crate) inputs: Vec<String>,
    pub(crate) n_reduce: u32,
    pub(crate) split_bytes: u64,
    pub(crate) max_skipped_records: u64,
    pub(crate) watch: bool,
    pub(crate) json: bool,
}

pub(crate) async fn submit(client: &mut Client, submit: Submit) -> Result<u8, CliError> {
    let job_id = client
        .submit_job(pb::SubmitJobRequest {
            app: submit.app,
            inputs: submit.inputs,
            n_reduce: submit.n_reduce,
            split_bytes: submit.split_bytes,
            max_skipped_records: submit.max_skipped_records,
        })
        .await?
        .into_inner()
        .job_id;
    let mut out = std::io::stdout().lock();
    if submit.json {
        serde_json::to_writer(&mut out, &json!({ "job_id": job_id }))
            .map_err(std::io::Error::from)?;
        writeln!(out)?;
    } else {
        writeln!(out, "{job_id}")?;
    }
    out.flush()?;
    drop(out);
    if submit.watch {
        return watch_job(client, &job_id, submit.json).await;
    }
    Ok(0)
}

pub(crate) async fn watch_job(
    client: &mut Client,
    job_id: &str,
    json: bool,
) -> Result<u8, CliError> {
    let job = watch::watch(client, job_id, json).await?;
    Ok(watch::exit_code(job.state()))
}

pub(crate) async fn jobs(client: &mut Client, json: bool) -> Result<u8, CliError> {
    let jobs = client
        .list_jobs(pb::ListJobsRequest {})
        .await?
        .into_inner()
        .jobs;
    let mut out = std::io::stdout().lock();
    if json {
        let jobs: Vec<_> = jobs.iter().map(output::job_json).collect();
        json_out(&mut out, &json!({ "jobs": jobs }))?;
    } else {
        let rows: Vec<_> = jobs.iter().map(output::job_row).collect();
        table(&mut out, &output::JOBS_HEADER, &rows)?;
    }
    out.flush()?;
    Ok(0)
}

pub(crate) async fn status(
    client: &mut Client,
    job_id: &str,
    tasks: bool,
    json: bool,
) -> Result<u8, CliError> {
    let job = client::job(client, job_id, tasks).await?;
    let mut out = std::io::stdout().lock();
    if json {
        json_out(&mut out, &output::job_json(&job))?;
    } else {
        output::job_summary(&mut out, &job)?;
        if tasks {
            writeln!(out)?;
            let rows: Vec<_> = job.tasks.iter().map(output::task_row).collect();
            table(&mut out, &output::TASKS_HEADER, &rows)?;
        }
    }
    out.flush()?;
    Ok(0)
}

pub(crate) async fn cancel(client: &mut Client, job_id: &str, json: bool) -> Result<u8, CliError> {
    let mut job = client
        .cancel_job(pb::CancelJobRequest {
            job_id: job_id.to_string(),
        })
        .await?
        .into_inner();
    let mut out = std::io::stdout().lock();
    if json {
        job.tasks.clear();
        json_out(&mut out, &output::job_json(&job))?;
    } else {
        writeln!(out, "job {} {}", job.job_id, output::job_state(job.state()))?;
    }
    out.flush()?;
    Ok(0)
}

pub(crate) async fn workers(client: &mut Client, json: bool) -> Result<u8, CliError> {
    let workers = client
        .list_workers(pb::ListWorkersRequest {})
        .await?
        .into_inner()
        .workers;
    let mut out = std::io::stdout().lock();
    if json {
        let workers: Vec<_> = workers.iter().map(output::worker_json).collect();
        json_out(&mut out, &json!({ "workers": workers }))?;
    } else {
        let rows: Vec<_> = workers.iter().map(output::worker_row).collect();
        table(&mut out, &output::WORKERS_HEADER, &rows)?;
    }
    out.flush()?;
    Ok(0)
}

/// Bytes of one `PushApp` chunk (well under gRPC's 4 MiB message limit).
const PUSH_CHUNK: usize = 1 << 20;

/// Uploads `file` as app `name` (default: the file's stem) in chunks.
pub(crate) async fn push_app(
    client: &mut Client,
    file: &std::path::Path,
    name: Option<String>,
    json: bool,
) -> Result<u8, CliError> {
    let wasm = std::fs::read(file)
        .map_err(|e| CliError::Setup(format!("reading {}: {e}", file.display())))?;
    let name = match name {
        Some(name) => name,
        None => file
            .file_stem()
            .and_then(|s| s.to_str())
            .map(str::to_string)
            .ok_or_else(|| {
                CliError::Setup(format!(
                    "cannot name an app after {}: use --name",
                    file.display()
                ))
            })?,
    };
    let mut chunks: Vec<pb::PushAppChunk> = wasm
        .chunks(PUSH_CHUNK)
        .map(|data| pb::PushAppChunk {
            name: String::new(),
            data: data.to_vec(),
        })
        .collect();
    if chunks.is_empty() {
        chunks.push(pb::PushAppChunk::default());
    }
    chunks[0].name = name;
    let app = client
        .push_app(tokio_stream::iter(chunks))
        .await?
        .into_inner();
    let mut out = std::io::stdout().lock();
    if json {
        json_out(&mut out, &output::app_json(&app))?;
    } else {
        writeln!(
            out,
            "pushed {} ({} bytes, sha256 {})",
            app.name, app.size_bytes, app.sha256
        )?;
    }
    out.flush()?;
    Ok(0)
}

pub(crate) async fn list_apps(client: &mut Client, json: bool) -> Result<u8, CliError> {
    let apps = client
        .list_apps(pb::ListAppsRequest {})
        .await?
        .into_inner()
        .apps;
    let mut out = std::io::stdout().lock();
    if json {
        let apps: Vec<_> = apps.iter().map(output::app_json).collect();
        json_out(&mut out, &json!({ "apps": apps }))?;
    } else {
        let rows: Vec<_> = apps.iter().map(output::app_row).collect();
        table(&mut out, &output::APPS_HEADER, &rows)?;
    }
    out.flush()?;
    Ok(0)
}

pub(crate) async fn delete_app(client: &mut Client, name: &str) -> Result<u8, CliError> {
    let app = client
        .delete_app(pb::DeleteAppRequest {
            name: name.to_string(),
        })
        .await?
        .into_inner();
    let mut out = std::io::stdout().lock();
    writeln!(out, "deleted {} (sha256 {})", app.name, app.sha256)?;
    out.flush()?;
    Ok(0)
}

/// Writes each chunk as it comes: the output is never held whole.
pub(crate) async fn cat(client: &mut Client, job_id: &str) -> Result<u8, CliError> {
    let mut stream = client
        .read_output(pb::ReadOutputRequest {
            job_id: job_id.to_string(),
        })
        .await?
        .into_inner();
    let mut out = std::io::stdout();
    while let Some(chunk) = stream.message().await? {
        out.write_all(&chunk.data)?;
        out.flush()?;
    }
    Ok(0)
}
