//! Who a client verb runs as: the flags and environment a `ferry` CLI call
//! presents to a coordinator (TLS trust, a client certificate, a bearer
//! token). A cluster's verbs run as its default caller (`ClusterBuilder::caller`);
//! `Cluster::cli_as` runs one call as another.

use std::path::Path;

use crate::security::Issued;

/// The credentials of a CLI call: extra arguments after the verb's own and
/// extra environment on top of the cluster's. `Caller::new()` presents
/// nothing (plaintext, no token).
#[derive(Debug, Clone, Default)]
pub struct Caller {
    args: Vec<String>,
    env: Vec<(String, String)>,
}

impl Caller {
    /// A caller presenting nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// `--tls-ca CA`: the CA (or bundle) trusted for the coordinator's certificate.
    pub fn tls_ca(self, ca: &Path) -> Self {
        self.arg("--tls-ca").arg(ca.display().to_string())
    }

    /// `--tls-cert` and `--tls-key` of `cert`: a client certificate (mTLS).
    pub fn client_cert(self, cert: &Issued) -> Self {
        self.arg("--tls-cert")
            .arg(cert.cert.display().to_string())
            .arg("--tls-key")
            .arg(cert.key.display().to_string())
    }

    /// `FERRY_TOKEN=TOKEN`: a bearer token for the job API.
    pub fn token(self, token: &str) -> Self {
        self.env("FERRY_TOKEN", token)
    }

    /// An extra argument, after the verb's own.
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// An extra environment variable for the call.
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// The extra arguments.
    pub fn extra_args(&self) -> &[String] {
        &self.args
    }

    /// The extra environment.
    pub fn extra_env(&self) -> &[(String, String)] {
        &self.env
    }
}
