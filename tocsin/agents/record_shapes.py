"""What the recorder reads of a topic message: one msgspec shape per kind.

Each recorded kind (``decisions``, ``attempts``, ``lifecycle``) has one shape below: the
fields its ClickHouse row needs, of the JSON types its columns read. The message's bytes
are decoded against it in C, strictly: each field present (a missing one is an error), of
its JSON type (optional text: a string or null; no number for text, no bool or text for
a number), numbers in their column's range. The one decoded struct serves both ways a
message becomes a row:

- ``json_id``: the message ClickHouse may parse itself. Its bytes go in one
  ``INSERT ... FORMAT JSONEachRow`` into the kind's ``*_json`` Null table, whose
  materialized view writes the row (``infra/clickhouse/002_json_ingest.sql``); ClickHouse
  itself checks that the ids are UUIDs and the timestamps RFC 3339 with an offset, in
  canonical text (a message failing that makes it refuse the batch, which then takes the
  Python path). ``details`` is not parsed (only checked to be an object): ClickHouse keeps
  its JSON text as the message holds it, and so does the Python row;
- the Python row (``record_rows.py``), built from the same struct.

The pydantic models of ``schemas/messages.py`` read a message these shapes refuse (the
model's defaults, its lax values) and say why a malformed one is malformed.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Annotated, Any, Literal

import msgspec
from pydantic import BaseModel

from ..schemas.codec import dumps

Kind = Literal["decisions", "attempts", "lifecycle"]
KINDS: tuple[Kind, ...] = ("decisions", "attempts", "lifecycle")

#: kind -> (table, id column)
TABLES: dict[str, tuple[str, str]] = {
    "decisions": ("alerts", "decision_id"),
    "attempts": ("delivery_attempts", "attempt_id"),
    "lifecycle": ("alert_lifecycle", "event_id"),
}

#: kind -> the Null table whose materialized view parses its messages (002_json_ingest.sql)
JSON_TABLES: dict[str, str] = {
    "decisions": "alerts_json",
    "attempts": "delivery_attempts_json",
    "lifecycle": "alert_lifecycle_json",
}


def kind_for_topic(topic: str, prefix: str) -> Kind | None:
    """``P.decisions`` -> ``"decisions"`` and so on; None for other topics."""
    for kind in KINDS:
        if topic == f"{prefix}.{kind}":
            return kind
    return None


# --------------------------------------------------------------------------- shapes

_U8 = Annotated[int, msgspec.Meta(ge=0, lt=2**8)]
_U16 = Annotated[int, msgspec.Meta(ge=0, lt=2**16)]
_U32 = Annotated[int, msgspec.Meta(ge=0, lt=2**32)]
_I32 = Annotated[int, msgspec.Meta(ge=-(2**31), lt=2**31)]
# a latency the row's ``float(v or 0.0)`` reads as ClickHouse does: an int a float holds
# exactly, or a float (-0.0, which ``or`` turns into 0.0, is checked apart)
_LATENCY = Annotated[int, msgspec.Meta(ge=-(2**53), le=2**53)] | float


class EntityShape(msgspec.Struct, gc=False):
    account_id: str | None
    symbol: str | None
    strategy_id: str | None
    run_id: str | None


class AlertShape(msgspec.Struct, gc=False):
    alert_id: str
    type: str
    severity: Annotated[int, msgspec.Meta(ge=1, le=3)]
    event_timestamp: str
    fingerprint: str
    entity: EntityShape | None
    summary: str
    details: msgspec.Raw  # an object (null reads as {}): checked in json_id and the row
    source: str | None
    action: Annotated[str, msgspec.Meta(min_length=1)]
    resolves: str | None
    requires_action: bool | None  # null reads as false


class DecisionShape(msgspec.Struct, gc=False):
    decision_id: str
    alert: AlertShape
    dedupe_key: str
    outcome: Literal["notify", "suppress", "bypass", "silenced", "muted", "inhibited", "digest", "escalated",
                     "escalation_stopped", "grouped", "flapping"]
    reason: str | None
    window_start: str
    suppressed_count: _U32 | None
    destinations: list[str]
    decided_at: str


class AttemptShape(msgspec.Struct, gc=False):
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


class LifecycleShape(msgspec.Struct, gc=False):
    # ``by`` and ``at`` have defaults in the model that ClickHouse would not give: required
    event_id: str
    fingerprint: str
    action: Literal["acknowledge", "resolve", "dismiss", "unacknowledge"]
    by: str
    at: str
    note: str = ""
    alert_id: str | None = None


#: kind -> the decoder of its shape (``decode`` raises ``msgspec.DecodeError``, a ValueError)
DECODERS: dict[str, msgspec.json.Decoder[Any]] = {
    "decisions": msgspec.json.Decoder(DecisionShape),
    "attempts": msgspec.json.Decoder(AttemptShape),
    "lifecycle": msgspec.json.Decoder(LifecycleShape),
}


# --------------------------------------------------------------------------- ClickHouse parses


def _decision_id(m: DecisionShape) -> str | None:
    return m.decision_id if memoryview(m.alert.details)[0] == 123 else None  # {


def _attempt_id(m: AttemptShape) -> str | None:
    lat = m.latency_ms
    if lat is not None and lat == 0 and type(lat) is float and math.copysign(1.0, lat) < 0:
        return None  # -0.0
    return m.attempt_id


def _event_id(m: LifecycleShape) -> str | None:
    return m.event_id


_CHECKS: dict[str, tuple[msgspec.json.Decoder[Any], Callable[[Any], str | None]]] = {
    "decisions": (DECODERS["decisions"], _decision_id),
    "attempts": (DECODERS["attempts"], _attempt_id),
    "lifecycle": (DECODERS["lifecycle"], _event_id),
}


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


def wire(value: Any) -> bytes | None:
    """The message as JSON bytes, as it travels on its topic (a model or a dict encoded by
    the tocsin codec), or None for a value that is none of these or cannot be encoded."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    try:
        if isinstance(value, str):
            return value.encode()
        if isinstance(value, dict | BaseModel):
            return dumps(value)
    except (UnicodeError, TypeError):  # orjson.JSONEncodeError is a TypeError
        return None
    return None


__all__ = [
    "DECODERS",
    "JSON_TABLES",
    "KINDS",
    "TABLES",
    "AlertShape",
    "AttemptShape",
    "DecisionShape",
    "EntityShape",
    "Kind",
    "LifecycleShape",
    "json_id",
    "kind_for_topic",
    "wire",
]
