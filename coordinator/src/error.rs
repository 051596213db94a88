//! The coordinator's errors and their one mapping to gRPC status codes.

use ferry_common::client::LEADER_HINT_KEY;
use tonic::metadata::MetadataValue;
use tonic::{Code, Status};

use crate::store::StoreError;

/// Everything a coordinator call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum CoordinatorError {
    /// The request is malformed or names something unusable; the message says how to fix it.
    #[error("{0}")]
    InvalidArgument(String),
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
}

impl From<CoordinatorError> for Status {
    fn from(e: CoordinatorError) -> Self {
        let code = match &e {
            CoordinatorError::InvalidArgument(_) => Code::InvalidArgument,
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
        };
        let mut status = Status::new(code, e.to_string());
        // a follower names the leader in typed form too, for clients to jump to it
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
