"""The throttle agent: validate → (repartition by fingerprint) → decide → route → send.

Consumes ``P.alerts`` (raw bytes, any producer) and ``P.alerts.keyed`` (events this agent
re-keyed because their key or partition was not their fingerprint's). Every rejected message
goes to ``P.alerts.invalid`` with its raw bytes, where it came from and the errors; no
exception leaves the loop.

Shaped for throughput: batches from ``stream.take_events``; outgoing messages are built as
plain dicts (``decision_record``/``command_record``), encoded once by the codec and handed to
the producer without awaiting each delivery report (Faust flushes the producer before it
commits the batch's offsets: at least once).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import weakref
from typing import Any

from aiokafka.partitioner import murmur2
from faust.streams import _current_event

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

log = logging.getLogger(__name__)

BATCH = 2000
WITHIN_S = 0.002


def partition_for(key: str, partitions: int) -> int:
    """Kafka's default partitioner (murmur2), as the Java client and aiokafka use it."""
    return (murmur2(key.encode()) & 0x7FFFFFFF) % partitions


Outgoing = list[tuple[str, bytes | None, bytes, int | None]]


class Throttle:
    """Decides one event at a time and collects what to send."""

    def __init__(self, rt: Runtime) -> None:
        s = rt.settings
        self.rt = rt
        self.table = rt.tables.throttle
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

    def process(self, ev: Any, out: Outgoing, now: dt.datetime) -> None:
        msg = ev.message
        position = SourcePosition(topic=msg.topic, partition=msg.partition, offset=msg.offset)
        result = validate_raw(ev.value, ev.key, position)
        if isinstance(result, InvalidAlert):
            self.reject(result, out)
            return
        fp = result.fingerprint
        if msg.topic == self.alerts_name:
            key = ev.key
            key_text = key.decode("utf-8", "replace") if isinstance(key, bytes) else key
            if (key_text != fp or not self.alerts_copartitioned()
                    or msg.partition != partition_for(fp, self.partitions)):
                # re-key: the default partitioner puts it on the fingerprint's partition
                out.append((self.keyed_name, fp.encode(), dumps(result), None))
                return
        # table writes go to the changelog partition of the event being processed
        _current_event.set(weakref.ref(ev))
        self.decide(result, out, now)

    def decide(self, event: AlertEvent, out: Outgoing, now: dt.datetime) -> None:
        ts = event.epoch
        fp = event.fingerprint
        state = self.table.get(fp, ts)
        previous = 0
        if state is None and not event.is_recovery:
            prev = self.table.previous(fp, ts)
            previous = prev.suppressed if prev else 0
        verdict = decide(state, event, self.window, previous)
        if verdict.new_state is not None:
            self.table.set(fp, ts, verdict.new_state)
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


def register(rt: Runtime) -> None:
    app, s = rt.app, rt.settings
    throttle_ = Throttle(rt)
    source = app.topic(throttle_.alerts_name, throttle_.keyed_name, key_serializer="raw",
                       value_serializer="raw", partitions=s.partitions)

    @app.agent(source, name=f"{s.topic_prefix}.throttle", concurrency=1)
    async def throttle(stream: Any) -> None:
        producer = app.producer
        async for events in stream.take_events(BATCH, within=WITHIN_S):
            out: Outgoing = []
            now = dt.datetime.now(dt.UTC)
            for ev in events:
                try:
                    throttle_.process(ev, out, now)
                except Exception as exc:  # keep the event with its reason; never crash the loop
                    log.exception("throttle failed on %s/%s@%s", ev.message.topic, ev.message.partition,
                                  ev.message.offset)
                    pos = SourcePosition(topic=ev.message.topic, partition=ev.message.partition,
                                         offset=ev.message.offset)
                    raw = ev.value if isinstance(ev.value, bytes) else None
                    throttle_.reject(rejection(raw, ev.key, pos, [f"internal: {type(exc).__name__}: {exc}"[:500]]), out)
            metrics.events_in.inc(len(events))
            throttle_.flush_metrics()
            # hand everything to the producer; Faust flushes it before committing these offsets.
            # The batch is acknowledged only after this loop: a send that fails is retried.
            for topic, key, value, partition in out:
                delay = 0.1
                while True:
                    try:
                        await producer.send(topic, key, value, partition, None, None)
                        break
                    except Exception as exc:
                        log.warning("send to %s failed (%s), retrying in %.1fs", topic, exc, delay)
                        await asyncio.sleep(delay)
                        delay = min(delay * 2, 5.0)
