"""Escalation policies (#18 item 7): who else is told, and when, about a notified alert that
nobody acknowledges or resolves. Pure over plain values; every time is event time (epoch
seconds), never the wall clock.

A policy (routing file ``[escalations.<name>]``) is a list of steps, each ``after_s`` seconds
after the chain's *anchor* (the event time of the notified alert) with its targets ``to``::

    step 0  after_s = 0    to = ["slack:oncall"]   goes out with the notification
    step 1  after_s = 300  to = ["email:lead"]     a timer through P.deliveries.retry

``repeat`` more cycles of the whole list may follow, each ``period`` later (the span of the steps
plus ``repeat_after_s``). A position is (cycle, step); its due time is
``anchor + cycle * period + steps[step].after_s``.

When a step's timer comes due, ``decide`` reads the fingerprint's status at that moment:

| status                         | ack_timeout_s | verdict                                             |
|--------------------------------|---------------|-----------------------------------------------------|
| active / not known yet         | any           | fire: the step's targets; the next position scheduled|
| resolved / dismissed           | any           | stop (the chain is over)                            |
| acknowledged                   | unset         | stop; an un-acknowledge resumes it (``resume``)     |
| acknowledged, ack + timeout >  due | set       | hold: the same step again at ack + ack_timeout_s    |
| acknowledged, ack + timeout <= due | set       | fire (the acknowledgement timed out)                |

and, before the status, the chain's own state (table ``escalations``, per fingerprint):
a timer of a position already past (a re-consumed or duplicated one) is skipped; a timer of
another notification of a fingerprint whose chain is still running joins it (recorded, nothing
sent): one chain per fingerprint at a time.

Un-acknowledge: a chain stopped by an acknowledgement resumes at the step it stopped at, due
at the un-acknowledge's time; the later steps keep their spacing from there (the anchor moves).
A step fired because an acknowledgement timed out moves the anchor the same way.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple

ACTIVE, ACKNOWLEDGED, RESOLVED, DISMISSED = "active", "acknowledged", "resolved", "dismissed"
RUNNING, STOPPED, DONE = "running", "stopped", "done"
#: delivery ids and decision ids of escalation steps: a namespace of their own
_NAMESPACE = uuid.UUID("0c6f3a57-55c1-4a0e-9d55-1f7c3a9e4b21")


@dataclass(frozen=True)
class Step:
    after_s: float
    to: tuple[str, ...]


class Position(NamedTuple):
    cycle: int
    step: int


@dataclass(frozen=True)
class EscalationPolicy:
    """One ``[escalations.<name>]`` of the routing file. It escalates the notified alerts whose
    severity is in ``severities`` or whose type is in ``types``."""

    name: str
    steps: tuple[Step, ...]
    severities: frozenset[int] = frozenset()
    types: frozenset[str] = frozenset()
    repeat: int = 0
    repeat_after_s: float = 300.0
    ack_timeout_s: float | None = None

    @property
    def period(self) -> float:
        """The time between the starts of two cycles."""
        return self.steps[-1].after_s - self.steps[0].after_s + self.repeat_after_s

    def offset(self, pos: Position) -> float:
        return pos.cycle * self.period + self.steps[pos.step].after_s

    def due(self, anchor: float, pos: Position) -> float:
        return anchor + self.offset(pos)

    def after(self, pos: Position) -> Position | None:
        """The position after ``pos``, or None at the end of the last cycle."""
        if pos.step + 1 < len(self.steps):
            return Position(pos.cycle, pos.step + 1)
        if pos.cycle < self.repeat:
            return Position(pos.cycle + 1, 0)
        return None

    def matches(self, severity: int, alert_type: str) -> bool:
        return severity in self.severities or alert_type in self.types

    def valid(self, pos: Position) -> bool:
        return 0 <= pos.step < len(self.steps) and 0 <= pos.cycle <= self.repeat


def select(policies: Iterable[EscalationPolicy], severity: int, alert_type: str,
           is_recovery: bool = False) -> EscalationPolicy | None:
    """The policy escalating a notified alert: the first (in the file's order) that matches.
    A recovery is never escalated: it ends a problem."""
    if is_recovery:
        return None
    for p in policies:
        if p.matches(severity, alert_type):
            return p
    return None


@dataclass(frozen=True)
class Start:
    """What a notification starts: ``now`` the targets going out with it (step 0 when its
    ``after_s`` is 0), and the first timer, if any."""

    now: tuple[str, ...]
    first: Position | None
    due: float | None


def start(policy: EscalationPolicy, anchor: float) -> Start:
    first = Position(0, 0)
    now: tuple[str, ...] = ()
    if policy.steps[0].after_s == 0:
        now = policy.steps[0].to
        nxt = policy.after(first)
        if nxt is None:
            return Start(now, None, None)
        first = nxt
    return Start(now, first, policy.due(anchor, first))


# ---------------------------------------------------------------- the chain's state and timers


@dataclass(frozen=True)
class Timer:
    """A step's timer as it comes due: its chain (the notified alert's dedupe key), policy,
    position, the chain's anchor and the due time it was scheduled for."""

    chain: str
    policy: str
    pos: Position
    anchor: float
    due: float


