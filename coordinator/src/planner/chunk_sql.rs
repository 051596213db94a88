//! Builds the SELECT each chunk runs on the source: the user's query wrapped,
//! its columns cast to the target's types where they differ, filtered to a
//! half-open key range.

use ferry_common::sql::{parse_ident, quote_ident, quote_literal, TableName};

use super::describe::{QueryColumn, TargetColumn};
use super::{PlanError, PlannedChunk};

/// Types a key column may have: those with a total order that round-trips through text.
const KEY_TYPES: &[&str] = &[
    "smallint",
    "integer",
    "bigint",
    "numeric",
    "real",
    "double precision",
    "date",
    "timestamp without time zone",
    "timestamp with time zone",
    "text",
    "character varying",
    "character",
    "uuid",
];

/// Type pairs whose binary COPY forms are the same, so no cast is needed (a
/// cast to `varchar(n)` would truncate silently where the target must refuse).
fn binary_compatible(source: &str, target: &str) -> bool {
    const TEXTUAL: &[&str] = &["text", "character varying"];
    source == target || (TEXTUAL.contains(&source) && TEXTUAL.contains(&target))
}

/// Which rows of the key domain a chunk covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChunkBounds {
    /// Every row (single-chunk plans).
    All,
    /// Rows whose key is NULL.
    Null,
    /// `lo <= key < hi`; a missing bound is open.
    Range {
        /// Inclusive lower bound, as text of the key type.
        lo: Option<String>,
        /// Exclusive upper bound.
        hi: Option<String>,
    },
}

/// The key column chosen for splitting.
#[derive(Debug, Clone)]
pub struct KeyColumn {
    /// Output name in the query.
    pub name: String,
    /// Its type in the source, for casting bound literals.
    pub type_name: String,
}

/// A source column cast to the target's type.
#[derive(Debug, Clone)]
pub struct Cast {
    /// Query column.
    pub column: String,
    /// Source type.
    pub from: String,
    /// Target type.
    pub to: String,
    /// Source type without modifier.
    pub from_base: String,
    /// Target type without modifier.
    pub to_base: String,
}

/// The placeholder for the key expression in a chunk predicate.
pub const KEY: &str = "{key}";

/// A chunk's full SELECT: `select` filtered by `predicate` with `{key}` replaced by `key`.
pub fn compose(select: &str, predicate: &str, key: &str) -> String {
    if predicate.is_empty() {
        select.to_string()
    } else {
        format!("{select} WHERE {}", predicate.replace(KEY, key))
    }
}

/// Builds per-chunk SELECTs for one job.
#[derive(Debug, Clone)]
pub struct SelectBuilder {
    query: String,
    select_list: String,
    text_list: String,
    verify_list: String,
    target_columns: Vec<String>,
    query_columns: Vec<QueryColumn>,
    casts: Vec<Cast>,
    key: Option<KeyColumn>,
}

impl SelectBuilder {
    /// Maps query columns onto target columns (in order when `explicit` names
    /// them, by name otherwise) and decides the casts.
    pub fn new(
        query: &str,
        query_cols: &[QueryColumn],
        target_cols: &[TargetColumn],
        explicit: &[String],
        table: &TableName,
    ) -> Result<Self, PlanError> {
        let target_names: Vec<&str> = target_cols.iter().map(|c| c.name.as_str()).collect();
        let wanted: Vec<String> = if explicit.is_empty() {
            query_cols.iter().map(|c| c.name.clone()).collect()
        } else {
            if explicit.len() != query_cols.len() {
                return Err(PlanError::invalid(format!(
                    "--columns names {} target columns but the query returns {} ({})",
                    explicit.len(),
                    query_cols.len(),
                    names(query_cols.iter().map(|c| c.name.as_str()))
                )));
            }
            explicit
                .iter()
                .map(|c| parse_ident(c).map_err(PlanError::invalid))
                .collect::<Result<_, _>>()?
        };
        let mut select = Vec::with_capacity(query_cols.len());
        let mut text = Vec::with_capacity(query_cols.len());
        let mut verify = Vec::with_capacity(query_cols.len());
        let mut target_columns = Vec::with_capacity(query_cols.len());
        let mut casts = Vec::new();
        for (qc, tname) in query_cols.iter().zip(&wanted) {
            let Some(tc) = target_cols.iter().find(|t| &t.name == tname) else {
                return Err(PlanError::invalid(format!(
                    "columns do not match: query column '{}' has no column '{tname}' in target table {table} (target columns: {}); rename it with AS, drop it from the query, or pass --columns",
                    qc.name,
                    names(target_names.iter().copied())
                )));
            };
            let src = format!("src.{}", quote_ident(&qc.name));
            text.push(src.clone());
            verify.push(format!("{src}::{}", tc.full_type));
            if binary_compatible(&qc.base_type, &tc.base_type) {
                select.push(src);
            } else {
                casts.push(Cast {
                    column: qc.name.clone(),
                    from: qc.full_type.clone(),
                    to: tc.full_type.clone(),
                    from_base: qc.base_type.clone(),
                    to_base: tc.base_type.clone(),
                });
                select.push(format!("{src}::{}", tc.full_type));
            }
            target_columns.push(quote_ident(&tc.name));
        }
        Ok(Self {
            query: query.to_string(),
            select_list: select.join(", "),
            text_list: text.join(", "),
            verify_list: verify.join(", "),
            target_columns,
            query_columns: query_cols.to_vec(),
            casts,
            key: None,
        })
    }

