"""The delivery agents: one per channel, consuming ``P.deliveries.<channel>``.

Each agent reads commands into a priority queue (SEV1 first, then arrival order) served by
a pool of senders; an event is acknowledged (its offset committable) only once its command
was handled: delivered, scheduled for retry, or dead-lettered. So a crash re-reads what was
in flight, and the delivery table (keyed by delivery_id) recognises what was already sent.

Per command: duplicate? → skip; rate limit or open circuit → defer through the retry topic;
send → one DeliveryAttempt; failure → retry at ``not_before`` through ``P.deliveries.retry``,
or, permanent/exhausted, ``P.dlq`` + the failover receiver + (SEV1) an
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
import weakref
from typing import Any

import orjson
from faust.stores.memory import Store as MemoryStore
from faust.streams import _current_event
from faust.types import TP
from pydantic import ValidationError

from ..decisions.retry import Reason, plan_retry
from ..schemas.alert import AlertEvent, parse_severity
from ..schemas.messages import (
    NAMESPACE,
    AttemptStatus,
    DeliveryCommand,
    delivery_id_for,
)
from ..streams import metrics
from ..streams.app import Runtime
from .batches import BatchSender, Outgoing
from .channels.base import DeliveryResult, redact
from .common import decode, keep_bad

log = logging.getLogger(__name__)

#: validation context of Tocsin's own messages: details were made JSON-safe and cut to size
#: when the alert was validated, so they are not walked again (schemas/alert.py)
INTERNAL = {"internal": True}
READ_BATCH = 500
MAX_YIELD_S = 0.5
READ_WITHIN_S = 0.002
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
    spent (an ``asyncio.Semaphore`` of 20,000 cost more per acquire than the rest of a read)."""

    def __init__(self, size: int) -> None:
        self.value = size
        self._freed = asyncio.Event()

    async def acquire(self) -> None:
        while self.value <= 0:
            self._freed.clear()
            await self._freed.wait()
        self.value -= 1

    def release(self) -> None:
        self.value += 1
        self._freed.set()


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
    """Per-destination token buckets and circuit breakers (from decisions.limits)."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.buckets: dict[str, Any] = {}
        self.breakers: dict[str, Any] = {}
        try:
            from ..decisions import limits
        except ImportError:  # pragma: no cover - while limits is being built
            self.mod = None
        else:
            self.mod = limits

    def wait_for_token(self, cmd: DeliveryCommand, now: float) -> float:
        if self.mod is None:
            return 0.0
        b = self.buckets.get(cmd.destination)
        if b is None:
            rp = self.rt.policy.policy_for(cmd.receiver)
            ch = self.rt.channels.get(cmd.destination)
            rate = rp.rate_per_s or getattr(ch, "default_rate_per_s", None)
            if not rate:
                return 0.0
            b = self.buckets[cmd.destination] = self.mod.TokenBucket(rate, rp.burst or max(1, int(rate)))
        return float(b.take(now))

    def breaker(self, destination: str) -> Any:
        if self.mod is None:
            return None
        br = self.breakers.get(destination)
        if br is None:
            br = self.breakers[destination] = self.mod.CircuitBreaker()
        return br


class Outbox:
    """The attempt records and delivery-table changelog records of the commands handled in
    one turn of the event loop, handed to the producer as one record batch per partition
    (``BatchSender``) instead of one ``send`` each: a sender queues its records and goes on
    to its next command without waiting.

    A command's event is acknowledged only once its records are in the producer, and Faust
    flushes the producer before it commits an offset: a committed command always has its
    attempt and its table write on the broker. A failed hand-over is retried, the events
    staying unacknowledged meanwhile.
    """

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.records: Outgoing = []
        self.events: list[Any] = []
        self.sender: BatchSender | None = None
        self._flushing: asyncio.Task[None] | None = None
        self.attempts_topic = rt.topics.attempts.get_topic_name()
        self.dumps = rt.extras["dumps"]

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

    def ack_after(self, event: Any) -> None:
        """Acknowledge ``event`` once the records queued so far are in the producer."""
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
        finally:
            self._flushing = None

    async def _send(self, records: Outgoing) -> None:
        delay = 0.1
        while True:
            try:
                if self.sender is None:
                    producer: Any = self.rt.app.producer
                    self.sender = BatchSender(producer._ensure_producer())  # noqa: SLF001
                sent = await self.sender.send(records)
                break
            except Exception as exc:  # the events wait unacknowledged: nothing is committed
                log.warning("queueing %d delivery records failed (%s), retrying in %.1fs", len(records), exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        data = self.rt.tables.deliveries.data
        if isinstance(data, MemoryStore):
            return
        changelog = self.rt.tables.deliveries.changelog_topic.get_topic_name()
        for topic, partition, count, fut in sent:
            if topic == changelog:
                fut.add_done_callback(functools.partial(_persisted, data, TP(topic, partition), count))


def _persisted(data: Any, tp: TP, count: int, fut: asyncio.Future[Any]) -> None:
    """As Faust does once a changelog record is acknowledged: a RocksDB store remembers how far
    the changelog is in it (the batch's last offset)."""
    if not fut.cancelled() and fut.exception() is None:
        data.set_persisted_offset(tp, fut.result().offset + count - 1)


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
        self.heap: list[tuple[int, int, Any]] = []
        self.seq = itertools.count()
        #: senders waiting for a command, woken one per command pushed
        self.waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self.space = Room(rt.settings.delivery_read_ahead)
        self.outbox: Outbox = rt.extras["outbox"]
        self.queue_gauge = metrics.delivery_queue.labels(channel)
        self.workers: list[asyncio.Task[None]] = []
        self.read = 0
        #: last offset read per partition, against the consumer's highwater: the read lag
        self.read_offsets: dict[Any, int] = {}
        self._lag = 0
        self._lag_at = 0.0
        #: set by the reader when it has read everything fetched so far
        self.caught_up = asyncio.Event()

    def note_read(self, event: Any) -> None:
        self.read += 1
        self.read_offsets[event.message.tp] = event.message.offset

    def lag(self) -> int:
        """Commands on the broker not yet read (cached for a few ms)."""
        now = time.monotonic()
        if now - self._lag_at > 0.005:
            consumer = self.rt.app.consumer
            total = 0
            for tp, offset in self.read_offsets.items():
                try:
                    hw = consumer.highwater(tp)
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

    async def submit(self, prio: int, event: Any) -> None:
        await self.space.acquire()
        heapq.heappush(self.heap, (prio, next(self.seq), event))
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
        event = heapq.heappop(self.heap)[2]
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
            while yielded < MAX_YIELD_S and self.lag() > READ_BATCH and self.space.value > READ_BATCH:
                self.caught_up.clear()
                t0 = time.monotonic()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.caught_up.wait(), 0.05)
                yielded += time.monotonic() - t0
            event = await self.take()
            try:
                await self.process(event)
            finally:
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
        try:
            await handle(self.rt, self.limits, cmd, event)
        except Exception:
            log.exception("delivery of %s to %s failed unexpectedly", cmd.delivery_id, cmd.destination)
            try:
                await dead_letter(self.rt, cmd, "internal error while delivering")
            except Exception:
                log.exception("could not dead-letter %s", cmd.delivery_id)


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
    rt.extras["outbox"].attempt(att)


