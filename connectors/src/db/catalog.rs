//! What the planner reads from any database: a query's columns, a table's
//! columns, the key, a sample of it, and Ferry's own tables in the target.

use ferry_common::errors::DbFailure;
use ferry_common::ident::{NamePart, QualifiedName};
use ferry_common::proto::{KeyColumn, TableRef};

use super::Conn;
use crate::columns::{SourceColumn, TableColumn};
use crate::kind::DbKind;
use crate::sample::KeySample;
use crate::{mysql, postgres, sqlite};

/// A query's output columns with Ferry's types, without reading its rows.
pub async fn describe_query(conn: &mut Conn, query: &str) -> Result<Vec<SourceColumn>, DbFailure> {
    match conn {
        Conn::Postgres(c) => Ok(postgres::describe::describe_query(c, query)
            .await?
            .into_iter()
            .map(|q| SourceColumn {
                ty: postgres::types::ferry_type(&q.full_type),
                db_type: q.full_type,
                origin: None,
                name: q.name,
            })
            .collect()),
        Conn::MySql(c, _) => mysql::describe::describe_query(c, query).await,
        Conn::Sqlite(c, _) => sqlite::describe::describe_query(c, query).await,
    }
}

/// The table a name as typed means, spelled exactly; None when none exists.
pub async fn resolve_table(
    conn: &mut Conn,
    name: &QualifiedName,
) -> Result<Option<TableRef>, DbFailure> {
    match conn {
        Conn::Postgres(c) => postgres::describe::resolve_table(c, name).await,
        Conn::MySql(c, _) => mysql::describe::resolve_table(c, name).await,
        Conn::Sqlite(c, _) => sqlite::describe::resolve_table(c, name).await,
    }
}

/// The indexes of an empty (or to be `emptied`) target table that appends
/// from several streams leave larger than one stream would (PostgreSQL's
/// single-column B-trees; nothing for the other databases, not measured).
pub async fn split_prone_indexes(
    conn: &mut Conn,
    table: &TableRef,
    emptied: bool,
) -> Result<Vec<String>, DbFailure> {
    match conn {
        Conn::Postgres(c) => postgres::describe::split_prone_indexes(c, table, emptied).await,
        Conn::MySql(..) | Conn::Sqlite(..) => Ok(Vec::new()),
    }
}

/// A table's insertable columns, in order, with Ferry's types.
pub async fn describe_table(
    conn: &mut Conn,
    table: &TableRef,
) -> Result<Vec<TableColumn>, DbFailure> {
    match conn {
        Conn::Postgres(c) => Ok(postgres::describe::describe_table(c, table)
            .await?
            .into_iter()
            .map(|t| TableColumn {
                ty: postgres::types::ferry_type(&t.full_type),
                db_type: t.full_type,
                base_type: t.base_type,
                nullable: true,
                name: t.name,
            })
            .collect()),
        Conn::MySql(c, _) => mysql::describe::describe_table(c, table).await,
        Conn::Sqlite(c, _) => sqlite::describe::describe_table(c, table).await,
    }
}

/// The query's output column that is the single-column primary key of the
/// one table the query reads, if there is one.
pub async fn primary_key(
    conn: &mut Conn,
    query: &str,
    cols: &[SourceColumn],
) -> Result<Option<String>, DbFailure> {
    match conn {
        Conn::Postgres(c) => {
            let described = postgres::describe::describe_query(c, query).await?;
            // a composite key is split on in PostgreSQL → PostgreSQL jobs only
            let key = postgres::describe::primary_key(c, &described).await?;
            Ok(match <[String; 1]>::try_from(key) {
                Ok([one]) => Some(one),
                Err(_) => None,
            })
        }
        Conn::MySql(c, _) => mysql::describe::primary_key(c, cols).await,
        Conn::Sqlite(c, _) => sqlite::describe::primary_key(c, cols).await,
    }
}

/// The rows `query` returns.
pub async fn count_rows(conn: &mut Conn, query: &str) -> Result<u64, DbFailure> {
    match conn {
        Conn::Postgres(c) => postgres::sample::count_rows(c, query).await,
        Conn::MySql(c, _) => mysql::sample::count_rows(c, query).await,
        Conn::Sqlite(c, _) => sqlite::sample::count_rows(c, query).await,
    }
}

