"""A real Ferry cluster for the tests: a throwaway PostgreSQL (scripts/pg.sh), and
``ferry coordinator`` and ``ferry worker`` processes on free loopback ports.

Nothing here is skipped when missing: a test without its dependencies fails,
saying what to install.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional

REPO = Path(__file__).resolve().parents[3]
PG_SH = REPO / "scripts" / "pg.sh"


def ferry_binary() -> Path:
    """The ferry binary under test: $FERRY_BIN, else target/debug/ferry of this checkout."""
    path = Path(os.environ.get("FERRY_BIN") or REPO / "target" / "debug" / "ferry")
    if not os.access(path, os.X_OK):
        raise RuntimeError(f"no ferry binary at {path}: run `cargo build -p ferry` or set FERRY_BIN")
    return path


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Postgres:
    """A throwaway PostgreSQL 15 cluster with databases src and dst."""

    def __init__(self) -> None:
        if shutil.which("psql") is None:
            raise RuntimeError("psql not found: run scripts/setup.sh")
        self.dir = Path(tempfile.mkdtemp(prefix="ferry-pytest-pg-"))
        self.port = free_port()
        subprocess.run(["bash", str(PG_SH), "start", str(self.dir), str(self.port)], check=True)
        self.psql("postgres", "create database src")
        self.psql("postgres", "create database dst")

    def url(self, db: str) -> str:
        """Connection URL of database ``db``."""
        return f"postgres://postgres@127.0.0.1:{self.port}/{db}"

    def psql(self, db: str, sql: str) -> str:
        """Runs ``sql`` in ``db``; returns the unaligned output."""
        out = subprocess.run(
            ["psql", "-XqAt", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", str(self.port),
             "-U", "postgres", "-d", db, "-c", sql],
            check=True, capture_output=True, text=True,
        )
        return out.stdout.strip()

    def signature(self, db: str, table: str) -> str:
        """count:checksum of a table, independent of row order."""
        return self.psql(db, f"select count(*) || ':' || coalesce(sum(hashtext(t::text)::bigint), 0) from {table} t")

    def stop(self) -> None:
        """Stops the cluster and removes its files."""
        subprocess.run(["bash", str(PG_SH), "stop", str(self.dir)], check=False)
        shutil.rmtree(self.dir, ignore_errors=True)


ITEMS_DDL = (
    "(id bigint primary key, customer_id int not null, amount numeric(12,2) not null, "
    "status text not null, note text, created_at timestamptz not null)"
)


def make_items(pg: Postgres, db: str, table: str, rows: int) -> None:
    """The six-column test table with ``rows`` rows."""
    pg.psql(db, f"create table {table} {ITEMS_DDL}")
    pg.psql(
        db,
        f"insert into {table} select g, g % 10007, (g % 100000) / 100.0, "
        "(array['new','paid','shipped','void'])[g % 4 + 1], "
        "case when g % 7 = 0 then null else md5(g::text) end, "
        f"timestamptz '2024-01-01' + g * interval '1 second' from generate_series(1, {rows}) g",
    )


def make_target(pg: Postgres, table: str) -> None:
    """An empty target table shaped like items, in dst."""
    pg.psql("dst", f"create table {table} {ITEMS_DDL}")


class Ferry:
    """A coordinator and one worker as separate processes."""

    def __init__(self, pg: Postgres, env: Optional[Dict[str, str]] = None, workers: int = 1) -> None:
        self.binary = ferry_binary()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.logdir = Path(tempfile.mkdtemp(prefix="ferry-pytest-log-"))
        base = dict(os.environ)
        base.update({"FERRY_CONN_SRC": pg.url("src"), "FERRY_CONN_DST": pg.url("dst"), "FERRY_LOG": "info"})
        base.update(env or {})
        self.procs: List[subprocess.Popen] = []
        self.coordinator_log = self.logdir / "coordinator.log"
        self._spawn(["coordinator", "--listen", f"127.0.0.1:{self.port}"], base, self.coordinator_log)
        for n in range(workers):
            self._spawn(["worker", "--coordinator", self.url, "--concurrency", "2"], base,
                        self.logdir / f"worker{n}.log")
        self._wait_ready()

    def _spawn(self, args: List[str], env: Dict[str, str], log: Path) -> None:
        with open(log, "wb") as out:
            self.procs.append(subprocess.Popen([str(self.binary), *args], env=env, stdout=out,
                                               stderr=subprocess.STDOUT))

    def _wait_ready(self) -> None:
        from ferry_client import Client, FerryError

        deadline = time.monotonic() + 30
        with Client(self.url, timeout=2) as c:
            while True:
                try:
                    c.jobs(limit=1)
                    return
                except FerryError:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"coordinator did not start: {self.coordinator_log.read_text()}")
                    time.sleep(0.2)

    def log(self) -> str:
        """The coordinator's log so far."""
        return self.coordinator_log.read_text(errors="replace")

    def stop(self) -> None:
        """Stops every process (SIGTERM, then SIGKILL)."""
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        shutil.rmtree(self.logdir, ignore_errors=True)
