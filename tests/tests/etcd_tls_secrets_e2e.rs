//! etcd with TLS client-certificate authentication and users, and secrets by
//! reference: two coordinators reach etcd over TLS with a certificate and a
//! user whose password is in a file; database passwords are in files apart
//! from their URLs. Jobs run through success across a leader failover,
//! retries after a database restart, and failures; then every log, an etcd
//! dump, the target's `ferry` tables (ledger, rejects, job history) and the
//! coordinators' `/metrics` pages are searched for the passwords.

use std::path::Path;
use std::time::Duration;

use ferry_tests::cli::{CliOutput, Submit, CLI_TIMEOUT};
use ferry_tests::cluster::Cluster;
use ferry_tests::data::{create_items_table, slow_down_inserts};
use ferry_tests::databases::{Databases, ITEMS_TABLE};
use ferry_tests::log_lines::BECAME_LEADER;
use ferry_tests::net::free_ports;
use ferry_tests::observability::{metrics_listen, scrape};
use ferry_tests::security::{
    enable_etcd_auth, etcd_dump, etcd_tls_client, set_pg_hba, Pki, TlsEtcd,
};

/// The database user's password: it must appear nowhere but in its file.
const DB_SECRET: &str = "Mk7dbSecretLeakMarker";
/// The etcd user's password.
const ETCD_SECRET: &str = "Ek9etcdSecretLeakMarker";
const WATCH_TIMEOUT: Duration = Duration::from_secs(240);
const LINE_TIMEOUT: Duration = Duration::from_secs(60);

fn leaks(text: &str) -> Option<&'static str> {
    [DB_SECRET, ETCD_SECRET]
        .into_iter()
        .find(|s| text.contains(s))
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write a secret file");
    path.display().to_string()
}

fn check(what: &str, text: &str) {
    if let Some(secret) = leaks(text) {
        let line = text.lines().find(|l| l.contains(secret)).unwrap_or("");
        panic!("a secret leaked into the {what}: {line}");
    }
}

/// `submit` (with `--watch` when the job asks for it) as the cluster's
/// caller, and what it printed.
fn run(cluster: &Cluster, job: &Submit, timeout: Duration) -> CliOutput {
    cluster.cli(&job.submit_args(cluster.urls()), timeout)
}

