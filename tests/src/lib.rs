//! Test harness for Ferry's end-to-end tests.
//!
//! Starts real PostgreSQL clusters, real etcd members and the real `ferry`
//! binary as separate processes, and breaks them. `cluster::Cluster` is the
//! one way tests start them. Every helper fails loudly (panics with the
//! reason and where to look) when a dependency is missing: tests never skip
//! silently.
#![warn(missing_docs)]

pub mod caller;
pub mod chaos;
pub mod chaos_events;
pub mod chaos_verdict;
pub mod cli;
pub mod cli_output;
pub mod clock;
pub mod cluster;
pub mod cluster_cli;
pub mod data;
pub mod databases;
pub mod etcd;
pub mod ledger;
pub mod log_lines;
pub mod net;
pub mod node;
pub mod observability;
pub mod postgres;
pub mod process;
pub mod report;
pub mod roles;
pub mod security;
pub mod sql;
mod sync;
pub mod text;
