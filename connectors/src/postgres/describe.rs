//! Reads the shape of a source query and of a target table, and resolves the
//! names users type to the exact spellings PostgreSQL stores.

use std::collections::HashSet;

use ferry_common::errors::DbFailure;
use ferry_common::ident::{NamePart, QualifiedName};
use ferry_common::proto::TableRef;
use tokio_postgres::Client;

use super::session::failed;
use super::sql::{quote_ident, quote_table, truncate_bytes, MAX_IDENT_BYTES};

/// One output column of the source query.
#[derive(Debug, Clone)]
pub struct QueryColumn {
    /// Output name, exact spelling.
    pub name: String,
    /// Type without modifier, as `format_type` spells it in the source.
    pub base_type: String,
    /// Type with modifier.
    pub full_type: String,
    /// Table the column comes from, if it is a plain column reference.
    pub table_oid: Option<u32>,
    /// Attribute number in that table.
    pub column_id: Option<i16>,
}

/// One insertable column of a target table.
#[derive(Debug, Clone)]
pub struct TargetColumn {
    /// Name, exact spelling.
    pub name: String,
    /// Type without modifier.
    pub base_type: String,
    /// Type with modifier, used for casts.
    pub full_type: String,
}

/// A name part as PostgreSQL resolves it: quoted parts keep their spelling,
/// unquoted ones fold to lower case; both are cut to 63 bytes as the server
/// cuts them.
pub fn resolve_part(part: &NamePart) -> String {
    truncate_bytes(&part.folded_lower(), MAX_IDENT_BYTES).to_string()
}

/// Resolves a table name as typed to the table's exact spelling: a
/// qualified name exactly, an unqualified one through the session's
/// `search_path`, as PostgreSQL itself would. None when no such table (or
/// partitioned table) exists.
pub async fn resolve_table(
    client: &Client,
    name: &QualifiedName,
) -> Result<Option<TableRef>, DbFailure> {
    let row = match name.parts.as_slice() {
        [schema, table] => {
            client
                .query_opt(
                    "SELECT n.nspname::text, c.relname::text FROM pg_class c
                       JOIN pg_namespace n ON n.oid = c.relnamespace
                      WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')",
                    &[&resolve_part(schema), &resolve_part(table)],
                )
                .await
        }
        [table] => {
            client
                .query_opt(
                    "SELECT n.nspname::text, c.relname::text FROM pg_class c
                       JOIN pg_namespace n ON n.oid = c.relnamespace
                      WHERE c.oid = to_regclass($1) AND c.relkind IN ('r', 'p')",
                    &[&quote_ident(&resolve_part(table))],
                )
                .await
        }
        _ => return Ok(None),
    }
    .map_err(|e| failed("cannot look up the table", &e))?;
    Ok(row.map(|r| TableRef::new(r.get::<_, String>(0), r.get::<_, String>(1))))
}

