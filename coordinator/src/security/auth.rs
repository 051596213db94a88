//! Who may call what, checked once per request before any handler runs: a
//! tower layer over every gRPC service of the coordinator's port.
//!
//! - WorkerService: with `--worker-ca`, a client certificate issued by it.
//! - JobService: with authentication on, a bearer token from the tokens file
//!   or a certificate issued by `--client-ca` whose common name the tokens
//!   file lists; the caller's role must reach the method's (`roles`). The
//!   caller is put in the request's extensions for the handlers.
//! - gRPC health and reflection: open (probes and tools need them).
//! - Anything else: with authentication on, `admin` only.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::ClientCertVerifier;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};

use super::roles::{required_role, Caller, Credential, Role};
use super::Security;
use crate::error::CoordinatorError;

/// Why a request was refused before reaching its handler.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AuthError {
    /// The call came without any credential JobService accepts.
    #[error("JobService needs credentials: a bearer token (--token-file PATH or FERRY_TOKEN) or a client certificate issued by the coordinator's --client-ca")]
    NoCredentials,
    /// The `authorization` header is not `Bearer <token>`.
    #[error("the authorization header must read `Bearer <token>`")]
    MalformedAuthorization,
    /// The token's hash is not in the tokens file.
    #[error("the bearer token is not in the coordinator's tokens file (FERRY_AUTH_TOKENS_FILE)")]
    UnknownToken,
    /// A certificate chain a service needs was absent or not issued by its CA.
    #[error("{service} needs a client certificate issued by {ca}: {problem}")]
    Certificate {
        /// The service called.
        service: &'static str,
        /// The flag naming the CA.
        ca: &'static str,
        /// What was wrong, with the certificate's subject and issuer.
        problem: String,
    },
    /// The caller is known but its role is too low (or it has none).
    #[error("{who} ({}) may not call {method}: it needs role {needs}", has.map(|r| format!("role {r}")).unwrap_or_else(|| "no role in the tokens file".into()))]
    Denied {
        /// The caller's name.
        who: String,
        /// Its role, `None` for a certificate whose name the tokens file lacks.
        has: Option<Role>,
        /// The method called.
        method: String,
        /// The role needed.
        needs: Role,
    },
    /// A plaintext call reached a port that requires TLS.
    #[error("this coordinator requires TLS: use an https:// coordinator address (with --tls-ca FILE unless its certificate is from a system CA)")]
    TlsRequired,
    /// A worker call's session did not verify.
    #[error(transparent)]
    Session(#[from] super::session::SessionError),
}

/// The auth layer of the coordinator's gRPC server.
#[derive(Clone)]
pub struct AuthLayer {
    security: Arc<Security>,
}

impl AuthLayer {
    /// A layer enforcing `security`.
    pub fn new(security: Arc<Security>) -> Self {
        Self { security }
    }
}

impl<S> tower::Layer<S> for AuthLayer {
    type Service = Auth<S>;

    fn layer(&self, inner: S) -> Auth<S> {
        Auth {
            inner,
            security: Arc::clone(&self.security),
        }
    }
}

/// The auth layer around one service.
#[derive(Clone)]
pub struct Auth<S> {
    inner: S,
    security: Arc<Security>,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl<S, B> tower::Service<http::Request<B>> for Auth<S>
where
    S: tower::Service<http::Request<B>> + Send,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        match self.security.admit(&mut req) {
            Ok(()) => {
                let fut = self.inner.call(req);
                Box::pin(async move { fut.await.map_err(Into::into) })
            }
            Err(e) => {
                tracing::warn!(call = %req.uri().path(), error = %e, "call refused");
                // tonic turns a Status error into the call's response
                let status = tonic::Status::from(CoordinatorError::from(e));
                Box::pin(async move { Err(Box::new(status) as BoxError) })
            }
        }
    }
}

const JOB_SERVICE: &str = "ferry.v1.JobService";
const WORKER_SERVICE: &str = "ferry.v1.WorkerService";

impl Security {
    /// Admits a request or says why not; puts the JobService caller in its extensions.
    fn admit<B>(&self, req: &mut http::Request<B>) -> Result<(), AuthError> {
        let path = req.uri().path().trim_start_matches('/');
        let (service, method) = path.split_once('/').unwrap_or((path, ""));
        let method = method.to_string();
        if service == WORKER_SERVICE {
            if let Some(ca) = self.worker_verifier() {
                let certs = peer_certs(req);
                check_chain(
                    &ca,
                    certs.as_deref().map(Vec::as_slice),
                    WORKER_SERVICE,
                    "the worker CA (--worker-ca)",
                )?;
            }
            return Ok(());
        }
        if service.starts_with("grpc.health.") || service.starts_with("grpc.reflection.") {
            return Ok(());
        }
        let caller = if self.auth_on() {
            self.authenticate(req, &method)?
        } else {
            Caller::anonymous()
        };
        let needs = if service == JOB_SERVICE {
            required_role(&method)
        } else {
            Role::Admin
        };
        if caller.role < needs {
            return Err(AuthError::Denied {
                who: caller.display_name().to_string(),
                has: Some(caller.role),
                method,
                needs,
            });
        }
        req.extensions_mut().insert(caller);
        Ok(())
    }

