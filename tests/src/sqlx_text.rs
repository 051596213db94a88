//! Rows read with `sqlx` (MariaDB, SQLite) as text, so tests can compare
//! values across databases and assert on them.
//!
//! Every value is taken as the bytes the database sends for it (MariaDB's
//! text protocol, SQLite's own conversion to text) without a type check, so
//! numbers, dates and decimals come back in the database's canonical text
//! form and NULL stays `None`.

use sqlx::{ColumnIndex, Decode, Row};

/// One row's values as text; `None` is SQL NULL.
pub type TextRow = Vec<Option<String>>;

/// The values of `rows` as text. `sql` names the query in a panic: a value
/// that is not UTF-8 (a binary string or BLOB) panics, select `HEX(col)`.
pub fn rows_as_text<R>(rows: &[R], sql: &str) -> Vec<TextRow>
where
    R: Row,
    usize: ColumnIndex<R>,
    for<'r> Option<Vec<u8>>: Decode<'r, R::Database>,
{
    rows.iter()
        .map(|row| (0..row.len()).map(|i| value_as_text(row, i, sql)).collect())
        .collect()
}

/// The one integer that `sql` returned as `rows` (one row, one column, not
/// NULL, an integer in its text form); panics naming the query otherwise.
pub fn single_i64<R>(rows: &[R], sql: &str) -> i64
where
    R: Row,
    usize: ColumnIndex<R>,
    for<'r> Option<Vec<u8>>: Decode<'r, R::Database>,
{
    let [row] = rows else {
        panic!("{sql}: expected one row, got {}", rows.len());
    };
    assert!(row.len() >= 1, "{sql}: the row has no column");
    let text = value_as_text(row, 0, sql).unwrap_or_else(|| panic!("{sql}: the value is NULL"));
    text.trim()
        .parse()
        .unwrap_or_else(|e| panic!("{sql}: {text:?} is not an i64: {e}"))
}

fn value_as_text<R>(row: &R, i: usize, sql: &str) -> Option<String>
where
    R: Row,
    usize: ColumnIndex<R>,
    for<'r> Option<Vec<u8>>: Decode<'r, R::Database>,
{
    let bytes: Option<Vec<u8>> = row
        .try_get_unchecked(i)
        .unwrap_or_else(|e| panic!("{sql}: reading column {i}: {e}"));
    bytes.map(|bytes| {
        String::from_utf8(bytes).unwrap_or_else(|_| {
            panic!("{sql}: column {i} is not UTF-8 text; select HEX() of it instead")
        })
    })
}
