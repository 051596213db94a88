//! Measures ways of writing Ferry's `items` rows into MariaDB in chunks of
//! one transaction each (ledger claim first, then the rows, then COMMIT),
//! interleaved in rounds, and writes `runs.tsv` and `table.md` to `OUT`.
//! Started by `run.sh`, which runs the server; configured by environment:
//! `PORT`, `SERVER_PID`, `ROWS`, `CHUNK`, `ROUNDS`, `METHODS`, `PIECE`,
//! `WORK`, `OUT`, `PROBES`.

mod admin;
mod data;
mod encode;
mod native;
mod probes;
mod report;
mod via_async;
mod via_sqlx;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use mysql_async::prelude::Queryable;

use crate::data::Row;
use crate::report::Run;

/// Where the server listens and who the bench is.
#[derive(Debug, Clone)]
pub struct Server {
    /// TCP port on 127.0.0.1.
    pub port: u16,
    /// User name.
    pub user: String,
    /// Password.
    pub password: String,
    /// Database holding `items`.
    pub database: String,
}

/// One way of writing the rows.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Method {
    /// (a) sqlx prepared multi-row INSERT of at most this many rows.
    SqlxInsert(usize),
    /// (b) mysql_async LOAD DATA LOCAL INFILE from memory, one per chunk.
    AsyncLoad,
    /// (c) mysql_async text-protocol multi-row INSERT of at most this many rows.
    AsyncInsert(usize),
    /// (d) mariadb CLI, one file of all rows, one statement.
    CliOne,
    /// (d) mariadb CLI, one file and one transaction per chunk.
    CliChunks,
}

impl Method {
    fn parse(s: &str, chunk: usize) -> Result<Self> {
        let max = via_sqlx::MAX_PLACEHOLDERS / data::COLUMNS.len();
        Ok(match s {
            "a-sqlx-max" => Method::SqlxInsert(max),
            "b-async-load" => Method::AsyncLoad,
            "c-async-insert-chunk" => Method::AsyncInsert(chunk),
            "d-cli-one" => Method::CliOne,
            "d-cli-chunks" => Method::CliChunks,
            _ => match (s.strip_prefix("a-sqlx-"), s.strip_prefix("c-async-insert-")) {
                (Some(n), _) => Method::SqlxInsert(n.parse().context("a-sqlx-N")?),
                (_, Some(n)) => Method::AsyncInsert(n.parse().context("c-async-insert-N")?),
                _ => bail!("unknown method {s}"),
            },
        })
    }

    fn label(&self, chunk: usize) -> String {
        match self {
            Method::SqlxInsert(n) => format!("a-sqlx-{n}"),
            Method::AsyncLoad => "b-async-load".into(),
            Method::AsyncInsert(n) if *n >= chunk => "c-async-insert-chunk".into(),
            Method::AsyncInsert(n) => format!("c-async-insert-{n}"),
            Method::CliOne => "d-cli-one".into(),
            Method::CliChunks => "d-cli-chunks".into(),
        }
    }
}

fn env<T: std::str::FromStr>(name: &str, default: T) -> Result<T> {
    match std::env::var(name) {
        Ok(v) => v.parse().map_err(|_| anyhow::anyhow!("{name}={v} is not valid")),
        Err(_) => Ok(default),
    }
}

struct Ctx {
    server: Server,
    rows: Arc<Vec<Row>>,
    chunk: usize,
    piece: usize,
    max_allowed_packet: usize,
    files: native::Files,
}

