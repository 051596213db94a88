//! Shared pieces of Ferry: the generated protocol, configuration, named
//! connections, the error taxonomy, retry policy, timing constants and SQL
//! quoting. No servers live here.
#![warn(missing_docs)]

pub mod client;
pub mod config;
pub mod conn_secrets;
pub mod connections;
pub mod credentials;
pub mod db;
pub mod errors;
pub mod ledger;
pub mod limits;
pub mod pg_tls;
pub mod proto;
pub mod retry;
pub mod sql;
pub mod telemetry;
pub mod timing;
pub mod tls;
