//! Reads the shape of a MySQL query and table and resolves the names users
//! type. MySQL does not fold names: a table is found by its exact spelling,
//! in the session's current database when unqualified.

use ferry_common::errors::DbFailure;
use ferry_common::ident::QualifiedName;
use ferry_common::proto::TableRef;
use sqlx::mysql::MySqlConnection;
use sqlx::{AssertSqlSafe, Column, ColumnOrigin, Executor, Row, SqlSafeStr, Statement};

use super::errors::classify;
use super::labels;
use super::session::{current_database, exec};
use super::sql::quote_ident;
use super::types::ferry_type;
use crate::columns::{SourceColumn, TableColumn};

/// Resolves a table name as typed (exact spelling; unqualified means the
/// session's database); None when no such base table exists.
pub async fn resolve_table(
    conn: &mut MySqlConnection,
    name: &QualifiedName,
) -> Result<Option<TableRef>, DbFailure> {
    let (schema, table) = match name.parts.as_slice() {
        [schema, table] => (schema.text.clone(), table.text.clone()),
        [table] => match current_database(conn).await? {
            Some(db) => (db, table.text.clone()),
            None => return Ok(None),
        },
        _ => return Ok(None),
    };
    let row = sqlx::query(
        "SELECT table_schema, table_name FROM information_schema.tables
          WHERE BINARY table_schema = ? AND BINARY table_name = ? AND table_type = 'BASE TABLE'",
    )
    .bind(&schema)
    .bind(&table)
    .fetch_optional(&mut *conn)
    .await
    .map_err(|e| classify(&e).context("cannot look up the table"))?;
    Ok(row.map(|r| TableRef::new(r.get::<String, _>(0), r.get::<String, _>(1))))
}

/// Describes a table's insertable columns (generated ones excluded), in order.
pub async fn describe_table(
    conn: &mut MySqlConnection,
    table: &TableRef,
) -> Result<Vec<TableColumn>, DbFailure> {
    let rows = sqlx::query(
        "SELECT column_name, column_type, is_nullable = 'YES' FROM information_schema.columns
          WHERE BINARY table_schema = ? AND BINARY table_name = ?
            AND extra NOT LIKE '%GENERATED%' AND extra NOT IN ('VIRTUAL', 'PERSISTENT', 'STORED')
          ORDER BY ordinal_position",
    )
    .bind(&table.schema)
    .bind(&table.name)
    .fetch_all(&mut *conn)
    .await
    .map_err(|e| classify(&e).context("cannot read the table's columns"))?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let db_type: String = r.get(1);
            TableColumn {
                name: r.get(0),
                ty: ferry_type(&db_type),
                base_type: db_type.clone(),
                db_type,
                nullable: r.get::<i64, _>(2) != 0,
            }
        })
        .collect())
}

/// Describes a query's output columns without reading its rows: MySQL
/// reports a query's exact column types (precision, scale, length) only for
/// tables, so the query's shape is materialized as an empty temporary table.
pub async fn describe_query(
    conn: &mut MySqlConnection,
    query: &str,
) -> Result<Vec<SourceColumn>, DbFailure> {
    let stmt = conn
        .prepare(AssertSqlSafe(query.to_string()).into_sql_str())
        .await
        .map_err(|e| classify(&e).context("the source query is invalid"))?;
    let origins: Vec<Option<(String, String)>> = stmt
        .columns()
        .iter()
        .map(|c| match c.origin() {
            ColumnOrigin::Table(t) => Some((t.table.to_string(), t.name.to_string())),
            _ => None,
        })
        .collect();
    let tmp = "ferry_describe";
    exec(
        conn,
        &format!("DROP TEMPORARY TABLE IF EXISTS {}", quote_ident(tmp)),
    )
    .await?;
    exec(
        conn,
        &format!(
            "CREATE TEMPORARY TABLE {} AS SELECT * FROM ({query}) AS src LIMIT 0",
            quote_ident(tmp)
        ),
    )
    .await
    .map_err(|f| f.context("cannot describe the source query"))?;
    let columns = columns_of(conn, tmp).await;
    exec(
        conn,
        &format!("DROP TEMPORARY TABLE IF EXISTS {}", quote_ident(tmp)),
    )
    .await?;
    let columns = columns?;
    if columns.is_empty() {
        return Err(DbFailure::permanent("the source query returns no columns"));
    }
    let mut out = Vec::with_capacity(columns.len());
    for (i, (name, db_type)) in columns.into_iter().enumerate() {
        if out.iter().any(|c: &SourceColumn| c.name == name) {
            return Err(DbFailure::permanent(format!(
                "the source query returns column '{name}' twice: give each column a distinct name with AS"
            )));
        }
        out.push(SourceColumn {
            ty: ferry_type(&db_type),
            db_type,
            origin: origins.get(i).cloned().flatten(),
            name,
        });
    }
    Ok(out)
}

