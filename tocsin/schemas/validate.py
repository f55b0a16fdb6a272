"""Raw bytes from ``P.alerts`` to a valid AlertEvent or a kept rejection. Pure.

Bounded input (issue #14): a message over ``InputLimits.max_message_bytes`` is rejected before
it is parsed, an event further ahead of the worker's clock than ``max_future_skew_s`` is
rejected (the clock is a parameter), and a rejection is itself bounded: the raw bytes kept are
cut to the limit (and noted), the key to a fingerprint's length, the errors to a few lines.
"""

from __future__ import annotations

import base64
import datetime as dt
import re
import uuid
from dataclasses import dataclass
from typing import Any, Literal

import orjson
from pydantic import ValidationError

from .alert import FINGERPRINT_MAX, AlertEvent, fast_alert, short_repr
from .messages import NAMESPACE, InvalidAlert, SourcePosition

#: most errors a rejection lists (then "... and N more")
MAX_ERRORS = 20
#: longest error line kept
ERROR_MAX = 300
#: longest key kept on a rejection: a fingerprint's length
KEY_KEPT = FINGERPRINT_MAX


@dataclass(frozen=True)
class InputLimits:
    """What an alert message may be (``TOCSIN_MAX_MESSAGE_BYTES``, ``TOCSIN_MAX_FUTURE_SKEW_S``)."""

    #: the value, before it is parsed (a key is only compared with the fingerprint; a
    #: rejection keeps KEY_KEPT characters of it)
    max_message_bytes: int = 65_536
    #: how far ahead of the worker's clock an event_timestamp may be (the past is not limited)
    max_future_skew_s: float = 300.0


DEFAULT_LIMITS = InputLimits()


_NAME = re.compile(r"[\w-]+")


def _loc_part(part: Any) -> str:
    """A field name as it is, cut to 64 characters; any other key (a producer's unknown field
    named " " or holding a newline) quoted, so the error line says which it is, stays one line
    and keeps room for why."""
    text = str(part)
    if _NAME.fullmatch(text):
        return text if len(text) <= 64 else text[:61] + "..."
    return short_repr(text, 64)


def _printable(text: str) -> str:
    """A message as one printable line: pydantic's may quote the input ("found `\\r` at 0")."""
    return text if text.isprintable() else "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def format_errors(exc: ValidationError) -> list[str]:
    out = []
    for err in exc.errors(include_url=False):
        loc = ".".join(_loc_part(p) for p in err.get("loc", ())) or "event"
        msg = err.get("msg", "invalid")
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        out.append(f"{loc}: {_printable(msg)}")
    return bound_errors(out or [str(exc)])


def bound_errors(errors: list[str]) -> list[str]:
    """At most MAX_ERRORS lines of at most ERROR_MAX characters (10,000 unknown fields make
    10,000 errors, each naming its field)."""
    kept = [e if len(e) <= ERROR_MAX else e[: ERROR_MAX - 3] + "..." for e in errors[:MAX_ERRORS]]
    if len(errors) > MAX_ERRORS:
        kept.append(f"event: ... and {len(errors) - MAX_ERRORS:,} more errors")
    return kept


def size_error(raw: bytes, limit: int) -> str | None:
    """Why a message is too large to be parsed (None: it is not)."""
    if len(raw) <= limit:
        return None
    return f"event: message is {len(raw):,} bytes, over the {limit:,}-byte limit (TOCSIN_MAX_MESSAGE_BYTES)"


def future_skew_error(when: dt.datetime, now: dt.datetime, max_skew_s: float) -> str | None:
    """Why an event time is too far ahead of ``now`` (None: it is not). The past is not limited:
    a replay of old events decides as the first run did."""
    if now.tzinfo is None:
        now = now.replace(tzinfo=dt.UTC)
    ahead = (when - now).total_seconds()
    if ahead <= max_skew_s:
        return None
    return (f"event_timestamp: {when.isoformat()} is {ahead:,.0f} s ahead of this worker's clock "
            f"({now.astimezone(dt.UTC).isoformat(timespec='seconds')}), over the {max_skew_s:,g} s limit "
            "(TOCSIN_MAX_FUTURE_SKEW_S)")


