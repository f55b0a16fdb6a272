"""Raw bytes from ``P.alerts`` to a valid AlertEvent or a kept rejection: never raises,
never loses the raw bytes (DESIGN "Nothing received is ever dropped silently")."""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tocsin.schemas.alert import AlertEvent
from tocsin.schemas.codec import dumps, loads
from tocsin.schemas.messages import InvalidAlert, SourcePosition
from tocsin.schemas.validate import derived_alert_id, validate_raw

POS = SourcePosition(topic="tocsin.alerts", partition=3, offset=42)
VALID: dict[str, Any] = {"type": "db_write_fail", "severity": "SEV2", "summary": "db down",
                         "event_timestamp": "2024-05-01T14:00:00+02:00"}


def raw_of(result: InvalidAlert) -> bytes:
    if result.raw_encoding == "text":
        return result.raw.encode("utf-8")
    assert result.raw_encoding == "base64"
    return base64.b64decode(result.raw, validate=True)


def check(raw: bytes | None, key: bytes | str | None = None) -> AlertEvent | InvalidAlert:
    """The contract of validate_raw, for any input."""
    result = validate_raw(raw, key, POS)
    assert isinstance(result, AlertEvent | InvalidAlert)
    if isinstance(result, InvalidAlert):
        assert result.errors and all(isinstance(e, str) and e for e in result.errors)
        assert raw_of(result) == (raw or b"")
        assert result.source == POS
        # the rejection itself goes to P.alerts.invalid: it must encode and read back
        back = InvalidAlert.model_validate(loads(dumps(result)))
        assert raw_of(back) == (raw or b"")
    else:
        assert AlertEvent.model_validate(loads(dumps(result))) == result
    return result


# ---------------------------------------------------------------- tables


def test_valid_event() -> None:
    result = check(orjson.dumps(VALID), b"db_write_fail:::")
    assert isinstance(result, AlertEvent)
    assert result.severity == 2 and result.fingerprint == "db_write_fail:::"


def test_missing_alert_id_is_derived_from_the_position() -> None:
    a = check(orjson.dumps(VALID))
    b = check(orjson.dumps(VALID))
    assert isinstance(a, AlertEvent) and isinstance(b, AlertEvent)
    assert a.alert_id == b.alert_id == derived_alert_id(POS)  # re-consumed: recognised
    other = validate_raw(orjson.dumps(VALID), None, POS.model_copy(update={"offset": 43}))
    assert isinstance(other, AlertEvent) and other.alert_id != a.alert_id


def test_given_alert_id_is_kept() -> None:
    aid = uuid.uuid4()
    result = check(orjson.dumps({**VALID, "alert_id": str(aid)}))
    assert isinstance(result, AlertEvent) and result.alert_id == aid


@pytest.mark.parametrize(
    ("raw", "encoding", "error"),
    [
        (None, "text", "event: empty message"),
        (b"", "text", "event: invalid JSON"),
        (b"not json", "text", "event: invalid JSON"),
        (b"{", "text", "event: invalid JSON"),
        (b"\xff\xfe\x00garbage", "base64", "event: invalid JSON"),
        (b"\x80", "base64", "event: invalid JSON"),
        (b"null", "text", "event: must be a JSON object, got NoneType"),
        (b"[1, 2]", "text", "event: must be a JSON object, got list"),
        (b'"text"', "text", "event: must be a JSON object, got str"),
        (b"42", "text", "event: must be a JSON object, got int"),
        (b"[" * 100_000, "text", "event: invalid JSON"),  # nesting bomb
        ('{"summary": "caf\u00e9"}'.encode("latin-1"), "base64", "event: invalid JSON"),
    ],
)
def test_rejections(raw: bytes | None, encoding: str, error: str) -> None:
    result = check(raw, b"k")
    assert isinstance(result, InvalidAlert)
    assert result.raw_encoding == encoding
    assert result.errors[0].startswith(error), result.errors


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"type": "Bad Type"}, "type"),
        ({"severity": 7}, "severity"),
        ({"event_timestamp": "2024-05-01T12:00:00"}, "event_timestamp"),
        ({"event_timestamp": "0001-01-01T00:00:00+01:00"}, "event_timestamp"),
        ({"summary": ""}, "summary"),
        ({"details": [1]}, "details"),
        ({"action": "ack"}, "action"),
        ({"requires_action": "yes"}, "requires_action"),
        ({"alert_id": "nope"}, "alert_id"),
        ({"entity": {"account": "x"}}, "entity"),
    ],
)
def test_field_errors_name_the_field(change: dict[str, Any], field: str) -> None:
    result = check(orjson.dumps({**VALID, **change}))
    assert isinstance(result, InvalidAlert)
    assert any(e.startswith(field) for e in result.errors), result.errors


