//! Security end-to-end: a coordinator with TLS, workers with client
//! certificates and API clients with tokens, as real processes with
//! certificates made here (rcgen). Strangers are refused with messages that
//! say why, and the copy is exact.

use std::path::Path;
use std::time::{Duration, Instant};

use ferry_tests::caller::Caller;
use ferry_tests::cli::{CliOutput, Submit, CLI_TIMEOUT};
use ferry_tests::cluster::{Cluster, ClusterBuilder, WorkerOptions};
use ferry_tests::data::slow_down_inserts;
use ferry_tests::databases::{Databases, ITEMS_TABLE};
use ferry_tests::ledger::ledger_summary;
use ferry_tests::security::{Issued, Pki};

const WATCH_TIMEOUT: Duration = Duration::from_secs(240);
/// Exit code of a CLI refused by the coordinator (credentials or role).
const EXIT_REFUSED: i32 = 4;

fn p(path: &Path) -> String {
    path.display().to_string()
}

/// Coordinators serving TLS with `server`'s certificate files, requiring
/// worker certificates from `worker_ca`; clients get `https://` URLs.
fn serving_tls(
    builder: ClusterBuilder,
    cert: &Path,
    key: &Path,
    worker_ca: &Path,
) -> ClusterBuilder {
    builder
        .https()
        .coordinator_arg("--tls-cert")
        .coordinator_arg(p(cert))
        .coordinator_arg("--tls-key")
        .coordinator_arg(p(key))
        .coordinator_arg("--worker-ca")
        .coordinator_arg(p(worker_ca))
}

/// The job id a submit printed; panics unless it succeeded.
fn job_of(out: &CliOutput) -> String {
    assert!(out.success(), "submit failed: {out}");
    out.job_id()
}

