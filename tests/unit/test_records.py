"""The throttle's plain-dict messages are exactly the models' (schemas/messages.py)."""

from __future__ import annotations

import datetime as dt
import uuid

import orjson
from hypothesis import given
from hypothesis import strategies as st

from tocsin.schemas import Decision, DeliveryCommand, Outcome, create_alert, dumps
from tocsin.schemas.messages import command_record, decision_record

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
