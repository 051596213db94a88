//! Ferry's coordinator: the job API, the planner, the scheduler that leases
//! chunks to workers, the state stores behind it, and leader election.
#![warn(missing_docs)]

pub mod api;
pub mod assignments;
pub mod budget;
pub mod election;
pub mod error;
pub mod etcd_security;
pub mod gate;
pub mod history;
pub mod key_order;
pub mod leader;
pub mod lineage;
pub mod metrics;
pub mod planner;
pub mod scheduler;
pub mod security;
pub mod server;
pub mod snapshot_session;
pub mod store;
pub mod verify;
pub mod verify_typed;
