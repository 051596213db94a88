//! Correctness probes, run once before the timing: how each method reports
//! a bad row (strict session), whether `LOAD DATA LOCAL` respects the
//! transaction, what a failing in-memory stream leaves behind, and what
//! `local_infile` needs on server and client. Writes a markdown report.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Result;
use bytes::Bytes;
use futures::stream::{self, StreamExt};
use mysql_async::prelude::Queryable;
use mysql_async::Conn;
use sqlx::mysql::{MySqlConnection, MySqlDatabaseError};
use sqlx::Executor;

use crate::{native, via_async, via_sqlx, Server};

const PROBE_DDL: &str = "CREATE TABLE probe (id int NOT NULL PRIMARY KEY, n int NOT NULL, \
    s varchar(4) NOT NULL) ENGINE=InnoDB";
const PROBE_LOAD: &str = "LOAD DATA LOCAL INFILE 'probe' INTO TABLE probe CHARACTER SET utf8mb4 \
    FIELDS TERMINATED BY '\\t' ESCAPED BY '\\\\' LINES TERMINATED BY '\\n' (id, n, s)";

/// A bad-input case: rows as text (`None` is NULL) and as a TSV file.
struct Case {
    name: &'static str,
    rows: &'static [[Option<&'static str>; 3]],
    tsv: &'static str,
}

const CASES: &[Case] = &[
    Case {
        name: "duplicate key (2nd row repeats id 1)",
        rows: &[[Some("1"), Some("1"), Some("a")], [Some("1"), Some("2"), Some("b")]],
        tsv: "1\t1\ta\n1\t2\tb\n",
    },
    Case {
        name: "'abc' into int",
        rows: &[[Some("1"), Some("abc"), Some("a")]],
        tsv: "1\tabc\ta\n",
    },
    Case {
        name: "int out of range (99999999999)",
        rows: &[[Some("1"), Some("99999999999"), Some("a")]],
        tsv: "1\t99999999999\ta\n",
    },
    Case {
        name: "'toolong' into varchar(4)",
        rows: &[[Some("1"), Some("1"), Some("toolong")]],
        tsv: "1\t1\ttoolong\n",
    },
    Case {
        name: "NULL into NOT NULL",
        rows: &[[Some("1"), None, Some("a")]],
        tsv: "1\t\\N\ta\n",
    },
    Case {
        name: "line with a missing field",
        rows: &[],
        tsv: "1\t1\n",
    },
    Case {
        name: "line with an extra field",
        rows: &[],
        tsv: "1\t1\ta\tx\n",
    },
];

fn one_line(s: &str) -> String {
    s.replace(['\n', '|'], " ").trim().to_string()
}

fn async_error(e: &mysql_async::Error) -> String {
    match e {
        mysql_async::Error::Server(s) => format!("error {} ({}): {}", s.code, s.state, s.message),
        other => format!("client error: {other}"),
    }
}

fn sqlx_error(e: &sqlx::Error) -> String {
    match e
        .as_database_error()
        .and_then(|d| d.try_downcast_ref::<MySqlDatabaseError>())
    {
        Some(d) => format!(
            "error {} ({}): {}",
            d.number(),
            d.code().unwrap_or("?"),
            d.message()
        ),
        None => format!("client error: {e}"),
    }
}

async fn probe_rows(conn: &mut Conn) -> Result<String> {
    let rows: Vec<(i64, i64, String)> = conn
        .query("SELECT id, n, s FROM probe ORDER BY id")
        .await?;
    Ok(if rows.is_empty() {
        "none".to_string()
    } else {
        rows.iter()
            .map(|(i, n, s)| format!("({i}, {n}, '{s}')"))
            .collect::<Vec<_>>()
            .join(" ")
    })
}

