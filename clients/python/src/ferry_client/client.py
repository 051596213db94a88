"""The synchronous client: ``ferry_client.Client``."""

from __future__ import annotations

import time
from typing import Any, Iterator, List, Optional

import grpc

from ._common import TlsArg, Target, build_request, call_metadata, channel_credentials, parse_url
from ._proto import jobs_pb2, jobs_pb2_grpc
from .errors import FerryError, JobFailed
from .job import ChunkCheck, Job, Rejects, checks_from_proto, rejects_from_proto

#: Codes after which a call moves to the next coordinator (down, or not the leader).
FAILOVER_CODES = frozenset({grpc.StatusCode.UNAVAILABLE})
#: How long watch() and wait() keep re-opening a stream while no coordinator answers.
OUTAGE_LIMIT_S = 60.0
#: Pause between re-opening attempts.
REOPEN_DELAY_S = 1.0


class Client:
    """Talks to Ferry's JobService.

    ``url`` is ``host:port``, ``http://host:port`` or ``https://host:port``
    (comma-separated for several coordinators: calls move to the next one when
    one is down or not the leader). ``token`` is sent as a bearer token.
    ``tls`` is None (plain unless the URL says https), True (system roots) or
    the path of a CA PEM file. ``timeout`` (seconds) bounds each unary call.
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
        self._channel: Optional[grpc.Channel] = None
        self._stub: Optional[jobs_pb2_grpc.JobServiceStub] = None

    def _open(self, target: Target) -> grpc.Channel:
        if target.tls:
            return grpc.secure_channel(target.address, channel_credentials(self._tls))
        return grpc.insecure_channel(target.address)

    def _jobs(self) -> jobs_pb2_grpc.JobServiceStub:
        if self._stub is None:
            self._channel = self._open(self._targets[self._index])
            self._stub = jobs_pb2_grpc.JobServiceStub(self._channel)
        return self._stub

    def _rotate(self) -> None:
        self.close()
        self._index = (self._index + 1) % len(self._targets)

    def _call(self, method: str, request: Any, timeout: Optional[float] = -1.0) -> Any:
        timeout = self._timeout if timeout == -1.0 else timeout
        for attempt in range(len(self._targets)):
            try:
                return getattr(self._jobs(), method)(request, timeout=timeout, metadata=self._metadata)
            except grpc.RpcError as e:
                if e.code() in FAILOVER_CODES and attempt + 1 < len(self._targets):
                    self._rotate()
                    continue
                raise FerryError.from_rpc_error(e) from None
        raise AssertionError("unreachable")

    def close(self) -> None:
        """Closes the connection (the client reconnects on its next call)."""
        if self._channel is not None:
            self._channel.close()
        self._channel, self._stub = None, None

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def submit(
        self,
        source: str,
        query: str,
        target: str,
        table: str,
        request_id: Optional[str] = None,
        **options: Any,
    ) -> Job:
        """Submits a job and returns it; the same ``request_id`` again returns the same job.

        Keyword options are JobSpec field names: ``chunk_size``, ``max_workers``,
        ``mode`` (``"append"``, ``"truncate"``, ``"upsert"``, ``"replace"``),
        ``upsert_key``, ``columns``, ``key_column``, ``min_rows_for_parallel``,
        ``parallel``, ``max_failed_rows``, ``max_failed_ratio``, ``retry``
        (a dict of RetryPolicy fields).
        """
        request = build_request(source, query, target, table, request_id, options)
        resp = self._call("SubmitJob", request)
        job = self._call("GetJob", jobs_pb2.GetJobRequest(job_id=resp.job_id))
        return Job.from_proto(job, created=resp.created)

    def get(self, job_id: str) -> Job:
        """The job as it stands."""
        return Job.from_proto(self._call("GetJob", jobs_pb2.GetJobRequest(job_id=job_id)))

    def jobs(self, limit: int = 0) -> List[Job]:
        """Jobs, newest first (0: all)."""
        resp = self._call("ListJobs", jobs_pb2.ListJobsRequest(limit=limit))
        return [Job.from_proto(j) for j in resp.jobs]

    def cancel(self, job_id: str) -> Job:
        """Cancels a job: no chunk starts, chunks in flight roll back."""
        return Job.from_proto(self._call("CancelJob", jobs_pb2.CancelJobRequest(job_id=job_id)))

    def resume(self, job_id: str) -> Job:
        """Runs again the chunks of a FAILED or CANCELLED job that did not land."""
        return Job.from_proto(self._call("ResumeJob", jobs_pb2.ResumeJobRequest(job_id=job_id)))

    def rejects(self, job_id: str, limit: int = 0) -> Rejects:
        """Rows the target refused (0: up to 1000) and their total."""
        req = jobs_pb2.ListRejectsRequest(job_id=job_id, limit=limit)
        return rejects_from_proto(self._call("ListRejects", req))

    def verify(self, job_id: str) -> List[ChunkCheck]:
        """Compares each chunk's rows in source and target (no call timeout: it scans both)."""
        req = jobs_pb2.VerifyJobRequest(job_id=job_id)
        return checks_from_proto(self._call("VerifyJob", req, timeout=None))

    def repair(self, job_id: str, chunks: Optional[List[int]] = None) -> Job:
        """Copies again the given chunks, or those verify finds differing."""
        req = jobs_pb2.RepairJobRequest(job_id=job_id, chunks=chunks or [])
        return Job.from_proto(self._call("RepairJob", req, timeout=None))

    def watch(self, job_id: str, timeout: Optional[float] = None) -> Iterator[Job]:
        """Yields the job now and at each change; the last one is terminal.

        A lost stream (coordinator restart, failover) is re-opened: each stream
        starts with the current state, so the end is never missed.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        outage_since: Optional[float] = None
        while True:
            remaining = None if deadline is None else max(deadline - time.monotonic(), 0.0)
            stream = self._jobs().WatchJob(
                jobs_pb2.WatchJobRequest(job_id=job_id), timeout=remaining, metadata=self._metadata
            )
            try:
                for event in stream:
                    outage_since = None
                    job = Job.from_proto(event.job)
                    yield job
                    if job.done:
                        return
            except grpc.RpcError as e:
                if e.code() == grpc.StatusCode.DEADLINE_EXCEEDED and deadline is not None:
                    raise TimeoutError(f"job {job_id} did not end within {timeout} s") from None
                now = time.monotonic()
                outage_since = outage_since or now
                if e.code() not in FAILOVER_CODES or now - outage_since > OUTAGE_LIMIT_S:
                    raise FerryError.from_rpc_error(e) from None
                self._rotate()
                time.sleep(REOPEN_DELAY_S)
            finally:
                stream.cancel()

    def wait(self, job_id: str, timeout: Optional[float] = None) -> Job:
        """Follows the job to its end; returns it when SUCCEEDED.

        Raises JobFailed (with ``.job``) when it ends FAILED or CANCELLED, and
        TimeoutError when ``timeout`` seconds pass first.
        """
        last = None
        for last in self.watch(job_id, timeout=timeout):
            pass
        if last is None or not last.succeeded:
            raise JobFailed(last if last is not None else self.get(job_id))
        return last
