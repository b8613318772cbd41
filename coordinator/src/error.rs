//! The coordinator's errors, and their mapping to gRPC statuses (the only place that does it).
//!
//! A status message may echo what the caller sent (an app name, a path, a job id), but never
//! at any length: every echoed value goes through [`clip`] (at most [`MAX_ECHO_CHARS`]
//! characters, control characters escaped), and a whole message is cut at
//! [`MAX_STATUS_MESSAGE`] bytes, because gRPC clients refuse oversized metadata (grpcio
//! answers RESOURCE_EXHAUSTED to a 1 MB `grpc-message`).

use mr_common::PathError;
use tonic::{Code, Status};

/// Longest echo of a caller's value in a message, in characters (a longer one is cut to
/// fewer characters followed by `…(N bytes)`).
pub const MAX_ECHO_CHARS: usize = 200;

/// Longest status message, in bytes.
pub const MAX_STATUS_MESSAGE: usize = 1024;

/// Characters of a clipped value kept before `…(N bytes)`: short enough that the result
/// stays within [`MAX_ECHO_CHARS`], so clipping twice changes nothing.
const CLIP_KEEP_CHARS: usize = MAX_ECHO_CHARS - 40;

/// `value` as a message may echo it: control characters (NUL, newlines) escaped, and cut to
/// at most [`MAX_ECHO_CHARS`] characters with its full length in bytes.
pub fn clip(value: &str) -> String {
    let mut escaped = String::with_capacity(value.len().min(4 * MAX_ECHO_CHARS));
    for c in value.chars() {
        if escaped.len() > 4 * MAX_ECHO_CHARS {
            break;
        }
        if c.is_control() {
            escaped.extend(c.escape_default());
        } else {
            escaped.push(c);
        }
    }
    if escaped.chars().count() <= MAX_ECHO_CHARS {
        return escaped;
    }
    let kept: String = escaped.chars().take(CLIP_KEEP_CHARS).collect();
    format!("{kept}…({} bytes)", value.len())
}

/// Cuts `message` to at most [`MAX_STATUS_MESSAGE`] bytes, on a character boundary.
fn cap_message(mut message: String) -> String {
    if message.len() <= MAX_STATUS_MESSAGE {
        return message;
    }
    const MARK: &str = "…(cut)";
    let mut end = MAX_STATUS_MESSAGE - MARK.len();
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    message.truncate(end);
    message.push_str(MARK);
    message
}

