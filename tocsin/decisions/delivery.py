"""The delivery decision (DESIGN "Delivery"): what to do with one delivery command now, and why.

``decide(cmd, now, gate, contact)`` is pure: the clock is a parameter, the destination's
breaker and rate limiter are asked through ``gate`` (``decisions.limits.Gate``, pure too), the
jitter is drawn from ``rng``. The delivery agent (agents/delivery/handle.py) carries out what
it returns and decides nothing itself::

    before a contact (contact None)                    after one (contact given)
      state sent, or dead and not redriven -> skip       ok                  -> done
      destination not configured -> dead(config)         permanent (4xx ...) -> dead(permanent)
      past its deadline          -> dead(expired)        past its deadline   -> dead(expired)
      circuit open               -> defer(next probe)    schedule exhausted  -> dead(exhausted)
      rate limited               -> defer(its slot)      otherwise           -> retry(at)
      otherwise                  -> send

Failing over is a flag on a decision (``Decision.failover``), not an action of its own: the
command is sent down its failover chain as well as deferred, retried or dead-lettered. A dead
command with a chain it has not been sent down yet fails over; so does a SEV1 deferred by an
open circuit, or whose failed contact opened it (the original keeps trying).

``Pending`` (the command), ``Contact`` (a contact's outcome) and ``Decision`` are named
tuples: made for every command, and a tuple costs a fifth of a frozen dataclass's
``__init__``; the decisions that depend on nothing but their action (send, done, skip) are one
shared tuple each.

An attempt is a contact with the destination: skips and deferrals spend none. The schedule
has two tiers (``decisions.retry``), fast retries riding out a blip, then slow ones riding
out an outage; each command has a deadline (``max_age_s`` after it was made) after which it
is dead, and nothing is scheduled past it. A command redriven from the DLQ has no deadline,
and is sent again although its state is dead.
"""

from __future__ import annotations

import datetime as dt
import enum
import math
import random
from collections.abc import Sequence
from typing import NamedTuple, Protocol

from .retry import DEFAULT_MAX_AGE_S, DEFAULT_SCHEDULE_S, JITTER, MAX_RETRY_AFTER_S, Reason

#: a delivery's states in the delivery table (keyed by delivery_id); none: never handled
SENT = "sent"
DEAD = "dead"


class Action(enum.StrEnum):
    SKIP = "skip"  # a copy of a command already handled: record it, send nothing
    SEND = "send"  # contact the destination now
    DONE = "done"  # it took the message
    DEFER = "defer"  # not now, come back ``at`` (no attempt spent)
    RETRY = "retry"  # the contact failed: attempt again ``at``
    DEAD = "dead"  # to the DLQ (and the failover chain)


#: why, besides a contact's ``Reason`` (retry) and ``circuit_open``/``rate_limited`` (defer)
DUPLICATE = "duplicate"
CONFIG = Reason.CONFIG.value
EXPIRED = "expired"
PERMANENT = "permanent"
EXHAUSTED = "exhausted"


class Decision(NamedTuple):
    """What to do, and why."""

    action: Action
    #: why: ``duplicate`` (skip), ``circuit_open``/``rate_limited`` (defer), the contact's
    #: reason (retry), ``config``/``expired``/``permanent``/``exhausted`` (dead), ``""`` (send,
    #: done)
    reason: str = ""
    #: defer: until; retry: when
    at: dt.datetime | None = None
    #: send the command down its failover chain now as well
    failover: bool = False
    #: the reason in words: ``already sent`` (skip), the error of a dead command
    detail: str = ""


# the decisions that depend on nothing but their action: one each, not one per command
_SEND = Decision(Action.SEND)
_DONE = Decision(Action.DONE)
_SKIP_SENT = Decision(Action.SKIP, DUPLICATE, detail=f"already {SENT}")
_SKIP_DEAD = Decision(Action.SKIP, DUPLICATE, detail=f"already {DEAD}")


class Pending(NamedTuple):
    """What the decision needs of a delivery command, and of its state on this worker."""

    key: str  # the delivery_id: its rate slot is reserved under it
    attempt: int  # the contact about to be made, or just made (1-based)
    max_attempts: int
    schedule: Sequence[float]
    created_at: dt.datetime
    max_age_s: float | None = DEFAULT_MAX_AGE_S  # None: no deadline
    urgent: bool = False  # SEV1
    #: it has a failover chain that it has not been sent down yet
    can_fail_over: bool = False
    #: its state in the delivery table: ``SENT``, ``DEAD`` or None (not handled yet)
    state: str | None = None
    #: sent back from the DLQ by an operator: sent again although dead, with no deadline
    redriven: bool = False
    destination: str = ""
    #: this worker has a channel for the destination
    configured: bool = True

    @property
    def deadline(self) -> dt.datetime | None:
        if self.max_age_s is None or self.redriven:
            return None
        return self.created_at + dt.timedelta(seconds=self.max_age_s)


