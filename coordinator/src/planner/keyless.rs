//! Splits a PostgreSQL query that returns no usable key column on its
//! driving table (see `driving`): on that table's primary key, or, for a
//! plain table without one, on `ctid` block ranges read by TID range scans.
//! The key is added to the query as one more select item that is not copied,
//! so verify compares such jobs as a whole table. Anything else runs as one
//! chunk with a reason that says how to make it parallel.

use ferry_common::proto::TableRef;
use ferry_common::proto::{ChunkBounds, KeyColumn, KeyTuple, KeyValue};
use ferry_connectors::postgres::describe::{self, QueryColumn};
use ferry_connectors::postgres::driving::{driving_table, DrivingTable, KeyPart};
use ferry_connectors::postgres::select::ChunkSelect;
use ferry_connectors::postgres::sql::{quote_ident, show_ident, show_table};
use ferry_connectors::postgres::{sample, scan};
use serde_json::Value;
use tokio_postgres::Client;

use super::columns::{splittable_type, Columns};
use super::driving::{self, Driving};
use super::split::range_chunks;
use super::PlanError;
use crate::scheduler::progress::thousands;

/// How a query without a usable output key is split.
#[derive(Debug)]
pub enum Choice {
    /// Split on `key` (sampled like any key): a column of the query's
    /// output when `source_query` is empty, else a column `source_query`
    /// adds. `shown` names it for people.
    Key {
        /// The key column.
        key: KeyColumn,
        /// The query chunks run (empty: the user's).
        source_query: String,
        /// The key as the plan line names it.
        shown: String,
    },
    /// `ctid` block ranges, already cut.
    Ctid(CtidSplit),
    /// One chunk, and why (for the plan line).
    One(String),
}

/// A query split into `ctid` block ranges of its driving table.
#[derive(Debug)]
pub struct CtidSplit {
    /// Chunk bounds in block order, open at both ends.
    pub chunks: Vec<ChunkBounds>,
    /// Estimated rows of the query.
    pub rows: u64,
    /// The plan line.
    pub strategy: String,
    /// The added `ctid` column.
    pub key: KeyColumn,
    /// The query chunks run.
    pub source_query: String,
}

/// The reason a query runs as one chunk, with the way to parallel.
fn one(why: impl std::fmt::Display) -> Choice {
    Choice::One(format!(
        "one chunk: {why}; pass --key COL (a column of the query's output) to run in parallel"
    ))
}

/// Chooses how to split `query`, whose output (`query_cols`, mapped as
/// `cols`) has no usable key, into chunks of about `chunk_size` rows.
pub async fn choose(
    source: &Client,
    query: &str,
    query_cols: &[QueryColumn],
    cols: &Columns,
    chunk_size: u64,
    min_rows: u64,
) -> Result<Choice, PlanError> {
    let d = match driving::analyse(query) {
        Ok(d) => d,
        Err(no) => {
            return Ok(one(format!(
                "the query's rows do not each come from one row of a table ({})",
                no.0
            )))
        }
    };
    let root = sample::root_plan(source, query).await?;
    if let Some(why) = driving::blocking_node(&root, &d.plan_alias) {
        return Ok(one(format!(
            "the query's rows do not each come from one row of {} ({why})",
            d.table
        )));
    }
    let Some(table) = driving_table(source, &d.table).await? else {
        return Ok(one(format!(
            "table {} was not found in the catalog",
            d.table
        )));
    };
    let shown = show_table(&TableRef::new(&table.schema, &table.name));
    let role = if d.joined {
        "driving table of a join"
    } else {
        "not in the query's output"
    };
    if let Some(pk) = driving_key(&table).filter(|_| !d.renames_columns) {
        if let Some(c) = query_cols
            .iter()
            .find(|c| c.table_oid == Some(table.oid) && c.column_id == Some(pk.attnum))
        {
            if let Ok(key) = cols.key(&c.name) {
                return Ok(Choice::Key {
                    key,
                    source_query: String::new(),
                    shown: format!(
                        "{} ({shown}.{}, {role})",
                        show_ident(&c.name),
                        show_ident(&pk.name)
                    ),
                });
            }
        } else if splittable_type(&pk.base_type) {
            let expr = format!("{}.{}", d.qualifier, quote_ident(&pk.name));
            if let Some((key, source_query)) = added(source, query, query_cols, &d, &expr).await? {
                return Ok(Choice::Key {
                    key,
                    source_query,
                    shown: format!("{shown}.{} ({role}, not copied)", show_ident(&pk.name)),
                });
            }
        }
    }
    if !table.has_blocks() {
        return Ok(one(format!(
            "{} {shown} has no single-column primary key and no blocks to split by ctid",
            table.kind_name()
        )));
    }
    let rows = estimated_rows(&root);
    if rows < min_rows || rows <= chunk_size || table.pages < 2 {
        return Ok(Choice::One(format!(
            "one chunk: about {} rows, below min_rows_for_parallel {min_rows} or chunk_size {chunk_size}",
            thousands(rows)
        )));
    }
    let expr = format!("{}.ctid", d.qualifier);
    let Some((key, source_query)) = added(source, query, query_cols, &d, &expr).await? else {
        return Ok(one(format!("adding {expr} to the query fails")));
    };
    let chunks = rows.div_ceil(chunk_size.max(1));
    let (bounds, per) = ctid_ranges(table.pages, chunks);
    let scans = match bounds.get(1) {
        Some(middle) => {
            let select = ChunkSelect {
                query: &source_query,
                columns: &cols.plan,
                key: std::slice::from_ref(&key),
                bounds: middle,
            };
            let root = scan::explain_chunk(source, &select).await?;
            if driving::reads_with(&root, "Tid Range Scan", &d.plan_alias) {
                "; chunks read by TID range scans".to_string()
            } else {
                tracing::warn!(query = %source_query, "a ctid chunk is not read by a TID range scan: every chunk reads the whole table");
                format!("; warning: the block range filter does not reach the scan of {shown} (a volatile or set-returning function in the select list?), so every chunk reads the whole table: pass --key COL")
            }
        }
        None => String::new(),
    };
    let what = if d.joined {
        format!("ctid block ranges of {shown} (driving table of a join, no usable key)")
    } else {
        format!("ctid block ranges of {shown} (no usable key)")
    };
    Ok(Choice::Ctid(CtidSplit {
        strategy: format!(
            "{what}: {} chunks of ~{} blocks (~{} rows estimated){scans}",
            bounds.len(),
            thousands(per),
            thousands(rows)
        ),
        chunks: bounds,
        rows,
        key,
        source_query,
    }))
}

