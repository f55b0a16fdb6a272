"""Flap detection (issue #18 item 4): a fingerprint whose state changes (firing <-> resolved)
more than ``changes`` times within ``window_s`` seconds of event time is *flapping*: one
``flapping`` notification, then quiet (each event recorded, outcome ``flapping``, nothing
sent) until it has been stable -- no state change -- for ``hold_s``; then one notification of
the state it settled in (``notify`` for firing, ``bypass`` for resolved), and it is decided as
before.

Pure over plain values: the state (``FlapState``) and the event's state and event time in, a
``FlapVerdict`` with its reason out. Event time decides, so a replay of the same events (and
timers) decides the same.

The state is kept per *home* fingerprint (``home_of``): a recovery's is the fingerprint it
resolves, so a firing and its recovery change the same state. No state means "firing, no
recent change": a fingerprint that only ever fires keeps nothing.

Event time orders: the state is the one of the newest event (``seen``, its time); an event
older than that (a firing and its recovery travel under different keys, so either may come
first) changes nothing: it goes on to the throttle, or while flapping is recorded.

Stable for ``hold_s`` is seen two ways, which settle the same: the next event of the
fingerprint at or past ``last_change + hold_s`` settles it first (``FlapVerdict.settled``),
then is decided on the settled state; and a timer (``decide_timer``) scheduled at each change
while flapping settles it when no event comes. A timer names the change it was scheduled for
(``since``, ``last_change``); one whose change is no longer the last is stale and does nothing,
so a timer repeated after a restart, or arriving after the next event settled it, is harmless.

Forgetting: a state that is not flapping and has had no event for ``window_s + hold_s`` is
decided as no state at all (``quiet_for``): a fingerprint quiet that long starts afresh, as a new
one does (its first firing is no change). So the retention sweep may delete it and a later
decision is the same with it or without it (tests/unit/decisions/test_retention.py).

The rule for recoveries: a recovery is never muted *silently*. Not flapping, it goes on to the
throttle (which bypasses it). At the crossing it is the ``flapping`` notification itself.
While flapping it is recorded (``flapping``, suppressed) and the episode ends with one settled
notification of the last state the fingerprint was in: resolved if no firing came after it.
"""

from __future__ import annotations

import datetime as dt
import enum
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Annotated, Any

from pydantic import Field, Strict

from ..schemas.alert import RECOVERS, AlertEvent
from ..schemas.messages import NAMESPACE
from .config_model import Table

FIRING = "firing"
RESOLVED = "resolved"

#: the longest window or hold a routing file may set (a day)
MAX_FLAP_S = 86400.0


@dataclass(frozen=True, slots=True)
class FlapPolicy:
    """More than ``changes`` state changes within ``window_s`` seconds: flapping, until stable
    for ``hold_s`` seconds."""

    changes: int = 4
    window_s: float = 600.0
    hold_s: float = 900.0


@dataclass(frozen=True)
class FlapSettings:
    """The routing file's ``[flapping]``: the policy of every type (``default``; None: off)
    and of the types named under ``[flapping.types]`` (None: off for that type)."""

    default: FlapPolicy | None = None
    by_type: Mapping[str, FlapPolicy | None] = field(default_factory=dict)

    @property
    def enabled(self) -> bool:
        return self.default is not None or any(p is not None for p in self.by_type.values())

    def for_type(self, alert_type: str) -> FlapPolicy | None:
        return self.by_type[alert_type] if alert_type in self.by_type else self.default


#: flap detection off (the built-in routing)
OFF = FlapSettings()


# ------------------------------------------------------------------------- the routing file

Count = Annotated[int, Strict(), Field(ge=1, le=1000, description="a whole number 1..1000")]
FlapSeconds = Annotated[float, Strict(), Field(gt=0, le=MAX_FLAP_S, allow_inf_nan=False,
                                               description=f"seconds, a number > 0 and <= {MAX_FLAP_S:.0f}")]
_BUILT_IN = FlapPolicy()


class FlapTypeFile(Table):
    """``[flapping.types.<type>]``: what a type changes of ``[flapping]``'s policy."""

    enabled: Annotated[bool, Strict()] = Field(default=True, description="true or false")
    changes: Count | None = None
    window_s: FlapSeconds | None = None
    hold_s: FlapSeconds | None = None