/// The job id a submit printed; panics unless it succeeded.
fn job_of(out: &CliOutput) -> String {
    assert!(out.success(), "submit failed: {out}");
    out.job_id()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_with_client_certificates_fails_over_and_no_secret_leaks() {
    assert_eq!(
        leaks(&format!("x{DB_SECRET}x")),
        Some(DB_SECRET),
        "the search finds a marker"
    );
    let pki = Pki::new();
    let ca = pki.ca("etcd-ca");
    let etcd_server = pki.server(&ca, "etcd", &["127.0.0.1"]);
    // its common name is no etcd user: the coordinators get in as user ferry by password
    let coordinator_cert = pki.client(&ca, "coordinator", "coordinator-cert");
    let root_cert = pki.client(&ca, "root", "root");
    let etcd = TlsEtcd::start(&ca, &etcd_server);
    enable_etcd_auth(
        &mut etcd_tls_client(&etcd.endpoint(), &ca, &root_cert).await,
        "ferry",
        ETCD_SECRET,
    )
    .await;

    // the databases: user ferry_app needs its password (scram) over TCP
    let dbs = Databases::one_cluster().await;
    dbs.prepare_items(300_000).await;
    let target = dbs.target().await;
    create_items_table(&target, "public.items_retry").await;
    slow_down_inserts(&target, ITEMS_TABLE, 200).await;
    slow_down_inserts(&target, "public.items_retry", 200).await;
    let pg = dbs.source_cluster();
    pg.client("postgres")
        .await
        .batch_execute(&format!(
            "CREATE ROLE ferry_app LOGIN SUPERUSER PASSWORD '{DB_SECRET}'"
        ))
        .await
        .expect("create the application role");
    set_pg_hba(
        pg,
        "local all all trust\nhost all postgres 127.0.0.1/32 trust\nhost all all 127.0.0.1/32 scram-sha-256\n",
    );

    let dir = pki.path("");
    let url = |db: &str| format!("postgres://ferry_app@127.0.0.1:{}/{db}", pg.port());
    let connections: Vec<(String, String)> = vec![
        (
            "FERRY_CONN_SRC_FILE".into(),
            write(&dir, "src-url", &format!("{}\n", url("src"))),
        ),
        (
            "FERRY_CONN_SRC_PASSWORD_FILE".into(),
            write(&dir, "src-pw", &format!("{DB_SECRET}\n")),
        ),
        ("FERRY_CONN_DST".into(), url("dst")),
        (
            "FERRY_CONN_DST_PASSWORD_FILE".into(),
            write(&dir, "dst-pw", DB_SECRET),
        ),
        (
            "FERRY_CONN_NOWHERE_FILE".into(),
            write(&dir, "nowhere-url", &url("nosuch")),
        ),
        (
            "FERRY_CONN_NOWHERE_PASSWORD_FILE".into(),
            write(&dir, "nowhere-pw", DB_SECRET),
        ),
    ];
    let etcd_password = write(&dir, "etcd-pw", ETCD_SECRET);
    let p = |path: &Path| path.display().to_string();
    let metrics_ports = free_ports(2);
    let listen = metrics_ports.clone();
    // c0 leads through the TLS etcd before c1 starts and follows
    let cluster = Cluster::builder()
        .databases(dbs)
        .connection_env(connections)
        .env("FERRY_ETCD_PASSWORD_FILE", etcd_password)
        .etcd_endpoints(etcd.endpoint())
        .coordinator_arg("--etcd-ca")
        .coordinator_arg(p(&ca.pem))
        .coordinator_arg("--etcd-cert")
        .coordinator_arg(p(&coordinator_cert.cert))
        .coordinator_arg("--etcd-key")
        .coordinator_arg(p(&coordinator_cert.key))
        .coordinator_arg("--etcd-user")
        .coordinator_arg("ferry")
        .coordinator_args_for(move |i| metrics_listen(listen[i]))
        .coordinators(2)
        .workers(2)
        .start()
        .await;
    let (a, b) = (cluster.coordinator(0), cluster.coordinator(1));
    let both = cluster.urls();
    let mut outputs: Vec<CliOutput> = Vec::new();

    // success across a failover: the leader dies mid-job
    let submitted = run(&cluster, &Submit::items().chunk_size(10_000), CLI_TIMEOUT);
    let job = job_of(&submitted);
    outputs.push(submitted);
    assert!(
        a.wait_for_line(
            |l| l.contains("Chunk") && l.contains("completed"),
            LINE_TIMEOUT
        )
        .is_some(),
        "no chunk completed on A:\n{}",
        a.log_tail(20)
    );
    a.kill();
    assert!(
        b.wait_for_log(BECAME_LEADER, LINE_TIMEOUT),
        "B did not take over through the TLS etcd:\n{}",
        b.log_tail(20)
    );
    let watched = cluster.cli(&["watch", &job, "--coordinator", both], WATCH_TIMEOUT);
    assert!(
        watched.success(),
        "the job did not survive the failover: {watched}"
    );
    outputs.push(watched);
    cluster.dbs().assert_copied_exactly(ITEMS_TABLE).await;

    // retries: the database restarts under chunks in flight
    let retry = Submit::new("SELECT * FROM items", "public.items_retry").chunk_size(10_000);
    let submitted = run(&cluster, &retry, CLI_TIMEOUT);
    let retry_job = job_of(&submitted);
    outputs.push(submitted);
    assert!(
        b.wait_for_line(
            |l| l.contains(&retry_job) && l.contains("completed"),
            LINE_TIMEOUT
        )
        .is_some(),
        "no chunk of the retry job completed:\n{}",
        b.log_tail(20)
    );
    let pg = cluster.dbs().source_cluster();
    pg.restart();
    let watched = cluster.cli(&["watch", &retry_job, "--coordinator", both], WATCH_TIMEOUT);
    assert!(
        watched.success(),
        "the job did not survive the restart: {watched}"
    );
    outputs.push(watched);
    assert!(
        b.log().contains("will retry"),
        "the restart caused no retry:\n{}",
        b.log_tail(30)
    );

    // failures: a missing table, and a database that does not exist
    let missing = Submit::new("SELECT * FROM no_such_table", ITEMS_TABLE).args(&["--watch"]);
    let failed = run(&cluster, &missing, WATCH_TIMEOUT);
    assert_eq!(failed.status.code(), Some(1), "{failed}");
    outputs.push(failed);
    let nowhere = Submit::items().source("nowhere").args(&["--watch"]);
    let failed = run(&cluster, &nowhere, WATCH_TIMEOUT);
    assert_eq!(failed.status.code(), Some(1), "{failed}");
    assert!(
        failed.all().contains("password=***") && failed.all().contains("nosuch"),
        "the connection error should name the database with the password masked: {failed}"
    );
    outputs.push(failed);

    // the search: every life of every coordinator and worker
    let mut searched = 0;
    for node in cluster
        .coordinators()
        .iter()
        .map(|c| &**c)
        .chain(cluster.workers().iter().map(|w| &**w))
    {
        for (life, log) in node.logs().iter().enumerate() {
            check(&format!("log of {} (life {life})", node.label()), log);
        }
        searched += 1;
    }
    for out in &outputs {
        check(&format!("output of `{}`", out.command), &out.all());
    }
    let dump = etcd_dump(&etcd.endpoint(), &ca, &root_cert, "").await;
    assert!(
        dump.iter().any(|(k, _)| k.contains("/jobs/")),
        "the etcd dump holds the jobs"
    );
    for (k, v) in &dump {
        check(
            &format!("etcd key {k}"),
            &format!("{k} {}", String::from_utf8_lossy(v)),
        );
    }
    check("etcd server log", &etcd.log());
    let mut scraped = 0;
    for (i, port) in metrics_ports.iter().enumerate() {
        if cluster.coordinator(i).is_running() {
            check(&format!("/metrics of coordinator {i}"), &scrape(*port));
            scraped += 1;
        }
    }
    assert!(scraped > 0, "no coordinator left to scrape");
    check("PostgreSQL server log", &pg.server_log());
    let target = cluster.dbs().target().await; // the restart closed the first one
    let tables = target
        .query(
            "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'ferry'",
            &[],
        )
        .await
        .expect("list ferry tables");
    for row in &tables {
        let table: String = row.get(0);
        let text: Option<String> = target
            .query_one(
                &format!("SELECT string_agg(t::text, E'\\n') FROM ferry.\"{table}\" t"),
                &[],
            )
            .await
            .expect("dump a ferry table")
            .get(0);
        check(&format!("table ferry.{table}"), &text.unwrap_or_default());
    }
    let names: Vec<String> = tables.iter().map(|r| r.get(0)).collect();
    assert!(
        searched >= 4
            && names.iter().any(|n| n == "ledger")
            && names.iter().any(|n| n == "job_history"),
        "the search covered the logs, the ledger and the job history: {names:?}"
    );
}
