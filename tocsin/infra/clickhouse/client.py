"""One small interface, ``Store``, over clickhouse-connect for both ClickHouse targets.

``open_store(dsn)`` takes ``TOCSIN_CLICKHOUSE_URL``:

- ``chdb:///abs/path``: the embedded engine, in-process, through clickhouse-connect's chdb
  backend. chdb hosts ONE engine (one data directory) per process, and a data directory can
  be open in one process only; stores on the same path share one client (reference counted).
- ``http(s)://user:password@host:port/db``: a ClickHouse server.

The same DDL (``NNN_*.sql`` beside this file) and the same analyst queries run on both.
Every driver error becomes a ``StoreError`` with one clear line and no password in it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import struct
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, parse_qsl, quote, unquote, urlencode, urlsplit

from ...errors import ConfigError, StoreError
from .readonly import SqlLimits, guarded

log = logging.getLogger(__name__)

DATABASE = "tocsin"
MIGRATIONS_DIR = Path(__file__).parent
MIGRATION_RE = re.compile(r"^(\d{3})_[A-Za-z0-9_]+\.sql$")
_SETTING = "TOCSIN_CLICKHOUSE_URL"

Columns = dict[str, list[Any]]
Rows = list[tuple[Any, ...]]


# --------------------------------------------------------------------------- targets


@dataclass(frozen=True)
class Target:
    """A parsed DSN. ``redacted`` is the only form that may be logged or shown."""

    kind: str  # "chdb" or "http"
    redacted: str
    path: str | None = None
    host: str = "localhost"
    port: int = 8123
    username: str = "default"
    password: str = ""
    secure: bool = False
    database: str = DATABASE
    options: tuple[tuple[str, str], ...] = ()


def redact_dsn(dsn: str) -> str:
    """The DSN with its password and secret query values replaced by ``***`` (safe to log)."""
    from ..redact import redact_url

    out = redact_url(dsn)
    return "<invalid ClickHouse URL>" if out == "<invalid URL>" else out


def with_tls_options(url: str, ca_cert: Path | None, verify: bool) -> str:
    """``url`` carrying ``TOCSIN_CLICKHOUSE_CA_CERT`` / ``TOCSIN_CLICKHOUSE_VERIFY`` as its
    ``ca_cert`` / ``verify`` options (clickhouse-connect's own URL option names), so that every
    store opened from ``Settings.clickhouse_dsn`` connects the same way. The settings win over
    the URL's own options; other URLs than https:// are returned as they are."""
    if not url.strip().lower().startswith("https://") or (ca_cert is None and verify):
        return url
    parts = urlsplit(url.strip())
    pairs = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)
             if not (k == "ca_cert" and ca_cert is not None) and not (k == "verify" and not verify)]
    if ca_cert is not None:
        pairs.append(("ca_cert", str(ca_cert.resolve())))
    if not verify:
        pairs.append(("verify", "false"))
    return parts._replace(query=urlencode(pairs, safe="/")).geturl()


def parse_dsn(dsn: str) -> Target:
    """Parse ``chdb:///abs/path`` or ``http(s)://user:pass@host:port/db``."""
    text = dsn.strip()
    redacted = redact_dsn(text)
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        raise ConfigError(_SETTING, f"not a valid URL: {redacted}") from None
    if parts.scheme == "chdb":
        path = unquote(parts.netloc + parts.path) if parts.netloc not in ("", "localhost") else unquote(parts.path)
        if not path or not os.path.isabs(path):
            raise ConfigError(_SETTING, f"chdb needs an absolute data directory (chdb:///abs/path), got {redacted}")
        return Target("chdb", redacted, path=os.path.realpath(path))
    if parts.scheme in ("http", "https"):
        if not parts.hostname:
            raise ConfigError(_SETTING, f"no host in {redacted}")
        secure = parts.scheme == "https"
        db = unquote(parts.path.strip("/").split("/")[0]) or DATABASE
        opts = tuple((k, v[-1]) for k, v in parse_qs(parts.query).items())
        return Target(
            "http",
            redacted,
            host=parts.hostname,
            port=port or (8443 if secure else 8123),
            username=unquote(parts.username) if parts.username else "default",
            password=unquote(parts.password) if parts.password else "",
            secure=secure,
            database=db,
            options=opts,
        )
    raise ConfigError(_SETTING, f"expected chdb:///abs/path or http(s)://user:pass@host:port/db, got {redacted}")


# --------------------------------------------------------------------------- errors