async fn run_one(ctx: &Ctx, m: Method, job: &str) -> Result<u64> {
    let (rows, chunk) = (&ctx.rows, ctx.chunk);
    match m {
        Method::SqlxInsert(batch) => {
            let mut c = via_sqlx::connect(&ctx.server).await?;
            let t = Instant::now();
            via_sqlx::run(&mut c, job, rows, chunk, batch, ctx.max_allowed_packet).await?;
            Ok(t.elapsed().as_nanos() as u64)
        }
        Method::AsyncLoad => {
            let mut c = via_async::connect(&ctx.server).await?;
            let t = Instant::now();
            via_async::run_load(&mut c, job, rows, chunk, ctx.piece).await?;
            let ns = t.elapsed().as_nanos() as u64;
            c.disconnect().await?;
            Ok(ns)
        }
        Method::AsyncInsert(batch) => {
            let mut c = via_async::connect(&ctx.server).await?;
            let t = Instant::now();
            via_async::run_insert(&mut c, job, rows, chunk, batch, ctx.max_allowed_packet)
                .await?;
            let ns = t.elapsed().as_nanos() as u64;
            c.disconnect().await?;
            Ok(ns)
        }
        Method::CliOne | Method::CliChunks => {
            let files = if m == Method::CliOne {
                vec![ctx.files.all.clone()]
            } else {
                ctx.files.chunks.clone()
            };
            let script = native::script(job, &files);
            let t = Instant::now();
            let out = native::run_script(&ctx.server, Some(true), &script)?;
            let ns = t.elapsed().as_nanos() as u64;
            if !out.trim().is_empty() {
                bail!("mariadb client printed (warnings?): {}", out.trim());
            }
            Ok(ns)
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let server = Server {
        port: env("PORT", 0u16)?,
        user: env("DB_USER", "bench".to_string())?,
        password: env("DB_PASSWORD", "bench".to_string())?,
        database: env("DB_NAME", "bench".to_string())?,
    };
    let server_pid: u32 = env("SERVER_PID", 0)?;
    let rows_n: usize = env("ROWS", 1_000_000)?;
    let chunk: usize = env("CHUNK", 50_000)?;
    let rounds: usize = env("ROUNDS", 3)?;
    let piece: usize = env("PIECE", 256 * 1024)?;
    let work = PathBuf::from(env("WORK", "/tmp/ferry-loadbench".to_string())?);
    let out = PathBuf::from(env("OUT", "out".to_string())?);
    let default_methods = "a-sqlx-1000,a-sqlx-5000,a-sqlx-max,b-async-load,\
        c-async-insert-5000,c-async-insert-chunk,d-cli-one,d-cli-chunks";
    let methods: Vec<Method> = env("METHODS", default_methods.to_string())?
        .split(',')
        .map(|s| Method::parse(s.trim(), chunk))
        .collect::<Result<_>>()?;
    if server.port == 0 {
        bail!("PORT is not set (run.sh sets it)");
    }
    std::fs::create_dir_all(&out)?;

    eprintln!("generating {rows_n} rows");
    let rows = Arc::new(data::rows(rows_n));
    let expected = data::expected(&rows);
    let chunks = rows_n.div_ceil(chunk) as u64;
    let files = native::prepare(&work.join("tsv"), &rows, chunk)?;

    let mut admin = via_async::connect(&server).await?;
    admin::create(&mut admin).await?;
    let max_allowed_packet: usize = admin::variable(&mut admin, "max_allowed_packet")
        .await?
        .parse()
        .context("max_allowed_packet")?;
    if env("PROBES", 1u8)? == 1 {
        eprintln!("running the correctness probes");
        probes::run(&server, &out.join("probes.md"), &work).await?;
    }
    let ctx = Ctx {
        server,
        rows,
        chunk,
        piece,
        max_allowed_packet,
        files,
    };

    let mut runs = Vec::new();
    for round in 1..=rounds {
        for &m in &methods {
            let label = m.label(chunk);
            admin::truncate(&mut admin).await?;
            let dirty = admin::quiesce(&mut admin, Duration::from_secs(60)).await?;
            let (c0, k0) = admin::own_cpu();
            let s0 = admin::process_cpu(server_pid);
            let job = format!("bench-{round}-{label}");
            let result = run_one(&ctx, m, &job).await;
            let (c1, k1) = admin::own_cpu();
            let s1 = admin::process_cpu(server_pid);
            let verdict = match &result {
                // d-cli-one loads every row in one transaction: one ledger row
                Ok(_) => match admin::verify(&mut admin, expected, if m == Method::CliOne { 1 } else { chunks }).await {
                    Ok(()) => "ok".to_string(),
                    Err(e) => format!("WRONG: {e}"),
                },
                Err(e) => format!("FAILED: {e:#}"),
            };
            let run = Run {
                round,
                method: label,
                rows: rows_n as u64,
                seconds: result.as_ref().map(|ns| *ns as f64 / 1e9).unwrap_or(f64::NAN),
                client_cpu: (c1 - c0) + (k1 - k0),
                server_cpu: s1 - s0,
                dirty_before: dirty,
                verdict,
            };
            eprintln!("{}", run.line());
            runs.push(run);
        }
    }
    admin.query_drop("TRUNCATE TABLE items").await?;
    admin.disconnect().await?;
    report::write(&out, &runs, rows_n, chunk)?;
    Ok(())
}
