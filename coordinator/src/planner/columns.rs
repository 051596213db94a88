//! Maps the source query's columns onto the target table's: which target
//! column each lands in (in order when `--columns` names them, by exact name
//! otherwise), which need converting to the target's type, and which column
//! the job is split on.

use ferry_common::proto::{ColumnPlan, KeyColumn};
use ferry_connectors::postgres::describe::{QueryColumn, TargetColumn};
use ferry_connectors::postgres::sql::show_ident;

use super::PlanError;

/// Types a key column may have: those with a total order that round-trips
/// through text.
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

/// Whether a column of type `base_type` can be split into key ranges.
pub fn splittable_type(base_type: &str) -> bool {
    KEY_TYPES.contains(&base_type)
}

/// String types: values convert to and from them through text input and
/// output, the way an INSERT of text would, so a bad value is a bad row.
pub const STRING_TYPES: &[&str] = &["text", "character varying", "character"];

/// Type pairs whose binary COPY forms are the same, so no cast is needed (a
/// cast to `varchar(n)` would truncate silently where the target must refuse).
fn binary_compatible(source: &str, target: &str) -> bool {
    const TEXTUAL: &[&str] = &["text", "character varying"];
    source == target || (TEXTUAL.contains(&source) && TEXTUAL.contains(&target))
}

/// A source column converted to the target's type.
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

/// The job's column plan.
#[derive(Debug, Clone)]
pub struct Columns {
    /// Query columns in order, with where each lands.
    pub plan: Vec<ColumnPlan>,
    /// Conversions, for checks and messages.
    pub casts: Vec<Cast>,
    query: Vec<QueryColumn>,
    target: Vec<TargetColumn>,
}

/// Column names as PostgreSQL shows them, comma-separated.
fn names<'a>(it: impl Iterator<Item = &'a str>) -> String {
    it.map(show_ident).collect::<Vec<_>>().join(", ")
}

impl Columns {
    /// Maps `query` columns onto `target` columns: onto `explicit` (exact
    /// spellings, in order) when given, by exact name otherwise. `table` names
    /// the target in messages.
    pub fn map(
        query: &[QueryColumn],
        target: &[TargetColumn],
        explicit: &[String],
        table: &str,
    ) -> Result<Self, PlanError> {
        let wanted: Vec<&str> = if explicit.is_empty() {
            query.iter().map(|c| c.name.as_str()).collect()
        } else {
            if explicit.len() != query.len() {
                return Err(PlanError::invalid(format!(
                    "--columns names {} target columns but the query returns {} ({})",
                    explicit.len(),
                    query.len(),
                    names(query.iter().map(|c| c.name.as_str()))
                )));
            }
            explicit.iter().map(String::as_str).collect()
        };
        let mut plan = Vec::with_capacity(query.len());
        let mut casts = Vec::new();
        for (qc, tname) in query.iter().zip(wanted) {
            let Some(tc) = target.iter().find(|t| t.name == tname) else {
                return Err(PlanError::invalid(format!(
                    "columns do not match: query column {} has no column {} in target table {table} (target columns: {}); rename it with AS, drop it from the query, or pass --columns",
                    show_ident(&qc.name),
                    show_ident(tname),
                    names(target.iter().map(|c| c.name.as_str()))
                )));
            };
            let cast = if binary_compatible(&qc.base_type, &tc.base_type) {
                String::new()
            } else {
                casts.push(Cast {
                    column: qc.name.clone(),
                    from: qc.full_type.clone(),
                    to: tc.full_type.clone(),
                    from_base: qc.base_type.clone(),
                    to_base: tc.base_type.clone(),
                });
                tc.full_type.clone()
            };
            plan.push(ColumnPlan {
                source: qc.name.clone(),
                target: tc.name.clone(),
                cast,
                verify_type: tc.full_type.clone(),
                ..Default::default()
            });
        }
        Ok(Self {
            plan,
            casts,
            query: query.to_vec(),
            target: target.to_vec(),
        })
    }

    /// The key column `name` (exact spelling): a query column of an
    /// orderable type; where it lands, if it is copied.
    pub fn key(&self, name: &str) -> Result<KeyColumn, PlanError> {
        let Some(position) = self.query.iter().position(|c| c.name == name) else {
            return Err(PlanError::invalid(format!(
                "key column {} is not a column of the query (columns: {}); pass --key with one of them",
                show_ident(name),
                names(self.query.iter().map(|c| c.name.as_str()))
            )));
        };
        let col = &self.query[position];
        if !KEY_TYPES.contains(&col.base_type.as_str()) {
            return Err(PlanError::invalid(format!(
                "key column {} has type {}, which cannot be split into ranges; pass --key with an integer, numeric, date, timestamp, text or uuid column",
                show_ident(name),
                col.base_type
            )));
        }
        let landing = &self.plan[position];
        let target_type = self
            .target
            .iter()
            .find(|t| t.name == landing.target)
            .map(|t| t.base_type.clone())
            .unwrap_or_default();
        Ok(KeyColumn {
            name: name.to_string(),
            r#type: col.base_type.clone(),
            target: landing.target.clone(),
            position: position as u32,
            target_type,
        })
    }
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

    #[test]
    fn maps_by_exact_name_and_casts() {
        let c = Columns::map(
            &[qc("id", "bigint"), qc("V", "integer")],
            &[tc("id", "bigint"), tc("V", "bigint"), tc("v", "text")],
            &[],
            "t",
        )
        .unwrap();
        assert_eq!(c.plan[1].target, "V");
        assert_eq!(c.plan[1].cast, "bigint");
        assert_eq!(c.plan[0].cast, "");
        assert_eq!(c.casts.len(), 1);
        let k = c.key("id").unwrap();
        assert_eq!(
            (k.position, k.target.as_str(), k.target_type.as_str()),
            (0, "id", "bigint")
        );
    }

    #[test]
    fn explains_mismatches() {
        let e = Columns::map(
            &[qc("id", "bigint"), qc("extra", "integer")],
            &[tc("id", "bigint")],
            &[],
            "t",
        )
        .unwrap_err();
        assert!(e.message.contains("query column extra "), "{}", e.message);
        let c = Columns::map(&[qc("id", "bigint")], &[tc("id", "bigint")], &[], "t").unwrap();
        let e = c.key("nokey").unwrap_err();
        assert!(e.message.contains("nokey"), "{}", e.message);
        let c = Columns::map(&[qc("j", "jsonb")], &[tc("j", "jsonb")], &[], "t").unwrap();
        assert!(c.key("j").is_err());
    }
}
