"""``Store``: one small interface over clickhouse-connect for both ClickHouse targets, and
``open_store(dsn)``, which opens it from ``TOCSIN_CLICKHOUSE_URL`` (url.py).

The same DDL (migrations.py) and the same analyst queries run on the embedded engine and on
a server. Every driver error becomes a ``StoreError`` with one clear line and no password in
it; an insert whose data is refused as such, a ``DataRefusedError``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ...errors import DataRefusedError, StoreError
from . import migrations
from .driver_errors import describe_error, refused_as_data
from .engines import open_chdb, open_http
from .migrations import DATABASE
from .readonly import SqlLimits, guarded
from .url import Target, parse_dsn

log = logging.getLogger(__name__)

Rows = list[tuple[Any, ...]]

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


def open_store(dsn: str, *, connect_timeout: float = 10.0, send_receive_timeout: float = 300.0) -> Store:
    """Open the store named by ``dsn`` (``Settings.clickhouse_dsn``).

    Raises ``ConfigError`` for a malformed DSN and ``StoreError`` when ClickHouse cannot be
    reached or the embedded data directory cannot be opened. Call ``migrate()`` before use.
    """
    target = parse_dsn(dsn)
    if target.kind == "chdb":
        client, release = open_chdb(target)
        store = Store(target, client, release)
    else:
        client = open_http(target, connect_timeout, send_receive_timeout)
        store = Store(target, client, client.close)
    store._use_database()
    log.info("ClickHouse store %s open", target.redacted)
    return store


def _qualified(table: str) -> str:
    """A table's name with its database (Tocsin's unless it names one)."""
    return table if "." in table else f"{DATABASE}.{table}"


def _columns(data: Sequence[Mapping[str, Any]] | Mapping[str, Sequence[Any]]) -> tuple[list[str], list[list[Any]]]:
    """Rows (list of dicts) or columns (dict of lists) as column names and column values."""
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
        """Apply the versioned DDL files not yet applied (migrations.py); return the names
        applied now. The URL's database, once it exists, is then the one of unqualified names."""
        done = migrations.apply(self)
        self._use_database()
        return done

    def applied_versions(self) -> list[int]:
        """The DDL versions applied, in order."""
        return migrations.applied_versions(self)

    def _use_database(self) -> None:
        try:
            if self._client.command(f"EXISTS DATABASE {self.target.database}") in (1, "1"):
                self._client.database = self.target.database
        except Exception as exc:  # only a convenience for unqualified names
            log.debug("cannot select database %s: %s", self.target.database, type(exc).__name__)

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
