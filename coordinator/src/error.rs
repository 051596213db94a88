//! The coordinator's errors and their one mapping to gRPC status codes, with
//! rich details (`google.rpc.ErrorInfo` with a stable reason on every error,
//! `google.rpc.BadRequest` naming the field on INVALID_ARGUMENT,
//! `google.rpc.PreconditionFailure` on FAILED_PRECONDITION).

use std::collections::HashMap;

use ferry_common::client::LEADER_HINT_KEY;
use tonic::metadata::MetadataValue;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::security::auth::AuthError;
use crate::store::StoreError;

/// `google.rpc.ErrorInfo.domain` of every error the coordinator returns.
pub const ERROR_DOMAIN: &str = "ferry";

/// Why a request was refused: a stable, machine-readable reason sent as
/// `google.rpc.ErrorInfo.reason` (clients decide on it, never on the message).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// A required field is empty.
    MissingField,
    /// A connection name no `FERRY_CONN_<NAME>` defines.
    UnknownConnection,
    /// A table or column name that is not a valid identifier.
    InvalidIdentifier,
    /// A number or setting outside its allowed range.
    InvalidValue,
    /// The job is in a state that does not allow the call (resume a running job).
    JobState,
    /// The job cannot be compared or repaired by key range.
    NoKeyInTarget,
    /// The job was never planned.
    NotPlanned,
}

impl Reason {
    /// The reason as sent in `ErrorInfo.reason` (UPPER_SNAKE_CASE, never changes).
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::MissingField => "MISSING_FIELD",
            Reason::UnknownConnection => "UNKNOWN_CONNECTION",
            Reason::InvalidIdentifier => "INVALID_IDENTIFIER",
            Reason::InvalidValue => "INVALID_VALUE",
            Reason::JobState => "JOB_STATE",
            Reason::NoKeyInTarget => "NO_KEY_IN_TARGET",
            Reason::NotPlanned => "NOT_PLANNED",
        }
    }
}

/// A refused request: the request field at fault (proto field path such as
/// `spec.chunk_size`), a stable reason, and a message saying how to fix it.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct FieldError {
    /// Proto field path of the offending field (`spec.source`, `job_id`).
    pub field: String,
    /// Stable reason.
    pub reason: Reason,
    /// What is wrong and how to fix it, for people.
    pub message: String,
}

impl FieldError {
    /// A refusal of `field` for `reason`, explained by `message`.
    pub fn new(field: impl Into<String>, reason: Reason, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason,
            message: message.into(),
        }
    }
}

/// Everything a coordinator call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum CoordinatorError {
    /// The request is malformed or names something unusable; the message says how to fix it.
    #[error(transparent)]
    InvalidArgument(FieldError),
    /// The request is well formed but the job's state does not allow it.
    #[error(transparent)]
    FailedPrecondition(FieldError),
    /// No job with this id.
    #[error("no job with id '{0}': list jobs with `ferry jobs`")]
    JobNotFound(String),
    /// The worker is not registered (expired, or the coordinator restarted): register again.
    #[error("unknown worker '{0}': register again")]
    UnknownWorker(String),
    /// A report for a chunk attempt that no longer holds the lease.
    #[error(
        "stale fencing token for chunk {chunk_no} of job {job_id}: the chunk was leased again"
    )]
    StaleToken {
        /// Job id.
        job_id: String,
        /// Chunk.
        chunk_no: u32,
    },
    /// A worker speaks an older protocol than this coordinator leases in.
    #[error("worker on {hostname} speaks worker protocol {protocol}, this coordinator needs {needed}: upgrade the worker to this coordinator's version")]
    OutdatedWorker {
        /// The worker's host.
        hostname: String,
        /// Its protocol version.
        protocol: u32,
        /// The version needed.
        needed: u32,
    },
    /// This coordinator is not the leader.
    #[error("not the leader coordinator{}", leader.as_ref().map(|l| format!("; the leader is {l}")).unwrap_or_default())]
    NotLeader {
        /// The leader's address, when known.
        leader: Option<String>,
    },
    /// The job is busy with another change; the message says when to try again.
    #[error("{0}")]
    Busy(String),
    /// A source or target database could not answer (verify, rejects).
    #[error("{0}")]
    Database(String),
    /// The state store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The caller's credentials, role or worker session were refused.
    #[error(transparent)]
    Auth(#[from] AuthError),
}

impl CoordinatorError {
    /// INVALID_ARGUMENT naming `field`.
    pub fn invalid(field: impl Into<String>, reason: Reason, message: impl Into<String>) -> Self {
        Self::InvalidArgument(FieldError::new(field, reason, message))
    }

    /// FAILED_PRECONDITION naming `field`.
    pub fn precondition(
        field: impl Into<String>,
        reason: Reason,
        message: impl Into<String>,
    ) -> Self {
        Self::FailedPrecondition(FieldError::new(field, reason, message))
    }

