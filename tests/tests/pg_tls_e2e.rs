//! PostgreSQL over TLS: a server with `ssl = on` and a `hostssl`-only
//! `pg_hba.conf`; `ferry local` with libpq's sslmode values. Certificates
//! are made here (rcgen).

use std::time::Duration;

use ferry_tests::cli::{run_cli, CliOutput, Submit};
use ferry_tests::data::table_checksum;
use ferry_tests::databases::{Databases, DST_DB, ITEMS_TABLE, SRC_DB};
use ferry_tests::security::{enable_pg_tls, socket_client, Pki};

const ROWS: u64 = 200_000;
const TIMEOUT: Duration = Duration::from_secs(120);

/// `ferry local` from `src` to `dst` on `host:port`, with `params` on both URLs.
fn local(port: u16, host: &str, params: &str) -> CliOutput {
    let url = |db: &str| format!("postgres://postgres@{host}:{port}/{db}?{params}");
    let job = Submit::items()
        .chunk_size(50_000)
        .flag("--mode", "truncate");
    run_cli::<_, &str, &str>(&job.local_args(&url(SRC_DB), &url(DST_DB), 2), &[], TIMEOUT)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sslmodes_work_as_libpq_means_them() {
    let pki = Pki::new();
    let ca = pki.ca("pg-ca");
    let good = pki.server(&ca, "pg", &["localhost", "127.0.0.1"]);
    let wrong = pki.server(&ca, "pg-elsewhere", &["elsewhere.example"]);
    let ca_path = ca.pem.display().to_string();

    let dbs = Databases::one_cluster().await;
    dbs.prepare_items(ROWS).await;
    let pg = dbs.source_cluster();
    enable_pg_tls(pg, &good, true);

    let expected = table_checksum(&socket_client(pg, SRC_DB).await, ITEMS_TABLE).await;
    let copied = || async { table_checksum(&socket_client(pg, DST_DB).await, ITEMS_TABLE).await };

    // require: encrypted, certificate not checked
    let out = local(pg.port(), "127.0.0.1", "sslmode=require");
    assert!(out.success(), "sslmode=require failed: {out}");
    assert!(
        out.all().contains("source over TLS, target over TLS"),
        "the plan line should say both sides are encrypted: {out}"
    );
    assert_eq!(copied().await, expected);

    // verify-full: chain and host name checked
    for host in ["127.0.0.1", "localhost"] {
        let out = local(
            pg.port(),
            host,
            &format!("sslmode=verify-full&sslrootcert={ca_path}"),
        );
        assert!(out.success(), "sslmode=verify-full to {host} failed: {out}");
        assert_eq!(copied().await, expected);
    }

    // disable: the server refuses the plaintext session, and the error says so
    let out = local(pg.port(), "127.0.0.1", "sslmode=disable");
    assert!(
        !out.success(),
        "sslmode=disable was served by a hostssl-only server: {out}"
    );
    assert!(
        out.all().contains("no encryption")
            && out
                .all()
                .contains("sslmode=disable: this connection was not encrypted"),
        "the refusal should say the session was not encrypted: {out}"
    );

    // verify-ca with a CA that did not issue the certificate
    let other = pki.ca("other-ca");
    let out = local(
        pg.port(),
        "127.0.0.1",
        &format!("sslmode=verify-ca&sslrootcert={}", other.pem.display()),
    );
    assert!(
        !out.success(),
        "verify-ca accepted a certificate from another CA: {out}"
    );
    assert!(out.all().contains("does not chain to sslrootcert"), "{out}");

    // verify-full against a certificate for another host name
    enable_pg_tls(pg, &wrong, true);
    let out = local(
        pg.port(),
        "localhost",
        &format!("sslmode=verify-full&sslrootcert={ca_path}"),
    );
    assert!(
        !out.success(),
        "verify-full accepted a certificate for elsewhere.example: {out}"
    );
    assert!(
        out.all().contains("not valid for host 'localhost'"),
        "the failure should name the host: {out}"
    );
    // verify-ca does not check the name, so the same certificate passes
    let out = local(
        pg.port(),
        "localhost",
        &format!("sslmode=verify-ca&sslrootcert={ca_path}"),
    );
    assert!(
        out.success(),
        "verify-ca refused a certificate from its CA: {out}"
    );
    assert_eq!(copied().await, expected);
}
