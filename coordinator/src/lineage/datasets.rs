//! Where a job's data comes from and goes to, as OpenLineage datasets: the
//! tables its query reads (PostgreSQL's own plan of the query names them) and
//! its target table.

use ferry_common::ident::parse_table;
use ferry_common::timing::LINEAGE_EXPLAIN_TIMEOUT;
use ferry_connectors::postgres::describe::resolve_part;
use ferry_connectors::postgres::{sample, session};
use serde_json::Value;

use super::event::Dataset;

/// `postgres://host:port` and the database name of a connection URL, without
/// user or password (the OpenLineage naming spec's PostgreSQL namespace).
pub fn namespace_of(url: &str) -> Option<(String, String)> {
    let config: tokio_postgres::Config = url.parse().ok()?;
    let host = match config.get_hosts().first()? {
        tokio_postgres::config::Host::Tcp(h) => h.clone(),
        #[cfg(unix)]
        tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let db = config
        .get_dbname()
        .or(config.get_user())
        .unwrap_or("postgres")
        .to_string();
    Some((format!("postgres://{host}:{port}"), db))
}

/// The target table (as the job names it, resolved by PostgreSQL's rules:
/// unqualified means `public`) as a dataset.
pub fn target_dataset(connection: &str, url: &str, table: &str) -> Option<Dataset> {
    let (namespace, db) = namespace_of(url)?;
    let name = parse_table(table).ok()?;
    let (schema, table) = match name.parts.as_slice() {
        [schema, table] => (resolve_part(schema), resolve_part(table)),
        [table] => ("public".to_string(), resolve_part(table)),
        _ => return None,
    };
    Some(Dataset {
        namespace,
        name: format!("{db}.{schema}.{table}"),
        connection: connection.to_string(),
    })
}

/// Every (schema, relation) a plan node or its children scan.
fn relations(plan: &Value, out: &mut Vec<(String, String)>) {
    if let (Some(rel), Some(schema)) = (
        plan.get("Relation Name").and_then(Value::as_str),
        plan.get("Schema").and_then(Value::as_str),
    ) {
        out.push((schema.to_string(), rel.to_string()));
    }
    if let Some(children) = plan.get("Plans").and_then(Value::as_array) {
        for child in children {
            relations(child, out);
        }
    }
}

/// Why the tables a query reads could not be found.
#[derive(Debug, thiserror::Error)]
pub enum InputsError {
    /// The connection URL cannot be parsed.
    #[error("connection '{0}' has an unusable URL")]
    BadUrl(String),
    /// The source could not be reached or refused the EXPLAIN.
    #[error("{0}")]
    Database(String),
    /// The source did not answer in time.
    #[error("the source did not answer within {0:?}")]
    Timeout(std::time::Duration),
}

/// The tables `query` reads on the source, from `EXPLAIN (VERBOSE, FORMAT
/// JSON)`: PostgreSQL resolves views, schemas and search_path, so the names
/// are the relations actually scanned.
pub async fn query_inputs(
    connection: &str,
    url: &str,
    query: &str,
) -> Result<Vec<Dataset>, InputsError> {
    let (namespace, db) =
        namespace_of(url).ok_or_else(|| InputsError::BadUrl(connection.to_string()))?;
    let explain = async {
        let client = session::open(connection, url)
            .await
            .map_err(|f| InputsError::Database(f.message))?;
        sample::root_plan(&client, query)
            .await
            .map_err(|f| InputsError::Database(f.message))
    };
    let root = tokio::time::timeout(LINEAGE_EXPLAIN_TIMEOUT, explain)
        .await
        .map_err(|_| InputsError::Timeout(LINEAGE_EXPLAIN_TIMEOUT))??;
    let mut found = Vec::new();
    relations(&root, &mut found);
    found.sort();
    found.dedup();
    Ok(found
        .into_iter()
        .map(|(schema, rel)| Dataset {
            namespace: namespace.clone(),
            name: format!("{db}.{schema}.{rel}"),
            connection: connection.to_string(),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn namespaces_drop_credentials() {
        let (ns, db) = namespace_of("postgres://u:secret@db.example:6543/sales").expect("url");
        assert_eq!(ns, "postgres://db.example:6543");
        assert_eq!(db, "sales");
        let t = target_dataset("dst", "postgres://u@h/lake", "public.t").expect("dataset");
        assert_eq!(t.name, "lake.public.t");
        assert_eq!(t.namespace, "postgres://h:5432");
    }

    #[test]
    fn finds_relations_in_nested_plans() {
        let plan = json!({"Node Type": "Hash Join", "Plans": [
            {"Node Type": "Seq Scan", "Relation Name": "orders", "Schema": "public"},
            {"Node Type": "Hash", "Plans": [
                {"Node Type": "Index Scan", "Relation Name": "customers", "Schema": "crm"}]}]});
        let mut out = Vec::new();
        relations(&plan, &mut out);
        assert_eq!(
            out,
            vec![
                ("public".to_string(), "orders".to_string()),
                ("crm".to_string(), "customers".to_string())
            ]
        );
    }
}
