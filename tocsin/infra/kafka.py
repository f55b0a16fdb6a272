"""Small Kafka helpers shared by the operator commands."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition


async def end_offsets(c: AIOKafkaConsumer, tps: list[TopicPartition], timeout_s: float = 5.0) -> dict[TopicPartition, int]:
    """The next offset to be written per partition (the high watermark).

    The embedded broker (Tansu) answers ListOffsets(latest) with the end of the last record
    batch's *first* record, so a partition written in batches reports too small an end. A fetch
    response carries the true high watermark: fetch once from the reported end and take the
    larger of the two. Leaves ``c`` assigned to ``tps``.
    """
    listed = await c.end_offsets(tps)
    begins = await c.beginning_offsets(tps)
    c.assign(tps)
    probe = [tp for tp in tps if listed[tp] > begins[tp]]
    for tp in probe:
        c.seek(tp, max(begins[tp], listed[tp] - 1))
    result = dict(listed)
    pending = set(probe)
    deadline = time.monotonic() + timeout_s
    while pending and time.monotonic() < deadline:
        await c.getmany(*pending, timeout_ms=200, max_records=1)
        for tp in list(pending):
            hw = c.highwater(tp)
            if hw is not None:
                result[tp] = max(result[tp], hw)
                pending.discard(tp)
        if pending:
            await asyncio.sleep(0)
    return result


async def started(client: Any, bootstrap: str, timeout_s: float = 15.0) -> Any:
    """Start an aiokafka client, or fail with one clear line (and nothing left open)."""
    from ..errors import TocsinError

    try:
        await asyncio.wait_for(client.start(), timeout_s)
    except Exception as exc:
        await client.stop()
        raise TocsinError(f"cannot reach Kafka at {bootstrap}: {type(exc).__name__}") from None
    return client


async def topic_partitions(c: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
    """The partitions of ``topic`` (refreshing metadata once); empty if it does not exist."""
    parts = c.partitions_for_topic(topic)
    if not parts:
        await c._client.force_metadata_update()  # noqa: SLF001
        parts = c.partitions_for_topic(topic)
    return [TopicPartition(topic, p) for p in sorted(parts or ())]
