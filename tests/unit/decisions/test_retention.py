"""Retention of the escalations and flapping tables (decisions/retention.py): tables of cases,
and the properties that make a sweep safe: a flap state forgotten after the sweep decides every
later event as the kept one does; a chain is never forgotten before its pending timer is due."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tocsin.decisions.escalation import (
    ACKNOWLEDGED,
    ACTIVE,
    DONE,
    RESOLVED,
    RUNNING,
    STOPPED,
    ChainState,
    EscalationPolicy,
    Position,
    StatusView,
    Step,
    Timer,
    decide,
    start,
)
from tocsin.decisions.flapping import (
    FIRING,
    FlapPolicy,
    FlapSettings,
    FlapState,
    decide_timer,
    quiet_for,
)
from tocsin.decisions.flapping import RESOLVED as FR
from tocsin.decisions.flapping import Timer as FlapTimer
from tocsin.decisions.flapping import decide as flap_decide
from tocsin.decisions.retention import (
    MIN_ESCALATION_RETENTION_S,
    chain_last_time,
    escalation_expiry,
    escalation_retention,
    flap_expiry,
    flap_horizon,
)

# ------------------------------------------------------------------------------- escalations

P = EscalationPolicy("p", (Step(0, ("slack:oncall",)), Step(600, ("email:lead",)), Step(1800, ("sms:boss",))))
P_ACK = EscalationPolicy("ack", P.steps, ack_timeout_s=7200.0)
P_LONG = EscalationPolicy("long", P.steps, repeat=2, repeat_after_s=3600.0, ack_timeout_s=1000.0)
T0 = 1_700_000_000.0


def chain(pos: tuple[int, int], state: str = RUNNING, why: str = "", policy: str = "p",
          resumed_at: float | None = None) -> ChainState:
    return ChainState("c", policy, T0, Position(*pos), state, why, resumed_at=resumed_at)


H = MIN_ESCALATION_RETENTION_S
RETENTION_CASES = [
    # (id, policy, override, retention)
    ("twice the span plus the hour", P, None, 2 * 1800 + H),
    ("ack timeout added: 2 * 1800 + 7200 + the hour", P_ACK, None, 2 * 1800 + 7200 + H),
    # span: 2 repeats of period (1800 + 3600) + last step 1800 = 12600; 2 * 12600 + 1000
    ("repeats count in the span", P_LONG, None, 2 * 12600 + 1000 + H),
    ("policy gone: the hour", None, None, MIN_ESCALATION_RETENTION_S),
    ("the setting overrides", P_LONG, 5, 5),
]


@pytest.mark.parametrize(("policy", "override", "want"), [c[1:] for c in RETENTION_CASES],
                         ids=[c[0] for c in RETENTION_CASES])
def test_escalation_retention(policy: EscalationPolicy | None, override: float | None, want: float) -> None:
    assert escalation_retention(policy, override) == want


R = 2 * 1800 + H  # P's retention
EXPIRY_CASES = [
    # (id, state, policy, now, override, expired)
    ("no chain", None, P, T0 + 10 * H, None, False),
    ("done, last step 1800: within", chain((0, 2), DONE), P, T0 + 1800 + R - 1, None, False),
    ("done, last step 1800: exactly past", chain((0, 2), DONE), P, T0 + 1800 + R, None, True),
    ("stopped resolved at step 1", chain((0, 1), STOPPED, RESOLVED), P, T0 + 600 + R, None, True),
    ("stopped acknowledged at step 1: within", chain((0, 1), STOPPED, ACKNOWLEDGED), P, T0 + 600 + R - 1, None,
     False),
    ("running, next step 1800 not due long ago", chain((0, 2)), P, T0 + 1800 + 10, None, False),
    ("running, its timer lost: past", chain((0, 2)), P, T0 + 1800 + R, None, True),
    ("resumed later than its step: from the resume", chain((0, 1), resumed_at=T0 + 5000), P, T0 + 600 + R, None,
     False),
    ("policy gone: from the anchor", chain((0, 1), policy="gone"), None, T0 + H, None, True),
    ("the override: 5 s", chain((0, 2), DONE), P, T0 + 1805, 5, True),
    ("the override: 4 s in", chain((0, 2), DONE), P, T0 + 1804, 5, False),
]


@pytest.mark.parametrize(("state", "policy", "now", "override", "expired"), [c[1:] for c in EXPIRY_CASES],
                         ids=[c[0] for c in EXPIRY_CASES])
def test_escalation_expiry(state: ChainState | None, policy: EscalationPolicy | None, now: float,
                           override: float | None, expired: bool) -> None:
    e = escalation_expiry(state, policy, now, override)
    assert e.expired is expired, e.reason
    assert e.reason


esc_policies = st.builds(
    lambda gaps, repeat, rep_after, ack: EscalationPolicy(
        "p", tuple(Step(float(sum(gaps[:i + 1])), ("slack:x",)) for i in range(len(gaps))), repeat=repeat,
        repeat_after_s=rep_after, ack_timeout_s=ack),
    st.lists(st.integers(0, 5000), min_size=1, max_size=4), st.integers(0, 3),
    st.sampled_from([60.0, 300.0, 3600.0]), st.one_of(st.none(), st.sampled_from([60.0, 900.0, 86400.0])))


@settings(max_examples=300, deadline=None)
@given(esc_policies, st.lists(st.tuples(st.sampled_from([ACTIVE, ACKNOWLEDGED]), st.floats(0, 1)), max_size=12))
def test_a_chain_is_never_forgotten_before_its_pending_timer_is_due(
        policy: EscalationPolicy, statuses: list[tuple[str, float]]) -> None:
    """Run a chain (each timer decided at its due time, the status acknowledged at some time
    before it or active): at every step, the chain's state is still kept when the timer it
    scheduled comes due, so a sweep never forgets a chain whose timer is on its way."""
    begun = start(policy, T0)
    if begun.first is None or begun.due is None:
        return
    timer: Timer | None = Timer("c", policy.name, begun.first, T0, begun.due)
    state: ChainState | None = None
    for status, frac in statuses:
        if timer is None:
            break
        # acknowledged at some time up to its step's due time (a later acknowledgement
        # follows an un-acknowledge, which the chain keeps as resumed_at)
        step_due = policy.due(timer.anchor, timer.pos)
        view = StatusView(status, step_due - frac * (step_due - T0), "x" if status == ACKNOWLEDGED else None)
        v = decide(state, timer, view, policy)
        if v.state is not None:
            state = v.state
        timer = v.next
        if timer is not None:
            assert state is not None
            e = escalation_expiry(state, policy, timer.due)
            assert not e.expired, (e.reason, timer, state)
            assert timer.due <= chain_last_time(state, policy) + (policy.ack_timeout_s or 0.0)


# ---------------------------------------------------------------------------------- flapping

FP = FlapPolicy(changes=2, window_s=100.0, hold_s=50.0)


def test_flap_horizon_is_the_longest_policy() -> None:
    s = FlapSettings(FP, {"a": FlapPolicy(3, 400.0, 20.0), "b": None})
    assert flap_horizon(s) == 420.0
    assert flap_horizon(FlapSettings()) > 0


FLAP_CASES = [
    # (id, state, now, horizon, expired)
    ("no state", None, 1e9, 150.0, False),
    ("resolved, stable 149 s", FlapState(FR, (1000.0,), seen=1000.0), 1149.0, 150.0, False),
    ("resolved, stable 150 s: window + hold", FlapState(FR, (1000.0,), seen=1000.0), 1150.0, 150.0, True),
    ("firing again, its newest event counts", FlapState(FIRING, (900.0, 1000.0), seen=1100.0), 1200.0, 150.0, False),
    ("flapping: kept however long", FlapState(FR, (1.0, 2.0, 3.0), since=3.0, last_change=3.0, seen=3.0), 1e9,
     150.0, False),
    ("no seen (an older value): its newest change", FlapState(FR, (1000.0,)), 1150.0, 150.0, True),
]


@pytest.mark.parametrize(("state", "now", "horizon", "expired"), [c[1:] for c in FLAP_CASES],
                         ids=[c[0] for c in FLAP_CASES])
def test_flap_expiry(state: FlapState | None, now: float, horizon: float, expired: bool) -> None:
    e = flap_expiry(state, now, horizon)
    assert e.expired is expired, e.reason


QUIET_CASES = [
    # (id, state, ts, quiet): decide treats a quiet state as none
    ("resolved 149 s ago", FlapState(FR, (0.0,), seen=0.0), 149.0, False),
    ("resolved 150 s ago", FlapState(FR, (0.0,), seen=0.0), 150.0, True),
    ("flapping never", FlapState(FR, (0.0,), since=0.0, last_change=0.0, seen=0.0), 1e6, False),
]


@pytest.mark.parametrize(("state", "ts", "quiet"), [c[1:] for c in QUIET_CASES], ids=[c[0] for c in QUIET_CASES])
def test_quiet_for(state: FlapState, ts: float, quiet: bool) -> None:
    assert quiet_for(state, ts, FP) is quiet


def test_a_firing_after_a_long_quiet_resolve_starts_afresh() -> None:
    """The decision the forgetting rests on: resolved and quiet for window + hold, the next
    firing is no change (as for a fingerprint never seen), kept or forgotten."""
    kept = flap_decide(FlapState(FR, (0.0,), seen=0.0), FIRING, 150.0, FP)
    assert kept == flap_decide(None, FIRING, 150.0, FP)
    assert kept.new_state is None


events = st.tuples(st.sampled_from([FIRING, FR]), st.floats(min_value=0, max_value=80, allow_nan=False))
steps = st.lists(st.one_of(events, st.just("timer")), max_size=30)
flap_policies = st.builds(FlapPolicy, st.integers(1, 4), st.sampled_from([30.0, 100.0, 400.0]),
                          st.sampled_from([20.0, 60.0, 300.0]))


def run(policy: FlapPolicy, before: list[Any], gap: float, after: list[Any], sweep: bool,
        horizon: float) -> list[Any]:
    """The agent's way (state through its changelog JSON, timers held until their turn): the
    ``before`` events, then a sweep at the newest event time + ``gap`` (``sweep``: it deletes the
    state if ``flap_expiry`` says so), then the ``after`` events, from the sweep's time on. Every
    verdict and settled notification, in order."""
    state: FlapState | None = None
    timers: list[FlapTimer] = []
    out: list[Any] = []
    t = 0.0

    def keep(s: FlapState | None) -> None:
        nonlocal state
        if s is not None:
            state = FlapState.from_value(orjson.loads(orjson.dumps(s.to_value())))

    def play(script: list[Any]) -> None:
        nonlocal t
        for step in script:
            if step == "timer":
                if timers:
                    settled, new_state = decide_timer(state, timers.pop(0), policy)
                    keep(new_state)
                    out.append(("timer", settled))
                continue
            new, dt_ = step
            t += dt_
            v = flap_decide(state, new, t, policy, {"t": t}, f"a-{t}")
            keep(v.new_state)
            if v.timer is not None:
                timers.append(v.timer)
            out.append(v)

    play(before)
    t += gap
    if sweep and flap_expiry(state, t, horizon).expired:
        state = None
    play(after)
    while timers:
        settled, new_state = decide_timer(state, timers.pop(0), policy)
        keep(new_state)
        out.append(("timer", settled))
    return out


@settings(max_examples=500, deadline=None)
@given(flap_policies, steps, st.floats(0, 1000), steps, st.floats(0, 500))
def test_a_swept_state_decides_the_same(policy: FlapPolicy, before: list[Any], gap: float, after: list[Any],
                                        extra: float) -> None:
    """Deciding with the state forgotten by a sweep gives the same verdicts (and settled
    notifications, recoveries among them) as with it kept: whatever the sweep's horizon, as
    long as it is at least the policy's window_s + hold_s."""
    horizon = policy.window_s + policy.hold_s + extra
    assert run(policy, before, gap, after, True, horizon) == run(policy, before, gap, after, False, horizon)