/// Everything a user or worker request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum CoordinatorError {
    /// No `<app>.wasm` in the apps folder.
    #[error("app '{app}' not found: no {app}.wasm in the apps folder")]
    UnknownApp { app: String },
    /// The app file exists but is not a usable Wasm module.
    #[error("app '{app}': {message}")]
    BadApp { app: String, message: String },
    /// A request field has a value the service cannot accept.
    #[error("{field}: {message}")]
    InvalidArgument {
        field: &'static str,
        message: String,
    },
    /// An input path was refused or matched nothing.
    #[error(transparent)]
    Path(#[from] PathError),
    /// No job has this id.
    #[error("job '{job_id}' not found")]
    UnknownJob { job_id: String },
    /// The job already ended, so it cannot be cancelled.
    #[error("job '{job_id}' already ended ({state})")]
    JobEnded { job_id: String, state: &'static str },
    /// An uploaded app is larger than the coordinator accepts.
    #[error(
        "app '{app}': the upload passed {limit} bytes, the most this coordinator accepts (--max-app-bytes)"
    )]
    AppTooLarge { app: String, limit: u64 },
    /// The job has no output to read (yet, or ever).
    #[error("job '{job_id}' is {state}: its output can be read once it has SUCCEEDED")]
    NoOutput { job_id: String, state: &'static str },
    /// A worker asked for a module the coordinator does not hold.
    #[error("no app module with sha256 {sha256}")]
    UnknownModule { sha256: String },
    /// A cap on open `WatchJob` streams is reached (`limit` is the setting named `setting`).
    #[error(
        "too many open WatchJob streams: at most {limit} {scope} ({setting}); close one or poll GetJob"
    )]
    TooManyWatches {
        limit: usize,
        scope: &'static str,
        setting: &'static str,
    },
    /// The object storage (`--storage s3://…`) refused or failed a request, after retries.
    #[error("object storage: {0}")]
    Objects(#[from] mr_storage::StoreError),
    /// The journal could not be written, so the change was not made.
    #[error("coordinator store: {0}")]
    Store(#[from] crate::journal::JournalError),
    /// Reading or writing the coordinator's own files failed.
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

impl CoordinatorError {
    /// The same error with every value the caller sent [`clip`]ped, fit to be shown or logged.
    pub fn clipped(self) -> Self {
        use CoordinatorError as E;
        match self {
            E::UnknownApp { app } => E::UnknownApp { app: clip(&app) },
            E::BadApp { app, message } => E::BadApp {
                app: clip(&app),
                message,
            },
            E::UnknownJob { job_id } => E::UnknownJob {
                job_id: clip(&job_id),
            },
            E::JobEnded { job_id, state } => E::JobEnded {
                job_id: clip(&job_id),
                state,
            },
            E::AppTooLarge { app, limit } => E::AppTooLarge {
                app: clip(&app),
                limit,
            },
            E::NoOutput { job_id, state } => E::NoOutput {
                job_id: clip(&job_id),
                state,
            },
            E::UnknownModule { sha256 } => E::UnknownModule {
                sha256: clip(&sha256),
            },
            E::Path(error) => E::Path(clip_path_error(error)),
            other => other,
        }
    }
}

fn clip_path_error(error: PathError) -> PathError {
    use PathError as P;
    match error {
        P::NotRelative { field, path } => P::NotRelative {
            field,
            path: clip(&path),
        },
        P::Escapes { field, path } => P::Escapes {
            field,
            path: clip(&path),
        },
        P::BadGlob {
            field,
            path,
            message,
        } => P::BadGlob {
            field,
            path: clip(&path),
            message: clip(&message),
        },
        P::NoMatch { field, path } => P::NoMatch {
            field,
            path: clip(&path),
        },
        P::NoUsableMatch {
            field,
            path,
            skipped,
        } => P::NoUsableMatch {
            field,
            path: clip(&path),
            skipped,
        },
        P::DanglingLink { field, path } => P::DanglingLink {
            field,
            path: clip(&path),
        },
        P::Unusable {
            field,
            path,
            reason,
        } => P::Unusable {
            field,
            path: clip(&path),
            reason,
        },
        P::NotAFile { field, path } => P::NotAFile {
            field,
            path: clip(&path),
        },
        P::Io {
            field,
            path,
            source,
        } => P::Io {
            field,
            path: clip(&path),
            source,
        },
        other @ P::DataDir { .. } => other,
    }
}

impl From<CoordinatorError> for Status {
    fn from(err: CoordinatorError) -> Self {
        let code = match &err {
            CoordinatorError::UnknownApp { .. }
            | CoordinatorError::UnknownJob { .. }
            | CoordinatorError::UnknownModule { .. } => Code::NotFound,
            CoordinatorError::BadApp { .. } | CoordinatorError::InvalidArgument { .. } => {
                Code::InvalidArgument
            }
            CoordinatorError::AppTooLarge { .. } => Code::ResourceExhausted,
            CoordinatorError::Path(PathError::DataDir { .. } | PathError::Io { .. }) => {
                Code::Internal
            }
            CoordinatorError::Path(PathError::Escapes { .. }) => Code::PermissionDenied,
            CoordinatorError::Path(_) => Code::InvalidArgument,
            CoordinatorError::JobEnded { .. } | CoordinatorError::NoOutput { .. } => {
                Code::FailedPrecondition
            }
            CoordinatorError::TooManyWatches { .. } => Code::ResourceExhausted,
            CoordinatorError::Io { .. } => Code::Internal,
            CoordinatorError::Store(_) => Code::Unavailable,
            // A missing bucket, refused credentials, a server that stays down: the
            // service's storage needs fixing; the message names the bucket.
            CoordinatorError::Objects(_) => Code::FailedPrecondition,
        };
        Status::new(code, cap_message(err.clipped().to_string()))
    }
}

/// A status for anything else that would show a caller's value or an unbounded text.
pub fn status(code: Code, message: impl Into<String>) -> Status {
    Status::new(code, cap_message(message.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echoes_are_clipped_once_and_escaped() {
        assert_eq!(clip("wc"), "wc");
        assert_eq!(clip("a\0b\n"), "a\\u{0}b\\n");
        let long = "x".repeat(1 << 20);
        let clipped = clip(&long);
        assert!(clipped.chars().count() <= MAX_ECHO_CHARS, "{clipped}");
        assert!(clipped.ends_with("…(1048576 bytes)"), "{clipped}");
        assert_eq!(clip(&clipped), clipped, "clipping twice changes nothing");
        let wide = "é".repeat(300);
        assert!(clip(&wide).chars().count() <= MAX_ECHO_CHARS);
    }

    #[test]
    fn statuses_echo_little_and_are_bounded() {
        let status = Status::from(CoordinatorError::UnknownJob {
            job_id: "j".repeat(1 << 20),
        });
        assert_eq!(status.code(), Code::NotFound);
        assert!(status.message().len() < 300, "{}", status.message());
        let status = Status::from(CoordinatorError::Path(PathError::NotRelative {
            field: "inputs[3]".into(),
            path: "/".repeat(5000),
        }));
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(status.message().starts_with("inputs[3]: "));
        assert!(status.message().ends_with("must not contain '..'"));
        let long = super::status(Code::Internal, "é".repeat(4000));
        assert!(long.message().len() <= MAX_STATUS_MESSAGE);
    }
}
