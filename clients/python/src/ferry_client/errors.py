"""Exceptions raised by ferry_client: RPC failures and jobs that did not succeed."""

from __future__ import annotations

from typing import TYPE_CHECKING, Dict, Optional

import grpc

if TYPE_CHECKING:
    from .job import Job

# Trailer that carries google.rpc.Status with the rich error details.
_DETAILS_KEY = "grpc-status-details-bin"


class Error(Exception):
    """Base class of every exception ferry_client raises."""


class FerryError(Error):
    """A call to the coordinator failed.

    ``code`` is the gRPC status code (``grpc.StatusCode``); ``reason`` the
    coordinator's stable reason (``google.rpc.ErrorInfo.reason``, such as
    ``"INVALID_VALUE"`` or ``"JOB_NOT_FOUND"``); ``field`` the request field at
    fault (``"spec.chunk_size"``) when the coordinator names one; ``message``
    the coordinator's explanation.
    """

    def __init__(
        self,
        code: grpc.StatusCode,
        message: str,
        reason: Optional[str] = None,
        field: Optional[str] = None,
        metadata: Optional[Dict[str, str]] = None,
    ) -> None:
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message
        self.reason = reason
        self.field = field
        self.metadata: Dict[str, str] = dict(metadata or {})

    @classmethod
    def from_rpc_error(cls, error: grpc.RpcError, trailers=None) -> "FerryError":
        """Builds the exception from a grpc (or grpc.aio) error and its trailers."""
        code = error.code() if callable(getattr(error, "code", None)) else grpc.StatusCode.UNKNOWN
        details = error.details() if callable(getattr(error, "details", None)) else str(error)
        if trailers is None and callable(getattr(error, "trailing_metadata", None)):
            trailers = error.trailing_metadata()
        reason, field, metadata = _rich_details(trailers)
        return cls(code or grpc.StatusCode.UNKNOWN, details or "", reason, field, metadata)


class JobFailed(Error):
    """A job ended FAILED or CANCELLED; ``job`` is its last state."""

    def __init__(self, job: "Job") -> None:
        super().__init__(f"job {job.job_id} {job.state}: {job.error or 'no error recorded'}")
        self.job = job


def _rich_details(trailers) -> tuple:
    """(reason, field, metadata) from the google.rpc.Status trailer, when present."""
    from google.rpc import error_details_pb2, status_pb2

    raw = None
    for key, value in trailers or ():
        if key == _DETAILS_KEY:
            raw = value
    if not raw:
        return None, None, {}
    status = status_pb2.Status.FromString(raw)
    reason, field, metadata = None, None, {}
    for any_detail in status.details:
        info = error_details_pb2.ErrorInfo()
        bad = error_details_pb2.BadRequest()
        if any_detail.Is(info.DESCRIPTOR):
            any_detail.Unpack(info)
            reason = info.reason
            metadata = dict(info.metadata)
            field = field or metadata.get("field")
        elif any_detail.Is(bad.DESCRIPTOR):
            any_detail.Unpack(bad)
            if bad.field_violations:
                field = bad.field_violations[0].field
    return reason, field, metadata
