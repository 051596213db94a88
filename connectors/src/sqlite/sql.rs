//! SQLite spelling of names: double-quote quoting, as PostgreSQL's.

use ferry_common::proto::TableRef;

pub use crate::postgres::sql::{quote_ident, quote_list};

/// `"schema"."table"` (the schema is `main` for the file itself).
pub fn quote_table(t: &TableRef) -> String {
    format!("{}.{}", quote_ident(&t.schema), quote_ident(&t.name))
}