fn assert_refused(out: &CliOutput, needle: &str) {
    assert_eq!(
        out.status.code(),
        Some(EXIT_REFUSED),
        "expected exit 4: {out}"
    );
    assert!(out.stderr.contains(needle), "expected {needle:?} in: {out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_and_tokens_copy_a_million_rows_and_refuse_strangers() {
    const ROWS: u64 = 1_000_000;
    let pki = Pki::new();
    let ca = pki.ca("ca");
    let other = pki.ca("other");
    let server = pki.server(&ca, "server", &["localhost", "127.0.0.1"]);
    let good = pki.client(&ca, "worker", "worker-1");
    let stranger = pki.client(&other, "stranger", "worker-1");
    let tokens = pki.tokens_file("tokens", &[("op-token", "op-a", "operator")]);
    let dbs = Databases::one_cluster().await;
    dbs.prepare_items(ROWS).await;
    let trusting = Caller::new().tls_ca(&ca.pem);
    // the strangers knock first and keep knocking while the job runs
    let cluster = serving_tls(Cluster::builder(), &server.cert, &server.key, &ca.pem)
        .databases(dbs)
        .coordinator_env("FERRY_AUTH_TOKENS_FILE", p(&tokens))
        .worker(
            WorkerOptions::new()
                .caller(&trusting.clone().client_cert(&stranger))
                .unregistered(),
        )
        .worker(WorkerOptions::new().caller(&trusting).unregistered())
        .worker_caller(&trusting.clone().client_cert(&good))
        .workers(2)
        .caller(trusting.clone().token("op-token"))
        .start()
        .await;
    let coordinator = cluster.coordinator(0);

    // a plaintext client learns that TLS is required
    let plain_url = format!("http://127.0.0.1:{}", coordinator.port());
    let plain = cluster.cli_as(
        &Caller::new().token("op-token"),
        &["jobs", "--coordinator", &plain_url],
        CLI_TIMEOUT,
    );
    assert_refused(&plain, "requires TLS");

    let watch = Submit::items().chunk_size(50_000).args(&["--watch"]);
    let out = cluster.cli(&watch.submit_args(cluster.urls()), WATCH_TIMEOUT);
    assert!(out.success(), "the TLS job failed: {out}");
    let job = job_of(&out);
    cluster.dbs().assert_copied_exactly(ITEMS_TABLE).await;
    let ledger = ledger_summary(&cluster.dbs().target().await, &job).await;
    assert_eq!(ledger.rows, ledger.distinct_chunks, "{ledger:?}");
    assert_eq!(ledger.rows_written, ROWS as i64, "{ledger:?}");

    for (w, why) in [
        (
            cluster.worker(0),
            "is refused: invalid peer certificate: UnknownIssuer",
        ),
        (cluster.worker(1), "the call came without one"),
    ] {
        let log = w.all_lines().join("\n");
        assert!(
            log.contains("needs a client certificate issued by the worker CA") && log.contains(why),
            "{} should say why it is refused ({why}):\n{}",
            w.label(),
            w.log_tail(10)
        );
        assert!(
            !log.contains("registered with coordinator") && !log.contains("chunk committed"),
            "{} was let in:\n{}",
            w.label(),
            w.log_tail(10)
        );
    }
    let log = coordinator.log();
    assert!(
        log.contains("worker session authenticated by its client certificate")
            && log.contains("certificate=CN=worker-1"),
        "the coordinator does not log the workers' certificates:\n{}",
        coordinator.log_tail(30)
    );
    assert!(
        log.lines().any(|l| l.contains("audit")
            && l.contains("action=\"submit\"")
            && l.contains("who=op-a")
            && l.contains(&job)),
        "no audit line for the submit:\n{}",
        coordinator.log_tail(30)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_role_gets_exactly_its_rights() {
    let pki = Pki::new();
    let ca = pki.ca("ca");
    let client_ca = pki.ca("clients");
    let server = pki.server(&ca, "server", &["127.0.0.1"]);
    let worker_cert = pki.client(&ca, "worker", "worker-1");
    let viewer_cert = pki.client(&client_ca, "cert-viewer", "dashboard");
    let tokens = pki.tokens_file(
        "tokens",
        &[
            ("view-token", "vera", "viewer"),
            ("op-token", "otto", "operator"),
            ("admin-token", "ada", "admin"),
            ("unused", "dashboard", "viewer"),
        ],
    );
    let dbs = Databases::one_cluster().await;
    dbs.prepare_items(10_000).await;
    let cluster = serving_tls(Cluster::builder(), &server.cert, &server.key, &ca.pem)
        .databases(dbs)
        .coordinator_arg("--client-ca")
        .coordinator_arg(p(&client_ca.pem))
        .coordinator_env("FERRY_AUTH_TOKENS_FILE", p(&tokens))
        .caller(Caller::new().tls_ca(&ca.pem))
        .start()
        .await;
    let url = cluster.urls();
    let as_token = |t: &str| cluster.caller().clone().token(t);
    let call = |caller: &Caller, args: &[&str]| cluster.cli_as(caller, args, CLI_TIMEOUT);
    let submit =
        |t: &str| cluster.cli_as(&as_token(t), &Submit::items().submit_args(url), CLI_TIMEOUT);

    // viewer: reads, no changes
    let viewer = as_token("view-token");
    assert!(call(&viewer, &["jobs", "--coordinator", url]).success());
    let history = call(&viewer, &["history", "--coordinator", url]);
    assert!(history.success(), "viewer history over TLS: {history}");
    assert_refused(
        &submit("view-token"),
        "vera (role viewer) may not call SubmitJob: it needs role operator",
    );

    // operator: submits and cancels; reads too
    let job = job_of(&submit("op-token"));
    let operator = as_token("op-token");
    assert!(call(&viewer, &["status", &job, "--coordinator", url]).success());
    assert_refused(
        &call(&viewer, &["cancel", &job, "--coordinator", url]),
        "needs role operator",
    );
    let cancelled = call(&operator, &["cancel", &job, "--coordinator", url]);
    assert!(cancelled.success(), "operator cancel: {cancelled}");
    assert!(call(&operator, &["jobs", "--coordinator", url]).success());

    // admin: everything an operator may, and reads
    let admin = as_token("admin-token");
    let job2 = job_of(&submit("admin-token"));
    assert!(call(&admin, &["cancel", &job2, "--coordinator", url]).success());
    assert!(call(&admin, &["status", &job2, "--coordinator", url]).success());

    // wrong or missing token: UNAUTHENTICATED
    assert_refused(
        &call(&as_token("guess"), &["jobs", "--coordinator", url]),
        "not in the coordinator's tokens file",
    );
    assert_refused(
        &call(cluster.caller(), &["jobs", "--coordinator", url]),
        "JobService needs credentials",
    );

    // a certificate from --client-ca gets its name's role; a worker's certificate gets nothing
    let as_cert = |c: &Issued| cluster.caller().clone().client_cert(c);
    assert!(call(&as_cert(&viewer_cert), &["jobs", "--coordinator", url]).success());
    assert_refused(
        &call(
            &as_cert(&viewer_cert),
            &["cancel", &job2, "--coordinator", url],
        ),
        "dashboard (role viewer) may not call CancelJob",
    );
    assert_refused(
        &call(&as_cert(&worker_cert), &["jobs", "--coordinator", url]),
        "client CA (--client-ca)",
    );

    // the tokens file is read again when it changes
    let rotated = pki.tokens_file("tokens.new", &[("new-token", "nina", "viewer")]);
    std::fs::rename(&rotated, &tokens).expect("replace the tokens file");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = call(&as_token("new-token"), &["jobs", "--coordinator", url]);
        if out.success() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the new tokens file was not picked up: {out}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_refused(
        &call(&operator, &["jobs", "--coordinator", url]),
        "not in the coordinator's tokens file",
    );

    let coordinator = cluster.coordinator(0);
    let log = coordinator.log();
    for (who, action, job) in [
        ("otto", "submit", &job),
        ("otto", "cancel", &job),
        ("ada", "cancel", &job2),
    ] {
        assert!(
            log.lines().any(|l| l.contains("audit")
                && l.contains(&format!("action=\"{action}\""))
                && l.contains(&format!("who={who}"))
                && l.contains(job.as_str())),
            "no audit line for {who} {action} {job}:\n{}",
            coordinator.log_tail(30)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_rotation_mid_job_serves_the_new_certificate_and_drops_no_chunk() {
    const ROWS: u64 = 300_000;
    let pki = Pki::new();
    let old_ca = pki.ca("old-ca");
    let new_ca = pki.ca("new-ca");
    let trust = pki.bundle("trust.pem", &[&old_ca, &new_ca]);
    let old = pki.server(&old_ca, "server-old", &["127.0.0.1"]);
    let new = pki.server(&new_ca, "server-new", &["127.0.0.1"]);
    let worker_cert = pki.client(&old_ca, "worker", "worker-1");
    // the files the coordinator reads, replaced mid-job
    let (cert, key) = (pki.path("server.pem"), pki.path("server.key"));
    std::fs::copy(&old.cert, &cert).expect("copy cert");
    std::fs::copy(&old.key, &key).expect("copy key");

    let dbs = Databases::one_cluster().await;
    dbs.prepare_items(ROWS).await;
    // each chunk's insert takes 0.3 s longer: the job lasts well past its first chunk
    slow_down_inserts(&dbs.target().await, ITEMS_TABLE, 300).await;
    let trusting = Caller::new().tls_ca(&trust);
    let cluster = serving_tls(Cluster::builder(), &cert, &key, &old_ca.pem)
        .databases(dbs)
        .worker_caller(&trusting.clone().client_cert(&worker_cert))
        .workers(2)
        .caller(trusting)
        .start()
        .await;
    let coordinator = cluster.coordinator(0);
    let url = cluster.urls();
    let job = cluster.submit(&Submit::items().chunk_size(5000));
    assert!(
        coordinator
            .wait_for_line(
                |l| l.contains("Chunk") && l.contains("completed"),
                Duration::from_secs(60)
            )
            .is_some(),
        "no chunk completed before the rotation:\n{}",
        coordinator.log_tail(20)
    );

    // hold the chunks in flight where they are (their COPY waits on this lock)
    // while the certificate changes: the job cannot end meanwhile
    let blocker = cluster.dbs().target().await;
    blocker
        .batch_execute("BEGIN; LOCK TABLE public.items IN SHARE MODE")
        .await
        .expect("lock the target table");

    // rotate: write the new pair next to the old, then rename over it
    std::fs::copy(&new.cert, pki.path("tmp.pem")).expect("stage cert");
    std::fs::copy(&new.key, pki.path("tmp.key")).expect("stage key");
    std::fs::rename(pki.path("tmp.pem"), &cert).expect("rotate cert");
    std::fs::rename(pki.path("tmp.key"), &key).expect("rotate key");

    // new connections get the new certificate: a client trusting only the new CA gets in
    let new_only = Caller::new().tls_ca(&new_ca.pem);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = cluster.cli_as(
            &new_only,
            &["status", &job, "--coordinator", url],
            CLI_TIMEOUT,
        );
        if out.success() {
            assert!(
                out.stdout.starts_with("RUNNING"),
                "the job should still run after the rotation: {out}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the new certificate is not served: {out}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let old_only = cluster.cli_as(
        &Caller::new().tls_ca(&old_ca.pem),
        &["jobs", "--coordinator", url],
        CLI_TIMEOUT,
    );
    assert!(
        !old_only.success() && old_only.stderr.contains("UnknownIssuer"),
        "the old certificate is still served: {old_only}"
    );
    blocker
        .batch_execute("COMMIT")
        .await
        .expect("release the lock");

    let watched = cluster.cli(&["watch", &job, "--coordinator", url], WATCH_TIMEOUT);
    assert!(
        watched.success(),
        "the job did not survive the rotation: {watched}"
    );
    cluster.dbs().assert_copied_exactly(ITEMS_TABLE).await;
    let log = coordinator.log();
    assert!(
        log.contains("files changed: reloaded"),
        "no reload line:\n{}",
        coordinator.log_tail(30)
    );
    assert!(
        !log.contains("will retry") && !log.contains("not retrying"),
        "a chunk in flight was dropped by the rotation:\n{}",
        coordinator.log_tail(30)
    );
}
