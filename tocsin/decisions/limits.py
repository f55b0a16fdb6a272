"""Per-destination rate limits and circuit breakers (DESIGN "Delivery"). Pure: the clock
(seconds, any origin) is a parameter of every call; nothing here sleeps.

``RateLimiter.admit(key, now, urgent)`` answers "send now?" with 0.0, or with the seconds
until the slot it has *reserved* for this command: the delivery agent defers the command
through the retry topic to that slot, and when it comes back it holds the slot and is sent
without asking again. So a burst of N to a destination of ``rate_per_s`` is N sends and at
most N deferrals, drained at the rate (not N²/2 deferrals of commands asking again each
second). Urgent commands (SEV1) take the first slot free of other urgent ones, ahead of the
reserved lower-severity ones: each one that jumps the line displaces one reserved command,
which is deferred once more, to the end of the line, when it comes back (the rate holds)::

    slots:   A0  B1  C2  D3          (A sent, B..D reserved at t=0, 1/s)
    a SEV1 X arrives at t=0.5:  X takes slot 1, B (back at 1) goes to slot 4

``TokenBucket.take(now)`` is the same bucket without reservations (the seconds to wait,
taking nothing). ``CircuitBreaker`` stops hammering a destination that keeps failing::

    closed --(failure_threshold consecutive failures)--> open
    open   --(the open period elapsed; the next allow())--> half_open: one probe goes
    half_open --probe ok--> closed        half_open --probe failed--> open (again)

The open period starts at ``reset_after_s`` and doubles with each failed probe, up to
``max_reset_after_s`` (a destination down for hours is probed every few minutes, not
every 30 s); a probe that never reports back is replaced after ``reset_after_s``.

``breaker_outcome`` is the rule of what a send's result tells the breaker: only the
destination failing to answer (a transport error, a timeout, a retryable status) counts
against it; a message that was never sent (it could not be built, or the circuit was open)
says nothing about the destination: it counts no failure, and a probe it took is given back.

``Gate`` is one destination's breaker and rate limiter as the delivery decision
(``delivery.decide``) asks them: is the circuit open, and until when? may this command go now,
or which slot is its?
"""

from __future__ import annotations

import enum
import math

from .retry import Reason

#: a refill that lands within this of a whole token counts as the token (float dust)
_EPS = 1e-9
#: a slot this close to now is now (float dust: the clock is epoch seconds, ~1e-7 s apart)
_SLACK_S = 1e-6


class TokenBucket:
    """``rate_per_s`` tokens per second, at most ``burst`` saved up; starts full."""

    __slots__ = ("rate_per_s", "burst", "tokens", "_last")

    def __init__(self, rate_per_s: float, burst: int = 1) -> None:
        if not (isinstance(rate_per_s, int | float) and math.isfinite(rate_per_s) and rate_per_s > 0):
            raise ValueError(f"rate_per_s must be a positive number, got {rate_per_s!r}")
        if isinstance(burst, bool) or not isinstance(burst, int) or burst < 1:
            raise ValueError(f"burst must be a whole number >= 1, got {burst!r}")
        self.rate_per_s = float(rate_per_s)
        self.burst = burst
        self.tokens = float(burst)
        self._last: float | None = None

    def _refill(self, now: float) -> None:
        if self._last is None:
            self._last = now
            return
        elapsed = now - self._last
        if elapsed > 0:  # a clock that steps back refills nothing and is not followed
            self.tokens = min(float(self.burst), self.tokens + elapsed * self.rate_per_s)
            self._last = now

    def take(self, now: float) -> float:
        """Take one token: 0.0 if taken, else the seconds until one is there (none taken)."""
        self._refill(now)
        if self.tokens >= 1.0 - _EPS:
            self.tokens = max(0.0, self.tokens - 1.0)
            return 0.0
        return max((1.0 - self.tokens) / self.rate_per_s, _EPS)

    def __repr__(self) -> str:
        return f"<TokenBucket {self.rate_per_s}/s burst={self.burst} tokens={self.tokens:.3f}>"


