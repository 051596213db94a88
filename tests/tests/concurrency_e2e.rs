//! Jobs that run at the same time must not trip over each other: twenty jobs
//! started at once against a database without Ferry's tables create them
//! race-free (five fresh databases in a row), and two replace jobs into
//! tables whose 63-byte names share a long prefix each load into a table of
//! their own.

use std::time::Duration;

use ferry_tests::cli::Submit;
use ferry_tests::cli_output::JobState;
use ferry_tests::cluster::Cluster;
use ferry_tests::data::{create_items_table, fill_items, table_checksum};
use ferry_tests::databases::{Databases, ITEMS_QUERY};
use ferry_tests::sql::{exec, query_i64};

const JOB_TIMEOUT: Duration = Duration::from_secs(180);
const ROUNDS: usize = 5;
const JOBS: usize = 20;

/// Submits every job at once (one thread each); returns their ids.
fn submit_all(cluster: &Cluster, jobs: Vec<Submit>) -> Vec<String> {
    std::thread::scope(|s| {
        let handles: Vec<_> = jobs
            .iter()
            .map(|job| s.spawn(move || cluster.submit(job)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("submit thread"))
            .collect()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_jobs_at_once_into_a_fresh_database_five_times() {
    let dbs = Databases::one_cluster().await;
    let mut builder = Cluster::builder().workers(2);
    for r in 0..ROUNDS {
        let name = format!("fresh{r}");
        dbs.target_cluster().create_db(&name).await;
        builder = builder.env(
            format!("FERRY_CONN_FRESH{r}"),
            dbs.target_cluster().url(&name),
        );
    }
    let source = dbs.source().await;
    create_items_table(&source, "public.items").await;
    fill_items(&source, "public.items", 2_000).await;
    let want = table_checksum(&source, "public.items").await;
    let cluster = builder.databases(dbs).start().await;

    for r in 0..ROUNDS {
        let db = format!("fresh{r}");
        let target = cluster.dbs().target_cluster().client(&db).await;
        for i in 0..JOBS {
            create_items_table(&target, &format!("public.t{i}")).await;
        }
        assert_eq!(
            query_i64(
                &target,
                "SELECT count(*) FROM pg_namespace WHERE nspname = 'ferry'"
            )
            .await,
            0,
            "round {r} must start without Ferry's tables"
        );
        let jobs = (0..JOBS)
            .map(|i| {
                Submit::new(ITEMS_QUERY, format!("public.t{i}"))
                    .target(&db)
                    .chunk_size(500)
                    .flag("--min-rows-for-parallel", 1)
            })
            .collect();
        let ids = submit_all(&cluster, jobs);
        for (i, job) in ids.iter().enumerate() {
            let state = cluster.wait_terminal(job, JOB_TIMEOUT);
            assert_eq!(
                state,
                Ok(JobState::Succeeded),
                "round {r}, job {i} ({job}): {:?}; coordinator:\n{}",
                cluster.try_status(job),
                cluster.coordinator(0).log_tail(30)
            );
            assert_eq!(
                table_checksum(&target, &format!("public.t{i}")).await,
                want,
                "round {r}: t{i} is not an exact copy"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replace_jobs_into_long_names_with_a_common_prefix_keep_apart() {
    let cluster = Cluster::builder().workers(2).start().await;
    let source = cluster.dbs().source().await;
    create_items_table(&source, "public.items").await;
    fill_items(&source, "public.items", 300_000).await;
    let target = cluster.dbs().target().await;
    let names: Vec<String> = ["a", "b"]
        .iter()
        .map(|s| format!("{}_{s}", "x".repeat(61)))
        .collect();
    for n in &names {
        assert_eq!(n.len(), 63);
        create_items_table(&target, &format!("public.\"{n}\"")).await;
    }
    let jobs = names
        .iter()
        .map(|n| {
            Submit::new(ITEMS_QUERY, format!("public.\"{n}\""))
                .chunk_size(30_000)
                .flag("--mode", "replace")
        })
        .collect();
    let ids = submit_all(&cluster, jobs);
    let want = table_checksum(&source, "public.items").await;
    for (job, n) in ids.iter().zip(&names) {
        assert_eq!(
            cluster.wait_terminal(job, JOB_TIMEOUT),
            Ok(JobState::Succeeded),
            "replace into {n}: {:?}",
            cluster.try_status(job)
        );
        assert_eq!(
            table_checksum(&target, &format!("public.\"{n}\"")).await,
            want,
            "{n} is not an exact copy"
        );
    }
    let leftovers = query_i64(
        &target,
        "SELECT count(*) FROM pg_class WHERE relname LIKE '%\\_\\_ferry\\_%' AND relkind = 'r'",
    )
    .await;
    assert_eq!(leftovers, 0, "a load table was left behind");
    exec(&target, "SELECT 1").await;
}
