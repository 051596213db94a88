//! Security flags shared by the commands: what a client or worker presents
//! to the coordinator (TLS files, token), and what a coordinator requires
//! (its certificate, the CAs of workers and clients, the tokens file).

use std::net::SocketAddr;
use std::path::PathBuf;

use ferry_common::credentials::{BearerToken, ClientSecurity, CredentialError};
use ferry_common::tls::client::ClientTlsFiles;
use ferry_coordinator::security::server_tls::ServerTlsFiles;
use ferry_coordinator::security::SecurityOptions;

/// TLS flags of a client or worker (`https://` coordinator addresses).
#[derive(clap::Args, Clone, Debug, Default)]
pub struct ClientTlsArgs {
    /// CA bundle (PEM) that issued the coordinator's certificate; default: the system roots.
    #[arg(long, env = "FERRY_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    /// Client certificate (PEM) for coordinators that require one (mTLS).
    #[arg(long, env = "FERRY_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// Private key (PEM) of --tls-cert.
    #[arg(long, env = "FERRY_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
}

impl ClientTlsArgs {
    /// The files as the TLS layer takes them.
    pub fn files(&self) -> ClientTlsFiles {
        ClientTlsFiles {
            ca: self.tls_ca.clone(),
            cert: self.tls_cert.clone(),
            key: self.tls_key.clone(),
        }
    }
}

/// Credentials of the client verbs: TLS files and a bearer token.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct ClientSecurityArgs {
    #[command(flatten)]
    tls: ClientTlsArgs,
    /// File holding the bearer token for the job API (else env FERRY_TOKEN, the token itself).
    #[arg(long, env = "FERRY_TOKEN_FILE")]
    token_file: Option<PathBuf>,
}

impl ClientSecurityArgs {
    /// Reads the token and checks the TLS flags belong together.
    pub fn load(&self) -> Result<ClientSecurity, CredentialError> {
        let tls = self.tls.files();
        tls.check()?;
        Ok(ClientSecurity {
            tls,
            token: BearerToken::from_file_or_env(self.token_file.as_deref())?,
        })
    }
}

/// What a coordinator requires of its callers.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct ServerSecurityArgs {
    /// Server certificate chain (PEM); with --tls-key, every gRPC call goes over TLS.
    #[arg(long, env = "FERRY_TLS_CERT")]
    tls_cert: Option<PathBuf>,
    /// Private key (PEM) of --tls-cert.
    #[arg(long, env = "FERRY_TLS_KEY")]
    tls_key: Option<PathBuf>,
    /// CA (PEM) whose client certificates workers must present on WorkerService.
    #[arg(long, env = "FERRY_WORKER_CA")]
    worker_ca: Option<PathBuf>,
    /// CA (PEM) whose client certificates may call the job API; role by common name in the tokens file.
    #[arg(long, env = "FERRY_CLIENT_CA")]
    client_ca: Option<PathBuf>,
    /// Tokens file: `<sha256 hex of token> <name> <viewer|operator|admin>` per line.
    #[arg(long, env = "FERRY_AUTH_TOKENS_FILE")]
    auth_tokens_file: Option<PathBuf>,
    /// Plaintext address serving gRPC health only, for probes that cannot speak TLS.
    #[arg(long, env = "FERRY_HEALTH_LISTEN")]
    pub health_listen: Option<SocketAddr>,
    /// Do not serve gRPC reflection.
    #[arg(long, env = "FERRY_NO_REFLECTION")]
    no_reflection: bool,
}

impl ServerSecurityArgs {
    /// The options the coordinator's security layer takes.
    pub fn options(&self) -> SecurityOptions {
        SecurityOptions {
            tls: ServerTlsFiles {
                cert: self.tls_cert.clone(),
                key: self.tls_key.clone(),
                worker_ca: self.worker_ca.clone(),
                client_ca: self.client_ca.clone(),
            },
            tokens_file: self.auth_tokens_file.clone(),
            reflection: !self.no_reflection,
        }
    }
}
