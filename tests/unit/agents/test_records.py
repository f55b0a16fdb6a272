"""The throttle's plain-dict messages are exactly the models' (schemas/messages.py)."""

from __future__ import annotations

import datetime as dt
import uuid

import orjson
from hypothesis import given
from hypothesis import strategies as st

from tocsin.schemas import AlertEvent, Decision, DeliveryCommand, Outcome, create_alert, dumps
from tocsin.schemas.messages import AttemptStatus, DeliveryAttempt, command_record, decision_record

NOW = dt.datetime(2026, 11, 22, 14, 0, tzinfo=dt.UTC)


@given(outcome=st.sampled_from(list(Outcome)), suppressed=st.integers(0, 10_000),
       dests=st.lists(st.sampled_from(["webhook:default", "email:risk", "console:default"]), unique=True))
def test_decision_record_is_a_decision(outcome: Outcome, suppressed: int, dests: list[str]) -> None:
    alert = create_alert("order_rejected", 1, "x", account_id="A", event_timestamp=NOW)
    rec = decision_record(uuid.uuid4(), alert.model_dump(mode="python"), "k:1", outcome, "why", NOW,
                          suppressed, dests, NOW)
    model = Decision.model_validate(orjson.loads(dumps(rec)))
    assert model.alert == alert and model.outcome is outcome and model.destinations == dests
    assert orjson.loads(dumps(model)) == orjson.loads(dumps(rec))


@given(attempts=st.integers(1, 100), backoff=st.lists(st.floats(0, 60), min_size=1, max_size=6),
       suppressed=st.integers(0, 1000), failover=st.lists(st.sampled_from(["email:default", "console:default"]), unique=True))
def test_command_record_is_a_delivery_command(attempts: int, backoff: list[float], suppressed: int,
                                              failover: list[str]) -> None:
    alert = create_alert("db_write_fail", 2, "y", fingerprint="db:1", event_timestamp=NOW)
    rec = command_record("d1", alert.model_dump(mode="python"), "db:1:5", "webhook:default",
                         "webhook:default", attempts, backoff, suppressed, failover, NOW)
    model = DeliveryCommand.model_validate(orjson.loads(dumps(rec)))
    assert model.attempt == 1 and model.max_attempts == attempts and model.failover == failover
    assert model.alert == alert and model.channel == "webhook"
    assert orjson.loads(dumps(model)) == orjson.loads(dumps(rec))


@given(status=st.sampled_from(list(AttemptStatus)), code=st.none() | st.integers(100, 599),
       error=st.none() | st.text(max_size=50), ms=st.integers(0, 10_000_000), reason=st.text(max_size=20))
def test_attempt_record_is_a_delivery_attempt(status: AttemptStatus, code: int | None, error: str | None,
                                              ms: int, reason: str) -> None:
    from tocsin.agents.channels.base import DeliveryResult
    from tocsin.agents.delivery.records import attempt_record
    from tocsin.decisions.retry import Reason

    alert = create_alert("db_write_fail", 2, "y", fingerprint="db:1", event_timestamp=NOW)
    cmd = DeliveryCommand(delivery_id="d1", alert=alert, dedupe_key="db:1:5", receiver="webhook:default",
                          destination="webhook:default")
    result = DeliveryResult(code is not None and code < 300, True, Reason.SERVER_ERROR, code, error)
    finished = NOW + dt.timedelta(microseconds=ms)
    rec = attempt_record(cmd, status, NOW, finished, result, reason=reason)
    model = DeliveryAttempt.model_validate(orjson.loads(dumps(rec)))
    assert model.status is status and model.response_code == code and model.delivery_id == "d1"
    assert orjson.loads(dumps(model)) == orjson.loads(dumps(rec))  # the same JSON, field for field
    assert list(rec) == list(DeliveryAttempt.model_fields)


@given(details=st.dictionaries(st.text(max_size=10), st.integers() | st.text(max_size=30) | st.none(), max_size=8))
def test_internal_context_reads_an_alert_as_the_full_validation_does(details: dict) -> None:
    alert = create_alert("db_write_fail", 2, "y", fingerprint="db:1", event_timestamp=NOW, details=details)
    data = orjson.loads(dumps(alert))
    assert AlertEvent.model_validate(data, context={"internal": True}) == AlertEvent.model_validate(data)
