//! Smoke tests of the harness itself: real PostgreSQL, real etcd, and the
//! cluster builder's handles on real `ferry` processes.

use std::time::Duration;

use ferry_tests::cli::Submit;
use ferry_tests::cli_output::JobState;
use ferry_tests::cluster::Cluster;
use ferry_tests::data::{create_items_table, fill_items, fill_skewed, row_count, table_checksum};
use ferry_tests::databases::ITEMS_TABLE;
use ferry_tests::etcd::EtcdCluster;
use ferry_tests::log_lines::Leadership;
use ferry_tests::net::port_open;
use ferry_tests::postgres::PgCluster;

const WAIT: Duration = Duration::from_secs(30);

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
    etcd.member(2).kill();
    assert!(
        !etcd.member(2).is_healthy(),
        "a killed member does not answer"
    );
    // Two of three keep quorum.
    etcd.wait_healthy(0);
    etcd.wait_healthy(1);
    etcd.member(2).restart();
    assert!(
        etcd.member(2).is_healthy(),
        "member 2 rejoins after a restart"
    );
    etcd.member(1).freeze();
    assert!(
        !etcd.member(1).is_healthy(),
        "a frozen member does not answer"
    );
    etcd.member(1).thaw();
    etcd.wait_healthy(1);
}

/// Every handle of a cluster without etcd: a worker frozen, thawed,
/// terminated (SIGTERM: it exits cleanly) and restarted as a new process; the
/// coordinator killed and restarted on its port; a worker added mid-test;
/// and the CLI verbs still copy a job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_handles_break_and_restart_real_processes() {
    let mut cluster = Cluster::builder().workers(1).start().await;
    cluster.dbs().prepare_items(1_000).await;
    assert_eq!(cluster.leader(), Some(0));
    let w = cluster.worker(0);
    assert_eq!(w.ids().len(), 1, "registered once: {}", w.log_tail(10));

    w.freeze();
    assert!(w.is_running(), "a frozen worker still runs");
    w.thaw();
    w.terminate();
    let status = w
        .wait_exit(WAIT)
        .unwrap_or_else(|| panic!("SIGTERM did not stop the worker: {}", w.log_tail(20)));
    assert!(
        status.success(),
        "a terminated worker exits cleanly: {status}"
    );
    let old_pid = w.pid();
    cluster.worker_mut(0).restart();
    let w = cluster.worker(0);
    assert_eq!(w.lives(), 2);
    assert_ne!(w.pid(), old_pid, "a restart is a new process");
    w.wait_registered(WAIT);
    assert_eq!(w.logs().len(), 2, "both lives' logs are kept");

    let port = cluster.coordinator(0).port();
    cluster.coordinator(0).kill();
    assert!(!cluster.coordinator(0).is_running());
    assert_eq!(cluster.leader(), None, "a killed coordinator does not lead");
    cluster.coordinator_mut(0).restart();
    assert!(port_open(port), "the coordinator comes back on its port");
    assert_eq!(cluster.leader(), Some(0));

    let added = cluster.add_worker();
    cluster.worker(added).wait_registered(WAIT);
    let out = cluster.submit_watch(&Submit::items().chunk_size(200));
    assert!(out.success(), "{out}");
    assert_eq!(cluster.state(&out.job_id()), Ok(JobState::Succeeded));
    cluster.dbs().assert_copied_exactly(ITEMS_TABLE).await;
}

/// With etcd, c0 leads and c1 follows after start; killing c0 hands the
/// lead to c1, and a restarted c0 follows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_with_etcd_tracks_the_leader() {
    let mut cluster = Cluster::builder().etcd(1).coordinators(2).start().await;
    assert_eq!(cluster.leader(), Some(0));
    assert_eq!(
        cluster.coordinator(1).leadership(),
        Some(Leadership::Follower)
    );
    cluster.coordinator(0).kill();
    assert_eq!(cluster.wait_leader(Duration::from_secs(60)), 1);
    cluster.coordinator_mut(0).restart();
    cluster.coordinator(0).expect_line(
        |l| Leadership::of_line(l) == Some(Leadership::Follower),
        WAIT,
        "that it follows",
    );
    assert_eq!(cluster.leader(), Some(1));
}
