"""The delivery agents: one per channel, consuming ``P.deliveries.<channel>``.

One reader (``DeliveryReader``, a plain aiokafka consumer in step with Faust's group:
reader.py) reads every channel's commands into that channel's priority queue (SEV1 first,
then arrival order), served by a pool of senders; a command is acknowledged (its offset
committable) only once it was handled: delivered, scheduled for retry, or dead-lettered. So a
crash re-reads what was in flight, and the delivery table (keyed by delivery_id) recognises
what was already sent; two copies of one command are never sent at once.

Per command (``decisions.retry.decide``): duplicate? → skip; past its deadline → dead
(``expired``); open circuit → defer to the next probe, rate limit → defer to the slot reserved
for it, through the retry topic, no attempt spent (a SEV1 deferred by an open circuit is also
sent down its failover chain at once); send → one DeliveryAttempt; failure → retry at
``not_before`` through ``P.deliveries.retry`` (the fast tier, then the slow one), or,
permanent/exhausted/expired, ``P.dlq`` + the failover receiver + (SEV1) an
``alert_delivery_failed`` alert.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime as dt
import functools
import heapq
import itertools
import logging
import time
import uuid
from collections.abc import Callable, Collection
from typing import Any

import orjson
from aiokafka import TopicPartition
from faust.types import TP
from pydantic import ValidationError

from ..core import metrics
from ..core.tables import note_persisted, state_of, sweep_deliveries, sweep_interval
from ..decisions.limits import BreakerState, CircuitBreaker, Gate, RateLimiter, breaker_outcome
from ..decisions.retry import EXPIRED, Action, Contact, Decision, Pending, Reason, decide
from ..errors import OutboxStopped, RecordRefused
from ..infra import faust_compat
from ..schemas.alert import AlertEvent, parse_severity
from ..schemas.codec import dumps
from ..schemas.messages import (
    NAMESPACE,
    AttemptStatus,
    DeliveryCommand,
    delivery_id_for,
)
from .batches import Outgoing
from .channels.base import DeliveryResult, redact
from .common import decode, keep_bad
from .outbox import record as outbox_record
from .outbox import refusal
from .reader import PartitionReader, Track
from .runtime import Runtime

log = logging.getLogger(__name__)

#: validation context of Tocsin's own messages: details were made JSON-safe and cut to size
#: when the alert was validated, so they are not walked again (schemas/alert.py)
INTERNAL = {"internal": True}
READ_BATCH = 500
#: TOCSIN_DELIVERY_READ_AHEAD_BYTES' default
READ_AHEAD_BYTES = 64 << 20
MAX_YIELD_S = 0.5
SENT = "sent"
DEAD = "dead"
DELIVERY_FAILED = "alert_delivery_failed"


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@functools.lru_cache(maxsize=4096)
def child(metric: Any, *labels: str) -> Any:
    """A metric's labelled child, looked up once (``labels()`` costs a few µs a call)."""
    return metric.labels(*labels)


class Room:
    """How many more commands may be read ahead: a counter the reader waits on when it is
    spent (an ``asyncio.Semaphore`` of 20,000 cost more per acquire than the rest of a read);
    and the bytes (keys and values) of the queued commands, never over ``max_bytes``: the
    reader queues a command only if it fits (``takes``), or the queue is empty (a command
    larger than the limit is read alone), and reads the rest again later."""

    def __init__(self, size: int, max_bytes: int = READ_AHEAD_BYTES) -> None:
        self.value = size
        self.bytes = 0
        self.max_bytes = max_bytes
        #: the size of the commands read lately (a moving average): what a fetch would bring
        self.record_bytes = 1024.0
        #: the size of the command that did not fit: no fetch before it would
        self.wanted = 0
        self._freed = asyncio.Event()
        #: called on every release (the reader waits for room to fetch again)
        self.on_release: Callable[[], None] | None = None

    def takes(self, size: int) -> bool:
        """Whether a command of ``size`` bytes may be queued now."""
        if self.bytes <= 0 or self.bytes + size <= self.max_bytes:
            self.wanted = 0
            return True
        self.wanted = size
        return False

    def hold(self, size: int) -> None:
        """A command of ``size`` bytes is queued."""
        self.bytes += size
        self.record_bytes += (size - self.record_bytes) / 64

    def free(self, size: int) -> None:
        """A queued command of ``size`` bytes left the queue (taken by a sender, or dropped)."""
        self.bytes -= size

    def short_of_bytes(self, least: int) -> bool:
        """Too few bytes free for a fetch of ``least`` commands (or a quarter of the limit, when
        less), or for the command that did not fit: the channel's partitions wait paused."""
        if self.bytes <= 0:
            return False
        free = self.max_bytes - self.bytes
        return free < max(self.wanted, min(least * self.record_bytes, self.max_bytes / 4))

    async def acquire(self) -> None:
        while self.value <= 0:
            self._freed.clear()
            await self._freed.wait()
        self.value -= 1

    def release(self) -> None:
        self.value += 1
        self._freed.set()
        if self.on_release is not None:
            self.on_release()


