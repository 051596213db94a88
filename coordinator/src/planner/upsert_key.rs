//! The upsert key's checks, which write nothing, so a dry run (`ferry plan`)
//! refuses what a run would: mode upsert needs `--upsert-key`, its columns
//! must be copied, and the target must have a unique index on them; other
//! modes take no upsert key.

use ferry_common::connections::ConnectionRegistry;
use ferry_common::ident::parse_column;
use ferry_common::proto::{JobSpec, WriteMode};
use ferry_connectors::db::catalog;

use super::{typed, Plan, PlanError};

/// Checks the spec's upsert key against `plan` and returns its target
/// columns, exact spelling (empty outside mode upsert). The unique index is
/// looked for only when `table_exists` (a dry run's `--create-table` target
/// is not there yet).
pub async fn check_upsert_key(
    spec: &JobSpec,
    job_id: &str,
    conns: &ConnectionRegistry,
    plan: &Plan,
    table_exists: bool,
) -> Result<Vec<String>, PlanError> {
    let mode = WriteMode::try_from(spec.mode).unwrap_or(WriteMode::Append);
    match mode {
        WriteMode::Upsert => {}
        WriteMode::Replace => return Ok(Vec::new()),
        _ if spec.upsert_key.is_empty() => return Ok(Vec::new()),
        _ => {
            return Err(PlanError::invalid(
                "--upsert-key only applies to --mode upsert",
            ))
        }
    }
    if spec.upsert_key.is_empty() {
        return Err(PlanError::invalid(
            "mode upsert needs --upsert-key COL[,COL]: the target columns that identify a row",
        ));
    }
    let mut target = typed::open(conns, &spec.target, job_id).await?;
    let kind = target.kind();
    let shown = format!("{}.{}", plan.target.schema, plan.target.name);
    let copied: Vec<String> = plan.columns.iter().map(|c| c.target.clone()).collect();
    let mut keys = Vec::new();
    for k in &spec.upsert_key {
        let part = parse_column(k)
            .map_err(|e| PlanError::invalid(format!("invalid upsert key column: {e}")))?;
        let Some(found) = catalog::find_column(kind, &part, &copied) else {
            return Err(PlanError::invalid(format!(
                "upsert key column '{}' is not one of the columns copied into {shown}",
                part.text
            )));
        };
        keys.push(found.to_string());
    }
    if table_exists && !catalog::has_unique_index(&mut target, &plan.target, &keys).await? {
        return Err(PlanError::invalid(format!(
            "mode upsert needs a unique index or primary key on ({}) in {shown}: create one, or pick --upsert-key columns that have one",
            keys.join(", ")
        )));
    }
    Ok(keys)
}
