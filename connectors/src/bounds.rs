//! Chunk bounds as a filter for databases that bind values with `?`
//! (MySQL, SQLite): the condition over the key columns and the values it
//! binds, in order. How each bound is converted to the key's type is the
//! database's own (`placeholder`).

use ferry_common::plan::Bounds;
use ferry_common::proto::{key_value, ChunkBounds, KeyColumn, KeyValue};

/// A value bound to a `?`.
#[derive(Debug, Clone, PartialEq)]
pub enum Bind {
    /// An integer.
    Int(i64),
    /// Text, converted by the statement where needed.
    Text(String),
}

impl From<&KeyValue> for Bind {
    fn from(v: &KeyValue) -> Self {
        match &v.kind {
            Some(key_value::Kind::Int(i)) => Bind::Int(*i),
            _ => Bind::Text(v.to_text()),
        }
    }
}

/// A chunk's key filter: the condition (None: every row) and its binds.
/// `column(k)` names a key column in the statement, `placeholder(k)` is the
/// `?` (with any conversion) for one of its bounds.
pub fn key_filter(
    key: &[KeyColumn],
    bounds: &ChunkBounds,
    column: impl Fn(&KeyColumn) -> String,
    placeholder: impl Fn(&KeyColumn) -> String,
) -> (Option<String>, Vec<Bind>) {
    if key.is_empty() {
        return (None, Vec::new());
    }
    let cols: Vec<String> = key.iter().map(&column).collect();
    let tuple = |items: &[String]| match items {
        [one] => one.clone(),
        many => format!("({})", many.join(", ")),
    };
    match bounds.shape() {
        Bounds::All => (None, Vec::new()),
        Bounds::NullKey => (
            Some(
                cols.iter()
                    .map(|c| format!("{c} IS NULL"))
                    .collect::<Vec<_>>()
                    .join(" OR "),
            ),
            Vec::new(),
        ),
        Bounds::Range { lo, hi } => {
            let mut conds = Vec::new();
            let mut binds = Vec::new();
            for (op, end) in [(">=", lo), ("<", hi)] {
                let Some(end) = end else { continue };
                let holes: Vec<String> = key.iter().map(&placeholder).collect();
                binds.extend(end.values.iter().map(Bind::from));
                conds.push(format!("{} {op} {}", tuple(&cols), tuple(&holes)));
            }
            if conds.is_empty() {
                conds = cols.iter().map(|c| format!("{c} IS NOT NULL")).collect();
            } else {
                // a row comparison decided by an earlier column ignores a
                // NULL in a later one: such rows belong to the NULL chunk
                conds.extend(cols.iter().skip(1).map(|c| format!("{c} IS NOT NULL")));
            }
            (Some(conds.join(" AND ")), binds)
        }
    }
}

/// `SELECT <columns> FROM (<query>) AS src [WHERE <key filter>]` and its
/// binds, with `quote` quoting identifiers the database's way.
pub fn chunk_select(
    query: &str,
    columns: &[&str],
    key: &[KeyColumn],
    bounds: &ChunkBounds,
    quote: impl Fn(&str) -> String,
    placeholder: impl Fn(&KeyColumn) -> String,
) -> (String, Vec<Bind>) {
    let list = columns
        .iter()
        .map(|c| format!("src.{}", quote(c)))
        .collect::<Vec<_>>()
        .join(", ");
    let (cond, binds) = key_filter(
        key,
        bounds,
        |k| format!("src.{}", quote(&k.name)),
        placeholder,
    );
    let mut sql = format!("SELECT {list} FROM ({query}) AS src");
    if let Some(c) = cond {
        sql.push_str(" WHERE ");
        sql.push_str(&c);
    }
    (sql, binds)
}
