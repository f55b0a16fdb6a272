"""Every silence, read by every worker from ``P.silences``: the ``SilenceView``.

Every version of a silence is a message on ``P.silences`` (key: its id). Every worker reads
the whole topic from its beginning into a ``SilenceView`` (a plain consumer of its own, no
group), and the throttle asks it at each alert's event time (decisions/silence.py); the
throttle starts deciding once the view has read what the topic held when the worker started
(``wait_loaded``). The API that sets and lists silences is streams/silences.py.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from ..decisions import silence as rules
from ..schemas.codec import loads
from ..schemas.silence import Silence

log = logging.getLogger(__name__)

#: longest the throttle waits, at start, for the view to read the topic before it decides
#: without it (a worker that cannot read P.silences still notifies)
LOAD_TIMEOUT_S = 60.0
#: longest a write waits for this worker's view to read it back
READ_BACK_TIMEOUT_S = 10.0


class SilenceView:
    """Every version of every silence, by id, in the topic's order (``versions``), and the same
    compiled for the throttle (``index``)."""

    #: what the log lines call it (core/inhibitions.py reads its topic with the same loop)
    what = "silences"

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self.versions: dict[str, list[Silence]] = {}
        self.index = rules.SilenceIndex()
        self.positions: dict[int, int] = {}  # partition -> next offset to read
        self.loaded = asyncio.Event()
        self._moved = asyncio.Event()
        self._bad: set[tuple[int, int]] = set()

    def apply(self, version: Silence) -> None:
        versions = self.versions.setdefault(version.id, [])
        if version not in versions:  # the same version read again (the topic read again) changes nothing
            versions.append(version)
            self.index.set(version.id, versions)

    def take(self, partition: int, offset: int, value: bytes | None) -> None:
        """One message of the topic."""
        try:
            if value is None:
                raise ValueError("no value (a tombstone)")
            self.apply(Silence.model_validate(loads(value)))
        except (ValidationError, ValueError, TypeError) as exc:
            if (partition, offset) not in self._bad:
                self._bad.add((partition, offset))
                log.warning("%s/%d@%d is not a silence, ignored: %s", self.topic, partition, offset,
                            str(exc).replace("\n", " ")[:300])
        self.positions[partition] = offset + 1

    def count(self) -> int:
        return len(self.versions)

    def latest(self, silence_id: str) -> Silence | None:
        versions = self.versions.get(silence_id)
        return rules.latest(versions) if versions else None

    def shown(self) -> list[Silence]:
        return [rules.latest(v) for v in self.versions.values() if v]

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
                                    client_id=f"{settings.app_id}-silences", **client_kwargs(settings))
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


async def wait_loaded(view: SilenceView | None, timeout_s: float = LOAD_TIMEOUT_S) -> None:
    """For the throttle: wait until the view has read the topic (or ``timeout_s``)."""
    if view is None:
        return
    try:
        await asyncio.wait_for(view.loaded.wait(), timeout_s)
    except TimeoutError:
        log.error("silences: %s not read within %.0fs; deciding without silences until it is", view.topic,
                  timeout_s)