    /// The caller a JobService request authenticates as: its token when it
    /// sends one, else its client certificate.
    fn authenticate<B>(&self, req: &http::Request<B>, method: &str) -> Result<Caller, AuthError> {
        let tokens = self.tokens();
        if let Some(header) = req.headers().get(http::header::AUTHORIZATION) {
            let text = header
                .to_str()
                .map_err(|_| AuthError::MalformedAuthorization)?;
            let (scheme, token) = text
                .trim()
                .split_once(' ')
                .ok_or(AuthError::MalformedAuthorization)?;
            if !scheme.eq_ignore_ascii_case("bearer") {
                return Err(AuthError::MalformedAuthorization);
            }
            let entry = tokens
                .as_ref()
                .and_then(|t| t.by_token(token).cloned())
                .ok_or(AuthError::UnknownToken)?;
            return Ok(Caller {
                name: entry.name,
                role: entry.role,
                credential: Credential::Token,
            });
        }
        let Some(ca) = self.client_verifier() else {
            return Err(AuthError::NoCredentials);
        };
        let certs = peer_certs(req).ok_or(AuthError::NoCredentials)?;
        check_chain(
            &ca,
            Some(certs.as_slice()),
            JOB_SERVICE,
            "the client CA (--client-ca)",
        )?;
        let name = certs
            .first()
            .and_then(ferry_common::tls::files::common_name)
            .unwrap_or_default();
        match tokens.as_ref().and_then(|t| t.role_of(&name)) {
            Some(role) => Ok(Caller {
                name,
                role,
                credential: Credential::Certificate,
            }),
            None => Err(AuthError::Denied {
                who: format!("client certificate CN={name}"),
                has: None,
                method: method.to_string(),
                needs: required_role(method),
            }),
        }
    }
}

/// The client certificate chain of the request's TLS connection, if any.
fn peer_certs<B>(req: &http::Request<B>) -> Option<Arc<Vec<CertificateDer<'static>>>> {
    req.extensions()
        .get::<TlsConnectInfo<TcpConnectInfo>>()
        .and_then(|i| i.peer_certs())
        .filter(|c| !c.is_empty())
}

/// Checks a client chain against a CA, explaining a refusal.
fn check_chain(
    ca: &Arc<dyn ClientCertVerifier>,
    certs: Option<&[CertificateDer<'static>]>,
    service: &'static str,
    ca_name: &'static str,
) -> Result<(), AuthError> {
    let refuse = |problem: String| AuthError::Certificate {
        service,
        ca: ca_name,
        problem,
    };
    let Some((leaf, intermediates)) = certs.and_then(|c| c.split_first()) else {
        return Err(refuse(
            "the call came without one (connect over https:// with --tls-cert and --tls-key)"
                .into(),
        ));
    };
    ca.verify_client_cert(leaf, intermediates, UnixTime::now())
        .map(|_| ())
        .map_err(|e| {
            refuse(format!(
                "the certificate {} issued by {} is refused: {e}",
                ferry_common::tls::files::subject(leaf),
                ferry_common::tls::files::issuer(leaf)
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::security::tokens::token_hash_hex;
    use crate::security::SecurityOptions;

    fn security() -> Arc<Security> {
        let path = std::env::temp_dir().join(format!("ferry-auth-test-{}", std::process::id()));
        std::fs::write(
            &path,
            format!(
                "{} vera viewer\n{} otto operator\n",
                token_hash_hex("v"),
                token_hash_hex("o")
            ),
        )
        .unwrap();
        let s = Security::load(&SecurityOptions {
            tokens_file: Some(path.clone()),
            ..Default::default()
        })
        .unwrap();
        std::fs::remove_file(path).unwrap();
        s
    }

    fn call(path: &str, token: Option<&str>) -> http::Request<()> {
        let mut b = http::Request::builder().uri(path);
        if let Some(t) = token {
            b = b.header("authorization", format!("Bearer {t}"));
        }
        b.body(()).unwrap()
    }

    #[test]
    fn tokens_and_roles_decide() {
        let s = security();
        let submit = "/ferry.v1.JobService/SubmitJob";
        assert!(matches!(
            s.admit(&mut call(submit, None)),
            Err(AuthError::NoCredentials)
        ));
        assert!(matches!(
            s.admit(&mut call(submit, Some("x"))),
            Err(AuthError::UnknownToken)
        ));
        let denied = s.admit(&mut call(submit, Some("v"))).unwrap_err();
        assert!(
            matches!(
                &denied,
                AuthError::Denied {
                    needs: Role::Operator,
                    ..
                }
            ),
            "{denied}"
        );
        assert!(
            denied.to_string().contains("needs role operator"),
            "{denied}"
        );
        let mut ok = call(submit, Some("o"));
        s.admit(&mut ok).unwrap();
        assert_eq!(
            ok.extensions().get::<Caller>().map(|c| c.name.as_str()),
            Some("otto")
        );
        s.admit(&mut call("/ferry.v1.JobService/ListJobs", Some("v")))
            .unwrap();
        s.admit(&mut call("/grpc.health.v1.Health/Check", None))
            .unwrap();
        assert!(matches!(
            s.admit(&mut call("/other.Service/Do", Some("o"))),
            Err(AuthError::Denied {
                needs: Role::Admin,
                ..
            })
        ));
        // without a worker CA, workers need no certificate
        s.admit(&mut call("/ferry.v1.WorkerService/Heartbeat", None))
            .unwrap();
        // authentication off: anyone, as anonymous
        let mut open = call(submit, None);
        Security::none().admit(&mut open).unwrap();
        assert_eq!(
            open.extensions().get::<Caller>(),
            Some(&Caller::anonymous())
        );
    }
}
