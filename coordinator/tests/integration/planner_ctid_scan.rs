//! The chunk SELECT of a job split into `ctid` block ranges reads its blocks
//! with a TID range scan, for a single table and through a join on its
//! driving table: the planner's own plan and the connector's own chunk SQL,
//! explained on a real PostgreSQL with the chunk's bounds bound as workers
//! bind them.

use ferry_common::connections::ConnectionRegistry;
use ferry_common::proto::JobSpec;
use ferry_connectors::postgres::select::{bind_settings, ChunkSelect};
use ferry_coordinator::planner::plan_job;
use ferry_tests::data::{create_items_table_without_key, fill_items};
use ferry_tests::databases::Databases;
use tokio_postgres::types::ToSql;

/// The EXPLAIN of chunk 2 of the job copying `query` into `table`, and the
/// job's plan line.
async fn chunk_plan(dbs: &Databases, query: &str, table: &str) -> (String, String) {
    let conns = ConnectionRegistry::from_pairs([
        ("src".to_string(), dbs.source_url()),
        ("dst".to_string(), dbs.target_url()),
    ]);
    let spec = JobSpec {
        source: "src".into(),
        target: "dst".into(),
        query: query.into(),
        table: table.into(),
        chunk_size: Some(20_000),
        ..Default::default()
    };
    let plan = plan_job(&spec, "ctid-scan", &conns)
        .await
        .unwrap_or_else(|e| panic!("planning {query}: {e}"));
    assert!(plan.chunks.len() >= 8, "{}", plan.strategy);
    assert_eq!(plan.key.len(), 1);
    assert_eq!(plan.key[0].r#type, "tid", "{:?}", plan.key);
    assert!(plan.key[0].target.is_empty(), "ctid is not copied");
    let select = ChunkSelect {
        query: &plan.source_query,
        columns: &plan.columns,
        key: &plan.key,
        bounds: &plan.chunks[1],
    };
    let (sql, values) = select.binary();
    let mut source = dbs.source().await;
    let tx = source.transaction().await.expect("begin");
    let bind = bind_settings(&values).expect("a middle chunk has two bounds");
    let params: Vec<&(dyn ToSql + Sync)> = values.iter().map(|v| v as _).collect();
    tx.query(&bind, &params)
        .await
        .expect("bind the chunk's bounds");
    let rows = tx
        .query(&format!("EXPLAIN {sql}"), &[])
        .await
        .unwrap_or_else(|e| panic!("EXPLAIN {sql}: {e}"));
    let text: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    (text.join("\n"), plan.strategy)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctid_chunks_are_read_by_tid_range_scans() {
    let dbs = Databases::one_cluster().await;
    let source = dbs.source().await;
    create_items_table_without_key(&source, "public.heap").await;
    fill_items(&source, "public.heap", 200_000).await;
    source
        .batch_execute(
            "CREATE TABLE cust (customer_id int PRIMARY KEY, name text);
             INSERT INTO cust SELECT g, 'c' || g FROM generate_series(0, 99999) g;
             ANALYZE cust",
        )
        .await
        .expect("dimension table");
    let target = dbs.target().await;
    create_items_table_without_key(&target, "public.heap").await;
    target
        .batch_execute("CREATE TABLE joined (id bigint, name text)")
        .await
        .expect("target of the join");

    let (plan, strategy) = chunk_plan(&dbs, "SELECT * FROM heap", "public.heap").await;
    assert!(
        strategy.contains("ctid block ranges of public.heap"),
        "{strategy}"
    );
    assert!(plan.contains("Tid Range Scan on heap"), "{plan}");
    assert!(
        strategy.contains("chunks read by TID range scans"),
        "{strategy}"
    );

    let join = "SELECT h.id, c.name FROM heap h JOIN cust c ON c.customer_id = h.customer_id";
    let (plan, strategy) = chunk_plan(&dbs, join, "public.joined").await;
    assert!(strategy.contains("driving table of a join"), "{strategy}");
    assert!(plan.contains("Tid Range Scan on heap h"), "{plan}");
}
