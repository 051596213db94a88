//! The SQL of one chunk, built from the typed plan: the user's query wrapped
//! as `src`, its columns cast to the target's types where they differ, and
//! the chunk's key range as a filter whose bounds are bound values, never
//! spliced into the text.
//!
//! `COPY (query) TO STDOUT` takes no parameters, so a chunk's bounds reach the
//! COPY through the transaction's own settings: `set_config('ferry.bN', $N,
//! true)` binds them, and the filter reads them back with
//! `current_setting('ferry.bN')::<key type>`. PostgreSQL's planner folds
//! those stable calls while estimating, so a chunk is planned on its real
//! range; index and bitmap scans evaluate them once per scan.

use ferry_common::plan::Bounds;
use ferry_common::proto::{ChunkBounds, ColumnPlan, KeyColumn};

use super::sql::quote_ident;

/// How a filter refers to its i-th bound value (from 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Binding {
    /// `current_setting('ferry.bN')`: values bound by `set_config` (COPY).
    Settings,
    /// `$N::text`: values bound as statement parameters, numbered from the
    /// given offset + 1.
    Params(usize),
}

impl Binding {
    fn value(self, i: usize, ty: &str) -> String {
        match self {
            Binding::Settings => format!("current_setting('ferry.b{i}')::{ty}"),
            Binding::Params(offset) => format!("${}::text::{ty}", offset + i),
        }
    }
}

/// A chunk's key filter: the condition (None: every row) and the values it
/// binds, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyFilter {
    /// The condition, for a WHERE clause.
    pub condition: Option<String>,
    /// The bound values as text, `$1`/`ferry.b1` first.
    pub values: Vec<String>,
}

/// Builds the filter selecting `bounds` over `key`, naming each key column
/// with `column(k)` and converting each bound to `ty(k)`.
pub fn key_filter(
    key: &[KeyColumn],
    bounds: &ChunkBounds,
    binding: Binding,
    column: impl Fn(&KeyColumn) -> String,
    ty: impl Fn(&KeyColumn) -> &str,
) -> KeyFilter {
    let cols: Vec<String> = key.iter().map(&column).collect();
    let tuple = |cols: &[String]| match cols {
        [one] => one.clone(),
        many => format!("({})", many.join(", ")),
    };
    let none = KeyFilter {
        condition: None,
        values: Vec::new(),
    };
    if key.is_empty() {
        return none;
    }
    match bounds.shape() {
        Bounds::All => none,
        Bounds::NullKey => KeyFilter {
            condition: Some(
                cols.iter()
                    .map(|c| format!("{c} IS NULL"))
                    .collect::<Vec<_>>()
                    .join(" OR "),
            ),
            values: Vec::new(),
        },
        Bounds::Range { lo, hi } => {
            let mut conds = Vec::new();
            let mut values = Vec::new();
            for (op, end) in [(">=", lo), ("<", hi)] {
                let Some(end) = end else { continue };
                let mut exprs = Vec::with_capacity(key.len());
                for (k, v) in key.iter().zip(&end.values) {
                    values.push(v.to_text());
                    exprs.push(binding.value(values.len(), ty(k)));
                }
                conds.push(format!("{} {op} {}", tuple(&cols), tuple(&exprs)));
            }
            if conds.is_empty() {
                conds = cols.iter().map(|c| format!("{c} IS NOT NULL")).collect();
            } else {
                // a row comparison decided by an earlier column ignores a
                // NULL in a later one: such rows belong to the NULL chunk
                conds.extend(cols.iter().skip(1).map(|c| format!("{c} IS NOT NULL")));
            }
            KeyFilter {
                condition: Some(conds.join(" AND ")),
                values,
            }
        }
    }
}

/// The SELECTs a chunk runs on the source.
#[derive(Debug, Clone)]
pub struct ChunkSelect<'a> {
    /// The user's query.
    pub query: &'a str,
    /// Its columns and their conversions.
    pub columns: &'a [ColumnPlan],
    /// The key columns.
    pub key: &'a [KeyColumn],
    /// The chunk's rows.
    pub bounds: &'a ChunkBounds,
}

/// How the select list converts columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Casts {
    /// To the target's types where they differ (binary COPY into the target).
    Target,
    /// None (text COPY: the target converts, a bad value is a bad row).
    None,
    /// Every column to the target column's exact type (verify's digests).
    Verify,
}

