//! The coordinator's security: TLS on its port (certificates re-read when
//! they change), client certificates for workers (`--worker-ca`), bearer
//! tokens and client certificates with roles for the job API, worker
//! sessions, and the audit log.

pub mod audit;
pub mod auth;
pub mod listener;
pub mod roles;
pub mod server_tls;
pub mod session;
pub mod tokens;

use std::path::PathBuf;
use std::sync::Arc;

use ferry_common::tls::reload::Watched;
use ferry_common::tls::TlsError;
use rustls::server::danger::ClientCertVerifier;

use server_tls::{ServerTlsFiles, TlsState};
use tokens::{Tokens, TokensError};

/// Environment variable naming the tokens file.
pub const TOKENS_FILE_ENV: &str = "FERRY_AUTH_TOKENS_FILE";

/// Security settings of a coordinator, as given by flags and environment.
#[derive(Debug, Clone)]
pub struct SecurityOptions {
    /// TLS and CA files.
    pub tls: ServerTlsFiles,
    /// `FERRY_AUTH_TOKENS_FILE`.
    pub tokens_file: Option<PathBuf>,
    /// Serve gRPC reflection (on by default; `--no-reflection` turns it off).
    pub reflection: bool,
}

impl Default for SecurityOptions {
    fn default() -> Self {
        Self {
            tls: ServerTlsFiles::default(),
            tokens_file: None,
            reflection: true,
        }
    }
}

/// Security settings that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    /// A TLS or CA file.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The tokens file.
    #[error(transparent)]
    Tokens(#[from] TokensError),
    /// A combination of settings that cannot work.
    #[error("{0}")]
    Usage(String),
}

/// The coordinator's security in force: files loaded and watched.
pub struct Security {
    tls: Option<Arc<Watched<TlsState>>>,
    tokens: Option<Arc<Watched<Tokens>>>,
    client_ca: bool,
    reflection: bool,
}

impl Security {
    /// No TLS, no authentication: what `ferry local` and tests without
    /// certificates use.
    pub fn none() -> Arc<Self> {
        Arc::new(Self {
            tls: None,
            tokens: None,
            client_ca: false,
            reflection: true,
        })
    }

    /// Loads the files (an error stops start-up) and watches them for changes.
    pub fn load(opts: &SecurityOptions) -> Result<Arc<Self>, SecurityError> {
        opts.tls.check()?;
        if opts.tls.client_ca.is_some() && opts.tokens_file.is_none() {
            return Err(SecurityError::Usage(format!(
                "--client-ca needs {TOKENS_FILE_ENV}: a client certificate's role is found by its common name in the tokens file's name column"
            )));
        }
        let tls = if opts.tls.enabled() {
            Some(opts.tls.watch()?)
        } else {
            None
        };
        let tokens = match &opts.tokens_file {
            Some(path) => {
                let p = path.clone();
                Some(Watched::start(
                    "tokens file",
                    vec![path.clone()],
                    move || Tokens::load(&p),
                )?)
            }
            None => None,
        };
        Ok(Arc::new(Self {
            tls,
            tokens,
            client_ca: opts.tls.client_ca.is_some(),
            reflection: opts.reflection,
        }))
    }

    /// Whether JobService requires credentials.
    pub fn auth_on(&self) -> bool {
        self.tokens.is_some() || self.client_ca
    }

    /// The TLS state, when TLS is on.
    pub fn tls(&self) -> Option<&Arc<Watched<TlsState>>> {
        self.tls.as_ref()
    }

    /// Whether gRPC reflection is served.
    pub fn reflection(&self) -> bool {
        self.reflection
    }

    /// Whether WorkerService requires a client certificate.
    pub fn worker_ca_on(&self) -> bool {
        self.worker_verifier().is_some()
    }

    fn worker_verifier(&self) -> Option<Arc<dyn ClientCertVerifier>> {
        self.tls.as_ref().and_then(|t| t.get().worker_ca.clone())
    }

    fn client_verifier(&self) -> Option<Arc<dyn ClientCertVerifier>> {
        self.tls.as_ref().and_then(|t| t.get().client_ca.clone())
    }

    fn tokens(&self) -> Option<Arc<Tokens>> {
        self.tokens.as_ref().map(|t| t.get())
    }

    /// A line for the start-up log: what is on.
    pub fn describe(&self) -> String {
        let tls = if self.tls.is_some() { "on" } else { "off" };
        let workers = if self.worker_ca_on() {
            "client certificate from --worker-ca"
        } else {
            "no certificate required"
        };
        let api = match (self.tokens(), self.client_ca) {
            (None, false) => "open (no authentication)".to_string(),
            (t, ca) => format!(
                "{} tokens{}",
                t.map(|t| t.len()).unwrap_or(0),
                if ca {
                    " + client certificates from --client-ca"
                } else {
                    ""
                }
            ),
        };
        format!("tls {tls}; workers: {workers}; job API: {api}")
    }
}