def raw_text(raw: bytes) -> tuple[str, Literal["text", "base64"]]:
    try:
        return raw.decode("utf-8"), "text"
    except UnicodeDecodeError:
        return base64.b64encode(raw).decode("ascii"), "base64"


def kept_raw(raw: bytes, limit: int) -> tuple[str, Literal["text", "base64"], bool]:
    """The raw bytes as a rejection keeps them: text (UTF-8) or base64, cut to ``limit`` bytes
    (``True`` when cut). Text whose JSON escaping would more than double it (control
    characters: six bytes each) is kept as base64, so the kept field is at most about twice
    ``limit``."""
    truncated = len(raw) > limit
    cut = raw[:limit]
    text: str | None = None
    for trim in range(4 if truncated else 1):  # a cut may split a character: drop its head
        try:
            text = cut[: len(cut) - trim].decode("utf-8")
            break
        except UnicodeDecodeError:
            continue
    if text is not None and len(orjson.dumps(text)) <= 2 * len(cut) + 2:
        return text, "text", truncated
    return base64.b64encode(cut).decode("ascii"), "base64", truncated


def rejection(raw: bytes | None, key: bytes | str | None, position: SourcePosition,
              errors: list[str], limit: int = DEFAULT_LIMITS.max_message_bytes) -> InvalidAlert:
    """Keep a rejected message: raw bytes (text, or base64 when not UTF-8) cut to ``limit``,
    key cut to KEY_KEPT characters, origin, errors (bounded); what was cut is noted."""
    key_text = key.decode("utf-8", "replace") if isinstance(key, bytes) else key
    key_cut = key_text is not None and len(key_text) > KEY_KEPT
    if key_cut:
        key_text = key_text[:KEY_KEPT]  # type: ignore[index]
    data = raw or b""
    text, enc, cut = kept_raw(data, limit)
    return InvalidAlert(raw=text, raw_encoding=enc, key=key_text, source=position, errors=bound_errors(errors),
                        raw_bytes=len(data), raw_truncated=cut, key_truncated=key_cut)


def derived_alert_id(position: SourcePosition) -> uuid.UUID:
    """An alert_id for an event that had none: the same source message gives the same id,
    so a re-consumed event is recognised downstream."""
    return uuid.uuid5(NAMESPACE, f"{position.topic}/{position.partition}/{position.offset}")


def validate_raw(
    raw: bytes | None, key: bytes | str | None, position: SourcePosition | tuple[str, int, int], *,
    now: dt.datetime, limits: InputLimits = DEFAULT_LIMITS,
) -> AlertEvent | InvalidAlert:
    """Decode and validate one message against ``limits`` at the time ``now``; never raises.
    ``position`` may be a (topic, partition, offset) tuple: it becomes a SourcePosition only
    when one is needed."""
    def where() -> SourcePosition:
        if isinstance(position, SourcePosition):
            return position
        topic, partition, offset = position
        return SourcePosition(topic=topic, partition=partition, offset=offset)

    limit = limits.max_message_bytes
    if raw is None:
        return rejection(None, key, where(), ["event: empty message (no value)"], limit)
    too_large = size_error(raw, limit)
    if too_large:
        return rejection(raw, key, where(), [too_large], limit)
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
                # the usual message in plain Python, anything else by the model (alert.fast_alert)
                event = fast_alert(data) or AlertEvent.model_validate(data)
            except ValidationError as exc:
                errors = format_errors(exc)
            except (ValueError, TypeError, RecursionError) as exc:  # defensive: never raise
                errors = [f"event: {exc}"]
            else:
                ahead = future_skew_error(event.event_timestamp, now, limits.max_future_skew_s)
                if ahead is None:
                    return event
                errors = [ahead]
    return rejection(raw, key, where(), errors, limit)