#: results that never reached the destination: not recorded by its breaker
BREAKER_NEUTRAL = frozenset({Reason.INVALID_MESSAGE, Reason.CIRCUIT_OPEN})


def breaker_outcome(ok: bool, retryable: bool, reason: Reason) -> bool | None:
    """What a send's result records on its destination's breaker: True (the destination is
    up: it took the message, or refused it for good, a 4xx), False (it failed: transport
    error, timeout, 429, 5xx), None (nothing: the message never reached it)."""
    if reason in BREAKER_NEUTRAL:
        return None
    return ok or not retryable


class BreakerState(enum.StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


#: the gauge's value of each state (``circuit_breaker_state``)
STATE_CODE = {BreakerState.CLOSED: 0, BreakerState.HALF_OPEN: 1, BreakerState.OPEN: 2}


class CircuitBreaker:
    """Open after ``failure_threshold`` consecutive failures; after the open period let
    exactly one probe through; its outcome closes the breaker or opens it again, for twice
    the period (at most ``max_reset_after_s``; default ``reset_after_s``: no growth).

    A probe whose outcome is never recorded (its sender died) does not wedge the breaker:
    after another ``reset_after_s`` the next ``allow`` sends a new probe. Outcomes recorded
    while open (sends that started before it opened) change nothing.
    """

    __slots__ = ("failure_threshold", "reset_after_s", "max_reset_after_s", "failures", "_state",
                 "_next_probe_at", "_period")

    def __init__(self, failure_threshold: int = 5, reset_after_s: float = 30.0,
                 max_reset_after_s: float | None = None) -> None:
        if isinstance(failure_threshold, bool) or not isinstance(failure_threshold, int) or failure_threshold < 1:
            raise ValueError(f"failure_threshold must be a whole number >= 1, got {failure_threshold!r}")
        if not (isinstance(reset_after_s, int | float) and math.isfinite(reset_after_s) and reset_after_s >= 0):
            raise ValueError(f"reset_after_s must be a number >= 0, got {reset_after_s!r}")
        if max_reset_after_s is None:
            max_reset_after_s = reset_after_s
        if not (isinstance(max_reset_after_s, int | float) and math.isfinite(max_reset_after_s)
                and max_reset_after_s >= reset_after_s):
            raise ValueError(f"max_reset_after_s must be a number >= reset_after_s, got {max_reset_after_s!r}")
        self.failure_threshold = failure_threshold
        self.reset_after_s = float(reset_after_s)
        self.max_reset_after_s = float(max_reset_after_s)
        self.failures = 0
        self._state = BreakerState.CLOSED
        self._next_probe_at = 0.0  # open/half-open: when allow() may let a probe through
        self._period = self.reset_after_s  # the open period: grows with each failed probe

    @property
    def state(self) -> BreakerState:
        """The state as of the last call (``open`` turns ``half_open`` on the next allow)."""
        return self._state

    @property
    def code(self) -> int:
        """The state as the ``circuit_breaker_state`` gauge shows it: 0 closed, 1 half-open, 2 open."""
        return STATE_CODE[self._state]

    @property
    def period_s(self) -> float:
        """How long the breaker stays open when it opens (next)."""
        return self._period

    def would_allow(self, now: float) -> bool:
        """What ``allow(now)`` would answer, changing nothing (a probe is not taken)."""
        return self._state is BreakerState.CLOSED or now >= self._next_probe_at

    def allow(self, now: float) -> bool:
        """May a send to this destination start now?"""
        if self._state is BreakerState.CLOSED:
            return True
        # open: wait; half-open: one probe in flight, another only if it never reported back
        if now >= self._next_probe_at:
            self._state = BreakerState.HALF_OPEN
            self._next_probe_at = now + self.reset_after_s
            return True
        return False

    def probe_age_s(self, now: float) -> float | None:
        """How long the probe in flight has been out (half-open); None when none is."""
        if self._state is not BreakerState.HALF_OPEN:
            return None
        return max(0.0, now - (self._next_probe_at - self.reset_after_s))

    def wait_s(self, now: float) -> float:
        """Seconds until ``allow`` may say yes (0.0 when closed)."""
        if self._state is BreakerState.CLOSED:
            return 0.0
        return max(0.0, self._next_probe_at - now)

    def record(self, ok: bool | None, now: float) -> None:
        """The outcome of a send that ``allow`` let through (``breaker_outcome``): ``None``
        says nothing of the destination (its message was never sent): no failure counted, and a
        probe's turn passes to the next send at once."""
        if ok is None:
            if self._state is BreakerState.HALF_OPEN:
                self._next_probe_at = now
            return
        if self._state is BreakerState.CLOSED:
            if ok:
                self.failures = 0
                return
            self.failures += 1
            if self.failures >= self.failure_threshold:
                self._open(now)
        elif self._state is BreakerState.HALF_OPEN:
            if ok:
                self._state = BreakerState.CLOSED
                self.failures = 0
                self._period = self.reset_after_s
            else:
                self._period = min(self.max_reset_after_s, self._period * 2)
                self._open(now)
        # OPEN: a late outcome of a send started before opening; the probe decides

    def _open(self, now: float) -> None:
        self._state = BreakerState.OPEN
        self._next_probe_at = now + self._period

    def __repr__(self) -> str:
        return f"<CircuitBreaker {self._state.value} failures={self.failures}/{self.failure_threshold}>"


class RateLimiter:
    """``rate_per_s`` sends per second, ``burst`` at once, on a GCRA schedule with reservations.

    ``tat`` is the next free slot at the end of the line (a slot is free when it is at most
    ``(burst - 1)`` intervals ahead of now); ``urgent_tat`` the next one free of urgent claims
    and of sends already made. ``reserved`` holds the slot of each command deferred to it, by
    its key (the delivery_id): when it comes back it is sent without asking again, unless an
    urgent command took its turn (``displaced``): then it is deferred once more, to the end.

    Reservations of commands that never come back (another worker took their partition) are
    forgotten an hour after their slot.
    """

    __slots__ = ("rate_per_s", "burst", "interval", "tau", "tat", "urgent_tat", "reserved", "pending_low",
                 "displaced", "_pruned_at")

    #: a reservation not claimed this long after its slot is forgotten
    STALE_S = 3600.0

    def __init__(self, rate_per_s: float, burst: int = 1) -> None:
        TokenBucket(rate_per_s, burst)  # the same checks
        self.rate_per_s = float(rate_per_s)
        self.burst = burst
        self.interval = 1.0 / self.rate_per_s
        self.tau = (burst - 1) * self.interval
        self.tat: float | None = None
        self.urgent_tat: float | None = None
        #: key -> (slot, urgent)
        self.reserved: dict[str, tuple[float, bool]] = {}
        self.pending_low = 0
        self.displaced = 0
        self._pruned_at = -math.inf

    @property
    def spread_s(self) -> float:
        """The jitter a deferral to a slot may add: a fifth of an interval, at most a second."""
        return min(0.2 * self.interval, 1.0)

    def admit(self, key: str, now: float, urgent: bool = False) -> float:
        """0.0: send now (the slot is taken); else the seconds until the slot reserved for ``key``."""
        held = self.reserved.pop(key, None)
        if held is not None:
            slot, was_urgent = held
            if not was_urgent:
                self.pending_low -= 1
                if self.displaced > 0:  # an urgent command took a turn: this one waits one more
                    self.displaced -= 1
                    return self._claim(key, now, urgent)
                self.urgent_tat = max(self.urgent_tat if self.urgent_tat is not None else now, now) + self.interval
            return 0.0
        if now - self._pruned_at > 60.0:
            self._prune(now)
        return self._claim(key, now, urgent)

    def forget(self, key: str) -> None:
        """``key`` will not use its slot (it was deferred for another reason)."""
        held = self.reserved.pop(key, None)
        if held is not None and not held[1]:
            self.pending_low -= 1
            self.displaced = min(self.displaced, self.pending_low)

    def _claim(self, key: str, now: float, urgent: bool) -> float:
        tat = self.tat if self.tat is not None and self.tat > now else now
        utat = self.urgent_tat if self.urgent_tat is not None and self.urgent_tat > now else now
        slot = max(now, tat - self.tau)
        if urgent:
            uslot = max(now, utat - self.tau)
            if uslot < slot - _SLACK_S and self.pending_low > self.displaced:  # ahead of the reserved ones
                self.displaced += 1
                self.urgent_tat = utat + self.interval
                if uslot <= now + _SLACK_S:
                    return 0.0
                self.reserved[key] = (uslot, True)
                return uslot - now
        self.tat = tat + self.interval
        if slot <= now + _SLACK_S:  # sent now: the urgent line counts it too
            self.urgent_tat = utat + self.interval
            return 0.0
        if urgent:  # behind every reserved one (none left to displace): the urgent line moves as far
            self.urgent_tat = max(utat, tat) + self.interval
        else:
            self.pending_low += 1
        self.reserved[key] = (slot, urgent)
        return slot - now

    def _prune(self, now: float) -> None:
        self._pruned_at = now
        stale = [k for k, (slot, _) in self.reserved.items() if slot < now - self.STALE_S]
        for k in stale:
            self.forget(k)

    def __repr__(self) -> str:
        return (f"<RateLimiter {self.rate_per_s}/s burst={self.burst} reserved={len(self.reserved)} "
                f"displaced={self.displaced}>")


class Gate:
    """One destination's circuit breaker and (optional) rate limiter, as ``delivery.decide``
    asks them before a contact."""

    __slots__ = ("breaker", "limiter")

    def __init__(self, breaker: CircuitBreaker, limiter: RateLimiter | None = None) -> None:
        self.breaker = breaker
        self.limiter = limiter

    @property
    def circuit_spread_s(self) -> float:
        """The jitter of a deferral to the next probe: a tenth of the reset period, at most 2 s."""
        return min(0.1 * self.breaker.reset_after_s, 2.0)

    @property
    def rate_spread_s(self) -> float:
        return self.limiter.spread_s if self.limiter is not None else 0.0

    #: while a probe is out, ask again after this, or after as long as it has been out
    PROBE_POLL_S = 1.0

    def circuit_wait(self, now: float) -> float | None:
        """None: the breaker lets a send through now; else the seconds until its next probe,
        or, while a probe is out (half-open), until its answer is likely in: at least a
        second, then as long again as it has been out (a slow probe costs a few deferrals
        each, a quick one holds nobody for a reset period)."""
        if self.breaker.would_allow(now):
            return None
        wait = self.breaker.wait_s(now)
        age = self.breaker.probe_age_s(now)
        if age is not None:
            wait = min(wait, max(self.PROBE_POLL_S, age))
        return wait

    def admit(self, key: str, urgent: bool, now: float) -> float:
        """0.0: go now (the breaker's probe, if it is one, and the rate slot are taken); else
        the seconds until this command's reserved slot."""
        if self.limiter is not None:
            wait = self.limiter.admit(key, now, urgent)
            if wait > 0:
                return wait
        self.breaker.allow(now)  # True: ``circuit_wait`` said so, at this same ``now``
        return 0.0

    def forget(self, key: str) -> None:
        if self.limiter is not None:
            self.limiter.forget(key)


__all__ = ["BREAKER_NEUTRAL", "STATE_CODE", "BreakerState", "CircuitBreaker", "Gate", "RateLimiter",
           "TokenBucket", "breaker_outcome"]
