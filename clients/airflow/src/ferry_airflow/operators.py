"""FerryTransferOperator: submits a Ferry job and waits for it, deferred by default."""

from __future__ import annotations

from typing import Any, Dict, Optional, Sequence

from airflow.exceptions import AirflowException
from airflow.sdk import Asset, BaseOperator, Context

from ferry_client import JobFailed

from .hooks import FerryHook
from .triggers import FerryJobTrigger, job_payload


def request_id_for(context: Context) -> str:
    """``airflow:<dag>:<task>:<run>:<map index>``: the same for every try of one task
    instance, so a retried or cleared task re-attaches to its job instead of copying again."""
    ti = context["ti"]
    return f"airflow:{ti.dag_id}:{ti.task_id}:{ti.run_id}:{ti.map_index}"


def target_asset(target: str, table: str) -> Asset:
    """The Airflow asset of a target table (``ferry://<connection>/<schema.table>``)."""
    return Asset(uri=f"ferry://{target}/{table}", name=f"ferry.{target}.{table}")


def source_asset(source: str) -> Asset:
    """The Airflow asset of a source connection (``ferry://<connection>``)."""
    return Asset(uri=f"ferry://{source}", name=f"ferry.{source}")


class FerryTransferOperator(BaseOperator):
    """Copies the rows of ``query`` on connection ``source`` into ``table`` on ``target``.

    Submits with a request id made of dag id, task id, run id and map index
    (never the try number): a retried or cleared task re-attaches to the job
    of its earlier try; a job of an earlier try that FAILED or was CANCELLED is
    resumed (only the chunks that did not land run again). With
    ``deferrable=True`` (the default) the task then frees its worker slot and
    a ``FerryJobTrigger`` follows the job. Returns (to XCom) the job id, state,
    ``rows_written`` and ``rows_rejected``. Killing the task cancels the job,
    deferred or not. ``job_options`` are JobSpec fields (``chunk_size``,
    ``max_workers``, ``mode``, ``upsert_key``, …). The target table is an
    outlet asset and the source connection an inlet, for Airflow's lineage.
    """

    template_fields: Sequence[str] = ("source", "query", "target", "table", "request_id")
    template_ext: Sequence[str] = (".sql",)
    ui_color = "#cfe8ff"

    def __init__(
        self,
        *,
        source: str,
        query: str,
        target: str,
        table: str,
        ferry_conn_id: str = FerryHook.default_conn_name,
        request_id: Optional[str] = None,
        job_options: Optional[Dict[str, Any]] = None,
        deferrable: bool = True,
        timeout: Optional[float] = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("inlets", [source_asset(source)])
        kwargs.setdefault("outlets", [target_asset(target, table)])
        super().__init__(**kwargs)
        self.source = source
        self.query = query
        self.target = target
        self.table = table
        self.ferry_conn_id = ferry_conn_id
        self.request_id = request_id
        self.job_options = dict(job_options or {})
        self.deferrable = deferrable
        self.timeout = timeout
        self.job_id: Optional[str] = None

    def execute(self, context: Context) -> Dict[str, Any]:
        client = FerryHook(self.ferry_conn_id).get_client()
        request_id = self.request_id or request_id_for(context)
        job = client.submit(source=self.source, query=self.query, target=self.target, table=self.table,
                            request_id=request_id, **self.job_options)
        self.job_id = job.job_id
        if job.created:
            self.log.info("submitted ferry job %s (request id %s)", job.job_id, request_id)
        else:
            self.log.info("re-attached to ferry job %s of an earlier try (request id %s), now %s",
                          job.job_id, request_id, job.state)
            if job.state in ("FAILED", "CANCELLED"):
                job = client.resume(job.job_id)
                self.log.info("resumed ferry job %s: the chunks that did not land run again", job.job_id)
        context["ti"].xcom_push(key="job_id", value=job.job_id)
        if job.done:
            return self._finish(job_payload(job))
        if self.deferrable:
            self.defer(
                trigger=FerryJobTrigger(job.job_id, self.ferry_conn_id, self.timeout),
                method_name="execute_complete",
            )
        try:
            done = client.wait(job.job_id, timeout=self.timeout)
        except JobFailed as e:
            return self._finish(job_payload(e.job))
        return self._finish(job_payload(done))

    def execute_complete(self, context: Context, event: Dict[str, Any]) -> Dict[str, Any]:
        """Resumes the task after the trigger fired."""
        self.job_id = event.get("job", {}).get("job_id")
        if event.get("status") == "error":
            raise AirflowException(f"ferry job {self.job_id}: {event.get('message')}")
        return self._finish(event["job"])

    def _finish(self, job: Dict[str, Any]) -> Dict[str, Any]:
        if job["state"] != "SUCCEEDED":
            raise AirflowException(f"ferry job {job['job_id']} {job['state']}: {job.get('error') or 'no error recorded'}")
        self.log.info("ferry job %s SUCCEEDED: %s rows written, %s rejected",
                      job["job_id"], job["rows_written"], job["rows_rejected"])
        return job

    def on_kill(self) -> None:
        """Cancels the job when the task is killed while it runs on a worker."""
        if self.job_id:
            job = FerryHook(self.ferry_conn_id).get_client().cancel(self.job_id)
            self.log.warning("task killed: cancelled ferry job %s (%s)", self.job_id, job.state)


__all__ = ["FerryTransferOperator", "request_id_for", "source_asset", "target_asset"]
