//! What can go wrong in a command, each case worded for one line on stderr: the server's
//! own status message, an unreachable coordinator with what to do about it, a bad setting.

use mr_common::security::error_chain;
use tonic::Code;

/// A command's failure; `main` prints it as `mr: <message>` and exits 1.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CliError {
    /// No connection could be made to the coordinator.
    #[error("cannot reach the coordinator at {url}: {reason}; {hint}")]
    Unreachable {
        url: String,
        reason: String,
        hint: &'static str,
    },
    /// The coordinator answered with an error: its message says what was wrong.
    #[error("{}", status_line(.0))]
    Status(tonic::Status),
    /// A watch cut off by the connection or the coordinator going away.
    #[error("the watch of job '{job_id}' broke off ({message}); run `mr watch {job_id}` again")]
    WatchLost { job_id: String, message: String },
    /// A flag or setting that cannot be used (URL, TLS file, token).
    #[error("{0}")]
    Setup(String),
    /// Writing to stdout failed (a closed pipe is not reported: see [`CliError::is_closed_pipe`]).
    #[error("writing the output: {0}")]
    Output(#[from] std::io::Error),
}

impl CliError {
    /// The reader of our stdout went away (`mr cat J | head`): stop quietly, with success.
    pub(crate) fn is_closed_pipe(&self) -> bool {
        matches!(self, CliError::Output(e) if e.kind() == std::io::ErrorKind::BrokenPipe)
    }

    /// A failed connection attempt to `url`, with the likeliest cause and what to do.
    pub(crate) fn unreachable(url: &str, error: &tonic::transport::Error) -> Self {
        let io = io_source(error);
        let (reason, hint) = match io.map(std::io::Error::kind) {
            Some(std::io::ErrorKind::ConnectionRefused) => {
                ("connection refused".to_string(), RUNNING_HINT)
            }
            Some(std::io::ErrorKind::TimedOut) => (
                "no answer within the connect timeout".to_string(),
                RUNNING_HINT,
            ),
            _ if is_timeout(error) => (
                "no answer within the connect timeout".to_string(),
                RUNNING_HINT,
            ),
            _ => {
                let reason = causes(error);
                let hint = if reason.contains("dns error") {
                    "check the host name in --coordinator (MR_COORDINATOR)"
                } else {
                    "check --coordinator (MR_COORDINATOR), and --tls-ca and --tls-domain for an https:// one"
                };
                (reason, hint)
            }
        };
        CliError::Unreachable {
            url: url.to_string(),
            reason,
            hint,
        }
    }
}

/// A watch's failure: a lost connection or a coordinator stopping says to watch again; any
/// other status (an unknown job, too many watches) is the coordinator's answer as it is.
pub(crate) fn watch_failed(job_id: &str, status: tonic::Status) -> CliError {
    match status.code() {
        Code::Unavailable | Code::Unknown | Code::Internal | Code::Cancelled => {
            CliError::WatchLost {
                job_id: job_id.to_string(),
                message: status_line(&status),
            }
        }
        _ => CliError::Status(status),
    }
}

impl From<tonic::Status> for CliError {
    fn from(status: tonic::Status) -> Self {
        CliError::Status(status)
    }
}

const RUNNING_HINT: &str = "is it running? set --coordinator or MR_COORDINATOR";

/// The first I/O error in an error's chain of sources.
fn io_source<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a std::io::Error> {
    let mut current: Option<&'a (dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = current {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return Some(io);
        }
        current = e.source();
    }
    None
}

/// An error's chain of causes, `: `-joined, without tonic's uninformative "transport error"
/// and without a cause said twice in a row ("dns error: dns error: …").
fn causes(error: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = current {
        let text = one_line(&e.to_string());
        if text != "transport error" && parts.last() != Some(&text) {
            parts.push(text);
        }
        current = e.source();
    }
    parts.join(": ")
}

/// tonic reports its connect timeout as an elapsed timer somewhere in the chain.
fn is_timeout(error: &tonic::transport::Error) -> bool {
    error_chain(error).to_lowercase().contains("timed out")
}

/// A status as one line: its message (the coordinator's messages say what and where), or
/// its code's description when it has none.
fn status_line(status: &tonic::Status) -> String {
    let message = one_line(status.message());
    match (status.code(), message.is_empty()) {
        (Code::Unauthenticated, _) => format!(
            "{}; pass the coordinator's token with --auth-token or MR_AUTH_TOKEN",
            if message.is_empty() {
                "not authenticated"
            } else {
                &message
            }
        ),
        (Code::Unimplemented, _) => {
            "the coordinator does not know this call (it is older than this mr)".to_string()
        }
        (code, true) => code.description().to_string(),
        (_, false) => message,
    }
}

/// Newlines and runs of whitespace folded into single spaces.
pub(crate) fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_is_its_message_on_one_line() {
        let status = tonic::Status::not_found("job 'nope'\nnot found");
        assert_eq!(CliError::from(status).to_string(), "job 'nope' not found");
        let empty = tonic::Status::new(Code::Internal, "");
        assert_eq!(
            CliError::from(empty).to_string(),
            Code::Internal.description()
        );
    }

    #[test]
    fn a_watch_cut_off_says_to_watch_again_but_an_answer_stays_as_it_is() {
        let lost = watch_failed(
            "j1",
            tonic::Status::unavailable("coordinator is shutting down"),
        );
        assert_eq!(
            lost.to_string(),
            "the watch of job 'j1' broke off (coordinator is shutting down); run `mr watch j1` again"
        );
        let answer = watch_failed("j1", tonic::Status::not_found("job 'j1' not found"));
        assert_eq!(answer.to_string(), "job 'j1' not found");
    }

    #[test]
    fn a_closed_pipe_is_told_apart() {
        let closed = CliError::Output(std::io::Error::from(std::io::ErrorKind::BrokenPipe));
        assert!(closed.is_closed_pipe());
        let full = CliError::Output(std::io::Error::from(std::io::ErrorKind::StorageFull));
        assert!(!full.is_closed_pipe());
    }
}