def failure_alert(cmd: DeliveryCommand, error: str | None) -> AlertEvent:
    """The SEV1 raised when a SEV1's delivery is dead; one per dead delivery (deterministic id),
    throttled per destination, so a down endpoint raises one alert per window, not a flood."""
    a = cmd.alert
    return AlertEvent(
        alert_id=uuid.uuid5(NAMESPACE, f"delivery-failed/{cmd.delivery_id}"),
        type=DELIVERY_FAILED,
        severity=1,
        event_timestamp=utcnow(),
        fingerprint=f"{DELIVERY_FAILED}:{cmd.destination}",
        summary=f"Delivery to {cmd.destination} failed for SEV1 '{a.summary}'"[:255],
        details={
            "delivery_id": cmd.delivery_id,
            "destination": cmd.destination,
            "receiver": cmd.receiver,
            "attempts": cmd.attempt,
            "last_error": error,
            "alert_id": str(a.alert_id),
            "fingerprint": a.fingerprint,
        },
        source="tocsin",
        requires_action=True,
    )


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
        """The breaker's state on /metrics; a change logged once."""
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

    def pending(self, cmd: DeliveryCommand) -> Pending:
        """The command as the delivery decision sees it: its schedule, its deadline (the
        destination's ``max_age_s``; a redriven command has none), SEV1 or not, and whether it
        may still be sent down its failover chain."""
        rp = self.rt.policy.policy_for(cmd.destination)
        return Pending(cmd.delivery_id, cmd.attempt, cmd.max_attempts, cmd.backoff_s, cmd.created_at,
                       None if cmd.redriven else rp.max_age_s, cmd.alert.severity == 1,
                       bool(cmd.failover) and cmd.delivery_id not in self.failed_over)

    def note_failed_over(self, delivery_id: str) -> None:
        self.failed_over[delivery_id] = None
        if len(self.failed_over) > self.FAILED_OVER_KEPT:  # the oldest half forgotten
            for key in list(itertools.islice(self.failed_over, self.FAILED_OVER_KEPT // 2)):
                del self.failed_over[key]


class DeliveryOutbox:
    """The records of the commands handled in one turn of the event loop: their attempts,
    their delivery-table changelog records, and what ``publish`` adds (retries, DLQ entries,
    failovers, failure alerts), sent through the worker's ``Outbox`` (outbox.py) as one record
    batch per partition: a sender queues its records and goes on to its next command without
    waiting.

    A command's event is acknowledged only once the broker acknowledged every record queued
    before it: a committed command always has its attempt, its table write and its retry or
    DLQ entry on the broker. While the broker does not acknowledge, the Outbox sends them
    again and the events wait unacknowledged (a stop leaves them so: read again). A record
    refused for good is kept as a note on ``P.dlq`` saying what was refused.
    """

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.records: Outgoing = []
        self.events: list[Any] = []
        self._flushing: asyncio.Task[None] | None = None
        self.attempts_topic = rt.topics.attempts.get_topic_name()
        self.dlq_topic = rt.topics.dlq.get_topic_name()
        self.dumps = dumps

    def attempt(self, att: dict[str, Any]) -> None:
        child(metrics.deliveries, att["channel"], att["status"].value).inc()
        self.records.append((self.attempts_topic, att["delivery_id"].encode(), self.dumps(att), None))

    def table_write(self, table: Any, key: str, value: str, partition: int) -> None:
        """``table[key] = value`` now (the store is read by the next duplicate check); its
        changelog record, the bytes Faust would send, to the partition of the command's event
        (the caller has set the current event: a RocksDB store picks its database by it)."""
        table.data[key] = value
        self.records.append((table.changelog_topic.get_topic_name(), orjson.dumps(key), self.dumps(value),
                             partition))

    def publish(self, topic: str, key: str, value: Any) -> None:
        """Another record of the command being handled, the bytes its topic's ``send`` writes."""
        self.records.append(outbox_record(topic, key, value))

    def ack_after(self, event: Any) -> None:
        """Acknowledge ``event`` once the broker acknowledged the records queued so far."""
        self.events.append(event)
        if self._flushing is None:
            self._flushing = asyncio.ensure_future(self._flush())

    async def _flush(self) -> None:
        try:
            await asyncio.sleep(0)  # the other senders finishing in this turn join the batch
            while self.events or self.records:
                records, events = self.records, self.events
                self.records, self.events = [], []
                if records:
                    await self._send(records)
                for event in events:
                    event.ack()
        except OutboxStopped as exc:
            log.warning("%s (%d handled commands)", exc, len(self.events))
        finally:
            self._flushing = None

    async def _send(self, records: Outgoing) -> None:
        """Send and wait for the broker; a record refused for good leaves a note on the DLQ."""
        try:
            acked: list[Any] = await self.rt.outbox.send_many(records)
        except RecordRefused as exc:
            acked = exc.acked
            notes: Outgoing = []
            for i, error in exc.refused.items():
                log.error("a delivery record for %s (%d bytes) was refused for good (%s); a note of it is kept on %s",
                          records[i][0], len(records[i][2]), error, self.dlq_topic)
                notes.append((self.dlq_topic, records[i][1], refusal(records[i], error, "a delivery record"), None))
            try:
                await self.rt.outbox.send_many(notes)
            except RecordRefused as again:
                log.error("the DLQ notes of refused delivery records were refused too: %s", again)
        note_persisted(self.rt.tables.deliveries, acked)


def priority(data: Any) -> int:
    """Where a read command queues: its severity (SEV1 first); a malformed one first of all,
    so that it is kept on the DLQ without waiting."""
    try:
        return parse_severity(data["alert"]["severity"])
    except (KeyError, TypeError, ValueError):
        return 0


class Dispatcher:
    """Priority queue + sender pool for one channel's commands.

    The queue holds the read events themselves, ordered by (priority, arrival): their bytes are
    decoded again when a sender takes them. A read-ahead of 20,000 parsed commands was over
    200,000 more objects for every full collection to walk: the collector took a tenth of the
    worker's CPU in the delivery bench, half as much since.
    """

    def __init__(self, rt: Runtime, channel: str, limits: Limits) -> None:
        self.rt = rt
        self.channel = channel
        self.limits = limits
        #: (priority, arrival, event, its bytes)
        self.heap: list[tuple[int, int, Any, int]] = []
        self.seq = itertools.count()
        #: senders waiting for a command, woken one per command pushed
        self.waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self.space = Room(rt.settings.delivery_read_ahead,
                          getattr(rt.settings, "delivery_read_ahead_bytes", READ_AHEAD_BYTES))
        self.outbox = rt.delivery_outbox
        self.queue_gauge = metrics.delivery_queue.labels(channel)
        self.workers: list[asyncio.Task[None]] = []
        #: the delivery_ids being handled, each with the event set when it is done
        self.busy: dict[str, asyncio.Event] = {}
        self.read = 0
        #: last offset read per partition, against the consumer's highwater: the read lag
        self.read_offsets: dict[Any, int] = {}
        self._lag = 0
        self._lag_at = 0.0
        #: set by the reader when it has read everything fetched so far
        self.caught_up = asyncio.Event()
        #: a partition's end, as the reader's consumer last saw it (None: not known yet)
        self.highwater: Callable[[Any], int | None] = lambda tp: None

    def note_read(self, event: Any) -> None:
        self.read += 1
        self.read_offsets[event.message.tp] = event.message.offset

    def lag(self) -> int:
        """Commands on the broker not yet read (cached for a few ms)."""
        now = time.monotonic()
        if now - self._lag_at > 0.005:
            total = 0
            for tp, offset in self.read_offsets.items():
                try:
                    hw = self.highwater(tp)
                except Exception:  # not known yet
                    hw = None
                if hw:
                    total += max(0, hw - offset - 1)
            self._lag, self._lag_at = total, now
        return self._lag

    def start(self) -> None:
        if not self.workers:
            for _ in range(self.rt.settings.delivery_concurrency):
                self.workers.append(asyncio.ensure_future(self._work()))

    async def stop(self) -> None:
        for w in self.workers:
            w.cancel()
        self.workers.clear()

    def drop(self, tps: Collection[Any] | None = None) -> list[Any]:
        """Take the queued (not yet started) commands of partitions ``tps`` (default: all) out
        of the queue: they stay unacknowledged, and the partitions' next owner reads them again."""
        kept: list[tuple[int, int, Any, int]] = []
        dropped: list[tuple[int, int, Any, int]] = []
        for entry in self.heap:
            (dropped if tps is None or entry[2].tp in tps else kept).append(entry)
        if dropped:
            heapq.heapify(kept)
            self.heap = kept
            for entry in dropped:
                self.space.free(entry[3])
                self.space.release()
            self.queue_gauge.set(len(self.heap))
        for tp in list(self.read_offsets) if tps is None else tps:
            self.read_offsets.pop(tp, None)
        return [entry[2] for entry in dropped]

    async def submit(self, prio: int, event: Any, size: int = 0) -> None:
        """Queue a read command of ``size`` bytes (its key and value)."""
        await self.space.acquire()
        self.space.hold(size)
        heapq.heappush(self.heap, (prio, next(self.seq), event, size))
        self.queue_gauge.set(len(self.heap))
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                break

    async def take(self) -> Any:
        """The first event by (priority, arrival), waiting for one."""
        while not self.heap:
            waiter = asyncio.get_running_loop().create_future()
            self.waiters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                # woken and cancelled at once: hand the wake-up on, so no command waits
                if waiter.done() and not waiter.cancelled() and self.heap and self.waiters:
                    self.waiters.popleft().set_result(None)
                raise
        _, _, event, size = heapq.heappop(self.heap)
        self.space.free(size)
        self.queue_gauge.set(len(self.heap))
        return event

    async def _work(self) -> None:
        while True:
            # reading first: while a backlog (more than one read batch) waits to be read, and
            # there is room to read it, senders step aside, so a SEV1 behind it is read, and
            # overtakes, soon; after MAX_YIELD_S a sender goes on anyway, so a steady stream
            # cannot starve delivery. A steady stream's few unread commands are read within a
            # batch anyway: stepping aside for them (lag > 0) tripled the latency bench's p99.
            yielded = 0.0
            while (yielded < MAX_YIELD_S and self.lag() > READ_BATCH and self.space.value > READ_BATCH
                   and not self.space.short_of_bytes(READ_BATCH)):  # by bytes too, or the reader waits
                self.caught_up.clear()
                t0 = time.monotonic()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.caught_up.wait(), 0.05)
                yielded += time.monotonic() - t0
            event = await self.take()
            try:
                await self.process(event)
            except BaseException:  # cancelled (a stop): unacknowledged, so it is read again
                self.space.release()
                raise
            self.space.release()
            self.outbox.ack_after(event)

    async def process(self, event: Any) -> None:
        """Decode and handle one command; a malformed one is kept on the DLQ, and no error
        escapes (a failing command is dead-lettered with the reason)."""
        try:
            cmd = DeliveryCommand.model_validate(decode(event.value), context=INTERNAL)
        except (ValidationError, TypeError, ValueError) as exc:
            await keep_bad(self.rt, event, f"invalid delivery command: {exc}")
            return
        # two copies of one command (a replay, or alerts read again after a crash, emit the
        # same delivery_id) are handled one after the other: the second one sees the first
        # one's table write and is skipped, never sent alongside it
        while (other := self.busy.get(cmd.delivery_id)) is not None:
            await other.wait()
        done = self.busy[cmd.delivery_id] = asyncio.Event()
        try:
            await handle(self.rt, self.limits, cmd, event)
        except Exception:
            log.exception("delivery of %s to %s failed unexpectedly", cmd.delivery_id, cmd.destination)
            try:
                await dead_letter(self.rt, cmd, "internal error while delivering")
            except Exception:
                log.exception("could not dead-letter %s", cmd.delivery_id)
        finally:
            del self.busy[cmd.delivery_id]
            done.set()


def attempt_record(cmd: DeliveryCommand, status: AttemptStatus, started: dt.datetime,
                   finished: dt.datetime, result: DeliveryResult | None = None, reason: str = "",
                   error: str | None = None) -> dict[str, Any]:
    """A DeliveryAttempt as the plain dict its model would dump (a property test checks it),
    built without the model's validation: it is on every delivery's path."""
    a = cmd.alert
    return {
        "attempt_id": uuid.uuid4(),
        "delivery_id": cmd.delivery_id,
        "alert_id": a.alert_id,
        "fingerprint": a.fingerprint,
        "type": a.type,
        "severity": a.severity,
        "channel": cmd.channel,
        "destination": cmd.destination,
        "attempt": cmd.attempt,
        "status": status,
        "reason": reason or (result.reason.value if result else ""),
        "response_code": result.status_code if result else None,
        "error": error if error is not None else (result.error if result else None),
        "started_at": started,
        "finished_at": finished,
        "latency_ms": round((finished - started).total_seconds() * 1000.0, 3),
    }


def record_attempt(rt: Runtime, att: dict[str, Any]) -> None:
    """Queue the attempt on ``P.attempts`` (in the producer before the command is acknowledged)."""
    rt.delivery_outbox.attempt(att)


async def publish(rt: Runtime, topic: Any, key: str, value: Any) -> None:
    """A record the handling of a command makes besides its attempt: a retry, its DLQ entry, a
    failover, the failure alert. Queued with the command's attempt and table write, and, like
    them, acknowledged by the broker before the command is (``DeliveryOutbox``)."""
    rt.delivery_outbox.publish(topic.get_topic_name(), key, value)


async def defer(rt: Runtime, cmd: DeliveryCommand, until: dt.datetime, status: AttemptStatus, why: str) -> None:
    """Not now (rate limit, open circuit): back through the retry topic, same attempt number."""
    now = utcnow()
    record_attempt(rt, attempt_record(cmd, status, now, now, reason=why))
    child(metrics.deliveries_deferred, cmd.channel, why).inc()
    later = cmd.model_copy(update={"not_before": max(until, now + dt.timedelta(seconds=0.01)),
                                   "waiting_for": status.value})
    await publish(rt, rt.topics.retry, cmd.delivery_id, later)


def failover_command(rt: Runtime, cmd: DeliveryCommand, error: str | None) -> DeliveryCommand:
    """The command for the next destination of ``cmd``'s failover chain (a delivery of its own)."""
    nxt, rest = cmd.failover[0], cmd.failover[1:]
    rp = rt.policy.policy_for(nxt)
    return cmd.model_copy(update={
        "delivery_id": delivery_id_for(cmd.dedupe_key, cmd.receiver, nxt),
        "destination": nxt,
        "failover": list(rest),
        "failover_of": cmd.destination,
        "attempt": 1,
        "max_attempts": rp.max_attempts,
        "backoff_s": list(rp.schedule),
        "not_before": None,
        "last_error": error,
        "created_at": utcnow(),
        "redriven": False,
    })


async def fail_over(rt: Runtime, limits: Limits, cmd: DeliveryCommand, error: str | None) -> None:
    """A SEV1 whose destination's circuit is open goes down its failover chain now; the
    original keeps trying (and its delivery is recorded as its own, whenever it comes)."""
    limits.note_failed_over(cmd.delivery_id)
    fo = failover_command(rt, cmd, error)
    log.warning("SEV1 delivery %s: the circuit of %s is open; failing over to %s now, and trying on",
                cmd.delivery_id, cmd.destination, fo.destination)
    topic = rt.topics.deliveries.get(fo.channel)
    if topic is not None:
        await publish(rt, topic, fo.delivery_id, fo)


async def dead_letter(rt: Runtime, cmd: DeliveryCommand, error: str | None, fail_over: bool = True) -> None:
    """Exhausted, expired or permanent: DLQ, then the failover receiver (unless ``fail_over``
    is false: it already had the command), then (SEV1) the failure alert."""
    dead = cmd.model_copy(update={"last_error": error})
    metrics.dlq_total.labels(cmd.channel).inc()
    await publish(rt, rt.topics.dlq, cmd.delivery_id, dead)
    log.warning("delivery %s to %s is dead after %d attempt(s): %s", cmd.delivery_id, cmd.destination,
                cmd.attempt, error)
    if cmd.failover and fail_over:
        fo = failover_command(rt, cmd, error)
        topic = rt.topics.deliveries.get(fo.channel)
        if topic is not None:
            await publish(rt, topic, fo.delivery_id, fo)
    # one failure alert per dead primary delivery of a SEV1, never about itself
    if (cmd.alert.severity == 1 and cmd.alert.type != DELIVERY_FAILED and cmd.failover_of is None
            and not cmd.redriven):
        alert = failure_alert(cmd, error)
        await publish(rt, rt.topics.alerts, alert.fingerprint, alert)


async def handle(rt: Runtime, limits: Limits, cmd: DeliveryCommand, event: Any) -> None:
    table = rt.tables.deliveries
    # table writes go to the changelog partition of this command's message
    faust_compat.set_current_event(event)
    state = state_of(table.get(cmd.delivery_id))  # the value also says when: its expiry (core/tables.py)
    now = utcnow()
    if state == SENT or (state == DEAD and not cmd.redriven):
        record_attempt(rt, attempt_record(cmd, AttemptStatus.SKIPPED_DUPLICATE, now, now,
                                                reason=f"already {state}"))
        return
    channel = rt.channels.get(cmd.destination)
    if channel is None:
        err = f"destination {cmd.destination} is not configured on this worker"
        record_attempt(rt, attempt_record(cmd, AttemptStatus.DEAD, now, now,
                                                reason=Reason.CONFIG.value, error=err))
        rt.delivery_outbox.table_write(table, cmd.delivery_id, table.states.stamp(cmd.delivery_id, DEAD, event.message.partition),
                                        event.message.partition)
        await dead_letter(rt, cmd, err)
        return
    # an attempt is a contact: an open circuit or the rate limit defers the command (to the
    # next probe, to its reserved slot) without spending one (decisions.retry.decide)
    gate = limits.gate(cmd.destination)
    pending = limits.pending(cmd)
    started = utcnow()
    decision = decide(pending, started, gate)
    limits.show(cmd.destination)
    if decision.action is not Action.SEND:
        await follow(rt, limits, cmd, event, decision, started, started, None)
        return
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
    # what the destination did, if anything (limits.breaker_outcome)
    gate.breaker.record(breaker_outcome(result.ok, result.retryable, result.reason), utcnow().timestamp())
    limits.show(cmd.destination)
    finished = utcnow()
    child(metrics.delivery_latency, cmd.channel).observe((finished - started).total_seconds())
    if result.ok:
        rt.delivery_outbox.table_write(table, cmd.delivery_id, table.states.stamp(cmd.delivery_id, SENT, event.message.partition),
                                        event.message.partition)
        child(metrics.end_to_end_latency, cmd.channel).observe(
            max(0.0, (finished - cmd.alert.event_timestamp).total_seconds()))
        record_attempt(rt, attempt_record(cmd, AttemptStatus.SENT, started, finished, result))
        return
    contact = Contact(result.ok, result.retryable, result.reason, result.retry_after_s,
                      gate.breaker.state is BreakerState.OPEN)
    await follow(rt, limits, cmd, event, decide(pending, finished, contact=contact), started, finished, result)


async def follow(rt: Runtime, limits: Limits, cmd: DeliveryCommand, event: Any, decision: Decision,
                 started: dt.datetime, finished: dt.datetime, result: DeliveryResult | None) -> None:
    """Carry out a decision other than send/done: defer, retry (each maybe with a failover
    now), or dead."""
    action = decision.action
    if action is Action.DEFER:
        if decision.reason == Reason.CIRCUIT_OPEN.value:
            limits.gate(cmd.destination).forget(cmd.delivery_id)  # a rate slot it held goes unused
            status = AttemptStatus.CIRCUIT_OPEN
        else:
            status = AttemptStatus.RATE_LIMITED
        assert decision.at is not None
        await defer(rt, cmd, decision.at, status, decision.reason)
        if decision.failover:
            await fail_over(rt, limits, cmd, f"circuit open for {cmd.destination}")
        return
    error = result.error if result is not None else cmd.last_error
    if action is Action.RETRY:
        record_attempt(rt, attempt_record(cmd, AttemptStatus.FAILED, started, finished, result))
        nxt = cmd.model_copy(update={"attempt": cmd.attempt + 1, "not_before": decision.at,
                                     "last_error": error, "waiting_for": "retry"})
        await publish(rt, rt.topics.retry, cmd.delivery_id, nxt)
        if decision.failover:
            await fail_over(rt, limits, cmd, error)
        return
    if action is Action.DEAD:
        if decision.reason == EXPIRED:  # the DLQ entry says why first
            error = f"{EXPIRED}: {decision.detail}" + (f"; last error: {error}" if error else "")
            limits.gate(cmd.destination).forget(cmd.delivery_id)
        record_attempt(rt, attempt_record(cmd, AttemptStatus.DEAD, started, finished, result,
                                          reason=EXPIRED if decision.reason == EXPIRED else decision.detail,
                                          error=error))
        table = rt.tables.deliveries
        rt.delivery_outbox.table_write(table, cmd.delivery_id, table.states.stamp(cmd.delivery_id, DEAD, event.message.partition),
                                        event.message.partition)
        await dead_letter(rt, cmd, error, fail_over=decision.failover)


def channel_secrets(channel: Any) -> list[str]:
    fn = getattr(channel, "secrets", None)
    return list(fn()) if callable(fn) else []


class Command:
    """A read delivery command: the part of a Faust event the senders, the outbox, the table
    store and ``keep_bad`` use (its own ``message``); ``ack`` marks it done in its partition's
    ``Track``."""

    __slots__ = ("value", "key", "topic", "partition", "offset", "tp", "track", "__weakref__")

    def __init__(self, msg: Any, tp: TP, track: Track) -> None:
        self.value, self.key, self.offset = msg.value, msg.key, msg.offset
        self.topic, self.partition, self.tp = tp.topic, tp.partition, tp
        self.track = track
        track.add(msg.offset)

    @property
    def message(self) -> Command:
        return self

    def ack(self) -> bool:
        self.track.ack(self.offset)
        return True


class DeliveryReader(PartitionReader):
    """Reads this worker's partitions of every delivery topic into their channels' queues
    (reader.py). A channel whose queue has no room for another fetch, by count
    (TOCSIN_DELIVERY_READ_AHEAD) or by bytes (TOCSIN_DELIVERY_READ_AHEAD_BYTES), is paused, and
    a fetched command over the bytes left is read again later (a seek back); an offset is
    committed once every command up to it was handled (``Track``). Before a revocation, the
    queued commands of the partitions are dropped (their next owner reads them again) and the
    ones being sent are waited for (up to a delivery's timeout), so that their table writes
    reach the changelog before the next owner recovers it."""

    def __init__(self, rt: Runtime, dispatchers: dict[str, Dispatcher]) -> None:
        super().__init__(rt, tuple(dispatchers), "deliver")
        self.dispatchers = dispatchers  # by topic
        self.tracks: dict[TopicPartition, Track] = {}
        self.room = asyncio.Event()
        for d in dispatchers.values():
            d.highwater = self.highwater
            d.space.on_release = self.room.set

    async def started(self) -> None:
        for d in self.dispatchers.values():
            d.start()

    def highwater(self, tp: Any) -> int | None:
        return self.consumer.highwater(TopicPartition(tp.topic, tp.partition)) if self.consumer else None

    def reset(self) -> None:
        self.give_up(None)
        self.tracks = {}

    def give_up(self, tps: Collection[Any] | None) -> None:
        """Drop the queued commands of ``tps`` (default: all), unacknowledged."""
        for d in self.dispatchers.values():
            for ev in d.drop(tps):
                ev.track.dropped += 1

    async def fetch(self) -> dict[TopicPartition, list[Any]]:
        """A fetch for the channels with room for it, by count and by bytes; the others'
        partitions wait paused."""
        consumer = self.consumer
        least = min(READ_BATCH, self.rt.settings.delivery_read_ahead)
        full = {topic for topic, d in self.dispatchers.items()
                if d.space.value < least or d.space.short_of_bytes(least)}
        paused = consumer.paused()
        pause = [tp for tp in self.assigned if tp.topic in full and tp not in paused]
        resume = [tp for tp in paused if tp.topic not in full]
        if pause:
            consumer.pause(*pause)
        if resume:
            consumer.resume(*resume)
        if len(full) == len(self.dispatchers):
            self.room.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.room.wait(), 0.1)
            return {}
        room = min(d.space.value for topic, d in self.dispatchers.items() if topic not in full)
        return await consumer.getmany(timeout_ms=100, max_records=min(READ_BATCH, room))

    async def handle(self, batch: dict[TopicPartition, list[Any]]) -> None:
        for tp, msgs in batch.items():
            dispatcher = self.dispatchers[tp.topic]
            track = self.tracks.get(tp)
            if track is None:
                track = self.tracks[tp] = Track()
            ftp = TP(tp.topic, tp.partition)
            space = dispatcher.space
            for msg in msgs:
                size = len(msg.value or b"") + len(msg.key or b"")
                if not space.takes(size):  # over TOCSIN_DELIVERY_READ_AHEAD_BYTES: read again later
                    self.consumer.seek(tp, msg.offset)
                    break
                event = Command(msg, ftp, track)
                # only the priority now: the sender decodes (and validates) the command
                try:
                    prio = priority(decode(msg.value))
                except ValueError:  # not JSON
                    prio = 0
                dispatcher.note_read(event)
                await dispatcher.submit(prio, event, size)  # never waits: fetched only with room

    async def step(self) -> None:
        await super().step()
        if not self.stale:
            for d in self.dispatchers.values():
                if d.lag() == 0:
                    d.caught_up.set()

    async def commit(self) -> None:
        self.last_commit = time.monotonic()
        await self.commit_offsets({tp: t.committable() for tp, t in self.tracks.items() if t.committable() >= 0})

    async def settle(self) -> None:
        self.give_up(None)
        deadline = time.monotonic() + self.rt.settings.delivery_timeout_s * 1.5 + 1.0
        while any(t.in_flight() > 0 for t in self.tracks.values()) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        left = sum(max(0, t.in_flight()) for t in self.tracks.values())
        if left:
            log.warning("deliver reader: %d commands still being sent at the revocation; their next owner "
                        "reads them again", left)


