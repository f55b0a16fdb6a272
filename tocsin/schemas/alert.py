"""The alert event: validation, defaults and sanitizing rules (DESIGN "The alert event").

Pure: no I/O. ``AlertEvent`` is what every producer writes to ``P.alerts``;
``create_alert`` is the factory for Python producers.
"""

from __future__ import annotations

import datetime as dt
import decimal
import enum
import re
import reprlib
import uuid
from collections.abc import Mapping
from typing import Any, Literal

import orjson
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

KNOWN_TYPES = frozenset(
    {
        "order_rejected",
        "order_filled",
        "position_limit_hit",
        "daily_loss_limit",
        "kill_switch_activated",
        "order_failed_permanently",
        "component_unhealthy",
        "component_recovered",
        "db_write_fail",
        "storage_threshold",
        "alert_delivery_failed",
    }
)

#: recovery type -> the problem type it resolves
RECOVERS: dict[str, str] = {"component_recovered": "component_unhealthy"}

TYPE_RE = re.compile(r"^[a-z0-9_.-]{1,64}$")
SUMMARY_MAX = 255
DETAILS_MAX_BYTES = 8 * 1024
DETAILS_MAX_KEYS = 20
DETAILS_MAX_STRING = 512
TOO_LARGE: dict[str, Any] = {"_truncated": True, "_error": "details too large"}
#: longest entity field (account_id, symbol, strategy_id, run_id)
ENTITY_MAX = 256
#: longest source (the producing service)
SOURCE_MAX = 255
#: longest fingerprint and resolves, given or derived
FINGERPRINT_MAX = 512


_NUMBERS = (int, float)


