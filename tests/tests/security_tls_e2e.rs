//! Security end-to-end: a coordinator with TLS, workers with client
//! certificates and API clients with tokens, as real processes with
//! certificates made here (rcgen). Strangers are refused with messages that
//! say why, and the copy is exact.

use std::path::Path;
use std::time::{Duration, Instant};

use ferry_tests::data::slow_down_inserts;
use ferry_tests::ferry::{run_cli, start_coordinator, CliOutput, FerryProcess};
use ferry_tests::job::{job_id, ledger_summary, submit_args, CLI_TIMEOUT};
use ferry_tests::scenario::{Databases, ITEMS_QUERY, ITEMS_TABLE};
use ferry_tests::security::{Issued, Pki};

const WATCH_TIMEOUT: Duration = Duration::from_secs(240);
/// Exit code of a CLI refused by the coordinator (credentials or role).
const EXIT_REFUSED: i32 = 4;

type Env = Vec<(String, String)>;

fn with(env: &Env, extra: &[(&str, &str)]) -> Env {
    let mut e = env.clone();
    e.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    e
}

fn p(path: &Path) -> String {
    path.display().to_string()
}

/// `ferry worker` against `url` presenting `cert` (or no certificate).
fn worker(url: &str, ca: &Path, cert: Option<&Issued>, env: &Env) -> FerryProcess {
    let mut args = vec![
        "worker".to_string(),
        "--coordinator".into(),
        url.into(),
        "--concurrency".into(),
        "2".into(),
        "--tls-ca".into(),
        p(ca),
    ];
    if let Some(c) = cert {
        args.extend([
            "--tls-cert".into(),
            p(&c.cert),
            "--tls-key".into(),
            p(&c.key),
        ]);
    }
    FerryProcess::spawn("worker", &args, env)
}