/// A sample of `query`'s `key` for chunks of about `chunk_size` rows.
pub async fn sample_keys(
    conn: &mut Conn,
    query: &str,
    key: &KeyColumn,
    chunk_size: u64,
) -> Result<KeySample, DbFailure> {
    match conn {
        Conn::Postgres(c) => {
            postgres::sample::sample_keys(c, query, std::slice::from_ref(key), chunk_size, false)
                .await
        }
        Conn::MySql(c, _) => mysql::sample::sample_keys(c, query, key, chunk_size).await,
        Conn::Sqlite(c, _) => sqlite::sample::sample_keys(c, query, key, chunk_size).await,
    }
}

/// Creates Ferry's ledger and rejects tables in the target when missing:
/// schema `schema` in PostgreSQL, database `schema` on a MySQL server,
/// tables `schema_ledger` and `schema_rejects` in a SQLite file.
pub async fn ensure_ledger(conn: &mut Conn, schema: &str) -> Result<(), DbFailure> {
    match conn {
        Conn::Postgres(c) => postgres::ledger::ensure(c, schema).await,
        Conn::MySql(c, _) => mysql::ledger::ensure(c, schema).await,
        Conn::Sqlite(c, _) => sqlite::ledger::ensure(c, schema).await,
    }
}

/// Whether `table` has a unique index (or primary key) on exactly `keys`.
pub async fn has_unique_index(
    conn: &mut Conn,
    table: &TableRef,
    keys: &[String],
) -> Result<bool, DbFailure> {
    match conn {
        Conn::Postgres(c) => postgres::modes::has_unique_index(c, table, keys).await,
        Conn::MySql(c, _) => mysql::describe::has_unique_index(c, table, keys).await,
        Conn::Sqlite(c, _) => sqlite::describe::has_unique_index(c, table, keys).await,
    }
}

/// Fails, naming the connection, when a SQLite target file cannot be written.
pub async fn check_writable(conn: &mut Conn, name: &str) -> Result<(), DbFailure> {
    match conn {
        Conn::Sqlite(c, _) => sqlite::session::check_writable(c, name).await,
        _ => Ok(()),
    }
}

/// Finds the column a name as typed means among `names`: PostgreSQL folds
/// an unquoted name to lower case and matches exactly; MySQL and SQLite
/// match column names without regard to case. None when nothing matches
/// (or, case aside, more than one does).
pub fn find_column<'a>(kind: DbKind, part: &NamePart, names: &'a [String]) -> Option<&'a str> {
    match kind {
        DbKind::Postgres => {
            let resolved = postgres::describe::resolve_part(part);
            names.iter().find(|n| **n == resolved).map(String::as_str)
        }
        DbKind::MySql | DbKind::Sqlite => {
            if let Some(exact) = names.iter().find(|n| **n == part.text) {
                return Some(exact);
            }
            let mut found = names
                .iter()
                .filter(|n| n.to_lowercase() == part.text.to_lowercase());
            match (found.next(), found.next()) {
                (Some(one), None) => Some(one),
                _ => None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_common::ident::parse_column;

    #[test]
    fn columns_match_as_each_database_matches_them() {
        let names = vec!["id".to_string(), "Amount".to_string()];
        let p = |s: &str| parse_column(s).expect("name");
        assert_eq!(find_column(DbKind::Postgres, &p("ID"), &names), Some("id"));
        assert_eq!(find_column(DbKind::Postgres, &p("amount"), &names), None);
        assert_eq!(
            find_column(DbKind::Postgres, &p("\"Amount\""), &names),
            Some("Amount")
        );
        assert_eq!(
            find_column(DbKind::MySql, &p("amount"), &names),
            Some("Amount")
        );
        assert_eq!(find_column(DbKind::Sqlite, &p("ID"), &names), Some("id"));
        let twins = vec!["a".to_string(), "A".to_string()];
        assert_eq!(find_column(DbKind::Sqlite, &p("a"), &twins), Some("a"));
        assert_eq!(find_column(DbKind::Sqlite, &p("\"A\""), &twins), Some("A"));
    }
}
