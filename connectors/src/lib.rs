//! Ferry's database connectors: every SQL statement Ferry runs lives here,
//! one module per database. The planner, the scheduler and the worker decide;
//! a connector acts, building its database's SQL from Ferry's typed plan
//! (table and column names with their exact spelling, key columns with their
//! types, chunk bounds as typed values). Rows that move between databases of
//! different kinds travel as typed values (`value`), converted exactly or
//! refused (`convert`) by the rules of `types`.
#![warn(missing_docs)]

pub mod bounds;
pub mod coltype;
pub mod columns;
pub mod convert;
pub mod convert_ref;
pub mod db;
pub mod ddl;
pub mod history_sql;
pub mod iso;
pub mod isolate;
pub mod kind;
pub mod mysql;
pub mod postgres;
pub mod reject_key;
pub mod rows;
pub mod sample;
pub mod sqlite;
pub mod types;
pub mod value;
