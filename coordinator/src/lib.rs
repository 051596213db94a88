//! Ferry's coordinator: the job API, the planner, the scheduler that leases
//! chunks to workers, the state stores behind it, and leader election.
#![warn(missing_docs)]

pub mod api;
pub mod assignments;
pub mod election;
pub mod error;
pub mod gate;
pub mod history;
pub mod leader;
pub mod metrics;
pub mod planner;
pub mod scheduler;
pub mod server;
pub mod store;
pub mod verify;
