//! Connecting to the coordinator's job API: the URL, TLS (as the worker does it, with
//! `ClientTls`), the bearer token on every call, a 3 s connect timeout.

use crate::error::CliError;
use mr_common::security::{BearerToken, ClientTls, error_chain};
use mr_proto::v1 as pb;
use pb::job_service_client::JobServiceClient;
use std::time::Duration;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

/// How long a connection attempt may take before the coordinator counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Largest reply accepted (a long `ListJobs`); the coordinator keeps its own far below.
const MAX_REPLY_BYTES: usize = 64 << 20;

/// A job API client that sends the token, if any, on every call.
pub(crate) type Client = JobServiceClient<InterceptedService<Channel, BearerToken>>;

/// Where the coordinator is and how to talk to it (the global flags).
#[derive(Clone, Debug)]
pub(crate) struct Target {
    pub(crate) url: String,
    pub(crate) auth_token: Option<String>,
    pub(crate) tls: ClientTls,
}

/// Connects now, so that an unreachable coordinator is reported once, before any call.
pub(crate) async fn connect(target: &Target) -> Result<Client, CliError> {
    let url = target.url.as_str();
    if !url.starts_with("http://") && !url.starts_with("https://") {
        return Err(CliError::Setup(format!(
            "the coordinator URL '{url}' must start with http:// or https:// (e.g. http://127.0.0.1:50051)"
        )));
    }
    let endpoint = Endpoint::from_shared(url.to_string())
        .map_err(|e| {
            CliError::Setup(format!(
                "the coordinator URL '{url}' is not valid: {}",
                error_chain(&e)
            ))
        })?
        .connect_timeout(CONNECT_TIMEOUT)
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_timeout(Duration::from_secs(5));
    let endpoint = target
        .tls
        .apply(url, endpoint)
        .map_err(|e| CliError::Setup(e.to_string()))?;
    let token = BearerToken::new(target.auth_token.as_deref())
        .map_err(|e| CliError::Setup(format!("--auth-token (MR_AUTH_TOKEN): {e}")))?;
    let channel = endpoint
        .connect()
        .await
        .map_err(|e| CliError::unreachable(url, &e))?;
    Ok(JobServiceClient::with_interceptor(channel, token)
        .max_decoding_message_size(MAX_REPLY_BYTES))
}

/// The job with every task record, page after page (GetJob's `task_page_token`); with
/// `tasks` false, only the first (one-record) page, which still carries the input files and
/// the first skipped records.
pub(crate) async fn job(
    client: &mut Client,
    job_id: &str,
    tasks: bool,
) -> Result<pb::Job, CliError> {
    let page_size = if tasks { 5_000 } else { 1 };
    let mut job = client
        .get_job(pb::GetJobRequest {
            job_id: job_id.to_string(),
            task_page_size: page_size,
            task_page_token: String::new(),
        })
        .await?
        .into_inner();
    if !tasks {
        job.tasks.clear();
        job.next_task_page_token.clear();
        return Ok(job);
    }
    while !job.next_task_page_token.is_empty() {
        let page = client
            .get_job(pb::GetJobRequest {
                job_id: job_id.to_string(),
                task_page_size: page_size,
                task_page_token: std::mem::take(&mut job.next_task_page_token),
            })
            .await?
            .into_inner();
        job.tasks.extend(page.tasks);
        job.next_task_page_token = page.next_task_page_token;
    }
    Ok(job)
}
