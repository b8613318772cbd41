//! Bearer-token authentication of the job API (`mapreduce.v1.JobService`) and the worker API
//! (`mapreduce.v1.Coordinator`).
//!
//! With a token configured, every call of these two services must carry the metadata
//! `authorization: Bearer <token>`; a missing or different token is refused with
//! `Unauthenticated` before the call reaches the service. The check is a tonic interceptor
//! wrapped around each of the two services rather than a layer around the whole server, on
//! purpose: the gRPC health service stays open, because container healthchecks and load
//! balancers probe it without credentials and it tells nothing but SERVING; and reflection
//! stays open, because it exposes only the schema (which is public in this repository), and
//! it lets `grpcurl` discover the methods before the user adds the header.
//!
//! The token is compared in constant time (over SHA-256 digests, so neither its bytes nor
//! its length leak through timing). A token is a shared secret: it authenticates, it does not
//! encrypt, so outside a trusted network it belongs with TLS (`--tls-cert`/`--tls-key`).

use crate::config::CoordinatorConfig;
use mr_common::security::{self, TlsFileError};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use tonic::service::Interceptor;
use tonic::transport::Server;
use tonic::{Request, Status};

/// Why the security settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    /// A certificate or key file is unreadable or holds no PEM certificate or key.
    #[error(transparent)]
    File(#[from] TlsFileError),
    /// Only one of the certificate and the key is given.
    #[error("TLS needs both --tls-cert and --tls-key (env MR_TLS_CERT, MR_TLS_KEY)")]
    HalfTls,
    /// The files parse, but rustls refuses them (e.g. the key does not match the certificate).
    #[error("TLS with certificate {cert} and key {key}: {message}")]
    Setup {
        cert: String,
        key: String,
        message: String,
    },
    /// The token could not be sent in an HTTP/2 header.
    #[error(transparent)]
    Token(#[from] security::BadToken),
}

/// The gRPC server builder (with TLS when the configuration names a certificate and key) and
/// the interceptor for the job and worker APIs.
pub fn server(config: &CoordinatorConfig) -> Result<(Server, BearerAuth), SecurityError> {
    // The worker sends the token as a header value: refuse at start one it could not send.
    security::BearerToken::new(config.auth_token.as_deref())?;
    let auth = BearerAuth::new(config.auth_token.as_deref());
    let server = match (&config.tls_cert, &config.tls_key) {
        (None, None) => Server::builder(),
        (Some(cert), Some(key)) => Server::builder()
            .tls_config(security::server_tls(cert, key)?)
            .map_err(|e| SecurityError::Setup {
                cert: cert.display().to_string(),
                key: key.display().to_string(),
                message: security::error_chain(&e),
            })?,
        _ => return Err(SecurityError::HalfTls),
    };
    tracing::info!(
        tls = config.tls_cert.is_some(),
        auth_token = auth.enabled(),
        "security settings"
    );
    Ok((server, auth))
}

/// The server side of bearer-token authentication: an interceptor that lets a call through
/// only with the configured token (every call, when none is configured).
#[derive(Clone, Debug, Default)]
pub struct BearerAuth {
    /// SHA-256 of the expected token; `None`: authentication is off.
    expected: Option<Arc<[u8; 32]>>,
}

impl BearerAuth {
    /// Checks against `token`; `None` or empty turns authentication off.
    pub fn new(token: Option<&str>) -> Self {
        Self {
            expected: token
                .filter(|t| !t.is_empty())
                .map(|t| Arc::new(digest(t.as_bytes()))),
        }
    }

    /// Whether calls must carry a token.
    pub fn enabled(&self) -> bool {
        self.expected.is_some()
    }

    /// Whether `token` is the configured one, compared in constant time (always, when
    /// authentication is off): the same check for the HTTP side (`crate::http`).
    pub fn accepts(&self, token: &str) -> bool {
        self.expected
            .as_ref()
            .is_none_or(|expected| constant_time_eq(&digest(token.trim().as_bytes()), expected))
    }

    fn check(&self, request: &Request<()>) -> Result<(), Status> {
        let Some(expected) = &self.expected else {
            return Ok(());
        };
        let Some(value) = request.metadata().get("authorization") else {
            return Err(Status::unauthenticated(
                "missing bearer token: send metadata 'authorization: Bearer <token>'",
            ));
        };
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer ").or(v.strip_prefix("bearer ")))
            .ok_or_else(|| {
                Status::unauthenticated(
                    "missing bearer token: the authorization metadata is not 'Bearer <token>'",
                )
            })?;
        if constant_time_eq(&digest(token.trim().as_bytes()), expected) {
            Ok(())
        } else {
            Err(Status::unauthenticated("invalid bearer token"))
        }
    }
}

impl Interceptor for BearerAuth {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        self.check(&request)?;
        Ok(request)
    }
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// Compares all 32 bytes whatever differs, so the time taken says nothing of where.
fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let difference = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(difference) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(authorization: Option<&str>) -> Request<()> {
        let mut request = Request::new(());
        if let Some(value) = authorization {
            request
                .metadata_mut()
                .insert("authorization", value.parse().unwrap());
        }
        request
    }

    #[test]
    fn off_lets_everything_through() {
        let auth = BearerAuth::new(None);
        assert!(!auth.enabled());
        assert!(auth.check(&request(None)).is_ok());
        assert!(BearerAuth::new(Some("")).check(&request(None)).is_ok());
    }

    #[test]
    fn on_requires_the_token() {
        let auth = BearerAuth::new(Some("s3cret"));
        assert!(auth.check(&request(Some("Bearer s3cret"))).is_ok());
        let missing = auth.check(&request(None)).unwrap_err();
        assert_eq!(missing.code(), tonic::Code::Unauthenticated);
        assert!(missing.message().contains("missing bearer token"));
        let wrong = auth.check(&request(Some("Bearer s3cret2"))).unwrap_err();
        assert_eq!(wrong.code(), tonic::Code::Unauthenticated);
        assert_eq!(wrong.message(), "invalid bearer token");
        let scheme = auth.check(&request(Some("Basic s3cret"))).unwrap_err();
        assert!(scheme.message().contains("missing bearer token"));
    }

    #[test]
    fn accepts_only_the_token() {
        assert!(BearerAuth::new(None).accepts("anything"));
        let auth = BearerAuth::new(Some("s3cret"));
        assert!(auth.accepts("s3cret"));
        assert!(!auth.accepts("s3cret2"));
        assert!(!auth.accepts(""));
    }

    #[test]
    fn equality_is_exact() {
        let a = digest(b"x");
        let mut b = a;
        assert!(constant_time_eq(&a, &b));
        b[31] ^= 1;
        assert!(!constant_time_eq(&a, &b));
    }
}
