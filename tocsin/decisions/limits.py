"""Per-destination rate limits and circuit breakers (DESIGN "Delivery"). Pure: the clock
(monotonic seconds, any origin) is a parameter of every call; nothing here sleeps.

``TokenBucket.take(now)`` answers "send now?" with 0.0, or with the seconds to wait
(taking nothing), so the deliver agent defers the command through the retry topic instead
of sleeping in its loop. ``CircuitBreaker`` stops hammering a destination that keeps
failing::

    closed --(failure_threshold consecutive failures)--> open
    open   --(reset_after_s elapsed; the next allow())--> half_open: one probe goes
    half_open --probe ok--> closed        half_open --probe failed--> open (again)

``breaker_outcome`` is the rule of what a send's result tells the breaker: only the
destination failing to answer (a transport error, a timeout, a retryable status) counts
against it; a message that was never sent (it could not be built, or the circuit was open)
says nothing about the destination: it counts no failure, and a probe it took is given back.
"""

from __future__ import annotations

import enum
import math

from .retry import Reason

#: a refill that lands within this of a whole token counts as the token (float dust)
_EPS = 1e-9


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


class CircuitBreaker:
    """Open after ``failure_threshold`` consecutive failures; after ``reset_after_s`` let
    exactly one probe through; its outcome closes the breaker or opens it again.

    A probe whose outcome is never recorded (its sender died) does not wedge the breaker:
    after another ``reset_after_s`` the next ``allow`` sends a new probe. Outcomes recorded
    while open (sends that started before it opened) change nothing.
    """

    __slots__ = ("failure_threshold", "reset_after_s", "failures", "_state", "_next_probe_at")

    def __init__(self, failure_threshold: int = 5, reset_after_s: float = 30.0) -> None:
        if isinstance(failure_threshold, bool) or not isinstance(failure_threshold, int) or failure_threshold < 1:
            raise ValueError(f"failure_threshold must be a whole number >= 1, got {failure_threshold!r}")
        if not (isinstance(reset_after_s, int | float) and math.isfinite(reset_after_s) and reset_after_s >= 0):
            raise ValueError(f"reset_after_s must be a number >= 0, got {reset_after_s!r}")
        self.failure_threshold = failure_threshold
        self.reset_after_s = float(reset_after_s)
        self.failures = 0
        self._state = BreakerState.CLOSED
        self._next_probe_at = 0.0  # open/half-open: when allow() may let a probe through

    @property
    def state(self) -> BreakerState:
        """The state as of the last call (``open`` turns ``half_open`` on the next allow)."""
        return self._state

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
            else:
                self._open(now)
        # OPEN: a late outcome of a send started before opening; the probe decides

    def _open(self, now: float) -> None:
        self._state = BreakerState.OPEN
        self._next_probe_at = now + self.reset_after_s

    def __repr__(self) -> str:
        return f"<CircuitBreaker {self._state.value} failures={self.failures}/{self.failure_threshold}>"


__all__ = ["BREAKER_NEUTRAL", "BreakerState", "CircuitBreaker", "TokenBucket", "breaker_outcome"]
