//! Throwaway MariaDB servers: one temp dir, one free loopback port each.
//!
//! `mariadbd` runs with `--no-defaults` (no `/etc/mysql` file applies) as a
//! child of the test, with its data, socket, pid file and error log in a temp
//! dir. Two accounts: `ferry` (password `secret`), the one Ferry gets in its
//! URLs (`mysql://ferry:secret@127.0.0.1:PORT/db`), with every privilege but
//! `READ_ONLY ADMIN` (so `set_read_only` stops it); and `root` without a
//! password, the harness's own for setup and assertions, which nothing
//! stops. Both log in over TCP from 127.0.0.1. The data directory is a copy
//! of a template made once by `mariadb-install-db` (see `mariadb_datadir`).

use std::fs::File;
use std::future::Future;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sqlx::mysql::{MySqlConnectOptions, MySqlConnection};
use sqlx::{AssertSqlSafe, Connection};
use tempfile::TempDir;

use crate::mariadb_datadir::{
    create_datadir, is_root, mariadbd_bin, require_binaries, INNODB_OPTIONS,
};
use crate::net::free_port;
use crate::sqlx_text::{rows_as_text, single_i64, TextRow};
use crate::sync::blocking;
use crate::text::tail;

/// How long a start (crash recovery included) may take until `root` can log in.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a clean shutdown may take before the test fails.
const STOP_TIMEOUT: Duration = Duration::from_secs(60);

/// How long one login attempt may hang (a frozen server) while waiting for ready.
const LOGIN_TIMEOUT: Duration = Duration::from_secs(5);

/// The account Ferry's URLs name (`url`).
pub const MARIADB_USER: &str = "ferry";

/// The password of `MARIADB_USER`.
pub const MARIADB_PASSWORD: &str = "secret";

/// The harness's own account (no password, every privilege), used by
/// `exec`, `query_*` and the privilege helpers.
pub const MARIADB_ADMIN: &str = "root";

/// Server options besides paths and ports. Durability against a killed
/// server is kept (`innodb_flush_log_at_trx_commit=2` writes the redo log to
/// the OS at every commit, so SIGKILL loses no committed transaction); only a
/// machine crash could lose data, and that loses the temp dir anyway.
const SERVER_OPTIONS: &[&str] = &[
    "--bind-address=127.0.0.1",
    "--skip-name-resolve",
    "--skip-log-bin",
    "--local-infile=1",
    "--character-set-server=utf8mb4",
    "--default-time-zone=+00:00",
    "--max-connections=200",
    "--innodb-flush-log-at-trx-commit=2",
    "--innodb-doublewrite=0",
];

/// A MariaDB server of its own on a free port of 127.0.0.1. Dropping it kills
/// the server (SIGKILL) and removes its directory; when a test is failing,
/// the tail of the server's error log is printed.
pub struct MariaDb {
    dir: TempDir,
    port: u16,
    extra_options: Vec<String>,
    child: Mutex<Option<Child>>,
}

impl MariaDb {
    /// Creates and starts a new server and waits until `root` can log in;
    /// panics with the reason (and how to install MariaDB) when it cannot.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Like `start`, with extra `mariadbd` options after the harness's own
    /// (a later option wins: `--default-time-zone=+02:00`, `--max-allowed-packet=1M`).
    pub fn start_with(options: &[&str]) -> Self {
        blocking(|| {
            require_binaries();
            let dir = tempfile::Builder::new()
                .prefix("ferry-mariadb-")
                .tempdir()
                .expect("create a temp dir for MariaDB");
            let server = MariaDb {
                dir,
                port: free_port(),
                extra_options: options.iter().map(|o| o.to_string()).collect(),
                child: Mutex::new(None),
            };
            std::fs::create_dir(server.tmp_dir()).expect("create MariaDB's tmpdir");
            create_datadir(&server.data_dir());
            server.spawn();
            server.wait_ready();
            on_own_runtime(async {
                let every = ["ALL PRIVILEGES ON *.*"];
                server
                    .create_user(MARIADB_USER, MARIADB_PASSWORD, &every)
                    .await;
                server.revoke(MARIADB_USER, "READ_ONLY ADMIN ON *.*").await;
            });
            server
        })
    }

