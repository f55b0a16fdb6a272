"""Every rule of DESIGN "The alert event": tables of cases plus properties."""

from __future__ import annotations

import datetime as dt
import decimal
import enum
import uuid
from typing import Any

import orjson
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from tocsin.schemas.alert import (
    DETAILS_MAX_BYTES,
    KNOWN_TYPES,
    TOO_LARGE,
    AlertEvent,
    create_alert,
    json_safe,
    sanitize_details,
)

TS = "2024-05-01T12:00:00Z"
UTC_TS = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC)


def make(**over: Any) -> AlertEvent:
    data: dict[str, Any] = {"type": "db_write_fail", "severity": 2, "summary": "db down", "event_timestamp": TS}
    data.update(over)
    return AlertEvent.model_validate({k: v for k, v in data.items() if v is not ...})


def invalid(field: str, **over: Any) -> None:
    with pytest.raises(ValidationError) as info:
        make(**over)
    assert any(err["loc"][:1] == (field,) for err in info.value.errors()), info.value


# ---------------------------------------------------------------- alert_id


def test_alert_id_generated_when_absent() -> None:
    a, b = make(), make()
    assert isinstance(a.alert_id, uuid.UUID) and a.alert_id.version == 4
    assert a.alert_id != b.alert_id


@pytest.mark.parametrize("given_id", [uuid.UUID(int=7), "0a6b9b8e-5f1d-4c1b-9a6e-7c3d2b1a0f9e",
                                      "0A6B9B8E5F1D4C1B9A6E7C3D2B1A0F9E"])
def test_alert_id_kept(given_id: Any) -> None:
    assert make(alert_id=given_id).alert_id == uuid.UUID(str(given_id))


@pytest.mark.parametrize("bad", ["not-a-uuid", "1234", 12, ""])
def test_alert_id_must_be_a_uuid(bad: Any) -> None:
    invalid("alert_id", alert_id=bad)


# ---------------------------------------------------------------- type


@pytest.mark.parametrize("type_", sorted(KNOWN_TYPES) + ["a", "x" * 64, "my.service-alert_2", "0", "a.b.c", "-", "_"])
def test_type_accepted(type_: str) -> None:
    assert make(type=type_).type == type_


@pytest.mark.parametrize("type_", ["", "x" * 65, "DbWriteFail", "db write", "db/write", "db:write", "tÿpe",
                                   "db_write\n", "\ndb", " db", "db\t", "émoji🚨", None, 5])
def test_type_rejected(type_: Any) -> None:
    invalid("type", type=type_)


def test_known_types() -> None:
    assert KNOWN_TYPES == {
        "order_rejected", "order_filled", "position_limit_hit", "daily_loss_limit", "kill_switch_activated",
        "order_failed_permanently", "component_unhealthy", "component_recovered", "db_write_fail",
        "storage_threshold", "alert_delivery_failed"}


@given(st.from_regex(r"\A[a-z0-9_.-]{1,64}\Z"))
def test_any_type_matching_the_pattern_is_accepted(type_: str) -> None:
    assert make(type=type_).type == type_


# ---------------------------------------------------------------- severity


@pytest.mark.parametrize(
    ("given_sev", "sev"),
    [(1, 1), (2, 2), (3, 3), ("SEV1", 1), ("SEV2", 2), ("SEV3", 3), ("sev2", 2), ("1", 1), ("3", 3),
     (1.0, 1), (" SEV3 ", 3)],
)
def test_severity_accepted(given_sev: Any, sev: int) -> None:
    assert make(severity=given_sev).severity == sev


@pytest.mark.parametrize("bad", [0, 4, -1, "SEV0", "SEV4", "SEV", "S1", "high", "", 1.5, True, False, None, [1]])
def test_severity_rejected(bad: Any) -> None:
    invalid("severity", severity=bad)


def test_severity_required() -> None:
    invalid("severity", severity=...)


