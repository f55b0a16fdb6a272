"""The throttle agent: validate → (repartition by fingerprint) → decide → route → send.

Consumes ``P.alerts`` (raw bytes, any producer) and ``P.alerts.keyed`` (events this agent
re-keyed because their key or partition was not their fingerprint's). Every rejected message
goes to ``P.alerts.invalid`` with its raw bytes, where it came from and the errors; no
exception leaves the loop.

Shaped for throughput. Faust's consumer hands records to a stream one at a time, with a
task per record (``Consumer._drain_messages``); that capped a pass-through agent near 6,000
events/s here. So the hot topics are read by a plain aiokafka consumer (``HotReader``) that
follows Faust's group: Faust still owns the subscription, the assignment (the alert topics
are co-partitioned with the throttle table's changelog) and the table recovery; Faust's own
fetch leaves these partitions paused, and the reader takes exactly the hot partitions this
worker was assigned, from the group's committed offsets, once the table is recovered. It
processes whole fetches, hands every output (and the table's changelog records, to the
partition of the event's source) to the producer without awaiting each, and commits its
offsets through Faust's consumer (same group, same generation) only after every send of
the batch was acknowledged: at least once. On a revocation it finishes the batch under way,
flushes and commits before Faust lets the partitions go.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from faust.types import TP

from ..decisions.routing import route
from ..decisions.throttle import decide, decision_id_for
from ..schemas.alert import AlertEvent
from ..schemas.codec import dumps
from ..schemas.messages import (
    InvalidAlert,
    Outcome,
    SourcePosition,
    command_record,
    decision_record,
    delivery_id_for,
)
from ..schemas.validate import rejection, validate_raw
from ..streams import metrics
from ..streams.app import Runtime
from .batches import BatchSender, Outgoing
from .batches import partition_for_text as partition_for

log = logging.getLogger(__name__)

BATCH = 2000
WITHIN_S = 0.002


class Throttle:
    """Decides one event at a time and collects what to send."""

    def __init__(self, rt: Runtime) -> None:
        s = rt.settings
        self.rt = rt
        self.table = rt.tables.throttle
        self.changelog_name = self.table.table.changelog_topic.get_topic_name()
        self.window = s.throttle_window_s
        self.partitions = s.partitions
        self.alerts_name = rt.topics.alerts.get_topic_name()
        self.keyed_name = rt.topics.alerts_keyed.get_topic_name()
        self.invalid_name = rt.topics.invalid.get_topic_name()
        self.decisions_name = rt.topics.decisions.get_topic_name()
        self.deliveries = {ch: t.get_topic_name() for ch, t in rt.topics.deliveries.items()}
        self.enabled = set(rt.channels)
        self._routes: dict[tuple[int, str], list[Any]] = {}
        self.outcomes = {o: 0 for o in Outcome}
        self._alerts_ok: bool | None = None
        self.invalid = 0

    def alerts_copartitioned(self) -> bool:
        """Whether P.alerts has TOCSIN_PARTITIONS partitions, like the tables; if a producer
        created it with another count, every event takes the re-keying hop instead."""
        if self._alerts_ok is None:
            n = self.rt.app.consumer.topic_partitions(self.alerts_name)
            if n is None:
                return False  # not known yet: the safe path
            self._alerts_ok = n == self.partitions
            if not self._alerts_ok:
                log.warning("%s has %d partitions, not TOCSIN_PARTITIONS=%d: every event is re-keyed "
                            "through %s", self.alerts_name, n, self.partitions, self.keyed_name)
        return self._alerts_ok

    def routes(self, severity: int, alert_type: str) -> list[Any]:
        key = (severity, alert_type)
        r = self._routes.get(key)
        if r is None:
            r = self._routes[key] = route(severity, alert_type, self.rt.policy, self.enabled)
        return r

    def reject(self, invalid: InvalidAlert, out: Outgoing) -> None:
        self.invalid += 1
        log.warning("invalid alert from %s/%d@%d: %s", invalid.source.topic, invalid.source.partition,
                    invalid.source.offset, "; ".join(invalid.errors)[:300])
        key = invalid.key.encode() if invalid.key is not None else None
        out.append((self.invalid_name, key, dumps(invalid), None))

    def process(self, msg: Any, out: Outgoing, now: dt.datetime) -> None:
        """One record (``topic``, ``partition``, ``offset``, ``key``, ``value``)."""
        result = validate_raw(msg.value, msg.key, (msg.topic, msg.partition, msg.offset))
        if isinstance(result, InvalidAlert):
            self.reject(result, out)
            return
        fp = result.fingerprint
        if msg.topic == self.alerts_name:
            key = msg.key
            key_text = key.decode("utf-8", "replace") if isinstance(key, bytes) else key
            if (key_text != fp or not self.alerts_copartitioned()
                    or msg.partition != partition_for(fp, self.partitions)):
                # re-key: the default partitioner puts it on the fingerprint's partition
                out.append((self.keyed_name, fp.encode(), dumps(result), None))
                return
        # table writes go to the changelog partition of the event's source partition
        self.decide(result, out, now, msg.partition)

    def process_safely(self, msg: Any, out: Outgoing, now: dt.datetime) -> None:
        try:
            self.process(msg, out, now)
        except Exception as exc:  # keep the event with its reason; never crash the loop
            log.exception("throttle failed on %s/%s@%s", msg.topic, msg.partition, msg.offset)
            pos = SourcePosition(topic=msg.topic, partition=msg.partition, offset=msg.offset)
            raw = msg.value if isinstance(msg.value, bytes) else None
            self.reject(rejection(raw, msg.key, pos, [f"internal: {type(exc).__name__}: {exc}"[:500]]), out)

    def decide(self, event: AlertEvent, out: Outgoing, now: dt.datetime, partition: int) -> None:
        ts = event.epoch
        fp = event.fingerprint
        state = self.table.get(fp, ts)
        previous = 0
        if state is None and not event.is_recovery:
            prev = self.table.previous(fp, ts)
            previous = prev.suppressed if prev else 0
        verdict = decide(state, event, self.window, previous)
        if verdict.new_state is not None:
            for key, value in self.table.store(fp, ts, verdict.new_state, partition):
                # the bytes Faust's own changelog send would write (its "json" codec; tested)
                out.append((self.changelog_name, orjson.dumps(key), orjson.dumps(value), partition))
        self.outcomes[verdict.outcome] += 1
        alert = event.model_dump(mode="python")
        destinations: list[str] = []
        if verdict.notifies:
            for r in self.routes(event.severity, event.type):
                did = delivery_id_for(verdict.dedupe_key, r.receiver, r.destination)
                cmd = command_record(did, alert, verdict.dedupe_key, r.receiver, r.destination,
                                     r.max_attempts, list(r.backoff_s), verdict.suppressed_count,
                                     list(r.failover), now)
                destinations.append(r.destination)
                out.append((self.deliveries[r.destination.split(":", 1)[0]], did.encode(), dumps(cmd), None))
        decision = decision_record(decision_id_for(event.alert_id), alert, verdict.dedupe_key,
                                   verdict.outcome, verdict.reason, verdict.window_start,
                                   verdict.suppressed_count, destinations, now)
        # the decision goes first in the batch's sends: it is what the record is built from
        out.insert(len(out) - len(destinations), (self.decisions_name, fp.encode(), dumps(decision), None))

    def flush_metrics(self) -> None:
        for o, n in self.outcomes.items():
            if n:
                metrics.decisions.labels(o.value).inc(n)
                self.outcomes[o] = 0
        if self.invalid:
            metrics.events_invalid.inc(self.invalid)
            self.invalid = 0


class HotReader:
    """Reads this worker's partitions of the alert topics with a plain aiokafka consumer, in
    step with Faust's group (see the module's docstring)."""

    def __init__(self, rt: Runtime, throttle: Throttle, topics: tuple[str, ...]) -> None:
        self.rt = rt
        self.app = rt.app
        self.throttle = throttle
        self.topics = frozenset(topics)
        s = rt.settings
        self.commit_interval = s.commit_interval_s
        self.consumer: Any = None  # made in run(), on the worker's loop
        self.lock = asyncio.Lock()
        self.assigned: frozenset[TopicPartition] = frozenset()
        self.stale = True  # the assignment must be taken (again) from Faust's
        self.positions: dict[TopicPartition, int] = {}
        self.committed: dict[TopicPartition, int] = {}
        self.unacked: list[tuple[str, int, int, asyncio.Future[Any]]] = []
        self.sender: Any = None
        self.last_commit = time.monotonic()

    def owned(self) -> frozenset[TopicPartition]:
        return frozenset(TopicPartition(tp.topic, tp.partition) for tp in self.app.consumer.assignment()
                         if tp.topic in self.topics)

    async def run(self) -> None:
        s = self.rt.settings
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=s.kafka_bootstrap, group_id=self.app.conf.id, enable_auto_commit=False,
            auto_offset_reset="earliest", fetch_max_wait_ms=s.fetch_max_wait_ms,
            max_partition_fetch_bytes=4 << 20, client_id=f"{self.app.conf.id}-hot")
        await self.consumer.start()
        self.sender = BatchSender(self.app.producer._ensure_producer())  # type: ignore[attr-defined]  # noqa: SLF001
        try:
            while not self.app.should_stop:
                try:
                    await self.step()
                except asyncio.CancelledError:
                    raise
                except Exception:  # never let the reader die: take the assignment again
                    log.exception("hot reader step failed; resuming from the committed offsets")
                    self.stale = True
                    await asyncio.sleep(0.5)
        finally:
            await self.stop()

    async def step(self) -> None:
        if self.stale:
            if not self.rt.ready():
                await asyncio.sleep(0.02)
                return
            async with self.lock:
                if self.rt.ready():
                    self.sync()
            return
        if not self.assigned:
            await asyncio.sleep(0.05)
            self.stale = self.stale or self.owned() != self.assigned
            return
        batch = await self.consumer.getmany(timeout_ms=100, max_records=BATCH)
        async with self.lock:
            if self.stale:  # revoked while fetching: the next owner reads these again
                return
            if batch:
                await self.handle(batch)
            if self.unacked and (time.monotonic() - self.last_commit >= self.commit_interval
                                 or len(self.unacked) > 50_000):
                await self.commit()

    def sync(self) -> None:
        """Take this worker's hot partitions from Faust's assignment; positions start at the
        group's committed offsets (aiokafka fetches them for an assigned partition)."""
        tps = self.owned()
        self.consumer.assign(list(tps))
        self.assigned = tps
        self.positions.clear()
        self.committed.clear()
        self.stale = False
        log.info("hot reader: %d partitions of %s", len(tps), ", ".join(sorted(self.topics)))

    async def handle(self, batch: dict[TopicPartition, list[Any]]) -> None:
        throttle_ = self.throttle
        out: Outgoing = []
        now = dt.datetime.now(dt.UTC)
        n = 0
        for tp, msgs in batch.items():
            for msg in msgs:
                throttle_.process_safely(msg, out, now)
            n += len(msgs)
            self.positions[tp] = msgs[-1].offset + 1
        metrics.events_in.inc(n)
        throttle_.flush_metrics()
        delay = 0.1
        while True:
            try:
                self.unacked.extend(await self.sender.send(out))
                break
            except Exception as exc:  # nothing of this batch is committed before it is sent
                log.warning("queueing the batch's %d messages failed (%s), retrying in %.1fs", len(out), exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def commit(self) -> None:
        """Commit what was processed once every send of it (and the table's changelog) is
        acknowledged; a failed send means reading again from the last commit."""
        unacked, self.unacked = self.unacked, []
        self.last_commit = time.monotonic()
        results = await asyncio.gather(*(f for *_, f in unacked), return_exceptions=True)
        failed = [r for r in results if isinstance(r, BaseException)]
        if failed:
            log.error("%d record batches failed (%s); reading again from the last committed offsets",
                      len(failed), failed[0])
            self.stale = True
            return
        # as Faust's _on_changelog_sent: a RocksDB store remembers how far the changelog is in it
        persisted: dict[int, int] = {}
        for (topic, partition, count, _), meta in zip(unacked, results, strict=True):
            if topic == self.throttle.changelog_name:
                persisted[partition] = max(persisted.get(partition, -1), meta.offset + count - 1)  # type: ignore[union-attr]
        data = self.throttle.table.table.data
        for partition, offset in persisted.items():
            data.set_persisted_offset(TP(self.throttle.changelog_name, partition), offset)
        offsets = {TP(tp.topic, tp.partition): off for tp, off in self.positions.items()
                   if off > self.committed.get(tp, -1)}
        if not offsets:
            return
        # flushes Faust's producer (the changelog records) first; drops revoked partitions
        await self.app.consumer._commit_offsets(offsets)  # type: ignore[attr-defined]  # noqa: SLF001
        for tp, off in offsets.items():
            self.committed[TopicPartition(tp.topic, tp.partition)] = off

    async def on_revoked(self) -> None:
        self.stale = True
        if self.consumer is None:
            return
        async with self.lock:
            try:
                await self.commit()
            finally:
                self.consumer.assign([])
                self.assigned = frozenset()
                self.positions.clear()

    async def stop(self) -> None:
        try:
            async with self.lock:
                if self.assigned and not self.stale:
                    await self.commit()
        except Exception:
            log.warning("hot reader: last commit at shutdown failed; the next owner reads again", exc_info=True)
        finally:
            if self.consumer is not None:
                await self.consumer.stop()


def _keep_paused(app: Any, topics: frozenset[str]) -> None:
    """Faust's consumer never fetches the hot topics: they stay paused in it when recovery
    resumes the rest (Faust still assigns them, with the table's partitions)."""
    from faust.transport.consumer import Consumer

    app._tocsin_hot_topics = topics
    if getattr(Consumer, "_tocsin_original_resume", None) is None:
        original = Consumer.resume_partitions

        def resume_partitions(self: Any, tps: Any) -> None:
            hot = getattr(self.app, "_tocsin_hot_topics", None)
            original(self, [tp for tp in tps if tp.topic not in hot] if hot else tps)

        Consumer._tocsin_original_resume = original  # type: ignore[attr-defined]
        Consumer.resume_partitions = resume_partitions  # type: ignore[method-assign]

        # nor does its liveness check report them as a stream that never started
        from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

        verify = AIOKafkaConsumerThread.verify_event_path

        def verify_event_path(self: Any, now: float, tp: Any) -> None:
            hot = getattr(self.consumer.app, "_tocsin_hot_topics", None)
            if hot and tp.topic in hot:
                return None
            return verify(self, now, tp)

        AIOKafkaConsumerThread.verify_event_path = verify_event_path  # type: ignore[method-assign]


def register(rt: Runtime) -> None:
    app, s = rt.app, rt.settings
    throttle_ = Throttle(rt)
    hot = (throttle_.alerts_name, throttle_.keyed_name)
    source = app.topic(*hot, key_serializer="raw", value_serializer="raw", partitions=s.partitions)
    reader = HotReader(rt, throttle_, hot)
    rt.extras["hot_reader"] = reader
    _keep_paused(app, reader.topics)

    # the agent keeps the subscription (and so the co-partitioned assignment); its stream
    # receives nothing: the reader below processes these partitions
    @app.agent(source, name=f"{s.topic_prefix}.throttle", concurrency=1)
    async def throttle(stream: Any) -> None:
        async for _ in stream.events():  # pragma: no cover - never fed
            log.error("the throttle stream received an event the hot reader should have read")

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def _revoked(sender: Any, revoked: Any, **kw: Any) -> None:
        await reader.on_revoked()

    @app.on_rebalance_complete.connect  # type: ignore[arg-type]
    async def _rebalanced(sender: Any, **kw: Any) -> None:
        reader.stale = True

    @app.task
    async def _hot() -> None:
        await reader.run()
