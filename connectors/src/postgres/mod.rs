//! PostgreSQL: describe and sample a source query, read a chunk as binary
//! COPY, write it under the target-side ledger, isolate refused rows, the
//! write modes, verify digests.

pub mod chunk_explain;
pub mod collation;
pub mod copy;
pub mod describe;
pub mod driving;
pub mod history;
pub mod ledger;
pub mod ledger_gc;
pub mod modes;
pub mod rejects;
pub mod replace;
pub mod rowcount;
pub mod sample;
pub mod scan;
pub mod select;
pub mod session;
pub mod snapshot;
pub mod sql;
pub mod start_over;
pub mod text_array;
pub mod typed;
pub mod types;
pub mod verify;