@dataclass(frozen=True)
class ChainState:
    """A fingerprint's escalation (table ``escalations``): the chain, where it is (the next
    position to fire, or the one it stopped at) and why it stopped."""

    chain: str
    policy: str
    anchor: float
    pos: Position
    state: str = RUNNING
    why: str = ""
    #: the notified alert (JSON), to build the timer that resumes the chain
    alert: Mapping[str, Any] = field(default_factory=dict)
    #: the event time of the un-acknowledge that resumed it: an acknowledgement the status
    #: still shows from before it is over (the status table may not have folded the un-acknowledge yet)
    resumed_at: float | None = None

    def to_value(self) -> dict[str, Any]:
        return {"chain": self.chain, "policy": self.policy, "anchor": self.anchor, "cycle": self.pos.cycle,
                "step": self.pos.step, "state": self.state, "why": self.why, "alert": dict(self.alert),
                "resumed_at": self.resumed_at}

    @classmethod
    def from_value(cls, v: Any) -> ChainState | None:
        if not isinstance(v, Mapping) or "chain" not in v:
            return None
        return cls(str(v["chain"]), str(v["policy"]), float(v["anchor"]), Position(int(v["cycle"]), int(v["step"])),
                   str(v.get("state", RUNNING)), str(v.get("why", "")), v.get("alert") or {},
                   None if v.get("resumed_at") is None else float(v["resumed_at"]))


@dataclass(frozen=True)
class StatusView:
    """What the decision reads of the fingerprint's status (the status table)."""

    status: str = ACTIVE
    changed_at: float | None = None  # epoch seconds of the last change
    by: str | None = None


class Action(str, enum.Enum):
    FIRE = "fire"  # the step's targets get delivery commands; the next position is scheduled
    STOP = "stop"  # acknowledged, resolved, dismissed, or the policy is gone
    HOLD = "hold"  # acknowledged with ack_timeout_s: the same step again when it runs out
    JOIN = "join"  # the fingerprint escalates already, under another chain: nothing sent
    SKIP = "skip"  # a timer of a position already past: a repeat, nothing recorded


@dataclass(frozen=True)
class Verdict:
    action: Action
    reason: str
    #: the chain's state to write (None: unchanged)
    state: ChainState | None = None
    targets: tuple[str, ...] = ()
    #: the timer to schedule (None: none)
    next: Timer | None = None

    @property
    def recorded(self) -> bool:
        return self.action is not Action.SKIP


def _step_text(policy: EscalationPolicy, pos: Position) -> str:
    text = f"escalation {policy.name} step {pos.step}/{len(policy.steps) - 1}"
    return text + (f" repeat {pos.cycle}" if pos.cycle else "")


