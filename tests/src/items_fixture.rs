//! The `items` test table on MariaDB and SQLite, mirroring PostgreSQL's
//! (`data.rs`): the same columns in each database's types, the same
//! deterministic rows generated inside the server, and a `Checksum`
//! (`portable_checksum`) that equals PostgreSQL's for the same rows.
//!
//! | column | PostgreSQL | MariaDB | SQLite |
//! |---|---|---|---|
//! | `id` | `bigint primary key` | `BIGINT PRIMARY KEY` | `INTEGER PRIMARY KEY` |
//! | `customer_id` | `int not null` | `INT NOT NULL` | `INTEGER NOT NULL` |
//! | `amount` | `numeric(12,2) not null` | `DECIMAL(12,2) NOT NULL` | `DECIMAL(12,2) NOT NULL` (stored as REAL) |
//! | `status` | `text not null` | `TEXT NOT NULL` | `TEXT NOT NULL` |
//! | `note` | `text` | `TEXT NULL` | `TEXT` |
//! | `created_at` | `timestamptz not null` | `TIMESTAMP(6) NOT NULL` (an instant, like `timestamptz`) | `TIMESTAMPTZ NOT NULL`: text `2024-01-01 00:00:01+00:00`, as Ferry's SQLite writer stores it |
//!
//! Row `g` (1..=rows) has id `g`, customer `(g * 7919) % 100000`, amount
//! `((g * 37) % 10000000) / 100`, status `new`/`paid`/`shipped`/`cancelled`
//! by `g % 4`, a NULL note every 7th row, an awkward one (tab, newline,
//! backslash, quote, `ü`) every 1000th, else `note g`, and `created_at`
//! 2024-01-01 00:00:00 UTC plus `g` seconds.

use crate::mariadb::{close, MariaDb};
use crate::portable_checksum::{
    mariadb_items_select, sqlite_items_select, sqlx_checksum, Checksum,
};
use crate::sqlite_file::SqliteFile;

/// Columns of `items` on MariaDB.
pub const MARIADB_ITEMS_COLUMNS: &str = "id BIGINT PRIMARY KEY, \
     customer_id INT NOT NULL, \
     amount DECIMAL(12,2) NOT NULL, \
     status TEXT NOT NULL, \
     note TEXT NULL, \
     created_at TIMESTAMP(6) NOT NULL";

/// Columns of `items` on SQLite.
pub const SQLITE_ITEMS_COLUMNS: &str = "id INTEGER PRIMARY KEY, \
     customer_id INTEGER NOT NULL, \
     amount DECIMAL(12,2) NOT NULL, \
     status TEXT NOT NULL, \
     note TEXT, \
     created_at TIMESTAMPTZ NOT NULL";

/// The columns every fill writes, in order.
const ITEMS_INSERT: &str = "(id, customer_id, amount, status, note, created_at)";

/// `INSERT … SELECT` of rows 1..=`rows` into MariaDB `table`, from the
/// `seq_1_to_N` table of the Sequence engine (needs a current database).
/// Control characters come from `CHAR()` so `NO_BACKSLASH_ESCAPES` cannot
/// change the text.
fn mariadb_fill_sql(table: &str, rows: u64) -> String {
    format!(
        "INSERT INTO {table} {ITEMS_INSERT} \
         SELECT seq, (seq * 7919) % 100000, ((seq * 37) % 10000000) / 100, \
                ELT(seq % 4 + 1, 'new', 'paid', 'shipped', 'cancelled'), \
                CASE WHEN seq % 7 = 0 THEN NULL \
                     WHEN seq % 1000 = 1 THEN CONCAT('tab', CHAR(9 USING utf8mb4), 'here, nl', \
                         CHAR(10 USING utf8mb4), 'there, bs', CHAR(92 USING utf8mb4), \
                         ' quote'' \u{fc}ber ', seq) \
                     ELSE CONCAT('note ', seq) END, \
                TIMESTAMP '2024-01-01 00:00:00' + INTERVAL seq SECOND \
         FROM seq_1_to_{rows}"
    )
}