async def defer(rt: Runtime, cmd: DeliveryCommand, wait_s: float, status: AttemptStatus, why: str) -> None:
    """Not now (rate limit, open circuit): back through the retry topic, same attempt number."""
    now = utcnow()
    record_attempt(rt, attempt_record(cmd, status, now, now, reason=why))
    later = cmd.model_copy(update={"not_before": now + dt.timedelta(seconds=max(wait_s, 0.01))})
    await rt.topics.retry.send(key=cmd.delivery_id, value=later)


async def dead_letter(rt: Runtime, cmd: DeliveryCommand, error: str | None) -> None:
    """Exhausted or permanent: DLQ, then the failover receiver, then (SEV1) the failure alert."""
    dead = cmd.model_copy(update={"last_error": error})
    metrics.dlq_total.labels(cmd.channel).inc()
    await rt.topics.dlq.send(key=cmd.delivery_id, value=dead)
    log.warning("delivery %s to %s is dead after %d attempt(s): %s", cmd.delivery_id, cmd.destination,
                cmd.attempt, error)
    if cmd.failover:
        nxt, rest = cmd.failover[0], cmd.failover[1:]
        rp = rt.policy.policy_for(nxt)
        fo = cmd.model_copy(update={
            "delivery_id": delivery_id_for(cmd.dedupe_key, cmd.receiver, nxt),
            "destination": nxt,
            "failover": list(rest),
            "failover_of": cmd.destination,
            "attempt": 1,
            "max_attempts": rp.max_attempts,
            "backoff_s": list(rp.backoff_s),
            "not_before": None,
            "last_error": error,
            "created_at": utcnow(),
        })
        topic = rt.topics.deliveries.get(fo.channel)
        if topic is not None:
            await topic.send(key=fo.delivery_id, value=fo)
    # one failure alert per dead primary delivery of a SEV1, never about itself
    if (cmd.alert.severity == 1 and cmd.alert.type != DELIVERY_FAILED and cmd.failover_of is None
            and not cmd.redriven):
        alert = failure_alert(cmd, error)
        await rt.topics.alerts.send(key=alert.fingerprint.encode(),
                                    value=rt.extras["dumps"](alert))


