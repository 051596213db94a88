//! Bounds on a submitted job spec (`ferry_common::limits`), checked before
//! anything else looks at it; each refusal names the field.

use ferry_common::conn_secrets::attribute_suffix;
use ferry_common::limits::{
    MAX_CHUNK_SIZE, MAX_COLUMNS, MAX_CONNECTION_NAME_BYTES, MAX_IDENTIFIER_BYTES, MAX_MAX_WORKERS,
    MAX_QUERY_BYTES, MAX_REQUEST_ID_BYTES, MAX_RETRIES, MAX_RETRY_DELAY_MS, MAX_TABLE_NAME_BYTES,
};
use ferry_common::proto::JobSpec;

/// A spec field out of bounds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {field}: {problem}")]
pub struct LimitError {
    /// The field, as the API names it (`spec.query`).
    pub field: &'static str,
    /// What is wrong and the bound.
    pub problem: String,
}

fn too_long(field: &'static str, len: usize, max: usize) -> LimitError {
    LimitError {
        field,
        problem: format!("{len} bytes, more than the limit of {max}"),
    }
}

/// Checks a connection name: `[A-Za-z0-9_]+`, not ending with an attribute suffix.
pub fn check_connection_name(field: &'static str, name: &str) -> Result<(), LimitError> {
    let bad = |problem: String| LimitError { field, problem };
    if name.len() > MAX_CONNECTION_NAME_BYTES {
        return Err(too_long(field, name.len(), MAX_CONNECTION_NAME_BYTES));
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(bad(format!(
            "connection name {name:?} must be letters, digits and _ (it names FERRY_CONN_<NAME>)"
        )));
    }
    if let Some(suffix) = attribute_suffix(name) {
        return Err(bad(format!(
            "connection name {name:?} ends with {suffix}, which names an attribute of a connection, not a connection"
        )));
    }
    Ok(())
}

/// Checks the idempotency key of a submission.
pub fn check_request_id(request_id: &str) -> Result<(), LimitError> {
    if request_id.len() > MAX_REQUEST_ID_BYTES {
        return Err(too_long(
            "request_id",
            request_id.len(),
            MAX_REQUEST_ID_BYTES,
        ));
    }
    Ok(())
}

/// Checks every bounded field of `spec`.
pub fn check(spec: &JobSpec) -> Result<(), LimitError> {
    check_connection_name("spec.source", &spec.source)?;
    check_connection_name("spec.target", &spec.target)?;
    if spec.query.len() > MAX_QUERY_BYTES {
        return Err(too_long("spec.query", spec.query.len(), MAX_QUERY_BYTES));
    }
    if spec.table.len() > MAX_TABLE_NAME_BYTES {
        return Err(too_long(
            "spec.table",
            spec.table.len(),
            MAX_TABLE_NAME_BYTES,
        ));
    }
    // a quoted identifier may double its quotes; 2 × 63 + quotes is plenty
    let ident_max = 2 * MAX_IDENTIFIER_BYTES + 2;
    if spec.key_column.len() > ident_max {
        return Err(too_long(
            "spec.key_column",
            spec.key_column.len(),
            ident_max,
        ));
    }
    for (field, list) in [
        ("spec.columns", &spec.columns),
        ("spec.upsert_key", &spec.upsert_key),
    ] {
        if list.len() > MAX_COLUMNS {
            return Err(LimitError {
                field,
                problem: format!(
                    "{} columns, more than the limit of {MAX_COLUMNS}",
                    list.len()
                ),
            });
        }
        if let Some(c) = list.iter().find(|c| c.len() > ident_max) {
            return Err(too_long(field, c.len(), ident_max));
        }
    }
    if let Some(n) = spec.chunk_size.filter(|n| *n > MAX_CHUNK_SIZE) {
        return Err(LimitError {
            field: "spec.chunk_size",
            problem: format!("{n} rows, more than the limit of {MAX_CHUNK_SIZE}"),
        });
    }
    if let Some(n) = spec.max_workers.filter(|n| *n > MAX_MAX_WORKERS) {
        return Err(LimitError {
            field: "spec.max_workers",
            problem: format!("{n}, more than the limit of {MAX_MAX_WORKERS}"),
        });
    }
    if let Some(r) = &spec.retry {
        if let Some(n) = r.max_retries.filter(|n| *n > MAX_RETRIES) {
            return Err(LimitError {
                field: "spec.retry.max_retries",
                problem: format!("{n}, more than the limit of {MAX_RETRIES}"),
            });
        }
        for (field, v) in [
            ("spec.retry.initial_delay_ms", r.initial_delay_ms),
            ("spec.retry.max_delay_ms", r.max_delay_ms),
        ] {
            if let Some(ms) = v.filter(|ms| *ms > MAX_RETRY_DELAY_MS) {
                return Err(LimitError {
                    field,
                    problem: format!(
                        "{ms} ms, more than the limit of {MAX_RETRY_DELAY_MS} (one day)"
                    ),
                });
            }
        }
    }
    if let Some(r) = spec.max_failed_ratio {
        if !(0.0..=1.0).contains(&r) {
            return Err(LimitError {
                field: "spec.max_failed_ratio",
                problem: format!("{r} is not a share between 0 and 1"),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> JobSpec {
        JobSpec {
            source: "src".into(),
            target: "dst".into(),
            query: "select 1".into(),
            table: "t".into(),
            ..Default::default()
        }
    }

    #[test]
    fn names_the_field_out_of_bounds() {
        assert_eq!(check(&spec()), Ok(()));
        let cases = [
            (
                JobSpec {
                    query: "x".repeat(MAX_QUERY_BYTES + 1),
                    ..spec()
                },
                "spec.query",
            ),
            (
                JobSpec {
                    table: "t".repeat(MAX_TABLE_NAME_BYTES + 1),
                    ..spec()
                },
                "spec.table",
            ),
            (
                JobSpec {
                    chunk_size: Some(u64::MAX),
                    ..spec()
                },
                "spec.chunk_size",
            ),
            (
                JobSpec {
                    source: "a-b".into(),
                    ..spec()
                },
                "spec.source",
            ),
            (
                JobSpec {
                    target: "dst_FILE".into(),
                    ..spec()
                },
                "spec.target",
            ),
            (
                JobSpec {
                    source: "w_password_file".into(),
                    ..spec()
                },
                "spec.source",
            ),
            (
                JobSpec {
                    max_failed_ratio: Some(-1.0),
                    ..spec()
                },
                "spec.max_failed_ratio",
            ),
        ];
        for (s, field) in cases {
            let e = check(&s).unwrap_err();
            assert_eq!(e.field, field, "{e}");
            assert!(e.to_string().contains(field), "{e}");
        }
    }
}
