//! Smoke tests of the harness itself: real PostgreSQL and real etcd.

use ferry_tests::data::{create_items_table, fill_items, fill_skewed, row_count, table_checksum};
use ferry_tests::etcd::EtcdCluster;
use ferry_tests::postgres::PgCluster;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_cluster_starts_restarts_and_keeps_data() {
    let pg = PgCluster::start();
    pg.create_db("src").await;
    let client = pg.client("src").await;
    create_items_table(&client, "public.items").await;
    fill_items(&client, "public.items", 1000).await;
    let before = table_checksum(&client, "public.items").await;
    assert_eq!(before.0, 1000);
    let nulls: i64 = client
        .query_one("SELECT count(*) FROM items WHERE note IS NULL", &[])
        .await
        .expect("count NULL notes")
        .get(0);
    assert_eq!(nulls, 1000 / 7, "every 7th note is NULL");

    pg.restart();
    assert!(
        client.query_one("SELECT 1", &[]).await.is_err(),
        "old connections are gone after a restart"
    );
    let client = pg.client("src").await;
    assert_eq!(
        table_checksum(&client, "public.items").await,
        before,
        "data survives a fast restart"
    );

    pg.stop();
    assert!(
        tokio_postgres::connect(&pg.url("src"), tokio_postgres::NoTls)
            .await
            .is_err(),
        "a stopped cluster refuses connections"
    );
    pg.start_again();
    let client = pg.client("src").await;
    assert_eq!(row_count(&client, "items").await, 1000);
    let listen: String = client
        .query_one("SHOW listen_addresses", &[])
        .await
        .expect("show listen_addresses")
        .get(0);
    assert_eq!(listen, "127.0.0.1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checksum_is_order_independent_and_sees_changes() {
    let pg = PgCluster::start();
    pg.create_db("a").await;
    let client = pg.client("a").await;
    create_items_table(&client, "public.x").await;
    create_items_table(&client, "public.y").await;
    fill_items(&client, "public.x", 5000).await;
    client
        .batch_execute("INSERT INTO y SELECT * FROM x ORDER BY id DESC")
        .await
        .expect("copy x to y in reverse order");
    let x = table_checksum(&client, "public.x").await;
    assert_eq!(x, table_checksum(&client, "public.y").await);
    client
        .batch_execute("UPDATE y SET note = 'changed' WHERE id = 4242")
        .await
        .expect("change one row");
    assert_ne!(x, table_checksum(&client, "public.y").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skewed_fill_packs_most_rows_into_one_percent_of_the_domain() {
    let pg = PgCluster::start();
    pg.create_db("a").await;
    let client = pg.client("a").await;
    create_items_table(&client, "public.items").await;
    fill_skewed(&client, "public.items", 100_000).await;
    let row = client
        .query_one(
            "SELECT count(*), min(id), max(id), \
             count(*) FILTER (WHERE id <= (SELECT max(id) FROM items) / 100) FROM items",
            &[],
        )
        .await
        .expect("skew stats");
    let (count, min, max, dense): (i64, i64, i64, i64) =
        (row.get(0), row.get(1), row.get(2), row.get(3));
    assert_eq!(count, 100_000);
    assert_eq!(min, 1);
    assert!(max >= 9_900_000, "domain spans ~100 x rows, max id {max}");
    assert!(
        dense >= 90_000,
        "90% of rows in the first 1% of keys, got {dense}"
    );
}

#[test]
fn etcd_single_member_is_healthy() {
    let etcd = EtcdCluster::start(1);
    assert_eq!(etcd.endpoints().len(), 1);
    assert!(etcd.endpoints()[0].starts_with("http://127.0.0.1:"));
    assert!(etcd.is_healthy(0));
}

#[test]
fn etcd_three_members_survive_losing_one() {
    let etcd = EtcdCluster::start(3);
    assert_eq!(etcd.endpoints().len(), 3);
    for i in 0..3 {
        assert!(etcd.is_healthy(i), "member {i} healthy");
    }
    etcd.kill(2);
    assert!(!etcd.is_healthy(2), "a killed member does not answer");
    // Two of three keep quorum.
    etcd.wait_healthy(0);
    etcd.wait_healthy(1);
    etcd.restart(2);
    assert!(etcd.is_healthy(2), "member 2 rejoins after a restart");
}