    /// The data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn tmp_dir(&self) -> PathBuf {
        self.dir.path().join("tmp")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("mariadb.log")
    }

    /// The Unix socket the server also listens on.
    pub fn socket_path(&self) -> PathBuf {
        self.dir.path().join("mariadb.sock")
    }

    /// The loopback port the server listens on (kept across restarts).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL Ferry gets for database `db`:
    /// `mysql://ferry:secret@127.0.0.1:PORT/db` (an empty `db` selects none).
    pub fn url(&self, db: &str) -> String {
        self.url_as(MARIADB_USER, MARIADB_PASSWORD, db)
    }

    /// Like `url`, with the `mariadb://` scheme Ferry also takes.
    pub fn mariadb_url(&self, db: &str) -> String {
        self.url(db).replacen("mysql://", "mariadb://", 1)
    }

    /// A URL for database `db` as `user` with `password` (made with
    /// `create_user`; both must be URL-safe, they are not percent-encoded).
    pub fn url_as(&self, user: &str, password: &str, db: &str) -> String {
        format!("mysql://{user}:{password}@127.0.0.1:{}/{db}", self.port)
    }

    /// The server's error log so far (every start of it).
    pub fn server_log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// The last `n` lines of the server's error log.
    pub fn log_tail(&self, n: usize) -> String {
        tail(&self.server_log(), n)
    }

    fn command(&self) -> Command {
        let dir = self.dir.path();
        let mut cmd = Command::new(mariadbd_bin());
        // --no-defaults must come first.
        cmd.arg("--no-defaults");
        if is_root() {
            cmd.arg("--user=root");
        }
        cmd.arg(format!("--datadir={}", self.data_dir().display()))
            .arg(format!("--port={}", self.port))
            .arg(format!("--socket={}", self.socket_path().display()))
            .arg(format!("--pid-file={}", dir.join("mariadb.pid").display()))
            .arg(format!("--log-error={}", self.log_path().display()))
            .arg(format!("--tmpdir={}", self.tmp_dir().display()))
            .args(SERVER_OPTIONS)
            .args(INNODB_OPTIONS)
            .args(&self.extra_options);
        cmd
    }

    fn spawn(&self) {
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("open the MariaDB log file");
        let child = self
            .command()
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log file handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", mariadbd_bin().display()));
        *self.lock_child() = Some(child);
    }

    fn lock_child(&self) -> std::sync::MutexGuard<'_, Option<Child>> {
        self.child.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The exit status once the server process has exited; `None` while it
    /// runs or after `stop`/`kill`.
    fn exit_status(&self) -> Option<ExitStatus> {
        let mut guard = self.lock_child();
        guard
            .as_mut()
            .and_then(|child| child.try_wait().ok().flatten())
    }

    /// True while the server process runs (a frozen server runs).
    pub fn is_running(&self) -> bool {
        let mut guard = self.lock_child();
        guard
            .as_mut()
            .is_some_and(|child| matches!(child.try_wait(), Ok(None)))
    }

    /// Waits until `root` can log in over TCP and run a query; panics with
    /// the log tail when the server exits first or `READY_TIMEOUT` passes.
    fn wait_ready(&self) {
        let started = Instant::now();
        let outcome = on_own_runtime(async {
            let deadline = started + READY_TIMEOUT;
            loop {
                let error = match self.ping().await {
                    Ok(()) => return Ok(()),
                    Err(error) => error,
                };
                if let Some(status) = self.exit_status() {
                    return Err(format!("mariadbd exited ({status}) before it was ready"));
                }
                if Instant::now() >= deadline {
                    return Err(format!(
                        "root cannot log in within {READY_TIMEOUT:?} (last error: {error})"
                    ));
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        if let Err(why) = outcome {
            panic!(
                "MariaDB on port {}: {why}; error log {}:\n{}",
                self.port,
                self.log_path().display(),
                self.log_tail(30)
            );
        }
    }

    /// Logs in as the admin over TCP and runs `SELECT 1`.
    async fn ping(&self) -> Result<(), String> {
        let login = async {
            let mut conn = MySqlConnection::connect_with(&self.connect_options("")).await?;
            sqlx::raw_sql("SELECT 1").execute(&mut conn).await?;
            conn.close().await
        };
        match tokio::time::timeout(LOGIN_TIMEOUT, login).await {
            Ok(result) => result.map_err(|e| e.to_string()),
            Err(_) => Err(format!("no answer within {LOGIN_TIMEOUT:?}")),
        }
    }

    /// Sends `sig` to the server unless it is not running; false if that failed.
    fn signal(&self, sig: libc::c_int) -> bool {
        // Holding the lock keeps the child from being reaped meanwhile.
        let mut guard = self.lock_child();
        let Some(child) = guard.as_mut() else {
            return true;
        };
        if child.try_wait().ok().flatten().is_some() {
            return true;
        }
        let Ok(pid) = libc::pid_t::try_from(child.id()) else {
            return false;
        };
        // SAFETY: plain kill(2) on our own unreaped child.
        unsafe { libc::kill(pid, sig) == 0 }
    }

    /// Kills the server with SIGKILL and reaps it; data and port are kept,
    /// and the next start runs InnoDB crash recovery. Idempotent.
    pub fn kill(&self) {
        let child = self.lock_child().take();
        if let Some(mut child) = child {
            let _ = child.kill();
            let _ = blocking(|| child.wait());
        }
    }

    /// Stops the server cleanly (SIGTERM: open transactions roll back,
    /// clients are disconnected) and waits for it to exit; panics when it
    /// does not within `STOP_TIMEOUT`. Data and port are kept. Idempotent.
    pub fn stop(&self) {
        self.signal(libc::SIGCONT);
        assert!(
            self.signal(libc::SIGTERM),
            "SIGTERM to MariaDB on port {} failed",
            self.port
        );
        let Some(mut child) = self.lock_child().take() else {
            return;
        };
        let status = blocking(|| {
            let deadline = Instant::now() + STOP_TIMEOUT;
            while Instant::now() < deadline {
                if let Ok(Some(status)) = child.try_wait() {
                    return Some(status);
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
            None
        });
        if status.is_none() {
            panic!(
                "MariaDB on port {} did not stop within {STOP_TIMEOUT:?} (killed); error log:\n{}",
                self.port,
                self.log_tail(30)
            );
        }
    }

    /// Starts the server again on the same port and data after `stop` or
    /// `kill`, and waits until `root` can log in.
    pub fn start_again(&self) {
        assert!(
            !self.is_running(),
            "MariaDB on port {} still runs: stop or kill it first",
            self.port
        );
        blocking(|| {
            self.spawn();
            self.wait_ready();
        });
    }

    /// Restarts the server: a clean `stop` if it runs, then `start_again`.
    pub fn restart(&self) {
        self.stop();
        self.start_again();
    }

    /// Freezes the server (SIGSTOP): it holds its port and connections but
    /// answers nothing.
    pub fn freeze(&self) {
        assert!(
            self.signal(libc::SIGSTOP),
            "SIGSTOP to MariaDB on port {} failed",
            self.port
        );
    }

    /// Resumes the server after `freeze` (SIGCONT).
    pub fn thaw(&self) {
        assert!(
            self.signal(libc::SIGCONT),
            "SIGCONT to MariaDB on port {} failed",
            self.port
        );
    }

    /// Connection options for database `db` as the admin (`root`) over TCP
    /// (an empty `db` selects none). sqlx sets the session time zone to `+00:00`.
    pub fn connect_options(&self, db: &str) -> MySqlConnectOptions {
        let options = MySqlConnectOptions::new()
            .host("127.0.0.1")
            .port(self.port)
            .username(MARIADB_ADMIN);
        if db.is_empty() {
            options
        } else {
            options.database(db)
        }
    }

    /// A new admin connection to database `db` (empty: none); panics with
    /// the server's log tail when the server does not accept it.
    pub async fn connect(&self, db: &str) -> MySqlConnection {
        MySqlConnection::connect_with(&self.connect_options(db))
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "connect to {}: {e}; error log:\n{}",
                    self.url(db),
                    self.log_tail(20)
                )
            })
    }

    /// Creates database `name`.
    pub async fn create_db(&self, name: &str) {
        let sql = format!("CREATE DATABASE {}", quote_ident(name));
        self.exec("", &sql).await;
    }

    /// Runs `sql` (one or more statements, `;`-separated) in database `db`
    /// on a new admin connection; panics with the statement on error.
    pub async fn exec(&self, db: &str, sql: &str) {
        let mut conn = self.connect(db).await;
        sqlx::raw_sql(AssertSqlSafe(sql))
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        close(conn).await;
    }

    /// One `i64` from a query in `db` returning one row whose first value is
    /// an integer (`count(*)`, a `SUM` of integers); panics otherwise.
    pub async fn query_i64(&self, db: &str, sql: &str) -> i64 {
        single_i64(&self.fetch_all(db, sql).await, sql)
    }

    /// Every row of a query in `db`, each value in MariaDB's text form
    /// (`1.50` for a DECIMAL(5,2), `2024-01-31 12:00:00` for a DATETIME,
    /// NULL as `None`). A binary value panics: select `HEX(col)`.
    pub async fn query_rows(&self, db: &str, sql: &str) -> Vec<TextRow> {
        rows_as_text(&self.fetch_all(db, sql).await, sql)
    }

    async fn fetch_all(&self, db: &str, sql: &str) -> Vec<sqlx::mysql::MySqlRow> {
        let mut conn = self.connect(db).await;
        // No bound arguments: the text protocol, so values arrive as text.
        let rows = sqlx::raw_sql(AssertSqlSafe(sql))
            .fetch_all(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        close(conn).await;
        rows
    }
}

/// Closes `conn` politely (a dropped connection is logged by the server as
/// aborted); a failure to say goodbye is no test's concern.
pub(crate) async fn close(conn: MySqlConnection) {
    let _ = conn.close().await;
}

impl Drop for MariaDb {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- MariaDB error log (port {}), last lines ---\n{}",
                self.port,
                self.log_tail(20)
            );
        }
        self.kill();
    }
}

/// `name` as a MariaDB identifier in backquotes.
pub fn quote_ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// Runs `fut` to completion on a runtime of its own in a scoped thread, so
/// blocking harness code can await sqlx inside or outside a tokio runtime.
fn on_own_runtime<T: Send>(fut: impl Future<Output = T> + Send) -> T {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("build a tokio runtime")
                    .block_on(fut)
            })
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}
