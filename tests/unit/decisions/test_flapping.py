"""Flap detection (decisions/flapping.py): a table of cases for events and timers, the routing
file's ``[flapping]``, and properties: a replay decides the same; a recovery is never muted
silently (once every timer fired, the last thing flap detection let through or notified is the
fingerprint's final state); one flapping notification and one settled notification per episode."""

from __future__ import annotations

import uuid
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tocsin.decisions.flapping import (
    FIRING,
    RESOLVED,
    FlapPolicy,
    FlapSettings,
    FlapState,
    Kind,
    Timer,
    decide,
    decide_timer,
    episode_key,
    home_of,
    problem_type,
    settled_alert_id,
    settled_key,
    timer_id,
)
from tocsin.decisions.routing import RoutingError, parse_policy, problems
from tocsin.schemas import create_alert

P = FlapPolicy(changes=2, window_s=100.0, hold_s=50.0)
F, R = FIRING, RESOLVED


def flapping(last: str = R, since: float = 20.0, last_change: float = 20.0, suppressed: int = 0,
             first: str | None = "crossing") -> FlapState:
    return FlapState(last, (0.0, 10.0, since), since, last_change, suppressed, {"summary": "x"}, first, last_change)


def S(last: str, changes: tuple[float, ...], seen: float) -> FlapState:  # noqa: N802
    return FlapState(last, changes, seen=seen)


def flap(last: str, since: float, last_change: float, suppressed: int, seen: float, alert: Any = None,
         first: str = "crossing", changes: tuple[float, ...] = (0.0, 10.0, 20.0)) -> FlapState:
    return FlapState(last, changes, since, last_change, suppressed, alert, first, seen)


# state, event (state, time, alert id) → kind, new state (None: unchanged), settled state, timer due
EVENT_CASES: list[tuple[str, FlapState | None, str, float, str, Kind, FlapState | None, str | None, float | None]] = [
    ("a first firing keeps nothing", None, F, 0.0, "e", Kind.PASS, None, None, None),
    ("a repeat: only the newest time kept", S(F, (5.0,), 5.0), F, 9.0, "e", Kind.PASS, S(F, (5.0,), 9.0), None, None),
    ("a first recovery is a change from firing", None, R, 0.0, "e", Kind.PASS, S(R, (0.0,), 0.0), None, None),
    ("the second change is within the count", S(R, (0.0,), 0.0), F, 10.0, "e", Kind.PASS,
     S(F, (0.0, 10.0), 10.0), None, None),
    ("more than `changes` in the window: flapping", S(F, (0.0, 10.0), 10.0), R, 20.0, "e", Kind.NOTIFY,
     flap(R, 20.0, 20.0, 0, 20.0, first="e"), None, 70.0),
    ("changes past the window do not count", S(F, (0.0, 10.0), 10.0), R, 150.0, "e", Kind.PASS,
     S(R, (150.0,), 150.0), None, None),
    ("a change on the window's edge does not count", S(F, (0.0, 10.0), 10.0), R, 110.0, "e", Kind.PASS,
     S(R, (110.0,), 110.0), None, None),
    ("a change just inside the window counts", S(F, (0.0, 10.0), 10.0), R, 109.0, "e", Kind.PASS,
     S(R, (10.0, 109.0), 109.0), None, None),
    ("a late event (older than the newest) changes nothing", S(F, (0.0, 10.0), 30.0), R, 25.0, "e", Kind.PASS,
     None, None, None),
    ("flapping: a change is suppressed, the hold starts again", flapping(), F, 30.0, "e", Kind.SUPPRESS,
     flap(F, 20.0, 30.0, 1, 30.0), None, 80.0),
    ("flapping: a repeat is suppressed, the hold goes on", flapping(), R, 30.0, "e", Kind.SUPPRESS,
     flap(R, 20.0, 20.0, 1, 30.0), None, None),
    ("flapping: a late event is suppressed and changes nothing", flapping(last_change=40.0), F, 30.0, "e",
     Kind.SUPPRESS, flap(R, 20.0, 40.0, 1, 40.0, {"summary": "x"}), None, None),
    ("flapping: the crossing event again is notified again", flapping(), R, 20.0, "crossing", Kind.NOTIFY,
     None, None, None),
    ("stable for hold_s: settled first, then decided as stable", flapping(suppressed=3), R, 70.0, "e", Kind.PASS,
     S(R, (), 70.0), R, None),
    ("stable for hold_s: settled first, then a first change", flapping(), F, 75.0, "e", Kind.PASS,
     S(F, (75.0,), 75.0), R, None),
    ("just short of hold_s: still flapping", flapping(), R, 69.9, "e", Kind.SUPPRESS,
     flap(R, 20.0, 20.0, 1, 69.9), None, None),
]


@pytest.mark.parametrize(("state", "new", "ts", "alert_id", "kind", "new_state", "settled", "due"),
                         [c[1:] for c in EVENT_CASES], ids=[c[0] for c in EVENT_CASES])
