//! Checks a submitted job spec and fills in the coordinator's defaults.

use ferry_common::config::JobDefaults;
use ferry_common::connections::ConnectionRegistry;
use ferry_common::ident::{parse_column, parse_column_list, parse_table};
use ferry_common::proto::{JobSpec, RetryPolicy, WriteMode};

use crate::error::{FieldError, Reason};

/// Validates `spec` without touching any database and resolves its defaults;
/// the error names the field (its proto path) and the fix.
pub fn resolve_spec(
    mut spec: JobSpec,
    defaults: &JobDefaults,
    conns: &ConnectionRegistry,
) -> Result<JobSpec, FieldError> {
    super::spec_limits::check(&spec)
        .map_err(|e| FieldError::new(e.field, Reason::InvalidValue, e.to_string()))?;
    if spec.source.trim().is_empty() {
        return Err(FieldError::new(
            "spec.source",
            Reason::MissingField,
            "the job names no source connection: pass --source NAME",
        ));
    }
    if spec.target.trim().is_empty() {
        return Err(FieldError::new(
            "spec.target",
            Reason::MissingField,
            "the job names no target connection: pass --target NAME",
        ));
    }
    if crate::planner::bare_query(&spec.query).is_empty() {
        return Err(FieldError::new(
            "spec.query",
            Reason::MissingField,
            "the job has no query: pass --query 'SELECT …'",
        ));
    }
    conns
        .url(&spec.source)
        .map_err(|e| FieldError::new("spec.source", Reason::UnknownConnection, e.to_string()))?;
    conns
        .url(&spec.target)
        .map_err(|e| FieldError::new("spec.target", Reason::UnknownConnection, e.to_string()))?;
    // Names are checked here and resolved to exact spellings by the planner,
    // against the target database's own rules; the spec keeps them as typed.
    parse_table(&spec.table).map_err(|e| {
        FieldError::new(
            "spec.table",
            Reason::InvalidIdentifier,
            format!("invalid target table: {e}; pass --table schema.table"),
        )
    })?;
    if !spec.key_column.is_empty() {
        parse_column_list(&spec.key_column).map_err(|e| {
            FieldError::new(
                "spec.key_column",
                Reason::InvalidIdentifier,
                format!("invalid key column: {e}"),
            )
        })?;
    }
    for (field, names) in [
        ("spec.columns", &spec.columns),
        ("spec.upsert_key", &spec.upsert_key),
    ] {
        for c in names {
            parse_column(c).map_err(|e| {
                FieldError::new(
                    field,
                    Reason::InvalidIdentifier,
                    format!("invalid target column: {e}"),
                )
            })?;
        }
    }
    match spec.chunk_size {
        Some(0) => {
            return Err(FieldError::new(
                "spec.chunk_size",
                Reason::InvalidValue,
                "chunk_size must be greater than 0: pass --chunk-size N",
            ))
        }
        None => spec.chunk_size = Some(defaults.chunk_size),
        _ => {}
    }
    if spec.chunk_seconds == Some(0) {
        return Err(FieldError::new(
            "spec.chunk_seconds",
            Reason::InvalidValue,
            "chunk_seconds must be greater than 0: pass --chunk-seconds N",
        ));
    }
    match spec.max_workers {
        Some(0) => {
            return Err(FieldError::new(
                "spec.max_workers",
                Reason::InvalidValue,
                "max_workers must be greater than 0: pass --max-workers N",
            ))
        }
        None => spec.max_workers = Some(defaults.max_workers),
        _ => {}
    }
    spec.min_rows_for_parallel
        .get_or_insert(defaults.min_rows_for_parallel);
    spec.parallel.get_or_insert(defaults.parallel);
    spec.adaptive_concurrency
        .get_or_insert(defaults.adaptive_concurrency);
    let r = spec.retry.take().unwrap_or_default();
    let retry = RetryPolicy {
        enabled: Some(r.enabled.unwrap_or(defaults.retry.enabled)),
        max_retries: Some(r.max_retries.unwrap_or(defaults.retry.max_retries)),
        initial_delay_ms: Some(
            r.initial_delay_ms
                .unwrap_or(defaults.retry.initial_delay.as_millis() as u64),
        ),
        max_delay_ms: Some(
            r.max_delay_ms
                .unwrap_or(defaults.retry.max_delay.as_millis() as u64),
        ),
    };
    if retry.max_delay_ms < retry.initial_delay_ms {
        return Err(FieldError::new(
            "spec.retry.max_delay_ms",
            Reason::InvalidValue,
            "retry max_delay must not be below initial_delay",
        ));
    }
    spec.retry = Some(retry);
    if spec.mode == WriteMode::Unspecified as i32 {
        spec.mode = WriteMode::Append as i32;
    }
    spec.consistency = super::consistency::resolve(&spec, conns)?;
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conns() -> ConnectionRegistry {
        ConnectionRegistry::from_pairs([
            ("src".to_string(), "postgres://a".to_string()),
            ("dst".to_string(), "postgres://b".to_string()),
        ])
    }

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
    fn fills_defaults() {
        let s = resolve_spec(spec(), &JobDefaults::default(), &conns()).unwrap();
        assert_eq!(s.chunk_size, Some(50_000));
        assert_eq!(s.table, "t");
        assert_eq!(s.mode, WriteMode::Append as i32);
    }

    #[test]
    fn rejects_bad_specs() {
        let d = JobDefaults::default();
        let e = resolve_spec(
            JobSpec {
                chunk_size: Some(0),
                ..spec()
            },
            &d,
            &conns(),
        )
        .unwrap_err();
        assert_eq!(e.field, "spec.chunk_size", "{e}");
        assert_eq!(e.reason, Reason::InvalidValue);
        let e = resolve_spec(
            JobSpec {
                source: "nosuch".into(),
                ..spec()
            },
            &d,
            &conns(),
        )
        .unwrap_err();
        assert!(e.message.contains("FERRY_CONN_NOSUCH"), "{e}");
        assert_eq!(e.field, "spec.source");
        assert_eq!(e.reason, Reason::UnknownConnection);
    }
}
