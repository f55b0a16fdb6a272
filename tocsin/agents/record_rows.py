"""A topic message as its ClickHouse row, built in Python: one row builder per kind.

``row_for(kind, value)`` takes the message as bytes (as the record agent reads it), a dict
or a pydantic model, and returns ``(table, row)``, the row exactly as the table of
``infra/clickhouse/001_init.sql`` takes it and as ClickHouse's own view writes it from the
message (002_json_ingest.sql; tests/integration/test_clickhouse_json.py compares them).
Every value goes the same way: to its bytes (``record_shapes.wire``), decoded against its
kind's shape (``record_shapes``, in C), then the kind's builder below. What the shape or
the builder cannot read as it stands (a field missing that the model has a default for,
``"SEV2"``, a naive ``window_start``, an id not in canonical text) is read by the kind's
pydantic model instead, and the model's own encoding goes the same way; a message the
model refuses is a ``RecordError`` with the model's reasons. No Faust in here.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from typing import Any

import msgspec
import orjson
from pydantic import BaseModel, ValidationError

from ..schemas.messages import Decision, DeliveryAttempt, LifecycleEvent
from .record_shapes import (
    DECODERS,
    KINDS,
    TABLES,
    AttemptShape,
    DecisionShape,
    EntityShape,
    LifecycleShape,
    wire,
)


class RecordError(ValueError):
    """A message that cannot become a row (the reason is the message)."""


_MIN_TS = dt.datetime(1900, 1, 1, tzinfo=dt.UTC)
_MAX_TS = dt.datetime(2299, 12, 31, tzinfo=dt.UTC)
_UUID_RE = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_NO_ENTITY = EntityShape(None, None, None, None)


def _ts(text: str, field: str) -> dt.datetime:
    """An RFC 3339 timestamp with an offset, in UTC; ValueError for other text (the model
    reads it), RecordError outside the columns' 1900..2299."""
    t = dt.datetime.fromisoformat(text)
    if t.tzinfo is None:
        raise ValueError(f"{field} is naive")  # the model reads it (as UTC, or refuses it)
    try:
        ts = t.astimezone(dt.UTC)
    except OverflowError:  # 0001-01-01T00:00+01:00 and the like: no UTC year 1..9999
        ts = None
    if ts is None or not _MIN_TS <= ts <= _MAX_TS:
        raise RecordError(f"{field} {t.isoformat()} is outside 1900..2299")
    return ts


def _uuid(text: str) -> str:
    """A UUID as text: the driver writes a UUID column by the type of its first value, so
    every row gives text (a column mixing ``uuid.UUID`` and text fails to insert)."""
    if _UUID_RE.fullmatch(text):
        return text
    raise ValueError("not a UUID in canonical text")  # the model reads it


def _details(raw: msgspec.Raw) -> str:
    """The details' JSON text as the message holds it (as ClickHouse keeps it); null reads as {}."""
    text = bytes(raw)
    if text[:1] == b"{":
        return text.decode()
    if text == b"null":
        return "{}"
    raise ValueError("details is not an object")  # the model says why


def decision_row(m: DecisionShape) -> dict[str, Any]:
    a = m.alert
    e = a.entity or _NO_ENTITY
    return {
        "decision_id": _uuid(m.decision_id),
        "alert_id": _uuid(a.alert_id),
        "fingerprint": a.fingerprint,
        "type": a.type,
        "severity": a.severity,
        "outcome": m.outcome,
        "reason": m.reason or "",
        "dedupe_key": m.dedupe_key,
        "suppressed_count": m.suppressed_count or 0,
        "window_start": _ts(m.window_start, "window_start"),
        "event_timestamp": _ts(a.event_timestamp, "event_timestamp"),
        "decided_at": _ts(m.decided_at, "decided_at"),
        "account_id": e.account_id or "",
        "symbol": e.symbol or "",
        "strategy_id": e.strategy_id or "",
        "run_id": e.run_id or "",
        "summary": a.summary,
        "details": _details(a.details),
        "source": a.source or "",
        "action": a.action,
        "resolves": a.resolves or "",
        "requires_action": a.requires_action is True,
        "destinations": m.destinations,
    }