_CODE_RE = re.compile(r"Code: (\d+)\. (?:DB::Exception: )?(.*)", re.S)
_NOISE_RE = re.compile(r"\s*\((?:version [^)]*|[A-Z_]+)\)\s*$|\s*Stack trace:.*$", re.S)


def describe_error(exc: BaseException, secrets: Iterable[str] = ()) -> str:
    """One short line saying what went wrong, with every secret replaced by ``***``."""
    text = str(exc) or type(exc).__name__
    low = text.lower()
    code = _CODE_RE.search(text)
    if "connection refused" in low:
        line = "cannot connect (connection refused)"
    elif code and code.group(1) != "159":
        # ClickHouse said why (its message may echo the query, whose settings name timeouts)
        line = _NOISE_RE.sub("", f"code {code.group(1)}: {code.group(2)}".strip().splitlines()[0]).strip()
    elif "timed out" in low or "timeout" in low:
        line = "timed out"
    elif "name or service not known" in low or "failed to resolve" in low or "nodename nor servname" in low:
        line = "cannot resolve the host name"
    elif "authentication_failed" in low or "code: 516" in low:
        line = "authentication failed (check the user and password)"
    elif "cannot lock file" in low or "another server instance" in low:
        line = "the data directory is in use by another process"
    else:
        m = _CODE_RE.search(text)
        line = f"code {m.group(1)}: {m.group(2)}" if m else text
        line = _NOISE_RE.sub("", line.strip().splitlines()[0] if line.strip() else line)
        line = line.strip()
    for secret in secrets:
        if secret:
            line = line.replace(secret, "***").replace(quote(secret, safe=""), "***")
    return line[:300]


class DataRefusedError(StoreError):
    """ClickHouse refused the data of an insert itself (it cannot parse it): the same bytes
    would be refused again, so the caller must send them another way."""


#: ClickHouse error codes that blame the inserted data, not the server or the connection:
#: CANNOT_PARSE_TEXT, CANNOT_PARSE_ESCAPE_SEQUENCE, CANNOT_PARSE_QUOTED_STRING,
#: CANNOT_PARSE_INPUT_ASSERTION_FAILED, ATTEMPT_TO_READ_AFTER_EOF, CANNOT_READ_ALL_DATA,
#: CANNOT_PARSE_DATE, CANNOT_PARSE_DATETIME, TYPE_MISMATCH, CANNOT_CONVERT_TYPE,
#: CANNOT_PARSE_NUMBER, INCORRECT_DATA, TOO_LARGE_STRING_SIZE,
#: VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE, CANNOT_INSERT_NULL_IN_ORDINARY_COLUMN,
#: CANNOT_PARSE_UUID, CANNOT_PARSE_DOMAIN_VALUE_FROM_STRING, CANNOT_PARSE_BOOL,
#: FUNCTION_THROW_IF_VALUE_IS_NON_ZERO (the checks of 002_json_ingest.sql)
DATA_ERROR_CODES = frozenset({6, 25, 26, 27, 32, 33, 38, 41, 53, 70, 72, 117, 131, 321, 349, 376, 395, 441, 467})

#: settings of every ``insert_json``: the parsing the Recorder's checks rely on, stated
#: rather than taken from the server's defaults or a user profile
JSON_INSERT_SETTINGS: dict[str, Any] = {
    "date_time_input_format": "best_effort",
    "input_format_skip_unknown_fields": 1,
    "input_format_null_as_default": 1,
    "input_format_defaults_for_omitted_fields": 1,
    "input_format_json_named_tuples_as_objects": 1,
    "input_format_json_ignore_unknown_keys_in_named_tuple": 1,
    "input_format_json_defaults_for_missing_elements_in_named_tuple": 1,
    "input_format_json_read_objects_as_strings": 1,
    "input_format_json_read_numbers_as_strings": 0,
    "input_format_json_read_bools_as_strings": 0,
    "input_format_json_read_arrays_as_strings": 0,
    "precise_float_parsing": 1,
    "input_format_allow_errors_num": 0,
    "input_format_allow_errors_ratio": 0,
    "input_format_parallel_parsing": 0,
}

_ANY_CODE_RE = re.compile(r"Code: (\d+)\.")

#: what the driver raises when it cannot write a value into its column, before anything is
#: sent (a str in a UInt8 column, an int out of range, ...): the same rows fail again
_SERIALIZE_ERRORS = (TypeError, ValueError, AttributeError, OverflowError, struct.error)


