//! Columns as any connector describes them: a query's output columns and a
//! table's insertable columns, each with Ferry's type and the database's own
//! spelling of it.

use crate::types::FerryType;

/// One output column of a source query.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceColumn {
    /// Output name, exact spelling.
    pub name: String,
    /// What it holds, in Ferry's terms.
    pub ty: FerryType,
    /// Its type as the source database spells it.
    pub db_type: String,
    /// The table and column it comes from, when it is a plain column.
    pub origin: Option<(String, String)>,
}

/// One insertable column of a table.
#[derive(Debug, Clone, PartialEq)]
pub struct TableColumn {
    /// Name, exact spelling.
    pub name: String,
    /// What it holds, in Ferry's terms.
    pub ty: FerryType,
    /// Its type as the database spells it.
    pub db_type: String,
    /// Whether it may hold NULL.
    pub nullable: bool,
}
