//! Reads the shape of the source query and of the target table.

use ferry_common::errors::classify_pg;
use ferry_common::sql::TableName;
use tokio_postgres::Client;

use super::PlanError;

/// One output column of the source query.
#[derive(Debug, Clone)]
pub struct QueryColumn {
    /// Output name.
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

/// One column of the target table.
#[derive(Debug, Clone)]
pub struct TargetColumn {
    /// Name.
    pub name: String,
    /// Type without modifier.
    pub base_type: String,
    /// Type with modifier, used for casts.
    pub full_type: String,
}

fn db_err(context: &str, e: &tokio_postgres::Error) -> PlanError {
    let f = classify_pg(e);
    PlanError {
        class: f.class,
        message: format!("{context}: {}", f.message),
    }
}

/// Describes the query's output columns without running it.
pub async fn describe_query(source: &Client, query: &str) -> Result<Vec<QueryColumn>, PlanError> {
    let stmt = source
        .prepare(query)
        .await
        .map_err(|e| db_err("source query is invalid", &e))?;
    if stmt.columns().is_empty() {
        return Err(PlanError::invalid("the source query returns no columns"));
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
        .map_err(|e| db_err("cannot read source column types", &e))?;
    let mut cols = Vec::with_capacity(oids.len());
    let mut seen = std::collections::HashSet::new();
    for (c, row) in stmt.columns().iter().zip(rows) {
        if !seen.insert(c.name().to_string()) {
            return Err(PlanError::invalid(format!(
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

/// Describes the target table's insertable columns; a missing table is a
/// permanent error naming it.
pub async fn describe_target(
    target: &Client,
    conn_name: &str,
    table: &TableName,
) -> Result<Vec<TargetColumn>, PlanError> {
    let rel: Option<u32> = target
        .query_one(
            "SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')",
            &[&table.schema, &table.table],
        )
        .await
        .ok()
        .map(|r| r.get::<_, u32>(0));
    let Some(rel) = rel else {
        return Err(PlanError::invalid(format!(
            "target table {table} does not exist in connection '{conn_name}': create it first (Ferry copies rows, not schemas)"
        )));
    };
    let rows = target
        .query(
            "SELECT attname::text, format_type(atttypid, NULL), format_type(atttypid, atttypmod)
               FROM pg_attribute
              WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped AND attgenerated = ''
              ORDER BY attnum",
            &[&rel],
        )
        .await
        .map_err(|e| db_err("cannot read target columns", &e))?;
    Ok(rows
        .into_iter()
        .map(|r| TargetColumn {
            name: r.get(0),
            base_type: r.get(1),
            full_type: r.get(2),
        })
        .collect())
}

/// The query's output column that is the single-column primary key of the one
/// table the query reads, if there is one.
pub async fn detect_primary_key(
    source: &Client,
    cols: &[QueryColumn],
) -> Result<Option<String>, PlanError> {
    let mut tables: Vec<u32> = cols.iter().filter_map(|c| c.table_oid).collect();
    tables.sort_unstable();
    tables.dedup();
    let [table] = tables.as_slice() else {
        return Ok(None);
    };
    let rows = source
        .query(
            "SELECT i.indkey[0]::int2 FROM pg_index i
              WHERE i.indrelid = $1 AND i.indisprimary AND i.indnkeyatts = 1",
            &[table],
        )
        .await
        .map_err(|e| db_err("cannot read the source primary key", &e))?;
    let Some(row) = rows.first() else {
        return Ok(None);
    };
    let attnum: i16 = row.get(0);
    Ok(cols
        .iter()
        .find(|c| c.table_oid == Some(*table) && c.column_id == Some(attnum))
        .map(|c| c.name.clone()))
}
