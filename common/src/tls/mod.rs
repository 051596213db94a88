//! TLS for Ferry's gRPC ports: PEM files read (and read again when they
//! change) into rustls configurations, and the connector clients use for
//! `https://` coordinator addresses. rustls with the `ring` provider only.

pub mod client;
pub mod files;
pub mod reload;

use std::path::PathBuf;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;

/// A certificate, key or CA file that cannot be used; names the file and the fix.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The file cannot be read.
    #[error("cannot read {what} {path}: {source}")]
    Read {
        /// What the file was for (`--tls-cert`, …).
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file holds no usable PEM block of the kind needed.
    #[error("{what} {path} holds no {expected}: {reason}")]
    Pem {
        /// What the file was for.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The PEM block looked for.
        expected: &'static str,
        /// Why nothing usable was found.
        reason: String,
    },
    /// rustls refused the combination (a key that does not match its certificate, …).
    #[error("{what}: {source}")]
    Config {
        /// What was being built.
        what: &'static str,
        /// rustls' reason.
        source: rustls::Error,
    },
    /// A flag combination that cannot work.
    #[error("{0}")]
    Usage(String),
}

/// The crypto provider of every TLS configuration Ferry builds (ring).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The ALPN protocol id of HTTP/2, which gRPC runs on.
pub const ALPN_H2: &[u8] = b"h2";