/// The single-column B-tree indexes of `table`, when it holds no row or
/// `emptied` (a load that truncates it first); none otherwise. These are the
/// indexes that parallel appends leave larger than one stream would: nbtree
/// fills only its rightmost page to the fill factor and splits other pages
/// 50/50 (its ascending-insert rule for the other leaf pages,
/// `_bt_afternewitemoff`, skips single-column indexes).
pub async fn split_prone_indexes(
    client: &Client,
    table: &TableRef,
    emptied: bool,
) -> Result<Vec<String>, DbFailure> {
    if !emptied {
        let has_rows = format!("SELECT EXISTS (SELECT 1 FROM {})", quote_table(table));
        let row = client
            .query_one(has_rows.as_str(), &[])
            .await
            .map_err(|e| failed("cannot look at the target table", &e))?;
        if row.get::<_, bool>(0) {
            return Ok(Vec::new());
        }
    }
    let rows = client
        .query(
            "SELECT ic.relname::text FROM pg_index i
               JOIN pg_class ic ON ic.oid = i.indexrelid
               JOIN pg_am am ON am.oid = ic.relam
               JOIN pg_class t ON t.oid = i.indrelid
               JOIN pg_namespace n ON n.oid = t.relnamespace
              WHERE n.nspname = $1 AND t.relname = $2 AND am.amname = 'btree' AND i.indnkeyatts = 1
              ORDER BY 1",
            &[&table.schema, &table.name],
        )
        .await
        .map_err(|e| failed("cannot read the target table's indexes", &e))?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Describes the query's output columns without running it.
pub async fn describe_query(source: &Client, query: &str) -> Result<Vec<QueryColumn>, DbFailure> {
    let stmt = source
        .prepare(query)
        .await
        .map_err(|e| failed("the source query is invalid", &e))?;
    if stmt.columns().is_empty() {
        return Err(DbFailure::permanent("the source query returns no columns"));
    }
    let oids: Vec<u32> = stmt.columns().iter().map(|c| c.type_().oid()).collect();
    let mods: Vec<i32> = stmt.columns().iter().map(|c| c.type_modifier()).collect();
    let rows = source
        .query(
            "SELECT format_type(o, NULL), format_type(o, CASE WHEN m >= 0 THEN m END)
               FROM unnest($1::oid[], $2::int4[]) WITH ORDINALITY AS t(o, m, n) ORDER BY n",
            &[&oids, &mods],
        )
        .await
        .map_err(|e| failed("cannot read the source column types", &e))?;
    let mut cols = Vec::with_capacity(oids.len());
    let mut seen = HashSet::new();
    for (c, row) in stmt.columns().iter().zip(rows) {
        if !seen.insert(c.name().to_string()) {
            return Err(DbFailure::permanent(format!(
                "the source query returns column '{}' twice: give each column a distinct name with AS",
                c.name()
            )));
        }
        cols.push(QueryColumn {
            name: c.name().to_string(),
            base_type: row.get(0),
            full_type: row.get(1),
            table_oid: c.table_oid().filter(|o| *o != 0),
            column_id: c.column_id().filter(|a| *a > 0),
        });
    }
    Ok(cols)
}

/// Describes a table's insertable columns (not dropped, not generated), in order.
pub async fn describe_table(
    client: &Client,
    table: &TableRef,
) -> Result<Vec<TargetColumn>, DbFailure> {
    let rows = client
        .query(
            "SELECT a.attname::text, format_type(a.atttypid, NULL), format_type(a.atttypid, a.atttypmod)
               FROM pg_attribute a
               JOIN pg_class c ON c.oid = a.attrelid
               JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE n.nspname = $1 AND c.relname = $2
                AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
              ORDER BY a.attnum",
            &[&table.schema, &table.name],
        )
        .await
        .map_err(|e| failed("cannot read the target table's columns", &e))?;
    Ok(rows
        .into_iter()
        .map(|r| TargetColumn {
            name: r.get(0),
            base_type: r.get(1),
            full_type: r.get(2),
        })
        .collect())
}

/// The query's output columns that are the primary key (one column or
/// several, in the key's order) of the one table the query reads; empty when
/// the query reads several tables, the table has no primary key, or a key
/// column is not among the query's outputs.
pub async fn primary_key(source: &Client, cols: &[QueryColumn]) -> Result<Vec<String>, DbFailure> {
    let mut tables: Vec<u32> = cols.iter().filter_map(|c| c.table_oid).collect();
    tables.sort_unstable();
    tables.dedup();
    let [table] = tables.as_slice() else {
        return Ok(Vec::new());
    };
    let rows = source
        .query(
            "SELECT k.attnum FROM pg_index i,
                    unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, n)
              WHERE i.indrelid = $1 AND i.indisprimary AND k.n <= i.indnkeyatts
              ORDER BY k.n",
            &[table],
        )
        .await
        .map_err(|e| failed("cannot read the source's primary key", &e))?;
    let mut key = Vec::with_capacity(rows.len());
    for row in rows {
        let attnum: i16 = row.get(0);
        let Some(c) = cols
            .iter()
            .find(|c| c.table_oid == Some(*table) && c.column_id == Some(attnum))
        else {
            return Ok(Vec::new());
        };
        key.push(c.name.clone());
    }
    Ok(key)
}

/// Whether a source type converts to a target type the way an INSERT
/// would convert it (an implicit or assignment cast, or the same type).
pub async fn assignable(source: &Client, from: &str, to: &str) -> Result<bool, DbFailure> {
    let row = source
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_cast
                             WHERE castsource = to_regtype($1) AND casttarget = to_regtype($2)
                               AND castcontext IN ('i', 'a'))
                    OR (to_regtype($1) = to_regtype($2))",
            &[&from, &to],
        )
        .await
        .map_err(|e| failed("cannot look up type conversions", &e))?;
    Ok(row.get(0))
}

/// Parses and analyses `sql` on the server without running it (types,
/// names, casts); the server's error when it does not.
pub async fn prepares(client: &Client, sql: &str) -> Result<(), DbFailure> {
    client
        .prepare(sql)
        .await
        .map(|_| ())
        .map_err(|e| ferry_common::errors::classify_pg(&e))
}
