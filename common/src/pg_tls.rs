//! PostgreSQL over TLS with libpq's meaning of the connection parameters
//! `sslmode`, `sslrootcert`, `sslcert` and `sslkey` (tokio-postgres itself
//! knows `sslmode` only up to `require` and none of the others, so they are
//! taken out of the URL here and mapped onto rustls):
//!
//! | sslmode | encrypted | server certificate checked |
//! |---|---|---|
//! | `disable` | never | — |
//! | `prefer` (default) | when the server offers TLS | no |
//! | `require` | always | no; with `sslrootcert` given, as `verify-ca` (libpq does the same) |
//! | `verify-ca` | always | chain to `sslrootcert` |
//! | `verify-full` | always | chain to `sslrootcert`, and the host name |
//!
//! `sslrootcert` defaults to `~/.postgresql/root.crt`, as in libpq;
//! `sslrootcert=system` uses the system's roots. `sslcert`/`sslkey` present a
//! client certificate. PG* environment variables are not read.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};
use tokio_postgres::{Client, Config, NoTls, Socket};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::tls::{files, provider, TlsError};

/// libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// Never encrypt.
    Disable,
    /// Encrypt when the server offers it; do not check its certificate.
    Prefer,
    /// Always encrypt; do not check the certificate (unless `sslrootcert` is given).
    Require,
    /// Always encrypt; the certificate must chain to `sslrootcert`.
    VerifyCa,
    /// Like `VerifyCa`, and the certificate must name the host.
    VerifyFull,
}

impl SslMode {
    fn parse(value: &str) -> Result<Self, PgTlsError> {
        Ok(match value {
            "disable" => SslMode::Disable,
            // libpq's allow tries plaintext first; encrypting when offered is no weaker
            "allow" | "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            other => return Err(PgTlsError::Mode(other.to_string())),
        })
    }

    /// The parameter's value, for messages.
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

/// TLS parameters of a connection URL that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PgTlsError {
    /// An unknown `sslmode`.
    #[error("sslmode={0} is not one of disable, prefer, require, verify-ca, verify-full")]
    Mode(String),
    /// `sslcert` without `sslkey` or the reverse.
    #[error("sslcert and sslkey go together: give both or neither")]
    ClientPair,
    /// verify-* without a root certificate.
    #[error("sslmode={mode} needs sslrootcert=FILE (the CA that issued the server's certificate), ~/.postgresql/root.crt, or sslrootcert=system")]
    NoRoot {
        /// The mode asked for.
        mode: &'static str,
    },
    /// A certificate or key file.
    #[error(transparent)]
    Files(#[from] TlsError),
}

/// Where the trust roots come from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Roots {
    File(PathBuf),
    System,
}

/// The TLS part of a connection URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgTls {
    /// `sslmode`.
    pub mode: SslMode,
    root: Option<Roots>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
}