/// Runs `LOAD DATA LOCAL` of `data` inside a transaction after a ledger-like
/// insert; returns the outcome, the rows visible before rollback.
async fn load_case(conn: &mut Conn, data: Vec<std::io::Result<Bytes>>) -> Result<String> {
    conn.query_drop("START TRANSACTION").await?;
    conn.set_infile_handler(async move { Ok(stream::iter(data).boxed()) });
    let outcome = match conn.query_drop(PROBE_LOAD).await {
        Ok(()) => {
            let w: Vec<(String, u32, String)> = conn.query("SHOW WARNINGS").await?;
            let shown: Vec<String> = w
                .iter()
                .take(3)
                .map(|(l, c, m)| format!("{l} {c}: {m}"))
                .collect();
            format!(
                "ok, {} rows, {} warnings ({}) {}",
                conn.affected_rows(),
                conn.get_warnings(),
                conn.info(),
                shown.join("; ")
            )
        }
        Err(e) => async_error(&e),
    };
    let usable = match conn.query_first::<i64, _>("SELECT 1").await {
        Ok(_) => String::new(),
        Err(e) => format!("; connection unusable afterwards: {}", async_error(&e)),
    };
    let seen = probe_rows(conn).await.unwrap_or_else(|e| format!("({e})"));
    let _ = conn.query_drop("ROLLBACK").await;
    Ok(format!("{}{usable} | {seen}", one_line(&outcome)))
}

