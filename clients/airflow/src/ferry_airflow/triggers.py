"""FerryJobTrigger: follows a Ferry job on the triggerer with grpc.aio until it ends."""

from __future__ import annotations

from typing import Any, AsyncIterator, Dict, Optional, Tuple

from airflow.triggers.base import BaseTrigger, TriggerEvent

from ferry_client import FerryError, Job

from .hooks import FerryHook


def job_payload(job: Job) -> Dict[str, Any]:
    """What a trigger event and the task's XCom carry about a job."""
    return {
        "job_id": job.job_id,
        "state": job.state,
        "rows_written": job.rows_written,
        "rows_rejected": job.rows_rejected,
        "chunks_total": job.chunks_total,
        "error": job.error,
    }


class FerryJobTrigger(BaseTrigger):
    """Fires once the job ends: ``{"status": "success"|"failed"|"error", "job": {...}}``.

    While it waits no worker slot is held. When a user kills the deferred task
    (mark failed, clear, mark success), the triggerer calls ``on_kill`` and the
    job is cancelled; a triggerer restart or hand-over does not cancel it.
    """

    def __init__(self, job_id: str, ferry_conn_id: str = FerryHook.default_conn_name,
                 timeout: Optional[float] = None) -> None:
        super().__init__()
        self.job_id = job_id
        self.ferry_conn_id = ferry_conn_id
        self.timeout = timeout

    def serialize(self) -> Tuple[str, Dict[str, Any]]:
        return (
            "ferry_airflow.triggers.FerryJobTrigger",
            {"job_id": self.job_id, "ferry_conn_id": self.ferry_conn_id, "timeout": self.timeout},
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        client = await FerryHook(self.ferry_conn_id).get_async_client()
        try:
            last: Optional[Job] = None
            async for last in client.watch(self.job_id, timeout=self.timeout):
                self.log.info("ferry job %s %s: %s rows, %s/%s chunks", last.job_id, last.state,
                              last.rows_written, last.chunks_succeeded, last.chunks_total)
            assert last is not None  # a watch ends only after a terminal state
            status = "success" if last.succeeded else "failed"
            yield TriggerEvent({"status": status, "job": job_payload(last)})
        except (FerryError, TimeoutError) as e:
            yield TriggerEvent({"status": "error", "job": {"job_id": self.job_id}, "message": str(e)})
        finally:
            await client.close()

    async def on_kill(self) -> None:
        """Cancels the job (Airflow >= 3.3 calls this only when a user kills the task)."""
        client = await FerryHook(self.ferry_conn_id).get_async_client()
        try:
            job = await client.cancel(self.job_id)
            self.log.warning("task killed: cancelled ferry job %s (%s)", self.job_id, job.state)
        finally:
            await client.close()
