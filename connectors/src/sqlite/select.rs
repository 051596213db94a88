//! The SQL of one chunk on SQLite: the user's query wrapped as `src`,
//! filtered to the chunk's key range with bound values (`?`).

use ferry_common::proto::{ChunkBounds, KeyColumn};

use super::sql::quote_ident;
pub use crate::bounds::Bind;

/// `SELECT <columns> FROM (<query>) AS src [WHERE <key filter>]` and its binds.
pub fn chunk_select(
    query: &str,
    columns: &[&str],
    key: &[KeyColumn],
    bounds: &ChunkBounds,
) -> (String, Vec<Bind>) {
    crate::bounds::chunk_select(query, columns, key, bounds, quote_ident, |_| {
        "?".to_string()
    })
}

/// The key filter on the target's key columns (verify, repair).
pub fn target_filter(key: &[KeyColumn], bounds: &ChunkBounds) -> (Option<String>, Vec<Bind>) {
    let copied = !key.is_empty() && key.iter().all(|k| !k.target.is_empty());
    crate::bounds::key_filter(
        if copied { key } else { &[] },
        bounds,
        |k| quote_ident(&k.target),
        |_| "?".to_string(),
    )
}
