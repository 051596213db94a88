//! Shared pieces of Ferry: the generated protocol, configuration, named
//! connections, names as users type them, the typed plan, the error
//! taxonomy, retry policy and timing constants. No servers and no SQL live
//! here.
#![warn(missing_docs)]

pub mod allocator;
pub mod client;
pub mod config;
pub mod conn_secrets;
pub mod connections;
pub mod credentials;
pub mod db;
pub mod errors;
pub mod ident;
pub mod ledger;
pub mod limits;
pub mod pg_tls;
pub mod plan;
pub mod proto;
pub mod retry;
pub mod telemetry;
pub mod timing;
pub mod tls;
