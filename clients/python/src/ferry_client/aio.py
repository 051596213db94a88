"""The asyncio client: ``ferry_client.aio.Client``, the same API as the sync one on ``grpc.aio``."""

from __future__ import annotations

import asyncio
import time
from typing import Any, AsyncIterator, List, Optional

import grpc
from grpc import aio

from ._common import TlsArg, Target, build_request, call_metadata, channel_credentials, parse_url
from ._proto import jobs_pb2, jobs_pb2_grpc
from .client import FAILOVER_CODES, OUTAGE_LIMIT_S, REOPEN_DELAY_S
from .errors import FerryError, JobFailed
from .job import ChunkCheck, Job, Rejects, checks_from_proto, rejects_from_proto

__all__ = ["Client"]


class Client:
    """Talks to Ferry's JobService from asyncio code; see ``ferry_client.Client`` for the arguments.

    Use it as ``async with Client(url) as c:`` or call ``await c.close()``.
    """

    def __init__(
        self,
        url: str,
        token: Optional[str] = None,
        tls: TlsArg = None,
        *,
        timeout: Optional[float] = 30.0,
    ) -> None:
        self._targets = parse_url(url, tls)
        self._tls = tls
        self._metadata = call_metadata(token)
        self._timeout = timeout
        self._index = 0
        self._channel: Optional[aio.Channel] = None
        self._stub: Optional[jobs_pb2_grpc.JobServiceStub] = None

    def _open(self, target: Target) -> aio.Channel:
        if target.tls:
            return aio.secure_channel(target.address, channel_credentials(self._tls))
        return aio.insecure_channel(target.address)

    def _jobs(self) -> jobs_pb2_grpc.JobServiceStub:
        if self._stub is None:
            self._channel = self._open(self._targets[self._index])
            self._stub = jobs_pb2_grpc.JobServiceStub(self._channel)
        return self._stub

    async def _rotate(self) -> None:
        await self.close()
        self._index = (self._index + 1) % len(self._targets)

    async def _call(self, method: str, request: Any, timeout: Optional[float] = -1.0) -> Any:
        timeout = self._timeout if timeout == -1.0 else timeout
        for attempt in range(len(self._targets)):
            try:
                return await getattr(self._jobs(), method)(request, timeout=timeout, metadata=self._metadata)
            except aio.AioRpcError as e:
                if e.code() in FAILOVER_CODES and attempt + 1 < len(self._targets):
                    await self._rotate()
                    continue
                raise FerryError.from_rpc_error(e) from None
        raise AssertionError("unreachable")

    async def close(self) -> None:
        """Closes the connection (the client reconnects on its next call)."""
        if self._channel is not None:
            await self._channel.close()
        self._channel, self._stub = None, None

    async def __aenter__(self) -> "Client":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def submit(
        self,
        source: str,
        query: str,
        target: str,
        table: str,
        request_id: Optional[str] = None,
        **options: Any,
    ) -> Job:
        """Submits a job and returns it; the same ``request_id`` again returns the same job."""
        request = build_request(source, query, target, table, request_id, options)
        resp = await self._call("SubmitJob", request)
        job = await self._call("GetJob", jobs_pb2.GetJobRequest(job_id=resp.job_id))
        return Job.from_proto(job, created=resp.created)

    async def get(self, job_id: str) -> Job:
        """The job as it stands."""
        return Job.from_proto(await self._call("GetJob", jobs_pb2.GetJobRequest(job_id=job_id)))

    async def jobs(self, limit: int = 0) -> List[Job]:
        """Jobs, newest first (0: all)."""
        resp = await self._call("ListJobs", jobs_pb2.ListJobsRequest(limit=limit))
        return [Job.from_proto(j) for j in resp.jobs]

    async def cancel(self, job_id: str) -> Job:
        """Cancels a job: no chunk starts, chunks in flight roll back."""
        return Job.from_proto(await self._call("CancelJob", jobs_pb2.CancelJobRequest(job_id=job_id)))

    async def resume(self, job_id: str) -> Job:
        """Runs again the chunks of a FAILED or CANCELLED job that did not land."""
        return Job.from_proto(await self._call("ResumeJob", jobs_pb2.ResumeJobRequest(job_id=job_id)))

    async def rejects(self, job_id: str, limit: int = 0) -> Rejects:
        """Rows the target refused (0: up to 1000) and their total."""
        req = jobs_pb2.ListRejectsRequest(job_id=job_id, limit=limit)
        return rejects_from_proto(await self._call("ListRejects", req))

    async def verify(self, job_id: str) -> List[ChunkCheck]:
        """Compares each chunk's rows in source and target."""
        req = jobs_pb2.VerifyJobRequest(job_id=job_id)
        return checks_from_proto(await self._call("VerifyJob", req, timeout=None))

    async def repair(self, job_id: str, chunks: Optional[List[int]] = None) -> Job:
        """Copies again the given chunks, or those verify finds differing."""
        req = jobs_pb2.RepairJobRequest(job_id=job_id, chunks=chunks or [])
        return Job.from_proto(await self._call("RepairJob", req, timeout=None))

    async def watch(self, job_id: str, timeout: Optional[float] = None) -> AsyncIterator[Job]:
        """Yields the job now and at each change; the last one is terminal (re-opens lost streams)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        outage_since: Optional[float] = None
        while True:
            remaining = None if deadline is None else max(deadline - time.monotonic(), 0.0)
            call = self._jobs().WatchJob(
                jobs_pb2.WatchJobRequest(job_id=job_id), timeout=remaining, metadata=self._metadata
            )
            try:
                async for event in call:
                    outage_since = None
                    job = Job.from_proto(event.job)
                    yield job
                    if job.done:
                        return
            except aio.AioRpcError as e:
                if e.code() == grpc.StatusCode.DEADLINE_EXCEEDED and deadline is not None:
                    raise TimeoutError(f"job {job_id} did not end within {timeout} s") from None
                now = time.monotonic()
                outage_since = outage_since or now
                if e.code() not in FAILOVER_CODES or now - outage_since > OUTAGE_LIMIT_S:
                    raise FerryError.from_rpc_error(e) from None
                await self._rotate()
                await asyncio.sleep(REOPEN_DELAY_S)
            finally:
                call.cancel()

    async def wait(self, job_id: str, timeout: Optional[float] = None) -> Job:
        """Follows the job to its end; returns it when SUCCEEDED, raises JobFailed or TimeoutError."""
        last = None
        async for last in self.watch(job_id, timeout=timeout):
            pass
        if last is None or not last.succeeded:
            raise JobFailed(last if last is not None else await self.get(job_id))
        return last
