"""What the sync and asyncio clients share: addresses, credentials, job specs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import grpc

from ._proto import jobs_pb2

#: ``tls`` argument: None (plain, unless the URL says https), True (system roots) or a CA PEM path.
TlsArg = Union[None, bool, str, Path]

# Keyword options of submit(): the JobSpec fields besides the four required ones.
_SPEC_OPTIONS = (
    "columns",
    "key_column",
    "chunk_size",
    "max_workers",
    "min_rows_for_parallel",
    "retry",
    "mode",
    "parallel",
    "upsert_key",
    "max_failed_rows",
    "max_failed_ratio",
)
_RETRY_FIELDS = ("enabled", "max_retries", "initial_delay_ms", "max_delay_ms")


@dataclass(frozen=True)
class Target:
    """One coordinator address and whether it speaks TLS."""

    address: str
    tls: bool


def parse_url(url: str, tls: TlsArg) -> List[Target]:
    """Parses ``host:port``, ``http://host:port`` or ``https://host:port`` (comma-separated for several coordinators)."""
    targets = []
    for part in (p.strip() for p in url.split(",")):
        if not part:
            continue
        secure = tls not in (None, False)
        if part.startswith("https://"):
            part, secure = part[len("https://"):], True
        elif part.startswith("http://"):
            part = part[len("http://"):]
            if secure:
                raise ValueError(f"{url!r} says http:// but tls= asks for TLS: use https:// or drop tls=")
        part = part.rstrip("/")
        if not part or "/" in part:
            raise ValueError(f"invalid coordinator address {url!r}: expected host:port, http://host:port or https://host:port")
        targets.append(Target(part, secure))
    if not targets:
        raise ValueError("no coordinator address given: pass host:port, http://host:port or https://host:port")
    return targets


def channel_credentials(tls: TlsArg) -> grpc.ChannelCredentials:
    """TLS credentials: system roots for True/https, else the CA PEM file at ``tls``."""
    if tls in (None, True):
        return grpc.ssl_channel_credentials()
    path = Path(tls)  # type: ignore[arg-type]
    try:
        return grpc.ssl_channel_credentials(root_certificates=path.read_bytes())
    except OSError as e:
        raise ValueError(f"cannot read the CA certificate {path}: {e.strerror}") from e


def call_metadata(token: Optional[str]) -> Tuple[Tuple[str, str], ...]:
    """Metadata sent with every call: the bearer token, when there is one."""
    return (("authorization", f"Bearer {token}"),) if token else ()


def _mode(value: Any) -> int:
    if isinstance(value, int):
        return value
    name = str(value).upper()
    if not name.startswith("WRITE_MODE_"):
        name = "WRITE_MODE_" + name
    try:
        return jobs_pb2.WriteMode.Value(name)
    except ValueError:
        modes = ", ".join(n[len("WRITE_MODE_"):].lower() for n in jobs_pb2.WriteMode.keys()[1:])
        raise ValueError(f"unknown mode {value!r}: use one of {modes}") from None


def _retry(value: Any) -> "jobs_pb2.RetryPolicy":
    if isinstance(value, jobs_pb2.RetryPolicy):
        return value
    if not isinstance(value, dict):
        raise TypeError("retry= takes a dict with enabled, max_retries, initial_delay_ms, max_delay_ms")
    unknown = set(value) - set(_RETRY_FIELDS)
    if unknown:
        raise TypeError(f"unknown retry field(s) {sorted(unknown)}: use {', '.join(_RETRY_FIELDS)}")
    return jobs_pb2.RetryPolicy(**value)


def build_request(
    source: str,
    query: str,
    target: str,
    table: str,
    request_id: Optional[str],
    options: Dict[str, Any],
) -> "jobs_pb2.SubmitJobRequest":
    """A SubmitJobRequest from submit()'s arguments; keyword options are JobSpec field names."""
    unknown = set(options) - set(_SPEC_OPTIONS)
    if unknown:
        raise TypeError(f"unknown job option(s) {sorted(unknown)}: use {', '.join(_SPEC_OPTIONS)}")
    spec = jobs_pb2.JobSpec(source=source, query=query, target=target, table=table)
    for name, value in options.items():
        if value is None:
            continue
        if name == "mode":
            spec.mode = _mode(value)
        elif name == "retry":
            spec.retry.CopyFrom(_retry(value))
        elif name in ("columns", "upsert_key"):
            items: Sequence[str] = [value] if isinstance(value, str) else value
            getattr(spec, name).extend(items)
        else:
            setattr(spec, name, value)
    return jobs_pb2.SubmitJobRequest(request_id=request_id or "", spec=spec)