class Entity(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    account_id: str | None = Field(default=None, max_length=ENTITY_MAX)
    symbol: str | None = Field(default=None, max_length=ENTITY_MAX)
    strategy_id: str | None = Field(default=None, max_length=ENTITY_MAX)
    run_id: str | None = Field(default=None, max_length=ENTITY_MAX)

    @field_validator("account_id", "symbol", "strategy_id", "run_id", mode="before")
    @classmethod
    def _text(cls, v: Any) -> Any:
        if isinstance(v, _NUMBERS) and not isinstance(v, bool):
            return str(v)
        return v


def default_fingerprint(type_: str, entity: Entity | None) -> str:
    """``type:account_id:symbol:strategy_id``, empty parts kept."""
    e = entity or Entity()
    return ":".join([type_, e.account_id or "", e.symbol or "", e.strategy_id or ""])


def default_resolves(type_: str, fingerprint: str, entity: Entity | None, explicit_fp: bool) -> str | None:
    """The fingerprint a recovery type resolves: its problem type with the same entity.

    When the producer named the recovery's fingerprint itself (``component_recovered:redis``),
    the problem's fingerprint is the same name with the problem type in front
    (``component_unhealthy:redis``).
    """
    problem = RECOVERS.get(type_)
    if problem is None:
        return None
    prefix = type_ + ":"
    if explicit_fp and fingerprint.startswith(prefix):
        return problem + ":" + fingerprint[len(prefix) :]
    return default_fingerprint(problem, entity)


def derived_too_long(value: str, what: str) -> str | None:
    """Why a derived fingerprint or resolves is too long (None: it is not). Checked on the
    value the event ends with, so no record is ever keyed by a longer one."""
    if len(value) <= FINGERPRINT_MAX:
        return None
    return (f"{what} is {len(value):,} characters, over the {FINGERPRINT_MAX}-character limit; "
            "shorten the entity fields or set fingerprint")


def short_repr(value: Any, limit: int = 80) -> str:
    """``repr`` of a rejected value, cut: an error message never carries a megabyte input."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def truncate_summary(text: str) -> str:
    if len(text) > SUMMARY_MAX:
        return text[: SUMMARY_MAX - 3] + "..."
    return text


_DEEP = reprlib.Repr()
_DEEP.maxlevel, _DEEP.maxdict, _DEEP.maxlist, _DEEP.maxstring, _DEEP.maxother = 3, 20, 20, 512, 512


def json_safe(value: Any, _depth: int = 0) -> Any:
    """Make a value JSON-safe: Decimal, datetime, UUID, exceptions and the rest as text."""
    if _depth > 32 and isinstance(value, Mapping | list | tuple | set | frozenset):
        return _DEEP.repr(value)  # bounded, so it never recurses as deep as the value does
    if value is None or isinstance(value, bool | int | str):
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 2**63:
            return str(value)
        return value
    if isinstance(value, float):
        return value if value == value and value not in (float("inf"), float("-inf")) else str(value)
    if isinstance(value, Mapping):
        return {str(k): json_safe(v, _depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [json_safe(v, _depth + 1) for v in value]
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.UTC)
        return value.isoformat()
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal | uuid.UUID):
        return str(value)
    if isinstance(value, enum.Enum):
        return json_safe(value.value, _depth + 1)
    if isinstance(value, BaseException):
        return f"{type(value).__name__}: {value}"
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


_BIG = 2**63


def _flat_copy(details: Any) -> dict[str, Any] | None:
    """``json_safe(details)`` when it is a dict of text keys and values JSON holds as they are
    (text, null, bool, an int of 64 bits, a finite float): a copy, without the recursive walk;
    None for any other (``json_safe`` then). A property test checks they agree."""
    if type(details) is not dict:
        return None
    for k, v in details.items():
        t = type(v)
        if type(k) is not str:
            return None
        if t is str or v is None or t is bool or (t is int and -_BIG < v < _BIG) or (t is float and v - v == 0.0):
            continue
        return None
    return dict(details)


def _encoded_size(obj: Any) -> int:
    return len(orjson.dumps(obj))


def _cut_strings(value: Any, limit: int) -> Any:
    if isinstance(value, str):
        return value[:limit]
    if isinstance(value, dict):
        return {k: _cut_strings(v, limit) for k, v in value.items()}
    if isinstance(value, list):
        return [_cut_strings(v, limit) for v in value]
    return value


def sanitize_details(details: Any) -> dict[str, Any]:
    """JSON-safe details of at most 8 KiB encoded, in three steps.

    1. over the limit: keep the first 20 keys and mark ``_truncated``;
    2. still over: cut every string to 512 characters;
    3. still over: replace with ``{"_truncated": true, "_error": "details too large"}``.
    """
    if details is None:
        return {}
    safe = _flat_copy(details)
    if safe is None:
        safe = json_safe(details)
    if not isinstance(safe, dict):
        raise ValueError("details must be a JSON object")
    try:
        full = _encoded_size(safe)
    except orjson.JSONEncodeError as exc:  # lone surrogates, say: not UTF-8
        raise ValueError(f"details cannot be encoded as JSON: {exc}") from None
    if full <= DETAILS_MAX_BYTES:
        return safe
    kept = dict(list(safe.items())[:DETAILS_MAX_KEYS])
    kept["_truncated"] = True
    if _encoded_size(kept) <= DETAILS_MAX_BYTES:
        return kept
    cut = _cut_strings(kept, DETAILS_MAX_STRING)
    if _encoded_size(cut) <= DETAILS_MAX_BYTES:
        return cut
    return dict(TOO_LARGE)


def parse_severity(v: Any) -> int:
    if isinstance(v, bool):
        raise ValueError("severity must be 1, 2 or 3 (or SEV1..SEV3)")
    if isinstance(v, str):
        s = v.strip().upper()
        if s.startswith("SEV"):
            s = s[3:]
        if s in ("1", "2", "3"):
            return int(s)
        raise ValueError(f"severity must be 1, 2 or 3 (or SEV1..SEV3), got {short_repr(v)}")
    if isinstance(v, int) and v in (1, 2, 3):
        return v
    if isinstance(v, float) and v in (1.0, 2.0, 3.0):
        return int(v)
    raise ValueError(f"severity must be 1, 2 or 3 (or SEV1..SEV3), got {short_repr(v)}")


def parse_timestamp(v: Any) -> dt.datetime:
    """RFC 3339 with an offset, returned in UTC; a naive timestamp is invalid."""
    if isinstance(v, dt.datetime):
        ts = v
    elif isinstance(v, str):
        text = v.strip()
        if text.endswith(("z", "Z")):
            text = text[:-1] + "+00:00"
        try:
            ts = dt.datetime.fromisoformat(text)
        except ValueError as exc:
            raise ValueError(f"event_timestamp is not RFC 3339: {short_repr(v)}") from exc
        if "T" not in text.upper() and " " not in text:
            raise ValueError(f"event_timestamp is not RFC 3339: {short_repr(v)}")
    else:
        raise ValueError("event_timestamp must be an RFC 3339 string with an offset")
    if ts.tzinfo is None or ts.utcoffset() is None:
        raise ValueError("event_timestamp is naive: an offset such as Z or +02:00 is required")
    try:
        return ts.astimezone(dt.UTC)
    except OverflowError:  # 0001-01-01T00:00+01:00 and the like: no UTC year 1..9999
        raise ValueError(f"event_timestamp is out of range in UTC: {short_repr(v)}") from None


class AlertEvent(BaseModel):
    """One alert event as published on ``P.alerts`` (normalized)."""

    model_config = ConfigDict(extra="forbid")

    alert_id: uuid.UUID = Field(default_factory=uuid.uuid4)
    type: str = Field(pattern=TYPE_RE.pattern, min_length=1, max_length=64)
    severity: Literal[1, 2, 3]
    event_timestamp: dt.datetime
    fingerprint: str = Field(default="", max_length=FINGERPRINT_MAX)
    entity: Entity = Field(default_factory=Entity)
    summary: str = Field(min_length=1)
    details: dict[str, Any] = Field(default_factory=dict)
    source: str | None = Field(default=None, max_length=SOURCE_MAX)
    action: Literal["trigger", "resolve"] = "trigger"
    resolves: str | None = Field(default=None, max_length=FINGERPRINT_MAX)
    requires_action: bool = False

    @field_validator("severity", mode="before")
    @classmethod
    def _severity(cls, v: Any) -> int:
        return parse_severity(v)

    @field_validator("event_timestamp", mode="before")
    @classmethod
    def _timestamp(cls, v: Any) -> dt.datetime:
        return parse_timestamp(v)

    @field_validator("summary", mode="before")
    @classmethod
    def _summary(cls, v: Any) -> Any:
        if isinstance(v, str):
            stripped = v.strip()
            if not stripped:
                raise ValueError("summary must not be empty")
            return truncate_summary(stripped)
        return v

    @field_validator("details", mode="before")
    @classmethod
    def _details(cls, v: Any, info: ValidationInfo) -> dict[str, Any]:
        # an alert inside Tocsin's own messages (context {"internal": True}) was sanitized
        # when it was first validated, and JSON gave it back: not walked again
        if isinstance(v, dict) and info.context and info.context.get("internal"):
            return v
        return sanitize_details(v)

    @field_validator("entity", mode="before")
    @classmethod
    def _entity(cls, v: Any) -> Any:
        return Entity() if v is None else v

    @field_validator("requires_action", mode="before")
    @classmethod
    def _strict_bool(cls, v: Any) -> Any:
        if not isinstance(v, bool):
            raise ValueError("requires_action must be true or false")
        return v

    @model_validator(mode="after")
    def _defaults(self) -> AlertEvent:
        # the derived values are checked as the given ones are: the entity fields are 256
        # characters at most, but four of them joined are longer than a fingerprint may be
        explicit = bool(self.fingerprint)
        errors: list[InitErrorDetails] = []
        if not explicit:
            self.fingerprint = default_fingerprint(self.type, self.entity)
            why = derived_too_long(self.fingerprint, "the default fingerprint type:account_id:symbol:strategy_id")
            if why:
                errors.append(_error("fingerprint", why, self.fingerprint))
        if self.resolves is None and not errors:
            self.resolves = default_resolves(self.type, self.fingerprint, self.entity, explicit)
            why = derived_too_long(self.resolves or "", "the default resolves (the problem's fingerprint)")
            if why:
                errors.append(_error("resolves", why, self.resolves))
        if errors:
            raise ValidationError.from_exception_data(type(self).__name__, errors)
        return self

    @property
    def is_recovery(self) -> bool:
        """Recovery types and ``resolve`` actions bypass the throttle."""
        return self.action == "resolve" or self.type in RECOVERS

    @property
    def epoch(self) -> float:
        return self.event_timestamp.timestamp()


# --------------------------------------------------------------------------- the fast path
# ``AlertEvent.model_validate`` runs eight Python validators through pydantic-core: most of the
# throttle's validation time. ``fast_alert`` decides the usual message (every value of its
# field's JSON type, nothing to coerce or report) with the same functions in plain Python and
# builds the event as ``model_construct`` would; anything else (a number as text, an error to
# report) returns None and takes ``model_validate``. A property test
# (tests/unit/schemas/test_fast_alert.py) checks that whatever it builds equals the model's
# own: values, types and fields set.

_FIELDS = frozenset(AlertEvent.model_fields)
_ENTITY_FIELDS = ("account_id", "symbol", "strategy_id", "run_id")
_ENTITY_KEYS = frozenset(_ENTITY_FIELDS)
_TYPE_FULL = re.compile(r"[a-z0-9_.-]{1,64}")
_UUID_TEXT = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_new = object.__new__
_set = object.__setattr__
_UNKNOWN_SAFETY = uuid.SafeUUID.unknown


def constructed(cls: type[BaseModel], values: dict[str, Any], fields_set: set[str]) -> Any:
    """An instance of ``cls`` holding ``values`` (every field, in the model's order), as
    ``model_construct`` leaves it (no extra, no private attributes), without its per-field
    Python loop. Only for values that already passed the model's rules."""
    m = _new(cls)
    _set(m, "__dict__", values)
    _set(m, "__pydantic_fields_set__", fields_set)
    _set(m, "__pydantic_extra__", None)
    _set(m, "__pydantic_private__", None)
    return m


def uuid_text(v: Any) -> uuid.UUID | None:
    """The UUID of its canonical text (any case), as pydantic reads it; None for anything else."""
    return _uuid_of(v) if type(v) is str and _UUID_TEXT.fullmatch(v) else None


def _uuid_of(text: str) -> uuid.UUID:
    u = _new(uuid.UUID)
    _set(u, "int", int(text.replace("-", ""), 16))
    _set(u, "is_safe", _UNKNOWN_SAFETY)
    return u


def _text_or_none(v: Any, limit: int) -> bool:
    return v is None or (type(v) is str and len(v) <= limit)


def _fast_entity(v: Any) -> Entity | None:
    if v is None:
        return constructed(Entity, dict.fromkeys(_ENTITY_FIELDS), set())
    if type(v) is not dict or not v.keys() <= _ENTITY_KEYS:
        return None
    values: dict[str, Any] = {}
    for name in _ENTITY_FIELDS:
        x = v.get(name)
        if type(x) is int or type(x) is float:
            x = str(x)  # Entity._text
        if not _text_or_none(x, ENTITY_MAX):
            return None
        values[name] = x
    return constructed(Entity, values, set(v))


def fast_alert(data: dict[str, Any], internal: bool = False) -> AlertEvent | None:
    """``AlertEvent.model_validate(data)`` for a message of the usual shape (``data`` as
    JSON gave it, its ``alert_id`` a UUID or its text), or None: then ``model_validate``
    decides (and says what is wrong). Never raises. ``internal``: an alert inside Tocsin's own
    messages (the model's context ``{"internal": True}``): its details dict is taken as it is."""
    if not data.keys() <= _FIELDS:
        return None
    get = data.get
    alert_id = get("alert_id")
    if not isinstance(alert_id, uuid.UUID):
        alert_id = uuid_text(alert_id)
        if alert_id is None:
            return None
    type_ = get("type")
    if type(type_) is not str or not (type_ in KNOWN_TYPES or _TYPE_FULL.fullmatch(type_)):
        return None
    fingerprint = get("fingerprint", "")
    source, resolves, action = get("source"), get("resolves"), get("action", "trigger")
    requires_action = get("requires_action", False)
    summary = get("summary")
    if (type(fingerprint) is not str or len(fingerprint) > FINGERPRINT_MAX or not _text_or_none(source, SOURCE_MAX)
            or not _text_or_none(resolves, FINGERPRINT_MAX) or (action != "trigger" and action != "resolve")
            or type(action) is not str or type(requires_action) is not bool or type(summary) is not str):
        return None
    summary = summary.strip()
    if not summary:
        return None
    entity = _fast_entity(get("entity"))
    if entity is None:
        return None
    try:
        severity = parse_severity(get("severity"))
        event_timestamp = parse_timestamp(get("event_timestamp"))
        given = get("details", {})
        details = given if internal and type(given) is dict else (
            sanitize_details(data["details"]) if "details" in data else {})
    except ValueError:
        return None
    fields_set = set(data)
    explicit = bool(fingerprint)
    if not explicit:
        fingerprint = default_fingerprint(type_, entity)
        if len(fingerprint) > FINGERPRINT_MAX:
            return None
        fields_set.add("fingerprint")
    if resolves is None:
        resolves = default_resolves(type_, fingerprint, entity, explicit)
        if resolves is not None and len(resolves) > FINGERPRINT_MAX:
            return None
        fields_set.add("resolves")
    return constructed(AlertEvent, {  # type: ignore[no-any-return]
        "alert_id": alert_id, "type": type_, "severity": severity, "event_timestamp": event_timestamp,
        "fingerprint": fingerprint, "entity": entity, "summary": truncate_summary(summary), "details": details,
        "source": source, "action": action, "resolves": resolves, "requires_action": requires_action,
    }, fields_set)


def alert_record(event: AlertEvent) -> dict[str, Any]:
    """``event.model_dump(mode="python")``, without the serializer's walk: the fields as they
    are, the entity as a dict (the details dict is the event's own: not to be changed)."""
    record = dict(event.__dict__)
    record["entity"] = dict(event.entity.__dict__)
    return record


def _error(field: str, message: str, value: Any) -> InitErrorDetails:
    """A validation error of ``field`` (the model validator's own errors have no field)."""
    cut = value[:100] if isinstance(value, str) else value
    return InitErrorDetails(type=PydanticCustomError("too_long", "{why}", {"why": message}), loc=(field,),
                            input=cut)


def create_alert(
    type: str,
    severity: int | str,
    summary: str,
    *,
    event_timestamp: dt.datetime | str | None = None,
    fingerprint: str | None = None,
    account_id: str | None = None,
    symbol: str | None = None,
    strategy_id: str | None = None,
    run_id: str | None = None,
    details: Mapping[str, Any] | None = None,
    source: str | None = None,
    action: str = "trigger",
    resolves: str | None = None,
    requires_action: bool = False,
    alert_id: uuid.UUID | str | None = None,
) -> AlertEvent:
    """Build a valid AlertEvent for a Python producer (raises ``pydantic.ValidationError``).

    The event time defaults to now, in UTC. Publish ``event.fingerprint`` as the key and
    ``encode(event)`` as the value.
    """
    data: dict[str, Any] = {
        "type": type,
        "severity": severity,
        "summary": summary,
        "event_timestamp": event_timestamp or dt.datetime.now(dt.UTC),
        "entity": {"account_id": account_id, "symbol": symbol, "strategy_id": strategy_id, "run_id": run_id},
        "details": dict(details or {}),
        "source": source,
        "action": action,
        "resolves": resolves,
        "requires_action": requires_action,
    }
    if fingerprint:
        data["fingerprint"] = fingerprint
    if alert_id:
        data["alert_id"] = alert_id
    return AlertEvent.model_validate(data)
