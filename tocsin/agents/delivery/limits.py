"""Each destination's circuit breaker and rate limiter, as the delivery decision asks them
(``decisions.limits.Gate``), with the breakers' states on /metrics; and a command as the
decision sees it (``Limits.pending``)."""

from __future__ import annotations

import itertools
import logging

from ...core import metrics
from ...decisions.delivery import Pending
from ...decisions.limits import BreakerState, CircuitBreaker, Gate, RateLimiter
from ...schemas.messages import DeliveryCommand
from ..runtime import Runtime
from .records import child

log = logging.getLogger(__name__)


class Limits:
    """Each destination's circuit breaker and rate limiter (``decisions.limits.Gate``), set up
    from its receiver settings in the routing file; the breakers' states on /metrics
    (``tocsin_circuit_breaker_state``); the SEV1s already sent down their failover chain
    because their destination's circuit was open (so that it is done once per command)."""

    #: how many failed-over delivery_ids are remembered (SEV1s: a few)
    FAILED_OVER_KEPT = 100_000

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.gates: dict[str, Gate] = {}
        self.failed_over: dict[str, None] = {}
        self._shown: dict[str, BreakerState] = {}
        for destination in getattr(rt, "channels", None) or {}:
            self.gate(destination)  # every destination on /metrics from the start, closed

    def gate(self, destination: str) -> Gate:
        g = self.gates.get(destination)
        if g is None:
            rp = self.rt.policy.policy_for(destination)
            ch = self.rt.channels.get(destination)
            rate = rp.rate_per_s or getattr(ch, "default_rate_per_s", None)
            limiter = RateLimiter(rate, rp.burst or max(1, int(rate))) if rate else None
            breaker = CircuitBreaker(rp.breaker_failures, rp.breaker_reset_s, rp.breaker_max_reset_s)
            g = self.gates[destination] = Gate(breaker, limiter)
            self.show(destination)
        return g

    def breaker(self, destination: str) -> CircuitBreaker:
        return self.gate(destination).breaker

    def show(self, destination: str) -> None:
        """The breaker's state on /metrics; a change logged once; a breaker closed again
        releases what waits for its destination (``Runtime.on_breaker_closed``)."""
        state = self.gates[destination].breaker.state
        before = self._shown.get(destination)
        if state is not before:
            self._shown[destination] = state
            child(metrics.circuit_breaker_state, destination).set(self.gates[destination].breaker.code)
            if before is not None:
                log.warning("circuit breaker of %s: %s -> %s", destination, before.value, state.value)
                if state is BreakerState.CLOSED:  # it answers again: what waits for it need not
                    for release in self.rt.on_breaker_closed:
                        release(destination)

    def pending(self, cmd: DeliveryCommand, state: str | None, configured: bool) -> Pending:
        """The command as the delivery decision sees it: its delivery table ``state``, whether
        this worker has a channel for its destination (``configured``), its schedule, its
        deadline (the destination's ``max_age_s``), SEV1 or not, redriven or not, and whether
        it may still be sent down its failover chain."""
        rp = self.rt.policy.policy_for(cmd.destination)
        return Pending(cmd.delivery_id, cmd.attempt, cmd.max_attempts, cmd.backoff_s, cmd.created_at,
                       rp.max_age_s, cmd.alert.severity == 1,
                       bool(cmd.failover) and cmd.delivery_id not in self.failed_over,
                       state, cmd.redriven, cmd.destination, configured)

    def note_failed_over(self, delivery_id: str) -> None:
        self.failed_over[delivery_id] = None
        if len(self.failed_over) > self.FAILED_OVER_KEPT:  # the oldest half forgotten
            for key in list(itertools.islice(self.failed_over, self.FAILED_OVER_KEPT // 2)):
                del self.failed_over[key]
