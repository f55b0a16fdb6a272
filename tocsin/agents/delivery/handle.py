"""One delivery command, handled: the delivery decision (``decisions.delivery.decide``) says
what to do with it, and ``follow`` does it; nothing is decided here::

    handle   decide before a contact; send: the channel's ``send``, then decide on its outcome
    follow   skip   its attempt (skipped_duplicate)
             done   the delivery table's state sent; its attempt (sent)
             defer  its attempt (circuit_open, rate_limited); the command back through
                    P.deliveries.retry at its slot or the next probe, same attempt number
             retry  its attempt (failed); the next attempt through P.deliveries.retry
             dead   its attempt (dead); the table's state dead; P.dlq, then (SEV1) an
                    alert_delivery_failed alert
             and, when the decision says so, the command down its failover chain now

Every record is queued in the delivery outbox (outbox.py), which sends it and has it
acknowledged by the broker before the command's offset is committed: carrying a decision out
awaits nothing.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from typing import Any

from ...core import metrics
from ...core.tables import state_of
from ...decisions.delivery import CONFIG, DEAD, EXPIRED, SENT, Action, Contact, Decision, decide
from ...decisions.limits import BreakerState, breaker_outcome
from ...decisions.retry import Reason
from ...infra import faust_compat
from ...schemas.messages import AttemptStatus, DeliveryCommand
from ..channels.base import DeliveryResult, redact
from ..runtime import Runtime
from .limits import Limits
from .records import DELIVERY_FAILED, attempt_record, child, failover_command, failure_alert, utcnow

log = logging.getLogger(__name__)


async def handle(rt: Runtime, limits: Limits, cmd: DeliveryCommand, event: Any) -> None:
    """Decide what to do with ``cmd`` (its state in the delivery table, its destination, the
    destination's gate), send it if the decision says so, decide again on the outcome, and
    carry out the decision (``follow``)."""
    table = rt.tables.deliveries
    # table writes go to the changelog partition of this command's message
    faust_compat.set_current_event(event)
    channel = rt.channels.get(cmd.destination)
    gate = limits.gate(cmd.destination) if channel is not None else None  # none for an unknown name
    # the table's value also says when: its expiry (core/tables.py)
    pending = limits.pending(cmd, state_of(table.get(cmd.delivery_id)), channel is not None)
    started = utcnow()
    # an attempt is a contact: an open circuit or the rate limit defers the command (to the
    # next probe, to its reserved slot) without spending one
    decision = decide(pending, started, gate)
    if decision.action is not Action.SEND:
        if decision.action is Action.DEFER:  # the gate was asked (skips and deaths ask none)
            limits.show(cmd.destination)
        follow(rt, limits, cmd, event, decision, started, started, None)
        return
    assert channel is not None and gate is not None  # sent only to a configured destination
    limits.show(cmd.destination)
    try:
        if getattr(channel, "bounded", False):  # its own deadline: no timer of ours
            result = await channel.send(cmd)
        else:
            async with asyncio.timeout(rt.settings.delivery_timeout_s * 1.5):
                result = await channel.send(cmd)
    except TimeoutError:
        result = DeliveryResult(False, True, Reason.TIMEOUT, None, "timed out")
    except Exception as exc:  # a channel bug must not lose the command
        result = DeliveryResult(False, True, Reason.UNKNOWN, None,
                                redact(f"{type(exc).__name__}: {exc}", channel_secrets(channel)))
    finished = utcnow()
    # what the destination did, if anything (limits.breaker_outcome)
    gate.breaker.record(breaker_outcome(result.ok, result.retryable, result.reason), finished.timestamp())
    limits.show(cmd.destination)
    child(metrics.delivery_latency, cmd.channel).observe((finished - started).total_seconds())
    contact = Contact(result.ok, result.retryable, result.reason, result.retry_after_s,
                      gate.breaker.state is BreakerState.OPEN)
    follow(rt, limits, cmd, event, decide(pending, finished, contact=contact), started, finished, result)


def follow(rt: Runtime, limits: Limits, cmd: DeliveryCommand, event: Any, decision: Decision,
           started: dt.datetime, finished: dt.datetime, result: DeliveryResult | None) -> None:
    """Carry out a decision other than send: skip, done, defer, retry (each of the last two
    maybe with a failover now), or dead (with its failover, if any). Its records are queued in
    the delivery outbox, nothing is awaited."""
    action = decision.action
    if action is Action.DONE:
        table = rt.tables.deliveries
        partition = event.message.partition
        rt.delivery_outbox.table_write(table, cmd.delivery_id, table.states.stamp(cmd.delivery_id, SENT, partition),
                                       partition)
        child(metrics.end_to_end_latency, cmd.channel).observe(
            max(0.0, (finished - cmd.alert.event_timestamp).total_seconds()))
        record_attempt(rt, attempt_record(cmd, AttemptStatus.SENT, started, finished, result))
        return
    if action is Action.SKIP:
        record_attempt(rt, attempt_record(cmd, AttemptStatus.SKIPPED_DUPLICATE, started, finished,
                                          reason=decision.detail))
        return
    if action is Action.DEFER:
        if decision.reason == Reason.CIRCUIT_OPEN.value:
            limits.gate(cmd.destination).forget(cmd.delivery_id)  # a rate slot it held goes unused
            status = AttemptStatus.CIRCUIT_OPEN
        else:
            status = AttemptStatus.RATE_LIMITED
        assert decision.at is not None
        defer(rt, cmd, decision.at, status, decision.reason)
        if decision.failover:
            fail_over(rt, limits, cmd, f"circuit open for {cmd.destination}")
        return
    error = result.error if result is not None else cmd.last_error
    if action is Action.RETRY:
        record_attempt(rt, attempt_record(cmd, AttemptStatus.FAILED, started, finished, result))
        nxt = cmd.model_copy(update={"attempt": cmd.attempt + 1, "not_before": decision.at,
                                     "last_error": error, "waiting_for": "retry"})
        publish(rt, rt.topics.retry, cmd.delivery_id, nxt)
        if decision.failover:
            fail_over(rt, limits, cmd, error)
        return
    if action is Action.DEAD:
        why = decision.reason
        if why == CONFIG:  # the destination named: the error
            error = decision.detail
        elif why == EXPIRED:  # the DLQ entry says why first
            error = f"{EXPIRED}: {decision.detail}" + (f"; last error: {error}" if error else "")
            limits.gate(cmd.destination).forget(cmd.delivery_id)
        else:  # permanent, exhausted: the attempt says how
            why = decision.detail
        record_attempt(rt, attempt_record(cmd, AttemptStatus.DEAD, started, finished, result, reason=why,
                                          error=error))
        table = rt.tables.deliveries
        partition = event.message.partition
        rt.delivery_outbox.table_write(table, cmd.delivery_id, table.states.stamp(cmd.delivery_id, DEAD, partition),
                                       partition)
        dead_letter(rt, cmd, error, fail_over=decision.failover)


def channel_secrets(channel: Any) -> list[str]:
    """The secrets a channel names, to redact from an error (none if it names none)."""
    fn = getattr(channel, "secrets", None)
    return list(fn()) if callable(fn) else []


def record_attempt(rt: Runtime, att: dict[str, Any]) -> None:
    """Queue the attempt for ``P.attempts`` in the delivery outbox (acknowledged by the broker
    before the command is)."""
    rt.delivery_outbox.attempt(att)


def publish(rt: Runtime, topic: Any, key: str, value: Any) -> None:
    """Queue a record the handling of a command makes besides its attempt (a retry, its DLQ
    entry, a failover, the failure alert) with its attempt and table write: like them, it is
    acknowledged by the broker before the command is (``DeliveryOutbox``)."""
    rt.delivery_outbox.publish(topic.get_topic_name(), key, value)


def defer(rt: Runtime, cmd: DeliveryCommand, until: dt.datetime, status: AttemptStatus, why: str) -> None:
    """Not now (rate limit, open circuit): back through the retry topic, same attempt number."""
    now = utcnow()
    record_attempt(rt, attempt_record(cmd, status, now, now, reason=why))
    child(metrics.deliveries_deferred, cmd.channel, why).inc()
    later = cmd.model_copy(update={"not_before": max(until, now + dt.timedelta(seconds=0.01)),
                                   "waiting_for": status.value})
    publish(rt, rt.topics.retry, cmd.delivery_id, later)


def fail_over(rt: Runtime, limits: Limits, cmd: DeliveryCommand, error: str | None) -> None:
    """A SEV1 whose destination's circuit is open goes down its failover chain now; the
    original keeps trying (and its delivery is recorded as its own, whenever it comes)."""
    limits.note_failed_over(cmd.delivery_id)
    fo = failover_command(rt, cmd, error)
    log.warning("SEV1 delivery %s: the circuit of %s is open; failing over to %s now, and trying on",
                cmd.delivery_id, cmd.destination, fo.destination)
    topic = rt.topics.deliveries.get(fo.channel)
    if topic is not None:
        publish(rt, topic, fo.delivery_id, fo)


def dead_letter(rt: Runtime, cmd: DeliveryCommand, error: str | None, fail_over: bool = True) -> None:
    """A dead command (exhausted, expired, permanent, its destination not configured, or an
    internal error while handling it): DLQ, then the failover receiver (unless ``fail_over`` is
    false: it already had the command, or has none left), then (SEV1) the failure alert."""
    dead = cmd.model_copy(update={"last_error": error})
    metrics.dlq_total.labels(cmd.channel).inc()
    publish(rt, rt.topics.dlq, cmd.delivery_id, dead)
    log.warning("delivery %s to %s is dead after %d attempt(s): %s", cmd.delivery_id, cmd.destination,
                cmd.attempt, error)
    if cmd.failover and fail_over:
        fo = failover_command(rt, cmd, error)
        topic = rt.topics.deliveries.get(fo.channel)
        if topic is not None:
            publish(rt, topic, fo.delivery_id, fo)
    # one failure alert per dead primary delivery of a SEV1, never about itself
    if (cmd.alert.severity == 1 and cmd.alert.type != DELIVERY_FAILED and cmd.failover_of is None
            and not cmd.redriven):
        alert = failure_alert(cmd, error)
        publish(rt, rt.topics.alerts, alert.fingerprint, alert)