def test_event_cases(state: FlapState | None, new: str, ts: float, alert_id: str, kind: Kind,
                     new_state: FlapState | None, settled: str | None, due: float | None) -> None:
    v = decide(state, new, ts, P, None, alert_id)
    assert v.kind is kind, v.reason
    assert v.new_state == new_state
    assert (v.settled.state if v.settled else None) == settled
    assert (v.timer.due if v.timer else None) == due
    if v.settled is not None:
        assert state is not None and v.settled.at == state.last_change + P.hold_s
        assert v.settled.suppressed == state.suppressed and "settled" in v.settled.reason
    if kind is Kind.NOTIFY and new_state is not None:
        assert "3 state changes within 100s (more than 2)" in v.reason


TIMER_CASES: list[tuple[str, FlapState | None, Timer, str | None]] = [
    ("the episode's last change: settled", flapping(F, 20.0, 30.0), Timer(20.0, 30.0, 80.0), F),
    ("a change since: stale", flapping(F, 20.0, 40.0), Timer(20.0, 30.0, 80.0), None),
    ("another episode: stale", flapping(F, 25.0, 30.0), Timer(20.0, 30.0, 80.0), None),
    ("settled already (not flapping): stale", FlapState(F), Timer(20.0, 30.0, 80.0), None),
    ("no state: stale", None, Timer(20.0, 30.0, 80.0), None),
]


@pytest.mark.parametrize(("state", "timer", "settled"), [c[1:] for c in TIMER_CASES],
                         ids=[c[0] for c in TIMER_CASES])
def test_timer_cases(state: FlapState | None, timer: Timer, settled: str | None) -> None:
    s, new_state = decide_timer(state, timer, P)
    assert (s.state if s else None) == settled
    if s is not None:
        assert state is not None
        assert new_state == FlapState(state.last, seen=state.seen) and s.at == timer.due and s.alert == state.alert
    else:
        assert new_state is None


def test_ids_are_deterministic_and_name_the_episode() -> None:
    s = decide(flapping(suppressed=2), R, 90.0, P).settled
    assert s is not None
    assert episode_key("fp", 20.0) == "fp:flapping:20000"
    assert settled_key("fp", s) == "fp:flapping:20000:settled:20000"
    assert settled_alert_id("fp", s) == settled_alert_id("fp", decide_timer(flapping(suppressed=2),
                                                                            Timer(20.0, 20.0, 70.0), P)[0])  # type: ignore[arg-type]
    assert timer_id("fp", Timer(20.0, 30.0, 80.0)) == "flapping:fp:20000:30000"


def test_a_recovery_is_decided_under_the_fingerprint_it_resolves() -> None:
    firing = create_alert("component_unhealthy", 1, "redis down", fingerprint="component_unhealthy:redis")
    recovered = create_alert("component_recovered", 3, "redis up", fingerprint="component_recovered:redis")
    resolve = create_alert("position_limit_hit", 2, "ok", account_id="a", action="resolve")
    assert home_of(firing) == home_of(recovered) == "component_unhealthy:redis"
    assert problem_type(recovered) == "component_unhealthy"
    assert home_of(resolve) == resolve.fingerprint and problem_type(resolve) == "position_limit_hit"


def test_state_round_trips_through_the_changelog_json() -> None:
    for s in (FlapState(), FlapState(R, (1.5, 2.0), seen=3.0), flapping(suppressed=4)):
        assert FlapState.from_value(orjson.loads(orjson.dumps(s.to_value()))) == s
    assert FlapState.from_value(None) is None


# -------------------------------------------------------------------------- the routing file

ROUTING_CASES: list[tuple[str, dict[str, Any], dict[str, FlapPolicy | None]]] = [
    ("no [flapping]: off", {}, {"x": None}),
    ("the example", {"flapping": {"changes": 4, "window_s": 600, "hold_s": 900}},
     {"x": FlapPolicy(4, 600.0, 900.0)}),
    ("defaults", {"flapping": {}}, {"x": FlapPolicy()}),
    ("per type", {"flapping": {"changes": 4, "types": {"db_write_fail": {"changes": 2, "hold_s": 60}}}},
     {"x": FlapPolicy(4), "db_write_fail": FlapPolicy(2, 600.0, 60.0)}),
    ("off for a type", {"flapping": {"types": {"order_filled": {"enabled": False}}}},
     {"x": FlapPolicy(), "order_filled": None}),
    ("only for the types named", {"flapping": {"enabled": False, "types": {"db_write_fail": {"window_s": 60}}}},
     {"x": None, "db_write_fail": FlapPolicy(window_s=60.0)}),
]


@pytest.mark.parametrize(("doc", "want"), [c[1:] for c in ROUTING_CASES], ids=[c[0] for c in ROUTING_CASES])
def test_routing_file(doc: dict[str, Any], want: dict[str, FlapPolicy | None]) -> None:
    flap = parse_policy(doc).flapping
    for alert_type, policy in want.items():
        assert flap.for_type(alert_type) == policy
    assert flap.enabled == any(p is not None for p in want.values())