# ---------------------------------------------------------------- event_timestamp


@pytest.mark.parametrize(
    ("text", "utc"),
    [
        ("2024-05-01T12:00:00Z", UTC_TS),
        ("2024-05-01T12:00:00z", UTC_TS),
        ("2024-05-01T12:00:00+00:00", UTC_TS),
        ("2024-05-01T14:00:00+02:00", UTC_TS),
        ("2024-05-01T07:30:00-04:30", UTC_TS),
        ("2024-05-01T12:00:00.250Z", UTC_TS.replace(microsecond=250_000)),
        ("2024-05-02T00:00:00+12:00", UTC_TS),
        ("2024-05-01 12:00:00Z", UTC_TS),  # RFC 3339 allows a space
        (dt.datetime(2024, 5, 1, 14, 0, tzinfo=dt.timezone(dt.timedelta(hours=2))), UTC_TS),
    ],
)
def test_timestamp_stored_as_utc(text: Any, utc: dt.datetime) -> None:
    ts = make(event_timestamp=text).event_timestamp
    assert ts == utc
    assert ts.utcoffset() == dt.timedelta(0)
    assert ts.tzinfo is dt.UTC


@pytest.mark.parametrize(
    "bad",
    [
        "2024-05-01T12:00:00",  # naive
        "2024-05-01 12:00:00",  # naive
        dt.datetime(2024, 5, 1, 12, 0),  # naive
        "2024-05-01",  # a date
        "12:00:00Z",
        "yesterday",
        "",
        1714564800,  # epoch seconds
        1714564800.5,
        None,
        "2024-13-01T12:00:00Z",
        "2024-05-01T25:00:00Z",
        "0001-01-01T00:00:00+01:00",  # before year 1 in UTC
        "9999-12-31T23:59:59-01:00",  # after year 9999 in UTC
    ],
)
def test_timestamp_rejected(bad: Any) -> None:
    invalid("event_timestamp", event_timestamp=bad)


def test_naive_timestamp_error_says_why() -> None:
    with pytest.raises(ValidationError, match="naive"):
        make(event_timestamp="2024-05-01T12:00:00")


@given(st.datetimes(min_value=dt.datetime(1, 1, 2), max_value=dt.datetime(9999, 12, 30),
                    timezones=st.sampled_from([dt.UTC, dt.timezone(dt.timedelta(hours=-11)),
                                               dt.timezone(dt.timedelta(hours=5, minutes=45))])))
def test_any_aware_timestamp_is_the_same_instant_in_utc(when: dt.datetime) -> None:
    ts = make(event_timestamp=when.isoformat()).event_timestamp
    assert ts == when and ts.tzinfo is dt.UTC


@given(st.datetimes(min_value=dt.datetime(1, 1, 1), max_value=dt.datetime(9999, 12, 31, 23, 59),
                    timezones=st.timezones(no_cache=True) | st.just(dt.timezone(dt.timedelta(hours=-23)))))
@settings(max_examples=200)
def test_timestamp_never_raises_anything_but_a_validation_error(when: dt.datetime) -> None:
    try:
        ts = make(event_timestamp=when.isoformat()).event_timestamp
    except ValidationError:
        return
    assert ts.tzinfo is dt.UTC


# ---------------------------------------------------------------- fingerprint and entity


@pytest.mark.parametrize(
    ("type_", "entity", "fingerprint"),
    [
        ("daily_loss_limit", {"account_id": "acc", "symbol": "BTC", "strategy_id": "s1"}, "daily_loss_limit:acc:BTC:s1"),
        ("daily_loss_limit", {"account_id": "acc"}, "daily_loss_limit:acc::"),
        ("order_rejected", {"symbol": "ETH"}, "order_rejected::ETH:"),
        ("order_rejected", {"strategy_id": "s9"}, "order_rejected:::s9"),
        ("db_write_fail", None, "db_write_fail:::"),
        ("db_write_fail", {}, "db_write_fail:::"),
        ("x", {"account_id": "a", "run_id": "r1"}, "x:a::"),  # run_id is not part of it
        ("x", {"account_id": 42, "symbol": 1.5}, "x:42:1.5:"),  # numbers as text
    ],
)
def test_default_fingerprint_keeps_empty_parts(type_: str, entity: Any, fingerprint: str) -> None:
    assert make(type=type_, entity=entity).fingerprint == fingerprint


