//! `mr-coordinator health`: asks a running coordinator's gRPC health service whether it
//! serves, so a container without a shell can have a healthcheck. The health service needs
//! no token (see [`crate::auth`]), so the check takes none; it speaks TLS to an `https://`
//! address, trusting the given CA.

use mr_common::security::{ClientTls, ClientTlsError};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// Why the health check did not say SERVING.
#[derive(Debug, thiserror::Error)]
pub enum HealthError {
    /// The address is not a valid endpoint URI.
    #[error("bad address '{addr}': {message}")]
    BadAddress { addr: String, message: String },
    /// The TLS options do not fit the address, or the CA file is unusable.
    #[error(transparent)]
    Tls(#[from] ClientTlsError),
    /// No connection could be made.
    #[error("cannot reach {addr}: {source}")]
    Unreachable {
        addr: String,
        #[source]
        source: tonic::transport::Error,
    },
    /// The health RPC failed.
    #[error("health check of {addr} failed: {status}")]
    Rpc { addr: String, status: tonic::Status },
    /// The coordinator answered, but not SERVING.
    #[error("{addr} is {status:?}")]
    NotServing { addr: String, status: ServingStatus },
}

/// Checks the overall health of the coordinator at `addr` (e.g. `http://127.0.0.1:50051`, or
/// `https://coordinator:50051` with `tls.ca` set).
pub async fn check(addr: &str, tls: &ClientTls) -> Result<(), HealthError> {
    let endpoint = tonic::transport::Endpoint::from_shared(addr.to_string())
        .map_err(|e| HealthError::BadAddress {
            addr: addr.to_string(),
            message: e.to_string(),
        })?
        .connect_timeout(std::time::Duration::from_secs(3))
        .timeout(std::time::Duration::from_secs(3));
    let endpoint = tls.apply(addr, endpoint)?;
    let channel = endpoint
        .connect()
        .await
        .map_err(|source| HealthError::Unreachable {
            addr: addr.to_string(),
            source,
        })?;
    let response = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .map_err(|status| HealthError::Rpc {
            addr: addr.to_string(),
            status,
        })?;
    match response.into_inner().status() {
        ServingStatus::Serving => Ok(()),
        status => Err(HealthError::NotServing {
            addr: addr.to_string(),
            status,
        }),
    }
}
