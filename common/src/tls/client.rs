//! The client side of gRPC TLS: which CA to trust and which certificate to
//! present (`--tls-ca`, `--tls-cert`, `--tls-key`), and the connector that
//! opens `https://` coordinator addresses with them. The files are read again
//! when they change; connections already open keep their session.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use super::reload::Watched;
use super::{files, provider, TlsError, ALPN_H2};

/// The TLS files of a client or worker.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientTlsFiles {
    /// CA bundle that issued the coordinator's certificate; `None`: the system roots.
    pub ca: Option<PathBuf>,
    /// Client certificate (mTLS), PEM.
    pub cert: Option<PathBuf>,
    /// Its private key, PEM.
    pub key: Option<PathBuf>,
}

impl ClientTlsFiles {
    /// Whether any TLS file was given.
    pub fn is_set(&self) -> bool {
        self.ca.is_some() || self.cert.is_some() || self.key.is_some()
    }

    /// Checks the flags belong together.
    pub fn check(&self) -> Result<(), TlsError> {
        match (&self.cert, &self.key) {
            (Some(_), None) => Err(TlsError::Usage(
                "--tls-cert needs --tls-key (or FERRY_TLS_KEY): the private key of the client certificate".into(),
            )),
            (None, Some(_)) => Err(TlsError::Usage(
                "--tls-key needs --tls-cert (or FERRY_TLS_CERT): the client certificate".into(),
            )),
            _ => Ok(()),
        }
    }

    /// Builds the rustls client configuration from the files as they are now.
    pub fn build(&self) -> Result<ClientConfig, TlsError> {
        self.check()?;
        let roots = match &self.ca {
            Some(path) => files::roots("--tls-ca", path)?,
            None => files::system_roots()?,
        };
        let builder = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|source| TlsError::Config {
                what: "client TLS",
                source,
            })?
            .with_root_certificates(roots);
        let mut config = match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => builder
                .with_client_auth_cert(
                    files::certificates("--tls-cert", cert)?,
                    files::private_key("--tls-key", key)?,
                )
                .map_err(|source| TlsError::Config {
                    what: "--tls-cert/--tls-key do not make a client identity",
                    source,
                })?,
            _ => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![ALPN_H2.to_vec()];
        Ok(config)
    }

    /// The configuration, built again whenever one of the files changes.
    pub fn watch(&self) -> Result<Arc<Watched<ClientConfig>>, TlsError> {
        let paths = [&self.ca, &self.cert, &self.key]
            .into_iter()
            .flatten()
            .cloned()
            .collect();
        let me = self.clone();
        Watched::start("client TLS files", paths, move || me.build())
    }
}

/// Opens TCP connections and runs the TLS handshake with the configuration in
/// use at that moment; tonic then speaks HTTP/2 over them.
#[derive(Clone)]
pub struct HttpsConnector {
    config: Arc<Watched<ClientConfig>>,
    /// The name the server certificate must carry, when not the address's host
    /// (a replica reached by the IP address its Service name resolved to).
    server_name: Option<String>,
}

impl HttpsConnector {
    /// A connector using `config`, verifying the server certificate against
    /// `server_name`, or the address's host when none is given.
    pub fn new(config: Arc<Watched<ClientConfig>>, server_name: Option<String>) -> Self {
        Self {
            config,
            server_name,
        }
    }
}

type Connecting =
    Pin<Box<dyn Future<Output = Result<TokioIo<TlsStream<TcpStream>>, std::io::Error>> + Send>>;

impl tower::Service<http::Uri> for HttpsConnector {
    type Response = TokioIo<TlsStream<TcpStream>>;
    type Error = std::io::Error;
    type Future = Connecting;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let config = self.config.get();
        let server_name = self.server_name.clone();
        Box::pin(async move {
            let host = uri
                .host()
                .map(|h| h.trim_start_matches('[').trim_end_matches(']').to_string())
                .ok_or_else(|| invalid(format!("address {uri} names no host")))?;
            let port = uri.port_u16().unwrap_or(443);
            let verified = server_name.unwrap_or_else(|| host.clone());
            let name = ServerName::try_from(verified.clone())
                .map_err(|e| invalid(format!("'{verified}' is not a host name: {e}")))?;
            let tcp = TcpStream::connect((host.as_str(), port)).await?;
            tcp.set_nodelay(true)?;
            let tls = TlsConnector::from(config)
                .connect(name, tcp)
                .await
                .map_err(|e| {
                    std::io::Error::new(
                        e.kind(),
                        format!(
                            "TLS handshake with {host}:{port} failed: {e} (check --tls-ca, and --tls-cert/--tls-key when the coordinator requires a client certificate)"
                        ),
                    )
                })?;
            Ok(TokioIo::new(tls))
        })
    }
}

fn invalid(message: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidInput, message)
}