/// The driving table's key Ferry splits on: its primary key when that is
/// one column (the one place to extend for composite keys).
fn driving_key(table: &DrivingTable) -> Option<&KeyPart> {
    match table.primary_key.as_slice() {
        [one] => Some(one),
        _ => None,
    }
}

/// A column name none of the query's output columns has.
fn fresh_name(query_cols: &[QueryColumn]) -> String {
    let taken = |n: &str| query_cols.iter().any(|c| c.name == n);
    let mut name = "ferry_split".to_string();
    let mut i = 1;
    while taken(&name) {
        i += 1;
        name = format!("ferry_split_{i}");
    }
    name
}

/// The query with `expr` added as an uncopied key column, and that key, or
/// None when PostgreSQL does not take the rewritten query.
async fn added(
    source: &Client,
    query: &str,
    query_cols: &[QueryColumn],
    d: &Driving,
    expr: &str,
) -> Result<Option<(KeyColumn, String)>, PlanError> {
    let name = fresh_name(query_cols);
    let rewritten = d.with_item(query, expr, &quote_ident(&name));
    let described = match describe::describe_query(source, &rewritten).await {
        Ok(c) => c,
        Err(f) if f.class == ferry_common::errors::ErrorClass::Transient => return Err(f.into()),
        Err(f) => {
            tracing::warn!(query = %rewritten, error = %f.message, "the query with a split column added does not prepare");
            return Ok(None);
        }
    };
    let position = query_cols.len();
    let Some(col) = described.get(position).filter(|c| c.name == name) else {
        return Ok(None);
    };
    let key = KeyColumn {
        name,
        r#type: col.base_type.clone(),
        target: String::new(),
        position: position as u32,
        target_type: String::new(),
    };
    Ok(Some((key, rewritten)))
}

/// The query's estimated rows from its plan.
fn estimated_rows(root: &Value) -> u64 {
    root.get("Plan Rows")
        .and_then(Value::as_f64)
        .unwrap_or(0.0)
        .max(0.0) as u64
}

/// About `chunks` ranges of equal block counts over `pages` blocks, and the
/// blocks per range; the first is open at the bottom and the last at the
/// top, so rows in blocks added later still land in exactly one.
pub fn ctid_ranges(pages: u64, chunks: u64) -> (Vec<ChunkBounds>, u64) {
    let chunks = chunks.clamp(1, pages.max(1));
    let per = pages.div_ceil(chunks).max(1);
    let bounds = (1..chunks)
        .map(|i| i * per)
        .take_while(|b| *b < pages)
        .map(|b| KeyTuple::of(vec![KeyValue::from_text(format!("({b},0)"))]))
        .collect();
    (range_chunks(bounds), per)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_common::plan::Bounds;

    fn ends(c: &ChunkBounds) -> (Option<String>, Option<String>) {
        match c.shape() {
            Bounds::Range { lo, hi } => {
                let text = |t: &ferry_common::proto::KeyTuple| t.values[0].to_text();
                (lo.map(text), hi.map(text))
            }
            _ => panic!("not a range"),
        }
    }

    #[test]
    fn ctid_ranges_cover_every_block_once() {
        let (b, per) = ctid_ranges(1000, 4);
        assert_eq!(per, 250);
        assert_eq!(b.len(), 4);
        assert_eq!(ends(&b[0]), (None, Some("(250,0)".into())));
        assert_eq!(
            ends(&b[1]),
            (Some("(250,0)".into()), Some("(500,0)".into()))
        );
        assert_eq!(ends(&b[3]), (Some("(750,0)".into()), None));
        // more chunks than blocks: one block each
        let (b, per) = ctid_ranges(3, 10);
        assert_eq!((b.len(), per), (3, 1));
        // uneven: never an empty range past the last block
        let (b, per) = ctid_ranges(10, 4);
        assert_eq!(per, 3);
        assert_eq!(ends(&b[b.len() - 1]), (Some("(9,0)".into()), None));
        assert_eq!(ctid_ranges(0, 5).0.len(), 1);
    }

    #[test]
    fn fresh_names_avoid_the_output() {
        let col = |n: &str| QueryColumn {
            name: n.into(),
            base_type: "int".into(),
            full_type: "int".into(),
            table_oid: None,
            column_id: None,
        };
        assert_eq!(fresh_name(&[col("id")]), "ferry_split");
        assert_eq!(
            fresh_name(&[col("ferry_split"), col("ferry_split_2")]),
            "ferry_split_3"
        );
    }
}
