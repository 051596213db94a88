//! How the coordinator authenticates to etcd: TLS with a CA and, for etcd's
//! `--client-cert-auth`, a client certificate (`--etcd-ca`, `--etcd-cert`,
//! `--etcd-key`), and etcd's own users (`--etcd-user` with the password in
//! `FERRY_ETCD_PASSWORD_FILE`, never on the command line or in the environment).

use std::path::PathBuf;

use etcd_client::{Certificate, ConnectOptions, Identity, TlsOptions};
use ferry_common::tls::files;
use ferry_common::tls::TlsError;

/// etcd credentials of a coordinator.
#[derive(Debug, Clone, Default)]
pub struct EtcdSecurity {
    /// CA (PEM) that issued etcd's server certificate; turns TLS on.
    pub ca: Option<PathBuf>,
    /// Client certificate (PEM) for etcd's `--client-cert-auth`.
    pub cert: Option<PathBuf>,
    /// Its private key (PEM).
    pub key: Option<PathBuf>,
    /// etcd user (etcd's `auth enable`).
    pub user: Option<String>,
    /// File holding that user's password.
    pub password_file: Option<PathBuf>,
}

/// etcd credentials that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum EtcdSecurityError {
    /// A file.
    #[error(transparent)]
    Files(#[from] TlsError),
    /// A combination of flags that cannot work.
    #[error("{0}")]
    Usage(String),
}

impl EtcdSecurity {
    /// Whether TLS is on.
    pub fn tls(&self) -> bool {
        self.ca.is_some()
    }

    /// Adds TLS and user credentials to `opts`; `endpoints` are checked
    /// against them (an `https://` endpoint needs `--etcd-ca`).
    pub fn apply(
        &self,
        endpoints: &[String],
        mut opts: ConnectOptions,
    ) -> Result<ConnectOptions, EtcdSecurityError> {
        let usage = |m: &str| Err(EtcdSecurityError::Usage(m.into()));
        if self.cert.is_some() != self.key.is_some() {
            return usage("--etcd-cert and --etcd-key go together");
        }
        if self.cert.is_some() && self.ca.is_none() {
            return usage("--etcd-cert needs --etcd-ca (the CA of etcd's server certificate)");
        }
        if self.ca.is_none() && endpoints.iter().any(|e| e.starts_with("https://")) {
            return usage(
                "https:// etcd endpoints need --etcd-ca (the CA of etcd's server certificate)",
            );
        }
        if self.ca.is_some() && endpoints.iter().any(|e| e.starts_with("http://")) {
            return usage("--etcd-ca is set but an etcd endpoint is http://: write https://");
        }
        if let Some(ca) = &self.ca {
            let mut tls = TlsOptions::new()
                .ca_certificate(Certificate::from_pem(files::read("--etcd-ca", ca)?));
            if let (Some(cert), Some(key)) = (&self.cert, &self.key) {
                tls = tls.identity(Identity::from_pem(
                    files::read("--etcd-cert", cert)?,
                    files::read("--etcd-key", key)?,
                ));
            }
            opts = opts.with_tls(tls);
        }
        match (&self.user, &self.password_file) {
            (Some(user), Some(file)) => {
                let password = files::read("FERRY_ETCD_PASSWORD_FILE", file)?;
                let password = String::from_utf8_lossy(&password).trim().to_string();
                opts = opts
                    .with_user(user.clone(), password)
                    .with_auto_token_refresh(true);
            }
            (Some(_), None) => {
                return usage(
                    "--etcd-user needs FERRY_ETCD_PASSWORD_FILE (a file holding the password)",
                )
            }
            (None, Some(_)) => return usage("FERRY_ETCD_PASSWORD_FILE needs --etcd-user"),
            (None, None) => {}
        }
        Ok(opts)
    }
}
