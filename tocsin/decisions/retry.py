"""Failure classes, the retry schedule and the delivery decision (DESIGN "Delivery").

``decide(command, now, gate, contact)`` is the one decision of a delivery, pure (the clock is
a parameter, the destination's breaker and rate limiter are asked through ``gate``), and
returns what to do and why::

    before a contact (contact None)            after one (contact given)
      past its deadline  -> dead(expired)        ok                     -> done
      circuit open       -> defer(next probe)    permanent (4xx ...)    -> dead(permanent)
      rate limited       -> defer(its slot)      past its deadline      -> dead(expired)
      otherwise          -> send                 schedule exhausted     -> dead(exhausted)
                                                 otherwise              -> retry(at)

An attempt is a contact with the destination: deferrals spend none. The schedule has two
tiers, fast retries (1, 2, 4, 8 s) riding out a blip, then slow ones (5 min, 30 min, 2 h,
12 h, 24 h) riding out an outage; each command has a deadline (``max_age_s`` after it was
made, 2 days by default) after which it is dead, and nothing is scheduled past it. A SEV1
deferred by an open circuit, or whose failed contact opened it, is also sent down its
failover chain at once (``failover``); the original keeps trying.
"""

from __future__ import annotations

import datetime as dt
import enum
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

DEFAULT_BACKOFF_S: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0)
#: the slow tier, after the fast one
DEFAULT_SLOW_BACKOFF_S: tuple[float, ...] = (300.0, 1800.0, 7200.0, 43200.0, 86400.0)
DEFAULT_SCHEDULE_S: tuple[float, ...] = DEFAULT_BACKOFF_S + DEFAULT_SLOW_BACKOFF_S
#: the first contact, then one per step of the schedule
DEFAULT_MAX_ATTEMPTS = 1 + len(DEFAULT_SCHEDULE_S)
DEFAULT_MAX_AGE_S = 2 * 86400.0
JITTER = 0.2  # +/- 20 %
MAX_RETRY_AFTER_S = 3600.0  # the longest Retry-After honoured


class Reason(str, enum.Enum):
    OK = "ok"
    CLIENT_ERROR = "client_error"  # permanent
    SERVER_ERROR = "server_error"
    RATE_LIMITED = "rate_limited"
    TIMEOUT = "timeout"
    CONNECTION = "connection"
    CONFIG = "config"  # permanent: destination misconfigured
    INVALID_MESSAGE = "invalid_message"  # permanent: the channel cannot build this message
    CIRCUIT_OPEN = "circuit_open"
    UNKNOWN = "unknown"


def classify_http(status: int) -> tuple[bool, bool, Reason]:
    """HTTP status -> (ok, retryable, reason). 4xx other than 408/429 is permanent."""
    if 200 <= status < 300:
        return True, False, Reason.OK
    if status == 429:
        return False, True, Reason.RATE_LIMITED
    if status == 408:
        return False, True, Reason.TIMEOUT
    if 400 <= status < 500:
        return False, False, Reason.CLIENT_ERROR
    if 500 <= status < 600:
        return False, True, Reason.SERVER_ERROR
    # 1xx/3xx: the receiver did not take it; try again
    return False, True, Reason.UNKNOWN


def classify_smtp(code: int) -> tuple[bool, bool, Reason]:
    """SMTP reply code -> (ok, retryable, reason). 5xx permanent, 4xx transient."""
    if 200 <= code < 400:
        return True, False, Reason.OK
    if 400 <= code < 500:
        return False, True, Reason.SERVER_ERROR
    return False, False, Reason.CLIENT_ERROR


def parse_retry_after(value: str | None, now: dt.datetime) -> float | None:
    """Retry-After as seconds (delta-seconds or an HTTP date); None if absent or bad.

    Never negative, never more than ``MAX_RETRY_AFTER_S`` (a receiver asking for days, or
    sending ``inf``, must not park a delivery for ever); never raises.
    """
    if not value or not isinstance(value, str):
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        if not math.isfinite(seconds):
            return None
        return min(MAX_RETRY_AFTER_S, max(0.0, seconds))
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    if now.tzinfo is None:
        now = now.replace(tzinfo=dt.UTC)
    try:
        delta = (when - now).total_seconds()
    except OverflowError:
        return None
    return min(MAX_RETRY_AFTER_S, max(0.0, delta))


@dataclass(frozen=True, slots=True)
class RetryPlan:
    retry: bool
    reason: str
    not_before: dt.datetime | None = None
    delay_s: float = 0.0


