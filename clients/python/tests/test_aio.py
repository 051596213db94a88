"""ferry_client.aio.Client (grpc.aio) against the real cluster."""

import asyncio

import grpc
import pytest

from conftest import ITEMS
from ferry_client import FerryError, JobFailed
from ferry_client.aio import Client


def test_async_submit_watch_wait(ferry, pg, target):
    async def main():
        async with Client(ferry.url) as c:
            job = await c.submit(source="src", query="select * from items", target="dst", table=target,
                                 request_id=f"aio-{target}", mode="append")
            again = await c.submit(source="src", query="select * from items", target="dst", table=target,
                                   request_id=f"aio-{target}")
            assert again.job_id == job.job_id and again.created is False
            states = [j.state async for j in c.watch(job.job_id, timeout=120)]
            assert states[-1] == "SUCCEEDED"
            done = await c.wait(job.job_id, timeout=30)
            assert done.rows_written == ITEMS
            with pytest.raises(FerryError) as e:
                await c.submit(source="src", query="select 1", target="dst", table=target, max_workers=0)
            assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT
            assert e.value.field == "spec.max_workers"
            bad = await c.submit(source="src", query="select * from nope", target="dst", table=target)
            with pytest.raises(JobFailed):
                await c.wait(bad.job_id, timeout=120)

    asyncio.run(main())
    assert pg.signature("dst", target) == pg.signature("src", "items")
