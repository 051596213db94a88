//! Catalog facts about the table a query is split on (its driving table):
//! what kind of relation it is, how many blocks it has now, and its primary
//! key, so the planner can split a query on that table's key or on `ctid`
//! block ranges.

use ferry_common::errors::DbFailure;
use tokio_postgres::Client;

use super::session::failed;

/// One column of a table's primary key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPart {
    /// Column name, exact spelling.
    pub name: String,
    /// Attribute number in the table.
    pub attnum: i16,
    /// Type without modifier, as `format_type` spells it.
    pub base_type: String,
}

/// The driving table of a query, as the catalog describes it.
#[derive(Debug, Clone)]
pub struct DrivingTable {
    /// The table's oid (matches `QueryColumn::table_oid`).
    pub oid: u32,
    /// Schema, exact spelling.
    pub schema: String,
    /// Table name, exact spelling.
    pub name: String,
    /// `pg_class.relkind`: `r` table, `p` partitioned, `v` view, `m`
    /// materialized view, `f` foreign table.
    pub relkind: char,
    /// Blocks in the table's main fork now (`pg_relation_size / block_size`).
    pub pages: u64,
    /// Its primary key columns in key order (empty: none).
    pub primary_key: Vec<KeyPart>,
}

impl DrivingTable {
    /// Whether its rows live in heap blocks that `ctid` ranges can split
    /// (a plain table or a materialized view).
    pub fn has_blocks(&self) -> bool {
        matches!(self.relkind, 'r' | 'm')
    }

    /// What kind of relation it is, for people.
    pub fn kind_name(&self) -> &'static str {
        match self.relkind {
            'r' => "table",
            'p' => "partitioned table",
            'v' => "view",
            'm' => "materialized view",
            'f' => "foreign table",
            _ => "relation",
        }
    }
}

/// Looks up the relation `written` (its name as the query spells it, e.g.
/// `public."Heap"`), resolved through the session's `search_path` as the
/// query itself resolves it. None when no such relation is visible.
pub async fn driving_table(
    client: &Client,
    written: &str,
) -> Result<Option<DrivingTable>, DbFailure> {
    let row = client
        .query_opt(
            "SELECT c.oid, n.nspname::text, c.relname::text, c.relkind::text,
                    (pg_relation_size(c.oid) / current_setting('block_size')::int8)::int8
               FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE c.oid = to_regclass($1)",
            &[&written],
        )
        .await
        .map_err(|e| failed("cannot look up the query's driving table", &e))?;
    let Some(row) = row else {
        return Ok(None);
    };
    let oid: u32 = row.get(0);
    let relkind: String = row.get(3);
    Ok(Some(DrivingTable {
        oid,
        schema: row.get(1),
        name: row.get(2),
        relkind: relkind.chars().next().unwrap_or('?'),
        pages: row.get::<_, i64>(4).max(0) as u64,
        primary_key: primary_key(client, oid).await?,
    }))
}

/// The primary key columns of table `oid`, in key order (empty: none).
pub async fn primary_key(client: &Client, oid: u32) -> Result<Vec<KeyPart>, DbFailure> {
    let rows = client
        .query(
            "SELECT a.attname::text, a.attnum, format_type(a.atttypid, NULL)
               FROM pg_index i
               CROSS JOIN LATERAL unnest(i.indkey[0:i.indnkeyatts - 1]) WITH ORDINALITY AS k(attnum, n)
               JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
              WHERE i.indrelid = $1 AND i.indisprimary
              ORDER BY k.n",
            &[&oid],
        )
        .await
        .map_err(|e| failed("cannot read the driving table's primary key", &e))?;
    Ok(rows
        .into_iter()
        .map(|r| KeyPart {
            name: r.get(0),
            attnum: r.get(1),
            base_type: r.get(2),
        })
        .collect())
}
