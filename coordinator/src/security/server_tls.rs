//! The coordinator's TLS files (`--tls-cert`, `--tls-key`, `--worker-ca`,
//! `--client-ca`) as one rustls server configuration plus the two CA
//! verifiers, built again whenever one of the files changes.
//!
//! The handshake asks for a client certificate (when a CA is configured) but
//! does not require one, and accepts any chain whose key the client proves it
//! holds: one port serves workers (certificates from the worker CA), API
//! clients (tokens, or certificates from the client CA) and probes. Which CA
//! must have issued the certificate depends on the service called, so the
//! auth layer checks the chain per request against the right CA; refusing
//! there, instead of in the handshake, gives the caller a gRPC status that
//! says what is wrong instead of a bare TLS alert.

use std::path::PathBuf;
use std::sync::Arc;

use ferry_common::tls::reload::Watched;
use ferry_common::tls::{files, provider, TlsError, ALPN_H2};
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{DigitallySignedStruct, DistinguishedName, ServerConfig, SignatureScheme};

/// The TLS files of a coordinator.
#[derive(Debug, Clone, Default)]
pub struct ServerTlsFiles {
    /// Server certificate chain (PEM); with `key`, turns TLS on.
    pub cert: Option<PathBuf>,
    /// Its private key (PEM).
    pub key: Option<PathBuf>,
    /// CA whose client certificates may call WorkerService (required then).
    pub worker_ca: Option<PathBuf>,
    /// CA whose client certificates may call JobService (role by common name).
    pub client_ca: Option<PathBuf>,
}

/// What the files hold at one moment.
pub struct TlsState {
    /// The configuration new connections handshake with.
    pub server: Arc<ServerConfig>,
    /// Checks a chain against `--worker-ca`.
    pub worker_ca: Option<Arc<dyn ClientCertVerifier>>,
    /// Checks a chain against `--client-ca`.
    pub client_ca: Option<Arc<dyn ClientCertVerifier>>,
}

impl ServerTlsFiles {
    /// Whether TLS is on (certificate and key given).
    pub fn enabled(&self) -> bool {
        self.cert.is_some() && self.key.is_some()
    }

    /// Checks the flags belong together.
    pub fn check(&self) -> Result<(), TlsError> {
        match (&self.cert, &self.key) {
            (Some(_), None) => {
                return Err(TlsError::Usage(
                    "--tls-cert needs --tls-key (or FERRY_TLS_KEY)".into(),
                ))
            }
            (None, Some(_)) => {
                return Err(TlsError::Usage(
                    "--tls-key needs --tls-cert (or FERRY_TLS_CERT)".into(),
                ))
            }
            _ => {}
        }
        if !self.enabled() && (self.worker_ca.is_some() || self.client_ca.is_some()) {
            return Err(TlsError::Usage(
                "--worker-ca and --client-ca need TLS: pass --tls-cert and --tls-key too".into(),
            ));
        }
        Ok(())
    }

    /// Builds the state from the files as they are now.
    pub fn build(&self) -> Result<TlsState, TlsError> {
        self.check()?;
        let (Some(cert), Some(key)) = (&self.cert, &self.key) else {
            return Err(TlsError::Usage("TLS needs --tls-cert and --tls-key".into()));
        };
        let worker_ca = self
            .worker_ca
            .as_ref()
            .map(|p| files::roots("--worker-ca", p))
            .transpose()?;
        let client_ca = self
            .client_ca
            .as_ref()
            .map(|p| files::roots("--client-ca", p))
            .transpose()?;
        let mut hints = Vec::new();
        for roots in worker_ca.iter().chain(client_ca.iter()) {
            hints.extend(roots.subjects());
        }
        let builder = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|source| TlsError::Config {
                what: "server TLS",
                source,
            })?;
        let builder = if worker_ca.is_some() || client_ca.is_some() {
            builder.with_client_cert_verifier(Arc::new(AnyClientCert::new(hints)))
        } else {
            builder.with_no_client_auth()
        };
        let mut server = builder
            .with_single_cert(
                files::certificates("--tls-cert", cert)?,
                files::private_key("--tls-key", key)?,
            )
            .map_err(|source| TlsError::Config {
                what: "--tls-cert/--tls-key do not make a server identity",
                source,
            })?;
        server.alpn_protocols = vec![ALPN_H2.to_vec()];
        let verifier = |roots: rustls::RootCertStore, what: &'static str| {
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                .build()
                .map_err(|e| TlsError::Usage(format!("{what}: {e}")))
        };
        Ok(TlsState {
            server: Arc::new(server),
            worker_ca: worker_ca.map(|r| verifier(r, "--worker-ca")).transpose()?,
            client_ca: client_ca.map(|r| verifier(r, "--client-ca")).transpose()?,
        })
    }

    /// The state, built again whenever one of the files changes.
    pub fn watch(&self) -> Result<Arc<Watched<TlsState>>, TlsError> {
        let paths = [&self.cert, &self.key, &self.worker_ca, &self.client_ca]
            .into_iter()
            .flatten()
            .cloned()
            .collect();
        let me = self.clone();
        Watched::start("coordinator TLS files", paths, move || me.build())
    }
}

/// Asks for a client certificate without requiring one, and accepts any
/// chain whose key the peer proves it holds; the auth layer checks the chain
/// against the CA the called service needs.
#[derive(Debug)]
struct AnyClientCert {
    hints: Vec<DistinguishedName>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl AnyClientCert {
    fn new(hints: Vec<DistinguishedName>) -> Self {
        Self {
            hints,
            algorithms: provider().signature_verification_algorithms,
        }
    }
}

impl ClientCertVerifier for AnyClientCert {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.hints
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
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
