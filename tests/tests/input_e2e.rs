//! End-to-end with bad input: every mistake fails the job (or the CLI) with a
//! message naming the problem, and nothing lands in the target.

use std::time::Duration;

use ferry_tests::cli::{run_cli_until, CliOutput, Submit};
use ferry_tests::cluster::Cluster;
use ferry_tests::data::row_count;
use ferry_tests::databases::{ITEMS_QUERY, ITEMS_TABLE};

/// A failing job may retry transient errors (an unreachable database) with
/// backoff before giving up; permanent ones should fail at once.
const CASE_TIMEOUT: Duration = Duration::from_secs(90);

/// A password placed in every connection URL; it must never be printed.
const SECRET: &str = "ferry-secret-pw";

/// One bad submission and what its failure must say.
struct Case {
    name: &'static str,
    query: &'static str,
    source: &'static str,
    table: &'static str,
    extra: &'static [&'static str],
    /// The output must contain one of these (case-insensitive).
    mentions: &'static [&'static str],
    /// A permanent error: the coordinator must not log `will retry` for it.
    no_retry: bool,
}

const CASES: &[Case] = &[
    Case {
        name: "SQL syntax error",
        query: "SELEC * FROM items",
        source: "src",
        table: ITEMS_TABLE,
        extra: &[],
        mentions: &["syntax error"],
        no_retry: true,
    },
    Case {
        name: "unknown connection name",
        query: ITEMS_QUERY,
        source: "nosuch",
        table: ITEMS_TABLE,
        extra: &[],
        mentions: &["FERRY_CONN_NOSUCH"],
        no_retry: false,
    },
    Case {
        name: "missing target table",
        query: ITEMS_QUERY,
        source: "src",
        table: "public.nosuch",
        extra: &[],
        mentions: &["nosuch"],
        no_retry: false,
    },
    Case {
        name: "query column not in the target",
        query: "SELECT id, 1 AS extra FROM items",
        source: "src",
        table: ITEMS_TABLE,
        extra: &[],
        mentions: &["extra"],
        no_retry: false,
    },
    Case {
        name: "key column not in the query",
        query: ITEMS_QUERY,
        source: "src",
        table: ITEMS_TABLE,
        extra: &["--key", "nokey"],
        mentions: &["nokey"],
        no_retry: false,
    },
    Case {
        name: "chunk size 0",
        query: ITEMS_QUERY,
        source: "src",
        table: ITEMS_TABLE,
        extra: &["--chunk-size", "0"],
        mentions: &["chunk"],
        no_retry: false,
    },
    Case {
        name: "unreachable source database",
        query: ITEMS_QUERY,
        source: "down",
        table: ITEMS_TABLE,
        extra: &[],
        mentions: &["down", "connection refused"],
        no_retry: false,
    },
];

fn mentions_any(out: &CliOutput, needles: &[&str]) -> bool {
    let all = out.all().to_lowercase();
    needles.iter().any(|n| all.contains(&n.to_lowercase()))
}

/// Runs one case; returns what went wrong, if anything.
async fn run_case(case: &Case, cluster: &Cluster) -> Vec<String> {
    let mut problems = Vec::new();
    let coordinator = cluster.coordinator(0);
    let log_before = coordinator.log().len();
    let args = Submit::new(case.query, case.table)
        .source(case.source)
        .args(case.extra)
        .args(&["--watch"])
        .submit_args(cluster.urls());

    let out = cluster.cli_until(&args, CASE_TIMEOUT);
    // Shown with --nocapture, or for a failing test.
    eprintln!("[{}] {out}\n", case.name);
    if out.all().contains(SECRET) {
        problems.push(format!("the output shows a connection password: {out}"));
    }
    if out.timed_out {
        problems.push(format!("did not finish within {CASE_TIMEOUT:?}: {out}"));
    } else if out.success() {
        problems.push(format!("exited 0 on bad input: {out}"));
    }
    if !mentions_any(&out, case.mentions) {
        problems.push(format!(
            "output mentions none of {:?}: {out}",
            case.mentions
        ));
    }
    let landed = row_count(&cluster.dbs().target().await, ITEMS_TABLE).await;
    if landed != 0 {
        problems.push(format!("{landed} rows landed in the target"));
    }
    if case.no_retry {
        let log = coordinator.log();
        let new_lines = log.get(log_before..).unwrap_or(&log);
        if new_lines.contains("will retry") {
            problems.push(format!(
                "a permanent error was retried; coordinator log:\n{new_lines}"
            ));
        }
    }
    problems
        .into_iter()
        .map(|p| format!("[{}] {p}", case.name))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_fails_with_a_clear_message_and_copies_nothing() {
    // Passwords in connection URLs must never reach logs or messages. The
    // test cluster trusts every local connection, so the password is ignored.
    let cluster = Cluster::builder()
        .connection_password(SECRET)
        .env(
            "FERRY_CONN_DOWN",
            format!("postgres://postgres:{SECRET}@127.0.0.1:1/x"),
        )
        .workers(1)
        .start()
        .await;
    cluster.dbs().prepare_items(1_000).await;
    assert!(
        cluster.env().iter().any(|(_, v)| v.contains(SECRET)),
        "the connection URLs should carry the password: {:?}",
        cluster.env()
    );

    let mut problems = Vec::new();
    for case in CASES {
        problems.extend(run_case(case, &cluster).await);
    }
    let processes = [
        cluster.coordinator(0).process(),
        cluster.worker(0).process(),
    ];
    for process in processes {
        if let Some(line) = process.log().lines().find(|l| l.contains(SECRET)) {
            problems.push(format!("{} logged a password: {line}", process.name()));
        }
    }
    assert!(
        problems.is_empty(),
        "{} problem(s):\n\n{}",
        problems.len(),
        problems.join("\n\n")
    );
}

#[test]
fn cli_reports_an_unreachable_coordinator() {
    let out = run_cli_until(
        &["status", "x", "--coordinator", "http://127.0.0.1:1"],
        &[] as &[(&str, &str)],
        Duration::from_secs(30),
    );
    assert!(!out.timed_out, "status hung on a dead coordinator: {out}");
    assert!(
        !out.success(),
        "status succeeded without a coordinator: {out}"
    );
    assert!(
        mentions_any(&out, &["127.0.0.1:1", "unavailable", "cannot reach"]),
        "the error should name the coordinator or say it is unreachable: {out}"
    );
}
