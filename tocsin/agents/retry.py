"""The retry agent: holds commands from ``P.deliveries.retry`` until their ``not_before``,
then sends them back to ``P.deliveries.<channel>``.

No consuming loop sleeps: the agent reads every waiting command into a heap ordered by due
time and a timer releases the due ones; each event is acknowledged only after its command was
re-published, so a crash re-reads what was waiting (the delivery table drops repeats).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import heapq
import itertools
import logging
from typing import Any

from pydantic import ValidationError

from ..schemas.messages import DeliveryCommand
from ..streams import metrics
from ..streams.app import Runtime
from .common import decode, keep_bad

log = logging.getLogger(__name__)
TICK_S = 0.05


def register(rt: Runtime) -> None:
    app = rt.app
    heap: list[tuple[float, int, DeliveryCommand, Any]] = []
    seq = itertools.count()
    wake = asyncio.Event()

    async def release_due() -> None:
        now = dt.datetime.now(dt.UTC).timestamp()
        while heap and heap[0][0] <= now:
            _, _, cmd, event = heapq.heappop(heap)
            try:
                topic = rt.topics.deliveries[cmd.channel]
                await topic.send(key=cmd.delivery_id, value=cmd.model_copy(update={"not_before": None}))
            except Exception:
                log.exception("could not re-publish %s; it stays waiting", cmd.delivery_id)
                heapq.heappush(heap, (now + 1.0, next(seq), cmd, event))
                break
            event.ack()
        metrics.retries_pending.set(len(heap))

    source = app.topic(rt.topics.retry.get_topic_name(), key_serializer="raw", value_serializer="raw",
                       partitions=rt.settings.partitions)

    @app.agent(source, name=f"{rt.settings.topic_prefix}.retry", concurrency=1)
    async def retry(stream: Any) -> None:
        async for event in stream.noack().events():
            try:
                cmd = DeliveryCommand.model_validate(decode(event.value))
            except (ValidationError, TypeError, ValueError) as exc:
                try:
                    await keep_bad(rt, event, f"invalid delivery command: {exc}")
                finally:
                    event.ack()
                continue
            due = cmd.not_before.timestamp() if cmd.not_before else 0.0
            heapq.heappush(heap, (due, next(seq), cmd, event))
            metrics.retries_pending.set(len(heap))
            if due <= dt.datetime.now(dt.UTC).timestamp():
                wake.set()

    @app.task
    async def release_loop() -> None:
        while not app.should_stop:
            try:
                await asyncio.wait_for(wake.wait(), TICK_S)
            except TimeoutError:
                pass
            wake.clear()
            await release_due()
