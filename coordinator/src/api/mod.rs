//! The gRPC services: thin adapters from protocol messages to the scheduler.

mod jobs;
mod workers;

pub use jobs::JobApi;
pub use workers::WorkerApi;
