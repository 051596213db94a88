//! Whether the target orders a job's key as the source did when it split the
//! job: only then does a chunk's key range hold the same rows on both sides,
//! so `ferry verify` may compare range by range and `ferry repair` may delete
//! a range and copy it again. A text key whose collations differ (a source
//! database in `en_US.UTF-8`, a target in `C`), or one locale of two
//! collation library versions (glibc 2.27 on the source host, 2.36 on the
//! target's), would put other chunks' rows in a range: repair would delete
//! them and not copy them back.

use ferry_common::proto::{ColumnPlan, KeyColumn, TableRef};
use ferry_connectors::coltype;
use ferry_connectors::db::Conn;
use ferry_connectors::postgres::collation::{column_order, ColumnCollation};
use ferry_connectors::postgres::sql::{quote_ident, quote_table};
use ferry_connectors::types::FerryType;

use crate::error::CoordinatorError;

/// How the target orders the job's key against the source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyOrder {
    /// The same order: key ranges hold the same rows on both sides.
    Same,
    /// A different or unprovable order, and why (names the column and both orders).
    Differs(String),
}

/// Compares the order of each `key` column in the source (`query`'s output,
/// whose columns are `columns`) and in the target `table`; reads no rows.
pub async fn key_order(
    source: &Conn,
    target: &Conn,
    key: &[KeyColumn],
    columns: &[ColumnPlan],
    query: &str,
    table: &TableRef,
) -> Result<KeyOrder, CoordinatorError> {
    let (Some(src), Some(dst)) = (source.postgres(), target.postgres()) else {
        return Ok(typed_key_order(key, columns));
    };
    for k in key {
        let source_sql = format!("SELECT {} FROM ({query}) AS q", quote_ident(&k.name));
        let target_sql = format!(
            "SELECT {} FROM {}",
            quote_ident(&k.target),
            quote_table(table)
        );
        let (s, d) = tokio::join!(
            column_order(src, &source_sql),
            column_order(dst, &target_sql)
        );
        let s = s.map_err(|f| CoordinatorError::Database(f.message))?;
        let d = d.map_err(|f| CoordinatorError::Database(f.message))?;
        let alike = match (&s, &d) {
            (None, None) => true,
            (Some(s), Some(d)) => s.sorts_like(d),
            _ => false,
        };
        if !alike {
            let says = |c: &Option<ColumnCollation>| {
                c.as_ref()
                    .map_or_else(|| "no collation".to_string(), ToString::to_string)
            };
            return Ok(KeyOrder::Differs(format!(
                "key column '{}' sorts in {} in the source and target column '{}' in {}",
                k.name,
                says(&s),
                k.target,
                says(&d)
            )));
        }
    }
    Ok(KeyOrder::Same)
}

/// Between databases of different kinds Ferry cannot prove two text orders
/// equal (MySQL's collations, SQLite's BINARY and PostgreSQL's have no common
/// names): a key with a text column differs; numbers, times and uuids do not.
fn typed_key_order(key: &[KeyColumn], columns: &[ColumnPlan]) -> KeyOrder {
    for k in key {
        let Some(column) = columns.get(k.position as usize) else {
            continue;
        };
        let textual = |t: Option<&ferry_common::proto::ColumnType>| {
            matches!(
                t.and_then(coltype::from_proto),
                Some(FerryType::Text { .. } | FerryType::Other(_)) | None
            )
        };
        if textual(column.source_type.as_ref()) || textual(column.target_type.as_ref()) {
            return KeyOrder::Differs(format!(
                "key column '{}' is text, and Ferry cannot prove that the source and target databases, of different kinds, sort text alike",
                k.name
            ));
        }
    }
    KeyOrder::Same
}