impl ChunkSelect<'_> {
    fn list(&self, casts: Casts) -> String {
        self.columns
            .iter()
            .map(|c| {
                let src = format!("src.{}", quote_ident(&c.source));
                match casts {
                    Casts::Target if !c.cast.is_empty() => format!("{src}::{}", c.cast),
                    Casts::Verify if !c.verify_type.is_empty() => {
                        format!("{src}::{}", c.verify_type)
                    }
                    _ => src,
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn filter(&self, binding: Binding) -> KeyFilter {
        key_filter(
            self.key,
            self.bounds,
            binding,
            |k| format!("src.{}", quote_ident(&k.name)),
            |k| k.r#type.as_str(),
        )
    }

    fn select(&self, casts: Casts, binding: Binding) -> (String, Vec<String>) {
        let f = self.filter(binding);
        let mut sql = format!("SELECT {} FROM ({}) AS src", self.list(casts), self.query);
        if let Some(c) = f.condition {
            sql.push_str(" WHERE ");
            sql.push_str(&c);
        }
        (sql, f.values)
    }

    /// The chunk's rows in the target's column types, with its bounds read
    /// from the transaction's settings (see `bind_settings`).
    pub fn binary(&self) -> (String, Vec<String>) {
        self.select(Casts::Target, Binding::Settings)
    }

    /// The chunk's rows without conversions, for the text COPY that isolates
    /// refused rows; bounds from the transaction's settings.
    pub fn text(&self) -> (String, Vec<String>) {
        self.select(Casts::None, Binding::Settings)
    }

    /// The chunk's rows with every column in the target's exact type, bounds
    /// as parameters `$1…` (verify).
    pub fn verify(&self) -> (String, Vec<String>) {
        self.select(Casts::Verify, Binding::Params(0))
    }
}

/// `SELECT set_config('ferry.b1', $1, true), …`: binds a chunk's bound values
/// to the current transaction (None when there are none).
pub fn bind_settings(values: &[String]) -> Option<String> {
    if values.is_empty() {
        return None;
    }
    let calls: Vec<String> = (1..=values.len())
        .map(|i| format!("set_config('ferry.b{i}', ${i}, true)"))
        .collect();
    Some(format!("SELECT {}", calls.join(", ")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_common::proto::{KeyTuple, KeyValue};

    fn key(name: &str, ty: &str) -> KeyColumn {
        KeyColumn {
            name: name.into(),
            r#type: ty.into(),
            target: name.into(),
            position: 0,
            target_type: ty.into(),
        }
    }

    fn col(source: &str, cast: &str) -> ColumnPlan {
        ColumnPlan {
            source: source.into(),
            target: source.into(),
            cast: cast.into(),
            verify_type: "bigint".into(),
            ..Default::default()
        }
    }

    fn range(lo: Option<i64>, hi: Option<i64>) -> ChunkBounds {
        let t = |v: i64| KeyTuple::of(vec![KeyValue::from_int(v)]);
        ChunkBounds::range(lo.map(t), hi.map(t))
    }

    #[test]
    fn binds_bounds_instead_of_splicing_them() {
        let cols = [col("id", ""), col("v", "bigint")];
        let key = [key("id", "bigint")];
        let b = range(Some(10), Some(20));
        let s = ChunkSelect {
            query: "SELECT * FROM t",
            columns: &cols,
            key: &key,
            bounds: &b,
        };
        let (sql, values) = s.binary();
        assert_eq!(
            sql,
            "SELECT src.\"id\", src.\"v\"::bigint FROM (SELECT * FROM t) AS src WHERE src.\"id\" >= current_setting('ferry.b1')::bigint AND src.\"id\" < current_setting('ferry.b2')::bigint"
        );
        assert_eq!(values, vec!["10".to_string(), "20".to_string()]);
        let (sql, _) = s.verify();
        assert!(
            sql.ends_with("WHERE src.\"id\" >= $1::text::bigint AND src.\"id\" < $2::text::bigint"),
            "{sql}"
        );
        assert!(
            sql.starts_with("SELECT src.\"id\"::bigint, src.\"v\"::bigint"),
            "{sql}"
        );
        assert_eq!(
            bind_settings(&values).unwrap(),
            "SELECT set_config('ferry.b1', $1, true), set_config('ferry.b2', $2, true)"
        );
    }

    #[test]
    fn hostile_values_stay_values() {
        let key = [key("k", "text")];
        let b = ChunkBounds::range(
            Some(KeyTuple::of(vec![KeyValue::from_text("it's {key} $1\n🚀")])),
            None,
        );
        let f = key_filter(
            &key,
            &b,
            Binding::Params(2),
            |k| k.name.clone(),
            |k| &k.r#type,
        );
        assert_eq!(f.condition.as_deref(), Some("k >= $3::text::text"));
        assert_eq!(f.values, vec!["it's {key} $1\n🚀".to_string()]);
    }

    #[test]
    fn covers_every_shape() {
        let key1 = [key("k", "int")];
        let f = |b: &ChunkBounds| {
            key_filter(
                &key1,
                b,
                Binding::Params(0),
                |k| k.name.clone(),
                |k| &k.r#type,
            )
        };
        assert_eq!(f(&ChunkBounds::all()).condition, None);
        assert_eq!(
            f(&ChunkBounds::null_key()).condition.as_deref(),
            Some("k IS NULL")
        );
        assert_eq!(
            f(&range(None, None)).condition.as_deref(),
            Some("k IS NOT NULL")
        );
        assert_eq!(
            f(&range(None, Some(5))).condition.as_deref(),
            Some("k < $1::text::int")
        );
        let key2 = [key("a", "int"), key("b", "text")];
        let b = ChunkBounds::range(
            Some(KeyTuple::of(vec![
                KeyValue::from_int(1),
                KeyValue::from_text("x"),
            ])),
            Some(KeyTuple::of(vec![
                KeyValue::from_int(2),
                KeyValue::from_text("y"),
            ])),
        );
        let f2 = key_filter(
            &key2,
            &b,
            Binding::Settings,
            |k| k.name.clone(),
            |k| &k.r#type,
        );
        assert_eq!(
            f2.condition.as_deref(),
            Some("(a, b) >= (current_setting('ferry.b1')::int, current_setting('ferry.b2')::text) AND (a, b) < (current_setting('ferry.b3')::int, current_setting('ferry.b4')::text) AND b IS NOT NULL")
        );
        assert_eq!(f2.values, vec!["1", "x", "2", "y"]);
        // no key: every row, whatever the bounds say
        assert_eq!(
            key_filter(
                &[],
                &range(Some(1), None),
                Binding::Settings,
                |k| k.name.clone(),
                |k| &k.r#type
            )
            .condition,
            None
        );
    }
}