def attempt_row(m: AttemptShape) -> dict[str, Any]:
    return {
        "attempt_id": _uuid(m.attempt_id),
        "delivery_id": m.delivery_id,
        "alert_id": _uuid(m.alert_id),
        "fingerprint": m.fingerprint,
        "type": m.type,
        "severity": m.severity,
        "channel": m.channel,
        "destination": m.destination,
        "attempt": m.attempt,
        "status": m.status,
        "reason": m.reason or "",
        "response_code": m.response_code,
        "error": m.error,
        "started_at": _ts(m.started_at, "started_at"),
        "finished_at": _ts(m.finished_at, "finished_at"),
        "latency_ms": float(m.latency_ms or 0.0),  # -0.0 too
    }


def lifecycle_row(m: LifecycleShape) -> dict[str, Any]:
    return {
        "event_id": _uuid(m.event_id),
        "fingerprint": m.fingerprint,
        "action": m.action,
        "by": m.by,
        "note": m.note,
        "at": _ts(m.at, "at"),
        "alert_id": None if m.alert_id is None else _uuid(m.alert_id),
    }


#: kind -> its row builder (from its decoded shape)
ROWS: dict[str, Callable[[Any], dict[str, Any]]] = {
    "decisions": decision_row,
    "attempts": attempt_row,
    "lifecycle": lifecycle_row,
}

#: kind -> the model that reads what the shape does not
MODELS: dict[str, type[BaseModel]] = {
    "decisions": Decision,
    "attempts": DeliveryAttempt,
    "lifecycle": LifecycleEvent,
}

#: the model's encoding, as the codec's with a naive time read as UTC (as the model's rows
#: always read it: a naive ``window_start``, which the model takes, is in UTC)
_MODEL_OPTS = orjson.OPT_UTC_Z | orjson.OPT_NON_STR_KEYS | orjson.OPT_NAIVE_UTC


def row_for(kind: str, value: Any) -> tuple[str, dict[str, Any]]:
    """The (table, row) of one topic message; ``RecordError`` when it is malformed."""
    if kind not in ROWS:
        raise RecordError(f"unknown kind {kind!r}: expected one of {', '.join(KINDS)}")
    table = TABLES[kind][0]
    raw = wire(value)
    if raw is not None:
        try:
            return table, ROWS[kind](DECODERS[kind].decode(raw))
        except RecordError:
            raise
        except ValueError:  # not of the shape (msgspec.DecodeError), or text the builder does not read
            pass
    # the model reads what the shape does not, and says why a malformed message is so
    model = _model(kind, value)
    raw = orjson.dumps(model.model_dump(mode="python"), option=_MODEL_OPTS)
    try:
        return table, ROWS[kind](DECODERS[kind].decode(raw))
    except RecordError:
        raise
    except msgspec.ValidationError as exc:  # a value the model takes and its column does not
        raise RecordError(_shape_error(exc, raw)) from None
    except ValueError as exc:
        raise RecordError(f"{exc}"[:500]) from None


def _model(kind: str, value: Any) -> BaseModel:
    if isinstance(value, MODELS[kind]):
        return value
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="python")
    elif isinstance(value, bytes | bytearray | memoryview | str):
        try:
            value = orjson.loads(value)
        except orjson.JSONDecodeError as exc:
            raise RecordError(f"not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise RecordError(f"expected a JSON object, got {type(value).__name__}")
    try:
        return MODELS[kind].model_validate(value)
    except ValidationError as exc:
        raise RecordError(_validation_text(exc)) from None


def _validation_text(exc: ValidationError) -> str:
    errs = exc.errors(include_url=False)
    parts = [f"{'.'.join(str(p) for p in e['loc']) or 'value'}: {e['msg']}" for e in errs[:5]]
    more = f" (+{len(errs) - 5} more)" if len(errs) > 5 else ""
    return "; ".join(parts) + more


_AT = re.compile(r"(.*) - at `\$\.?([^`]*)`$")


def _shape_error(exc: msgspec.ValidationError, raw: bytes) -> str:
    """msgspec's ``Expected `int` <= 65535 - at `$.attempt``` as ``attempt 70000 is out of
    range``; another error as ``path: what``."""
    found = _AT.fullmatch(str(exc))
    if found is None:
        return str(exc)
    what, path = found.groups()
    value: Any = orjson.loads(raw)
    for key in re.split(r"\.|\[\d+\]", path):
        value = value.get(key) if key and isinstance(value, dict) else value
    if isinstance(value, int) and what.startswith("Expected `int` "):
        return f"{path} {value} is out of range"
    return f"{path}: {what}"


__all__ = ["MODELS", "ROWS", "RecordError", "attempt_row", "decision_row", "lifecycle_row", "row_for"]
