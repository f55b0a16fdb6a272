"""Raw bytes from ``P.alerts`` to a valid AlertEvent or a kept rejection: never raises,
never loses the raw bytes (DESIGN "Nothing received is ever dropped silently")."""

from __future__ import annotations

import base64
import datetime as dt
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
from tocsin.schemas.validate import (
    DEFAULT_LIMITS,
    InputLimits,
    bound_errors,
    derived_alert_id,
    validate_raw,
)

POS = SourcePosition(topic="tocsin.alerts", partition=3, offset=42)
VALID: dict[str, Any] = {"type": "db_write_fail", "severity": "SEV2", "summary": "db down",
                         "event_timestamp": "2024-05-01T14:00:00+02:00"}
#: the worker's clock in these tests: an hour after VALID's event time
NOW = dt.datetime(2024, 5, 1, 13, 0, tzinfo=dt.UTC)
LIMIT = DEFAULT_LIMITS.max_message_bytes


def raw_of(result: InvalidAlert) -> bytes:
    if result.raw_encoding == "text":
        return result.raw.encode("utf-8")
    assert result.raw_encoding == "base64"
    return base64.b64decode(result.raw, validate=True)


def check(raw: bytes | None, key: bytes | str | None = None, now: dt.datetime = NOW,
          limits: InputLimits = DEFAULT_LIMITS) -> AlertEvent | InvalidAlert:
    """The contract of validate_raw, for any input."""
    result = validate_raw(raw, key, POS, now=now, limits=limits)
    assert isinstance(result, AlertEvent | InvalidAlert)
    limit = limits.max_message_bytes
    if isinstance(result, InvalidAlert):
        assert result.errors and all(isinstance(e, str) and e for e in result.errors)
        whole = raw or b""
        kept = raw_of(result)
        # the raw bytes kept: all of them, or (noted) the first ones up to the limit
        assert result.raw_bytes == len(whole)
        assert result.raw_truncated == (len(whole) > limit)
        assert kept == whole if not result.raw_truncated else (whole.startswith(kept) and len(kept) <= limit)
        assert result.source == POS
        # the rejection itself goes to P.alerts.invalid: it must encode, read back, and be bounded
        encoded = dumps(result)
        back = InvalidAlert.model_validate(loads(encoded))
        assert raw_of(back) == kept
        assert len(encoded) <= 2 * limit + 16_384, len(encoded)
        assert len(result.errors) <= 21 and all(len(e) <= 300 for e in result.errors)
    else:
        assert AlertEvent.model_validate(loads(dumps(result))) == result
        assert len(result.fingerprint) <= 512 and len(result.resolves or "") <= 512
        assert (result.event_timestamp - now).total_seconds() <= limits.max_future_skew_s
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
    other = validate_raw(orjson.dumps(VALID), None, POS.model_copy(update={"offset": 43}), now=NOW)
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
        (b"[" * 60_000, "text", "event: invalid JSON"),  # nesting bomb
        (b"[" * 100_000, "text", "event: message is 100,000 bytes, over the 65,536-byte limit"),
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


# ---------------------------------------------------------------- bounded input (issue #14)


def padded(size: int, **over: Any) -> bytes:
    """A valid event of exactly ``size`` bytes (JSON allows trailing whitespace)."""
    raw = orjson.dumps({**VALID, **over})
    assert len(raw) <= size
    return raw + b" " * (size - len(raw))


def test_a_330_kb_message_is_rejected_before_it_is_parsed_and_kept_cut() -> None:
    big = orjson.dumps({**VALID, "entity": {"account_id": "a" * 330_000}})
    result = check(big, b"k")
    assert isinstance(result, InvalidAlert)
    assert result.errors == [f"event: message is {len(big):,} bytes, over the 65,536-byte limit "
                             "(TOCSIN_MAX_MESSAGE_BYTES)"]
    assert result.raw_truncated and result.raw_bytes == len(big) and len(raw_of(result)) == LIMIT
    assert len(dumps(result)) < LIMIT + 2048  # the invalid record is bounded, not 1.3 MB