/// A client verb with `--tls-ca` (and the environment's token).
fn cli(args: &[&str], ca: &Path, env: &Env) -> CliOutput {
    let mut all: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    all.extend(["--tls-ca".into(), p(ca)]);
    run_cli(&all, env, CLI_TIMEOUT)
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
    let env = dbs.conn_env();
    let coord_env = with(&env, &[("FERRY_AUTH_TOKENS_FILE", &p(&tokens))]);
    let (coordinator, plain_url) = start_coordinator(
        &[
            "--tls-cert",
            &p(&server.cert),
            "--tls-key",
            &p(&server.key),
            "--worker-ca",
            &p(&ca.pem),
        ],
        &coord_env,
    );
    let url = plain_url.replace("http://", "https://");

    let from_other_ca = worker(&url, &ca.pem, Some(&stranger), &env);
    let without_cert = worker(&url, &ca.pem, None, &env);
    let _w1 = worker(&url, &ca.pem, Some(&good), &env);
    let _w2 = worker(&url, &ca.pem, Some(&good), &env);

    // a plaintext client learns that TLS is required
    let plain = run_cli(
        &["jobs", "--coordinator", &plain_url],
        &with(&env, &[("FERRY_TOKEN", "op-token")]),
        CLI_TIMEOUT,
    );
    assert_refused(&plain, "requires TLS");

    let client_env = with(&env, &[("FERRY_TOKEN", "op-token")]);
    let mut args = submit_args(
        &url,
        ITEMS_QUERY,
        ITEMS_TABLE,
        &["--chunk-size", "50000", "--watch"],
    );
    args.extend(["--tls-ca".into(), p(&ca.pem)]);
    let out = run_cli(&args, &client_env, WATCH_TIMEOUT);
    assert!(out.success(), "the TLS job failed: {out}");
    let job = job_id(&out);
    dbs.assert_copied_exactly(ITEMS_TABLE).await;
    let ledger = ledger_summary(&dbs.target().await, &job).await;
    assert_eq!(ledger.rows, ledger.distinct_chunks, "{ledger:?}");
    assert_eq!(ledger.rows_written, ROWS as i64, "{ledger:?}");

    for (w, why) in [
        (
            &from_other_ca,
            "is refused: invalid peer certificate: UnknownIssuer",
        ),
        (&without_cert, "the call came without one"),
    ] {
        let log = w.log();
        assert!(
            log.contains("needs a client certificate issued by the worker CA") && log.contains(why),
            "{} should say why it is refused ({why}):\n{}",
            w.name(),
            w.log_tail(10)
        );
        assert!(
            !log.contains("registered with coordinator") && !log.contains("chunk committed"),
            "{} was let in:\n{}",
            w.name(),
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
    let env = dbs.conn_env();
    let (coordinator, plain_url) = start_coordinator(
        &[
            "--tls-cert",
            &p(&server.cert),
            "--tls-key",
            &p(&server.key),
            "--worker-ca",
            &p(&ca.pem),
            "--client-ca",
            &p(&client_ca.pem),
        ],
        &with(&env, &[("FERRY_AUTH_TOKENS_FILE", &p(&tokens))]),
    );
    let url = plain_url.replace("http://", "https://");
    let as_token = |t: &str| with(&env, &[("FERRY_TOKEN", t)]);
    let submit = |t: &str| {
        let mut args = submit_args(&url, ITEMS_QUERY, ITEMS_TABLE, &[]);
        args.extend(["--tls-ca".into(), p(&ca.pem)]);
        run_cli(&args, &as_token(t), CLI_TIMEOUT)
    };

    // viewer: reads, no changes
    let viewer = as_token("view-token");
    assert!(cli(&["jobs", "--coordinator", &url], &ca.pem, &viewer).success());
    assert_refused(
        &submit("view-token"),
        "vera (role viewer) may not call SubmitJob: it needs role operator",
    );

    // operator: submits and cancels; reads too
    let job = job_id(&submit("op-token"));
    let operator = as_token("op-token");
    assert!(cli(&["status", &job, "--coordinator", &url], &ca.pem, &viewer).success());
    assert_refused(
        &cli(&["cancel", &job, "--coordinator", &url], &ca.pem, &viewer),
        "needs role operator",
    );
    let cancelled = cli(&["cancel", &job, "--coordinator", &url], &ca.pem, &operator);
    assert!(cancelled.success(), "operator cancel: {cancelled}");
    assert!(cli(&["jobs", "--coordinator", &url], &ca.pem, &operator).success());

    // admin: everything an operator may, and reads
    let admin = as_token("admin-token");
    let job2 = job_id(&submit("admin-token"));
    assert!(cli(&["cancel", &job2, "--coordinator", &url], &ca.pem, &admin).success());
    assert!(cli(&["status", &job2, "--coordinator", &url], &ca.pem, &admin).success());

    // wrong or missing token: UNAUTHENTICATED
    assert_refused(
        &cli(
            &["jobs", "--coordinator", &url],
            &ca.pem,
            &as_token("guess"),
        ),
        "not in the coordinator's tokens file",
    );
    assert_refused(
        &cli(&["jobs", "--coordinator", &url], &ca.pem, &env),
        "JobService needs credentials",
    );

    // a certificate from --client-ca gets its name's role; a worker's certificate gets nothing
    let with_cert = |c: &Issued, args: &[&str]| {
        let mut all: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        all.extend([
            "--tls-ca".into(),
            p(&ca.pem),
            "--tls-cert".into(),
            p(&c.cert),
            "--tls-key".into(),
            p(&c.key),
        ]);
        run_cli(&all, &env, CLI_TIMEOUT)
    };
    assert!(with_cert(&viewer_cert, &["jobs", "--coordinator", &url]).success());
    assert_refused(
        &with_cert(&viewer_cert, &["cancel", &job2, "--coordinator", &url]),
        "dashboard (role viewer) may not call CancelJob",
    );
    assert_refused(
        &with_cert(&worker_cert, &["jobs", "--coordinator", &url]),
        "client CA (--client-ca)",
    );

    // the tokens file is read again when it changes
    let rotated = pki.tokens_file("tokens.new", &[("new-token", "nina", "viewer")]);
    std::fs::rename(&rotated, &tokens).expect("replace the tokens file");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = cli(
            &["jobs", "--coordinator", &url],
            &ca.pem,
            &as_token("new-token"),
        );
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
        &cli(&["jobs", "--coordinator", &url], &ca.pem, &operator),
        "not in the coordinator's tokens file",
    );

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
    let env = dbs.conn_env();
    let (coordinator, plain_url) = start_coordinator(
        &[
            "--tls-cert",
            &p(&cert),
            "--tls-key",
            &p(&key),
            "--worker-ca",
            &p(&old_ca.pem),
        ],
        &env,
    );
    let url = plain_url.replace("http://", "https://");
    let _w1 = worker(&url, &trust, Some(&worker_cert), &env);
    let _w2 = worker(&url, &trust, Some(&worker_cert), &env);
    let mut args = submit_args(&url, ITEMS_QUERY, ITEMS_TABLE, &["--chunk-size", "5000"]);
    args.extend(["--tls-ca".into(), p(&trust)]);
    let job = job_id(&run_cli(&args, &env, CLI_TIMEOUT));
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
    let blocker = dbs.target().await;
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
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = cli(&["status", &job, "--coordinator", &url], &new_ca.pem, &env);
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
    let old_only = cli(&["jobs", "--coordinator", &url], &old_ca.pem, &env);
    assert!(
        !old_only.success() && old_only.stderr.contains("UnknownIssuer"),
        "the old certificate is still served: {old_only}"
    );
    blocker
        .batch_execute("COMMIT")
        .await
        .expect("release the lock");

    let watched = run_cli(
        &[
            "watch",
            job.as_str(),
            "--coordinator",
            url.as_str(),
            "--tls-ca",
            &p(&trust),
        ],
        &env,
        WATCH_TIMEOUT,
    );
    assert!(
        watched.success(),
        "the job did not survive the rotation: {watched}"
    );
    dbs.assert_copied_exactly(ITEMS_TABLE).await;
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