class Contact(NamedTuple):
    """The outcome of one contact with the destination."""

    ok: bool
    retryable: bool
    reason: Reason
    retry_after_s: float | None = None
    #: the destination's breaker is open after this outcome was recorded
    breaker_open: bool = False


class Gate(Protocol):
    """A destination's breaker and rate limiter (``limits.Gate``), clock in seconds."""

    @property
    def circuit_spread_s(self) -> float: ...

    @property
    def rate_spread_s(self) -> float: ...

    def circuit_wait(self, now: float) -> float | None: ...

    def admit(self, key: str, urgent: bool, now: float) -> float: ...


_RNG = random.Random()


def _until(now: dt.datetime, wait_s: float, spread_s: float, deadline: dt.datetime | None,
           r: random.Random) -> dt.datetime:
    jitter = r.uniform(0.0, spread_s) if spread_s > 0 else 0.0
    at = now + dt.timedelta(seconds=max(wait_s, 0.0) + jitter)
    return min(at, deadline) if deadline is not None else at


def _expired(cmd: Pending) -> Decision:
    return Decision(Action.DEAD, EXPIRED, failover=cmd.can_fail_over,
                    detail=f"not delivered within max_age_s={cmd.max_age_s:g}")


def decide(cmd: Pending, now: dt.datetime, gate: Gate | None = None, contact: Contact | None = None,
           rng: random.Random | None = None) -> Decision:
    """What to do with a delivery command now: before a contact (``contact`` None), from its
    state, its destination and the ``gate``, which is asked last and takes the breaker's probe
    and the rate slot only when it says send; after one, from the contact's outcome.
    Deferrals and retries are never scheduled past the command's deadline."""
    if contact is None:
        state = cmd.state
        if state is not None:
            if state == SENT:
                return _SKIP_SENT
            if state == DEAD and not cmd.redriven:
                return _SKIP_DEAD
        if not cmd.configured:
            return Decision(Action.DEAD, CONFIG, failover=cmd.can_fail_over,
                            detail=f"destination {cmd.destination} is not configured on this worker")
        deadline = cmd.deadline
        if deadline is not None and now >= deadline:
            return _expired(cmd)
        if gate is not None:
            r = rng if rng is not None else _RNG
            t = now.timestamp()
            wait = gate.circuit_wait(t)
            if wait is not None:
                return Decision(Action.DEFER, Reason.CIRCUIT_OPEN.value,
                                _until(now, wait, gate.circuit_spread_s, deadline, r),
                                failover=cmd.urgent and cmd.can_fail_over)
            wait = gate.admit(cmd.key, cmd.urgent, t)
            if wait > 0:
                return Decision(Action.DEFER, Reason.RATE_LIMITED.value,
                                _until(now, wait, gate.rate_spread_s, deadline, r))
        return _SEND
    if contact.ok:
        return _DONE
    if not contact.retryable:
        return Decision(Action.DEAD, PERMANENT, failover=cmd.can_fail_over,
                        detail=f"{contact.reason.value}: permanent failure")
    deadline = cmd.deadline
    if deadline is not None and now >= deadline:
        return _expired(cmd)
    if cmd.attempt >= cmd.max_attempts:
        return Decision(Action.DEAD, EXHAUSTED, failover=cmd.can_fail_over,
                        detail=f"{contact.reason.value}: exhausted after {cmd.attempt} attempts")
    r = rng if rng is not None else _RNG
    steps = cmd.schedule or DEFAULT_SCHEDULE_S
    delay = steps[min(max(cmd.attempt, 1) - 1, len(steps) - 1)] * (1.0 + r.uniform(-JITTER, JITTER))
    if contact.retry_after_s is not None and math.isfinite(contact.retry_after_s):
        delay = max(delay, min(contact.retry_after_s, MAX_RETRY_AFTER_S))
    return Decision(Action.RETRY, contact.reason.value, _until(now, delay, 0.0, deadline, r),
                    failover=cmd.urgent and cmd.can_fail_over and contact.breaker_open)
