"""A topic every worker reads whole, from its beginning, into a view of its own (a plain
consumer, no group): ``TopicView``. The silences (core/silences.py) and people's preferences
set through the API (core/preferences.py) are such views: small topics whose every message is a
version of something, which every worker must know before it decides.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

#: longest a write waits for this worker's view to read it back
READ_BACK_TIMEOUT_S = 10.0


class TopicView:
    """Reads ``topic`` whole, for ever; ``take`` is given every message. ``loaded`` is set once
    it has read what the topic held when it started; ``positions`` are the next offsets."""

    #: what the view holds, for the logs
    what = "messages"

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self.positions: dict[int, int] = {}  # partition -> next offset to read
        self.loaded = asyncio.Event()
        self._moved = asyncio.Event()

    def take(self, partition: int, offset: int, value: bytes | None) -> None:
        """One message of the topic (a subclass keeps it; it must never raise)."""
        self.positions[partition] = offset + 1

    def count(self) -> int:
        """How many things the view holds, for the log line once it is loaded."""
        return 0

    async def read_back(self, partition: int, offset: int, timeout_s: float = READ_BACK_TIMEOUT_S) -> bool:
        """Wait until the view has read ``offset`` of ``partition``."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while self.positions.get(partition, 0) <= offset:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                return False
            self._moved.clear()
            try:
                await asyncio.wait_for(self._moved.wait(), min(left, 0.5))
            except TimeoutError:
                pass
        return True

    async def run(self, settings: Any, should_stop: Callable[[], bool]) -> None:
        """Read the topic from its beginning, for ever (until ``should_stop``)."""
        from aiokafka import AIOKafkaConsumer, TopicPartition

        from ..infra.kafka import client_kwargs, end_offsets

        consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False,
                                    auto_offset_reset="earliest", fetch_max_wait_ms=settings.fetch_max_wait_ms * 10,
                                    client_id=f"{settings.app_id}-{self.what}", **client_kwargs(settings))
        await consumer.start()
        try:
            parts: set[int] = set()
            while not parts and not should_stop():
                parts = consumer.partitions_for_topic(self.topic) or set()
                if not parts:
                    await consumer.topics()  # refreshes the metadata
                    await asyncio.sleep(0.2)
            tps = [TopicPartition(self.topic, p) for p in sorted(parts)]
            ends = await end_offsets(consumer, tps)  # leaves the consumer assigned to tps
            await consumer.seek_to_beginning(*tps)
            begins = await consumer.beginning_offsets(tps)
            todo = {tp.partition: ends[tp] for tp in tps if ends[tp] > begins[tp]}
            for tp in tps:
                self.positions.setdefault(tp.partition, begins[tp])
            log.info("%s: reading %s (%d messages)", self.what, self.topic, sum(ends[tp] - begins[tp] for tp in tps))
            while not should_stop():
                if not self.loaded.is_set() and all(self.positions.get(p, 0) >= end for p, end in todo.items()):
                    self.loaded.set()
                    log.info("%s: %d read from %s", self.what, self.count(), self.topic)
                batch = await consumer.getmany(timeout_ms=200, max_records=1000)
                for tp, msgs in batch.items():
                    for msg in msgs:
                        self.take(tp.partition, msg.offset, msg.value)
                if batch:
                    self._moved.set()
        finally:
            await consumer.stop()




async def follow(view: TopicView, settings: Any, should_stop: Callable[[], bool]) -> None:
    """Run ``view`` until ``should_stop``, reading again from the beginning after a failure."""
    while not should_stop():
        try:
            await view.run(settings, should_stop)
        except asyncio.CancelledError:
            raise
        except Exception:  # the view must go on: read again from the beginning
            log.exception("%s: reading %s failed; reading it again", view.what, view.topic)
            await asyncio.sleep(1.0)
