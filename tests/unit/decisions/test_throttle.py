"""The throttle decision (DESIGN "Throttling and recovery"): tables plus properties."""

from __future__ import annotations

import datetime as dt
import sys
import uuid
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tocsin.decisions.throttle import (
    Verdict,
    WindowState,
    alert_key,
    bucket_of,
    decide,
    decision_id_for,
    decision_id_text,
    dedupe_key_for,
)
from tocsin.schemas.alert import AlertEvent
from tocsin.schemas.messages import Outcome

W = 600
T0 = 1_714_564_800  # 2024-05-01T12:00:00Z, a multiple of 600


def event(t: float, *, fp: str = "db_write_fail:acc:BTC:s1", type_: str = "db_write_fail",
          action: str = "trigger", alert_id: uuid.UUID | None = None, **extra: Any) -> AlertEvent:
    return AlertEvent.model_validate({
        "alert_id": alert_id or uuid.uuid4(),
        "type": type_, "severity": 2, "summary": "s", "fingerprint": fp, "action": action,
        "event_timestamp": dt.datetime.fromtimestamp(t, dt.UTC).isoformat(), **extra,
    })


class Table:
    """The throttle table as the agent uses it: state per dedupe key."""

    def __init__(self) -> None:
        self.rows: dict[str, WindowState] = {}

    def decide(self, e: AlertEvent, window_s: int = W) -> Verdict:
        key = dedupe_key_for(e.fingerprint, bucket_of(e.epoch, window_s))
        v = decide(self.rows.get(key), e, window_s)
        if v.new_state is not None:
            self.rows[key] = v.new_state
        return v


# ---------------------------------------------------------------- buckets