/// The (name, type) of each column of the temporary table `tmp`, ENUM and
/// SET labels exact (`labels.rs`: MariaDB reports them in utf8mb3).
async fn columns_of(
    conn: &mut MySqlConnection,
    tmp: &str,
) -> Result<Vec<(String, String)>, DbFailure> {
    let rows = sqlx::query(AssertSqlSafe(format!(
        "SHOW COLUMNS FROM {}",
        quote_ident(tmp)
    )))
    .fetch_all(&mut *conn)
    .await
    .map_err(|e| classify(&e).context("cannot describe the source query"))?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let name: String = r.try_get(0).map_err(|e| classify(&e))?;
        let db_type: String = r
            .try_get::<String, _>(1)
            .or_else(|_| {
                r.try_get::<Vec<u8>, _>(1)
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
            })
            .map_err(|e| classify(&e))?;
        let db_type = labels::exact_type(conn, tmp, &name, &db_type)
            .await?
            .unwrap_or(db_type);
        out.push((name, db_type));
    }
    Ok(out)
}

/// The query's output column that is the single-column primary key of the
/// one table the query reads, if there is one.
pub async fn primary_key(
    conn: &mut MySqlConnection,
    cols: &[SourceColumn],
) -> Result<Option<String>, DbFailure> {
    let mut tables: Vec<&str> = cols
        .iter()
        .filter_map(|c| c.origin.as_ref())
        .map(|(t, _)| t.as_str())
        .collect();
    tables.sort_unstable();
    tables.dedup();
    let [table] = tables.as_slice() else {
        return Ok(None);
    };
    let (schema, name) = match table.split_once('.') {
        Some((s, t)) => (Some(s.to_string()), t.to_string()),
        None => (current_database(conn).await?, table.to_string()),
    };
    let Some(schema) = schema else {
        return Ok(None);
    };
    let keys: Vec<String> = sqlx::query_scalar(
        "SELECT column_name FROM information_schema.key_column_usage
          WHERE BINARY table_schema = ? AND BINARY table_name = ? AND constraint_name = 'PRIMARY'",
    )
    .bind(&schema)
    .bind(&name)
    .fetch_all(&mut *conn)
    .await
    .map_err(|e| classify(&e).context("cannot read the source's primary key"))?;
    let [key] = keys.as_slice() else {
        return Ok(None);
    };
    Ok(cols
        .iter()
        .find(|c| c.origin.as_ref().is_some_and(|(_, col)| col == key))
        .map(|c| c.name.clone()))
}

/// Whether `table` has a unique index on exactly the columns `keys`.
pub async fn has_unique_index(
    conn: &mut MySqlConnection,
    table: &TableRef,
    keys: &[String],
) -> Result<bool, DbFailure> {
    let rows = sqlx::query(
        "SELECT index_name, column_name FROM information_schema.statistics
          WHERE BINARY table_schema = ? AND BINARY table_name = ? AND non_unique = 0",
    )
    .bind(&table.schema)
    .bind(&table.name)
    .fetch_all(&mut *conn)
    .await
    .map_err(|e| classify(&e).context("cannot read the table's unique indexes"))?;
    let mut by_index: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for r in rows {
        by_index.entry(r.get(0)).or_default().push(r.get(1));
    }
    let mut want = keys.to_vec();
    want.sort();
    Ok(by_index.into_values().any(|mut cols| {
        cols.sort();
        cols == want
    }))
}