def test_explicit_fingerprint_is_kept() -> None:
    a = make(type="component_unhealthy", fingerprint="component_unhealthy:redis", entity={"account_id": "a"})
    assert a.fingerprint == "component_unhealthy:redis"


def test_entity_fields_are_optional_and_closed() -> None:
    assert make().entity.model_dump() == {"account_id": None, "symbol": None, "strategy_id": None, "run_id": None}
    invalid("entity", entity={"acount_id": "typo"})


@pytest.mark.parametrize("field", ["account_id", "symbol", "strategy_id", "run_id"])
def test_entity_fields_at_most_256_characters(field: str) -> None:
    assert getattr(make(entity={field: "x" * 256}).entity, field) == "x" * 256
    invalid("entity", entity={field: "x" * 257})
    invalid("entity", entity={field: "x" * 330_000})


def test_source_at_most_255_characters() -> None:
    assert make(source="s" * 255).source == "s" * 255
    invalid("source", source="s" * 256)


@pytest.mark.parametrize(
    ("over", "field"),
    [
        # each part within its limit, the fingerprint they make over 512: never a longer key
        ({"entity": {"account_id": "a" * 256, "symbol": "b" * 256}}, "fingerprint"),
        ({"type": "x" * 64, "entity": {"account_id": "a" * 150, "symbol": "b" * 150, "strategy_id": "c" * 150}},
         "fingerprint"),
        ({"type": "component_recovered", "entity": {"account_id": "a" * 256, "symbol": "b" * 256}}, "fingerprint"),
        ({"fingerprint": "f" * 513}, "fingerprint"),
        ({"resolves": "r" * 513}, "resolves"),
    ],
)
def test_fingerprint_and_resolves_checked_after_they_are_derived(over: dict[str, Any], field: str) -> None:
    invalid(field, **over)


def test_a_given_fingerprint_spares_the_long_entity() -> None:
    a = make(fingerprint="order_rejected:acc", entity={"account_id": "a" * 256, "symbol": "b" * 256})
    assert a.fingerprint == "order_rejected:acc"


@given(st.sampled_from(["db_write_fail", "component_recovered", "component_unhealthy", "t" * 64]),
       st.lists(st.none() | st.text(max_size=320), min_size=4, max_size=4), st.sampled_from(["trigger", "resolve"]))
@settings(max_examples=300)
def test_any_entity_gives_a_bounded_fingerprint_or_an_error(type_: str, parts: list[Any], action: str) -> None:
    entity = dict(zip(["account_id", "symbol", "strategy_id", "run_id"], parts, strict=True))
    try:
        a = make(type=type_, entity=entity, action=action)
    except ValidationError as exc:
        fields = {err["loc"][0] for err in exc.errors()}
        assert fields <= {"entity", "fingerprint", "resolves"}, exc
        return
    assert len(a.fingerprint) <= 512 and len(a.resolves or "") <= 512
    assert all(v is None or len(v) <= 256 for v in a.entity.model_dump().values())


# ---------------------------------------------------------------- summary


@pytest.mark.parametrize(
    ("text", "stored"),
    [
        ("x", "x"),
        ("  padded  ", "padded"),
        ("a" * 254, "a" * 254),
        ("a" * 255, "a" * 255),
        ("a" * 256, "a" * 252 + "..."),
        ("b" * 10_000, "b" * 252 + "..."),
        ("é" * 300, "é" * 252 + "..."),  # characters, not bytes
    ],
)
def test_summary_length(text: str, stored: str) -> None:
    assert make(summary=text).summary == stored