/// Takes libpq's TLS parameters out of a connection string (URL or
/// `key=value` form) and returns the rest, for tokio-postgres, with them.
pub fn split_url(url: &str) -> Result<(String, PgTls), PgTlsError> {
    let mut mode = None;
    let mut root = None;
    let mut cert = None;
    let mut key = None;
    let mut take = |k: &str, v: &str| -> Result<bool, PgTlsError> {
        match k {
            "sslmode" => mode = Some(SslMode::parse(v)?),
            "sslrootcert" => {
                root = Some(if v == "system" {
                    Roots::System
                } else {
                    Roots::File(PathBuf::from(v))
                })
            }
            "sslcert" => cert = Some(PathBuf::from(v)),
            "sslkey" => key = Some(PathBuf::from(v)),
            _ => return Ok(false),
        }
        Ok(true)
    };
    let rest = if url.contains("://") {
        match url.split_once('?') {
            Some((base, query)) => {
                let mut kept = Vec::new();
                for pair in query.split('&').filter(|p| !p.is_empty()) {
                    let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                    if !take(k, &percent_decode(v))? {
                        kept.push(pair);
                    }
                }
                if kept.is_empty() {
                    base.to_string()
                } else {
                    format!("{base}?{}", kept.join("&"))
                }
            }
            None => url.to_string(),
        }
    } else {
        let mut kept = Vec::new();
        for part in crate::connections::kv_tokens(url) {
            let (k, v) = part.split_once('=').unwrap_or((part, ""));
            if !take(k, v.trim_matches('\''))? {
                kept.push(part);
            }
        }
        kept.join(" ")
    };
    let mode = mode.unwrap_or(SslMode::Prefer);
    if cert.is_some() != key.is_some() {
        return Err(PgTlsError::ClientPair);
    }
    Ok((
        rest,
        PgTls {
            mode,
            root,
            cert,
            key,
        },
    ))
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
            if let Some(b) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl PgTls {
    /// The trust roots a checking mode uses, or `None` when the certificate is not checked.
    fn roots(&self) -> Result<Option<RootCertStore>, PgTlsError> {
        let checks = match self.mode {
            SslMode::VerifyCa | SslMode::VerifyFull => true,
            SslMode::Require => self.root.is_some(),
            SslMode::Disable | SslMode::Prefer => false,
        };
        if !checks {
            return Ok(None);
        }
        let root = match &self.root {
            Some(r) => r.clone(),
            None => {
                let default = std::env::var_os("HOME")
                    .map(|h| Path::new(&h).join(".postgresql/root.crt"))
                    .filter(|p| p.is_file());
                match default {
                    Some(p) => Roots::File(p),
                    None => {
                        return Err(PgTlsError::NoRoot {
                            mode: self.mode.as_str(),
                        })
                    }
                }
            }
        };
        Ok(Some(match root {
            Roots::File(p) => files::roots("sslrootcert", &p)?,
            Roots::System => files::system_roots()?,
        }))
    }

    /// The rustls configuration of this mode.
    fn client_config(&self) -> Result<ClientConfig, PgTlsError> {
        let algorithms = provider().signature_verification_algorithms;
        let verifier: Arc<dyn ServerCertVerifier> = match self.roots()? {
            None => Arc::new(Unchecked { algorithms }),
            Some(roots) => {
                let webpki = WebPkiServerVerifier::builder_with_provider(
                    Arc::new(roots.clone()),
                    provider(),
                )
                .build()
                .map_err(|e| TlsError::Usage(format!("sslrootcert: {e}")))?;
                if self.mode == SslMode::VerifyFull {
                    webpki
                } else {
                    Arc::new(ChainOnly {
                        roots: Arc::new(roots),
                        webpki,
                        algorithms,
                    })
                }
            }
        };
        let builder = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|source| TlsError::Config {
                what: "PostgreSQL TLS",
                source,
            })?
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        Ok(match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => builder
                .with_client_auth_cert(
                    files::certificates("sslcert", cert)?,
                    files::private_key("sslkey", key)?,
                )
                .map_err(|source| TlsError::Config {
                    what: "sslcert/sslkey do not make a client identity",
                    source,
                })?,
            _ => builder.with_no_client_auth(),
        })
    }
}

/// A connection string parsed for tokio-postgres, with its TLS settings.
pub struct PgTarget {
    /// What tokio-postgres connects with.
    pub config: Config,
    /// The TLS settings.
    pub tls: PgTls,
}

/// Whether a connection is encrypted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encryption {
    /// TLS.
    Tls,
    /// Plaintext (`sslmode=disable`, or `prefer` with a server without TLS).
    None,
}

impl Encryption {
    /// `over TLS` or `unencrypted`, for the plan line.
    pub fn label(self) -> &'static str {
        match self {
            Encryption::Tls => "over TLS",
            Encryption::None => "unencrypted",
        }
    }
}

/// Connects (the caller bounds the time), spawns the connection's driver
/// task, and says whether the session is encrypted; `closed` runs when the
/// connection ends.
pub async fn open(
    target: &PgTarget,
    closed: impl FnOnce() + Send + 'static,
) -> Result<(Client, Encryption), OpenError> {
    let mut config = target.config.clone();
    if target.tls.mode == SslMode::Disable {
        config.ssl_mode(tokio_postgres::config::SslMode::Disable);
        let (client, connection) = config.connect(NoTls).await?;
        tokio::spawn(drive(connection, closed));
        return Ok((client, Encryption::None));
    }
    config.ssl_mode(match target.tls.mode {
        SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
        _ => tokio_postgres::config::SslMode::Require,
    });
    let used = Arc::new(AtomicBool::new(false));
    let make = Tracked {
        inner: MakeRustlsConnect::new(target.tls.client_config()?),
        used: Arc::clone(&used),
    };
    let (client, connection) = config.connect(make).await?;
    tokio::spawn(drive(connection, closed));
    let encryption = if used.load(Ordering::SeqCst) {
        Encryption::Tls
    } else {
        Encryption::None
    };
    Ok((client, encryption))
}

async fn drive<F: std::future::Future<Output = Result<(), tokio_postgres::Error>>>(
    connection: F,
    closed: impl FnOnce(),
) {
    if let Err(e) = connection.await {
        tracing::debug!(error = %e, "database connection closed");
    }
    closed();
}

/// Why `open` failed.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The TLS settings.
    #[error(transparent)]
    Tls(#[from] PgTlsError),
    /// The server or the handshake.
    #[error(transparent)]
    Postgres(#[from] tokio_postgres::Error),
}

/// What the TLS handshake refused, found in an error's sources: the server's
/// certificate for its name (verify-full) or for its issuer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandshakeRefusal {
    /// The certificate does not name the host connected to.
    WrongHost,
    /// The certificate is not trusted (issuer, expiry, …).
    Untrusted,
}

