//! Test harness for Ferry's end-to-end tests.
//!
//! Starts real PostgreSQL clusters, real etcd members and the real `ferry`
//! binary as separate processes, and breaks them. Every helper fails loudly
//! (panics with the reason and where to look) when a dependency is missing:
//! tests never skip silently.
#![warn(missing_docs)]

pub mod data;
pub mod etcd;
pub mod ferry;
pub mod issue5;
pub mod job;
pub mod net;
pub mod observability;
pub mod postgres;
pub mod report;
pub mod scenario;
mod sync;