    /// Chooses the key column; it must be a query column of an orderable type.
    pub fn key_column(&mut self, name: &str) -> Result<KeyColumn, PlanError> {
        let Some(col) = self.query_columns.iter().find(|c| c.name == name) else {
            return Err(PlanError::invalid(format!(
                "key column '{name}' is not a column of the query (columns: {}); pass --key with one of them",
                names(self.query_columns.iter().map(|c| c.name.as_str()))
            )));
        };
        if !KEY_TYPES.contains(&col.base_type.as_str()) {
            return Err(PlanError::invalid(format!(
                "key column '{name}' has type {}, which cannot be split into ranges; pass --key with an integer, numeric, date, timestamp, text or uuid column",
                col.base_type
            )));
        }
        let key = KeyColumn {
            name: name.to_string(),
            type_name: col.base_type.clone(),
        };
        self.key = Some(key.clone());
        Ok(key)
    }

    /// The casts this job applies, for error messages.
    pub fn casts(&self) -> &[Cast] {
        &self.casts
    }

    /// The user's query.
    pub fn query(&self) -> &str {
        &self.query
    }

    /// The quoted target columns, in query order.
    pub fn target_column_list(&self) -> Vec<String> {
        self.target_columns.clone()
    }

    /// `SELECT <columns cast to the target's types> FROM (<query>) AS src`.
    pub fn select_binary(&self) -> String {
        format!("SELECT {} FROM ({}) AS src", self.select_list, self.query)
    }

    /// The same select list without casts, for text COPY.
    pub fn select_text(&self) -> String {
        format!("SELECT {} FROM ({}) AS src", self.text_list, self.query)
    }

    /// Every column cast to the target's exact type, so a hash over it equals
    /// a hash over the target's rows (verify).
    pub fn select_verify(&self) -> String {
        format!("SELECT {} FROM ({}) AS src", self.verify_list, self.query)
    }

    /// The key as the SELECTs name it, if a key was chosen.
    pub fn key_source(&self) -> String {
        self.key
            .as_ref()
            .map(|k| format!("src.{}", quote_ident(&k.name)))
            .unwrap_or_default()
    }

    /// The key's position in the select list, -1 without one.
    pub fn key_index(&self) -> i32 {
        self.key
            .as_ref()
            .and_then(|k| self.query_columns.iter().position(|c| c.name == k.name))
            .map(|i| i as i32)
            .unwrap_or(-1)
    }

    /// The target column the key lands in, quoted, if a key was chosen.
    pub fn key_target(&self) -> String {
        usize::try_from(self.key_index())
            .ok()
            .and_then(|i| self.target_columns.get(i).cloned())
            .unwrap_or_default()
    }

    /// The predicate selecting `bounds`, with `{key}` for the key expression.
    pub fn predicate(&self, bounds: &ChunkBounds) -> String {
        let Some(k) = &self.key else {
            return String::new();
        };
        match bounds {
            ChunkBounds::All => String::new(),
            ChunkBounds::Null => format!("{KEY} IS NULL"),
            ChunkBounds::Range { lo, hi } => {
                let mut conds = Vec::new();
                if let Some(lo) = lo {
                    conds.push(format!("{KEY} >= {}::{}", quote_literal(lo), k.type_name));
                }
                if let Some(hi) = hi {
                    conds.push(format!("{KEY} < {}::{}", quote_literal(hi), k.type_name));
                }
                if conds.is_empty() {
                    conds.push(format!("{KEY} IS NOT NULL"));
                }
                conds.join(" AND ")
            }
        }
    }

