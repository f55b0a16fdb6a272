"""The throttle agent: validate → (repartition by fingerprint) → decide → route → send.

Consumes ``P.alerts`` (raw bytes, any producer) and ``P.alerts.keyed`` (events this agent
repartitioned because their key or partition was not the fingerprint's). Every rejected
message goes to ``P.alerts.invalid`` with its raw bytes, where it came from and the errors;
no exception leaves the loop. Batches come from ``stream.take_events``.
"""

from __future__ import annotations

import logging
import weakref

from aiokafka.partitioner import murmur2
from faust.streams import _current_event

from ..decisions.routing import route
from ..decisions.throttle import decide, decision_id_for
from ..schemas.alert import AlertEvent
from ..schemas.codec import dumps
from ..schemas.messages import Decision, DeliveryCommand, InvalidAlert, SourcePosition, delivery_id_for
from ..schemas.validate import rejection, validate_raw
from ..streams import metrics
from ..streams.app import Runtime

log = logging.getLogger(__name__)

BATCH = 1000
WITHIN_S = 0.005


def partition_for(key: str, partitions: int) -> int:
    """Kafka's default partitioner (murmur2), as the Java client and aiokafka use it."""
    return (murmur2(key.encode()) & 0x7FFFFFFF) % partitions


def commands_for(decision: Decision, rt: Runtime) -> list[DeliveryCommand]:
    a = decision.alert
    out = []
    for r in route(a.severity, a.type, rt.policy, rt.channels):
        out.append(DeliveryCommand(
            delivery_id=delivery_id_for(decision.dedupe_key, r.receiver, r.destination),
            alert=a,
            dedupe_key=decision.dedupe_key,
            receiver=r.receiver,
            destination=r.destination,
            max_attempts=r.max_attempts,
            backoff_s=list(r.backoff_s),
            suppressed_count=decision.suppressed_count,
            failover=list(r.failover),
        ))
    return out


def register(rt: Runtime) -> None:
    app, topics, s = rt.app, rt.topics, rt.settings
    alerts_name = topics.alerts.get_topic_name()
    keyed_name = topics.alerts_keyed.get_topic_name()
    source = app.topic(alerts_name, keyed_name, key_serializer="raw", value_serializer="raw",
                       partitions=s.partitions)
    throttle_table = rt.tables.throttle
    window = s.throttle_window_s
    partitions = s.partitions

    async def reject(invalid: InvalidAlert) -> None:
        metrics.events_invalid.inc()
        log.warning("invalid alert from %s/%d@%d: %s", invalid.source.topic, invalid.source.partition,
                    invalid.source.offset, "; ".join(invalid.errors)[:300])
        await topics.invalid.send(key=invalid.key, value=invalid)

    async def decide_and_route(event: AlertEvent) -> None:
        ts = event.epoch
        fp = event.fingerprint
        state = throttle_table.get(fp, ts)
        previous = 0
        if state is None and not event.is_recovery:
            prev = throttle_table.previous(fp, ts)
            previous = prev.suppressed if prev else 0
        verdict = decide(state, event, window, previous)
        if verdict.new_state is not None:
            throttle_table.set(fp, ts, verdict.new_state)
        decision = Decision(
            decision_id=decision_id_for(event.alert_id),
            alert=event,
            dedupe_key=verdict.dedupe_key,
            outcome=verdict.outcome,
            reason=verdict.reason,
            window_start=verdict.window_start,
            suppressed_count=verdict.suppressed_count,
        )
        commands = commands_for(decision, rt) if verdict.notifies else []
        decision.destinations = [c.destination for c in commands]
        metrics.decisions.labels(verdict.outcome.value).inc()
        await topics.decisions.send(key=fp, value=decision)
        for cmd in commands:
            await topics.deliveries[cmd.channel].send(key=cmd.delivery_id, value=cmd)

    async def process(ev: object) -> None:
        msg = ev.message  # type: ignore[attr-defined]
        metrics.events_in.inc()
        position = SourcePosition(topic=msg.topic, partition=msg.partition, offset=msg.offset)
        result = validate_raw(ev.value, ev.key, position)  # type: ignore[attr-defined]
        if isinstance(result, InvalidAlert):
            await reject(result)
            return
        fp = result.fingerprint
        expected = partition_for(fp, partitions)
        if msg.topic == alerts_name:
            key = ev.key  # type: ignore[attr-defined]
            key_text = key.decode("utf-8", "replace") if isinstance(key, bytes) else key
            if key_text != fp or msg.partition != expected:
                await topics.alerts_keyed.send(key=fp, value=dumps(result), partition=expected,
                                               key_serializer="raw", value_serializer="raw")
                return
        # table writes go to the changelog partition of the event being processed
        _current_event.set(weakref.ref(ev))
        await decide_and_route(result)

    @app.agent(source, name=f"{s.topic_prefix}.throttle", concurrency=1)
    async def throttle(stream):  # type: ignore[no-untyped-def]
        async for events in stream.take_events(BATCH, within=WITHIN_S):
            for ev in events:
                try:
                    await process(ev)
                except Exception as exc:  # keep the event with its reason; never crash the loop
                    log.exception("throttle failed on %s/%s@%s", ev.message.topic, ev.message.partition,
                                  ev.message.offset)
                    pos = SourcePosition(topic=ev.message.topic, partition=ev.message.partition,
                                         offset=ev.message.offset)
                    raw = ev.value if isinstance(ev.value, bytes) else None
                    inv = rejection(raw, ev.key, pos, [f"internal: {type(exc).__name__}: {exc}"[:500]])
                    try:
                        await reject(inv)
                    except Exception:
                        log.exception("could not keep the failing event on the invalid topic")
