//! Verify and repair of a job split on a text key whose target column sorts
//! in another collation than the source's: a chunk's key range would hold
//! other rows in the target, so `ferry verify` compares the whole table and
//! says why, and `ferry repair` refuses (deleting such a range would delete
//! other chunks' rows without copying them back). A text key in the same
//! collation on both sides is still compared and repaired range by range.
//! `ferry plan` warns of it beforehand.

use std::time::Duration;

use ferry_tests::cli::{Submit, LONG_CLI_TIMEOUT};
use ferry_tests::cli_output::JobState;
use ferry_tests::cluster::Cluster;
use ferry_tests::data::table_checksum;
use ferry_tests::sql::exec;

/// Fail-safe for a job to finish.
const JOB_TIMEOUT: Duration = Duration::from_secs(300);
/// Rows a chunk aims at (the tables hold 40,000).
const CHUNK: u64 = 5_000;
/// Mixed case, so that ICU's order ('a' < 'B') is not C's ('B' < 'a').
const FILL: &str =
    "SELECT chr(65 + g % 26 + (g % 2) * 32) || g, g FROM generate_series(1, 40000) g";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_text_key_sorted_otherwise_in_the_target_is_verified_whole_and_not_repaired() {
    let cluster = Cluster::builder().workers(2).start().await;
    let (source, target) = (cluster.dbs().source().await, cluster.dbs().target().await);
    for (table, target_collation) in [("codes_icu", "en-x-icu"), ("codes_c", "C")] {
        exec(
            &source,
            &format!(
                "CREATE TABLE {table} (k text COLLATE \"en-x-icu\" PRIMARY KEY, v int NOT NULL)"
            ),
        )
        .await;
        exec(&source, &format!("INSERT INTO {table} {FILL}")).await;
        exec(&source, &format!("ANALYZE {table}")).await;
        exec(
            &target,
            &format!(
                "CREATE TABLE {table} (k text COLLATE \"{target_collation}\" PRIMARY KEY, v int NOT NULL)"
            ),
        )
        .await;
    }
    // the dry run says so before anything runs
    let plan = |table: &str| {
        let job = Submit::new(format!("SELECT * FROM {table}"), format!("public.{table}"))
            .chunk_size(CHUNK)
            .flag("--min-rows-for-parallel", 0);
        let mut args = job.submit_args(cluster.urls());
        args[0] = "plan".to_string();
        let out = cluster.cli(&args, LONG_CLI_TIMEOUT);
        assert!(out.success(), "{out}");
        out.stdout
            .lines()
            .filter(|l| l.starts_with("warning: key order: "))
            .count()
    };
    assert_eq!(plan("codes_icu"), 0, "equal collations need no warning");
    assert_eq!(plan("codes_c"), 1, "the plan does not warn of the C target");

    let submit = |table: &str| {
        let job = cluster.submit(
            &Submit::new(format!("SELECT * FROM {table}"), format!("public.{table}"))
                .chunk_size(CHUNK)
                .flag("--min-rows-for-parallel", 0),
        );
        assert_eq!(
            cluster.wait_terminal(&job, JOB_TIMEOUT),
            Ok(JobState::Succeeded)
        );
        assert!(
            cluster.status(&job).chunks_total >= 6,
            "{table} was not split"
        );
        job
    };

    // the same collation on both sides: range by range, and repair restores
    let same = submit("codes_icu");
    let chunks = cluster.status(&same).chunks_total;
    let v = cluster.verify(&same);
    assert_eq!(v.all_match, Some(chunks), "{}", v.output);
    exec(&target, "DELETE FROM codes_icu WHERE v % 1000 = 7").await;
    let v = cluster.verify(&same);
    let (differ, of) = v.differ.unwrap_or_else(|| panic!("{}", v.output));
    assert!(differ >= 2 && of == chunks, "{}", v.output);
    let repair = cluster.repair(&same);
    assert!(repair.success(), "repair with equal collations: {repair}");
    assert_eq!(
        cluster.wait_terminal(&same, JOB_TIMEOUT),
        Ok(JobState::Succeeded)
    );
    assert_eq!(
        table_checksum(&target, "codes_icu").await,
        table_checksum(&source, "codes_icu").await
    );

    // C in the target: the whole table at once, with the reason
    let other = submit("codes_c");
    assert_eq!(
        table_checksum(&target, "codes_c").await,
        table_checksum(&source, "codes_c").await
    );
    let v = cluster.verify(&other);
    assert_eq!(v.all_match, Some(1), "{}", v.output);
    assert!(
        v.output.all().contains("sorts in icu locale")
            && v.output.all().contains("code point order"),
        "verify does not say why it compares the whole table: {}",
        v.output
    );
    exec(&target, "DELETE FROM codes_c WHERE v % 1000 = 7").await;
    let v = cluster.verify(&other);
    assert_eq!(v.differ, Some((1, 1)), "{}", v.output);
    let before = table_checksum(&target, "codes_c").await;
    let repair = cluster.repair(&other);
    assert!(!repair.success(), "repair must refuse: {repair}");
    let said = repair.all();
    assert!(
        said.contains("key column 'k' sorts in")
            && said.contains("COLLATE")
            && said.contains("--mode truncate"),
        "{repair}"
    );
    assert_eq!(
        table_checksum(&target, "codes_c").await,
        before,
        "a refused repair changed the target"
    );
    assert_eq!(cluster.state(&other), Ok(JobState::Succeeded));
}
