//! Throwaway PostgreSQL 15 clusters: one temp dir, one free loopback port each.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};

use tempfile::TempDir;
use tokio_postgres::{Client, NoTls};

use crate::net::free_port;
use crate::sync::blocking;
use crate::text::tail;

/// Where Debian's postgresql-15 package puts the server binaries.
const DEFAULT_PG_BIN: &str = "/usr/lib/postgresql/15/bin";

/// The directory holding `initdb` and `pg_ctl`: env `FERRY_PG_BIN`, else Debian's.
pub fn pg_bin_dir() -> PathBuf {
    std::env::var_os("FERRY_PG_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_PG_BIN))
}

/// True when this process runs as root, so PostgreSQL tools must run as `postgres`.
fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// A command that runs `program` as the `postgres` user when we are root.
fn as_postgres(program: &Path) -> Command {
    if is_root() {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", "postgres", "--"]).arg(program);
        cmd
    } else {
        Command::new(program)
    }
}

/// Runs `cmd` and panics with its output when it fails.
fn run_checked(mut cmd: Command, what: &str) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run {cmd:?}: {e}"));
    if !out.status.success() {
        panic!(
            "{what} failed ({}):\nstdout:\n{}\nstderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out
}

/// Uid and gid of the `postgres` user.
fn postgres_ids() -> (u32, u32) {
    let id = |flag: &str| -> u32 {
        let out = run_checked(
            {
                let mut c = Command::new("id");
                c.args([flag, "postgres"]);
                c
            },
            "looking up user postgres (is postgresql-15 installed? run scripts/setup.sh)",
        );
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("`id` prints a number")
    };
    (id("-u"), id("-g"))
}

/// A PostgreSQL cluster of its own: data, socket and server log in a temp dir,
/// listening on a free port of 127.0.0.1 with trust authentication for user
/// `postgres`. Dropping it stops the server (immediate mode) and removes the dir.
pub struct PgCluster {
    dir: TempDir,
    port: u16,
    running: AtomicBool,
}

impl PgCluster {
    /// Initializes and starts a new cluster; panics with the reason (and how
    /// to install PostgreSQL) when it cannot.
    pub fn start() -> Self {
        blocking(Self::init_and_start)
    }

    fn init_and_start() -> Self {
        let bin = pg_bin_dir();
        for tool in ["initdb", "pg_ctl"] {
            if !bin.join(tool).is_file() {
                panic!(
                    "PostgreSQL 15 is not installed: {} is missing. Run `sudo bash scripts/setup.sh` \
                     (or set FERRY_PG_BIN to the directory holding initdb and pg_ctl)",
                    bin.join(tool).display()
                );
            }
        }
        let dir = tempfile::Builder::new()
            .prefix("ferry-pg-")
            .tempdir()
            .expect("create a temp dir for PostgreSQL");
        if is_root() {
            let (uid, gid) = postgres_ids();
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))
                .expect("chown the PostgreSQL temp dir to postgres");
            let reachable = Command::new("runuser")
                .args(["-u", "postgres", "--", "test", "-w"])
                .arg(dir.path())
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            assert!(
                reachable,
                "user postgres cannot write {}; point TMPDIR at a directory every user can search",
                dir.path().display()
            );
        }
        let port = free_port();
        let cluster = PgCluster {
            dir,
            port,
            running: AtomicBool::new(false),
        };
        let mut initdb = as_postgres(&bin.join("initdb"));
        initdb
            .arg("-D")
            .arg(cluster.data_dir())
            .args(["-A", "trust", "-U", "postgres", "-E", "UTF8"])
            .args(["--locale=C.UTF-8", "--no-sync"]);
        run_checked(initdb, "initdb");
        cluster.write_config();
        cluster.start_again();
        cluster
    }

    fn write_config(&self) {
        let conf = self.data_dir().join("postgresql.conf");
        let mut file = OpenOptions::new()
            .append(true)
            .open(&conf)
            .expect("open postgresql.conf");
        // Durability is not under test: a crash loses the whole temp dir anyway.
        // `restart()` uses a fast (clean) shutdown, so committed data survives it.
        write!(
            file,
            "\n# ferry-tests\n\
             listen_addresses = '127.0.0.1'\n\
             port = {port}\n\
             unix_socket_directories = '{socket}'\n\
             shared_buffers = 128MB\n\
             max_connections = 200\n\
             max_wal_size = 2GB\n\
             fsync = off\n\
             full_page_writes = off\n\
             synchronous_commit = off\n\
             log_min_messages = warning\n",
            port = self.port,
            socket = self.dir.path().display(),
        )
        .expect("write postgresql.conf");
    }

    /// The data directory (`PGDATA`).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The loopback port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A connection URL for database `db` as user `postgres`.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// The server log so far.
    pub fn server_log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("postgres.log")
    }

    /// Connects to database `db`; the connection task runs on the current
    /// tokio runtime. Panics when the server does not accept the connection.
    pub async fn client(&self, db: &str) -> Client {
        let url = self.url(db);
        let (client, connection) = tokio_postgres::connect(&url, NoTls)
            .await
            .unwrap_or_else(|e| panic!("connect to {url}: {e}"));
        tokio::spawn(async move {
            // Errors here are expected when a test restarts or stops the server.
            let _ = connection.await;
        });
        client
    }

    /// Creates database `name`.
    pub async fn create_db(&self, name: &str) {
        let client = self.client("postgres").await;
        let sql = format!("CREATE DATABASE \"{}\"", name.replace('"', "\"\""));
        client
            .batch_execute(&sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// Stops the server with a fast shutdown (rolls back open transactions,
    /// disconnects clients, writes a checkpoint). Data and port are kept.
    pub fn stop(&self) {
        blocking(|| self.pg_ctl_stop("fast", true));
    }

    /// Starts the server again on the same port and data after `stop`.
    pub fn start_again(&self) {
        blocking(|| {
            let mut cmd = as_postgres(&pg_bin_dir().join("pg_ctl"));
            cmd.arg("-D")
                .arg(self.data_dir())
                .arg("-l")
                .arg(self.log_path())
                .args(["-w", "-t", "60", "start"]);
            let out = cmd
                .output()
                .unwrap_or_else(|e| panic!("cannot run pg_ctl start: {e}"));
            if !out.status.success() {
                panic!(
                    "pg_ctl start failed on port {} ({}): {}\nserver log:\n{}",
                    self.port,
                    out.status,
                    String::from_utf8_lossy(&out.stderr),
                    tail(&self.server_log(), 30)
                );
            }
            self.running.store(true, Ordering::SeqCst);
        });
    }

    /// Restarts the server (`stop -m fast`, then start), keeping port and data.
    pub fn restart(&self) {
        self.stop();
        self.start_again();
    }

    fn pg_ctl_stop(&self, mode: &str, must_succeed: bool) {
        if !self.running.swap(false, Ordering::SeqCst) {
            return;
        }
        let mut cmd = as_postgres(&pg_bin_dir().join("pg_ctl"));
        cmd.arg("-D")
            .arg(self.data_dir())
            .args(["-m", mode, "-w", "-t", "60", "stop"]);
        match cmd.output() {
            Ok(out) if out.status.success() => {}
            Ok(out) if must_succeed => panic!(
                "pg_ctl stop -m {mode} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ),
            Err(e) if must_succeed => panic!("cannot run pg_ctl stop: {e}"),
            _ => {}
        }
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- PostgreSQL server log (port {}), last lines ---\n{}",
                self.port,
                tail(&self.server_log(), 20)
            );
        }
        self.pg_ctl_stop("immediate", false);
    }
}
