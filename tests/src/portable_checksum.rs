//! Order-independent checksums that compare one table across database kinds
//! (PostgreSQL, MariaDB, SQLite): the same rows give the same `Checksum`
//! whichever database holds them.
//!
//! Each database renders every row as a list of texts (or NULL) in one
//! normalized form, in SQL; the harness hashes those bytes the same way for
//! all three, so only the rendering differs per database. For the `items`
//! table (`id, customer_id, amount, status, note, created_at`) the form is:
//!
//! | column | normalized text | PostgreSQL | MariaDB | SQLite |
//! |---|---|---|---|---|
//! | `id`, `customer_id` | base-10 integer, `-` only when negative, no leading zeros | `::text` | `CAST(… AS CHAR)` | `CAST(… AS TEXT)` |
//! | `amount` | exactly two decimals after a `.` (`12.30`, `0.00`); more decimals are rounded (the fixtures have none) | `round(…::numeric, 2)::text` | `CAST(CAST(… AS DECIMAL(30,2)) AS CHAR)` | `printf('%.2f', …)` |
//! | `status`, `note` | the stored text's UTF-8 bytes, unchanged (no trimming, no case or Unicode folding); NULL stays NULL | as is | as is | as is |
//! | `created_at` | the instant in UTC as `YYYY-MM-DD HH:MM:SS`: fractional seconds are dropped (the fixtures have none); a value without a zone (`timestamp`, `DATETIME`, SQLite text without an offset) is taken as UTC | `to_char(…, 'YYYY-MM-DD HH24:MI:SS')` with the session in UTC | `DATE_FORMAT(…, '%Y-%m-%d %H:%i:%s')` with the session in `+00:00` | `strftime('%Y-%m-%d %H:%M:%S', …)` (converts a `+HH:MM` suffix to UTC) |
//!
//! SQLite stores `amount` (`DECIMAL(12,2)`, NUMERIC affinity) as a REAL;
//! every fixture amount (below 100,000 with two decimals) prints back exactly.
//!
//! A row is hashed as the bytes `N` for each NULL and `V`, the value's length
//! (8 bytes, little endian) and its bytes for each value, in column order,
//! with 64-bit FNV-1a; the checksum is the row count, the sum of the first
//! column (the integer key) and the wrapping sum of the row hashes. A sum,
//! unlike an XOR, also sees a row that appears twice.

use futures::{Stream, StreamExt};
use sqlx::{ColumnIndex, Decode, Row};
use tokio_postgres::Client;

/// Order-independent summary of a table's rows, equal for equal rows in any
/// database kind (see the module docs for what is normalized).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Checksum {
    /// Number of rows.
    pub rows: i64,
    /// Sum of the first column (the integer key) over all rows.
    pub key_sum: i128,
    /// Wrapping sum of the rows' 64-bit FNV-1a hashes.
    pub digest: u64,
}

impl Checksum {
    /// Adds one row of normalized values (`None` is NULL); `what` names the
    /// query in a panic when the first value is not an integer.
    pub fn add_row(&mut self, values: &[Option<&[u8]>], what: &str) {
        let key =
            values.first().copied().flatten().unwrap_or_else(|| {
                panic!("{what}: a row's first value (the key) is missing or NULL")
            });
        let key_text = String::from_utf8_lossy(key);
        let key: i128 = key_text
            .parse()
            .unwrap_or_else(|e| panic!("{what}: the key {key_text:?} is not an integer: {e}"));
        self.rows += 1;
        self.key_sum += key;
        self.digest = self.digest.wrapping_add(row_hash(values));
    }
}

