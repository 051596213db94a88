//! Generated code for the `ferry.v1` protocol, plus small conveniences on it.
#![allow(
    missing_docs,
    clippy::doc_lazy_continuation,
    clippy::large_enum_variant
)]

tonic::include_proto!("ferry.v1");
// serde::Serialize/Deserialize in the protobuf JSON mapping (pbjson, snake_case names).
include!(concat!(env!("OUT_DIR"), "/ferry.v1.serde.rs"));

/// Serialized file descriptors, served by gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("ferry_descriptor");

impl JobState {
    /// Whether the job can no longer change state.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobState::Succeeded | JobState::Failed | JobState::Cancelled
        )
    }

    /// The state's name in capitals, as `ferry status` prints it.
    pub fn label(self) -> &'static str {
        match self {
            JobState::Unspecified => "UNKNOWN",
            JobState::Pending => "PENDING",
            JobState::Planning => "PLANNING",
            JobState::Running => "RUNNING",
            JobState::Succeeded => "SUCCEEDED",
            JobState::Failed => "FAILED",
            JobState::Cancelled => "CANCELLED",
        }
    }
}

impl ChunkState {
    /// The state's name in capitals.
    pub fn label(self) -> &'static str {
        match self {
            ChunkState::Unspecified => "UNKNOWN",
            ChunkState::Pending => "PENDING",
            ChunkState::Leased => "LEASED",
            ChunkState::Succeeded => "SUCCEEDED",
            ChunkState::RetryWait => "RETRY_WAIT",
            ChunkState::Failed => "FAILED",
            ChunkState::Cancelled => "CANCELLED",
        }
    }
}
