//! Which columns a PostgreSQL job is split on: `--key a[,b…]` as typed, or
//! the primary key (one column or several) of the one table the query reads.
//! A key of several columns is compared as a row, `(a, b) >= (x, y)`, so
//! chunks cut inside a value of the first column.

use ferry_common::ident::parse_column_list;
use ferry_common::proto::{JobSpec, KeyColumn};
use ferry_connectors::postgres::describe::{self, resolve_part, QueryColumn};
use ferry_connectors::postgres::sql::show_ident;
use tokio_postgres::Client;

use super::columns::Columns;
use super::PlanError;

/// The job's key columns, in key order: those `--key` names, else the source
/// table's primary key when the query returns all of its columns; empty
/// when there is neither (one chunk).
pub(super) async fn choose(
    source: &Client,
    spec: &JobSpec,
    cols: &Columns,
    query_cols: &[QueryColumn],
) -> Result<Vec<KeyColumn>, PlanError> {
    let names = if spec.key_column.trim().is_empty() {
        describe::primary_key(source, query_cols).await?
    } else {
        parse_column_list(&spec.key_column)
            .map_err(|e| PlanError::invalid(format!("invalid key column: {e}")))?
            .iter()
            .map(resolve_part)
            .collect()
    };
    let mut key: Vec<KeyColumn> = Vec::with_capacity(names.len());
    for name in &names {
        if key.iter().any(|k| &k.name == name) {
            return Err(PlanError::invalid(format!(
                "--key names column {} twice: list each key column once",
                show_ident(name)
            )));
        }
        key.push(cols.key(name)?);
    }
    Ok(key)
}

/// The key columns for people: `id`, or `(l_orderkey, l_linenumber)`.
pub(super) fn shown(key: &[KeyColumn]) -> String {
    match key {
        [one] => show_ident(&one.name),
        many => format!(
            "({})",
            many.iter()
                .map(|k| show_ident(&k.name))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}
