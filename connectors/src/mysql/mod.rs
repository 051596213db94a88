//! MySQL and MariaDB through sqlx: describe and sample a source query, read a
//! chunk as typed values, write rows with multi-row INSERTs under the
//! target-side ledger, isolate refused rows, the write modes.

pub mod describe;
pub mod errors;
pub mod history;
pub mod labels;
pub mod ledger;
pub mod ledger_gc;
pub mod modes;
pub mod read;
pub mod sample;
pub mod select;
pub mod session;
pub mod sql;
pub mod types;
pub mod write;