/// The certificate refusal behind a connection error, if that is what it was.
pub fn handshake_refusal(err: &(dyn std::error::Error + 'static)) -> Option<HandshakeRefusal> {
    let mut source = Some(err);
    while let Some(e) = source {
        let rustls_error = e.downcast_ref::<rustls::Error>().or_else(|| {
            e.downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        });
        if let Some(rustls::Error::InvalidCertificate(c)) = rustls_error {
            return Some(match c {
                rustls::CertificateError::NotValidForName
                | rustls::CertificateError::NotValidForNameContext { .. } => {
                    HandshakeRefusal::WrongHost
                }
                _ => HandshakeRefusal::Untrusted,
            });
        }
        source = e.source();
    }
    None
}

/// Counts whether the TLS handshake ran (the server accepted TLS).
#[derive(Clone)]
struct Tracked {
    inner: MakeRustlsConnect,
    used: Arc<AtomicBool>,
}

impl MakeTlsConnect<Socket> for Tracked {
    type Stream = <MakeRustlsConnect as MakeTlsConnect<Socket>>::Stream;
    type TlsConnect = TrackedConnect<<MakeRustlsConnect as MakeTlsConnect<Socket>>::TlsConnect>;
    type Error = <MakeRustlsConnect as MakeTlsConnect<Socket>>::Error;

    fn make_tls_connect(&mut self, domain: &str) -> Result<Self::TlsConnect, Self::Error> {
        Ok(TrackedConnect {
            inner: <MakeRustlsConnect as MakeTlsConnect<Socket>>::make_tls_connect(
                &mut self.inner,
                domain,
            )?,
            used: Arc::clone(&self.used),
        })
    }
}

struct TrackedConnect<T> {
    inner: T,
    used: Arc<AtomicBool>,
}

impl<T: TlsConnect<Socket>> TlsConnect<Socket> for TrackedConnect<T> {
    type Stream = T::Stream;
    type Error = T::Error;
    type Future = T::Future;

    fn connect(self, stream: Socket) -> Self::Future {
        self.used.store(true, Ordering::SeqCst);
        self.inner.connect(stream)
    }
}

/// `prefer` and `require` without roots: encrypt, do not check the certificate
/// (the handshake's signatures are still checked).
#[derive(Debug)]
struct Unchecked {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for Unchecked {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// `verify-ca`: the chain must lead to the roots; the name is not checked.
#[derive(Debug)]
struct ChainOnly {
    roots: Arc<RootCertStore>,
    webpki: Arc<WebPkiServerVerifier>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let cert = rustls::server::ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &cert,
            &self.roots,
            intermediates,
            now,
            self.algorithms.all,
        )?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

impl PgTarget {
    /// Parses a connection string: libpq's TLS parameters out, the rest for tokio-postgres.
    pub fn parse(url: &str) -> Result<Self, ParseError> {
        let (rest, tls) = split_url(url)?;
        let config = rest.parse::<Config>()?;
        Ok(Self { config, tls })
    }
}

/// A connection string that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    /// Its TLS parameters.
    #[error(transparent)]
    Tls(#[from] PgTlsError),
    /// The rest.
    #[error(transparent)]
    Config(#[from] tokio_postgres::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_tls_parameters_out_of_urls() {
        let (rest, tls) = split_url(
            "postgres://u:p@h:5432/db?sslmode=verify-full&application_name=x&sslrootcert=%2Ftmp%2Fca.pem",
        )
        .unwrap();
        assert_eq!(rest, "postgres://u:p@h:5432/db?application_name=x");
        assert_eq!(tls.mode, SslMode::VerifyFull);
        assert_eq!(tls.root, Some(Roots::File("/tmp/ca.pem".into())));
        let (rest, tls) = split_url("postgres://h/db").unwrap();
        assert_eq!(
            (rest.as_str(), tls.mode),
            ("postgres://h/db", SslMode::Prefer)
        );
        let (rest, tls) = split_url("host=h sslmode=require dbname=d").unwrap();
        assert_eq!(
            (rest.as_str(), tls.mode),
            ("host=h dbname=d", SslMode::Require)
        );
        assert!(matches!(
            split_url("postgres://h/db?sslmode=maybe"),
            Err(PgTlsError::Mode(_))
        ));
        assert!(matches!(
            split_url("postgres://h/db?sslcert=/c.pem"),
            Err(PgTlsError::ClientPair)
        ));
        let t = PgTarget::parse("postgres://h/db?sslmode=verify-ca&sslrootcert=system").unwrap();
        assert_eq!(t.tls.root, Some(Roots::System));
    }
}
