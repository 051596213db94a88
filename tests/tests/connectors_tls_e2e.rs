//! MySQL over TLS, with `ssl-mode` as MySQL clients spell it: a MariaDB
//! serving a certificate and a user that must use TLS (`REQUIRE SSL`).
//! `ssl-mode=VERIFY_IDENTITY` with the right CA copies exactly; `DISABLED`
//! is refused by the server and `VERIFY_CA` with another CA by Ferry, each
//! naming the connection and never its password, with nothing written.

use std::os::unix::fs::PermissionsExt;

use ferry_tests::cli::{run_cli, CliOutput, Submit, LONG_CLI_TIMEOUT};
use ferry_tests::data::{create_items_table, fill_items};
use ferry_tests::mariadb::MariaDb;
use ferry_tests::portable_checksum::pg_items_checksum;
use ferry_tests::postgres::PgCluster;
use ferry_tests::security::Pki;

/// The TLS user's password: it must not appear in any output.
const PASSWORD: &str = "TlsUserPw42";

fn local(source: &str, target: &str) -> CliOutput {
    let job = Submit::new("SELECT * FROM items", "items").flag("--min-rows-for-parallel", 0);
    run_cli(
        &job.local_args(source, target, 2),
        &[("TZ", "UTC")],
        LONG_CLI_TIMEOUT,
    )
}

/// Lets the server's `mysql` user read the certificates.
fn readable(dir: &std::path::Path) {
    for entry in walk(dir) {
        let mode = if entry.is_dir() { 0o755 } else { 0o644 };
        std::fs::set_permissions(&entry, std::fs::Permissions::from_mode(mode))
            .expect("make the PKI readable");
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = vec![dir.to_path_buf()];
    for e in std::fs::read_dir(dir).expect("list the PKI").flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_tls_by_ssl_mode_verifies_the_server() {
    let pki = Pki::new();
    let ca = pki.ca("db-ca");
    let other = pki.ca("other-ca");
    let server = pki.server(&ca, "mariadb", &["127.0.0.1", "localhost"]);
    readable(&pki.path(""));
    let p = |path: &std::path::Path| path.display().to_string();
    let my = MariaDb::start_with(&[
        &format!("--ssl-ca={}", p(&ca.pem)),
        &format!("--ssl-cert={}", p(&server.cert)),
        &format!("--ssl-key={}", p(&server.key)),
    ]);
    my.create_db("dst").await;
    my.create_items("dst", "items").await;
    my.exec(
        "dst",
        &format!("CREATE USER 'tls'@'%' IDENTIFIED BY '{PASSWORD}' REQUIRE SSL"),
    )
    .await;
    my.exec("dst", "GRANT ALL PRIVILEGES ON *.* TO 'tls'@'%'")
        .await;

    let pg = PgCluster::start();
    pg.create_db("src").await;
    let src = pg.client("src").await;
    create_items_table(&src, "public.items").await;
    fill_items(&src, "public.items", 20_000).await;
    let want = pg_items_checksum(&src, "public.items").await;

    let base = format!("mysql://tls:{PASSWORD}@127.0.0.1:{}/dst", my.port());
    let refused = [
        ("DISABLED", format!("{base}?ssl-mode=DISABLED")),
        (
            "VERIFY_CA with another CA",
            format!("{base}?ssl-mode=VERIFY_CA&ssl-ca={}", p(&other.pem)),
        ),
    ];
    for (what, url) in &refused {
        let out = local(&pg.url("src"), url);
        assert!(!out.success(), "{what} must be refused: {out}");
        assert!(
            out.stderr.contains("'target'") && !out.all().contains(PASSWORD),
            "{what}: the error names the connection and hides the password: {out}"
        );
        assert_eq!(my.query_i64("dst", "SELECT count(*) FROM items").await, 0);
    }

    let url = format!("{base}?ssl-mode=VERIFY_IDENTITY&ssl-ca={}", p(&ca.pem));
    let out = local(&pg.url("src"), &url);
    assert!(out.success(), "{out}");
    assert!(!out.all().contains(PASSWORD), "{out}");
    assert_eq!(my.items_checksum("dst", "items").await, want);
    // the copy's sessions were encrypted: the server counted TLS connections
    let tls_sessions = my
        .query_rows(
            "dst",
            "SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME = 'SSL_ACCEPTS'",
        )
        .await;
    let accepted: i64 = tls_sessions
        .first()
        .and_then(|r| r.first().cloned().flatten())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!(accepted > 0, "MariaDB accepted no TLS session");
}
