//! SQLite database files in temp dirs: create, fill, query, make read-only.
//!
//! Read-only for root: file modes do not stop root (CAP_DAC_OVERRIDE), so
//! `make_read_only` also sets the immutable attribute (`chattr +i`), which
//! stops every writer, root included, on filesystems that support it (ext4,
//! xfs, btrfs; not tmpfs or overlayfs) when the process holds
//! CAP_LINUX_IMMUTABLE. It checks that writing really fails and panics with
//! the alternative otherwise: `read_only_url` (`?mode=ro`) makes SQLite
//! itself refuse writes on that one connection.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};

use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqliteRow};
use sqlx::{AssertSqlSafe, Connection};
use tempfile::TempDir;

use crate::sqlx_text::{rows_as_text, single_i64, TextRow};

/// The file name `create` and `missing` use inside their temp dir.
pub const SQLITE_FILE_NAME: &str = "db.sqlite";

/// The URL Ferry takes for the SQLite file at absolute `path`:
/// `sqlite:///abs/path` (`sqlite://` and the path).
pub fn url(path: &Path) -> String {
    assert!(path.is_absolute(), "{} is not absolute", path.display());
    format!("sqlite://{}", path.display())
}

/// A SQLite file (or the place for one) in a temp dir of its own. Dropping it
/// removes the dir, lifting `make_read_only` first.
pub struct SqliteFile {
    dir: TempDir,
    path: PathBuf,
    immutable: AtomicBool,
}

impl SqliteFile {
    /// Creates a new database file (rollback journal, SQLite's default) and
    /// runs `ddl` in it (one or more statements; may be empty).
    pub async fn create(ddl: &str) -> Self {
        let file = Self::missing();
        let mut conn =
            SqliteConnection::connect_with(&file.connect_options().create_if_missing(true))
                .await
                .unwrap_or_else(|e| panic!("create {}: {e}", file.path.display()));
        if !ddl.trim().is_empty() {
            sqlx::raw_sql(AssertSqlSafe(ddl))
                .execute(&mut conn)
                .await
                .unwrap_or_else(|e| panic!("{ddl}: {e}"));
        }
        conn.close()
            .await
            .unwrap_or_else(|e| panic!("close {}: {e}", file.path.display()));
        file
    }

