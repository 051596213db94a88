//! The target table a PostgreSQL → PostgreSQL plan maps onto: the one that
//! exists, or, with `--create-table` when it does not, the one a run would
//! create from the query's columns (their source types, as
//! `typed::create_if_missing` creates it), so a dry run plans without
//! creating anything.

use ferry_common::ident::parse_table;
use ferry_common::proto::{JobSpec, TableRef};
use ferry_connectors::postgres::describe::{self, resolve_part, QueryColumn, TargetColumn};
use tokio_postgres::Client;

use super::{column, resolve_target, PlanError};

/// The target table and its insertable columns; with `--create-table` and no
/// such table, the table a run would create and its columns.
pub(super) async fn target_or_new(
    target: &Client,
    spec: &JobSpec,
    query_cols: &[QueryColumn],
) -> Result<(TableRef, Vec<TargetColumn>), PlanError> {
    let name = parse_table(&spec.table)
        .map_err(|e| PlanError::invalid(format!("invalid target table: {e}")))?;
    if !spec.create_table || describe::resolve_table(target, &name).await?.is_some() {
        let table = resolve_target(target, spec).await?;
        let cols = describe::describe_table(target, &table).await?;
        return Ok((table, cols));
    }
    let names: Vec<String> = if spec.columns.is_empty() {
        query_cols.iter().map(|c| c.name.clone()).collect()
    } else {
        spec.columns
            .iter()
            .map(|c| column(c, "target column"))
            .collect::<Result<_, _>>()?
    };
    if names.len() != query_cols.len() {
        return Err(PlanError::invalid(format!(
            "--columns names {} target columns but the query returns {}",
            names.len(),
            query_cols.len()
        )));
    }
    let table = match name.parts.as_slice() {
        [schema, table] => TableRef::new(resolve_part(schema), resolve_part(table)),
        _ => TableRef::new("public", resolve_part(name.last())),
    };
    let cols = names
        .into_iter()
        .zip(query_cols)
        .map(|(name, c)| TargetColumn {
            name,
            base_type: c.base_type.clone(),
            full_type: c.full_type.clone(),
        })
        .collect();
    Ok((table, cols))
}
