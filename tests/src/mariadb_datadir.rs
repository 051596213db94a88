//! Fresh MariaDB data directories, copied from one initialized template.
//!
//! `mariadb-install-db` takes 5–7 s here (hundreds of small DDL statements,
//! each waiting on the disk), a server start half a second. So the first
//! server ever initializes a template once, under `target/<profile>/` (kept
//! across runs, gone with `cargo clean`), and every server starts from a copy
//! of it. The template's name carries the server version and the options it
//! was made with, so an upgraded `mariadbd` or changed options make a new one.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// Where Debian's mariadb-server package puts the server.
const DEFAULT_MARIADBD: &str = "/usr/sbin/mariadbd";

/// Where Debian's mariadb-server package puts the data directory initializer.
const DEFAULT_INSTALL_DB: &str = "/usr/bin/mariadb-install-db";

/// Bumped whenever the way a template is made changes (its options are part
/// of its name already).
const TEMPLATE_FORMAT: u32 = 1;

/// InnoDB options fixed when a data directory is created; the server gets the
/// same ones so it never resizes its redo log at start.
pub(crate) const INNODB_OPTIONS: &[&str] = &[
    "--innodb-buffer-pool-size=64M",
    "--innodb-log-file-size=32M",
    // Linux native AIO/io_uring contexts are a per-machine limit that many
    // servers at once can exhaust; synchronous I/O is plenty for tests.
    "--innodb-use-native-aio=0",
];

/// `mariadb-install-db` options: root@localhost, root@127.0.0.1 and root@::1
/// with no password (`normal`, the pre-10.4 way), no `test` database, no
/// accounts named after this host.
const INSTALL_OPTIONS: &[&str] = &[
    "--auth-root-authentication-method=normal",
    "--skip-test-db",
    "--skip-name-resolve",
];

/// Serializes template creation inside this process.
static TEMPLATE_LOCK: Mutex<()> = Mutex::new(());

/// The server binary: env `FERRY_MARIADBD`, else Debian's `/usr/sbin/mariadbd`.
pub fn mariadbd_bin() -> PathBuf {
    std::env::var_os("FERRY_MARIADBD")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_MARIADBD))
}

/// The initializer: env `FERRY_MARIADB_INSTALL_DB`, else Debian's.
pub fn install_db_bin() -> PathBuf {
    std::env::var_os("FERRY_MARIADB_INSTALL_DB")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_INSTALL_DB))
}

/// True when this process runs as root, so `mariadbd` needs `--user=root`.
pub(crate) fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Panics with the fix when the MariaDB binaries are missing.
pub(crate) fn require_binaries() {
    for bin in [mariadbd_bin(), install_db_bin()] {
        if !bin.is_file() {
            panic!(
                "MariaDB is not installed: {} is missing. Run `sudo bash scripts/setup.sh` \
                 (or set FERRY_MARIADBD and FERRY_MARIADB_INSTALL_DB)",
                bin.display()
            );
        }
    }
}

/// Fills `datadir` (which must not exist) with a freshly initialized data
/// directory; panics with the initializer's output when that fails.
pub(crate) fn create_datadir(datadir: &Path) {
    let template = template_dir();
    copy_dir(&template, datadir).unwrap_or_else(|e| {
        panic!(
            "copy the MariaDB template {} to {}: {e}",
            template.display(),
            datadir.display()
        )
    });
}

/// The initialized template for this server version, made if missing.
fn template_dir() -> PathBuf {
    let _guard = TEMPLATE_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let root = templates_root();
    let template = root.join(template_name());
    if template.is_dir() {
        return template;
    }
    std::fs::create_dir_all(&root).unwrap_or_else(|e| panic!("create {}: {e}", root.display()));
    // Built beside its final name, then renamed into place in one step: a
    // template that exists is complete, even with test binaries racing.
    let building = tempfile::Builder::new()
        .prefix(".building-")
        .tempdir_in(&root)
        .unwrap_or_else(|e| panic!("create a temp dir in {}: {e}", root.display()));
    let datadir = building.path().join("data");
    run_install_db(&datadir);
    if std::fs::rename(&datadir, &template).is_err() && !template.is_dir() {
        panic!(
            "cannot move the new MariaDB template {} to {}",
            datadir.display(),
            template.display()
        );
    }
    template
}

/// Runs `mariadb-install-db` into `datadir`.
fn run_install_db(datadir: &Path) {
    let mut cmd = Command::new(install_db_bin());
    cmd.arg("--no-defaults")
        .arg(format!("--datadir={}", datadir.display()))
        .args(INSTALL_OPTIONS)
        .args(INNODB_OPTIONS);
    if is_root() {
        cmd.arg("--user=root");
    }
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", install_db_bin().display()));
    if !out.status.success() {
        panic!(
            "mariadb-install-db failed ({}):\nstdout:\n{}\nstderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// `target/<profile>/ferry-mariadb-templates` next to the running test
/// binary (`target/<profile>/deps/…`), else one in the temp dir.
fn templates_root() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| {
            let deps = exe.parent()?;
            (deps.file_name()? == "deps").then(|| deps.parent().map(Path::to_path_buf))?
        })
        .unwrap_or_else(std::env::temp_dir)
        .join("ferry-mariadb-templates")
}

/// `v<format>-<server version>-<options hash>`, e.g.
/// `v1-10.11.19-MariaDB-0_deb12u1-3f2a9c0d1e2b4a57`.
fn template_name() -> String {
    let out = Command::new(mariadbd_bin())
        .args(["--no-defaults", "--version"])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {} --version: {e}", mariadbd_bin().display()));
    let text = String::from_utf8_lossy(&out.stdout);
    // "mariadbd  Ver 10.11.19-MariaDB-0+deb12u1 for debian-linux-gnu on x86_64 (Debian 12)"
    let version = text
        .split_whitespace()
        .skip_while(|word| *word != "Ver")
        .nth(1)
        .unwrap_or_else(|| panic!("unexpected `mariadbd --version` output: {text}"));
    let version: String = version
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let options = INSTALL_OPTIONS.iter().chain(INNODB_OPTIONS).copied();
    format!("v{TEMPLATE_FORMAT}-{version}-{:016x}", fnv1a(options))
}

/// FNV-1a over `parts` (with a separator): stable across processes and Rust
/// versions, unlike `DefaultHasher`.
fn fnv1a<'a>(parts: impl Iterator<Item = &'a str>) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for byte in part.bytes().chain([0]) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    hash
}

/// Copies directory `from` to `to` (which must not exist), recursively.
fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}