class FlapFile(Table):
    """``[flapping]``: ``changes``, ``window_s``, ``hold_s`` for every type (``enabled = false``:
    only for the types of ``[flapping.types]``), and per type what differs."""

    enabled: Annotated[bool, Strict()] = Field(default=True, description="true or false")
    changes: Count = _BUILT_IN.changes
    window_s: FlapSeconds = _BUILT_IN.window_s
    hold_s: FlapSeconds = _BUILT_IN.hold_s
    types: dict[Annotated[str, Strict()], Annotated[FlapTypeFile, Field(description="expected a table")]] = Field(
        default_factory=dict, description="expected a table of alert type = its [flapping] settings")

    def settings(self) -> FlapSettings:
        base = FlapPolicy(self.changes, self.window_s, self.hold_s)
        by_type: dict[str, FlapPolicy | None] = {}
        for name, t in self.types.items():
            own = {k: getattr(t, k) for k in ("changes", "window_s", "hold_s") if getattr(t, k) is not None}
            by_type[name] = replace(base, **own) if t.enabled else None
        return FlapSettings(base if self.enabled else None, by_type)


# ------------------------------------------------------------------------------- the decision


def state_of(event: AlertEvent) -> str:
    return RESOLVED if event.is_recovery else FIRING


def home_of(event: AlertEvent) -> str:
    """The fingerprint whose flap state an event changes: what a recovery resolves, else its own."""
    return event.resolves if event.is_recovery and event.resolves else event.fingerprint


def problem_type(event: AlertEvent) -> str:
    """The type whose policy decides: a recovery type's problem type (component_recovered →
    component_unhealthy), else the event's."""
    return RECOVERS.get(event.type, event.type)


@dataclass(frozen=True, slots=True)
class FlapState:
    """Per home fingerprint: the ``last`` state, the event times of the recent ``changes`` (at
    most the policy's count + 1, within its window); while flapping, ``since`` (the crossing
    change's time), ``last_change``, how many events were ``suppressed``, the ``alert`` the
    settled notification reports (the latest event, as a JSON-mode dict) and ``first`` (the
    crossing event's alert id: a re-consumed crossing is notified again, with the same ids)."""

    last: str = FIRING
    changes: tuple[float, ...] = ()
    since: float | None = None
    last_change: float = 0.0
    suppressed: int = 0
    alert: dict[str, Any] | None = None
    first: str | None = None
    seen: float | None = None

    @property
    def flapping(self) -> bool:
        return self.since is not None

    def to_value(self) -> dict[str, Any]:
        v: dict[str, Any] = {"last": self.last, "changes": list(self.changes), "seen": self.seen}
        if self.since is not None:
            v.update(since=self.since, last_change=self.last_change, suppressed=self.suppressed,
                     alert=self.alert, first=self.first)
        return v

    @classmethod
    def from_value(cls, value: Any) -> FlapState | None:
        if value is None or isinstance(value, FlapState):
            return value
        return cls(value.get("last", FIRING), tuple(float(t) for t in value.get("changes", ())),
                   value.get("since"), float(value.get("last_change", 0.0)), int(value.get("suppressed", 0)),
                   value.get("alert"), value.get("first"), value.get("seen"))


class Kind(str, enum.Enum):
    PASS = "pass"  # not flapping: on to the throttle, as without flap detection
    NOTIFY = "notify"  # crossed the threshold: the one flapping notification
    SUPPRESS = "suppress"  # flapping: recorded, not notified


@dataclass(frozen=True, slots=True)
class Settled:
    """The end of a flapping episode: one notification of ``state`` at event time ``at``."""

    state: str
    at: float
    since: float
    last_change: float
    suppressed: int
    alert: dict[str, Any] | None
    reason: str


@dataclass(frozen=True, slots=True)
class Timer:
    """Settle the episode ``since`` if ``last_change`` is still its last change at ``due``."""

    since: float
    last_change: float
    due: float


@dataclass(frozen=True, slots=True)
class FlapVerdict:
    kind: Kind
    reason: str
    new_state: FlapState | None  # None: leave the table unchanged
    settled: Settled | None = None  # an episode that ended before this event (notify it first)
    timer: Timer | None = None  # to schedule
    late: bool = False  # older than the newest event: it changed nothing


def _iso(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).isoformat().replace("+00:00", "Z")


def _settle(s: FlapState, policy: FlapPolicy) -> Settled:
    assert s.since is not None
    at = s.last_change + policy.hold_s
    return Settled(s.last, at, s.since, s.last_change, s.suppressed, s.alert,
                   f"flapping settled {s.last}: no state change for {policy.hold_s:g}s since {_iso(s.last_change)} "
                   f"(flapping since {_iso(s.since)}, {s.suppressed} suppressed)")