@pytest.mark.parametrize("bad", ["", "   ", "\n\t", None, 5, ["x"]])
def test_summary_rejected(bad: Any) -> None:
    invalid("summary", summary=bad)


@given(st.text(min_size=1, max_size=600).filter(lambda s: s.strip()))
def test_summary_always_1_to_255(text: str) -> None:
    try:
        s = make(summary=text).summary
    except ValidationError:
        return  # e.g. lone surrogates
    assert 1 <= len(s) <= 255
    if len(text.strip()) > 255:
        assert s.endswith("...") and len(s) == 255


# ---------------------------------------------------------------- details: JSON-safe


class Colour(enum.Enum):
    RED = "red"


@pytest.mark.parametrize(
    ("value", "safe"),
    [
        (decimal.Decimal("1.10"), "1.10"),
        (decimal.Decimal("NaN"), "NaN"),
        (dt.datetime(2024, 5, 1, 14, 0, tzinfo=dt.timezone(dt.timedelta(hours=2))), "2024-05-01T12:00:00+00:00"),
        (dt.datetime(2024, 5, 1, 12, 0), "2024-05-01T12:00:00"),
        (dt.date(2024, 5, 1), "2024-05-01"),
        (dt.time(12, 30), "12:30:00"),
        (uuid.UUID(int=1), "00000000-0000-0000-0000-000000000001"),
        (ValueError("boom"), "ValueError: boom"),
        (KeyError("k"), "KeyError: 'k'"),
        (Colour.RED, "red"),
        (b"bytes", "bytes"),
        (b"\xff", "\ufffd"),
        (float("nan"), "nan"),
        (float("inf"), "inf"),
        (2**64, str(2**64)),
        (-(2**63), str(-(2**63))),
        (2**63 - 1, 2**63 - 1),
        (1.5, 1.5),
        (True, True),
        (None, None),
        ((1, 2), [1, 2]),
        ({"b": decimal.Decimal("2")}, {"b": "2"}),
        ({1: "int key"}, {"1": "int key"}),
        (object, str(object)),
    ],
)
def test_json_safe(value: Any, safe: Any) -> None:
    assert json_safe(value) == safe
    orjson.dumps(json_safe(value))


def test_details_made_json_safe_in_the_event() -> None:
    a = create_alert("x", 1, "s", details={"amount": decimal.Decimal("12.50"), "at": UTC_TS,
                                           "id": uuid.UUID(int=3), "error": RuntimeError("db gone"),
                                           "tags": {"a"}})
    assert a.details == {"amount": "12.50", "at": "2024-05-01T12:00:00+00:00",
                         "id": str(uuid.UUID(int=3)), "error": "RuntimeError: db gone", "tags": ["a"]}
    orjson.dumps(a.model_dump(mode="json"))


@pytest.mark.parametrize("bad", [[1, 2], "text", 5, True])
def test_details_must_be_an_object(bad: Any) -> None:
    invalid("details", details=bad)


@pytest.mark.parametrize("empty", [None, {}])
def test_details_default_empty(empty: Any) -> None:
    assert make(details=empty).details == {}


def test_details_that_cannot_be_encoded_are_a_validation_error() -> None:
    with pytest.raises(ValidationError):
        create_alert("x", 1, "s", details={"lone": "\ud800"})


# ---------------------------------------------------------------- details: at most 8 KiB, three steps


def size(d: dict[str, Any]) -> int:
    return len(orjson.dumps(d))


def test_details_under_the_limit_untouched() -> None:
    d = {f"k{i}": "v" * 100 for i in range(40)}  # ~4.5 KiB
    assert size(d) <= DETAILS_MAX_BYTES
    assert sanitize_details(d) == d