def register(rt: Runtime) -> None:
    rt.delivery_outbox = DeliveryOutbox(rt)
    limits = Limits(rt)
    app = rt.app
    # the delivery table's retention: states past it deleted, with tombstones (core/tables.py)
    retention = rt.tables.deliveries.states.retention_s = rt.settings.delivery_state_retention

    @app.timer(sweep_interval(retention), name=f"{rt.settings.topic_prefix}.delivery_retention")
    async def _sweep_delivery_states() -> None:
        if rt.ready():
            try:
                await sweep_deliveries(app, rt.tables.deliveries)
            except Exception:  # the next sweep tries again; a timer that raised would stop
                log.exception("deliveries: the retention sweep failed")
    dispatchers: dict[str, Dispatcher] = {}
    by_topic: dict[str, Dispatcher] = {}
    for channel, channel_topic in rt.topics.deliveries.items():
        name = channel_topic.get_topic_name()
        dispatchers[channel] = by_topic[name] = Dispatcher(rt, channel, limits)
    reader = DeliveryReader(rt, by_topic)
    reader.follow({f"{rt.settings.topic_prefix}.deliver.{channel}": (name,)
                   for channel, name in zip(dispatchers, by_topic, strict=True)})

    @app.on_before_shutdown.connect  # type: ignore[arg-type]
    async def _close(sender: Any, **kw: Any) -> None:  # pragma: no cover - shutdown path
        # the commands being sent are finished and committed; the queued ones are read again
        await reader.close()
        for d in dispatchers.values():
            await d.stop()
        for ch in rt.channels.values():
            try:
                await ch.close()
            except Exception:
                log.debug("closing %r failed", ch, exc_info=True)
