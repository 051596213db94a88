//! Key values are data, never SQL: a text key holding `'`, `\`, `{key}`,
//! `$1`, a newline, a tab, quotes or an emoji copies exactly, verifies, and
//! after rows with such keys are deleted or altered in the target, repair
//! deletes and copies again exactly the right ranges. A refused row's key is
//! recorded as the value itself.

use std::collections::BTreeSet;
use std::time::Duration;

use ferry_tests::cli::Submit;
use ferry_tests::cli_output::JobState;
use ferry_tests::cluster::Cluster;
use ferry_tests::data::table_checksum;
use ferry_tests::sql::{exec, query_i64};

const ROWS: i64 = 140_000;
const CHUNK: u64 = 10_000;
const JOB_TIMEOUT: Duration = Duration::from_secs(120);

/// Prefixes of the generated keys (key = prefix || n).
const HOSTILE: &[&str] = &[
    "it's",
    "back\\slash",
    "{key}",
    "new\nline",
    "🚀",
    "$1",
    "\"q\"",
    "tab\there",
    "'; DROP TABLE weird; --",
];

/// Keys the test changes in the target: one of each hostile kind (row `g`
/// has prefix `g % 9`, so row 9000 + i has prefix i).
fn touched() -> Vec<String> {
    assert_eq!(HOSTILE.len(), 9);
    HOSTILE
        .iter()
        .enumerate()
        .map(|(i, p)| format!("{p}{}", 9000 + i))
        .collect()
}

async fn prepare(cluster: &Cluster) {
    let source = cluster.dbs().source().await;
    let prefixes: Vec<String> = HOSTILE.iter().map(|s| s.to_string()).collect();
    for t in ["weird", "weird_checked"] {
        exec(
            &source,
            &format!("CREATE TABLE {t} (k text PRIMARY KEY, v int NOT NULL)"),
        )
        .await;
        source
            .execute(
                &format!(
                    "INSERT INTO {t} SELECT ($1::text[])[g % cardinality($1::text[]) + 1] || g, g
                       FROM generate_series(1, {ROWS}) g"
                ),
                &[&prefixes],
            )
            .await
            .expect("fill the hostile keys");
    }
    // rows the target's CHECK will refuse: one of each hostile kind
    let refused = touched();
    source
        .execute(
            "UPDATE weird_checked SET v = -1 WHERE k = ANY($1)",
            &[&refused],
        )
        .await
        .expect("mark refused rows");
    let target = cluster.dbs().target().await;
    exec(
        &target,
        "CREATE TABLE weird (k text PRIMARY KEY, v int NOT NULL)",
    )
    .await;
    exec(
        &target,
        "CREATE TABLE weird_checked (k text PRIMARY KEY, v int NOT NULL CHECK (v >= 0))",
    )
    .await;
}

async fn assert_exact(cluster: &Cluster, table: &str) {
    let source = table_checksum(&cluster.dbs().source().await, table).await;
    let target = table_checksum(&cluster.dbs().target().await, table).await;
    assert_eq!(target, source, "{table}: target differs from the source");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_text_keys_copy_verify_and_repair_exactly() {
    let cluster = Cluster::builder().workers(2).start().await;
    prepare(&cluster).await;
    let job = Submit::new("SELECT * FROM weird", "public.weird").chunk_size(CHUNK);
    let out = cluster.submit_watch(&job);
    assert!(out.success(), "copy failed: {out}");
    let job = out.job_id();
    assert_exact(&cluster, "weird").await;
    let chunks = cluster.status(&job).chunks_total;
    assert!(chunks >= 10, "the text key was not split: {chunks} chunks");

    let verify = cluster.job_verb("verify", &job, &[], JOB_TIMEOUT);
    assert!(verify.success(), "a clean copy must verify: {verify}");

    // delete four rows and alter five others, each with a hostile key
    let target = cluster.dbs().target().await;
    let keys = touched();
    let (gone, changed) = keys.split_at(4);
    let n = target
        .execute("DELETE FROM weird WHERE k = ANY($1)", &[&gone.to_vec()])
        .await
        .expect("delete rows");
    assert_eq!(n, 4);
    let n = target
        .execute(
            "UPDATE weird SET v = v + 1 WHERE k = ANY($1)",
            &[&changed.to_vec()],
        )
        .await
        .expect("alter rows");
    assert_eq!(n, 5);
    let verify = cluster.job_verb("verify", &job, &[], JOB_TIMEOUT);
    assert!(
        !verify.success(),
        "verify missed deleted and altered rows: {verify}"
    );
    assert!(
        verify.stdout.contains("chunks differ"),
        "verify should say which chunks differ: {verify}"
    );
    let out = cluster.repair(&job);
    assert!(out.success(), "repair failed: {out}");
    assert_eq!(
        cluster.wait_terminal(&job, JOB_TIMEOUT),
        Ok(JobState::Succeeded)
    );
    assert_exact(&cluster, "weird").await;
    let verify = cluster.job_verb("verify", &job, &[], JOB_TIMEOUT);
    assert!(
        verify.success(),
        "after repair the copy must verify: {verify}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_rows_key_is_recorded_as_the_value_itself() {
    let cluster = Cluster::builder().workers(2).start().await;
    prepare(&cluster).await;
    let out = cluster.submit_watch(
        &Submit::new("SELECT * FROM weird_checked", "public.weird_checked").chunk_size(CHUNK),
    );
    assert!(out.success(), "the job with refused rows failed: {out}");
    let job = out.job_id();
    let target = cluster.dbs().target().await;
    let rows = target
        .query(
            "SELECT key, sqlstate FROM ferry.rejects WHERE job_id = $1",
            &[&job],
        )
        .await
        .expect("read rejects");
    let recorded: BTreeSet<String> = rows
        .iter()
        .map(|r| {
            assert_eq!(r.get::<_, String>(1), "23514");
            r.get::<_, Option<String>>(0)
                .expect("a reject without its key")
        })
        .collect();
    let expected: BTreeSet<String> = touched().into_iter().collect();
    assert_eq!(
        recorded, expected,
        "the recorded keys are not the refused values"
    );
    assert_eq!(
        query_i64(&target, "SELECT count(*) FROM weird_checked").await,
        ROWS - expected.len() as i64
    );
}
