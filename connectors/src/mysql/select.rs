//! The SQL of one chunk on MySQL, built from the typed plan: the user's query
//! wrapped as `src`, filtered to the chunk's key range with bound values
//! (`?`), each converted to the key column's type where MySQL would compare
//! it otherwise as floating point or as a string.

use ferry_common::proto::{ChunkBounds, KeyColumn};

use super::sql::quote_ident;
use super::types::ferry_type;
pub use crate::bounds::Bind;
use crate::types::FerryType;

/// The placeholder for a bound of MySQL type `db_type`.
pub fn placeholder(db_type: &str) -> String {
    match ferry_type(db_type) {
        FerryType::Decimal { precision, scale } => format!(
            "CAST(? AS DECIMAL({}, {}))",
            precision.unwrap_or(65),
            scale.unwrap_or(30)
        ),
        FerryType::Date => "CAST(? AS DATE)".into(),
        FerryType::Timestamp | FerryType::TimestampTz => "CAST(? AS DATETIME(6))".into(),
        FerryType::Time => "CAST(? AS TIME(6))".into(),
        FerryType::Float { .. } => "CAST(? AS DOUBLE)".into(),
        _ => "?".into(),
    }
}

/// The key filter on the target's key columns (verify, repair).
pub fn target_filter(key: &[KeyColumn], bounds: &ChunkBounds) -> (Option<String>, Vec<Bind>) {
    let copied = !key.is_empty() && key.iter().all(|k| !k.target.is_empty());
    crate::bounds::key_filter(
        if copied { key } else { &[] },
        bounds,
        |k| quote_ident(&k.target),
        |k| placeholder(&k.target_type),
    )
}

/// `SELECT <columns> FROM (<query>) AS src [WHERE <key filter>]` and its binds.
pub fn chunk_select(
    query: &str,
    columns: &[&str],
    key: &[KeyColumn],
    bounds: &ChunkBounds,
) -> (String, Vec<Bind>) {
    crate::bounds::chunk_select(query, columns, key, bounds, quote_ident, |k| {
        placeholder(&k.r#type)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_common::proto::{KeyTuple, KeyValue};

    #[test]
    fn binds_bounds_with_the_keys_type() {
        let key = [KeyColumn {
            name: "amount".into(),
            r#type: "decimal(12,2)".into(),
            ..Default::default()
        }];
        let b = ChunkBounds::range(Some(KeyTuple::of(vec![KeyValue::from_text("10.5")])), None);
        let (sql, binds) = chunk_select("SELECT * FROM t", &["amount"], &key, &b);
        assert_eq!(
            sql,
            "SELECT src.`amount` FROM (SELECT * FROM t) AS src WHERE src.`amount` >= CAST(? AS DECIMAL(12, 2))"
        );
        assert_eq!(binds, vec![Bind::Text("10.5".into())]);
    }
}
