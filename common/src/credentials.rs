//! What a client presents to the coordinator: TLS files (CA to trust, client
//! certificate) and, for the job API, a bearer token. The token is never
//! printed: its `Debug` form is masked.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::ClientConfig;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::{Channel, Endpoint};

use crate::tls::client::{ClientTlsFiles, HttpsConnector};
use crate::tls::reload::Watched;
use crate::tls::TlsError;

/// Environment variable holding the token itself.
pub const TOKEN_ENV: &str = "FERRY_TOKEN";

/// A token that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    /// The token file cannot be read.
    #[error("cannot read --token-file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The token is empty or not printable ASCII.
    #[error("the token from {from} is empty or holds characters other than printable ASCII")]
    Invalid {
        /// Where it came from (`--token-file PATH`, `FERRY_TOKEN`).
        from: String,
    },
    /// The TLS files cannot be used.
    #[error(transparent)]
    Tls(#[from] TlsError),
}

/// The `authorization: Bearer …` header sent on every JobService call (none
/// when no token was given).
#[derive(Clone, Default)]
pub struct BearerToken(Option<MetadataValue<Ascii>>);

impl std::fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "BearerToken(***)"
        } else {
            "BearerToken(none)"
        })
    }
}

impl BearerToken {
    /// No token.
    pub fn none() -> Self {
        Self(None)
    }

    /// The token `text` (surrounding whitespace trimmed); `from` names its source for errors.
    pub fn new(text: &str, from: &str) -> Result<Self, CredentialError> {
        let token = text.trim();
        let invalid = || CredentialError::Invalid { from: from.into() };
        if token.is_empty() {
            return Err(invalid());
        }
        let mut value: MetadataValue<Ascii> =
            format!("Bearer {token}").parse().map_err(|_| invalid())?;
        value.set_sensitive(true);
        Ok(Self(Some(value)))
    }

    /// The token of `--token-file PATH`, else of `FERRY_TOKEN`, else none.
    pub fn from_file_or_env(file: Option<&Path>) -> Result<Self, CredentialError> {
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|source| CredentialError::Read {
                path: path.to_path_buf(),
                source,
            })?;
            return Self::new(&text, &format!("--token-file {}", path.display()));
        }
        match std::env::var(TOKEN_ENV) {
            Ok(text) if !text.trim().is_empty() => Self::new(&text, TOKEN_ENV),
            _ => Ok(Self::none()),
        }
    }

    /// Whether a token is set.
    pub fn is_set(&self) -> bool {
        self.0.is_some()
    }
}

impl tonic::service::Interceptor for BearerToken {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// Everything a client presents: TLS files and a bearer token.
#[derive(Debug, Clone, Default)]
pub struct ClientSecurity {
    /// `--tls-ca`, `--tls-cert`, `--tls-key`.
    pub tls: ClientTlsFiles,
    /// `--token-file` / `FERRY_TOKEN` (JobService only).
    pub token: BearerToken,
}

/// Builds the lazy channels of coordinator addresses: `https://` ones through
/// the reloading TLS connector (one configuration shared by all of them),
/// `http://` ones in plaintext.
pub struct ChannelFactory {
    tls: ClientTlsFiles,
    config: Option<Arc<Watched<ClientConfig>>>,
}

impl ChannelFactory {
    /// A factory for `tls`; the files are read at the first `https://` address.
    pub fn new(tls: &ClientTlsFiles) -> Self {
        Self {
            tls: tls.clone(),
            config: None,
        }
    }

    /// A channel to `url` that connects on first use; the error says why the
    /// address or the TLS files cannot be used.
    pub fn lazy(
        &mut self,
        url: &str,
        request_timeout: Option<Duration>,
    ) -> Result<Channel, String> {
        self.lazy_as(url, None, request_timeout)
    }

    /// Like `lazy`, verifying an `https://` server's certificate against
    /// `server_name` instead of the address's host: a replica reached by an IP
    /// address that its Service name resolved to presents the Service's
    /// certificate.
    pub fn lazy_as(
        &mut self,
        url: &str,
        server_name: Option<&str>,
        request_timeout: Option<Duration>,
    ) -> Result<Channel, String> {
        let https = url.starts_with("https://");
        // tonic refuses an https:// endpoint without its own TLS settings, and
        // TLS is done here by the connector: the endpoint keeps the authority only.
        let plain = match url.strip_prefix("https://") {
            Some(rest) => format!("http://{rest}"),
            None => url.to_string(),
        };
        let mut ep = Endpoint::from_shared(plain)
            .map_err(|e| e.to_string())?
            .connect_timeout(crate::timing::COORDINATOR_CONNECT_TIMEOUT)
            .http2_keep_alive_interval(crate::timing::COORDINATOR_KEEPALIVE_INTERVAL)
            .keep_alive_timeout(crate::timing::COORDINATOR_KEEPALIVE_TIMEOUT)
            .keep_alive_while_idle(true)
            .tcp_nodelay(true);
        if let Some(t) = request_timeout {
            ep = ep.timeout(t);
        }
        if !https {
            return Ok(ep.connect_lazy());
        }
        let config = match &self.config {
            Some(c) => Arc::clone(c),
            None => {
                let c = self.tls.watch().map_err(|e| e.to_string())?;
                self.config = Some(Arc::clone(&c));
                c
            }
        };
        Ok(ep.connect_with_connector_lazy(HttpsConnector::new(
            config,
            server_name.map(str::to_string),
        )))
    }
}