async fn insert_case(conn: &mut MySqlConnection, case: &Case) -> Result<String> {
    conn.execute("START TRANSACTION").await?;
    let mut sql = String::from("INSERT INTO probe (id, n, s) VALUES ");
    for i in 0..case.rows.len() {
        sql.push_str(if i == 0 { "(?, ?, ?)" } else { ", (?, ?, ?)" });
    }
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
    for r in case.rows {
        for v in r {
            q = q.bind(*v);
        }
    }
    let outcome = match q.execute(&mut *conn).await {
        Ok(r) => format!("ok, {} rows", r.rows_affected()),
        Err(e) => sqlx_error(&e),
    };
    // what the transaction itself sees: read on the same connection
    let seen: Vec<(i32, i32, String)> = sqlx::query_as("SELECT id, n, s FROM probe ORDER BY id")
        .fetch_all(&mut *conn)
        .await?;
    conn.execute("ROLLBACK").await?;
    let seen = if seen.is_empty() {
        "none".to_string()
    } else {
        seen.iter()
            .map(|(i, n, s)| format!("({i}, {n}, '{s}')"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    Ok(format!("{} | {seen}", one_line(&outcome)))
}

/// Runs every probe and writes `out`.
pub async fn run(server: &Server, out: &Path, work: &Path) -> Result<()> {
    let mut admin = via_async::connect(server).await?;
    admin.query_drop("DROP TABLE IF EXISTS probe").await?;
    admin.query_drop(PROBE_DDL).await?;
    let mut md = String::new();
    let mode: Option<String> = admin.query_first("SELECT @@SESSION.sql_mode").await?;
    let _ = writeln!(
        md,
        "Session `sql_mode` (Ferry's settings): `{}`\n",
        mode.unwrap_or_default()
    );
    let _ = writeln!(
        md,
        "| case | method | outcome | rows the transaction sees before ROLLBACK |\n|---|---|---|---|"
    );
    let mut sc = via_sqlx::connect(server).await?;
    let failed = |e: anyhow::Error| format!("probe failed: {} | -", one_line(&format!("{e:#}")));
    for case in CASES {
        eprintln!("probe: {}", case.name);
        // a fresh connection per probe, so one probe's damage cannot leak into the next
        let mut lc = via_async::connect(server).await?;
        let data = vec![Ok(Bytes::from_static(case.tsv.as_bytes()))];
        let r = load_case(&mut lc, data).await.unwrap_or_else(failed);
        let _ = writeln!(md, "| {} | LOAD DATA LOCAL (mysql_async) | {r} |", case.name);
        if !case.rows.is_empty() {
            let r = insert_case(&mut sc, case).await.unwrap_or_else(failed);
            let _ = writeln!(md, "| {} | prepared INSERT (sqlx) | {r} |", case.name);
        }
    }
    eprintln!("probe: failing stream");
    // the stream fails after one good piece (a source error mid-chunk)
    let mut lc = via_async::connect(server).await?;
    let r = load_case(
        &mut lc,
        vec![
            Ok(Bytes::from_static(b"1\t1\ta\n2\t2\tb\n")),
            Err(std::io::Error::other("source failed mid-chunk")),
        ],
    )
    .await
    .unwrap_or_else(failed);
    let _ = writeln!(
        md,
        "| in-memory stream fails after 2 rows | LOAD DATA LOCAL (mysql_async) | {r} |"
    );
    let after: Option<i64> = admin.query_first("SELECT COUNT(*) FROM probe").await?;
    let _ = writeln!(
        md,
        "| (the same, seen from another session afterwards) | - | {} rows in probe | - |",
        after.unwrap_or(-1)
    );
    admin.query_drop("DELETE FROM probe").await?;

    eprintln!("probe: rollback");
    // rollback: three good rows loaded, then ROLLBACK, then count from another session
    let mut lc = via_async::connect(server).await?;
    lc.query_drop("START TRANSACTION").await?;
    lc.set_infile_handler(async {
        Ok(stream::iter([Ok(Bytes::from_static(b"1\t1\ta\n2\t2\tb\n3\t3\tc\n"))]).boxed())
    });
    lc.query_drop(PROBE_LOAD).await?;
    let inside: Option<i64> = lc.query_first("SELECT COUNT(*) FROM probe").await?;
    let other: Option<i64> = admin.query_first("SELECT COUNT(*) FROM probe").await?;
    lc.query_drop("ROLLBACK").await?;
    let after: Option<i64> = admin.query_first("SELECT COUNT(*) FROM probe").await?;
    let _ = writeln!(
        md,
        "| 3 good rows, then ROLLBACK | LOAD DATA LOCAL (mysql_async) | inside the transaction {} rows, \
         another session {} rows before ROLLBACK, {} after | - |",
        inside.unwrap_or(-1),
        other.unwrap_or(-1),
        after.unwrap_or(-1)
    );

    eprintln!("probe: no handler");
    // no handler set on the connection (and none global)
    let mut lc = via_async::connect(server).await?;
    let r = match lc.query_drop(PROBE_LOAD).await {
        Ok(()) => "ok (unexpected)".to_string(),
        Err(e) => async_error(&e),
    };
    let usable = lc.query_first::<i64, _>("SELECT 1").await.is_ok();
    let _ = writeln!(
        md,
        "| no infile handler on the connection | LOAD DATA LOCAL (mysql_async) | {}; connection usable afterwards: {usable} | - |",
        one_line(&r)
    );

    // server with local_infile off
    admin.query_drop("SET GLOBAL local_infile = OFF").await?;
    let mut off = via_async::connect(server).await?;
    let r = load_case(&mut off, vec![Ok(Bytes::from_static(b"1\t1\ta\n"))])
        .await
        .unwrap_or_else(failed);
    admin.query_drop("SET GLOBAL local_infile = ON").await?;
    let _ = writeln!(
        md,
        "| server `local_infile=OFF` | LOAD DATA LOCAL (mysql_async) | {r} |"
    );

    // the command-line client, with and without --local-infile
    let file = work.join("probe.tsv");
    std::fs::write(&file, "1\t1\ta\n")?;
    let script = format!(
        "LOAD DATA LOCAL INFILE '{}' INTO TABLE probe (id, n, s); SELECT COUNT(*) FROM probe; DELETE FROM probe;\n",
        file.display()
    );
    for (label, flag) in [
        ("no --local-infile flag (client default)", None),
        ("--local-infile=0", Some(false)),
        ("--local-infile=1", Some(true)),
    ] {
        let r = match native::run_script(server, flag, &script) {
            Ok(t) => format!("ok: {}", one_line(&t)),
            Err(e) => one_line(&e.to_string()),
        };
        let _ = writeln!(md, "| mariadb client, {label} | mariadb CLI | {r} | - |");
    }
    admin.query_drop("DROP TABLE probe").await?;
    std::fs::write(out, md)?;
    Ok(())
}