@settings(max_examples=200, deadline=None)
@given(flap_policies, steps, st.floats(0, 1000), steps)
def test_a_replay_with_sweeps_decides_the_same(policy: FlapPolicy, before: list[Any], gap: float,
                                               after: list[Any]) -> None:
    horizon = policy.window_s + policy.hold_s
    assert run(policy, before, gap, after, True, horizon) == run(policy, before, gap, after, True, horizon)


# ------------------------------------------------------------------------- the sweeps' selection


def test_expired_keys_deletes_only_owned_expired_keys() -> None:
    """core/tables.expired_keys, as the escalations and flapping sweeps call it: past the
    retention and of an owned partition, deleted and listed for its tombstone; the rest kept."""
    from tocsin.core.tables import expired_keys

    data: dict[str, Any] = {
        "old-mine": FlapState(FR, (0.0,), seen=0.0).to_value(),
        "old-theirs": FlapState(FR, (0.0,), seen=0.0).to_value(),
        "new-mine": FlapState(FR, (1000.0,), seen=1000.0).to_value(),
        "flapping-mine": FlapState(FR, (0.0,), since=0.0, last_change=0.0, seen=0.0).to_value(),
    }
    parts = {"old-mine": 0, "old-theirs": 1, "new-mine": 0, "flapping-mine": 0}
    keys = expired_keys(data, lambda v: flap_expiry(FlapState.from_value(v), 1100.0, 150.0).expired, {0},
                        parts.__getitem__)
    assert keys == [("old-mine", 0)]
    assert set(data) == {"old-theirs", "new-mine", "flapping-mine"}
    assert expired_keys(data, lambda v: True, {0, 1}, parts.__getitem__, limit=2) == [("old-theirs", 1),
                                                                                     ("new-mine", 0)]