/// `INSERT … SELECT` of rows 1..=`rows` into SQLite `table`, from a
/// recursive CTE.
fn sqlite_fill_sql(table: &str, rows: u64) -> String {
    format!(
        "INSERT INTO {table} {ITEMS_INSERT} \
         WITH RECURSIVE s (g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s WHERE g < {rows}) \
         SELECT g, (g * 7919) % 100000, ((g * 37) % 10000000) / 100.0, \
                CASE g % 4 WHEN 0 THEN 'new' WHEN 1 THEN 'paid' WHEN 2 THEN 'shipped' \
                    ELSE 'cancelled' END, \
                CASE WHEN g % 7 = 0 THEN NULL \
                     WHEN g % 1000 = 1 THEN 'tab' || char(9) || 'here, nl' || char(10) \
                         || 'there, bs' || char(92) || ' quote'' \u{fc}ber ' || g \
                     ELSE 'note ' || g END, \
                strftime('%Y-%m-%d %H:%M:%S', '2024-01-01 00:00:00', '+' || g || ' seconds') \
                    || '+00:00' \
         FROM s"
    )
}

impl MariaDb {
    /// Creates `table` (`items`, or `db2.items`) in database `db` with the
    /// `items` columns (InnoDB).
    pub async fn create_items(&self, db: &str, table: &str) {
        let sql = format!("CREATE TABLE {table} ({MARIADB_ITEMS_COLUMNS}) ENGINE=InnoDB");
        self.exec(db, &sql).await;
    }

    /// Like `create_items` without the primary key (nor any unique index):
    /// a chunk landing twice shows as duplicate rows, not a key violation.
    pub async fn create_items_without_key(&self, db: &str, table: &str) {
        let columns = MARIADB_ITEMS_COLUMNS.replace(" PRIMARY KEY", "");
        let sql = format!("CREATE TABLE {table} ({columns}) ENGINE=InnoDB");
        self.exec(db, &sql).await;
    }

    /// Inserts rows 1..=`rows` (see the module docs) into `table` in one
    /// statement, then `ANALYZE TABLE`s it.
    pub async fn fill_items(&self, db: &str, table: &str, rows: u64) {
        if rows > 0 {
            self.exec(db, &mariadb_fill_sql(table, rows)).await;
        }
        self.exec(db, &format!("ANALYZE TABLE {table}")).await;
    }

    /// Creates `items` in database `db` and fills it with `rows` rows.
    pub async fn prepare_items(&self, db: &str, rows: u64) {
        self.create_items(db, "items").await;
        self.fill_items(db, "items", rows).await;
    }

    /// The `Checksum` of `table` in `db` with the `items` columns,
    /// comparable with PostgreSQL's and SQLite's.
    pub async fn items_checksum(&self, db: &str, table: &str) -> Checksum {
        self.checksum(db, &mariadb_items_select(table)).await
    }

    /// The `Checksum` of the rows of `sql` in `db`, each value in its text
    /// form, the first an integer key; the session's time zone is `+00:00`.
    pub async fn checksum(&self, db: &str, sql: &str) -> Checksum {
        let mut conn = self.connect(db).await;
        sqlx::raw_sql("SET time_zone = '+00:00'")
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("set the session time zone: {e}"));
        let sum = {
            let rows = sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).fetch(&mut conn);
            sqlx_checksum(rows, sql).await
        };
        close(conn).await;
        sum
    }
}

impl SqliteFile {
    /// Creates `table` with the `items` columns.
    pub async fn create_items(&self, table: &str) {
        self.exec(&format!("CREATE TABLE {table} ({SQLITE_ITEMS_COLUMNS})"))
            .await;
    }

    /// Like `create_items` without the primary key (a plain rowid table).
    pub async fn create_items_without_key(&self, table: &str) {
        let columns = SQLITE_ITEMS_COLUMNS.replace("INTEGER PRIMARY KEY", "INTEGER");
        self.exec(&format!("CREATE TABLE {table} ({columns})"))
            .await;
    }

    /// Inserts rows 1..=`rows` (see the module docs) into `table` in one
    /// statement, then `ANALYZE`s the file.
    pub async fn fill_items(&self, table: &str, rows: u64) {
        if rows > 0 {
            self.exec(&sqlite_fill_sql(table, rows)).await;
        }
        self.exec("ANALYZE").await;
    }

    /// Creates `items` and fills it with `rows` rows.
    pub async fn prepare_items(&self, rows: u64) {
        self.create_items("items").await;
        self.fill_items("items", rows).await;
    }

    /// The `Checksum` of `table` with the `items` columns, comparable with
    /// PostgreSQL's and MariaDB's.
    pub async fn items_checksum(&self, table: &str) -> Checksum {
        self.checksum(&sqlite_items_select(table)).await
    }

    /// The `Checksum` of the rows of `sql`, each value in SQLite's text form
    /// of it, the first an integer key.
    pub async fn checksum(&self, sql: &str) -> Checksum {
        let mut conn = self.connect().await;
        let rows = sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).fetch(&mut conn);
        sqlx_checksum(rows, sql).await
    }
}