def test_details_exactly_at_the_limit_untouched() -> None:
    d = {"k": ""}
    d["k"] = "x" * (DETAILS_MAX_BYTES - size(d))
    assert size(d) == DETAILS_MAX_BYTES
    assert sanitize_details(d) == d


def test_step1_first_20_keys_marked_truncated() -> None:
    d = {f"k{i:02}": "v" * 300 for i in range(40)}  # ~12.6 KiB, 20 keys fit
    out = sanitize_details(d)
    assert list(out) == [f"k{i:02}" for i in range(20)] + ["_truncated"]
    assert out["_truncated"] is True
    assert all(out[f"k{i:02}"] == "v" * 300 for i in range(20))  # strings whole
    assert size(out) <= DETAILS_MAX_BYTES


def test_step2_strings_cut_to_512() -> None:
    d = {f"k{i}": "w" * 2000 for i in range(10)}  # 10 keys, still too big: cut the strings
    out = sanitize_details(d)
    assert out["_truncated"] is True
    assert [k for k in out if k != "_truncated"] == list(d)
    assert all(out[k] == "w" * 512 for k in d)
    assert size(out) <= DETAILS_MAX_BYTES


def test_step2_cuts_nested_strings() -> None:
    d = {"outer": {"inner": ["z" * 5000, {"deep": "y" * 5000}]}}
    out = sanitize_details(d)
    assert out == {"outer": {"inner": ["z" * 512, {"deep": "y" * 512}]}, "_truncated": True}


def test_step3_replaced_when_still_too_large() -> None:
    d = {"numbers": list(range(5000))}  # no strings to cut
    assert sanitize_details(d) == TOO_LARGE == {"_truncated": True, "_error": "details too large"}
    d2 = {f"k{i}": ["s" * 600] * 20 for i in range(20)}  # 20 x 20 x 512 > 8 KiB after cutting
    assert sanitize_details(d2) == TOO_LARGE


def test_too_large_is_a_fresh_copy() -> None:
    out = sanitize_details({"n": list(range(5000))})
    out["mutated"] = 1
    assert "mutated" not in TOO_LARGE


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=700)
    | st.decimals(allow_nan=True) | st.uuids() | st.datetimes(timezones=st.just(dt.UTC)),
    lambda children: st.lists(children, max_size=6) | st.dictionaries(st.text(max_size=20), children, max_size=25),
    max_leaves=40,
)


