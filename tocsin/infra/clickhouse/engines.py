"""The clickhouse-connect clients behind a ``Store``: the embedded engine and a server's.

chdb hosts ONE engine (one data directory) per process, and a data directory can be open in
one process only. ``open_chdb`` keeps the registry of the engine open in this process, by
data directory: stores on the same path share its client, reference counted, and the last
release closes it. Another path while one is open, or a directory another process holds
(``path_locked_elsewhere``), is a ``StoreError`` saying so. ``open_http`` makes a server's
client with ``http_client_kwargs``. Every failure is a ``StoreError`` with one redacted line.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ...errors import StoreError
from .driver_errors import describe_error
from .url import Target

log = logging.getLogger(__name__)


class _Engine:
    def __init__(self, client: Any) -> None:
        self.client = client
        self.refs = 0


_chdb_lock = threading.Lock()
_chdb_engines: dict[str, _Engine] = {}


def open_chdb(target: Target) -> tuple[Any, Callable[[], None]]:
    """The client of the embedded engine on ``target.path`` (opened now, or the one open
    already) and the function that gives it back (the last one closes it)."""
    import clickhouse_connect

    path = target.path or ""
    with _chdb_lock:
        engine = _chdb_engines.get(path)
        if engine is None:
            if _chdb_engines:
                other = next(iter(_chdb_engines))
                raise StoreError(
                    f"ClickHouse at {target.redacted}: chdb runs one embedded engine per process and "
                    f"{other} is already open here; use that one or close it first"
                )
            if path_locked_elsewhere(path):
                raise StoreError(
                    f"ClickHouse at {target.redacted}: the embedded data directory is in use by another "
                    "process (a running worker?); query through the worker or stop it first"
                )
            Path(path).mkdir(parents=True, exist_ok=True)
            try:
                client = clickhouse_connect.get_client(dsn=f"chdb://{path}", tz_mode="aware")
            except Exception as exc:
                line = describe_error(exc)
                raise StoreError(f"ClickHouse at {target.redacted}: cannot open the embedded engine: {line}") from None
            engine = _chdb_engines[path] = _Engine(client)
        engine.refs += 1
        return engine.client, lambda: _release_chdb(path)


def _release_chdb(path: str) -> None:
    with _chdb_lock:
        engine = _chdb_engines.get(path)
        if engine is None:
            return
        engine.refs -= 1
        if engine.refs <= 0:
            del _chdb_engines[path]
            try:
                engine.client.close()
            except Exception:
                log.debug("error closing the chdb client", exc_info=True)


def path_locked_elsewhere(path: str) -> bool:
    """True when another process holds the data directory's status-file lock."""
    status = Path(path) / "status"
    if not status.exists():
        return False
    try:
        import fcntl

        with open(status, "a+b") as fh:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                return True
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
    except (ImportError, OSError):
        return False
    return False


def http_client_kwargs(target: Target, connect_timeout: float = 10.0,
                       send_receive_timeout: float = 300.0) -> dict[str, Any]:
    """``clickhouse_connect.get_client``'s arguments for a server target: TLS for https://,
    verified against the URL's ``ca_cert`` (``TOCSIN_CLICKHOUSE_CA_CERT``) or the system's CAs
    unless ``verify`` is false (``TOCSIN_CLICKHOUSE_VERIFY``)."""
    opts = dict(target.options)
    kw: dict[str, Any] = dict(
        host=target.host,
        port=target.port,
        username=target.username,
        password=target.password,
        secure=target.secure,
        verify=opts.get("verify", "true").lower() not in ("0", "false", "no"),
        database="default",
        connect_timeout=connect_timeout,
        send_receive_timeout=send_receive_timeout,
        autogenerate_session_id=False,
        tz_mode="aware",
    )
    if target.secure and opts.get("ca_cert"):
        kw["ca_cert"] = opts["ca_cert"]
    return kw


def open_http(target: Target, connect_timeout: float, send_receive_timeout: float) -> Any:
    """A client of the server ``target`` names (clickhouse-connect checks it answers)."""
    import clickhouse_connect

    try:
        return clickhouse_connect.get_client(**http_client_kwargs(target, connect_timeout, send_receive_timeout))
    except Exception as exc:
        line = describe_error(exc, [target.password])
        raise StoreError(f"ClickHouse at {target.redacted}: {line}") from None