    /// The gRPC code of this error.
    pub fn code(&self) -> Code {
        match self {
            CoordinatorError::InvalidArgument(_) => Code::InvalidArgument,
            CoordinatorError::FailedPrecondition(_) => Code::FailedPrecondition,
            CoordinatorError::JobNotFound(_) | CoordinatorError::UnknownWorker(_) => Code::NotFound,
            CoordinatorError::StaleToken { .. } => Code::Aborted,
            CoordinatorError::OutdatedWorker { .. } => Code::FailedPrecondition,
            CoordinatorError::NotLeader { .. } => Code::Unavailable,
            CoordinatorError::Database(_) => Code::FailedPrecondition,
            CoordinatorError::Busy(_) => Code::Unavailable,
            CoordinatorError::Store(StoreError::Conflict(_)) => Code::Aborted,
            CoordinatorError::Store(StoreError::NotLeader) => Code::Unavailable,
            CoordinatorError::Store(StoreError::Unavailable(_) | StoreError::OutcomeUnknown(_)) => {
                Code::Unavailable
            }
            CoordinatorError::Store(StoreError::Corrupt { .. }) => Code::Internal,
            CoordinatorError::Auth(AuthError::Denied { .. }) => Code::PermissionDenied,
            CoordinatorError::Auth(_) => Code::Unauthenticated,
        }
    }

    /// The stable reason sent in `ErrorInfo.reason`.
    pub fn reason(&self) -> &'static str {
        match self {
            CoordinatorError::InvalidArgument(f) | CoordinatorError::FailedPrecondition(f) => {
                f.reason.as_str()
            }
            CoordinatorError::JobNotFound(_) => "JOB_NOT_FOUND",
            CoordinatorError::UnknownWorker(_) => "UNKNOWN_WORKER",
            CoordinatorError::StaleToken { .. } => "STALE_FENCING_TOKEN",
            CoordinatorError::OutdatedWorker { .. } => "OUTDATED_WORKER",
            CoordinatorError::Busy(_) => "JOB_BUSY",
            CoordinatorError::NotLeader { .. } | CoordinatorError::Store(StoreError::NotLeader) => {
                "NOT_LEADER"
            }
            CoordinatorError::Database(_) => "DATABASE_ERROR",
            CoordinatorError::Store(StoreError::Conflict(_)) => "STORE_CONFLICT",
            CoordinatorError::Store(StoreError::Unavailable(_)) => "STORE_UNAVAILABLE",
            CoordinatorError::Store(StoreError::OutcomeUnknown(_)) => "STORE_OUTCOME_UNKNOWN",
            CoordinatorError::Store(StoreError::Corrupt { .. }) => "STORE_CORRUPT",
            CoordinatorError::Auth(AuthError::Denied { .. }) => "PERMISSION_DENIED",
            CoordinatorError::Auth(_) => "UNAUTHENTICATED",
        }
    }

    /// The field at fault, when the error names one.
    pub fn field(&self) -> Option<&str> {
        match self {
            CoordinatorError::InvalidArgument(f) | CoordinatorError::FailedPrecondition(f) => {
                Some(f.field.as_str()).filter(|f| !f.is_empty())
            }
            _ => None,
        }
    }
}

impl From<CoordinatorError> for Status {
    fn from(e: CoordinatorError) -> Self {
        let code = e.code();
        let mut metadata = HashMap::new();
        if let Some(field) = e.field() {
            metadata.insert("field".to_string(), field.to_string());
        }
        if let CoordinatorError::NotLeader {
            leader: Some(leader),
        } = &e
        {
            metadata.insert("leader".to_string(), leader.clone());
        }
        let mut details = ErrorDetails::with_error_info(e.reason(), ERROR_DOMAIN, metadata);
        match (&e, e.field()) {
            (CoordinatorError::InvalidArgument(f), Some(field)) => {
                details.add_bad_request_violation(field, f.message.clone());
            }
            (CoordinatorError::FailedPrecondition(f), field) => {
                details.add_precondition_failure_violation(
                    f.reason.as_str(),
                    field.unwrap_or_default(),
                    f.message.clone(),
                );
            }
            _ => {}
        }
        let mut status = Status::with_error_details(code, e.to_string(), details);
        // a follower names the leader in metadata too, for clients to jump to it
        if let CoordinatorError::NotLeader {
            leader: Some(leader),
        } = &e
        {
            if let Ok(value) = MetadataValue::try_from(leader.as_str()) {
                status.metadata_mut().insert(LEADER_HINT_KEY, value);
            }
        }
        status
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_argument_carries_bad_request_and_error_info() {
        let s = Status::from(CoordinatorError::invalid(
            "spec.chunk_size",
            Reason::InvalidValue,
            "chunk_size must be greater than 0",
        ));
        assert_eq!(s.code(), Code::InvalidArgument);
        assert_eq!(s.message(), "chunk_size must be greater than 0");
        let d = s.get_error_details();
        let info = d.error_info().expect("error info");
        assert_eq!(info.reason, "INVALID_VALUE");
        assert_eq!(info.domain, ERROR_DOMAIN);
        assert_eq!(
            info.metadata.get("field").map(String::as_str),
            Some("spec.chunk_size")
        );
        let bad = d.bad_request().expect("bad request");
        assert_eq!(bad.field_violations.len(), 1);
        assert_eq!(bad.field_violations[0].field, "spec.chunk_size");
    }

    #[test]
    fn failed_precondition_and_not_found_carry_reasons() {
        let s = Status::from(CoordinatorError::precondition(
            "job_id",
            Reason::JobState,
            "job j1 is RUNNING",
        ));
        assert_eq!(s.code(), Code::FailedPrecondition);
        let d = s.get_error_details();
        assert_eq!(d.error_info().expect("info").reason, "JOB_STATE");
        let pf = d.precondition_failure().expect("precondition failure");
        assert_eq!(pf.violations[0].subject, "job_id");
        let s = Status::from(CoordinatorError::JobNotFound("j2".into()));
        assert_eq!(s.code(), Code::NotFound);
        assert_eq!(
            s.get_error_details().error_info().expect("info").reason,
            "JOB_NOT_FOUND"
        );
    }
}