    /// The full binary SELECT for `bounds`.
    pub fn select(&self, bounds: &ChunkBounds) -> String {
        compose(
            &self.select_binary(),
            &self.predicate(bounds),
            &self.key_source(),
        )
    }

    /// A planned chunk for `bounds`.
    pub fn chunk(&self, bounds: &ChunkBounds) -> PlannedChunk {
        let range = match (bounds, &self.key) {
            (ChunkBounds::All, _) | (_, None) => "all rows".to_string(),
            (ChunkBounds::Null, Some(k)) => format!("{} IS NULL", k.name),
            (ChunkBounds::Range { lo, hi }, Some(k)) => format!(
                "{} in [{}, {})",
                k.name,
                lo.as_deref().unwrap_or("-inf"),
                hi.as_deref().unwrap_or("+inf")
            ),
        };
        PlannedChunk {
            predicate: self.predicate(bounds),
            range,
        }
    }

    /// Half-open chunks between consecutive boundaries, open at both ends, so
    /// every non-NULL key falls in exactly one.
    pub fn range_chunks(&self, boundaries: &[String]) -> Vec<PlannedChunk> {
        let mut out = Vec::with_capacity(boundaries.len() + 1);
        let mut lo: Option<String> = None;
        for b in boundaries {
            out.push(self.chunk(&ChunkBounds::Range {
                lo: lo.clone(),
                hi: Some(b.clone()),
            }));
            lo = Some(b.clone());
        }
        out.push(self.chunk(&ChunkBounds::Range { lo, hi: None }));
        out
    }
}

fn names<'a>(it: impl Iterator<Item = &'a str>) -> String {
    it.collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn qc(name: &str, ty: &str) -> QueryColumn {
        QueryColumn {
            name: name.into(),
            base_type: ty.into(),
            full_type: ty.into(),
            table_oid: None,
            column_id: None,
        }
    }

    fn tc(name: &str, ty: &str) -> TargetColumn {
        TargetColumn {
            name: name.into(),
            base_type: ty.into(),
            full_type: ty.into(),
        }
    }

    fn table() -> TableName {
        TableName {
            schema: "public".into(),
            table: "t".into(),
        }
    }

    #[test]
    fn wraps_and_casts() {
        let mut b = SelectBuilder::new(
            "SELECT * FROM t",
            &[qc("id", "bigint"), qc("v", "integer")],
            &[tc("id", "bigint"), tc("v", "bigint")],
            &[],
            &table(),
        )
        .unwrap();
        b.key_column("id").unwrap();
        let chunks = b.range_chunks(&["10".into(), "20".into()]);
        assert_eq!(chunks.len(), 3);
        let sel = |c: &PlannedChunk| compose(&b.select_binary(), &c.predicate, &b.key_source());
        assert_eq!(
            sel(&chunks[1]),
            "SELECT src.\"id\", src.\"v\"::bigint FROM (SELECT * FROM t) AS src WHERE src.\"id\" >= '10'::bigint AND src.\"id\" < '20'::bigint"
        );
        assert!(sel(&chunks[0]).ends_with("WHERE src.\"id\" < '10'::bigint"));
        assert!(sel(&chunks[2]).ends_with("WHERE src.\"id\" >= '20'::bigint"));
        assert_eq!(b.casts().len(), 1);
    }

    #[test]
    fn explains_mismatches() {
        let e = SelectBuilder::new(
            "q",
            &[qc("id", "bigint"), qc("extra", "integer")],
            &[tc("id", "bigint")],
            &[],
            &table(),
        )
        .unwrap_err();
        assert!(e.message.contains("'extra'"), "{}", e.message);
        let mut b = SelectBuilder::new(
            "q",
            &[qc("id", "bigint")],
            &[tc("id", "bigint")],
            &[],
            &table(),
        )
        .unwrap();
        let e = b.key_column("nokey").unwrap_err();
        assert!(e.message.contains("nokey"), "{}", e.message);
    }
}
