//! Which database a connection URL names, by its scheme.

use ferry_common::errors::DbFailure;

/// The databases Ferry speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DbKind {
    /// PostgreSQL (`postgres://`, `postgresql://`).
    Postgres,
    /// MySQL or MariaDB (`mysql://`, `mariadb://`).
    MySql,
    /// A SQLite file (`sqlite:PATH`, `sqlite:///abs/path`).
    Sqlite,
}

impl DbKind {
    /// The kind of database `url` names; an unsupported scheme is an error
    /// naming the connection and the schemes Ferry knows.
    pub fn of_url(connection: &str, url: &str) -> Result<DbKind, DbFailure> {
        let scheme = url
            .split_once(':')
            .map(|(s, _)| s.to_ascii_lowercase())
            .unwrap_or_default();
        match scheme.as_str() {
            "postgres" | "postgresql" => Ok(DbKind::Postgres),
            "mysql" | "mariadb" => Ok(DbKind::MySql),
            "sqlite" => Ok(DbKind::Sqlite),
            // libpq's key=value form
            _ if url.contains('=') && !url.contains("://") => Ok(DbKind::Postgres),
            other => Err(DbFailure::permanent(format!(
                "connection '{connection}' has an unsupported URL scheme '{other}': use postgres://, mysql://, mariadb:// or sqlite:PATH"
            ))),
        }
    }

    /// The database's name, for messages.
    pub fn name(self) -> &'static str {
        match self {
            DbKind::Postgres => "PostgreSQL",
            DbKind::MySql => "MySQL",
            DbKind::Sqlite => "SQLite",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemes_name_the_database() {
        assert_eq!(
            DbKind::of_url("a", "postgres://h/db").unwrap(),
            DbKind::Postgres
        );
        assert_eq!(
            DbKind::of_url("a", "postgresql://h/db").unwrap(),
            DbKind::Postgres
        );
        assert_eq!(
            DbKind::of_url("a", "host=h dbname=x").unwrap(),
            DbKind::Postgres
        );
        assert_eq!(
            DbKind::of_url("a", "mariadb://root@h:3306/d").unwrap(),
            DbKind::MySql
        );
        assert_eq!(DbKind::of_url("a", "MYSQL://h/d").unwrap(), DbKind::MySql);
        assert_eq!(
            DbKind::of_url("a", "sqlite:/tmp/x.db").unwrap(),
            DbKind::Sqlite
        );
        let e = DbKind::of_url("lake", "oracle://h/x").unwrap_err();
        assert!(
            e.message.contains("'lake'") && e.message.contains("oracle"),
            "{}",
            e.message
        );
    }
}