@pytest.mark.parametrize(("limit", "size", "valid"), [
    (65_536, 65_536, True),
    (65_536, 65_537, False),
    (1024, 1024, True),
    (1024, 1025, False),
    (1024, 200, True),
])
def test_message_size_limit(limit: int, size: int, valid: bool) -> None:
    result = check(padded(size), limits=InputLimits(max_message_bytes=limit))
    assert isinstance(result, AlertEvent) == valid
    if not valid:
        assert isinstance(result, InvalidAlert)
        assert result.errors == [f"event: message is {size:,} bytes, over the {limit:,}-byte limit "
                                 "(TOCSIN_MAX_MESSAGE_BYTES)"]


@pytest.mark.parametrize(("change", "error"), [
    ({"entity": {"account_id": "a" * 257}}, "entity.account_id: String should have at most 256 characters"),
    ({"entity": {"symbol": "s" * 257}}, "entity.symbol: String should have at most 256 characters"),
    ({"entity": {"strategy_id": "s" * 10_000}}, "entity.strategy_id: String should have at most 256 characters"),
    ({"entity": {"run_id": "r" * 257}}, "entity.run_id: String should have at most 256 characters"),
    ({"source": "s" * 256}, "source: String should have at most 255 characters"),
    ({"fingerprint": "f" * 513}, "fingerprint: String should have at most 512 characters"),
    ({"resolves": "f" * 513}, "resolves: String should have at most 512 characters"),
    # each entity field within its limit, but the default fingerprint they make is not
    ({"entity": {"account_id": "a" * 256, "symbol": "s" * 256}},
     "fingerprint: the default fingerprint type:account_id:symbol:strategy_id is 528 characters, over the "
     "512-character limit; shorten the entity fields or set fingerprint"),
    ({"type": "component_recovered", "entity": {"account_id": "a" * 200, "symbol": "s" * 200, "strategy_id": "k" * 200}},
     "fingerprint: the default fingerprint type:account_id:symbol:strategy_id is 622 characters, over the "
     "512-character limit; shorten the entity fields or set fingerprint"),
])
def test_text_fields_are_bounded_the_derived_ones_too(change: dict[str, Any], error: str) -> None:
    result = check(orjson.dumps({**VALID, **change}))
    assert isinstance(result, InvalidAlert)
    assert result.errors == [error]


@pytest.mark.parametrize("change", [
    {"entity": {"account_id": "a" * 256, "symbol": "s" * 200}},  # 471 characters
    {"entity": {"account_id": "a" * 256, "symbol": "s" * 256}, "fingerprint": "given:by-the-producer"},
    {"type": "component_recovered", "entity": {"account_id": "a" * 240, "symbol": "s" * 240}},
    {"source": "s" * 255},
])
def test_long_but_bounded_text_is_valid(change: dict[str, Any]) -> None:
    result = check(orjson.dumps({**VALID, **change}))
    assert isinstance(result, AlertEvent)


def test_the_key_kept_on_a_rejection_is_cut() -> None:
    result = check(b"nope", b"k" * 100_000)
    assert isinstance(result, InvalidAlert)
    assert result.key == "k" * 512 and result.key_truncated


def test_ten_thousand_unknown_fields_make_a_few_error_lines() -> None:
    doc = {**VALID, **{f"field_{i}_" + "x" * 400: i for i in range(10_000)}}
    result = check(orjson.dumps(doc), limits=InputLimits(max_message_bytes=8 << 20))
    assert isinstance(result, InvalidAlert)
    # the field's name cut, so the line keeps room for why
    assert result.errors[0] == "field_0_" + "x" * 53 + "...: Extra inputs are not permitted"
    assert bound_errors([f"e{i}" for i in range(10_000)]) == [f"e{i}" for i in range(20)] + [
        "event: ... and 9,980 more errors"]


@pytest.mark.parametrize("change", [{"severity": "S" * 60_000}, {"event_timestamp": "2024" * 15_000}])
def test_a_rejected_value_is_not_repeated_whole_in_its_error(change: dict[str, Any]) -> None:
    result = check(orjson.dumps({**VALID, **change}))
    assert isinstance(result, InvalidAlert) and len(result.errors) == 1 and len(result.errors[0]) < 200


