//! Digests for `ferry verify`: a chunk's row count and an order-independent
//! hash of its rows, computed the same way over the source's rows (each
//! column converted to the target column's type) and over the target's.

use ferry_common::errors::DbFailure;
use ferry_common::proto::{ChunkBounds, ColumnPlan, KeyColumn, TableRef};
use tokio_postgres::types::ToSql;
use tokio_postgres::Client;

use super::select::{key_filter, Binding, ChunkSelect};
use super::session::failed;
use super::sql::{quote_ident, quote_list, quote_table};

/// A chunk's row count and hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digest {
    /// Rows.
    pub rows: u64,
    /// Sum of the rows' hashes, as text (order-independent).
    pub hash: String,
}

async fn digest(
    client: &Client,
    select: &str,
    values: &[String],
    side: &str,
) -> Result<Digest, DbFailure> {
    let sql = format!(
        "SELECT count(*)::int8, coalesce(sum(hashtext(v::text)::int8), 0)::text FROM ({select}) AS v"
    );
    let params: Vec<&(dyn ToSql + Sync)> = values.iter().map(|v| v as _).collect();
    let row = client
        .query_one(sql.as_str(), &params)
        .await
        .map_err(|e| failed(&format!("cannot read the {side}"), &e))?;
    Ok(Digest {
        rows: row.get::<_, i64>(0).max(0) as u64,
        hash: row.get(1),
    })
}

/// The digest of a chunk's rows in the source.
pub async fn source_digest(source: &Client, chunk: &ChunkSelect<'_>) -> Result<Digest, DbFailure> {
    let (select, values) = chunk.verify();
    digest(source, &select, &values, "source").await
}

/// The digest of a chunk's rows in the target `table`: the job's target
/// columns, filtered on the key's target columns (every row when the key
/// is not copied).
pub async fn target_digest(
    target: &Client,
    table: &TableRef,
    columns: &[ColumnPlan],
    key: &[KeyColumn],
    bounds: &ChunkBounds,
) -> Result<Digest, DbFailure> {
    let key_copied = !key.is_empty() && key.iter().all(|k| !k.target.is_empty());
    let filter = key_filter(
        if key_copied { key } else { &[] },
        bounds,
        Binding::Params(0),
        |k| quote_ident(&k.target),
        |k| k.target_type.as_str(),
    );
    let mut select = format!(
        "SELECT {} FROM {}",
        quote_list(columns.iter().map(|c| c.target.as_str())),
        quote_table(table)
    );
    if let Some(c) = &filter.condition {
        select.push_str(" WHERE ");
        select.push_str(c);
    }
    digest(target, &select, &filter.values, "target").await
}
