//! A job spec as the JSON of the history table's `spec` column, and back.
//! A spec names connections, never their URLs, so the JSON holds no secret.

use ferry_common::proto::{Consistency, JobSpec, RetryPolicy, WriteMode};
use serde_json::{json, Value};

/// A write mode's name in lower case (`append`, …).
pub fn mode_name(mode: i32) -> String {
    WriteMode::try_from(mode)
        .unwrap_or(WriteMode::Unspecified)
        .as_str_name()
        .trim_start_matches("WRITE_MODE_")
        .to_ascii_lowercase()
}

/// A consistency's name in lower case (`snapshot`, `none`).
fn consistency_name(c: i32) -> String {
    Consistency::try_from(c)
        .unwrap_or(Consistency::Unspecified)
        .as_str_name()
        .trim_start_matches("CONSISTENCY_")
        .to_ascii_lowercase()
}

fn mode_of(name: &str) -> i32 {
    WriteMode::from_str_name(&format!("WRITE_MODE_{}", name.to_ascii_uppercase()))
        .unwrap_or(WriteMode::Unspecified) as i32
}

/// The spec as JSON.
pub fn to_json(spec: &JobSpec) -> Value {
    let retry = spec.retry.unwrap_or_default();
    json!({
        "source": spec.source,
        "query": spec.query,
        "target": spec.target,
        "table": spec.table,
        "columns": spec.columns,
        "key_column": spec.key_column,
        "chunk_size": spec.chunk_size,
        "chunk_size_auto": spec.chunk_size_auto,
        "chunk_seconds": spec.chunk_seconds,
        "max_workers": spec.max_workers,
        "adaptive_concurrency": spec.adaptive_concurrency,
        "min_rows_for_parallel": spec.min_rows_for_parallel,
        "retry": {
            "enabled": retry.enabled,
            "max_retries": retry.max_retries,
            "initial_delay_ms": retry.initial_delay_ms,
            "max_delay_ms": retry.max_delay_ms,
        },
        "mode": mode_name(spec.mode),
        "parallel": spec.parallel,
        "upsert_key": spec.upsert_key,
        "create_table": spec.create_table,
        "max_failed_rows": spec.max_failed_rows,
        "max_failed_ratio": spec.max_failed_ratio,
        "consistency": consistency_name(spec.consistency),
    })
}

fn text(v: &Value, k: &str) -> String {
    v.get(k)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

fn texts(v: &Value, k: &str) -> Vec<String> {
    v.get(k)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The spec a history row's JSON describes (fields it lacks stay unset).
pub fn from_json(v: &Value) -> JobSpec {
    let r = v.get("retry").cloned().unwrap_or(Value::Null);
    JobSpec {
        source: text(v, "source"),
        query: text(v, "query"),
        target: text(v, "target"),
        table: text(v, "table"),
        columns: texts(v, "columns"),
        key_column: text(v, "key_column"),
        chunk_size: v.get("chunk_size").and_then(Value::as_u64),
        chunk_size_auto: v.get("chunk_size_auto").and_then(Value::as_bool),
        chunk_seconds: v
            .get("chunk_seconds")
            .and_then(Value::as_u64)
            .map(|n| n as u32),
        max_workers: v
            .get("max_workers")
            .and_then(Value::as_u64)
            .map(|n| n as u32),
        adaptive_concurrency: v.get("adaptive_concurrency").and_then(Value::as_bool),
        min_rows_for_parallel: v.get("min_rows_for_parallel").and_then(Value::as_u64),
        retry: Some(RetryPolicy {
            enabled: r.get("enabled").and_then(Value::as_bool),
            max_retries: r
                .get("max_retries")
                .and_then(Value::as_u64)
                .map(|n| n as u32),
            initial_delay_ms: r.get("initial_delay_ms").and_then(Value::as_u64),
            max_delay_ms: r.get("max_delay_ms").and_then(Value::as_u64),
        }),
        mode: mode_of(&text(v, "mode")),
        parallel: v.get("parallel").and_then(Value::as_bool),
        upsert_key: texts(v, "upsert_key"),
        create_table: v
            .get("create_table")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        max_failed_rows: v.get("max_failed_rows").and_then(Value::as_u64),
        max_failed_ratio: v.get("max_failed_ratio").and_then(Value::as_f64),
        consistency: Consistency::from_str_name(&format!(
            "CONSISTENCY_{}",
            text(v, "consistency").to_ascii_uppercase()
        ))
        .unwrap_or(Consistency::Unspecified) as i32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spec_round_trips() {
        let spec = JobSpec {
            source: "src".into(),
            query: "select 1".into(),
            target: "dst".into(),
            table: "public.t".into(),
            columns: vec!["a".into()],
            chunk_size: Some(5),
            max_workers: Some(2),
            retry: Some(RetryPolicy {
                enabled: Some(true),
                max_retries: Some(3),
                initial_delay_ms: Some(10),
                max_delay_ms: Some(20),
            }),
            mode: WriteMode::Upsert as i32,
            upsert_key: vec!["id".into()],
            max_failed_ratio: Some(0.5),
            ..Default::default()
        };
        assert_eq!(from_json(&to_json(&spec)), spec);
        assert_eq!(mode_name(WriteMode::Replace as i32), "replace");
    }
}
