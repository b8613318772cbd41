//! What the coordinator, the worker and `mr-coordinator health` share about transport
//! security: loading PEM files into tonic's TLS configurations with errors that name the
//! file, and the client side of bearer-token authentication ([`BearerToken`]).
//!
//! The files are read and checked here, at start-up, rather than left to tonic: tonic parses
//! them only when the first connection is made or the server is built, and its errors
//! ("Error parsing TLS certificate.") do not say which file was wrong.

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use tonic::metadata::AsciiMetadataValue;
use tonic::service::Interceptor;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity, ServerTlsConfig};

/// A TLS file (certificate, key or CA) that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{what} {}: {message}", path.display())]
pub struct TlsFileError {
    /// Which file it is: "TLS certificate", "TLS private key" or "TLS CA".
    pub what: &'static str,
    pub path: PathBuf,
    pub message: String,
}

/// Why a client endpoint could not be set up for the given URL and TLS options.
#[derive(Debug, thiserror::Error)]
pub enum ClientTlsError {
    /// A TLS file is unusable.
    #[error(transparent)]
    File(#[from] TlsFileError),
    /// `https://` without a CA: no system roots are built in, so nothing could be verified.
    #[error("'{url}' is https:// but no CA is given: pass --tls-ca (env MR_TLS_CA)")]
    MissingCa { url: String },
    /// A CA for a plaintext URL: almost certainly a mistake that would send data in clear.
    #[error("--tls-ca is given but '{url}' is not https://: use an https:// URL")]
    NotHttps { url: String },
    /// tonic refused the configuration.
    #[error("TLS setup for '{url}': {message}")]
    Setup { url: String, message: String },
}

/// The client side of TLS: the CA to trust and, optionally, the name to verify the server's
/// certificate against (and to send as SNI) instead of the URL's host.
#[derive(Clone, Debug, Default)]
pub struct ClientTls {
    /// PEM file with the CA certificate(s) to trust. `None`: plaintext only.
    pub ca: Option<PathBuf>,
    /// Overrides the URL's host as the name the certificate must carry.
    pub domain: Option<String>,
}

impl ClientTls {
    /// Applies this to an endpoint for `url`: TLS with the CA when the URL is `https://`;
    /// refuses `https://` without a CA, and a CA with a plaintext URL.
    pub fn apply(&self, url: &str, endpoint: Endpoint) -> Result<Endpoint, ClientTlsError> {
        let https = endpoint.uri().scheme_str() == Some("https");
        match (&self.ca, https) {
            (None, false) => Ok(endpoint),
            (None, true) => Err(ClientTlsError::MissingCa { url: url.into() }),
            (Some(_), false) => Err(ClientTlsError::NotHttps { url: url.into() }),
            (Some(ca), true) => {
                let mut config = ClientTlsConfig::new().ca_certificate(read_ca(ca)?);
                if let Some(domain) = &self.domain {
                    config = config.domain_name(domain.clone());
                }
                endpoint
                    .tls_config(config)
                    .map_err(|e| ClientTlsError::Setup {
                        url: url.into(),
                        message: error_chain(&e),
                    })
            }
        }
    }
}

/// Reads a PEM CA file; it must hold at least one certificate.
pub fn read_ca(path: &Path) -> Result<Certificate, TlsFileError> {
    let pem = read_certificates("TLS CA", path)?;
    Ok(Certificate::from_pem(pem))
}

/// Reads the server's PEM certificate chain and private key into a TLS server configuration.
pub fn server_tls(cert: &Path, key: &Path) -> Result<ServerTlsConfig, TlsFileError> {
    let cert_pem = read_certificates("TLS certificate", cert)?;
    let key_pem = read("TLS private key", key)?;
    PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| TlsFileError {
        what: "TLS private key",
        path: key.to_path_buf(),
        message: format!("no usable PEM private key (PKCS#8, PKCS#1 or SEC1): {e}"),
    })?;
    Ok(ServerTlsConfig::new().identity(Identity::from_pem(cert_pem, key_pem)))
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsFileError> {
    std::fs::read(path).map_err(|e| TlsFileError {
        what,
        path: path.to_path_buf(),
        message: format!("cannot read: {e}"),
    })
}

fn read_certificates(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsFileError> {
    let pem = read(what, path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsFileError {
            what,
            path: path.to_path_buf(),
            message: format!("bad PEM: {e}"),
        })?;
    if certs.is_empty() {
        return Err(TlsFileError {
            what,
            path: path.to_path_buf(),
            message: "no PEM certificate (-----BEGIN CERTIFICATE-----) in it".into(),
        });
    }
    Ok(pem)
}

/// An error and its sources, `: `-joined (tonic's transport errors say little on top).
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

/// A client interceptor that sends `authorization: Bearer <token>` on every call (nothing
/// when it has no token).
#[derive(Clone, Debug, Default)]
pub struct BearerToken {
    header: Option<AsciiMetadataValue>,
}

/// A token that cannot be sent as an HTTP/2 header value.
#[derive(Debug, thiserror::Error)]
#[error("the auth token must be printable ASCII (no spaces or control characters)")]
pub struct BadToken;

impl BearerToken {
    /// `None` or an empty token: send nothing.
    pub fn new(token: Option<&str>) -> Result<Self, BadToken> {
        let header = match token.filter(|t| !t.is_empty()) {
            None => None,
            Some(token) => {
                if !token.bytes().all(|b| b.is_ascii_graphic()) {
                    return Err(BadToken);
                }
                Some(
                    format!("Bearer {token}")
                        .parse::<AsciiMetadataValue>()
                        .map_err(|_| BadToken)?,
                )
            }
        };
        Ok(Self { header })
    }
}

impl Interceptor for BearerToken {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(header) = &self.header {
            request
                .metadata_mut()
                .insert("authorization", header.clone());
        }
        Ok(request)
    }
}
