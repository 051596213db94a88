"""The Airflow provider under Airflow 3.3 (SQLite metadata DB) against a real Ferry
cluster and PostgreSQL: ``airflow dags test`` runs the example DAG, a retried task
re-attaches to its job, killing the task mid-run cancels the job, and the
triggerer's user-kill path cancels a deferred task's job."""

import asyncio
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1] / "python" / "tests"))

from cluster import Ferry, Postgres, make_items, make_target  # noqa: E402

ITEMS = 60_000
LOGICAL_DATE = "2026-01-01T00:00:00+00:00"


@pytest.fixture(scope="module")
def pg():
    cluster = Postgres()
    make_items(cluster, "src", "items", ITEMS)
    make_target(cluster, "public.items")
    yield cluster
    cluster.stop()


@pytest.fixture(scope="module")
def ferry(pg):
    cluster = Ferry(pg)
    yield cluster
    cluster.stop()


@pytest.fixture(scope="module")
def airflow_env(ferry):
    """AIRFLOW_HOME in a temp dir: SQLite metadata DB migrated, the DAGs, connection ferry_default."""
    home = Path(tempfile.mkdtemp(prefix="ferry-airflow-"))
    dags = home / "dags"
    dags.mkdir()
    shutil.copy(HERE.parent / "example_dags" / "ferry_copy.py", dags)
    for test_dag in (HERE / "dags").glob("*.py"):
        shutil.copy(test_dag, dags)
    env = dict(os.environ)
    env.update({
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
        "AIRFLOW_CONN_FERRY_DEFAULT": f"ferry://127.0.0.1:{ferry.port}",
    })
    subprocess.run([airflow(), "db", "migrate"], env=env, check=True, capture_output=True)
    yield env
    shutil.rmtree(home, ignore_errors=True)


def airflow() -> str:
    return str(Path(sys.executable).parent / "airflow")


def dags_test(env, dag_id, timeout=300):
    return subprocess.run([airflow(), "dags", "test", dag_id, LOGICAL_DATE], env=env,
                          capture_output=True, text=True, timeout=timeout)


def jobs_for(ferry, table):
    from ferry_client import Client

    return [j for j in Client(ferry.url).jobs() if j.spec.get("table") == table]


def test_dags_test_runs_the_example_dag(pg, ferry, airflow_env):
    run = dags_test(airflow_env, "ferry_copy")
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-5000:]
    jobs = jobs_for(ferry, "public.items")
    assert len(jobs) == 1, jobs
    job = jobs[0]
    assert (job.state, job.rows_written) == ("SUCCEEDED", ITEMS)
    assert f"submitted ferry job {job.job_id}" in out
    assert "running trigger in line" in out, "the task deferred to FerryJobTrigger"
    assert f"ferry job {job.job_id}: {ITEMS} rows, 0 rejected" in out, "row counts reach the downstream task by XCom"
    assert pg.signature("dst", "items") == pg.signature("src", "items")
    db = sqlite3.connect(Path(airflow_env["AIRFLOW_HOME"]) / "airflow.db")
    events = db.execute("select a.uri from asset_event e join asset a on a.id = e.asset_id").fetchall()
    assert ("ferry://dst/public.items",) in events, "the target table is an outlet asset in Airflow's lineage"


def test_a_retried_task_reattaches_to_its_job(pg, ferry, airflow_env):
    """Try 1 fails after its job ended; try 2 (same DAG run, the same task instance, as
    after a clear) re-attaches to the job: one job, rows once. (Each `airflow dags test`
    makes a new DAG run, whose run id carries the time of the call, so the second try
    inside one call is how a cleared or retried task instance is exercised.)"""
    make_target(pg, "public.retry_items")
    run = dags_test(airflow_env, "ferry_retry")
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-5000:]
    jobs = jobs_for(ferry, "public.retry_items")
    assert len(jobs) == 1, jobs
    assert "injected failure after ferry job" in out, "try 1 did fail"
    assert f"re-attached to ferry job {jobs[0].job_id}" in out
    assert out.count("submitted ferry job") == 1
    assert pg.psql("dst", "select count(*) from public.retry_items") == str(ITEMS), "rows landed once"


def slow_target(pg, table):
    make_target(pg, table)
    pg.psql("dst", "create or replace function slow_row() returns trigger language plpgsql as "
                   "$$ begin perform pg_sleep(0.002); return new; end $$")
    pg.psql("dst", f"create trigger slow before insert on {table} for each row execute function slow_row()")


def wait_running(ferry, table, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        jobs = jobs_for(ferry, table)
        if jobs and jobs[0].state == "RUNNING" and jobs[0].rows_written > 0:
            return jobs[0]
        time.sleep(0.2)
    raise AssertionError(f"no running job for {table}: {jobs_for(ferry, table)}")


def test_killing_the_task_mid_run_cancels_the_job(pg, ferry, airflow_env):
    slow_target(pg, "public.slow_items")
    log = Path(airflow_env["AIRFLOW_HOME"]) / "slow.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([airflow(), "dags", "test", "ferry_slow", LOGICAL_DATE], env=airflow_env,
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        job = wait_running(ferry, "public.slow_items")
        deadline = time.monotonic() + 60
        while "running trigger in line" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert "running trigger in line" in log.read_text(), "the task never deferred"
        proc.send_signal(signal.SIGTERM)  # what a worker does to a task that is killed
        rc = proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    text = log.read_text()
    assert rc != 0, text[-3000:]
    final = jobs_for(ferry, "public.slow_items")[0]
    assert final.job_id == job.job_id
    assert final.state == "CANCELLED", (final, text[-3000:])
    assert f"cancelled ferry job {job.job_id}" in text
    assert int(pg.psql("dst", "select count(*) from public.slow_items")) < ITEMS


def test_the_triggerer_cancels_the_job_on_user_kill_but_not_on_shutdown(pg, ferry, airflow_env):
    """Airflow 3.3's triggerer: a user kill (mark failed, clear) cancels the trigger with
    its user-action message and calls on_kill; a triggerer shutdown cancels it plainly."""
    os.environ.update(airflow_env)
    from airflow.jobs import triggerer_job_runner as tj
    from ferry_client import Client

    from ferry_airflow.triggers import FerryJobTrigger

    async def run_and_cancel(job_id, message):
        runner = tj.TriggerRunner()
        trigger = FerryJobTrigger(job_id)
        task = asyncio.create_task(runner.run_trigger(1, trigger))
        runner.triggers[1] = {"task": task, "name": "ferry", "events": 0, "is_watcher": False}
        await asyncio.sleep(2)
        assert not task.done(), task
        if message is None:
            task.cancel()  # triggerer shutdown or hand-over
        else:
            runner.to_cancel.append(1)
            await runner.cancel_triggers()
        with pytest.raises(asyncio.CancelledError):
            await task

    c = Client(ferry.url)
    for table, user_kill in (("public.slow_shutdown", False), ("public.slow_kill", True)):
        slow_target(pg, table)
        job = c.submit(source="src", query="select * from items", target="dst", table=table,
                       chunk_size=10_000, min_rows_for_parallel=1_000)
        wait_running(ferry, table)
        asyncio.run(run_and_cancel(job.job_id, tj._USER_ACTION_CANCEL_MSG if user_kill else None))
        state = c.get(job.job_id).state
        if user_kill:
            assert state == "CANCELLED"
        else:
            assert state == "RUNNING", "a triggerer restart must not cancel the job"
            c.cancel(job.job_id)