/// 64-bit FNV-1a of one row in the encoding the module docs describe.
fn row_hash(values: &[Option<&[u8]>]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut feed = |bytes: &[u8]| {
        for byte in bytes {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    for value in values {
        match value {
            None => feed(b"N"),
            Some(bytes) => {
                feed(b"V");
                feed(&(bytes.len() as u64).to_le_bytes());
                feed(bytes);
            }
        }
    }
    hash
}

/// The normalized `SELECT` of the `items` columns of `table` on PostgreSQL
/// (run with the session time zone set to UTC).
pub fn pg_items_select(table: &str) -> String {
    format!(
        "SELECT id::text, customer_id::text, round(amount::numeric, 2)::text, status, note, \
         to_char(created_at, 'YYYY-MM-DD HH24:MI:SS') FROM {table}"
    )
}

/// The normalized `SELECT` of the `items` columns of `table` on MariaDB (run
/// with the session time zone `+00:00`).
pub fn mariadb_items_select(table: &str) -> String {
    format!(
        "SELECT CAST(id AS CHAR), CAST(customer_id AS CHAR), \
         CAST(CAST(amount AS DECIMAL(30,2)) AS CHAR), status, note, \
         DATE_FORMAT(created_at, '%Y-%m-%d %H:%i:%s') FROM {table}"
    )
}

/// The normalized `SELECT` of the `items` columns of `table` on SQLite.
pub fn sqlite_items_select(table: &str) -> String {
    format!(
        "SELECT CAST(id AS TEXT), CAST(customer_id AS TEXT), printf('%.2f', amount), status, \
         note, strftime('%Y-%m-%d %H:%M:%S', created_at) FROM {table}"
    )
}

/// The `Checksum` of PostgreSQL `table` (e.g. `public.items`) with the
/// `items` columns, comparable with MariaDB's and SQLite's. Runs in a
/// transaction of its own on `client` (`SET LOCAL TIME ZONE 'UTC'`).
pub async fn pg_items_checksum(client: &Client, table: &str) -> Checksum {
    pg_checksum(client, &pg_items_select(table)).await
}

/// The `Checksum` of the rows of `sql` on PostgreSQL: every column must be
/// text in the normalized form, the first an integer key. Runs in a
/// transaction of its own on `client` with the session time zone in UTC.
pub async fn pg_checksum(client: &Client, sql: &str) -> Checksum {
    client
        .batch_execute("BEGIN; SET LOCAL TIME ZONE 'UTC'")
        .await
        .unwrap_or_else(|e| panic!("begin a checksum transaction: {e}"));
    let rows = client
        .query_raw(sql, std::iter::empty::<&str>())
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let mut rows = std::pin::pin!(rows);
    let mut sum = Checksum::default();
    while let Some(row) = rows.next().await {
        let row = row.unwrap_or_else(|e| panic!("{sql}: {e}"));
        let values: Vec<Option<&str>> = (0..row.len())
            .map(|i| {
                row.try_get(i)
                    .unwrap_or_else(|e| panic!("{sql}: column {i} is not text: {e}"))
            })
            .collect();
        let bytes: Vec<Option<&[u8]>> = values.iter().map(|v| v.map(str::as_bytes)).collect();
        sum.add_row(&bytes, sql);
    }
    client
        .batch_execute("COMMIT")
        .await
        .unwrap_or_else(|e| panic!("end a checksum transaction: {e}"));
    sum
}

/// The `Checksum` of a stream of sqlx rows (MariaDB's text protocol or
/// SQLite), each value taken as the bytes the database sends for it.
pub(crate) async fn sqlx_checksum<R, S>(rows: S, sql: &str) -> Checksum
where
    R: Row,
    usize: ColumnIndex<R>,
    for<'r> Option<Vec<u8>>: Decode<'r, R::Database>,
    S: Stream<Item = Result<R, sqlx::Error>>,
{
    let mut rows = std::pin::pin!(rows);
    let mut sum = Checksum::default();
    while let Some(row) = rows.next().await {
        let row = row.unwrap_or_else(|e| panic!("{sql}: {e}"));
        let values: Vec<Option<Vec<u8>>> = (0..row.len())
            .map(|i| {
                row.try_get_unchecked(i)
                    .unwrap_or_else(|e| panic!("{sql}: reading column {i}: {e}"))
            })
            .collect();
        let bytes: Vec<Option<&[u8]>> = values.iter().map(|v| v.as_deref()).collect();
        sum.add_row(&bytes, sql);
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sum_of(rows: &[Vec<Option<&str>>]) -> Checksum {
        let mut sum = Checksum::default();
        for row in rows {
            let bytes: Vec<Option<&[u8]>> = row.iter().map(|v| v.map(str::as_bytes)).collect();
            sum.add_row(&bytes, "test");
        }
        sum
    }

    #[test]
    fn order_free_but_sees_nulls_duplicates_and_column_shifts() {
        let a = vec![Some("1"), Some("x"), None];
        let b = vec![Some("2"), Some(""), Some("y")];
        assert_eq!(
            sum_of(&[a.clone(), b.clone()]),
            sum_of(&[b.clone(), a.clone()])
        );
        assert_ne!(
            sum_of(std::slice::from_ref(&a)),
            sum_of(&[a.clone(), a.clone()])
        );
        // NULL differs from empty text, and a value cannot slide into the next column
        assert_ne!(
            sum_of(&[vec![Some("1"), None]]),
            sum_of(&[vec![Some("1"), Some("")]])
        );
        assert_ne!(
            sum_of(&[vec![Some("1"), Some("ab"), Some("c")]]),
            sum_of(&[vec![Some("1"), Some("a"), Some("bc")]])
        );
        assert_eq!(sum_of(&[a, b]).key_sum, 3);
    }
}