def plan_retry(
    attempt: int,
    max_attempts: int,
    backoff_s: list[float] | tuple[float, ...],
    retryable: bool,
    now: dt.datetime,
    retry_after_s: float | None = None,
    rng: random.Random | None = None,
) -> RetryPlan:
    """After failed attempt number ``attempt`` (1-based): retry when, or give up why."""
    if not retryable:
        return RetryPlan(False, "permanent failure")
    if attempt >= max_attempts:
        return RetryPlan(False, f"exhausted after {attempt} attempts")
    schedule = list(backoff_s) or list(DEFAULT_BACKOFF_S)
    base = schedule[min(max(attempt, 1) - 1, len(schedule) - 1)]
    r = rng or random
    delay = base * (1.0 + r.uniform(-JITTER, JITTER))
    if retry_after_s is not None and math.isfinite(retry_after_s):
        delay = max(delay, min(retry_after_s, MAX_RETRY_AFTER_S))
    return RetryPlan(True, "retry scheduled", now + dt.timedelta(seconds=delay), delay)


# ---------------------------------------------------------------- the delivery decision


class Action(enum.StrEnum):
    SEND = "send"  # contact the destination now
    DONE = "done"  # it took the message
    DEFER = "defer"  # not now, come back ``at`` (no attempt spent)
    RETRY = "retry"  # the contact failed: attempt again ``at``
    DEAD = "dead"  # to the DLQ (and the failover chain)


#: why, besides a contact's ``Reason``
EXPIRED = "expired"
PERMANENT = "permanent"
EXHAUSTED = "exhausted"


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    #: why: ``circuit_open``/``rate_limited`` (defer), the contact's reason (retry),
    #: ``expired``/``permanent``/``exhausted`` (dead), ``""`` (send, done)
    reason: str = ""
    #: defer: until; retry: when
    at: dt.datetime | None = None
    #: send the command down its failover chain now as well
    failover: bool = False
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Pending:
    """What the decision needs of a delivery command."""

    key: str
    attempt: int  # the contact about to be made, or just made (1-based)
    max_attempts: int
    schedule: Sequence[float]
    created_at: dt.datetime
    max_age_s: float | None = DEFAULT_MAX_AGE_S  # None: no deadline
    urgent: bool = False  # SEV1
    #: it has a failover chain that it has not been sent down yet
    can_fail_over: bool = False

    @property
    def deadline(self) -> dt.datetime | None:
        if self.max_age_s is None:
            return None
        return self.created_at + dt.timedelta(seconds=self.max_age_s)


@dataclass(frozen=True, slots=True)
class Contact:
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


def decide(cmd: Pending, now: dt.datetime, gate: Gate | None = None, contact: Contact | None = None,
           rng: random.Random | None = None) -> Decision:
    """What to do with a delivery command now: before a contact (``contact`` None: asks the
    ``gate``, which takes the breaker's probe and the rate slot when it says send), or after
    one. Deferrals and retries are never scheduled past the command's deadline."""
    r = rng if rng is not None else _RNG
    deadline = cmd.deadline
    if contact is None:
        if deadline is not None and now >= deadline:
            return Decision(Action.DEAD, EXPIRED, failover=cmd.can_fail_over,
                            detail=f"not delivered within max_age_s={cmd.max_age_s:g}")
        if gate is not None:
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
        return Decision(Action.SEND)
    if contact.ok:
        return Decision(Action.DONE)
    if not contact.retryable:
        return Decision(Action.DEAD, PERMANENT, failover=cmd.can_fail_over,
                        detail=f"{contact.reason.value}: permanent failure")
    if deadline is not None and now >= deadline:
        return Decision(Action.DEAD, EXPIRED, failover=cmd.can_fail_over,
                        detail=f"not delivered within max_age_s={cmd.max_age_s:g}")
    if cmd.attempt >= cmd.max_attempts:
        return Decision(Action.DEAD, EXHAUSTED, failover=cmd.can_fail_over,
                        detail=f"{contact.reason.value}: exhausted after {cmd.attempt} attempts")
    steps = list(cmd.schedule) or list(DEFAULT_SCHEDULE_S)
    delay = steps[min(max(cmd.attempt, 1) - 1, len(steps) - 1)] * (1.0 + r.uniform(-JITTER, JITTER))
    if contact.retry_after_s is not None and math.isfinite(contact.retry_after_s):
        delay = max(delay, min(contact.retry_after_s, MAX_RETRY_AFTER_S))
    return Decision(Action.RETRY, contact.reason.value, _until(now, delay, 0.0, deadline, r),
                    failover=cmd.urgent and cmd.can_fail_over and contact.breaker_open)
