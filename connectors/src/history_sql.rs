//! The job history table's columns as MySQL and SQLite hold them: times in
//! Unix milliseconds, the spec as JSON text; and the rule every write keeps
//! (a row about a later run, or about this run's end, is never overwritten
//! by an earlier write).

use crate::postgres::history::HistoryRow;

/// Every column, in the order `values` binds them and `from_texts` reads them.
pub const COLUMNS: [&str; 24] = [
    "job_id",
    "request_id",
    "submitted_by",
    "source",
    "target",
    "target_table",
    "query",
    "mode",
    "spec",
    "state",
    "runs",
    "submitted_at_ms",
    "started_at_ms",
    "ended_at_ms",
    "rows_written",
    "rows_rejected",
    "rows_estimated",
    "chunks_total",
    "chunks_succeeded",
    "chunks_failed",
    "retries",
    "error",
    "plan",
    "coordinator",
];

/// A value of a history row, typed for binding.
#[derive(Debug, Clone)]
pub enum Cell {
    /// Text.
    Text(String),
    /// A whole number.
    Int(i64),
}

/// The row's values in `COLUMNS` order.
pub fn values(row: &HistoryRow) -> Vec<Cell> {
    use Cell::{Int, Text};
    vec![
        Text(row.job_id.clone()),
        Text(row.request_id.clone()),
        Text(row.submitted_by.clone()),
        Text(row.source.clone()),
        Text(row.target.clone()),
        Text(row.target_table.clone()),
        Text(row.query.clone()),
        Text(row.mode.clone()),
        Text(row.spec.to_string()),
        Text(row.state.clone()),
        Int(i64::from(row.runs)),
        Int(row.submitted_at_ms),
        Int(row.started_at_ms),
        Int(row.ended_at_ms),
        Int(row.rows_written),
        Int(row.rows_rejected),
        Int(row.rows_estimated),
        Int(i64::from(row.chunks_total)),
        Int(i64::from(row.chunks_succeeded)),
        Int(i64::from(row.chunks_failed)),
        Int(i64::from(row.retries)),
        Text(row.error.clone()),
        Text(row.plan.clone()),
        Text(row.coordinator.clone()),
    ]
}

/// A row read back: text columns and whole numbers by their `COLUMNS` index.
pub fn from_cells(text: impl Fn(usize) -> String, int: impl Fn(usize) -> i64) -> HistoryRow {
    let i32_of = |i: usize| i32::try_from(int(i)).unwrap_or(i32::MAX);
    HistoryRow {
        job_id: text(0),
        request_id: text(1),
        submitted_by: text(2),
        source: text(3),
        target: text(4),
        target_table: text(5),
        query: text(6),
        mode: text(7),
        spec: serde_json::from_str(&text(8)).unwrap_or(serde_json::Value::Null),
        state: text(9),
        runs: i32_of(10),
        submitted_at_ms: int(11),
        started_at_ms: int(12),
        ended_at_ms: int(13),
        rows_written: int(14),
        rows_rejected: int(15),
        rows_estimated: int(16),
        chunks_total: i32_of(17),
        chunks_succeeded: i32_of(18),
        chunks_failed: i32_of(19),
        retries: i32_of(20),
        error: text(21),
        plan: text(22),
        coordinator: text(23),
    }
}

/// Whether a write of `new` may replace the stored row of run `runs` that
/// ended (`ended_at_ms` not 0) or not.
pub fn newer_or_same(new: &HistoryRow, runs: i64, ended_at_ms: i64) -> bool {
    (i64::from(new.runs), new.ended_at_ms != 0) >= (runs, ended_at_ms != 0)
}

/// Column definitions for `CREATE TABLE`, with `text` and `int` the
/// database's spelling of a text and a 64-bit integer column.
pub fn definitions(text: &str, int: &str) -> String {
    COLUMNS
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let ty = if (10..=20).contains(&i) { int } else { text };
            if i == 0 {
                format!("{c} {ty} NOT NULL PRIMARY KEY")
            } else {
                format!("{c} {ty} NOT NULL")
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_later_run_or_an_end_wins() {
        let row = HistoryRow {
            job_id: "j".into(),
            request_id: String::new(),
            submitted_by: String::new(),
            source: String::new(),
            target: String::new(),
            target_table: String::new(),
            query: String::new(),
            mode: String::new(),
            spec: serde_json::json!({"a": 1}),
            state: "RUNNING".into(),
            runs: 2,
            submitted_at_ms: 1,
            started_at_ms: 2,
            ended_at_ms: 0,
            rows_written: 0,
            rows_rejected: 0,
            rows_estimated: 0,
            chunks_total: 0,
            chunks_succeeded: 0,
            chunks_failed: 0,
            retries: 0,
            error: String::new(),
            plan: String::new(),
            coordinator: String::new(),
        };
        assert!(newer_or_same(&row, 1, 5));
        assert!(newer_or_same(&row, 2, 0));
        assert!(!newer_or_same(&row, 2, 5));
        assert!(!newer_or_same(&row, 3, 0));
        let cells = values(&row);
        let back = from_cells(
            |i| match &cells[i] {
                Cell::Text(t) => t.clone(),
                Cell::Int(n) => n.to_string(),
            },
            |i| match &cells[i] {
                Cell::Int(n) => *n,
                Cell::Text(_) => 0,
            },
        );
        assert_eq!(back, row);
    }
}
