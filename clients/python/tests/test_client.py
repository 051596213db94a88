"""ferry_client.Client against a real coordinator, worker and PostgreSQL."""

import uuid

import grpc
import pytest

from conftest import ITEMS, SPLIT
from ferry_client import Client, FerryError, JobFailed


def rid() -> str:
    return f"test-{uuid.uuid4()}"


def test_submit_and_wait_copy_every_row(ferry, pg, target):
    c = Client(ferry.url)
    job = c.submit(source="src", query="select * from items", target="dst", table=target,
                   request_id=rid(), **SPLIT)
    assert job.created is True
    assert job.spec["chunk_size"] == "10000"
    done = c.wait(job.job_id, timeout=120)
    assert done.state == "SUCCEEDED"
    assert done.rows_written == ITEMS
    assert done.rows_rejected == 0
    assert done.chunks_total >= 6
    assert pg.signature("dst", target) == pg.signature("src", "items")
    assert c.get(job.job_id).state == "SUCCEEDED"
    assert job.job_id in [j.job_id for j in c.jobs()]


def test_same_request_id_returns_the_same_job_and_rows_land_once(ferry, pg, target):
    c = Client(ferry.url)
    key = rid()
    first = c.submit(source="src", query="select * from items", target="dst", table=target, request_id=key)
    again = c.submit(source="src", query="select * from items", target="dst", table=target, request_id=key)
    assert again.job_id == first.job_id
    assert (first.created, again.created) == (True, False)
    c.wait(first.job_id, timeout=120)
    assert pg.psql("dst", f"select count(*) from {target}") == str(ITEMS)


def test_submits_under_short_deadlines_then_a_retry_make_one_job(ferry, pg, target):
    """SubmitJob under deadlines too short to meet fails with DEADLINE_EXCEEDED (or, when
    the coordinator was quicker, succeeds: which one depends on the machine's speed, so
    the test does not count them); either way the retry with the same request_id finds
    the one job, and its rows land once. (The coordinator side of a deadline expiring
    mid-submit, deterministically: coordinator/tests/submit_deadline.rs.)"""
    key = rid()
    for timeout in (0.0001, 0.001, 0.003, 0.01):
        try:
            Client(ferry.url, timeout=timeout).submit(
                source="src", query="select * from items", target="dst", table=target, request_id=key)
        except FerryError as e:
            assert e.code == grpc.StatusCode.DEADLINE_EXCEEDED, e
    c = Client(ferry.url)
    job = c.submit(source="src", query="select * from items", target="dst", table=target, request_id=key)
    assert c.wait(job.job_id, timeout=120).rows_written == ITEMS
    assert pg.psql("dst", f"select count(*) from {target}") == str(ITEMS)
    assert sum(1 for j in c.jobs() if j.spec.get("table") == target) == 1


def test_invalid_argument_names_the_field_and_a_stable_reason(ferry, target):
    with pytest.raises(FerryError) as e:
        Client(ferry.url).submit(source="src", query="select * from items", target="dst",
                                 table=target, chunk_size=0)
    assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert e.value.field == "spec.chunk_size"
    assert e.value.reason == "INVALID_VALUE"
    assert "chunk_size" in e.value.message
    with pytest.raises(FerryError) as e:
        Client(ferry.url).submit(source="nosuch", query="select 1", target="dst", table=target)
    assert (e.value.field, e.value.reason) == ("spec.source", "UNKNOWN_CONNECTION")


def test_unknown_job_is_not_found(ferry):
    with pytest.raises(FerryError) as e:
        Client(ferry.url).get("jnosuchjob")
    assert e.value.code == grpc.StatusCode.NOT_FOUND
    assert e.value.reason == "JOB_NOT_FOUND"


def test_a_failed_job_raises_job_failed_with_the_job(ferry, target):
    c = Client(ferry.url)
    job = c.submit(source="src", query="select * from no_such_table", target="dst", table=target)
    with pytest.raises(JobFailed) as e:
        c.wait(job.job_id, timeout=120)
    assert e.value.job.job_id == job.job_id
    assert e.value.job.state == "FAILED"
    assert "no_such_table" in e.value.job.error


def test_resume_of_a_running_job_is_a_failed_precondition(ferry, pg, target):
    c = Client(ferry.url)
    job = c.submit(source="src", query="select * from items", target="dst", table=target)
    c.wait(job.job_id, timeout=120)
    with pytest.raises(FerryError) as e:
        c.resume(job.job_id)
    assert e.value.code == grpc.StatusCode.FAILED_PRECONDITION
    assert (e.value.reason, e.value.field) == ("JOB_STATE", "job_id")


def test_cancel_stops_a_running_job(ferry, pg, target):
    # every row waits 2 ms in the target: the job runs for seconds
    pg.psql("dst", "create or replace function slow_row() returns trigger language plpgsql as "
                   "$$ begin perform pg_sleep(0.002); return new; end $$")
    pg.psql("dst", f"create trigger slow before insert on {target} for each row execute function slow_row()")
    c = Client(ferry.url)
    job = c.submit(source="src", query="select * from items", target="dst", table=target, **SPLIT)
    for seen in c.watch(job.job_id, timeout=120):
        if seen.state == "RUNNING":
            break
    assert c.cancel(job.job_id).state == "CANCELLED"
    with pytest.raises(JobFailed) as e:
        c.wait(job.job_id, timeout=120)
    assert e.value.job.state == "CANCELLED"
    assert int(pg.psql("dst", f"select count(*) from {target}")) < ITEMS


def test_watch_after_the_end_gives_the_end(ferry, target):
    """A client that re-opens WatchJob after the job ended still gets the terminal state."""
    c = Client(ferry.url)
    job = c.submit(source="src", query="select * from items where id <= 100", target="dst", table=target)
    events = list(c.watch(job.job_id, timeout=120))
    assert events[-1].state == "SUCCEEDED"
    assert [e.state for e in events if e.done] == ["SUCCEEDED"]
    again = list(c.watch(job.job_id, timeout=30))
    assert [e.state for e in again] == ["SUCCEEDED"]
    assert again[0].rows_written == 100


def test_verify_and_rejects(ferry, pg, target):
    c = Client(ferry.url)
    job = c.submit(source="src", query="select * from items", target="dst", table=target, **SPLIT)
    c.wait(job.job_id, timeout=120)
    checks = c.verify(job.job_id)
    assert len(checks) >= 6 and all(ch.matches for ch in checks)
    assert sum(ch.source_rows for ch in checks) == ITEMS
    assert c.rejects(job.job_id).total == 0


def test_options_are_checked_before_sending(ferry, target):
    c = Client(ferry.url)
    with pytest.raises(TypeError, match="chunk_sise"):
        c.submit(source="src", query="select 1", target="dst", table=target, chunk_sise=5)
    with pytest.raises(ValueError, match="append"):
        c.submit(source="src", query="select 1", target="dst", table=target, mode="sideways")
    with pytest.raises(ValueError):
        Client("ftp://x:1")