@pytest.mark.parametrize(
    ("epoch", "window", "bucket"),
    [
        (0, 600, 0),
        (599, 600, 0),
        (599.999, 600, 0),
        (600, 600, 1),
        (T0, 600, T0 // 600),
        (T0 + 599, 600, T0 // 600),
        (T0 + 600, 600, T0 // 600 + 1),
        (T0, 60, T0 // 60),
        (T0 + 59.9, 60, T0 // 60),
        (-1, 600, -1),  # before 1970: floor, not truncation
        (-600, 600, -1),
        (-601, 600, -2),
    ],
)
def test_bucket_is_epoch_floor_div_window(epoch: float, window: int, bucket: int) -> None:
    assert bucket_of(epoch, window) == bucket


def test_verdict_fields_come_from_event_time() -> None:
    e = event(T0 + 123)
    v = decide(None, e, W)
    assert v.bucket == T0 // W
    assert v.dedupe_key == f"{e.fingerprint}:{T0 // W}"
    assert v.window_start == dt.datetime.fromtimestamp(T0, dt.UTC)
    assert v.window_start.tzinfo is not None


@pytest.mark.parametrize(("offset", "same"), [(0, True), (599, True), (600, False), (-1, False)])
def test_same_bucket_only_within_the_window(offset: int, same: bool) -> None:
    t = Table()
    assert t.decide(event(T0)).outcome is Outcome.NOTIFY
    assert (t.decide(event(T0 + offset)).outcome is Outcome.SUPPRESS) is same


def test_fingerprints_are_throttled_apart() -> None:
    t = Table()
    assert t.decide(event(T0, fp="a")).outcome is Outcome.NOTIFY
    assert t.decide(event(T0, fp="b")).outcome is Outcome.NOTIFY
    assert t.decide(event(T0, fp="a")).outcome is Outcome.SUPPRESS


# ---------------------------------------------------------------- notify, then suppress and count


@pytest.mark.parametrize("n", [1, 2, 5, 50])
def test_first_notifies_then_suppressed_counted(n: int) -> None:
    t = Table()
    verdicts = [t.decide(event(T0 + i)) for i in range(n)]
    first, rest = verdicts[0], verdicts[1:]
    assert (first.outcome, first.reason, first.suppressed_count) == (Outcome.NOTIFY, "first in window", 0)
    assert first.notifies
    assert [v.outcome for v in rest] == [Outcome.SUPPRESS] * (n - 1)
    assert [v.suppressed_count for v in rest] == list(range(1, n))
    assert all(v.reason == "duplicate in window" and not v.notifies for v in rest)
    assert len({v.dedupe_key for v in verdicts}) == 1
    (state,) = t.rows.values()
    assert state.suppressed == n - 1


def test_previous_window_count_shown_on_the_next_notification() -> None:
    v = decide(None, event(T0 + W), W, previous_suppressed=7)
    assert v.outcome is Outcome.NOTIFY and v.suppressed_count == 7
    assert v.new_state == WindowState(v.new_state.first_alert_id, 0)  # type: ignore[union-attr]


def test_redelivered_first_event_notifies_again_with_the_same_key() -> None:
    t = Table()
    e = event(T0 + 5)
    first = t.decide(e)
    t.decide(event(T0 + 6))  # a duplicate in between
    again = t.decide(e)  # the same event consumed again (after a crash, say)
    assert again.outcome is Outcome.NOTIFY and again.reason == "redelivered first event"
    assert again.dedupe_key == first.dedupe_key
    assert again.new_state is None  # the count of the window is left alone
    assert decision_id_for(e.alert_id) == decision_id_for(str(e.alert_id))


# ---------------------------------------------------------------- recovery bypasses


RECOVERIES = [
    {"type_": "component_recovered", "fp": "component_recovered:redis"},
    {"type_": "component_recovered", "fp": ""},
    {"type_": "db_write_fail", "action": "resolve"},
    {"type_": "whatever", "action": "resolve", "resolves": "whatever:x"},
]


@pytest.mark.parametrize("kw", RECOVERIES)
@pytest.mark.parametrize("prior", [0, 1, 3])
def test_recovery_bypasses_always(kw: dict[str, Any], prior: int) -> None:
    t = Table()
    template = event(T0, **kw)
    for i in range(prior):
        t.decide(event(T0 + i, fp=template.fingerprint))  # an active problem under the same fingerprint
    before = dict(t.rows)
    for i in range(3):  # every recovery, however many
        v = t.decide(event(T0 + 10 + i, **kw))
        assert v.outcome is Outcome.BYPASS and v.notifies
        assert v.reason == "recovery bypasses the throttle"
        assert v.new_state is None
    assert t.rows == before  # the throttle table is not touched


def test_recovery_dedupe_keys_are_per_event() -> None:
    a, b = event(T0, type_="component_recovered"), event(T0, type_="component_recovered")
    va, vb = decide(None, a, W), decide(None, b, W)
    assert va.dedupe_key != vb.dedupe_key
    assert va.dedupe_key == decide(None, a, W).dedupe_key  # but stable for one event
    assert va.dedupe_key.startswith(f"{a.fingerprint}:{T0 // W}:")


# ---------------------------------------------------------------- state codec


@given(key=st.integers(0, (1 << 40) - 1), suppressed=st.integers(0, 10**12))
def test_window_state_round_trips(key: int, suppressed: int) -> None:
    state = WindowState(key, suppressed)
    value = state.to_value()
    assert isinstance(value, int) == (suppressed < 1 << 23)
    assert WindowState.from_value(value) == state
    assert WindowState.from_value(orjson.loads(orjson.dumps(value))) == state  # the changelog's JSON
    assert WindowState.from_value(state) is state


def test_window_state_is_one_small_int() -> None:
    value = WindowState(alert_key(uuid.uuid4()), 999_999).to_value()
    assert sys.getsizeof(value) <= 32  # a (key, count) tuple was 92 bytes with its ints


def test_alert_key_is_the_top_40_bits() -> None:
    a = uuid.uuid4()
    assert alert_key(a) == a.int >> 88 == alert_key(str(a))
    assert 0 <= alert_key(a) < 1 << 40


def test_window_state_written_by_older_versions_reads_as_the_same_key() -> None:
    a = uuid.uuid4()
    assert WindowState.from_value([str(a), 3]) == WindowState(alert_key(a), 3)  # the alert id
    assert WindowState.from_value([a.int >> 64, 3]) == WindowState(alert_key(a), 3)  # its 64-bit key


@pytest.mark.parametrize("empty", [None, [], ""])
def test_window_state_empty(empty: Any) -> None:
    assert WindowState.from_value(empty) is None


# ---------------------------------------------------------------- properties

ids = st.uuids(version=4)
fingerprints = st.sampled_from(["a", "b", "component_unhealthy:redis", "x::y:"])
offsets = st.floats(min_value=0, max_value=4 * W, allow_nan=False)
kinds = st.sampled_from(["trigger", "trigger", "trigger", "resolve", "recovered"])


@st.composite
def streams(draw: st.DrawFn) -> list[AlertEvent]:
    n = draw(st.integers(0, 40))
    out: list[AlertEvent] = []
    for _ in range(n):
        if out and draw(st.booleans()) and draw(st.booleans()):
            out.append(draw(st.sampled_from(out)))  # a re-consumed event
            continue
        kind, fp, off = draw(kinds), draw(fingerprints), draw(offsets)
        if kind == "recovered":
            out.append(event(T0 + off, type_="component_recovered", fp=fp, alert_id=draw(ids)))
        else:
            out.append(event(T0 + off, fp=fp, action=kind, alert_id=draw(ids)))
    return out


def outcomes(vs: list[Verdict]) -> list[tuple[Any, ...]]:
    return [(v.outcome, v.reason, v.dedupe_key, v.bucket, v.window_start, v.suppressed_count) for v in vs]


@given(streams(), st.sampled_from([60, 600, 3600]))
@settings(max_examples=200, deadline=None)
def test_replay_decides_the_same(events: list[AlertEvent], window: int) -> None:
    """Deciding the same topic twice from fresh state gives identical verdicts."""
    first, second = Table(), Table()
    a = [first.decide(e, window) for e in events]
    b = [second.decide(e, window) for e in events]
    assert outcomes(a) == outcomes(b)
    assert first.rows == second.rows


@given(streams())
@settings(max_examples=200, deadline=None)
def test_one_notification_per_fingerprint_and_bucket(events: list[AlertEvent]) -> None:
    """Among triggers, each (fingerprint, bucket) notifies exactly one distinct event."""
    t = Table()
    notified: dict[str, set[uuid.UUID]] = {}
    for e in events:
        v = t.decide(e)
        if v.outcome is Outcome.NOTIFY:
            notified.setdefault(v.dedupe_key, set()).add(e.alert_id)
        if e.is_recovery:
            assert v.outcome is Outcome.BYPASS
    assert all(len(s) == 1 for s in notified.values())
    triggers = {dedupe_key_for(e.fingerprint, bucket_of(e.epoch, W)) for e in events if not e.is_recovery}
    assert set(notified) == triggers


@given(st.lists(st.integers(0, W - 1), min_size=1, max_size=30, unique=True), st.randoms(use_true_random=False))
@settings(max_examples=200, deadline=None)
def test_order_within_a_bucket_never_gives_two_notifies(seconds: list[int], rnd: Any) -> None:
    events = [event(T0 + s) for s in seconds]  # distinct timestamps, one bucket
    rnd.shuffle(events)
    t = Table()
    verdicts = [t.decide(e) for e in events]
    assert [v.outcome for v in verdicts].count(Outcome.NOTIFY) == 1
    assert verdicts[0].outcome is Outcome.NOTIFY  # whichever arrives first
    assert [v.suppressed_count for v in verdicts[1:]] == list(range(1, len(events)))


@given(st.uuids())
def test_decision_id_is_the_rfc_uuid5(alert_id: uuid.UUID) -> None:
    from tocsin.schemas.messages import NAMESPACE

    expected = uuid.uuid5(NAMESPACE, f"decision/{alert_id}")
    got = decision_id_for(alert_id)
    assert got == expected and str(got) == str(expected) and got.version == 5
    assert hash(got) == hash(expected) and decision_id_for(str(alert_id)) == expected
    assert decision_id_text(alert_id) == decision_id_text(str(alert_id)) == str(expected)
