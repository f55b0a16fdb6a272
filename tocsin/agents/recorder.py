"""Batching topic messages into ClickHouse rows: the ``Recorder`` (no Faust in here).

One batch at a time (the rebuild from the topics, ``streams/rebuild.py``)::

    recorder = Recorder(store, batch_rows=settings.record_batch_rows,
                        batch_s=settings.record_batch_s)
    rejects = await recorder.record_batch([("decisions", value), ("attempts", value2)])
    # every row is now in ClickHouse; put each reject on a dead-letter topic, then commit

The record agent drives it through a ``Pipeline`` instead: the values of ``P.decisions``,
``P.attempts`` and ``P.lifecycle`` of one batch are checked while the batch before is being
inserted, and a batch's offsets are committed only once it is in ClickHouse. Or, event by
event: ``add(kind, value)`` (returns a ``Reject`` for a malformed message),
``if recorder.due(): await recorder.flush()``.

ClickHouse parses the messages itself: a message that passes a strict check in C
(``json_id``, msgspec: the fields a row needs, of the right types, numbers in range; the
views check UUIDs and timestamps in canonical text) is kept as its bytes, and a batch's
messages go in one ``INSERT ... FORMAT JSONEachRow`` into the table's ``*_json`` Null
table, whose materialized view writes the row (``infra/clickhouse/002_json_ingest.sql``).
Every other message is turned into a row here, exactly as before. Both ways give the same
row for a message, ``details`` kept as the JSON text the message holds
(tests/integration/test_clickhouse_json.py). A store without ``insert_json`` gets rows only.

Guarantees:

- a malformed message never raises: it becomes a ``Reject`` (kind, value, error); should
  ClickHouse refuse a checked batch all the same (``DataRefusedError``), its messages take
  the Python row path, which rejects the bad one and inserts the others; rows the driver
  or ClickHouse refuse as data are halved until each refused row is alone, which becomes a
  reject (never a batch retried forever);
- ``flush`` returns only when every pending row is inserted; on a ``StoreError`` it keeps
  the batch, backs off exponentially (capped) and tries again, so no row is ever lost
  (``max_retries`` makes it give up with ``StoreError``, the rows still pending);
- each table's batch carries an ``insert_deduplication_token`` made from its ids (and the
  table it goes to), so a retried batch is dropped by ClickHouse, materialized views
  included; the ReplacingMergeTree tables collapse rows of a replayed topic by id.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import logging
import math
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import msgspec
import orjson
from pydantic import BaseModel, ValidationError

from ..decisions.backoff import Backoff, Failure, retry
from ..errors import DataRefusedError, StoreError
from ..schemas.messages import Decision, DeliveryAttempt, LifecycleEvent

log = logging.getLogger(__name__)

Kind = Literal["decisions", "attempts", "lifecycle"]
KINDS: tuple[Kind, ...] = ("decisions", "attempts", "lifecycle")

#: kind -> (table, id column)
TABLES: dict[str, tuple[str, str]] = {
    "decisions": ("alerts", "decision_id"),
    "attempts": ("delivery_attempts", "attempt_id"),
    "lifecycle": ("alert_lifecycle", "event_id"),
}

_ID_COLUMN: dict[str, str] = dict(TABLES.values())

#: kind -> the Null table whose materialized view parses its messages (002_json_ingest.sql)
JSON_TABLES: dict[str, str] = {
    "decisions": "alerts_json",
    "attempts": "delivery_attempts_json",
    "lifecycle": "alert_lifecycle_json",
}

#: The interpreter's switch interval in a worker (``sys.setswitchinterval``, set by
#: ``run_worker``). Inserts run in a thread that gives up Python's lock at each system call
#: (clickhouse-connect's chdb backend writes the batch to a file and the engine reads it)
#: and then waits for it, up to the switch interval, while the event loop runs Python: at
#: the default 5 ms a 30 ms insert of 10,000 rows took 66-69 ms next to a busy loop, at
#: 0.5 ms 38-44 ms. A thread-less worker never switches, whatever the interval.
SWITCH_INTERVAL_S = 0.0005

_MIN_TS = dt.datetime(1900, 1, 1, tzinfo=dt.UTC)
_MAX_TS = dt.datetime(2299, 12, 31, tzinfo=dt.UTC)


class RecordError(ValueError):
    """A message that cannot become a row (the reason is the message)."""


@dataclass(frozen=True)
class Reject:
    """A message the recorder could not turn into a row, for a dead-letter topic."""

    kind: str
    value: Any
    error: str


def kind_for_topic(topic: str, prefix: str) -> Kind | None:
    """``P.decisions`` -> ``"decisions"`` and so on; None for other topics."""
    for kind in KINDS:
        if topic == f"{prefix}.{kind}":
            return kind
    return None


# --------------------------------------------------------------------------- rows


def _ts(value: dt.datetime, field: str) -> dt.datetime:
    ts = value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)
    if not _MIN_TS <= ts <= _MAX_TS:
        raise RecordError(f"{field} {value.isoformat()} is outside 1900..2299")
    return ts


def _uint(value: int, field: str, bits: int) -> int:
    if not 0 <= value < 2**bits:
        raise RecordError(f"{field} {value} is out of range")
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="python")
    if isinstance(value, bytes | bytearray | memoryview | str):
        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError as exc:
            raise RecordError(f"not JSON: {exc}") from None
    return value


def _validation_text(exc: ValidationError) -> str:
    errs = exc.errors(include_url=False)
    parts = [f"{'.'.join(str(p) for p in e['loc']) or 'value'}: {e['msg']}" for e in errs[:5]]
    more = f" (+{len(errs) - 5} more)" if len(errs) > 5 else ""
    return "; ".join(parts) + more


def decision_row(d: Decision) -> dict[str, Any]:
    a = d.alert
    e = a.entity
    return {
        "decision_id": str(d.decision_id),
        "alert_id": str(a.alert_id),
        "fingerprint": a.fingerprint,
        "type": a.type,
        "severity": a.severity,
        "outcome": d.outcome.value,
        "reason": d.reason,
        "dedupe_key": d.dedupe_key,
        "suppressed_count": _uint(d.suppressed_count, "suppressed_count", 32),
        "window_start": _ts(d.window_start, "window_start"),
        "event_timestamp": _ts(a.event_timestamp, "event_timestamp"),
        "decided_at": _ts(d.decided_at, "decided_at"),
        "account_id": e.account_id or "",
        "symbol": e.symbol or "",
        "strategy_id": e.strategy_id or "",
        "run_id": e.run_id or "",
        "summary": a.summary,
        "details": orjson.dumps(a.details).decode(),
        "source": a.source or "",
        "action": a.action,
        "resolves": a.resolves or "",
        "requires_action": a.requires_action,
        "destinations": [str(x) for x in d.destinations],
    }


def attempt_row(x: DeliveryAttempt) -> dict[str, Any]:
    if x.response_code is not None and not -(2**31) <= x.response_code < 2**31:
        raise RecordError(f"response_code {x.response_code} is out of range")
    return {
        "attempt_id": str(x.attempt_id),
        "delivery_id": x.delivery_id,
        "alert_id": str(x.alert_id),
        "fingerprint": x.fingerprint,
        "type": x.type,
        "severity": _uint(x.severity, "severity", 8),
        "channel": x.channel,
        "destination": x.destination,
        "attempt": _uint(x.attempt, "attempt", 16),
        "status": x.status.value,
        "reason": x.reason,
        "response_code": x.response_code,
        "error": x.error,
        "started_at": _ts(x.started_at, "started_at"),
        "finished_at": _ts(x.finished_at, "finished_at"),
        "latency_ms": float(x.latency_ms),
    }


def lifecycle_row(x: LifecycleEvent) -> dict[str, Any]:
    return {
        "event_id": str(x.event_id),
        "fingerprint": x.fingerprint,
        "action": x.action.value,
        "by": x.by,
        "note": x.note,
        "at": _ts(x.at, "at"),
        "alert_id": None if x.alert_id is None else str(x.alert_id),
    }


# -- fast rows: the messages Tocsin itself wrote are well-formed; build their rows straight
# from the decoded JSON. Anything unexpected falls back to full model validation above,
# which turns a malformed message into a RecordError with its reason.


def _fdt(v: Any) -> dt.datetime:
    t = v if isinstance(v, dt.datetime) else dt.datetime.fromisoformat(v)
    if t.tzinfo is None:
        raise ValueError("naive timestamp")
    t = t.astimezone(dt.UTC)
    if not _MIN_TS <= t <= _MAX_TS:
        raise ValueError("timestamp out of range")
    return t


_UUID_RE = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def _fuuid(v: Any) -> str:
    """A UUID as text: the driver writes a UUID column by the type of its first value, so
    every row builder gives text (a column mixing ``uuid.UUID`` and text fails to insert)."""
    if isinstance(v, uuid.UUID):
        return str(v)
    if isinstance(v, str) and _UUID_RE.fullmatch(v):
        return v
    raise ValueError("not a UUID")


def _fstr(v: Any) -> str:
    if v is None:
        return ""
    if not isinstance(v, str):
        raise TypeError("expected a string")
    return v


def fast_decision_row(d: dict[str, Any]) -> dict[str, Any]:
    a = d["alert"]
    e = a.get("entity") or {}
    sev = a["severity"]
    outcome = d["outcome"]
    if sev not in (1, 2, 3) or outcome not in ("notify", "suppress", "bypass", "silenced"):
        raise ValueError("severity or outcome")
    details = a.get("details") or {}
    if not isinstance(details, dict):
        raise TypeError("details")
    return {
        "decision_id": _fuuid(d["decision_id"]),
        "alert_id": _fuuid(a["alert_id"]),
        "fingerprint": _fstr(a["fingerprint"]),
        "type": _fstr(a["type"]),
        "severity": sev,
        "outcome": outcome,
        "reason": _fstr(d.get("reason")),
        "dedupe_key": _fstr(d["dedupe_key"]),
        "suppressed_count": _uint(int(d.get("suppressed_count") or 0), "suppressed_count", 32),
        "window_start": _fdt(d["window_start"]),
        "event_timestamp": _fdt(a["event_timestamp"]),
        "decided_at": _fdt(d["decided_at"]),
        "account_id": _fstr(e.get("account_id")),
        "symbol": _fstr(e.get("symbol")),
        "strategy_id": _fstr(e.get("strategy_id")),
        "run_id": _fstr(e.get("run_id")),
        "summary": _fstr(a["summary"]),
        "details": orjson.dumps(details).decode(),
        "source": _fstr(a.get("source")),
        "action": a.get("action") or "trigger",
        "resolves": _fstr(a.get("resolves")),
        "requires_action": bool(a.get("requires_action", False)),
        "destinations": [str(x) for x in d.get("destinations") or ()],
    }


_STATUSES = frozenset(("sent", "failed", "dead", "skipped_duplicate", "rate_limited", "circuit_open"))


def fast_attempt_row(x: dict[str, Any]) -> dict[str, Any]:
    code = x.get("response_code")
    if x["status"] not in _STATUSES or (code is not None and not (isinstance(code, int) and -(2**31) <= code < 2**31)):
        raise ValueError("status or response_code")
    return {
        "attempt_id": _fuuid(x["attempt_id"]),
        "delivery_id": _fstr(x["delivery_id"]),
        "alert_id": _fuuid(x["alert_id"]),
        "fingerprint": _fstr(x["fingerprint"]),
        "type": _fstr(x["type"]),
        "severity": _uint(int(x["severity"]), "severity", 8),
        "channel": _fstr(x["channel"]),
        "destination": _fstr(x["destination"]),
        "attempt": _uint(int(x["attempt"]), "attempt", 16),
        "status": x["status"],
        "reason": _fstr(x.get("reason")),
        "response_code": code,
        "error": x.get("error") if isinstance(x.get("error"), str) else None,
        "started_at": _fdt(x["started_at"]),
        "finished_at": _fdt(x["finished_at"]),
        "latency_ms": float(x.get("latency_ms") or 0.0),
    }


_FAST: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "decisions": fast_decision_row,
    "attempts": fast_attempt_row,
}


# -- JSON rows: ClickHouse parses the message (002_json_ingest.sql). ``json_id`` lets through
# only what ClickHouse turns into the very row the builders above make. msgspec decodes the
# message against the shapes below, in C, strictly: each field the row needs present (a
# missing one is an error, as it is a reject or a default in the builders), of the JSON type
# its column reads (optional text: a string or null; no number for text, no bool or text
# for a number), numbers in their column's range. ClickHouse itself checks that the ids are
# UUIDs and the timestamps RFC 3339 with an offset, in canonical text (a message failing
# that makes it refuse the batch, which then takes the Python path). ``details`` is not
# parsed here (only checked to be an object): ClickHouse keeps its JSON text as the message
# holds it, which for Tocsin's own messages (orjson) is the very text the builders write.
# Everything else takes the Python path above.

_U8 = Annotated[int, msgspec.Meta(ge=0, lt=2**8)]
_U16 = Annotated[int, msgspec.Meta(ge=0, lt=2**16)]
_U32 = Annotated[int, msgspec.Meta(ge=0, lt=2**32)]
_I32 = Annotated[int, msgspec.Meta(ge=-(2**31), lt=2**31)]
# a latency the row's ``float(v or 0.0)`` reads as ClickHouse does: an int a float holds
# exactly, or a float (-0.0, which ``or`` turns into 0.0, is checked apart)
_LATENCY = Annotated[int, msgspec.Meta(ge=-(2**53), le=2**53)] | float


class _Entity(msgspec.Struct, gc=False):
    account_id: str | None
    symbol: str | None
    strategy_id: str | None
    run_id: str | None


class _Alert(msgspec.Struct, gc=False):
    alert_id: str
    type: str
    severity: Annotated[int, msgspec.Meta(ge=1, le=3)]
    event_timestamp: str
    fingerprint: str
    entity: _Entity | None
    summary: str
    details: msgspec.Raw  # an object: checked in json_id
    source: str | None
    action: Annotated[str, msgspec.Meta(min_length=1)]  # the row makes "" or null "trigger"
    resolves: str | None
    requires_action: bool | None  # null reads as false


class _Decision(msgspec.Struct, gc=False):
    decision_id: str
    alert: _Alert
    dedupe_key: str
    outcome: Literal["notify", "suppress", "bypass", "silenced"]
    reason: str | None
    window_start: str
    suppressed_count: _U32 | None
    destinations: list[str]
    decided_at: str


class _Attempt(msgspec.Struct, gc=False):
    attempt_id: str
    delivery_id: str
    alert_id: str
    fingerprint: str
    type: str
    severity: _U8
    channel: str
    destination: str
    attempt: _U16
    status: Literal["sent", "failed", "dead", "skipped_duplicate", "rate_limited", "circuit_open"]
    reason: str | None
    response_code: _I32 | None
    error: str | None
    started_at: str
    finished_at: str
    latency_ms: _LATENCY | None


class _Lifecycle(msgspec.Struct, gc=False):
    # ``by`` and ``at`` have defaults in the model that ClickHouse would not give: required
    event_id: str
    fingerprint: str
    action: Literal["acknowledge", "resolve", "dismiss"]
    by: str
    at: str
    note: str = ""
    alert_id: str | None = None


def _decision_id(m: _Decision) -> str | None:
    return m.decision_id if memoryview(m.alert.details)[0] == 123 else None  # {


def _attempt_id(m: _Attempt) -> str | None:
    lat = m.latency_ms
    if lat is not None and lat == 0 and type(lat) is float and math.copysign(1.0, lat) < 0:
        return None  # -0.0
    return m.attempt_id


def _event_id(m: _Lifecycle) -> str | None:
    return m.event_id


_CHECKS: dict[str, tuple[msgspec.json.Decoder[Any], Callable[[Any], str | None]]] = {
    "decisions": (msgspec.json.Decoder(_Decision), _decision_id),
    "attempts": (msgspec.json.Decoder(_Attempt), _attempt_id),
    "lifecycle": (msgspec.json.Decoder(_Lifecycle), _event_id),
}

_WIRE_OPTS = orjson.OPT_UTC_Z | orjson.OPT_NON_STR_KEYS


def _wire(value: Any) -> bytes | None:
    """The message as JSON bytes (as it travels on its topic), or None for other values."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    try:
        if isinstance(value, str):
            return value.encode()
        if isinstance(value, dict):
            return orjson.dumps(value, option=_WIRE_OPTS)
    except (UnicodeError, TypeError):  # orjson.JSONEncodeError is a TypeError
        return None
    return None


