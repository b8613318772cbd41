//! The coordinator's errors, and their mapping to gRPC statuses (the only place that does it).

use mr_common::PathError;
use tonic::{Code, Status};

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
    /// A worker asked for a module the coordinator does not hold.
    #[error("no app module with sha256 {sha256}")]
    UnknownModule { sha256: String },
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

impl From<CoordinatorError> for Status {
    fn from(err: CoordinatorError) -> Self {
        let code = match &err {
            CoordinatorError::UnknownApp { .. }
            | CoordinatorError::UnknownJob { .. }
            | CoordinatorError::UnknownModule { .. } => Code::NotFound,
            CoordinatorError::BadApp { .. } | CoordinatorError::InvalidArgument { .. } => {
                Code::InvalidArgument
            }
            CoordinatorError::Path(PathError::DataDir { .. } | PathError::Io { .. }) => {
                Code::Internal
            }
            CoordinatorError::Path(PathError::Escapes { .. }) => Code::PermissionDenied,
            CoordinatorError::Path(_) => Code::InvalidArgument,
            CoordinatorError::JobEnded { .. } => Code::FailedPrecondition,
            CoordinatorError::Io { .. } => Code::Internal,
            CoordinatorError::Store(_) => Code::Unavailable,
        };
        Status::new(code, err.to_string())
    }
}
