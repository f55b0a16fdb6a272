"""``tocsin rebuild``: the ClickHouse tables rebuilt from the topics.

``rebuild`` empties the tables and re-reads ``P.decisions``, ``P.attempts`` and
``P.lifecycle`` from their beginning up to the end offsets seen when it started, inserting
through the record agent's ``Recorder`` (agents/recorder.py). Rows that workers record
meanwhile are harmless: the tables collapse rows by id, and every analyst query reads with
FINAL.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from ..agents.record_shapes import KINDS
from ..agents.recorder import Recorder
from ..errors import BrokerError
from ..infra.clickhouse.ops import TABLES
from ..infra.clickhouse.store import Store

log = logging.getLogger(__name__)

ProgressCb = Callable[[int, int], None]


def topic_kinds(prefix: str) -> dict[str, str]:
    """``{topic: kind}`` of the recorded topics."""
    return {f"{prefix}.{kind}": kind for kind in KINDS}


async def rebuild(
    store: Store,
    bootstrap: str,
    prefix: str,
    progress_cb: ProgressCb | None = None,
    *,
    batch_rows: int = 10_000,
    idle_timeout_s: float = 30.0,
    recorder: Recorder | None = None,
    security: Mapping[str, Any] | None = None,
) -> dict[str, int]:
    """Empty the tables and record the three topics again, from the beginning to the end
    offsets captured at the start. ``progress_cb(done, total)`` is called after each batch.

    Returns ``{"decisions": n, "attempts": n, "lifecycle": n, "rejected": n}`` (messages
    read per topic; ``rejected`` of them were malformed and not recorded). ``security``:
    ``infra.kafka.client_kwargs(settings)`` (TLS, SASL).
    """
    from aiokafka import AIOKafkaConsumer, TopicPartition

    rec = recorder or Recorder(store, batch_rows=batch_rows)
    kinds = topic_kinds(prefix)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        client_id=f"{prefix}-rebuild",
        **(security or {}),
    )
    try:
        await consumer.start()
    except Exception as exc:
        raise BrokerError(f"rebuild: cannot reach Kafka at {bootstrap}: {type(exc).__name__}") from None
    counts = {kind: 0 for kind in KINDS} | {"rejected": 0}
    try:
        existing = await consumer.topics()
        tps = [TopicPartition(topic, p)
               for topic in kinds if topic in existing
               for p in sorted(consumer.partitions_for_topic(topic) or ())]
        for topic in kinds:
            if topic not in existing:
                log.warning("rebuild: topic %s does not exist; nothing to read from it", topic)
        end = await consumer.end_offsets(tps) if tps else {}
        begin = await consumer.beginning_offsets(tps) if tps else {}
        total = sum(max(0, end[tp] - begin[tp]) for tp in tps)
        log.info("rebuild: %d messages on %d partitions; emptying %s", total, len(tps), ", ".join(TABLES))
        for table in TABLES:
            store.truncate(table)
        if progress_cb:
            progress_cb(0, total)
        remaining = {tp for tp in tps if end[tp] > begin[tp]}
        if not remaining:
            return counts
        consumer.assign(list(remaining))
        await consumer.seek_to_beginning(*remaining)
        done = 0
        fixed: set[Any] = set()
        last_progress = time.monotonic()
        while remaining:
            batches = await consumer.getmany(*remaining, timeout_ms=500, max_records=batch_rows)
            for tp in remaining - fixed:
                # Some brokers (the embedded Tansu) answer ListOffsets with the end of the last
                # record batch's first record; the first fetch's high watermark is the truth.
                high = consumer.highwater(tp)
                if high is not None:
                    total += max(0, high - end[tp])
                    end[tp] = max(end[tp], high)
                    fixed.add(tp)
            events: list[tuple[str, Any]] = []
            for tp, messages in batches.items():
                kind = kinds[tp.topic]
                for m in messages:
                    if m.offset < end[tp]:
                        events.append((kind, m.value))
                        counts[kind] += 1
            if events:
                counts["rejected"] += len(await rec.record_batch(events))
                done += len(events)
                last_progress = time.monotonic()
                if progress_cb:
                    progress_cb(done, total)
            for tp in list(remaining):
                if tp in fixed and await consumer.position(tp) >= end[tp]:
                    remaining.discard(tp)
                    consumer.pause(tp)
            if remaining and time.monotonic() - last_progress > idle_timeout_s:
                raise BrokerError(f"rebuild: no message for {idle_timeout_s:.0f}s with {total - done} "
                                  f"still to read from {bootstrap}")
        log.info("rebuild: done, %s", counts)
        return counts
    finally:
        await consumer.stop()


__all__ = ["rebuild", "topic_kinds"]
