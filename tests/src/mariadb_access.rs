//! Who may do what on a test MariaDB server: accounts, grants, revokes, a
//! server-wide read-only switch, and running SQL as Ferry's own account to
//! see what it is refused. For bad-input tests ("the target cannot be
//! written": nothing lands, the error names the connection).
//!
//! MariaDB privileges only add up: a grant on `*.*` covers every database
//! and table, and a table-level revoke cannot take a part of it away. A user
//! that must not write one table is made with `create_user` and grants on the
//! databases or tables it may use, never `*.*`.

use sqlx::mysql::MySqlConnection;
use sqlx::{AssertSqlSafe, Connection};

use crate::mariadb::{close, quote_ident, MariaDb, MARIADB_PASSWORD, MARIADB_USER};

/// `'user'@'%'`: every account the harness makes may log in from any host
/// (the server listens on 127.0.0.1 only).
fn account(user: &str) -> String {
    format!("'{}'@'%'", user.replace('\'', "''"))
}

impl MariaDb {
    /// Creates `user` with `password` and runs `GRANT <g> TO user` for each
    /// of `grants` (`"SELECT ON src.*"`, `"SELECT, INSERT ON dst.items"`,
    /// `"ALL PRIVILEGES ON *.*"`); its URL is `url_as(user, password, db)`.
    pub async fn create_user(&self, user: &str, password: &str, grants: &[&str]) {
        let account = account(user);
        let mut sql = format!(
            "CREATE USER {account} IDENTIFIED BY '{}';",
            password.replace('\'', "''")
        );
        for grant in grants {
            sql.push_str(&format!(" GRANT {grant} TO {account};"));
        }
        self.exec("", &sql).await;
    }

    /// `GRANT <what> TO user` (`"INSERT ON dst.items"`).
    pub async fn grant(&self, user: &str, what: &str) {
        self.exec("", &format!("GRANT {what} TO {}", account(user)))
            .await;
    }

    /// `REVOKE <what> FROM user` (`"INSERT, UPDATE, DELETE ON dst.*"`); takes
    /// effect for the user's next statement, open sessions included.
    pub async fn revoke(&self, user: &str, what: &str) {
        self.exec("", &format!("REVOKE {what} FROM {}", account(user)))
            .await;
    }

    /// Makes the whole server read-only for Ferry's account (`SET GLOBAL
    /// read_only`): every write it tries fails with error 1290
    /// (ER_OPTION_PREVENTS_STATEMENT), temporary tables excepted; the admin
    /// still writes. `false` lifts it.
    pub async fn set_read_only(&self, on: bool) {
        let value = if on { "ON" } else { "OFF" };
        self.exec("", &format!("SET GLOBAL read_only = {value}"))
            .await;
    }

    /// Runs `sql` in database `db` as Ferry's account (`url(db)`) and
    /// returns MariaDB's error, so a test can assert what it is refused.
    pub async fn exec_as_ferry(&self, db: &str, sql: &str) -> Result<(), sqlx::Error> {
        let options = self
            .connect_options(db)
            .username(MARIADB_USER)
            .password(MARIADB_PASSWORD);
        let mut conn = MySqlConnection::connect_with(&options).await?;
        let result = sqlx::raw_sql(AssertSqlSafe(sql)).execute(&mut conn).await;
        close(conn).await;
        result.map(|_| ())
    }

    /// Drops database `name` if it exists.
    pub async fn drop_db(&self, name: &str) {
        let sql = format!("DROP DATABASE IF EXISTS {}", quote_ident(name));
        self.exec("", &sql).await;
    }
}

/// The MariaDB error number of `error` (`1142` for a refused command on a
/// table, `1290` for read-only), or `None` when it is not a server error.
pub fn error_number(error: &sqlx::Error) -> Option<u16> {
    error
        .as_database_error()
        .and_then(|e| e.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>())
        .map(|e| e.number())
}