def decide(state: ChainState | None, timer: Timer, status: StatusView | None,
           policy: EscalationPolicy | None, alert: Mapping[str, Any] | None = None) -> Verdict:
    """What a due timer does (the module's table). Pure: the same state, timer, status and
    policy give the same verdict, so a replay decides the same."""
    pos = timer.pos
    label = f"escalation {timer.policy} step {pos.step}" + (f" repeat {pos.cycle}" if pos.cycle else "")
    if state is not None and state.chain == timer.chain:
        if state.state == DONE or pos < state.pos:
            return Verdict(Action.SKIP, f"{label}: already past (the chain is at {tuple(state.pos)}, {state.state})")
        if state.state == STOPPED and state.why in (RESOLVED, DISMISSED, "policy"):
            return Verdict(Action.SKIP, f"{label}: the chain stopped ({state.why})")
    elif state is not None and state.state == RUNNING:
        return Verdict(Action.JOIN, f"{label}: joined the running escalation {state.policy} of {state.chain}")
    alert = alert if alert is not None else (state.alert if state is not None else {})
    resumed = state.resumed_at if state is not None and state.chain == timer.chain else None
    if policy is None or not policy.valid(pos):
        gone = ChainState(timer.chain, timer.policy, timer.anchor, pos, STOPPED, "policy", alert)
        return Verdict(Action.STOP, f"{label}: stopped: the policy is no longer in the routing file (or has "
                                    "fewer steps)", gone)
    text = _step_text(policy, pos)
    st = status or StatusView()
    if (st.status == ACKNOWLEDGED and resumed is not None and st.changed_at is not None
            and st.changed_at <= resumed):
        st = StatusView(ACTIVE, resumed, None)  # acknowledged before the un-acknowledge that resumed it
    if st.status in (RESOLVED, DISMISSED):
        return Verdict(Action.STOP, f"{text}: stopped: {st.status}" + (f" by {st.by}" if st.by else ""),
                       ChainState(timer.chain, policy.name, timer.anchor, pos, STOPPED, st.status, alert))
    anchor = timer.anchor
    late = ""
    if st.status == ACKNOWLEDGED:
        who = f" by {st.by}" if st.by else ""
        if policy.ack_timeout_s is None or st.changed_at is None:
            return Verdict(Action.STOP, f"{text}: stopped: acknowledged{who}",
                           ChainState(timer.chain, policy.name, anchor, pos, STOPPED, ACKNOWLEDGED, alert))
        runs_out = st.changed_at + policy.ack_timeout_s
        if timer.due < runs_out:
            held = ChainState(timer.chain, policy.name, anchor, pos, STOPPED, ACKNOWLEDGED, alert)
            return Verdict(Action.HOLD, f"{text}: held: acknowledged{who}; escalates again if not resolved within "
                                        f"ack_timeout_s={policy.ack_timeout_s:g}", held,
                           next=Timer(timer.chain, policy.name, pos, anchor, runs_out))
        anchor = max(anchor, runs_out - policy.offset(pos))
        late = f" (acknowledged{who}, not resolved within ack_timeout_s={policy.ack_timeout_s:g})"
    targets = policy.steps[pos.step].to
    nxt = policy.after(pos)
    if nxt is None:
        new = ChainState(timer.chain, policy.name, anchor, pos, DONE, "", alert, resumed)
        return Verdict(Action.FIRE, f"{text}{late}: to {', '.join(targets)}; the last step", new, targets)
    new = ChainState(timer.chain, policy.name, anchor, nxt, RUNNING, "", alert, resumed)
    return Verdict(Action.FIRE, f"{text}{late}: to {', '.join(targets)}", new, targets,
                   Timer(timer.chain, policy.name, nxt, anchor, policy.due(anchor, nxt)))


def resume(state: ChainState | None, at: float, policy: EscalationPolicy | None) -> tuple[ChainState, Timer] | None:
    """An un-acknowledge at ``at`` (event time): a chain stopped by an acknowledgement (or held
    by one) resumes at the step it stopped at, due at ``at``; the later steps keep their
    spacing from there. Anything else: None."""
    if state is None or policy is None or state.state != STOPPED or state.why != ACKNOWLEDGED:
        return None
    if not policy.valid(state.pos):
        return None
    anchor = max(state.anchor, at - policy.offset(state.pos))
    new = replace(state, anchor=anchor, state=RUNNING, why="", resumed_at=at)
    return new, Timer(state.chain, state.policy, state.pos, anchor, policy.due(anchor, state.pos))


def step_key(chain: str, policy: str, pos: Position) -> str:
    """The dedupe key of a step's deliveries (``delivery_id_for(step_key, target, target)``):
    per alert, step and repeat, so a replayed or re-consumed step sends once."""
    return f"{chain}/escalation/{policy}/{pos.cycle}/{pos.step}"


def timer_id(chain: str, policy: str, pos: Position, due: float) -> str:
    """The id (and ``delivery_id``) of a step's timer on the retry topic."""
    return uuid.uuid5(_NAMESPACE, f"timer/{chain}/{policy}/{pos.cycle}/{pos.step}/{due!r}").hex


def record_id(chain: str, policy: str, pos: Position, action: Action, due: float) -> uuid.UUID:
    """The decision id of a step's record: one per chain, position, verdict and due time."""
    return uuid.uuid5(_NAMESPACE, f"decision/{chain}/{policy}/{pos.cycle}/{pos.step}/{action.value}/{due!r}")
