//! Worker sessions: RegisterWorker issues a random secret and derives the
//! worker id from it (`w` + 24 hex digits of its SHA-256). A caller proves a
//! session by sending both; nothing is stored, so a coordinator that takes
//! over checks the sessions its predecessor issued, and no secret reaches
//! etcd, logs or metrics (the id is a hash of the secret, not the secret).

use rand::RngCore;
use sha2::{Digest, Sha256};

/// Hex digits of the secret's hash in a worker id: 96 bits, too many to find
/// a secret for someone else's id.
const ID_HEX_DIGITS: usize = 24;

/// Domain separation, so a worker id is never the hash of anything else.
const ID_DOMAIN: &[u8] = b"ferry worker session v1\0";

/// A session as issued to a worker.
#[derive(Clone, PartialEq, Eq)]
pub struct WorkerSession {
    /// The worker id (public: logs, etcd, chunk records).
    pub worker_id: String,
    /// The secret (only the worker and the wire see it).
    pub secret: String,
}

impl std::fmt::Debug for WorkerSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerSession")
            .field("worker_id", &self.worker_id)
            .field("secret", &"***")
            .finish()
    }
}

/// Why a worker call's session was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    /// No id or no secret was sent.
    #[error("the call carries no worker session (worker_id and session_secret from RegisterWorker): register first")]
    Missing,
    /// The secret does not belong to the id.
    #[error("the session secret does not belong to worker '{0}': register again")]
    Mismatch(String),
}

fn id_of(secret: &str) -> String {
    let mut h = Sha256::new();
    h.update(ID_DOMAIN);
    h.update(secret.as_bytes());
    let digest = h.finalize();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("w{}", &hex[..ID_HEX_DIGITS])
}

impl WorkerSession {
    /// A new session with a random 256-bit secret.
    pub fn issue() -> Self {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        let secret: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        Self {
            worker_id: id_of(&secret),
            secret,
        }
    }

    /// The session `(worker_id, secret)` if the secret belongs to the id.
    pub fn verify(worker_id: &str, secret: &str) -> Result<(), SessionError> {
        if worker_id.is_empty() || secret.is_empty() {
            return Err(SessionError::Missing);
        }
        // both sides are public-length hashes; a timing difference reveals
        // nothing about the secret
        if id_of(secret) == worker_id {
            Ok(())
        } else {
            Err(SessionError::Mismatch(worker_id.to_string()))
        }
    }

    /// The session to resume on re-registration, or a new one when the
    /// caller sent none or one that does not verify.
    pub fn resume_or_issue(worker_id: &str, secret: &str) -> (Self, bool) {
        match Self::verify(worker_id, secret) {
            Ok(()) => (
                Self {
                    worker_id: worker_id.to_string(),
                    secret: secret.to_string(),
                },
                true,
            ),
            Err(_) => (Self::issue(), false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_sessions_verify_and_others_do_not() {
        let a = WorkerSession::issue();
        let b = WorkerSession::issue();
        assert_ne!(a.worker_id, b.worker_id);
        assert!(WorkerSession::verify(&a.worker_id, &a.secret).is_ok());
        assert_eq!(
            WorkerSession::verify(&a.worker_id, &b.secret),
            Err(SessionError::Mismatch(a.worker_id.clone()))
        );
        assert_eq!(
            WorkerSession::verify("", &a.secret),
            Err(SessionError::Missing)
        );
        assert_eq!(
            WorkerSession::verify(&a.worker_id, ""),
            Err(SessionError::Missing)
        );
        let (resumed, kept) = WorkerSession::resume_or_issue(&a.worker_id, &a.secret);
        assert!(kept && resumed == a);
        let (fresh, kept) = WorkerSession::resume_or_issue(&a.worker_id, "guess");
        assert!(!kept && fresh.worker_id != a.worker_id);
        assert!(!format!("{a:?}").contains(&a.secret));
    }
}
