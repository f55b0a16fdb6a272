"""Batching topic messages into ClickHouse rows: the ``Recorder`` (no Faust in here).

The record agent hands it the values of ``P.decisions``, ``P.attempts`` and ``P.lifecycle``
and commits its offsets only after ``record_batch`` returned::

    recorder = Recorder(store, batch_rows=settings.record_batch_rows,
                        batch_s=settings.record_batch_s)
    rejects = await recorder.record_batch([("decisions", value), ("attempts", value2)])
    # every row is now in ClickHouse; put each reject on a dead-letter topic, then commit

or, event by event: ``add(kind, value)`` (returns a ``Reject`` for a malformed message),
``if recorder.due(): await recorder.flush()``.

Guarantees:

- a malformed message never raises: it becomes a ``Reject`` (kind, value, error);
- ``flush`` returns only when every pending row is inserted; on a ``StoreError`` it keeps
  the batch, backs off exponentially (capped) and tries again, so no row is ever lost
  (``max_retries`` makes it give up with ``StoreError``, the rows still pending);
- each table's batch carries an ``insert_deduplication_token`` made from its ids, so a
  retried batch is dropped by ClickHouse; the ReplacingMergeTree tables collapse rows of a
  replayed topic by id.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import logging
import random
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ValidationError

from ..errors import StoreError
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
        "decision_id": d.decision_id,
        "alert_id": a.alert_id,
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
        "attempt_id": x.attempt_id,
        "delivery_id": x.delivery_id,
        "alert_id": x.alert_id,
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
        "event_id": x.event_id,
        "fingerprint": x.fingerprint,
        "action": x.action.value,
        "by": x.by,
        "note": x.note,
        "at": _ts(x.at, "at"),
        "alert_id": x.alert_id,
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


def _fuuid(v: Any) -> uuid.UUID | str:
    """A UUID as the driver takes it (its canonical text is accepted as is)."""
    if isinstance(v, uuid.UUID):
        return v
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
    if sev not in (1, 2, 3) or outcome not in ("notify", "suppress", "bypass"):
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


_MODELS: dict[str, tuple[type[BaseModel], Callable[[Any], dict[str, Any]]]] = {
    "decisions": (Decision, decision_row),
    "attempts": (DeliveryAttempt, attempt_row),
    "lifecycle": (LifecycleEvent, lifecycle_row),
}


def batch_token(table: str, ids: Iterable[Any]) -> str:
    """Deterministic ``insert_deduplication_token``: the same rows give the same token."""
    h = hashlib.sha256(table.encode())
    for i in sorted(str(x) for x in ids):
        h.update(b"\n" + i.encode())
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
        self.backoff_s = backoff_s
        self.backoff_max_s = backoff_max_s
        self.max_retries = max_retries
        self._clock = clock
        self._sleep = sleep
        self._pending: dict[str, list[dict[str, Any]]] = {TABLES[k][0]: [] for k in KINDS}
        self._oldest: float | None = None
        self._lock = asyncio.Lock()
        self._last_error: str | None = None
        self.rejects: list[Reject] = []
        # counters
        self.rows_inserted = 0
        self.batches_inserted = 0
        self.failures = 0
        self.rows_rejected = 0

    @classmethod
    def from_settings(cls, store: Any, settings: Any, **kw: Any) -> Recorder:
        """Batch size and time from ``TOCSIN_RECORD_BATCH_ROWS`` / ``TOCSIN_RECORD_BATCH_S``."""
        return cls(store, batch_rows=settings.record_batch_rows, batch_s=settings.record_batch_s, **kw)

    # -- rows

    def rows_for(self, kind: str, value: Any) -> tuple[str, dict[str, Any]]:
        """The (table, row) of one topic message; ``RecordError`` when it is malformed."""
        if kind not in _MODELS:
            raise RecordError(f"unknown kind {kind!r}: expected one of {', '.join(KINDS)}")
        model, to_row = _MODELS[kind]
        data = _decode(value)
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
        try:
            table, row = self.rows_for(kind, value)
        except RecordError as exc:
            reject = Reject(kind, value, str(exc))
            self.rejects.append(reject)
            self.rows_rejected += 1
            log.warning("record: rejected a %s message: %s", kind, reject.error)
            return reject
        except Exception as exc:  # never let one message stop the agent
            reject = Reject(kind, value, f"{type(exc).__name__}: {exc}"[:500])
            self.rejects.append(reject)
            self.rows_rejected += 1
            log.exception("record: unexpected error on a %s message", kind)
            return reject
        if self._oldest is None:
            self._oldest = self._clock()
        self._pending[table].append(row)
        return None

    def take_rejects(self) -> list[Reject]:
        """The rejects collected so far, emptied."""
        out, self.rejects = self.rejects, []
        return out

    # -- batching

    @property
    def pending(self) -> int:
        return sum(len(rows) for rows in self._pending.values())

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
            for table, rows in self._pending.items():
                if not rows:
                    continue
                self._pending[table] = []
                try:
                    await self._insert(table, rows)
                except BaseException:
                    self._pending[table] = rows + self._pending[table]
                    raise
                total += len(rows)
            if self.pending == 0:
                self._oldest = None
            return total

    async def record_batch(self, events: Iterable[tuple[str, Any]]) -> list[Reject]:
        """Queue ``(kind, value)`` events and flush; returns once they are durably inserted.

        Returns every reject collected since the last ``take_rejects`` (this batch's
        malformed messages), for the caller to put on a dead-letter topic before committing.
        """
        for kind, value in events:
            self.add(kind, value)
        await self.flush()
        return self.take_rejects()

    async def _insert(self, table: str, rows: list[dict[str, Any]]) -> None:
        token = batch_token(table, (r[_ID_COLUMN[table]] for r in rows))
        tries = 0
        while True:
            try:
                await asyncio.to_thread(self.store.insert, table, rows, token)
            except StoreError as exc:
                tries += 1
                self.failures += 1
                if str(exc) != self._last_error:
                    log.warning("record: insert of %d rows into %s failed, retrying: %s", len(rows), table, exc)
                    self._last_error = str(exc)
                if self.max_retries is not None and tries > self.max_retries:
                    raise
                await self._sleep(self._backoff(tries))
                continue
            break
        if self._last_error is not None:
            log.info("record: inserts into ClickHouse work again (after %d failed tries)", tries)
            self._last_error = None
        self.rows_inserted += len(rows)
        self.batches_inserted += 1
        log.debug("record: inserted %d rows into %s", len(rows), table)

    def _backoff(self, tries: int) -> float:
        base = min(self.backoff_max_s, self.backoff_s * 2 ** (tries - 1))
        return base * (0.5 + random.random() / 2)

    def stats(self) -> dict[str, int]:
        return {
            "rows_inserted": self.rows_inserted,
            "batches_inserted": self.batches_inserted,
            "failures": self.failures,
            "rows_rejected": self.rows_rejected,
            "pending": self.pending,
        }


__all__ = [
    "KINDS",
    "TABLES",
    "Kind",
    "RecordError",
    "Recorder",
    "Reject",
    "attempt_row",
    "batch_token",
    "decision_row",
    "kind_for_topic",
    "lifecycle_row",
]
