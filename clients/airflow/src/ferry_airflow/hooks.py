"""FerryHook: the coordinator's address and token from an Airflow connection."""

from __future__ import annotations

from typing import Any, Optional, Tuple, Union

from airflow.sdk import BaseHook

import ferry_client
import ferry_client.aio


def settings_of(conn) -> Tuple[str, Optional[str], Union[None, bool, str]]:
    """(url, token, tls) of a connection of type ferry.

    ``host``/``port`` name the coordinator (``schema`` "https" or extra ``tls``
    for TLS); extra ``url`` may instead give ``http://…``/``https://…`` or a
    comma-separated list; the token is the password (or extra ``token``); extra
    ``tls`` is ``true`` (system roots) or the path of a CA PEM file.
    """
    extra = conn.extra_dejson or {}
    tls = extra.get("tls")
    if isinstance(tls, str) and tls.lower() in ("true", "false"):
        tls = tls.lower() == "true"
    url = extra.get("url")
    if not url:
        if not conn.host:
            raise ValueError(f"connection {conn.conn_id!r} names no coordinator: set its host and port or extra url")
        scheme = "https" if (conn.schema == "https" or tls) else "http"
        url = f"{scheme}://{conn.host}:{conn.port or 50051}"
    token = conn.password or extra.get("token") or None
    return url, token, (tls or None)


class FerryHook(BaseHook):
    """Opens ferry_client clients to the coordinator named by an Airflow connection."""

    conn_name_attr = "ferry_conn_id"
    default_conn_name = "ferry_default"
    conn_type = "ferry"
    hook_name = "Ferry"

    def __init__(self, ferry_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.ferry_conn_id = ferry_conn_id

    @classmethod
    def get_ui_field_behaviour(cls) -> dict:
        """How the connection form looks in the UI."""
        return {
            "hidden_fields": ["login"],
            "relabeling": {"password": "Token", "schema": "Scheme (http or https)"},
            "placeholders": {"host": "ferry-coordinator", "port": "50051", "extra": '{"tls": true}'},
        }

    def get_client(self) -> ferry_client.Client:
        """A synchronous client (for operators)."""
        url, token, tls = settings_of(self.get_connection(self.ferry_conn_id))
        return ferry_client.Client(url, token=token, tls=tls)

    async def get_async_client(self) -> ferry_client.aio.Client:
        """An asyncio client (for triggers)."""
        url, token, tls = settings_of(await self.aget_connection(self.ferry_conn_id))
        return ferry_client.aio.Client(url, token=token, tls=tls)
