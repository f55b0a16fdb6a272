"""How long state is kept: pure decisions over plain values, the clock passed in.

- A fingerprint's **status** (the status table) is kept while it is open (``active``,
  ``acknowledged``) and for ``TOCSIN_STATUS_RETENTION_S`` after it was closed (``resolved``,
  ``dismissed``); ClickHouse keeps its history. Closed *when*: the later of its
  ``status_changed_at`` and its ``last_seen`` (event times, so a replay decides the same).
- A **delivery state** (the delivery table, delivery_id → sent/dead) is kept for
  ``TOCSIN_DELIVERY_STATE_RETENTION_S`` after it was written: past it, no replay or retry of
  its command is expected any more (core/settings.py says how the default is made).

- A fingerprint's **escalation chain** (the escalations table) is kept for a retention after
  its *last step time*: the due time of the position it is at (fired last, stopped at, or next
  to fire; ``anchor + offset``), or its un-acknowledge if later. The retention is
  ``TOCSIN_ESCALATION_RETENTION_S`` when set, else per policy twice the chain's whole span
  (every step of every repeat) plus its ``ack_timeout_s`` plus an hour
  (``escalation_retention``). Past it a chain is done, stopped, or its timer long lost; an
  un-acknowledge later than that no longer resumes it, and a timer arriving later still is
  decided as a new chain (its step's delivery ids are the same, so the delivery table drops a
  repeat it still knows).
- A fingerprint's **flap state** (the flapping table) is kept while flapping and until it has
  been stable (no event) for ``window_s + hold_s`` of the longest policy of the routing file
  (``flap_expiry``): ``decisions/flapping.decide`` treats such a state as none, so forgetting it
  changes no later decision (a hypothesis property says so).

Each returns an ``Expiry``: whether, and why (the reason is for logs and tests).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any, NamedTuple

from .escalation import ChainState, EscalationPolicy
from .flapping import MAX_FLAP_S, FlapSettings, FlapState, newest_of

OPEN = ("active", "acknowledged")
CLOSED = ("resolved", "dismissed")


class Expiry(NamedTuple):
    expired: bool
    reason: str


def parse_time(value: Any) -> dt.datetime | None:
    """An RFC 3339 time as the status table holds it (``...Z``), or None when it is none."""
    if not isinstance(value, str) or not value:
        return None
    try:
        t = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo is not None else t.replace(tzinfo=dt.UTC)


def closed_at(status: Mapping[str, Any]) -> dt.datetime | None:
    """When a closed status was closed: the later of ``status_changed_at`` and ``last_seen``
    (a suppressed occurrence from before the resolve may move ``last_seen`` without reopening
    it); None when it is open or has neither time."""
    if status.get("status") not in CLOSED:
        return None
    times = [t for t in (parse_time(status.get("status_changed_at")), parse_time(status.get("last_seen")))
             if t is not None]
    return max(times) if times else None


def status_expiry(status: Mapping[str, Any] | None, now: dt.datetime, retention_s: float) -> Expiry:
    """Whether the status table forgets this status at ``now``: only a closed one, exactly
    once ``retention_s`` has passed since it was closed."""
    if status is None:
        return Expiry(False, "no status")
    state = status.get("status")
    if state in OPEN:
        return Expiry(False, f"{state}: kept while open")
    if state not in CLOSED:
        return Expiry(False, f"status {state!r} is not a closed one: kept")
    since = closed_at(status)
    if since is None:
        return Expiry(False, f"{state} at no known time: kept")
    age = now - since
    if age >= dt.timedelta(seconds=retention_s):
        return Expiry(True, f"{state} {age.total_seconds():.0f} s ago, past the {retention_s:g} s retention")
    return Expiry(False, f"{state} {age.total_seconds():.0f} s ago, within the {retention_s:g} s retention")


def delivery_expiry(written_s: float | None, now_s: float, retention_s: float) -> Expiry:
    """Whether a delivery state written at ``written_s`` (epoch seconds; None: unknown) is
    forgotten at ``now_s``: exactly once ``retention_s`` has passed."""
    if written_s is None:
        return Expiry(False, "written at no known time: kept")
    age = now_s - written_s
    if age >= retention_s:
        return Expiry(True, f"written {age:.0f} s ago, past the {retention_s:g} s retention")
    return Expiry(False, f"written {age:.0f} s ago, within the {retention_s:g} s retention")


#: the margin an escalation chain is kept after its last step, beyond its policy's span
MIN_ESCALATION_RETENTION_S = 3600.0


def escalation_retention(policy: EscalationPolicy | None, override_s: float | None = None) -> float:
    """How long a chain of ``policy`` is kept after its last step time: ``override_s`` when
    set (``TOCSIN_ESCALATION_RETENTION_S``), else twice the policy's whole span (the last
    step of the last repeat) plus its ``ack_timeout_s`` plus an hour (a held step's timer,
    due at most ``ack_timeout_s`` after its step, always finds its chain); a policy gone from
    the routing file: the hour."""
    if override_s is not None:
        return float(override_s)
    if policy is None or not policy.steps:
        return MIN_ESCALATION_RETENTION_S
    span = policy.repeat * policy.period + policy.steps[-1].after_s
    return 2 * span + (policy.ack_timeout_s or 0.0) + MIN_ESCALATION_RETENTION_S


def chain_last_time(state: ChainState, policy: EscalationPolicy | None) -> float:
    """A chain's last step time (epoch seconds, event time): its position's due time under
    ``policy`` (the anchor when the policy is gone or has fewer steps), or the un-acknowledge
    that resumed it if later."""
    at = policy.due(state.anchor, state.pos) if policy is not None and policy.valid(state.pos) else state.anchor
    return max(at, state.resumed_at or at)


def escalation_expiry(state: ChainState | None, policy: EscalationPolicy | None, now_s: float,
                      override_s: float | None = None) -> Expiry:
    """Whether the escalations table forgets this chain at ``now_s``: exactly once its
    retention (``escalation_retention``) has passed since its last step time."""
    if state is None:
        return Expiry(False, "no chain")
    retention = escalation_retention(policy, override_s)
    age = now_s - chain_last_time(state, policy)
    what = f"{state.state}" + (f" ({state.why})" if state.why else "")
    if age >= retention:
        return Expiry(True, f"chain {what}, last step {age:.0f} s ago, past the {retention:g} s retention")
    return Expiry(False, f"chain {what}, last step {age:.0f} s ago, within the {retention:g} s retention")


def flap_horizon(settings: FlapSettings) -> float:
    """How long a fingerprint must be stable before its flap state is forgotten: the longest
    ``window_s + hold_s`` of the routing file's policies (a state does not say its type); flap
    detection off: the longest a routing file may set, twice."""
    spans = [p.window_s + p.hold_s for p in (settings.default, *settings.by_type.values()) if p is not None]
    return max(spans) if spans else 2 * MAX_FLAP_S


def flap_expiry(state: FlapState | None, now_s: float, horizon_s: float) -> Expiry:
    """Whether the flapping table forgets this state at ``now_s``: never while flapping (its
    timer or next event settles it); else once its newest event is ``horizon_s`` old."""
    if state is None:
        return Expiry(False, "no state")
    if state.flapping:
        return Expiry(False, "flapping: kept until it settles")
    newest = newest_of(state)
    if newest is None:
        return Expiry(True, "no event time and no change: nothing to decide with")
    age = now_s - newest
    if age >= horizon_s:
        return Expiry(True, f"{state.last}, stable {age:.0f} s, past window_s + hold_s = {horizon_s:g} s")
    return Expiry(False, f"{state.last}, stable {age:.0f} s, within window_s + hold_s = {horizon_s:g} s")