@pytest.mark.parametrize(("doc", "error"), [
    ({"flapping": {"changes": 0}}, "flapping.changes: a whole number 1..1000"),
    ({"flapping": {"changes": 2.5}}, "flapping.changes: a whole number 1..1000"),
    ({"flapping": {"hold_s": 0}}, "flapping.hold_s: seconds, a number > 0 and <= 86400"),
    ({"flapping": {"window": 60}}, "flapping.window: unknown key (known: enabled, changes, window_s, hold_s, types)"),
    ({"flapping": {"types": {"x": {"window_s": "1m"}}}}, "flapping.types.x.window_s: seconds, a number > 0"),
    ({"flapping": 3}, "flapping: expected a table"),
])
def test_routing_file_errors_name_the_key(doc: dict[str, Any], error: str) -> None:
    with pytest.raises(RoutingError, match=error.replace(".", r"\.").replace("(", r"\(").replace(")", r"\)")):
        parse_policy(doc)
    assert problems(doc)[0][1].startswith(error)


def test_settings_default_is_off() -> None:
    assert not FlapSettings().enabled and FlapSettings().for_type("x") is None


# ------------------------------------------------------------------------------- properties

# one step of a run: an event (its state, its time) or the arrival of the oldest pending timer
events = st.tuples(st.sampled_from([F, R]), st.floats(min_value=0, max_value=80, allow_nan=False))
steps = st.lists(st.one_of(events, st.just("timer")), max_size=60)
policies = st.builds(FlapPolicy, st.integers(1, 4), st.sampled_from([30.0, 100.0, 400.0]),
                     st.sampled_from([20.0, 60.0, 300.0]))


def run(policy: FlapPolicy, script: list[Any], back: float = 0.0) -> list[tuple[str, Any]]:
    """Carry out ``script`` as the agent does: the state through its changelog's JSON, the
    timers held until their turn (the script's ``timer``, and every pending one at the end).
    Event times advance by the script's steps (``back``: how far one may go back); what it
    returns: every verdict, in order, and what each let through or notified."""
    state: FlapState | None = None
    timers: list[Timer] = []
    out: list[tuple[str, Any]] = []
    t = 0.0
    n = 0

    def keep(s: FlapState | None) -> None:
        nonlocal state
        if s is not None:
            state = FlapState.from_value(orjson.loads(orjson.dumps(s.to_value())))

    def fire(timer: Timer) -> None:
        settled, new_state = decide_timer(state, timer, policy)
        keep(new_state)
        if settled is not None:
            out.append(("settled", settled.state))

    for step in script:
        if step == "timer":
            if timers:
                fire(timers.pop(0))
            continue
        new, dt_ = step
        t = t + dt_ if dt_ >= back else t - dt_  # mostly forward, sometimes back a little
        n += 1
        v = decide(state, new, t, policy, {"n": n, "state": new}, f"alert-{n}")
        keep(v.new_state)
        if v.settled is not None:
            out.append(("settled", v.settled.state))
        if v.timer is not None:
            timers.append(v.timer)
        out.append(("late" if v.late else v.kind.value, new))
    while timers:
        fire(timers.pop(0))
    return out


@settings(max_examples=300, deadline=None)
@given(policies, steps, st.sampled_from([0.0, 5.0]))
def test_a_replay_decides_the_same(policy: FlapPolicy, script: list[Any], back: float) -> None:
    assert run(policy, script, back) == run(policy, script, back)


@settings(max_examples=500, deadline=None)
@given(policies, steps, st.sampled_from([0.0, 5.0]))
def test_a_recovery_is_never_muted_silently(policy: FlapPolicy, script: list[Any], back: float) -> None:
    """Once every timer fired, the last thing flap detection let through (``pass``: on to the
    throttle, which bypasses a recovery) or notified (the ``flapping`` notification, the settled
    one) is the fingerprint's last state, the newest event's: a recovery after which no newer
    firing came is notified, at the latest by the settled notification of its episode. (A
    late event, older than the newest, goes on to the throttle or, flapping, is recorded.)"""
    out = run(policy, script, back)
    decided = [(k, s) for k, s in out if k not in ("settled", "late")]
    if not decided:
        return
    final = decided[-1][1]  # the newest event's (a late one changes nothing)
    seen = [s for k, s in out if k in ("pass", "notify", "settled")]
    assert seen and seen[-1] == final, out
    # every recovery muted while flapping is followed by a settled notification
    for i, (k, s) in enumerate(out):
        if k == "suppress" and s == R:
            assert any(k2 == "settled" for k2, _ in out[i + 1:]), out


@settings(max_examples=300, deadline=None)
@given(policies, steps, st.sampled_from([0.0, 5.0]))
def test_one_flapping_and_one_settled_notification_per_episode(policy: FlapPolicy, script: list[Any],
                                                                back: float) -> None:
    out = run(policy, script, back)
    kinds = [k for k, _ in out if k in ("notify", "settled")]
    assert kinds == ["notify", "settled"] * (len(kinds) // 2), out  # alternate, each episode closed
    assert len(kinds) % 2 == 0


def test_uuid_namespace_is_stable() -> None:
    s = decide(flapping(), R, 90.0, P).settled
    assert s is not None and isinstance(settled_alert_id("fp", s), uuid.UUID)