    /// A path in a new temp dir where no file exists (a missing source).
    pub fn missing() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("ferry-sqlite-")
            .tempdir()
            .expect("create a temp dir for SQLite");
        let path = dir.path().join(SQLITE_FILE_NAME);
        SqliteFile {
            dir,
            path,
            immutable: AtomicBool::new(false),
        }
    }

    /// The database file's absolute path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The temp dir holding the file (and its journal while one is written).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `sqlite:///abs/path`, the URL Ferry (and sqlx) take for this file.
    pub fn url(&self) -> String {
        url(&self.path)
    }

    /// `sqlite:/abs/path`, the `sqlite:PATH` form of the same file.
    pub fn path_url(&self) -> String {
        format!("sqlite:{}", self.path.display())
    }

    /// `sqlite:db.sqlite`: the file relative to `dir()`, for a process whose
    /// working directory is `dir()` (Ferry resolves a relative path against
    /// its own working directory).
    pub fn relative_url(&self) -> String {
        format!("sqlite:{SQLITE_FILE_NAME}")
    }

    /// `sqlite:///abs/path?mode=ro` for sqlx: SQLite opens the file
    /// read-only and refuses every write on that connection
    /// (SQLITE_READONLY), root included. Ferry ignores the query part.
    pub fn read_only_url(&self) -> String {
        format!("{}?mode=ro", self.url())
    }

    /// Connection options for the file (never creating it).
    pub fn connect_options(&self) -> SqliteConnectOptions {
        SqliteConnectOptions::new().filename(&self.path)
    }

    /// A new connection to the file; panics when it cannot be opened.
    pub async fn connect(&self) -> SqliteConnection {
        SqliteConnection::connect_with(&self.connect_options())
            .await
            .unwrap_or_else(|e| panic!("open {}: {e}", self.path.display()))
    }

    /// Runs `sql` (one or more statements) on a new connection; panics with
    /// the statement on error.
    pub async fn exec(&self, sql: &str) {
        let mut conn = self.connect().await;
        sqlx::raw_sql(AssertSqlSafe(sql))
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// Runs `sql` on a new connection and returns SQLite's error, or `None`
    /// when it succeeded (for asserting that a write is refused).
    pub async fn try_exec(&self, sql: &str) -> Option<sqlx::Error> {
        let mut conn = match SqliteConnection::connect_with(&self.connect_options()).await {
            Ok(conn) => conn,
            Err(e) => return Some(e),
        };
        sqlx::raw_sql(AssertSqlSafe(sql))
            .execute(&mut conn)
            .await
            .err()
    }

    /// One `i64` from a query returning one row whose first value is an
    /// integer; panics otherwise.
    pub async fn query_i64(&self, sql: &str) -> i64 {
        single_i64(&self.fetch_all(sql).await, sql)
    }

    /// Every row of a query, each value as SQLite's text form of it (an
    /// INTEGER `7`, a REAL `1.5`, NULL as `None`). A BLOB that is not UTF-8
    /// panics: select `hex(col)`.
    pub async fn query_rows(&self, sql: &str) -> Vec<TextRow> {
        rows_as_text(&self.fetch_all(sql).await, sql)
    }

    async fn fetch_all(&self, sql: &str) -> Vec<SqliteRow> {
        let mut conn = self.connect().await;
        sqlx::raw_sql(AssertSqlSafe(sql))
            .fetch_all(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// Makes the file read-only for every process, root included: mode 0444,
    /// plus the immutable attribute when running as root. Panics (naming
    /// `read_only_url` as the way out) when a write could still open it.
    pub fn make_read_only(&self) {
        set_mode(&self.path, 0o444);
        if is_root() {
            chattr(&self.path, "+i");
            self.immutable.store(true, Ordering::SeqCst);
        }
        let writable = std::fs::OpenOptions::new().write(true).open(&self.path);
        assert!(
            writable.is_err(),
            "{} is still writable after chmod 0444{}: this filesystem or process cannot \
             make a file read-only for root; use read_only_url() (`?mode=ro`) instead",
            self.path.display(),
            if self.immutable.load(Ordering::SeqCst) {
                " and chattr +i"
            } else {
                ""
            }
        );
    }

    /// Undoes `make_read_only` (lifts the immutable attribute, mode 0644).
    pub fn make_writable(&self) {
        if self.immutable.swap(false, Ordering::SeqCst) {
            chattr(&self.path, "-i");
        }
        set_mode(&self.path, 0o644);
    }
}

impl Drop for SqliteFile {
    fn drop(&mut self) {
        // An immutable file cannot be removed, nor can the dir around it.
        if self.immutable.swap(false, Ordering::SeqCst) {
            let _ = Command::new("chattr").arg("-i").arg(&self.path).status();
        }
    }
}

/// True when this process runs as root, which file modes do not stop.
fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn set_mode(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {mode:o} {}: {e}", path.display()));
}

/// Runs `chattr FLAG PATH`; panics with its output when it fails.
fn chattr(path: &Path, flag: &str) {
    let out = Command::new("chattr")
        .arg(flag)
        .arg(path)
        .output()
        .unwrap_or_else(|e| panic!("cannot run chattr (e2fsprogs): {e}"));
    assert!(
        out.status.success(),
        "chattr {flag} {} failed ({}): {}; a filesystem without immutable attributes \
         (tmpfs, overlayfs) or a process without CAP_LINUX_IMMUTABLE cannot make a file \
         read-only for root: use read_only_url() (`?mode=ro`) instead",
        path.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
}