def test_text_that_json_would_blow_up_is_kept_as_base64() -> None:
    raw = b"\x01" * 60_000  # valid UTF-8, but six bytes each in JSON
    result = check(raw)
    assert isinstance(result, InvalidAlert) and result.raw_encoding == "base64"
    assert len(dumps(result)) < 60_000 * 4 // 3 + 2048


# -- the worker's clock is a parameter: an event far ahead of it would hold its throttle and
# -- status rows for ever; the past is not limited (replays)


@pytest.mark.parametrize(("ahead_s", "skew_s", "valid"), [
    (86_400, 300, False),  # a day ahead
    (60, 300, True),  # a minute ahead: clocks differ
    (300, 300, True),
    (301, 300, False),
    (1, 0, False),
    (0, 0, True),
    (-10 * 365 * 86_400, 300, True),  # ten years ago: a replay
    (-1, 0, True),
])
def test_future_skew(ahead_s: int, skew_s: float, valid: bool) -> None:
    at = NOW + dt.timedelta(seconds=ahead_s)
    result = check(orjson.dumps({**VALID, "event_timestamp": at.isoformat()}),
                   limits=InputLimits(max_future_skew_s=skew_s))
    assert isinstance(result, AlertEvent) == valid
    if not valid:
        assert isinstance(result, InvalidAlert) and len(result.errors) == 1
        error = result.errors[0]
        assert error.startswith(f"event_timestamp: {at.isoformat()} is {ahead_s:,} s ahead of this worker's clock")
        assert error.endswith(f"over the {skew_s:g} s limit (TOCSIN_MAX_FUTURE_SKEW_S)"), error


def test_the_same_message_is_valid_until_the_clock_is_too_far_behind_it() -> None:
    raw = orjson.dumps(VALID)  # 12:00 UTC
    assert isinstance(check(raw, now=dt.datetime(2024, 5, 1, 11, 55, tzinfo=dt.UTC)), AlertEvent)
    assert isinstance(check(raw, now=dt.datetime(2024, 5, 1, 11, 54, 59, tzinfo=dt.UTC)), InvalidAlert)
    assert isinstance(check(raw, now=dt.datetime(2030, 1, 1, tzinfo=dt.UTC)), AlertEvent)


entity_text = st.none() | st.text(max_size=300) | st.text(alphabet="ab", min_size=100, max_size=300)


@given(st.sampled_from(["db_write_fail", "component_recovered", "x" * 64]),
       st.fixed_dictionaries({"account_id": entity_text, "symbol": entity_text, "strategy_id": entity_text,
                              "run_id": entity_text}),
       st.none() | st.text(max_size=600))
@settings(max_examples=300)
def test_the_fingerprint_is_bounded_or_the_event_invalid(type_: str, entity: dict[str, Any],
                                                         fingerprint: str | None) -> None:
    doc = {**VALID, "type": type_, "entity": entity}
    if fingerprint is not None:
        doc["fingerprint"] = fingerprint
    result = check(orjson.dumps(doc))  # asserts: a valid event's fingerprint and resolves are <= 512
    too_long = any(v is not None and len(v) > 256 for v in entity.values())
    if isinstance(result, AlertEvent):
        assert not too_long
    else:
        assert result.errors


@given(st.datetimes(min_value=dt.datetime(1970, 1, 2), max_value=dt.datetime(9000, 1, 1), timezones=st.just(dt.UTC)),
       st.datetimes(min_value=dt.datetime(1970, 1, 2), max_value=dt.datetime(9000, 1, 1), timezones=st.just(dt.UTC)),
       st.floats(0, 10 * 86_400))
@settings(max_examples=300)
def test_valid_exactly_when_at_most_the_skew_ahead(when: dt.datetime, now: dt.datetime, skew: float) -> None:
    result = check(orjson.dumps({**VALID, "event_timestamp": when.isoformat()}), now=now,
                   limits=InputLimits(max_future_skew_s=skew))
    assert isinstance(result, AlertEvent) == ((when - now).total_seconds() <= skew)


@given(st.binary(max_size=3000), st.integers(1024, 2048))
@settings(max_examples=200)
def test_any_bytes_under_any_limit(raw: bytes, limit: int) -> None:
    check(raw, raw[:10], limits=InputLimits(max_message_bytes=limit))