def refused_as_data(exc: BaseException) -> bool:
    """Did this insert fail on its data (the driver could not write a value, or ClickHouse
    could not take it), so that sending the same rows again cannot work?"""
    if isinstance(exc, _SERIALIZE_ERRORS):
        return True
    cls = type(exc)  # the driver's own DataError (its module is imported lazily)
    if cls.__name__ == "DataError" and cls.__module__.startswith("clickhouse_connect"):
        return True
    return error_code(exc) in DATA_ERROR_CODES


def error_code(exc: BaseException) -> int | None:
    """The ClickHouse error code in a driver error (the first one), or None."""
    code = getattr(exc, "code", None)
    if isinstance(code, int) and code > 0:
        return code
    m = _ANY_CODE_RE.search(str(exc))
    return int(m.group(1)) if m else None


# --------------------------------------------------------------------------- SQL text


def _scan(sql: str) -> tuple[str, list[str]]:
    """Strip ``--`` and ``/* */`` comments outside string literals and split on ``;``.

    Returns the comment-free text and its non-empty statements.
    """
    out: list[str] = []
    statements: list[str] = []
    current: list[str] = []
    i, n = 0, len(sql)
    quote_char: str | None = None
    while i < n:
        ch = sql[i]
        if quote_char:
            current.append(ch)
            if ch == "\\" and i + 1 < n:
                current.append(sql[i + 1])
                i += 2
                continue
            if ch == quote_char:
                quote_char = None
            i += 1
            continue
        if ch in ("'", '"', "`"):
            quote_char = ch
            current.append(ch)
        elif sql.startswith("--", i):
            j = sql.find("\n", i)
            i = n if j < 0 else j
            continue
        elif sql.startswith("/*", i):
            j = sql.find("*/", i + 2)
            i = n if j < 0 else j + 2
            current.append(" ")
            continue
        elif ch == ";":
            stmt = "".join(current).strip()
            if stmt:
                statements.append(stmt)
            out.append("".join(current) + ";")
            current = []
        else:
            current.append(ch)
        i += 1
    stmt = "".join(current).strip()
    if stmt:
        statements.append(stmt)
    out.append("".join(current))
    return "".join(out), statements


def split_statements(sql: str) -> list[str]:
    """The statements of a DDL file, comments removed, split on ``;``."""
    return _scan(sql)[1]


# --------------------------------------------------------------------------- the store


def _qualified(table: str) -> str:
    """A table's name with its database (Tocsin's unless it names one)."""
    return table if "." in table else f"{DATABASE}.{table}"


def _columns(data: Sequence[Mapping[str, Any]] | Mapping[str, Sequence[Any]]) -> tuple[list[str], list[list[Any]]]:
    if isinstance(data, Mapping):
        names = list(data)
        return names, [list(data[n]) for n in names]
    if not data:
        return [], []
    names = list(data[0])
    return names, [[row[n] for row in data] for n in names]


