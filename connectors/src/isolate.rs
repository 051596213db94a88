//! Writes typed rows into any target and isolates the rows it refuses: a
//! batch is inserted under a savepoint; when the target refuses it for a data
//! reason (by SQLSTATE or error number, never by message text), the batch is
//! halved under savepoints until each refused row stands alone. Rows whose
//! values Ferry itself cannot convert exactly never reach the target.

use ferry_common::errors::{DbFailure, ErrorClass};

use crate::convert_ref::convert_ref;
use crate::reject_key::KeyFields;
use crate::rows::Row;
use crate::types::FerryType;
use crate::value::Value;

/// One refused row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// The key, as text (see `reject_key`; None when NULL or not copied).
    pub key: Option<String>,
    /// The row as text (tab-separated values, `\N` for NULL).
    pub row: String,
    /// SQLSTATE of the refusal.
    pub sqlstate: String,
    /// Why, in the target database's words (or Ferry's, for a conversion).
    pub message: String,
}

/// What a chunk's rows became.
#[derive(Debug, Default)]
pub struct Isolated {
    /// Rows written.
    pub written: u64,
    /// Rows refused.
    pub rejected: Vec<Rejected>,
}

/// A target that takes rows under savepoints.
#[allow(async_fn_in_trait)]
pub trait RowTarget {
    /// Sets the savepoint a refused batch rolls back to.
    async fn savepoint(&mut self) -> Result<(), DbFailure>;
    /// Rolls back to it.
    async fn rollback_to_savepoint(&mut self) -> Result<(), DbFailure>;
    /// Releases it.
    async fn release_savepoint(&mut self) -> Result<(), DbFailure>;
    /// Inserts rows (converted to the table's types); returns rows written.
    async fn insert(&mut self, rows: &[Row]) -> Result<u64, DbFailure>;
}

/// A row as text for the rejects table: canonical values, tab-separated.
pub fn row_text(row: &[Value]) -> String {
    row.iter()
        .map(|v| v.canonical().unwrap_or_else(|| "\\N".to_string()))
        .collect::<Vec<_>>()
        .join("\t")
}

/// Converts `rows` to the target's column `types`: rows with a value that
/// cannot land exactly are refused here with Ferry's reason. Values that
/// land as they are stay in place; a row is changed only once all its
/// values passed, so a refusal records the row as read.
pub fn convert_rows(
    rows: Vec<Row>,
    types: &[FerryType],
    key: &KeyFields,
    out: &mut Isolated,
) -> Vec<Row> {
    let mut ok = Vec::with_capacity(rows.len());
    let mut changed: Vec<(usize, Value)> = Vec::new();
    'rows: for mut row in rows {
        row.truncate(types.len());
        changed.clear();
        for (i, (v, ty)) in row.iter().zip(types).enumerate() {
            match convert_ref(v, ty) {
                Ok(None) => {}
                Ok(Some(c)) => changed.push((i, c)),
                Err(r) => {
                    out.rejected.push(Rejected {
                        key: key.text(|i| row.get(i).map(Value::canonical)),
                        row: row_text(&row),
                        sqlstate: r.sqlstate.to_string(),
                        message: format!("column {}: {}", i + 1, r.message),
                    });
                    continue 'rows;
                }
            }
        }
        for (i, c) in changed.drain(..) {
            row[i] = c;
        }
        ok.push(row);
    }
    ok
}

/// Inserts `rows` into `target`, isolating the rows it refuses for a data
/// reason; any other failure ends the chunk.
pub async fn write<T: RowTarget>(
    target: &mut T,
    rows: &[Row],
    key: &KeyFields,
    out: &mut Isolated,
) -> Result<(), DbFailure> {
    let mut todo: Vec<(usize, usize)> = vec![(0, rows.len())];
    while let Some((from, to)) = todo.pop() {
        if from == to {
            continue;
        }
        target.savepoint().await?;
        match target.insert(&rows[from..to]).await {
            Ok(n) => {
                target.release_savepoint().await?;
                out.written += n;
            }
            Err(f) if f.class == ErrorClass::Data => {
                target.rollback_to_savepoint().await?;
                if to - from == 1 {
                    let row = &rows[from];
                    out.rejected.push(Rejected {
                        key: key.text(|i| row.get(i).map(Value::canonical)),
                        row: row_text(row),
                        sqlstate: f.sqlstate.clone().unwrap_or_default(),
                        message: f.message,
                    });
                } else {
                    let mid = from + (to - from) / 2;
                    todo.push((mid, to));
                    todo.push((from, mid));
                }
            }
            Err(f) => return Err(f),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A target that refuses rows whose first value is negative.
    #[derive(Default)]
    struct NoNegatives {
        committed: Vec<i64>,
        pending: Vec<i64>,
        statements: usize,
    }

    impl RowTarget for NoNegatives {
        async fn savepoint(&mut self) -> Result<(), DbFailure> {
            self.pending.clear();
            Ok(())
        }
        async fn rollback_to_savepoint(&mut self) -> Result<(), DbFailure> {
            self.pending.clear();
            Ok(())
        }
        async fn release_savepoint(&mut self) -> Result<(), DbFailure> {
            self.committed.append(&mut self.pending);
            Ok(())
        }
        async fn insert(&mut self, rows: &[Row]) -> Result<u64, DbFailure> {
            self.statements += 1;
            for r in rows {
                let Value::Int(v) = r[0] else { unreachable!() };
                if v < 0 {
                    return Err(DbFailure {
                        class: ErrorClass::Data,
                        sqlstate: Some("23514".into()),
                        message: format!("{v} is negative"),
                    });
                }
                self.pending.push(v);
            }
            Ok(rows.len() as u64)
        }
    }

    #[tokio::test]
    async fn bisection_isolates_exactly_the_refused_rows() {
        let rows: Vec<Row> = (0..1000)
            .map(|i| vec![Value::Int(if i % 250 == 7 { -i } else { i })])
            .collect();
        let mut t = NoNegatives::default();
        let mut out = Isolated::default();
        write(&mut t, &rows, &KeyFields::at(&[0]), &mut out)
            .await
            .unwrap();
        assert_eq!(out.written, 996);
        assert_eq!(t.committed.len(), 996);
        let keys: Vec<_> = out.rejected.iter().filter_map(|r| r.key.clone()).collect();
        assert_eq!(keys, vec!["-7", "-257", "-507", "-757"]);
        assert!(t.statements < 100, "{} statements", t.statements);
    }

    #[test]
    fn conversions_refuse_before_the_target_sees_the_row() {
        let mut out = Isolated::default();
        let ok = convert_rows(
            vec![vec![Value::Int(1)], vec![Value::Int(70_000)]],
            &[FerryType::Int {
                bits: 16,
                unsigned: false,
            }],
            &KeyFields::at(&[0]),
            &mut out,
        );
        assert_eq!(ok.len(), 1);
        assert_eq!(out.rejected.len(), 1);
        assert_eq!(out.rejected[0].sqlstate, "22003");
        assert_eq!(out.rejected[0].key.as_deref(), Some("70000"));
    }
}