@st.composite
def big_details(draw: st.DrawFn) -> dict[str, Any]:
    """Cheap to draw, often over 8 KiB: long strings, long number lists, nesting."""
    out: dict[str, Any] = {}
    for i in range(draw(st.integers(0, 60))):
        kind = draw(st.sampled_from(["str", "ints", "nested", "small"]))
        n = draw(st.integers(0, 3000))
        ch = draw(st.sampled_from(["a", "é", "\"", "🚨"]))
        out[f"k{i}"] = {"str": ch * n, "ints": list(range(n // 4)),
                        "nested": {"l": [ch * (n // 3)] * draw(st.integers(0, 6))},
                        "small": draw(st.integers() | st.text(max_size=20) | st.none())}[kind]
    return out


@given(st.dictionaries(st.text(max_size=30), json_values, max_size=40) | big_details())
@settings(max_examples=120, deadline=None)
def test_details_always_json_and_at_most_8k(details: dict[str, Any]) -> None:
    try:
        out = sanitize_details(details)
    except ValueError:
        return  # lone surrogates cannot be encoded: a validation error, tested above
    encoded = orjson.dumps(out)
    assert len(encoded) <= DETAILS_MAX_BYTES
    assert isinstance(out, dict)
    if out != json_safe(details):
        assert out.get("_truncated") is True
    event("too large" if out == TOO_LARGE else "truncated" if out.get("_truncated") else "whole")
    assert sanitize_details(out) == out  # idempotent: a re-read event keeps its details


# ---------------------------------------------------------------- action, resolves, requires_action


@pytest.mark.parametrize(("given_action", "stored"), [(..., "trigger"), ("trigger", "trigger"), ("resolve", "resolve")])
def test_action(given_action: Any, stored: str) -> None:
    assert make(action=given_action).action == stored


@pytest.mark.parametrize("bad", ["ack", "RESOLVE", "", None, 1])
def test_action_rejected(bad: Any) -> None:
    invalid("action", action=bad)


@pytest.mark.parametrize(
    ("over", "resolves"),
    [
        ({"type": "component_recovered", "entity": {"account_id": "a", "symbol": "S", "strategy_id": "k"}},
         "component_unhealthy:a:S:k"),
        ({"type": "component_recovered"}, "component_unhealthy:::"),
        ({"type": "component_recovered", "fingerprint": "component_recovered:redis"}, "component_unhealthy:redis"),
        ({"type": "component_recovered", "fingerprint": "component_recovered:redis:eu-1"},
         "component_unhealthy:redis:eu-1"),
        ({"type": "component_recovered", "fingerprint": "redis-health", "entity": {"symbol": "S"}},
         "component_unhealthy::S:"),
        ({"type": "component_recovered", "resolves": "component_unhealthy:cache"}, "component_unhealthy:cache"),
        ({"type": "db_write_fail"}, None),
        ({"type": "component_unhealthy"}, None),
        ({"type": "db_write_fail", "action": "resolve"}, None),
        ({"type": "db_write_fail", "action": "resolve", "resolves": "db_write_fail:::"}, "db_write_fail:::"),
    ],
)
def test_default_resolves(over: dict[str, Any], resolves: str | None) -> None:
    assert make(**over).resolves == resolves


def test_recovery_resolves_what_the_problem_was_fingerprinted_as() -> None:
    entity = {"account_id": "a", "symbol": "S"}
    problem = make(type="component_unhealthy", entity=entity)
    assert make(type="component_recovered", entity=entity).resolves == problem.fingerprint
    problem2 = make(type="component_unhealthy", fingerprint="component_unhealthy:redis")
    assert make(type="component_recovered", fingerprint="component_recovered:redis").resolves == problem2.fingerprint


@pytest.mark.parametrize(("over", "recovery"), [
    ({"type": "component_recovered"}, True), ({"action": "resolve"}, True), ({}, False),
    ({"type": "component_unhealthy"}, False)])
def test_is_recovery(over: dict[str, Any], recovery: bool) -> None:
    assert make(**over).is_recovery is recovery


@pytest.mark.parametrize(("given_flag", "stored"), [(..., False), (False, False), (True, True)])
def test_requires_action(given_flag: Any, stored: bool) -> None:
    assert make(requires_action=given_flag).requires_action is stored


@pytest.mark.parametrize("bad", ["true", "yes", 1, 0, None])
def test_requires_action_is_a_real_bool(bad: Any) -> None:
    invalid("requires_action", requires_action=bad)


# ---------------------------------------------------------------- the whole event


def test_source_optional() -> None:
    assert make().source is None
    assert make(source="risk-engine").source == "risk-engine"


def test_json_round_trip_is_stable() -> None:
    a = create_alert("daily_loss_limit", "SEV1", "Loss", event_timestamp="2024-05-01T14:00:00+02:00",
                     account_id="acc", details={"d": decimal.Decimal("1.5")}, requires_action=True)
    b = AlertEvent.model_validate_json(a.model_dump_json())
    assert b == a
    assert AlertEvent.model_validate(orjson.loads(orjson.dumps(a.model_dump(mode="json")))) == a


def test_create_alert_defaults_to_now_in_utc() -> None:
    before = dt.datetime.now(dt.UTC)
    a = create_alert("x", 3, "s")
    assert before <= a.event_timestamp <= dt.datetime.now(dt.UTC)
    assert a.event_timestamp.tzinfo is dt.UTC
