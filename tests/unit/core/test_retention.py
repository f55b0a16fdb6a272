"""How long state is kept (decisions/retention.py), and the delivery table's expiry
bookkeeping (core/tables.DeliveryStates): pure, the clock passed in."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tocsin.core.tables import DeliveryStates, state_of, written_of
from tocsin.decisions.retention import closed_at, delivery_expiry, status_expiry

T0 = dt.datetime(2026, 11, 22, 10, 0, tzinfo=dt.UTC)
DAY = 86400


def iso(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def status(state: str, changed: dt.datetime | None = T0, last: dt.datetime | None = T0) -> dict[str, Any]:
    return {"status": state, "status_changed_at": iso(changed) if changed else None,
            "last_seen": iso(last) if last else None}


@pytest.mark.parametrize(("s", "now", "expired", "why"), [
    (None, T0, False, "no status"),
    (status("active"), T0 + dt.timedelta(days=400), False, "kept while open"),
    (status("acknowledged"), T0 + dt.timedelta(days=400), False, "kept while open"),
    (status("resolved"), T0 + dt.timedelta(days=7), True, "past the 604800 s retention"),
    (status("dismissed"), T0 + dt.timedelta(days=7), True, "past the 604800 s retention"),
    (status("resolved"), T0 + dt.timedelta(days=7) - dt.timedelta(microseconds=1), False, "within"),
    (status("resolved"), T0 + dt.timedelta(days=8), True, "past"),
    # closed at the later of the two times: a late occurrence moved last_seen after the resolve
    (status("resolved", changed=T0, last=T0 + dt.timedelta(days=1)), T0 + dt.timedelta(days=7), False, "within"),
    (status("resolved", changed=T0 + dt.timedelta(days=1), last=T0), T0 + dt.timedelta(days=7), False, "within"),
    (status("resolved", changed=None, last=T0), T0 + dt.timedelta(days=7), True, "past"),
    (status("resolved", changed=None, last=None), T0 + dt.timedelta(days=70), False, "no known time"),
    ({"status": "resolved", "status_changed_at": "yesterday"}, T0, False, "no known time"),
    ({"status": None}, T0 + dt.timedelta(days=70), False, "not a closed one"),
    ({"status": "exploded", "status_changed_at": iso(T0)}, T0 + dt.timedelta(days=70), False, "not a closed one"),
    # a status closed in the future (a producer's clock ahead) is kept until retention after it
    (status("resolved", changed=T0 + dt.timedelta(days=1)), T0, False, "within"),
])
def test_status_expiry(s: dict[str, Any] | None, now: dt.datetime, expired: bool, why: str) -> None:
    decision = status_expiry(s, now, 7 * DAY)
    assert decision.expired is expired
    assert why in decision.reason


times = st.datetimes(min_value=dt.datetime(2000, 1, 1), max_value=dt.datetime(2100, 1, 1),
                     timezones=st.just(dt.UTC))
retentions = st.integers(min_value=1, max_value=400 * DAY)


@given(state=st.sampled_from(["active", "acknowledged"]), changed=times, last=times, now=times, retention=retentions)
def test_an_open_status_is_never_expired(state: str, changed: dt.datetime, last: dt.datetime, now: dt.datetime,
                                         retention: int) -> None:
    assert not status_expiry(status(state, changed, last), now, retention).expired


@given(state=st.sampled_from(["resolved", "dismissed"]), changed=times, last=times, retention=retentions,
       later=st.integers(min_value=0, max_value=10**12))
def test_a_closed_status_is_expired_exactly_after_retention(state: str, changed: dt.datetime, last: dt.datetime,
                                                           retention: int, later: int) -> None:
    s = status(state, changed, last)
    since = max(changed, last)
    assert closed_at(s) == since
    due = since + dt.timedelta(seconds=retention)
    assert status_expiry(s, due, retention).expired
    assert status_expiry(s, due + dt.timedelta(microseconds=later), retention).expired
    assert not status_expiry(s, due - dt.timedelta(microseconds=1 + later), retention).expired


@pytest.mark.parametrize(("written", "now", "expired"), [
    (None, 10**10, False),
    (1000, 1000 + 99, False),
    (1000, 1000 + 100, True),
    (1000, 1000 + 101, True),
    (1000, 500, False),
])
def test_delivery_expiry(written: int | None, now: int, expired: bool) -> None:
    assert delivery_expiry(written, now, 100).expired is expired


def test_delivery_values_carry_their_written_minute_and_share_one_tuple_per_minute() -> None:
    states = DeliveryStates(3600)
    a = states.stamp("d1", "sent", 0, now=1_000_001)
    b = states.stamp("d2", "sent", 1, now=1_000_019.5)
    assert a == ("sent", 1_000_020) and a is b  # rounded up: never early, and shared
    assert state_of(a) == "sent" and written_of(a) == 1_000_020
    assert state_of(["dead", 5]) == "dead" and state_of("sent") == "sent" and state_of(None) is None
    assert written_of("sent") is None
    assert states.canonical(["sent", 1_000_020]) is a  # as read back from the changelog


def test_expired_delivery_states_are_deleted_and_only_owned_ones_tombstoned() -> None:
    states = DeliveryStates(3600)
    data: dict[str, Any] = {}
    for key, partition in (("a", 0), ("b", 1), ("c", 0)):
        data[key] = states.stamp(key, "sent", partition, now=0)
    data["d"] = states.stamp("d", "dead", 0, now=1800)
    assert states.expired(data, 3599, owned={0, 1}) == []
    out = states.expired(data, 3600, owned={0})
    assert sorted(out) == [("a", 0), ("c", 0)]  # b's partition is another worker's: no tombstone here
    assert set(data) == {"d"}  # but b is gone from this worker's store too
    assert states.expired(data, 5399, owned={0}) == []
    assert states.expired(data, 5400, owned={0}) == [("d", 0)] and data == {}


def test_a_state_written_again_expires_after_its_last_write() -> None:
    states = DeliveryStates(3600)
    data: dict[str, Any] = {"r": states.stamp("r", "dead", 2, now=0)}
    data["r"] = states.stamp("r", "sent", 2, now=1200)  # redriven, delivered
    assert states.expired(data, 3600, owned={2}) == [] and state_of(data["r"]) == "sent"
    assert states.expired(data, 4800, owned={2}) == [("r", 2)] and data == {}


def test_recovered_states_are_listed_by_their_value_or_their_record_time() -> None:
    states = DeliveryStates(600)
    data: dict[str, Any] = {"new": states.canonical(["sent", 120]), "old": "sent"}
    states.note("new", ["sent", 120], 3, timestamp_s=5000)  # the value's time wins
    states.note("old", "sent", 3, timestamp_s=91)  # written before the time was kept: the record's
    assert states.expired(data, 719, owned={3}) == []
    assert sorted(states.expired(data, 720, owned={3})) == [("new", 3), ("old", 3)]


def test_the_status_and_delivery_changelogs_are_compacted_not_deleted() -> None:
    """A tombstone is the key's last word only where the changelog is compacted (and never
    expired by time): the topic config Faust declares for both tables."""
    from faust.transport.drivers.aiokafka import Transport

    from tocsin.core.settings import Settings
    from tocsin.streams.app import build

    rt = build(Settings(kafka_bootstrap="127.0.0.1:1"), record=False)
    for table in (rt.tables.status, rt.tables.deliveries):
        topic = table.changelog_topic
        config = Transport._topic_config(None, topic.retention, topic.compacting, topic.deleting)  # type: ignore[arg-type]
        assert config == {"cleanup.policy": "compact"}, table.name
    assert rt.tables.deliveries.states.retention_s == 7200 + 2 * DAY  # throttle expiry + 2 days
    assert Settings(kafka_bootstrap="x", delivery_state_retention_s=60).delivery_state_retention == 60
    assert Settings(kafka_bootstrap="x").status_retention_s == 7 * DAY


def test_a_sweep_takes_the_expired_states_a_chunk_at_a_time() -> None:
    states = DeliveryStates(60)
    data: dict[str, Any] = {f"k{i}": states.stamp(f"k{i}", "sent", i % 2, now=i) for i in range(5)}
    chunks = []
    while chunk := states.expired(data, 10_000, owned={0, 1}, limit=2):
        chunks.append(sorted(chunk))
    assert [len(c) for c in chunks] == [2, 2, 1] and data == {} and len(states) == 0
    assert sorted(k for c in chunks for k, _ in c) == [f"k{i}" for i in range(5)]
