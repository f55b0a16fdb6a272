"""Re-publish a time or offset range of a topic, keys, values and headers intact."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from ..errors import TocsinError
from ..infra.kafka import end_offsets, started, topic_partitions
from ..schemas.alert import parse_timestamp


@dataclass
class Bound:
    """``--from``/``--to``: an offset (applied to every partition) or an RFC 3339 time."""

    offset: int | None = None
    time: dt.datetime | None = None

    @classmethod
    def parse(cls, text: str | None, name: str) -> Bound | None:
        if text is None:
            return None
        t = text.strip()
        if t.isdigit():
            return cls(offset=int(t))
        try:
            return cls(time=parse_timestamp(t))
        except ValueError:
            raise TocsinError(f"{name}: expected an offset or an RFC 3339 time with an offset, got {text!r}") from None


@dataclass
class ReplaySummary:
    topic: str
    to_topic: str
    dry_run: bool
    messages: int = 0
    bytes: int = 0
    per_partition: dict[int, int] = field(default_factory=dict)
    ranges: dict[int, tuple[int, int]] = field(default_factory=dict)


async def _resolve(c: AIOKafkaConsumer, tps: list[TopicPartition], bound: Bound | None,
                   default: dict[TopicPartition, int], clamp: dict[TopicPartition, int]) -> dict[TopicPartition, int]:
    if bound is None:
        return dict(default)
    if bound.offset is not None:
        return {tp: min(bound.offset, clamp[tp]) for tp in tps}
    assert bound.time is not None
    ms = int(bound.time.timestamp() * 1000)
    found = await c.offsets_for_times({tp: ms for tp in tps})
    return {tp: (found[tp].offset if found.get(tp) is not None else clamp[tp]) for tp in tps}


async def replay(bootstrap: str, topic: str, start: Bound | None, end: Bound | None, to_topic: str | None,
                 dry_run: bool, progress: Callable[[int, int], None] | None = None,
                 *, security: Mapping[str, Any] | None = None) -> ReplaySummary:
    """Copy ``topic[start:end)`` (per partition) onto ``to_topic`` (default: the same topic).
    ``security``: ``infra.kafka.client_kwargs(settings)`` (TLS, SASL)."""
    target = to_topic or topic
    sec = security or {}
    c = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, request_timeout_ms=15000, **sec)
    await started(c, bootstrap)
    p: AIOKafkaProducer | None = None
    try:
        tps = await topic_partitions(c, topic)
        if not tps:
            raise TocsinError(f"--topic: no topic {topic!r} on {bootstrap}")
        begins = await c.beginning_offsets(tps)
        ends = await end_offsets(c, tps)
        lo = await _resolve(c, tps, start, begins, ends)
        hi = await _resolve(c, tps, end, ends, ends)
        lo = {tp: max(lo[tp], begins[tp]) for tp in tps}
        hi = {tp: min(hi[tp], ends[tp]) for tp in tps}
        summary = ReplaySummary(topic, target, dry_run)
        summary.ranges = {tp.partition: (lo[tp], hi[tp]) for tp in tps}
        total = sum(max(0, hi[tp] - lo[tp]) for tp in tps)
        if total == 0 or dry_run:
            summary.messages = total
            summary.per_partition = {tp.partition: max(0, hi[tp] - lo[tp]) for tp in tps}
            if progress:
                progress(total, total)
            return summary
        p = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5, **sec)
        await p.start()
        todo = [tp for tp in tps if hi[tp] > lo[tp]]
        c.assign(todo)
        for tp in todo:
            c.seek(tp, lo[tp])
        remaining = set(todo)
        futures = []
        while remaining:
            batch = await c.getmany(*remaining, timeout_ms=1000, max_records=5000)
            if not batch:
                continue
            for tp, msgs in batch.items():
                for m in msgs:
                    if m.offset >= hi[tp]:
                        remaining.discard(tp)
                        break
                    futures.append(await p.send(target, m.value, key=m.key, headers=list(m.headers or ()),
                                                partition=m.partition if target == topic else None))
                    summary.messages += 1
                    summary.bytes += len(m.value or b"") + len(m.key or b"")
                    summary.per_partition[tp.partition] = summary.per_partition.get(tp.partition, 0) + 1
                    if m.offset >= hi[tp] - 1:
                        remaining.discard(tp)
            if progress:
                progress(summary.messages, total)
        await asyncio.gather(*futures)
        return summary
    finally:
        await c.stop()
        if p is not None:
            await p.stop()
