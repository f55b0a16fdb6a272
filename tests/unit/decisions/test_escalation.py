"""The escalation decision (decisions/escalation.py): tables of cases, and the properties that a
replay decides the same and that a recovery is never escalated (nor muted)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tocsin.decisions.escalation import (
    ACKNOWLEDGED,
    ACTIVE,
    DISMISSED,
    DONE,
    RESOLVED,
    RUNNING,
    STOPPED,
    Action,
    ChainState,
    EscalationPolicy,
    Position,
    StatusView,
    Step,
    Timer,
    decide,
    resume,
    select,
    start,
    step_key,
    timer_id,
)

T0 = 1_700_000_000.0
ONCALL = EscalationPolicy("oncall", (Step(0, ("slack:oncall",)), Step(300, ("email:lead",)), Step(900, ("email:cto",))),
                          frozenset({1}), frozenset({"kill_switch_activated"}), repeat=1, repeat_after_s=600)
ACKTO = EscalationPolicy("ackto", (Step(0, ("slack:oncall",)), Step(300, ("email:lead",))), frozenset({2}),
                         ack_timeout_s=1800)
LATE = EscalationPolicy("late", (Step(60, ("email:lead",)),), frozenset({3}))


def timer(pos: Position, policy: EscalationPolicy = ONCALL, chain: str = "fp:1", anchor: float = T0) -> Timer:
    return Timer(chain, policy.name, pos, anchor, policy.due(anchor, pos))


def running(pos: Position, chain: str = "fp:1", policy: str = "oncall", **kw: object) -> ChainState:
    return ChainState(chain, policy, T0, pos, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(("severity", "type_", "recovery", "want"), [
    (1, "db_write_fail", False, "oncall"),
    (3, "kill_switch_activated", False, "oncall"),
    (2, "db_write_fail", False, "ackto"),
    (3, "db_write_fail", False, "late"),
    (1, "component_recovered", True, None),  # a recovery is never escalated
])
def test_select(severity: int, type_: str, recovery: bool, want: str | None) -> None:
    p = select((ONCALL, ACKTO, LATE), severity, type_, recovery)
    assert (p.name if p else None) == want


def test_select_first_in_file_order() -> None:
    both = EscalationPolicy("both", (Step(0, ("email:a",)),), frozenset({1}))
    assert select((both, ONCALL), 1, "x").name == "both"  # type: ignore[union-attr]


@pytest.mark.parametrize(("policy", "now", "first", "due"), [
    (ONCALL, ("slack:oncall",), Position(0, 1), T0 + 300),  # step 0 with the notification
    (LATE, (), Position(0, 0), T0 + 60),  # step 0 later: a timer
    (EscalationPolicy("one", (Step(0, ("email:a",)),), frozenset({1})), ("email:a",), None, None),
])
def test_start(policy: EscalationPolicy, now: tuple[str, ...], first: Position | None, due: float | None) -> None:
    s = start(policy, T0)
    assert (s.now, s.first, s.due) == (now, first, due)


@pytest.mark.parametrize(("pos", "after", "due"), [
    (Position(0, 0), Position(0, 1), T0),
    (Position(0, 1), Position(0, 2), T0 + 300),
    (Position(0, 2), Position(1, 0), T0 + 900),
    # period = 900 - 0 + 600
    (Position(1, 0), Position(1, 1), T0 + 1500),
    (Position(1, 2), None, T0 + 1500 + 900),
])
def test_positions(pos: Position, after: Position | None, due: float) -> None:
    assert ONCALL.after(pos) == after
    assert ONCALL.due(T0, pos) == due


# (case, state, timer, status, policy) -> (action, state after, targets, next position, reason contains)
CASES = [
    ("active: fires, next scheduled", None, timer(Position(0, 1)), StatusView(ACTIVE), ONCALL,
     Action.FIRE, (RUNNING, Position(0, 2)), ("email:lead",), Position(0, 2), "step 1/2"),
    ("status not known yet: as active", None, timer(Position(0, 1)), None, ONCALL,
     Action.FIRE, (RUNNING, Position(0, 2)), ("email:lead",), Position(0, 2), "to email:lead"),
    ("the last step of the last repeat: done", running(Position(1, 2)), timer(Position(1, 2)), None, ONCALL,
     Action.FIRE, (DONE, Position(1, 2)), ("email:cto",), None, "repeat 1"),
    ("end of a cycle: the next repeat's step 0", running(Position(0, 2)), timer(Position(0, 2)), None, ONCALL,
     Action.FIRE, (RUNNING, Position(1, 0)), ("email:cto",), Position(1, 0), "step 2/2"),
    ("acknowledged: stopped", None, timer(Position(0, 1)), StatusView(ACKNOWLEDGED, T0 + 10, "ann"), ONCALL,
     Action.STOP, (STOPPED, Position(0, 1)), (), None, "acknowledged by ann"),
    ("resolved: stopped", running(Position(0, 1)), timer(Position(0, 1)), StatusView(RESOLVED, T0 + 5, "bob"), ONCALL,
     Action.STOP, (STOPPED, Position(0, 1)), (), None, "resolved by bob"),
    ("dismissed: stopped", None, timer(Position(0, 1)), StatusView(DISMISSED, T0 + 5), ONCALL,
     Action.STOP, (STOPPED, Position(0, 1)), (), None, "dismissed"),
    ("acknowledged, ack timeout not run out: held until it does", None, timer(Position(0, 1), ACKTO),
     StatusView(ACKNOWLEDGED, T0 + 100, "ann"), ACKTO,
     Action.HOLD, (STOPPED, Position(0, 1)), (), Position(0, 1), "ack_timeout_s=1800"),
    ("acknowledged, ack timeout run out: fires", running(Position(0, 1), policy="ackto", state=STOPPED, why=ACKNOWLEDGED),
     Timer("fp:1", "ackto", Position(0, 1), T0, T0 + 1900), StatusView(ACKNOWLEDGED, T0 + 100, "ann"), ACKTO,
     Action.FIRE, (DONE, Position(0, 1)), ("email:lead",), None, "not resolved within"),
    ("a position already past: skipped", running(Position(0, 2)), timer(Position(0, 1)), None, ONCALL,
     Action.SKIP, None, (), None, "already past"),
    ("a chain done: skipped", running(Position(1, 2), state=DONE), timer(Position(1, 2)), None, ONCALL,
     Action.SKIP, None, (), None, "already past"),
    ("a chain stopped by a resolve: a repeated timer skipped", running(Position(0, 1), state=STOPPED, why=RESOLVED),
     timer(Position(0, 1)), StatusView(RESOLVED), ONCALL, Action.SKIP, None, (), None, "stopped (resolved)"),
    ("another notification while a chain runs: joins it", running(Position(0, 2), chain="fp:0"),
     timer(Position(0, 1)), None, ONCALL, Action.JOIN, None, (), None, "joined"),
    ("another notification after a chain was done: a new chain", running(Position(1, 2), chain="fp:0", state=DONE),
     timer(Position(0, 1)), None, ONCALL, Action.FIRE, (RUNNING, Position(0, 2)), ("email:lead",), Position(0, 2), ""),
    ("the policy is gone: stopped", None, timer(Position(0, 1)), None, None,
     Action.STOP, (STOPPED, Position(0, 1)), (), None, "no longer in the routing file"),
    ("acknowledged before the un-acknowledge that resumed it: fires",
     running(Position(0, 1), resumed_at=T0 + 500), timer(Position(0, 1), anchor=T0 + 200),
     StatusView(ACKNOWLEDGED, T0 + 100, "ann"), ONCALL, Action.FIRE, (RUNNING, Position(0, 2)), ("email:lead",),
     Position(0, 2), ""),
    ("acknowledged again after the resume: stopped", running(Position(0, 1), resumed_at=T0 + 500),
     timer(Position(0, 1), anchor=T0 + 200), StatusView(ACKNOWLEDGED, T0 + 600, "ann"), ONCALL,
     Action.STOP, (STOPPED, Position(0, 1)), (), None, "acknowledged"),
]


@pytest.mark.parametrize(("case", "state", "t", "status", "policy", "action", "after", "targets", "nxt", "why"),
                         CASES, ids=[c[0] for c in CASES])
def test_decide(case: str, state: ChainState | None, t: Timer, status: StatusView | None,
                policy: EscalationPolicy | None, action: Action, after: tuple[str, Position] | None,
                targets: tuple[str, ...], nxt: Position | None, why: str) -> None:
    v = decide(state, t, status, policy)
    assert v.action is action, v.reason
    assert (None if v.state is None else (v.state.state, v.state.pos)) == after
    assert v.targets == targets
    assert (None if v.next is None else v.next.pos) == nxt
    assert why in v.reason
    assert v.recorded is (action is not Action.SKIP)


def test_held_timer_is_due_when_the_ack_times_out() -> None:
    v = decide(None, timer(Position(0, 1), ACKTO), StatusView(ACKNOWLEDGED, T0 + 100), ACKTO)
    assert v.next is not None and v.next.due == T0 + 100 + 1800


def test_fired_after_an_ack_timeout_the_next_step_keeps_its_spacing() -> None:
    p = EscalationPolicy("p", (Step(0, ("a:x",)), Step(60, ("email:b",)), Step(120, ("email:c",))), frozenset({1}),
                         ack_timeout_s=1000)
    v = decide(None, Timer("c", "p", Position(0, 1), T0, T0 + 1010), StatusView(ACKNOWLEDGED, T0 + 10), p)
    assert v.action is Action.FIRE and v.next is not None
    assert v.next.due == T0 + 1010 + 60  # 60 s after the step that fired late, not at once


@pytest.mark.parametrize(("state", "at", "resumed_due"), [
    (running(Position(0, 1), state=STOPPED, why=ACKNOWLEDGED), T0 + 1000, T0 + 1000),
    (running(Position(0, 1), state=STOPPED, why=RESOLVED), T0 + 1000, None),  # only an acknowledgement's stop
    (running(Position(0, 1)), T0 + 1000, None),  # running: nothing to resume
    (running(Position(1, 2), state=DONE), T0 + 1000, None),
    (None, T0 + 1000, None),
])
def test_resume(state: ChainState | None, at: float, resumed_due: float | None) -> None:
    r = resume(state, at, ONCALL)
    assert (None if r is None else r[1].due) == resumed_due
    if r is not None:
        new, t = r
        assert new.state == RUNNING and new.resumed_at == at and t.pos == new.pos
        assert ONCALL.due(new.anchor, ONCALL.after(t.pos)) == at + 600  # type: ignore[arg-type]  # spacing kept


def test_state_round_trips() -> None:
    s = running(Position(1, 2), state=STOPPED, why=ACKNOWLEDGED, resumed_at=T0 + 3, alert={"type": "x"})
    assert ChainState.from_value(s.to_value()) == s
    assert ChainState.from_value(None) is None


def test_ids_are_per_alert_step_and_repeat() -> None:
    keys = {step_key(c, "oncall", Position(r, s)) for c in ("a", "b") for r in range(2) for s in range(3)}
    assert len(keys) == 12
    assert timer_id("a", "p", Position(0, 1), T0) == timer_id("a", "p", Position(0, 1), T0)


# ---------------------------------------------------------------- properties

statuses = st.none() | st.builds(StatusView, st.sampled_from([ACTIVE, ACKNOWLEDGED, RESOLVED, DISMISSED]),
                                 st.none() | st.floats(T0 - 1e4, T0 + 1e4), st.none() | st.text(max_size=5))
positions = st.builds(Position, st.integers(0, 1), st.integers(0, 2))
states = st.none() | st.builds(ChainState, st.sampled_from(["fp:0", "fp:1"]), st.just("oncall"),
                               st.floats(T0 - 1e4, T0 + 1e4), positions,
                               st.sampled_from([RUNNING, STOPPED, DONE]),
                               st.sampled_from(["", ACKNOWLEDGED, RESOLVED, DISMISSED]),
                               st.just({}), st.none() | st.floats(T0, T0 + 1e4))
policies = st.sampled_from([ONCALL, ACKTO, None])


@given(state=states, pos=positions, anchor=st.floats(T0 - 1e4, T0 + 1e4), status=statuses, policy=policies)
def test_a_replay_decides_the_same(state: ChainState | None, pos: Position, anchor: float,
                                   status: StatusView | None, policy: EscalationPolicy | None) -> None:
    p = policy or ONCALL
    if not p.valid(pos):
        pos = Position(0, 0)
    t = Timer("fp:1", p.name, pos, anchor, p.due(anchor, pos))
    assert decide(state, t, status, policy) == decide(state, t, status, policy)


@given(state=states, pos=positions, status=statuses)
def test_a_fired_step_always_moves_on_and_a_repeat_of_it_is_skipped(
        state: ChainState | None, pos: Position, status: StatusView | None) -> None:
    t = timer(pos)
    v = decide(state, t, status, ONCALL)
    if v.action is Action.FIRE:
        assert v.state is not None and v.targets == ONCALL.steps[pos.step].to
        again = decide(v.state, t, status, ONCALL)
        assert again.action is Action.SKIP  # re-consumed: sends once
        if v.next is not None:
            assert v.next.pos > pos and v.next.due >= t.due - 1e-6 * abs(t.due)


@given(severity=st.sampled_from([1, 2, 3]), type_=st.sampled_from(["kill_switch_activated", "component_recovered"]))
def test_a_recovery_is_never_escalated(severity: int, type_: str) -> None:
    """Escalation never mutes anything (it only adds notifications) and a recovery starts none."""
    assert select((ONCALL, ACKTO, LATE), severity, type_, is_recovery=True) is None


@given(status=statuses, pos=positions)
def test_resolved_or_dismissed_never_fires(status: StatusView | None, pos: Position) -> None:
    v = decide(None, timer(pos), status, ONCALL)
    if status is not None and status.status in (RESOLVED, DISMISSED):
        assert v.action is Action.STOP and not v.targets


# ---------------------------------------------------------------- the routing file's [escalations]

GOOD = {"severities": [1], "ack_timeout_s": 600.0, "repeat": 2,
        "steps": [{"after_s": 0.0, "to": ["slack:oncall"]}, {"after_s": 300.0, "to": ["email:lead"]}]}


@pytest.mark.parametrize(("doc", "error"), [
    ({"oncall": GOOD}, None),
    ({"oncall": {**GOOD, "severities": [], "types": []}}, "escalations.oncall: names no alerts"),
    ({"oncall": {**GOOD, "severities": [4]}}, "escalations.oncall.severities[0]: not 1, 2 or 3"),
    ({"oncall": {**GOOD, "steps": []}}, "escalations.oncall.steps: expected a non-empty list of steps"),
    ({"oncall": {**GOOD, "steps": [{"after_s": 5.0, "to": ["email:a"]}, {"after_s": 5.0, "to": ["email:b"]}]}},
     "escalations.oncall.steps[1].after_s: after_s of each step must be greater"),
    ({"oncall": {**GOOD, "steps": [{"after_s": 0.0, "to": ["pager:x"]}]}}, "unknown channel 'pager'"),
    ({"oncall": {**GOOD, "steps": [{"after_s": -1.0, "to": ["email:a"]}]}}, "escalations.oncall.steps[0].after_s"),
    ({"oncall": {**GOOD, "repeat": 101}}, "escalations.oncall.repeat: a whole number 0..100"),
    ({"oncall": {**GOOD, "ack_timeout_s": 0.0}}, "escalations.oncall.ack_timeout_s"),
    ({"oncall": {**GOOD, "wait": 1}}, "escalations.oncall.wait"),
])
def test_routing_file(doc: dict[str, object], error: str | None) -> None:
    from tocsin.decisions.routing import parse_policy, problems

    found = problems({"escalations": doc})
    if error is None:
        assert found == []
        p = parse_policy({"escalations": doc}).escalations[0]
        assert (p.name, p.repeat, p.ack_timeout_s, p.steps[1]) == ("oncall", 2, 600.0, Step(300.0, ("email:lead",)))
    else:
        assert any(error in message for _, message in found), found
