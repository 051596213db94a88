"""Plain Python views of the API's messages: Job, Reject, ChunkCheck."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, List, Optional

from google.protobuf.json_format import MessageToDict

from ._proto import jobs_pb2

#: States after which a job never changes again.
TERMINAL_STATES = frozenset({"SUCCEEDED", "FAILED", "CANCELLED"})


def _enum_name(enum, value: int, prefix: str) -> str:
    try:
        return enum.Name(value)[len(prefix):]
    except ValueError:
        return "UNKNOWN"


@dataclass(frozen=True)
class Job:
    """A job and its progress; ``state`` is a string such as ``"SUCCEEDED"``."""

    job_id: str
    state: str
    rows_written: int
    rows_rejected: int
    error: str
    chunks_total: int = 0
    chunks_succeeded: int = 0
    chunks_failed: int = 0
    rows_estimated: int = 0
    retries: int = 0
    created_at_ms: int = 0
    started_at_ms: int = 0
    finished_at_ms: int = 0
    plan: str = ""
    #: The job spec with the coordinator's defaults filled in (proto JSON mapping, snake_case).
    spec: dict = field(default_factory=dict)
    #: Whether SubmitJob created this job (False: its request_id named an earlier one); None outside submit.
    created: Optional[bool] = None
    #: The message as received (``ferry_client._proto.jobs_pb2.Job``).
    raw: Any = field(default=None, repr=False, compare=False)

    @property
    def done(self) -> bool:
        """Whether the job has ended (SUCCEEDED, FAILED or CANCELLED)."""
        return self.state in TERMINAL_STATES

    @property
    def succeeded(self) -> bool:
        """Whether the job ended SUCCEEDED."""
        return self.state == "SUCCEEDED"

    @classmethod
    def from_proto(cls, msg: "jobs_pb2.Job", created: Optional[bool] = None) -> "Job":
        """Converts a ``ferry.v1.Job`` message."""
        return cls(
            job_id=msg.job_id,
            state=_enum_name(jobs_pb2.JobState, msg.state, "JOB_STATE_"),
            rows_written=msg.rows_written,
            rows_rejected=msg.rows_rejected,
            error=msg.error,
            chunks_total=msg.chunks_total,
            chunks_succeeded=msg.chunks_succeeded,
            chunks_failed=msg.chunks_failed,
            rows_estimated=msg.rows_estimated,
            retries=msg.retries,
            created_at_ms=msg.created_at_ms,
            started_at_ms=msg.started_at_ms,
            finished_at_ms=msg.finished_at_ms,
            plan=msg.plan,
            spec=MessageToDict(msg.spec, preserving_proto_field_name=True),
            created=created,
            raw=msg,
        )


@dataclass(frozen=True)
class Reject:
    """One row the target refused."""

    chunk_no: int
    key: str
    row: str
    sqlstate: str
    message: str


@dataclass(frozen=True)
class Rejects:
    """Refused rows of a job (at most the limit asked for) and how many there are in all."""

    rejects: List[Reject]
    total: int


@dataclass(frozen=True)
class ChunkCheck:
    """One chunk's comparison of source and target."""

    chunk_no: int
    range: str
    source_rows: int
    target_rows: int
    rejected_rows: int
    matches: bool


def rejects_from_proto(msg: "jobs_pb2.ListRejectsResponse") -> Rejects:
    """Converts a ``ListRejectsResponse``."""
    return Rejects(
        rejects=[Reject(r.chunk_no, r.key, r.row, r.sqlstate, r.message) for r in msg.rejects],
        total=msg.total,
    )


def checks_from_proto(msg: "jobs_pb2.VerifyJobResponse") -> List[ChunkCheck]:
    """Converts a ``VerifyJobResponse``."""
    return [
        ChunkCheck(c.chunk_no, c.range, c.source_rows, c.target_rows, c.rejected_rows, c.matches)
        for c in msg.chunks
    ]