def test_every_missing_field_is_listed() -> None:
    result = check(b"{}")
    assert isinstance(result, InvalidAlert)
    assert sorted(e.split(":")[0] for e in result.errors) == ["event_timestamp", "severity", "summary", "type"]


@pytest.mark.parametrize(("key", "kept"), [(None, None), ("fp", "fp"), (b"fp", "fp"), (b"\xfffp", "\ufffdfp")])
def test_key_is_kept(key: bytes | str | None, kept: str | None) -> None:
    result = check(b"nope", key)
    assert isinstance(result, InvalidAlert) and result.key == kept


@pytest.mark.parametrize("depth", [40, 500, 1000])
def test_deeply_nested_details_are_sanitized_not_fatal(depth: int) -> None:
    raw = orjson.dumps({**VALID, "details": {}}).replace(b'"details":{}', b'"details":' + b'{"a":' * depth
                                                         + b"1" + b"}" * depth)
    result = check(raw)
    assert isinstance(result, AlertEvent)
    assert len(orjson.dumps(result.details)) <= 8192


# ---------------------------------------------------------------- properties

json_scalars = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) | st.text()
json_any = st.recursive(json_scalars, lambda c: st.lists(c, max_size=5) | st.dictionaries(st.text(max_size=10), c, max_size=5),
                        max_leaves=30)

FIELD_VALUES = {
    "alert_id": st.uuids().map(str) | json_any,
    "type": st.sampled_from(["db_write_fail", "component_recovered", "x.y-z"]) | json_any,
    "severity": st.sampled_from([1, 2, 3, "SEV1", "sev3", "2"]) | json_any,
    "event_timestamp": st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat()) | json_any,
    "fingerprint": st.text(max_size=600) | json_any,
    "entity": st.fixed_dictionaries({}, optional={"account_id": st.text() | st.integers(), "symbol": st.text(),
                                                  "strategy_id": json_any, "run_id": st.text()}) | json_any,
    "summary": st.text(max_size=400) | json_any,
    "details": st.dictionaries(st.text(max_size=20), json_any, max_size=10) | json_any,
    "source": st.text(max_size=300) | json_any,
    "action": st.sampled_from(["trigger", "resolve"]) | json_any,
    "resolves": st.text(max_size=600) | json_any,
    "requires_action": st.booleans() | json_any,
    "unknown_field": json_any,
}


@st.composite
def near_valid(draw: st.DrawFn) -> dict[str, Any]:
    doc = dict(VALID)
    for name in draw(st.lists(st.sampled_from(sorted(FIELD_VALUES)), max_size=6, unique=True)):
        if draw(st.integers(0, 4)) == 0:
            doc.pop(name, None)
        else:
            doc[name] = draw(FIELD_VALUES[name])
    return doc


@given(st.binary(max_size=2000))
@settings(max_examples=300)
def test_arbitrary_bytes(raw: bytes) -> None:
    check(raw, raw[:10])


@given(json_any)
@settings(max_examples=300)
def test_arbitrary_json(value: Any) -> None:
    check(json.dumps(value).encode())
    check(orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS) if _orjson_ok(value) else b"null")


def _orjson_ok(value: Any) -> bool:
    try:
        orjson.dumps(value)
    except orjson.JSONEncodeError:
        return False
    return True


@given(near_valid())
@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
def test_near_valid_events(doc: dict[str, Any]) -> None:
    raw = json.dumps(doc).encode()
    result = check(raw, b"key")
    if isinstance(result, InvalidAlert):
        fields = {e.split(":", 1)[0].split(".", 1)[0] for e in result.errors}
        assert fields <= set(FIELD_VALUES) | {"event"}, result.errors


@given(near_valid(), st.binary(max_size=8))
@settings(max_examples=200)
def test_corrupted_valid_events(doc: dict[str, Any], junk: bytes) -> None:
    raw = json.dumps(doc).encode()
    cut = len(raw) // 2
    check(raw[:cut] + junk + raw[cut:])
    check(raw + junk)
