//! Method (d), the native loader: the `mariadb` command-line client running
//! `LOAD DATA LOCAL INFILE` from tab-separated files written before timing,
//! either one file of all rows or one file per chunk (one transaction with
//! its ledger claim each), timed end to end (process start included).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

use crate::data::{Row, COLUMNS};
use crate::encode::{tsv_row, TSV_CLAUSES};
use crate::Server;

/// The files a native run reads.
#[derive(Debug, Clone)]
pub struct Files {
    /// One file with every row.
    pub all: PathBuf,
    /// One file per chunk.
    pub chunks: Vec<PathBuf>,
}

fn write_tsv(path: &Path, rows: &[Row]) -> Result<()> {
    let mut buf = Vec::with_capacity(rows.len() * 110);
    for r in rows {
        tsv_row(&mut buf, r);
    }
    std::fs::write(path, buf).with_context(|| format!("writing {}", path.display()))
}

/// Writes the files (untimed).
pub fn prepare(dir: &Path, rows: &[Row], chunk: usize) -> Result<Files> {
    std::fs::create_dir_all(dir)?;
    let all = dir.join("items.tsv");
    write_tsv(&all, rows)?;
    let mut chunks = Vec::new();
    for (n, part) in rows.chunks(chunk).enumerate() {
        let p = dir.join(format!("items-{n:04}.tsv"));
        write_tsv(&p, part)?;
        chunks.push(p);
    }
    Ok(Files { all, chunks })
}

fn load_statement(path: &Path) -> String {
    format!(
        "LOAD DATA LOCAL INFILE '{}' INTO TABLE items {TSV_CLAUSES} ({});\n",
        path.display(),
        COLUMNS.join(", ")
    )
}

/// The script of one transaction per file (its ledger claim, its load).
pub fn script(job: &str, files: &[PathBuf]) -> String {
    let mut s = String::from(
        "SET SESSION sql_mode = CONCAT_WS(',', @@SESSION.sql_mode, 'STRICT_ALL_TABLES');\n",
    );
    for (n, f) in files.iter().enumerate() {
        s.push_str("START TRANSACTION;\n");
        s.push_str(&format!(
            "INSERT INTO ferry.ledger (job_id, chunk_no, attempt, fencing_token, worker) \
             VALUES ('{job}', {n}, 1, 1, 'bench');\n"
        ));
        s.push_str(&load_statement(f));
        s.push_str("COMMIT;\n");
    }
    s
}

/// The `mariadb` client over TCP, with `--local-infile=1` unless `local_infile` is `None`.
pub fn client(server: &Server, local_infile: Option<bool>) -> Command {
    let mut c = Command::new("mariadb");
    // --no-defaults first: no option files, so the client's built-in defaults show
    c.arg("--no-defaults")
        .arg("--default-character-set=utf8mb4")
        .arg("--protocol=TCP")
        .arg("-h127.0.0.1")
        .arg(format!("-P{}", server.port))
        .arg(format!("-u{}", server.user))
        .arg(format!("-p{}", server.password));
    if let Some(on) = local_infile {
        c.arg(format!("--local-infile={}", u8::from(on)));
    }
    c.arg("--batch").arg("--show-warnings").arg(&server.database);
    c
}

/// Runs `script` through the client; returns its output, or fails with its stderr.
pub fn run_script(server: &Server, local_infile: Option<bool>, script: &str) -> Result<String> {
    let mut child = client(server, local_infile)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting the mariadb client (is mariadb-client installed?)")?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(script.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if !out.status.success() {
        bail!("mariadb client failed ({}): {}", out.status, text.trim());
    }
    Ok(text)
}
