//! Conveniences on the typed plan messages (`plan.proto`): key values, chunk
//! bounds and table references, and how they read for people.

use std::fmt;

use crate::proto::{
    chunk_bounds, key_value, AllRows, ChunkBounds, KeyColumn, KeyRange, KeyTuple, KeyValue,
    NullKey, TableRef,
};

/// Version of the job and chunk records this build writes: 3 since chunk
/// bounds are stored once per page of a plan and chunk records hold only
/// state (2: typed plans, every chunk's whole record under its job).
pub const STORE_FORMAT: u32 = 3;
/// Oldest store format this build reads and continues: 2 (typed plans);
/// records of formats 0 and 1 hold SQL text and are refused.
pub const OLDEST_STORE_FORMAT: u32 = 2;
/// Version of the worker protocol this build speaks: 3 since workers read
/// a chunk in the job's exported snapshot (2: typed chunks).
pub const WORKER_PROTOCOL: u32 = 3;
/// Oldest worker protocol a coordinator of this build leases to: 2 (typed
/// chunks). A protocol-2 worker ignores the snapshot, so a SNAPSHOT job
/// whose chunk it reads is marked not consistent.
pub const OLDEST_WORKER_PROTOCOL: u32 = 2;
/// First worker protocol that reads chunks in the job's exported snapshot.
pub const SNAPSHOT_WORKER_PROTOCOL: u32 = 3;

impl KeyValue {
    /// An integer key value.
    pub fn from_int(v: i64) -> Self {
        Self {
            kind: Some(key_value::Kind::Int(v)),
        }
    }

    /// A key value in its database's canonical text form.
    pub fn from_text(v: impl Into<String>) -> Self {
        Self {
            kind: Some(key_value::Kind::Text(v.into())),
        }
    }

    /// The value as text (integers in decimal), as a database reads it back
    /// when converting to the key column's type.
    pub fn to_text(&self) -> String {
        match &self.kind {
            Some(key_value::Kind::Int(v)) => v.to_string(),
            Some(key_value::Kind::Text(v)) => v.clone(),
            None => String::new(),
        }
    }
}

impl fmt::Display for KeyValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Some(key_value::Kind::Int(v)) => write!(f, "{v}"),
            Some(key_value::Kind::Text(v)) => write!(f, "{v:?}"),
            None => f.write_str("?"),
        }
    }
}

impl KeyTuple {
    /// A tuple of the given values.
    pub fn of(values: Vec<KeyValue>) -> Self {
        Self { values }
    }
}

impl fmt::Display for KeyTuple {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.values.as_slice() {
            [one] => write!(f, "{one}"),
            many => {
                f.write_str("(")?;
                for (i, v) in many.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{v}")?;
                }
                f.write_str(")")
            }
        }
    }
}

/// The shape of a chunk's bounds, borrowed from a `ChunkBounds`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Bounds<'a> {
    /// Every row.
    All,
    /// Rows whose key is NULL.
    NullKey,
    /// `lo <= key < hi`, either end open when absent.
    Range {
        /// Inclusive lower bound.
        lo: Option<&'a KeyTuple>,
        /// Exclusive upper bound.
        hi: Option<&'a KeyTuple>,
    },
}

impl ChunkBounds {
    /// Every row.
    pub fn all() -> Self {
        Self {
            kind: Some(chunk_bounds::Kind::All(AllRows {})),
        }
    }

    /// Rows whose key is NULL.
    pub fn null_key() -> Self {
        Self {
            kind: Some(chunk_bounds::Kind::NullKey(NullKey {})),
        }
    }

    /// `lo <= key < hi`; a missing end is open.
    pub fn range(lo: Option<KeyTuple>, hi: Option<KeyTuple>) -> Self {
        Self {
            kind: Some(chunk_bounds::Kind::Range(KeyRange { lo, hi })),
        }
    }

    /// The bounds as an enum to match on; unset bounds (a record without
    /// them) read as every row.
    pub fn shape(&self) -> Bounds<'_> {
        match &self.kind {
            None | Some(chunk_bounds::Kind::All(_)) => Bounds::All,
            Some(chunk_bounds::Kind::NullKey(_)) => Bounds::NullKey,
            Some(chunk_bounds::Kind::Range(r)) => Bounds::Range {
                lo: r.lo.as_ref(),
                hi: r.hi.as_ref(),
            },
        }
    }

    /// The bounds for people: `id in [10, 20)`, `id IS NULL`, `all rows`.
    pub fn describe(&self, key: &[KeyColumn]) -> String {
        let names = match key {
            [one] => one.name.clone(),
            many => format!(
                "({})",
                many.iter()
                    .map(|k| k.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        match self.shape() {
            Bounds::All => "all rows".to_string(),
            Bounds::NullKey => format!("{names} IS NULL"),
            Bounds::Range { lo, hi } => format!(
                "{names} in [{}, {})",
                lo.map(|t| t.to_string()).unwrap_or_else(|| "-inf".into()),
                hi.map(|t| t.to_string()).unwrap_or_else(|| "+inf".into()),
            ),
        }
    }
}

impl TableRef {
    /// A table reference with exact spellings.
    pub fn new(schema: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            schema: schema.into(),
            name: name.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> KeyColumn {
        KeyColumn {
            name: name.into(),
            r#type: "bigint".into(),
            ..Default::default()
        }
    }

    #[test]
    fn bounds_read_for_people() {
        let k = [key("id")];
        let b = ChunkBounds::range(
            Some(KeyTuple::of(vec![KeyValue::from_int(10)])),
            Some(KeyTuple::of(vec![KeyValue::from_int(20)])),
        );
        assert_eq!(b.describe(&k), "id in [10, 20)");
        let b = ChunkBounds::range(None, Some(KeyTuple::of(vec![KeyValue::from_text("it's")])));
        assert_eq!(b.describe(&k), "id in [-inf, \"it's\")");
        assert_eq!(ChunkBounds::null_key().describe(&k), "id IS NULL");
        assert_eq!(ChunkBounds::default().shape(), Bounds::All);
        let two = [key("a"), key("b")];
        let b = ChunkBounds::range(
            Some(KeyTuple::of(vec![
                KeyValue::from_int(1),
                KeyValue::from_text("x"),
            ])),
            None,
        );
        assert_eq!(b.describe(&two), "(a, b) in [(1, \"x\"), +inf)");
    }

    #[test]
    fn values_read_back_as_text() {
        assert_eq!(KeyValue::from_int(-5).to_text(), "-5");
        assert_eq!(KeyValue::from_text("a\nb").to_text(), "a\nb");
    }
}
