//! Reads the shape of a SQLite query and table. SQLite matches names without
//! regard to case, so a name resolves to the spelling the file stores.

use ferry_common::errors::DbFailure;
use ferry_common::ident::QualifiedName;
use ferry_common::proto::TableRef;
use sqlx::sqlite::SqliteConnection;
use sqlx::{AssertSqlSafe, Column, ColumnOrigin, Executor, Row, SqlSafeStr, Statement, TypeInfo};

use super::errors::classify;
use super::types::ferry_type;
use crate::columns::{SourceColumn, TableColumn};

/// Resolves a table name as typed (unqualified means `main`); None when no
/// such table exists.
pub async fn resolve_table(
    conn: &mut SqliteConnection,
    name: &QualifiedName,
) -> Result<Option<TableRef>, DbFailure> {
    let (schema, table) = match name.parts.as_slice() {
        [schema, table] => (schema.text.clone(), table.text.clone()),
        [table] => ("main".to_string(), table.text.clone()),
        _ => return Ok(None),
    };
    let found: Option<(String, String)> = sqlx::query_as(
        "SELECT schema, name FROM pragma_table_list WHERE schema = ? COLLATE NOCASE AND name = ? COLLATE NOCASE AND type = 'table'",
    )
    .bind(&schema)
    .bind(&table)
    .fetch_optional(&mut *conn)
    .await
    .map_err(|e| classify(&e).context("cannot look up the table"))?;
    Ok(found.map(|(s, t)| TableRef::new(s, t)))
}

/// Declared columns of a table (generated and hidden ones excluded), in order.
pub async fn describe_table(
    conn: &mut SqliteConnection,
    table: &TableRef,
) -> Result<Vec<TableColumn>, DbFailure> {
    let rows = sqlx::query(
        "SELECT name, type, \"notnull\" FROM pragma_table_xinfo(?, ?) WHERE hidden = 0 ORDER BY cid",
    )
    .bind(&table.name)
    .bind(&table.schema)
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
                db_type,
                nullable: r.get::<i64, _>(2) == 0,
            }
        })
        .collect())
}

/// The declared type of `column` of `table`, if it is a plain table column.
async fn declared(conn: &mut SqliteConnection, table: &str, column: &str) -> Option<String> {
    sqlx::query_scalar::<_, String>("SELECT type FROM pragma_table_info(?) WHERE name = ?")
        .bind(table)
        .bind(column)
        .fetch_optional(&mut *conn)
        .await
        .ok()
        .flatten()
}

/// A prepared statement's column: name, SQLite's type guess, origin.
type Described = (String, String, Option<(String, String)>);

/// Describes a query's output columns without running it: declared types of
/// plain columns, SQLite's own guess for expressions.
pub async fn describe_query(
    conn: &mut SqliteConnection,
    query: &str,
) -> Result<Vec<SourceColumn>, DbFailure> {
    let stmt = conn
        .prepare(AssertSqlSafe(query.to_string()).into_sql_str())
        .await
        .map_err(|e| classify(&e).context("the source query is invalid"))?;
    let described: Vec<Described> = stmt
        .columns()
        .iter()
        .map(|c| {
            let origin = match c.origin() {
                ColumnOrigin::Table(t) => Some((t.table.to_string(), t.name.to_string())),
                _ => None,
            };
            (
                c.name().to_string(),
                c.type_info().name().to_string(),
                origin,
            )
        })
        .collect();
    if described.is_empty() {
        return Err(DbFailure::permanent("the source query returns no columns"));
    }
    let mut out: Vec<SourceColumn> = Vec::with_capacity(described.len());
    for (name, guessed, origin) in described {
        if out.iter().any(|c| c.name == name) {
            return Err(DbFailure::permanent(format!(
                "the source query returns column '{name}' twice: give each column a distinct name with AS"
            )));
        }
        let db_type = match &origin {
            Some((t, c)) => declared(conn, t, c).await.unwrap_or(guessed),
            None => guessed,
        };
        out.push(SourceColumn {
            ty: ferry_type(&db_type),
            db_type,
            origin,
            name,
        });
    }
    Ok(out)
}

/// The query's output column that is the single-column primary key of the
/// one table the query reads, if there is one.
pub async fn primary_key(
    conn: &mut SqliteConnection,
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
    let keys: Vec<String> =
        sqlx::query_scalar("SELECT name FROM pragma_table_info(?) WHERE pk > 0")
            .bind(*table)
            .fetch_all(&mut *conn)
            .await
            .map_err(|e| classify(&e).context("cannot read the source's primary key"))?;
    let [key] = keys.as_slice() else {
        return Ok(None);
    };
    Ok(cols
        .iter()
        .find(|c| {
            c.origin
                .as_ref()
                .is_some_and(|(_, col)| col.eq_ignore_ascii_case(key))
        })
        .map(|c| c.name.clone()))
}

/// Whether `table` has a unique index (or primary key) on exactly `keys`.
pub async fn has_unique_index(
    conn: &mut SqliteConnection,
    table: &TableRef,
    keys: &[String],
) -> Result<bool, DbFailure> {
    let indexes: Vec<String> =
        sqlx::query_scalar("SELECT name FROM pragma_index_list(?, ?) WHERE \"unique\" = 1")
            .bind(&table.name)
            .bind(&table.schema)
            .fetch_all(&mut *conn)
            .await
            .map_err(|e| classify(&e).context("cannot read the table's unique indexes"))?;
    let mut want: Vec<String> = keys.iter().map(|k| k.to_ascii_lowercase()).collect();
    want.sort();
    for ix in indexes {
        let mut cols: Vec<String> = sqlx::query_scalar("SELECT name FROM pragma_index_info(?, ?)")
            .bind(&ix)
            .bind(&table.schema)
            .fetch_all(&mut *conn)
            .await
            .map_err(|e| classify(&e))?;
        cols.iter_mut().for_each(|c| *c = c.to_ascii_lowercase());
        cols.sort();
        if cols == want {
            return Ok(true);
        }
    }
    Ok(false)
}
