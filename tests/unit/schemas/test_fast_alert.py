"""``fast_alert`` (schemas/alert.py) builds exactly what ``AlertEvent.model_validate`` does
from the same JSON, or leaves the message to it."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tocsin.decisions.throttle import decision_id_text
from tocsin.schemas.alert import AlertEvent, alert_record, create_alert, fast_alert
from tocsin.schemas.codec import dumps
from tocsin.schemas.messages import Decision, Outcome, decision_record, fast_decision

from .test_validate import VALID, json_any, near_valid


def as_json(doc: Any) -> Any:
    """``doc`` as the throttle gets it: JSON text read by orjson (which refuses some)."""
    try:
        return orjson.loads(json.dumps(doc))
    except orjson.JSONDecodeError:
        assume(False)


def same(data: dict[str, Any]) -> AlertEvent | None:
    """``fast_alert(data)`` checked against the model: equal values of the same types, the
    same fields set, the same dump; None when the model refuses it too or fast_alert leaves it."""
    fast = fast_alert(dict(data))
    try:
        model = AlertEvent.model_validate(dict(data))
    except ValueError:  # pydantic's ValidationError is one
        assert fast is None, data
        return None
    if fast is None:
        return None
    assert fast == model
    assert fast.model_fields_set == model.model_fields_set
    assert fast.entity.model_fields_set == model.entity.model_fields_set
    assert {k: type(v) for k, v in fast} == {k: type(v) for k, v in model}
    assert fast.model_dump(mode="python") == model.model_dump(mode="python")
    assert dumps(fast) == dumps(model)
    assert alert_record(fast) == model.model_dump(mode="python")
    return fast


@given(near_valid(), st.booleans())
@settings(max_examples=1000, suppress_health_check=[HealthCheck.too_slow])
def test_near_valid_events_as_the_model_makes_them(doc: dict[str, Any], with_id: bool) -> None:
    doc = as_json(doc)
    if with_id or not doc.get("alert_id"):
        doc["alert_id"] = uuid.uuid4() if not with_id else str(uuid.uuid4())
    same(doc)


@given(st.dictionaries(st.sampled_from(sorted(AlertEvent.model_fields) + ["x"]), json_any, max_size=12))
@settings(max_examples=300)
def test_arbitrary_objects(doc: dict[str, Any]) -> None:
    same(as_json(doc))


@given(type_=st.sampled_from(["component_recovered", "component_unhealthy", "x.y-z", "order_rejected"]),
       severity=st.sampled_from([1, 2, 3, "SEV2"]), fp=st.sampled_from(["", "component_recovered:redis", "a:b"]),
       entity=st.fixed_dictionaries({}, optional={"account_id": st.text(max_size=300) | st.integers() | st.floats(),
                                                  "symbol": st.none() | st.text(max_size=5)}) | st.none(),
       resolves=st.sampled_from([None, "", "x"]), action=st.sampled_from(["trigger", "resolve"]),
       summary=st.text(max_size=300), details=st.none() | st.dictionaries(st.text(max_size=5), json_any, max_size=4))
@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
def test_valid_shapes(type_: str, severity: Any, fp: str, entity: Any, resolves: Any, action: str, summary: str,
                      details: Any) -> None:
    doc = {"alert_id": str(uuid.uuid4()), "type": type_, "severity": severity, "summary": summary or "s",
           "event_timestamp": "2024-05-01T14:00:00+02:00", "fingerprint": fp, "entity": entity,
           "resolves": resolves, "action": action, "details": details}
    same(as_json(doc))


@pytest.mark.parametrize("doc", [
    {**VALID, "alert_id": str(uuid.uuid4())},
    {**VALID, "alert_id": uuid.uuid4(), "severity": 1, "details": {"i": 1, "big": 2**63}},
    orjson.loads(dumps(create_alert("component_recovered", 2, "up", account_id="A", symbol="S",
                                    event_timestamp=dt.datetime(2024, 5, 1, tzinfo=dt.UTC)))),
    orjson.loads(dumps(create_alert("order_rejected", 3, "x", fingerprint="bench:1", details={"i": 1}))),
])
def test_the_usual_messages_take_the_fast_path(doc: dict[str, Any]) -> None:
    assert same(doc) is not None


scalars = (st.none() | st.booleans() | st.integers(-(2**64), 2**64) | st.floats() | st.text(max_size=5)
           | st.decimals(allow_nan=False) | st.uuids())


@given(st.dictionaries(st.text(max_size=5) | st.integers(), scalars | st.lists(scalars, max_size=2), max_size=6))
def test_flat_details_are_copied_as_json_safe_makes_them(details: dict[Any, Any]) -> None:
    from tocsin.schemas.alert import _flat_copy, json_safe

    flat = _flat_copy(details)
    if flat is not None:
        expected = json_safe(details)
        assert flat == expected and flat is not details
        assert [type(v) for v in flat.values()] == [type(v) for v in expected.values()]


# ---------------------------------------------------------------- the lifecycle agent's decisions

INTERNAL = {"internal": True}


@given(outcome=st.sampled_from(list(Outcome)), suppressed=st.integers(0, 10_000) | json_any,
       dests=st.lists(st.sampled_from(["webhook:default", "email:risk"]), unique=True) | json_any,
       details=st.dictionaries(st.text(max_size=5), json_any, max_size=4),
       at=st.datetimes(min_value=dt.datetime(1970, 1, 2), timezones=st.just(dt.UTC)),
       drop=st.lists(st.sampled_from(["suppressed_count", "destinations", "decided_at", "reason", "alert"]),
                     max_size=2), extra=st.booleans(), change=st.none() | st.tuples(
                         st.sampled_from(["decision_id", "window_start", "outcome", "dedupe_key"]), json_any))
@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
def test_decisions_as_the_model_reads_them(outcome: Outcome, suppressed: Any, dests: Any, details: dict[str, Any],
                                           at: dt.datetime, drop: list[str], extra: bool,
                                           change: tuple[str, Any] | None) -> None:
    alert = create_alert("component_recovered", 2, "up", account_id="A", event_timestamp=at, details=details)
    rec = decision_record(decision_id_text(alert.alert_id), alert_record(alert),
                          "k:1", outcome, "why", at, 0, [], at + dt.timedelta(microseconds=7))
    data = as_json(orjson.loads(dumps(rec)))
    data["suppressed_count"], data["destinations"] = suppressed, dests
    for name in drop:
        data.pop(name, None)
    if extra:
        data["unknown"] = 1
    if change is not None:
        data[change[0]] = change[1]
    data = as_json(data)
    fast = fast_decision(data)
    try:
        model = Decision.model_validate(data, context=INTERNAL)
    except ValueError:
        assert fast is None
        return
    if fast is None:
        assert "decided_at" in drop or change is not None or type(suppressed) is not int or type(dests) is not list
        return
    assert fast == model and fast.alert == model.alert
    assert fast.model_fields_set == model.model_fields_set
    assert fast.alert.model_fields_set == model.alert.model_fields_set
    assert {k: type(v) for k, v in fast} == {k: type(v) for k, v in model}
    assert dumps(fast) == dumps(model)


def test_a_throttle_decision_takes_the_fast_path() -> None:
    alert = create_alert("order_rejected", 3, "x", fingerprint="bench:1", details={"i": 1})
    rec = decision_record(decision_id_text(alert.alert_id), alert_record(alert), "bench:1:3", Outcome.SUPPRESS,
                          "duplicate in window", dt.datetime(2026, 1, 1, tzinfo=dt.UTC), 4, [],
                          dt.datetime.now(dt.UTC))
    data = orjson.loads(dumps(rec))
    fast = fast_decision(data)
    assert fast is not None and fast == Decision.model_validate(data, context=INTERNAL)