async def handle(rt: Runtime, limits: Limits, cmd: DeliveryCommand, event: Any) -> None:
    table = rt.tables.deliveries
    # table writes go to the changelog partition of this command's message
    _current_event.set(weakref.ref(event))
    state = table.get(cmd.delivery_id)
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
        rt.extras["outbox"].table_write(table, cmd.delivery_id, DEAD, event.message.partition)
        await dead_letter(rt, cmd, err)
        return
    mono = time.monotonic()
    wait = limits.wait_for_token(cmd, mono)
    if wait > 0:
        await defer(rt, cmd, wait, AttemptStatus.RATE_LIMITED, Reason.RATE_LIMITED.value)
        return
    breaker = limits.breaker(cmd.destination)
    started = utcnow()
    if breaker is not None and not breaker.allow(mono):
        # an open circuit spares the endpoint, not the schedule: the attempt counts, so the
        # command still reaches its failover in time
        result = DeliveryResult(False, True, Reason.CIRCUIT_OPEN, None,
                                f"circuit open for {cmd.destination}")
        failed_status = AttemptStatus.CIRCUIT_OPEN
    else:
        failed_status = AttemptStatus.FAILED
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
        if breaker is not None:  # a permanent 4xx means the endpoint is up: it does not trip
            breaker.record(result.ok or not result.retryable, time.monotonic())
    finished = utcnow()
    child(metrics.delivery_latency, cmd.channel).observe((finished - started).total_seconds())
    if result.ok:
        rt.extras["outbox"].table_write(table, cmd.delivery_id, SENT, event.message.partition)
        child(metrics.end_to_end_latency, cmd.channel).observe(
            max(0.0, (finished - cmd.alert.event_timestamp).total_seconds()))
        record_attempt(rt, attempt_record(cmd, AttemptStatus.SENT, started, finished, result))
        return
    plan = plan_retry(cmd.attempt, cmd.max_attempts, cmd.backoff_s, result.retryable, finished,
                      result.retry_after_s)
    if plan.retry:
        record_attempt(rt, attempt_record(cmd, failed_status, started, finished, result))
        nxt = cmd.model_copy(update={"attempt": cmd.attempt + 1, "not_before": plan.not_before,
                                     "last_error": result.error})
        await rt.topics.retry.send(key=cmd.delivery_id, value=nxt)
        return
    record_attempt(rt, attempt_record(cmd, AttemptStatus.DEAD, started, finished, result,
                                            reason=f"{result.reason.value}: {plan.reason}"))
    rt.extras["outbox"].table_write(table, cmd.delivery_id, DEAD, event.message.partition)
    await dead_letter(rt, cmd, result.error)


def channel_secrets(channel: Any) -> list[str]:
    fn = getattr(channel, "secrets", None)
    return list(fn()) if callable(fn) else []


def register(rt: Runtime) -> None:
    from ..schemas.codec import dumps

    rt.extras["dumps"] = dumps
    rt.extras["outbox"] = Outbox(rt)
    limits = Limits(rt)
    app = rt.app
    dispatchers: dict[str, Dispatcher] = {}
    rt.extras["dispatchers"] = dispatchers

    def make_agent(channel: str) -> None:
        # raw bytes in: a message that is not a command is kept on the DLQ, never crashes the agent
        topic = app.topic(rt.topics.deliveries[channel].get_topic_name(), key_serializer="raw",
                          value_serializer="raw", partitions=rt.settings.partitions)
        dispatcher = dispatchers[channel] = Dispatcher(rt, channel, limits)

        async def deliver(stream: Any) -> None:
            dispatcher.start()
            # batches for a fast read-ahead (SEV1 can only overtake what was read); take_events
            # acks each batch when it moves on, so every message gets one more reference here,
            # released by the sender once its command was handled: offsets stay uncommitted
            # until then.
            async for events in stream.take_events(READ_BATCH, within=READ_WITHIN_S):
                for event in events:
                    event.message.incref()
                    await read_one(event)
                if dispatcher.lag() == 0:
                    dispatcher.caught_up.set()

        async def read_one(event: Any) -> None:
            # only the priority now: the sender decodes (and validates) the command
            try:
                prio = priority(decode(event.value))
            except ValueError:  # not JSON
                prio = 0
            dispatcher.note_read(event)
            await dispatcher.submit(prio, event)

        deliver.__name__ = f"deliver_{channel}"
        app.agent(topic, name=f"{rt.settings.topic_prefix}.deliver.{channel}", concurrency=1)(deliver)

    for channel in rt.topics.deliveries:
        make_agent(channel)

    @app.on_before_shutdown.connect  # type: ignore[arg-type]
    async def _close(sender: Any, **kw: Any) -> None:  # pragma: no cover - shutdown path
        for d in dispatchers.values():
            await d.stop()
        for ch in rt.channels.values():
            try:
                await ch.close()
            except Exception:
                log.debug("closing %r failed", ch, exc_info=True)