def decide(state: FlapState | None, new: str, ts: float, policy: FlapPolicy,
           alert: dict[str, Any] | None = None, alert_id: str | None = None) -> FlapVerdict:
    """Decide one event of state ``new`` (``FIRING``/``RESOLVED``) at event time ``ts``.

    ``alert`` (the event, JSON-mode) is kept while flapping for the settled notification;
    ``alert_id`` tells a re-consumed crossing event (notified again) from another event."""
    if state is not None and quiet_for(state, ts, policy):
        state = None  # stable past window_s + hold_s: decided as a fingerprint never seen (forgettable)
    if state is None and new == FIRING:  # the common case, kept cheap: nothing to keep
        return _STABLE
    s = state or FlapState()
    settled = None
    if s.since is not None and ts >= s.last_change + policy.hold_s:
        settled = _settle(s, policy)
        s = FlapState(s.last, seen=s.seen)
    late = s.seen is not None and ts < s.seen
    changed = not late and new != s.last
    seen = ts if s.seen is None or ts > s.seen else s.seen
    if s.since is not None:  # flapping
        if alert_id is not None and alert_id == s.first:
            return FlapVerdict(Kind.NOTIFY, f"flapping since {_iso(s.since)} (redelivered)", None)
        last_change = ts if changed else s.last_change
        ns = replace(s, last=new if changed else s.last, last_change=last_change, suppressed=s.suppressed + 1,
                     alert=s.alert if late else alert, seen=seen)
        timer = Timer(s.since, last_change, last_change + policy.hold_s) if changed else None
        why = "a late event (older than the newest), recorded" if late else \
            f"quiet until stable for {policy.hold_s:g}s"
        return FlapVerdict(Kind.SUPPRESS, f"flapping since {_iso(s.since)}: {why}", ns, settled, timer, late)
    if not changed:
        keep = replace(s, seen=seen) if settled or (state is not None and seen != s.seen) else None
        return FlapVerdict(Kind.PASS, "late: older than the newest event" if late else "stable", keep, settled,
                           late=late)
    recent = tuple(t for t in s.changes if t > ts - policy.window_s)[-policy.changes:] + (ts,)
    if len(recent) > policy.changes:
        ns = FlapState(new, recent, ts, ts, 0, alert, alert_id, seen)
        return FlapVerdict(Kind.NOTIFY,
                           f"flapping: {len(recent)} state changes within {policy.window_s:g}s "
                           f"(more than {policy.changes}); quiet until stable for {policy.hold_s:g}s",
                           ns, settled, Timer(ts, ts, ts + policy.hold_s))
    return FlapVerdict(Kind.PASS, f"state change {len(recent)} of {policy.changes} within {policy.window_s:g}s",
                       FlapState(new, recent, seen=seen), settled)


_STABLE = FlapVerdict(Kind.PASS, "stable", None)


def quiet_for(state: FlapState, ts: float, policy: FlapPolicy) -> bool:
    """Whether ``state`` (not flapping) is stable at ``ts`` for ``window_s + hold_s`` since its
    newest event: then no change of it is in any window any more and ``decide`` treats it as no
    state (a fingerprint never seen), so forgetting it (the retention sweep,
    decisions/retention.flap_expiry) changes no later decision."""
    if state.flapping:
        return False
    newest = newest_of(state)
    return newest is not None and ts >= newest + policy.window_s + policy.hold_s


def newest_of(state: FlapState) -> float | None:
    """The event time of the newest event a state knows (``seen``; before it was kept, its
    newest change)."""
    if state.seen is not None:
        return state.seen
    return max(state.changes) if state.changes else None


def decide_timer(state: FlapState | None, timer: Timer, policy: FlapPolicy) -> tuple[Settled | None, FlapState | None]:
    """A timer's turn: the settled episode and the state to keep, or (None, None) when the
    timer is stale (the episode changed since, or is over)."""
    if state is None or state.since != timer.since or state.last_change != timer.last_change:
        return None, None
    return _settle(state, policy), FlapState(state.last, seen=state.seen)


# ---------------------------------------------------------------------------- ids and keys


def episode_key(home: str, since: float) -> str:
    """The dedupe key of an episode's flapping notification and of its suppressed events."""
    return f"{home}:flapping:{round(since * 1000)}"


def settled_key(home: str, settled: Settled) -> str:
    return f"{episode_key(home, settled.since)}:settled:{round(settled.last_change * 1000)}"


def settled_alert_id(home: str, settled: Settled) -> uuid.UUID:
    """One alert id per settled episode, whichever way (event or timer) settled it."""
    return uuid.uuid5(NAMESPACE, f"flapping/{settled_key(home, settled)}")


def timer_id(home: str, timer: Timer) -> str:
    """The retry topic's key of a timer: the same for a timer scheduled again after a restart."""
    return f"flapping:{home}:{round(timer.since * 1000)}:{round(timer.last_change * 1000)}"
