//! SQLite files through sqlx: describe and sample a source query, read a
//! chunk as values (through SQLite's C API: `raw`), write rows with
//! prepared multi-row INSERTs under the ledger tables inside the target
//! file, the write modes. One writer per
//! file: the scheduler never runs two chunks against one SQLite target.

pub mod describe;
pub mod errors;
pub mod history;
pub mod ledger;
pub mod ledger_gc;
pub mod modes;
pub mod raw;
pub mod read;
pub mod sample;
pub mod select;
pub mod session;
pub mod sql;
#[cfg(test)]
pub(crate) mod test_file;
pub mod types;
pub mod write;