def json_id(kind: str, raw: bytes) -> str | None:
    """The record id of a message ClickHouse may parse from ``raw`` itself (see above), or
    None when it must take the Python row path."""
    check = _CHECKS.get(kind)
    if check is None:
        return None
    decoder, record_id = check
    try:
        return record_id(decoder.decode(raw))
    except msgspec.DecodeError:  # not JSON, or not of the shape (ValidationError included)
        return None


_MODELS: dict[str, tuple[type[BaseModel], Callable[[Any], dict[str, Any]]]] = {
    "decisions": (Decision, decision_row),
    "attempts": (DeliveryAttempt, attempt_row),
    "lifecycle": (LifecycleEvent, lifecycle_row),
}


def batch_token(table: str, ids: Iterable[Any]) -> str:
    """Deterministic ``insert_deduplication_token``: the same rows give the same token."""
    h = hashlib.sha256(table.encode())
    keys = sorted(map(str, ids))
    if keys:
        h.update(("\n" + "\n".join(keys)).encode())
    return f"{table}:{h.hexdigest()[:32]}"


# --------------------------------------------------------------------------- recorder




class Recorder:
    """Batches rows per table and inserts them, by size and by time, never losing one."""

    def __init__(
        self,
        store: Any,
        *,
        batch_rows: int = 10_000,
        batch_s: float = 1.0,
        backoff_s: float = 0.5,
        backoff_max_s: float = 30.0,
        max_retries: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        self.store = store
        self.batch_rows = batch_rows
        self.batch_s = batch_s
        #: between the tries of an insert that failed in a way that may pass
        self.backoff = Backoff(backoff_s, backoff_max_s, jitter=0.5)
        self.max_retries = max_retries
        self._clock = clock
        self._sleep = sleep
        #: does the store take JSON messages (``insert_json``)? otherwise rows only
        self.parses_json = callable(getattr(store, "insert_json", None))
        self._pending: dict[str, list[dict[str, Any]]] = {TABLES[k][0]: [] for k in KINDS}
        # the values the pending rows were built from, row for row (for a reject, should
        # the driver or ClickHouse refuse a row)
        self._pending_values: dict[str, list[Any]] = {TABLES[k][0]: [] for k in KINDS}
        # per kind, the checked messages for ClickHouse to parse: their bytes, record ids
        # and the values as given (for a reject, should ClickHouse refuse the batch)
        self._json: dict[str, _JsonBatch] = {k: _JsonBatch() for k in KINDS}
        self._oldest: float | None = None
        self._lock = asyncio.Lock()
        self._last_error: str | None = None
        self.rejects: list[Reject] = []
        # counters
        self.rows_inserted = 0
        self.batches_inserted = 0
        self.failures = 0
        self.rows_rejected = 0
        self.json_refused = 0

    @classmethod
    def from_settings(cls, store: Any, settings: Any, **kw: Any) -> Recorder:
        """Batch size and time from ``TOCSIN_RECORD_BATCH_ROWS`` / ``TOCSIN_RECORD_BATCH_S``."""
        return cls(store, batch_rows=settings.record_batch_rows, batch_s=settings.record_batch_s, **kw)

    # -- rows

    def rows_for(self, kind: str, value: Any) -> tuple[str, dict[str, Any]]:
        """The (table, row) of one topic message; ``RecordError`` when it is malformed."""
        if kind not in _MODELS:
            raise RecordError(f"unknown kind {kind!r}: expected one of {', '.join(KINDS)}")
        data = _decode(value)
        model, to_row = _MODELS[kind]
        if not isinstance(data, dict):
            raise RecordError(f"expected a JSON object, got {type(data).__name__}")
        fast = _FAST.get(kind)
        if fast is not None:
            try:
                return TABLES[kind][0], fast(data)
            except (KeyError, TypeError, ValueError, AttributeError, RecordError):
                pass  # validate it fully: a malformed message gets its precise reason
        try:
            obj = model.model_validate(data)
        except ValidationError as exc:
            raise RecordError(_validation_text(exc)) from None
        return TABLES[kind][0], to_row(obj)

    def add(self, kind: str, value: Any) -> Reject | None:
        """Queue one message; a malformed one is returned (and kept in ``rejects``)."""
        if self.parses_json:
            raw = value if type(value) is bytes else _wire(value)
            if raw is not None:
                rid = json_id(kind, raw)
                if rid is not None:
                    if self._oldest is None:
                        self._oldest = self._clock()
                    batch = self._json[kind]
                    batch.raw.append(raw)
                    batch.ids.append(rid)
                    batch.values.append(value)
                    return None
        return self._add_row(kind, value)

    def _add_row(self, kind: str, value: Any) -> Reject | None:
        try:
            table, row = self.rows_for(kind, value)
        except RecordError as exc:
            return self._reject(kind, value, str(exc))
        except Exception as exc:  # never let one message stop the agent
            log.exception("record: unexpected error on a %s message", kind)
            return self._reject(kind, value, f"{type(exc).__name__}: {exc}"[:500], logged=True)
        if self._oldest is None:
            self._oldest = self._clock()
        self._pending[table].append(row)
        self._pending_values[table].append(value)
        return None

    def _reject(self, kind: str, value: Any, error: str, logged: bool = False) -> Reject:
        reject = Reject(kind, value, error)
        self.rejects.append(reject)
        self.rows_rejected += 1
        if not logged:
            log.warning("record: rejected a %s message: %s", kind, reject.error)
        return reject

    def take_rejects(self) -> list[Reject]:
        """The rejects collected so far, emptied."""
        out, self.rejects = self.rejects, []
        return out

    # -- batching

    @property
    def pending(self) -> int:
        return sum(len(rows) for rows in self._pending.values()) + sum(len(b.raw) for b in self._json.values())

    def due(self, now: float | None = None) -> bool:
        """True when about ``batch_rows`` rows wait, or the oldest waited ``batch_s``."""
        n = self.pending
        if n == 0:
            return False
        if n >= self.batch_rows:
            return True
        now = self._clock() if now is None else now
        return self._oldest is not None and now - self._oldest >= self.batch_s

    async def flush(self) -> int:
        """Insert every pending row; return how many. Retries until done (see module doc)."""
        async with self._lock:
            total = 0
            for kind in KINDS:
                total += await self._flush_json(kind)
                table = TABLES[kind][0]
                rows, values = self._pending[table], self._pending_values[table]
                if not rows:
                    continue
                self._pending[table], self._pending_values[table] = [], []
                try:
                    total += await self._insert_rows(kind, table, rows, values)
                except BaseException:
                    self._pending[table] = rows + self._pending[table]
                    self._pending_values[table] = values + self._pending_values[table]
                    raise
            if self.pending == 0:
                self._oldest = None
            return total

    async def _insert_rows(self, kind: str, table: str, rows: list[dict[str, Any]], values: list[Any],
                           top: bool = True) -> int:
        """Insert rows; returns how many. Rows refused as data (``DataRefusedError``: the
        same rows would be refused again) are halved until each refused row is alone: it
        becomes a reject with its message, the others are inserted. A builder's bug thus
        costs the messages it touches, never the agent's progress."""
        try:
            column = _ID_COLUMN[table]
            await self._insert(table, len(rows), lambda: batch_token(table, (r[column] for r in rows)),
                               self.store.insert, table, rows)
            return len(rows)
        except DataRefusedError as exc:
            if len(rows) == 1:
                self._reject(kind, values[0], f"ClickHouse refused its row: {exc}"[:500])
                return 0
            if top:
                log.warning("record: %d rows refused by %s, looking for the refused ones: %s", len(rows), table, exc)
        mid = len(rows) // 2
        return (await self._insert_rows(kind, table, rows[:mid], values[:mid], top=False)
                + await self._insert_rows(kind, table, rows[mid:], values[mid:], top=False))

    async def _flush_json(self, kind: str) -> int:
        """Insert the kind's checked messages; if ClickHouse refuses them, queue their rows."""
        batch = self._json[kind]
        if not batch.raw:
            return 0
        self._json[kind] = _JsonBatch()
        table = JSON_TABLES[kind]
        try:
            await self._insert(table, len(batch.raw), lambda: batch_token(table, batch.ids),
                               self.store.insert_json, table, batch.raw)
        except DataRefusedError as exc:
            # the checks let through something ClickHouse cannot parse: nothing was written
            # (one block); build these rows here, rejecting the bad message with its reason
            self.json_refused += 1
            log.warning("record: ClickHouse refused %d checked %s messages, building their rows instead: %s",
                        len(batch.raw), kind, exc)
            for value in batch.values:
                self._add_row(kind, value)
            return 0
        except BaseException:
            self._json[kind] = batch.merge(self._json[kind])
            raise
        return len(batch.raw)

    async def record_batch(self, events: Iterable[tuple[str, Any]]) -> list[Reject]:
        """Queue ``(kind, value)`` events and flush; returns once they are durably inserted.

        Returns every reject collected since the last ``take_rejects`` (this batch's
        malformed messages), for the caller to put on a dead-letter topic before committing.
        """
        for kind, value in events:
            self.add(kind, value)
        await self.flush()
        return self.take_rejects()

    async def _insert(self, table: str, n: int, token_of: Callable[[], str], call: Callable[..., Any],
                      *args: Any) -> None:
        """``call(*args, token)`` in a thread until it succeeds (backing off on StoreError);
        a ``DataRefusedError`` is raised at once (the same data would be refused again).
        The batch's token is computed once, in the thread too: sorting and hashing its ids
        then overlaps the checks of the next batch instead of delaying this insert."""
        token: list[str] = []

        def send() -> None:
            if not token:
                token.append(token_of())
            call(*args, token[0])

        tries = 0

        def failed(f: Failure) -> None:
            nonlocal tries
            tries = f.failures
            self.failures += 1
            if str(f.error) != self._last_error:
                log.warning("record: insert of %d rows into %s failed, retrying: %s", n, table, f.error)
                self._last_error = str(f.error)

        await retry(lambda: asyncio.to_thread(send), self.backoff, on_failure=failed, max_retries=self.max_retries,
                    retry_if=lambda exc: isinstance(exc, StoreError) and not isinstance(exc, DataRefusedError),
                    sleep=self._sleep)
        if self._last_error is not None:
            log.info("record: inserts into ClickHouse work again (after %d failed tries)", tries)
            self._last_error = None
        self.rows_inserted += n
        self.batches_inserted += 1
        log.debug("record: inserted %d rows into %s", n, table)

    def stats(self) -> dict[str, int]:
        return {
            "rows_inserted": self.rows_inserted,
            "batches_inserted": self.batches_inserted,
            "failures": self.failures,
            "rows_rejected": self.rows_rejected,
            "pending": self.pending,
        }


class Pipeline:
    """Checks one batch while the one before is being inserted (the insert runs in a thread,
    and ClickHouse parses without Python's lock): ``await put(events, token)`` queues the
    batch's messages, waits for the previous batch's insert, and starts this one's; once a
    batch is inserted, ``done(rejects, token)`` runs, in batch order (the caller commits
    there: a batch's offsets go only after a flush that began after its messages were
    queued). ``drain()`` waits for the last one. A failed insert is raised by the next
    ``put`` or ``drain``; its batch's ``done`` never runs (nothing committed: read again)."""

    def __init__(self, recorder: Recorder, done: Callable[[list[Reject], Any], Awaitable[None]]) -> None:
        self.recorder = recorder
        self.done = done
        self._inserting: asyncio.Task[None] | None = None

    async def put(self, events: Iterable[tuple[str, Any]], token: Any = None) -> None:
        for kind, value in events:
            self.recorder.add(kind, value)
        await self.drain()
        self._inserting = asyncio.create_task(self._insert(token))
        await asyncio.sleep(0)  # the insert starts (its rows taken, sent to a thread) before the caller goes on

    async def drain(self) -> None:
        task, self._inserting = self._inserting, None
        if task is not None:
            await task

    def cancel(self) -> None:
        """Stop the insert under way (at shutdown): its batch is not committed, read again."""
        task, self._inserting = self._inserting, None
        if task is not None:
            task.cancel()

    async def _insert(self, token: Any) -> None:
        await self.recorder.flush()
        await self.done(self.recorder.take_rejects(), token)


@dataclass
class _JsonBatch:
    raw: list[bytes] = field(default_factory=list)
    ids: list[Any] = field(default_factory=list)
    values: list[Any] = field(default_factory=list)

    def merge(self, later: _JsonBatch) -> _JsonBatch:
        """This batch followed by ``later`` (messages added while this one was inserting)."""
        return _JsonBatch(self.raw + later.raw, self.ids + later.ids, self.values + later.values)


__all__ = [
    "JSON_TABLES",
    "KINDS",
    "TABLES",
    "Kind",
    "Pipeline",
    "RecordError",
    "Recorder",
    "Reject",
    "attempt_row",
    "batch_token",
    "decision_row",
    "json_id",
    "kind_for_topic",
    "lifecycle_row",
]