class Store:
    """ClickHouse through clickhouse-connect: migrate, insert, query, close.

    Methods are synchronous (the driver is); call them with ``asyncio.to_thread`` from a loop.
    The client is thread-safe for this use (no HTTP session; chdb serializes per handle).
    """

    def __init__(self, target: Target, client: Any, release: Callable[[], None] | None = None) -> None:
        """Wrap a clickhouse-connect client; ``release`` runs on ``close`` (``open_store``
        passes the client's own close, or the release of the shared chdb engine)."""
        self.target = target
        self._client = client
        self._release = release
        self._closed = False

    # -- facts

    @property
    def kind(self) -> str:
        return self.target.kind

    @property
    def redacted(self) -> str:
        return self.target.redacted

    @property
    def supports_dedup_token(self) -> bool:
        """Both targets honour ``insert_deduplication_token`` (the tables keep a window)."""
        return True

    def _error(self, exc: BaseException, action: str) -> StoreError:
        line = describe_error(exc, [self.target.password])
        log.debug("ClickHouse %s: %s failed: %s", self.redacted, action, type(exc).__name__)
        return StoreError(f"ClickHouse at {self.redacted}: {action} failed: {line}")

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError(f"ClickHouse at {self.redacted}: the store is closed")

    # -- operations

    def command(self, sql: str, params: Mapping[str, Any] | None = None) -> Any:
        """Run one statement that returns no rows (DDL, TRUNCATE, ...)."""
        self._check_open()
        try:
            return self._client.command(sql, parameters=dict(params) if params else None)
        except StoreError:
            raise
        except Exception as exc:
            raise self._error(exc, "statement") from None

    def query(
        self, sql: str, params: Mapping[str, Any] | None = None, settings: Mapping[str, Any] | None = None
    ) -> tuple[list[str], Rows]:
        """Run a query with ``{name:Type}`` parameters; return (column names, rows)."""
        self._check_open()
        try:
            result = self._client.query(sql, parameters=dict(params) if params else None,
                                        settings=dict(settings) if settings else None)
            # the rows are decoded here, inside the try: a stream the driver cannot read is a
            # StoreError like any other failure
            return list(result.column_names), [tuple(r) for r in result.result_rows]
        except StoreError:
            raise
        except Exception as exc:
            raise self._error(exc, "query") from None

    def query_readonly(self, sql: str, limits: SqlLimits | None = None) -> tuple[list[str], Rows]:
        """Run untrusted text (``tocsin sql``, ``POST /api/sql``) as ``readonly.py`` says: one
        statement that only reads Tocsin's tables, as ClickHouse's parser decides, at
        ``readonly = 1`` with ``limits``; anything else raises ``ReadOnlyError`` with the reason."""
        settings = self._readonly_settings(limits or SqlLimits())
        return guarded(lambda text, params, s: self.query(text, params, settings=s), sql, settings)

    def _readonly_settings(self, limits: SqlLimits) -> dict[str, Any]:
        try:
            current = self._client.server_settings.get("readonly")
        except Exception:
            current = None
        level = str(getattr(current, "value", "0") or "0") if current is not None else "0"
        if level == "1":
            return {}  # the user is read-only already and may change no setting: its profile's limits
        wanted = limits.settings()
        if level == "2":
            wanted.pop("readonly")  # may change settings but not this one
        return wanted

    def insert(
        self,
        table: str,
        data: Sequence[Mapping[str, Any]] | Mapping[str, Sequence[Any]],
        dedup_token: str | None = None,
    ) -> int:
        """Columnar insert of rows (list of dicts) or columns (dict of lists); returns rows written.

        ``dedup_token`` becomes ``insert_deduplication_token``: the same token within the
        table's window is dropped, base table and materialized views alike. Rows the driver
        cannot write into their columns, or ClickHouse refuses as data, raise
        ``DataRefusedError`` (sending them again cannot work); other failures ``StoreError``.
        """
        self._check_open()
        names, columns = _columns(data)
        if not names or not columns[0]:
            return 0
        full = _qualified(table)
        self._insert(full, lambda: self._client.insert(full, columns, column_names=names, column_oriented=True,
                                                       settings=self._dedup_settings({}, dedup_token)))
        return len(columns[0])

    def insert_json(self, table: str, messages: Sequence[bytes], dedup_token: str | None = None) -> int:
        """Insert JSON objects, one per message, as ``FORMAT JSONEachRow``; returns how many.

        ClickHouse parses them (``002_json_ingest.sql``: the ``*_json`` tables). One block,
        so the insert is all or nothing; rows with an error are never skipped, whatever the
        server's profile says. ``dedup_token`` as in ``insert``. A message ClickHouse cannot
        parse raises ``DataRefusedError`` (sending it again cannot work); every other
        failure raises ``StoreError``.
        """
        self._check_open()
        if not messages:
            return 0
        settings = self._dedup_settings(
            {**JSON_INSERT_SETTINGS, "max_insert_block_size": max(len(messages), 1_048_576)}, dedup_token)
        full = _qualified(table)
        self._insert(full, lambda: self._client.raw_insert(full, insert_block=b"\n".join(messages),
                                                           fmt="JSONEachRow", settings=settings))
        return len(messages)

    def _dedup_settings(self, settings: dict[str, Any], dedup_token: str | None) -> dict[str, Any]:
        """``settings`` with the insert's deduplication token, where the server takes one."""
        if dedup_token and self.supports_dedup_token:
            settings["insert_deduplication_token"] = dedup_token
            settings["deduplicate_blocks_in_dependent_materialized_views"] = 1
        return settings

    def _insert(self, full: str, send: Callable[[], Any]) -> None:
        """Run an insert; its data refused: ``DataRefusedError``, any other failure ``StoreError``."""
        try:
            send()
        except StoreError:
            raise
        except Exception as exc:
            err = self._error(exc, f"insert into {full}")
            if refused_as_data(exc):
                raise DataRefusedError(str(err)) from None
            raise err from None

    def ping(self) -> bool:
        try:
            self.query("SELECT 1")
            return True
        except StoreError:
            return False

    def truncate(self, table: str) -> None:
        full = _qualified(table)
        self.command(f"TRUNCATE TABLE IF EXISTS {full}")

    # -- schema

    def migrate(self) -> list[str]:
        """Apply the versioned DDL files not yet applied; return the names applied now.

        Idempotent: every statement is ``IF NOT EXISTS``, and applied versions are kept in
        ``tocsin.schema_migrations``, so two workers starting together are harmless.
        """
        self.command(f"CREATE DATABASE IF NOT EXISTS {DATABASE}")
        self.command(
            f"CREATE TABLE IF NOT EXISTS {DATABASE}.schema_migrations "
            "(version UInt32, name String, checksum String, applied_at DateTime64(3, 'UTC') DEFAULT now64(3)) "
            "ENGINE = ReplacingMergeTree ORDER BY version"
        )
        _, rows = self.query(f"SELECT version, checksum FROM {DATABASE}.schema_migrations FINAL")
        applied = {int(v): c for v, c in rows}
        done: list[str] = []
        for version, path in migration_files():
            text = path.read_text(encoding="utf-8")
            checksum = hashlib.sha256(text.encode()).hexdigest()[:16]
            if version in applied:
                if applied[version] != checksum:
                    log.warning("migration %s changed after it was applied; add a new file instead", path.name)
                continue
            log.info("ClickHouse %s: applying %s", self.redacted, path.name)
            for stmt in split_statements(text):
                self.command(stmt)
            self.insert("schema_migrations", [{"version": version, "name": path.name, "checksum": checksum}])
            done.append(path.name)
        self._use_database()
        return done

    def _use_database(self) -> None:
        try:
            if self._client.command(f"EXISTS DATABASE {self.target.database}") in (1, "1"):
                self._client.database = self.target.database
        except Exception as exc:  # only a convenience for unqualified names
            log.debug("cannot select database %s: %s", self.target.database, type(exc).__name__)

    def applied_versions(self) -> list[int]:
        _, rows = self.query(f"SELECT version FROM {DATABASE}.schema_migrations FINAL ORDER BY version")
        return [int(r[0]) for r in rows]

    # -- lifecycle

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._release is None:
            return
        try:
            self._release()
        except Exception:  # closing must not raise
            log.debug("error closing the ClickHouse client", exc_info=True)

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def migration_files() -> list[tuple[int, Path]]:
    """The versioned DDL files, in order."""
    found = []
    for path in MIGRATIONS_DIR.iterdir():
        m = MIGRATION_RE.match(path.name)
        if m:
            found.append((int(m.group(1)), path))
    return sorted(found)


