"""Raw bytes from ``P.alerts`` to a valid AlertEvent or a kept rejection. Pure."""

from __future__ import annotations

import base64
import uuid
from typing import Any, Literal

import orjson
from pydantic import ValidationError

from .alert import AlertEvent
from .messages import NAMESPACE, InvalidAlert, SourcePosition


def format_errors(exc: ValidationError) -> list[str]:
    out = []
    for err in exc.errors(include_url=False):
        loc = ".".join(str(p) for p in err.get("loc", ())) or "event"
        msg = err.get("msg", "invalid")
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        out.append(f"{loc}: {msg}")
    return out or [str(exc)]


def raw_text(raw: bytes) -> tuple[str, Literal["text", "base64"]]:
    try:
        return raw.decode("utf-8"), "text"
    except UnicodeDecodeError:
        return base64.b64encode(raw).decode("ascii"), "base64"


def rejection(raw: bytes | None, key: bytes | str | None, position: SourcePosition,
              errors: list[str]) -> InvalidAlert:
    """Keep a rejected message: raw bytes (text, or base64 when not UTF-8), key, origin, errors."""
    key_text = key.decode("utf-8", "replace") if isinstance(key, bytes) else key
    text, enc = raw_text(raw or b"")
    return InvalidAlert(raw=text, raw_encoding=enc, key=key_text, source=position, errors=errors)


def derived_alert_id(position: SourcePosition) -> uuid.UUID:
    """An alert_id for an event that had none: the same source message gives the same id,
    so a re-consumed event is recognised downstream."""
    return uuid.uuid5(NAMESPACE, f"{position.topic}/{position.partition}/{position.offset}")


def validate_raw(
    raw: bytes | None, key: bytes | str | None, position: SourcePosition | tuple[str, int, int]
) -> AlertEvent | InvalidAlert:
    """Decode and validate one message; never raises. ``position`` may be a (topic,
    partition, offset) tuple: it becomes a SourcePosition only when one is needed."""
    def where() -> SourcePosition:
        if isinstance(position, SourcePosition):
            return position
        topic, partition, offset = position
        return SourcePosition(topic=topic, partition=partition, offset=offset)

    key_text: str | None
    if isinstance(key, bytes):
        key_text = key.decode("utf-8", "replace")
    else:
        key_text = key
    if raw is None:
        return InvalidAlert(raw="", raw_encoding="text", key=key_text, source=where(),
                            errors=["event: empty message (no value)"])
    errors: list[str]
    try:
        data: Any = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        errors = [f"event: invalid JSON: {exc}"]
    else:
        if not isinstance(data, dict):
            errors = [f"event: must be a JSON object, got {type(data).__name__}"]
        else:
            if not data.get("alert_id"):
                data["alert_id"] = derived_alert_id(where())
            try:
                return AlertEvent.model_validate(data)
            except ValidationError as exc:
                errors = format_errors(exc)
            except (ValueError, TypeError, RecursionError) as exc:  # defensive: never raise
                errors = [f"event: {exc}"]
    return rejection(raw, key_text, where(), errors)
