//! Ferry's coordinator: the job API, the planner, the scheduler that leases
//! chunks to workers, and the state stores behind it.
#![warn(missing_docs)]

pub mod api;
pub mod error;
pub mod planner;
pub mod scheduler;
pub mod server;
pub mod store;
