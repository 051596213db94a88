//! The planner's own look at PostgreSQL's plan of a query.

use serde_json::Value;
use tokio_postgres::Client;

/// The root node of `EXPLAIN (VERBOSE, FORMAT JSON) sql` (node type, relation,
/// schema, output columns, estimated rows, children).
pub async fn root_plan(source: &Client, sql: &str) -> Result<Value, tokio_postgres::Error> {
    let row = source
        .query_one(&format!("EXPLAIN (VERBOSE, FORMAT JSON) {sql}"), &[])
        .await?;
    let mut plan: Value = row.try_get(0)?;
    Ok(plan
        .get_mut(0)
        .and_then(|p| p.get_mut("Plan"))
        .map(Value::take)
        .unwrap_or(Value::Null))
}