# --------------------------------------------------------------------------- opening


class _Engine:
    def __init__(self, client: Any) -> None:
        self.client = client
        self.refs = 0


_chdb_lock = threading.Lock()
_chdb_engines: dict[str, _Engine] = {}


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


def _path_locked_elsewhere(path: str) -> bool:
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


def _open_chdb(target: Target) -> Any:
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
            if _path_locked_elsewhere(path):
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
        return engine.client


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


def _open_http(target: Target, connect_timeout: float, send_receive_timeout: float) -> Any:
    import clickhouse_connect

    try:
        return clickhouse_connect.get_client(**http_client_kwargs(target, connect_timeout, send_receive_timeout))
    except Exception as exc:
        line = describe_error(exc, [target.password])
        raise StoreError(f"ClickHouse at {target.redacted}: {line}") from None


def open_store(dsn: str, *, connect_timeout: float = 10.0, send_receive_timeout: float = 300.0) -> Store:
    """Open the store named by ``dsn`` (``Settings.clickhouse_dsn``).

    Raises ``ConfigError`` for a malformed DSN and ``StoreError`` when ClickHouse cannot be
    reached or the embedded data directory cannot be opened. Call ``migrate()`` before use.
    """
    target = parse_dsn(dsn)
    if target.kind == "chdb":
        path = target.path or ""
        store = Store(target, _open_chdb(target), lambda: _release_chdb(path))
    else:
        client = _open_http(target, connect_timeout, send_receive_timeout)
        store = Store(target, client, client.close)
    store._use_database()
    log.info("ClickHouse store %s open", target.redacted)
    return store


__all__ = [
    "DATABASE",
    "DataRefusedError",
    "Store",
    "Target",
    "describe_error",
    "http_client_kwargs",
    "migration_files",
    "open_store",
    "parse_dsn",
    "redact_dsn",
    "split_statements",
    "with_tls_options",
]
