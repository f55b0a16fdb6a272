"""Plain aiokafka readers of the hot topics, in step with Faust's group.

Faust's consumer hands records to a stream one at a time, with a task per record
(``Consumer._drain_messages``): that capped a pass-through agent near 6,000 events/s here. So
the topics on an alert's way to its receiver, the throttle's alert topics and the delivery
topics, are read by plain aiokafka consumers (``PartitionReader``) that follow Faust's group.
Faust's own consumer is left with the topics off that way (decisions, lifecycle, retries, the
status table), which fetch with a longer wait (``background_fetch_max_wait_ms``): the embedded
broker's fetches cost more the longer a partition is, and fewer of them kept its CPU, and the
latency at 1,000 alerts/s, from climbing through a run (BENCHMARKS.md).

How a reader follows the group:

- Faust still owns the subscription (an agent subscribes to each topic and is never fed), the
  assignment (co-partitioned with the tables' changelogs) and the table recovery;
- Faust's own fetch leaves these partitions paused (``faust_compat.keep_paused``);
- once the tables are recovered, a reader takes exactly the partitions of its topics this
  worker was assigned, from the group's committed offsets;
- it commits through Faust's consumer (same group, same generation), which flushes the
  producer first: a committed offset always has its outputs on the broker;
- on a revocation it settles what it read and commits before Faust lets the partitions go.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from faust.types import TP

from ..infra import faust_compat
from .runtime import Runtime

log = logging.getLogger(__name__)


class PartitionReader:
    """Reads this worker's partitions of ``topics`` with a consumer of its own. A subclass
    says what a fetched batch is (``handle``), what is committable (``commit``), and how to
    settle before a revocation (``settle``)."""

    #: most records a fetch returns
    batch = 2000

    def __init__(self, rt: Runtime, topics: tuple[str, ...], name: str) -> None:
        self.rt = rt
        self.app = rt.app
        self.topics = frozenset(topics)
        self.name = name
        self.commit_interval = rt.settings.commit_interval_s
        self.consumer: Any = None  # made in run(), on the worker's loop
        self.lock = asyncio.Lock()
        self.assigned: frozenset[TopicPartition] = frozenset()
        self.stale = True  # the assignment must be taken (again) from Faust's
        self.closed = False  # the worker is stopping: no more reads
        self.committed: dict[TopicPartition, int] = {}
        self.last_commit = time.monotonic()

    def owned(self) -> frozenset[TopicPartition]:
        return frozenset(TopicPartition(tp.topic, tp.partition) for tp in self.app.consumer.assignment()
                         if tp.topic in self.topics)

    async def run(self) -> None:
        from ..infra.kafka import client_kwargs

        s = self.rt.settings
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=s.kafka_bootstrap, group_id=self.app.conf.id, enable_auto_commit=False,
            auto_offset_reset="earliest", fetch_max_wait_ms=s.fetch_max_wait_ms,
            max_partition_fetch_bytes=4 << 20, client_id=f"{self.app.conf.id}-{self.name}",
            **client_kwargs(s))
        await self.consumer.start()
        await self.started()
        try:
            while not self.app.should_stop and not self.closed:
                try:
                    await self.step()
                except asyncio.CancelledError:
                    raise
                except Exception:  # never let the reader die: take the assignment again
                    log.exception("%s reader step failed; resuming from the committed offsets", self.name)
                    self.stale = True
                    await asyncio.sleep(0.5)
        finally:
            await self.stop()

    def follow(self, agents: dict[str, tuple[str, ...]]) -> None:
        """Register with the app: an agent per entry (name: topics) keeps the subscription, and
        so the co-partitioned assignment, and is never fed; Faust's fetch leaves the topics
        paused; a revocation settles and commits first; a task of the app runs the reader."""
        app = self.app
        faust_compat.keep_paused(app, self.topics)
        self.rt.readers.append(self)
        for name, topics in agents.items():
            source = app.topic(*topics, key_serializer="raw", value_serializer="raw",
                               partitions=self.rt.settings.partitions)

            async def unfed(stream: Any, name: str = name) -> None:
                async for _ in stream.events():  # pragma: no cover - never fed
                    log.error("agent %s received an event its reader should have read", name)

            unfed.__name__ = name.rsplit(".", 1)[-1]
            app.agent(source, name=name, concurrency=1)(unfed)

        @app.on_partitions_revoked.connect  # type: ignore[arg-type]
        async def _revoked(sender: Any, revoked: Any, **kw: Any) -> None:
            await self.on_revoked()

        @app.on_rebalance_complete.connect  # type: ignore[arg-type]
        async def _rebalanced(sender: Any, **kw: Any) -> None:
            self.stale = True

        async def read() -> None:
            await self.run()

        read.__name__ = f"read_{self.name}"
        app.task(read)

    async def started(self) -> None:
        """Called once the consumer has started."""

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
        batch = await self.fetch()
        async with self.lock:
            if self.stale:  # revoked while fetching: the next owner reads these again
                return
            if batch:
                await self.handle(batch)
            if self.commit_due():
                await self.commit()

    async def fetch(self) -> dict[TopicPartition, list[Any]]:
        return await self.consumer.getmany(timeout_ms=100, max_records=self.batch)

    def sync(self) -> None:
        """Take this worker's partitions of the topics from Faust's assignment; positions start
        at the group's committed offsets (aiokafka fetches them for an assigned partition)."""
        tps = self.owned()
        self.consumer.assign(list(tps))
        self.assigned = tps
        self.committed.clear()
        self.reset()
        self.stale = False
        log.info("%s reader: %d partitions of %s", self.name, len(tps), ", ".join(sorted(self.topics)))

    def reset(self) -> None:
        """Forget the positions of the partitions read so far."""

    async def handle(self, batch: dict[TopicPartition, list[Any]]) -> None:
        raise NotImplementedError

    def commit_due(self) -> bool:
        return time.monotonic() - self.last_commit >= self.commit_interval

    async def commit(self) -> None:
        raise NotImplementedError

    async def settle(self) -> None:
        """Before a revocation or a stop: finish (or give up) what was read."""

    async def commit_offsets(self, offsets: dict[TopicPartition, int]) -> None:
        """Commit the offsets beyond those committed already, through Faust's consumer: it
        flushes Faust's producer first, and drops the partitions no longer assigned."""
        todo = {TP(tp.topic, tp.partition): off for tp, off in offsets.items() if off > self.committed.get(tp, -1)}
        if not todo:
            return
        await faust_compat.commit_offsets(self.app.consumer, todo)
        for tp, off in todo.items():
            self.committed[TopicPartition(tp.topic, tp.partition)] = off

    async def on_revoked(self) -> None:
        self.stale = True
        if self.consumer is None:
            return
        async with self.lock:
            try:
                await self.settle()
                await self.commit()
            finally:
                self.consumer.assign([])
                self.assigned = frozenset()
                self.reset()

    async def close(self) -> None:
        """Settle and commit now, and read no more: the worker is stopping."""
        self.closed = True
        if self.consumer is None:
            return
        async with self.lock:
            if self.assigned and not self.stale:
                await self.settle()
                await self.commit()
            self.stale = True

    async def stop(self) -> None:
        try:
            async with self.lock:
                if self.assigned and not self.stale:
                    await self.settle()
                    await self.commit()
        except Exception:
            log.warning("%s reader: last commit at shutdown failed; the next owner reads again", self.name,
                        exc_info=True)
        finally:
            if self.consumer is not None:
                await self.consumer.stop()

    async def lag(self) -> dict[str, int]:
        """Records on the broker not yet read, per topic (for the lag gauge)."""
        out: dict[str, int] = {}
        consumer = self.consumer
        if consumer is None or self.stale:
            return out
        for tp in self.assigned:
            try:
                hw = consumer.highwater(tp)
                # at once when the position is known; a partition whose position is not known
                # yet (or no longer assigned) is left out
                position = await asyncio.wait_for(consumer.position(tp), 0.05)
            except Exception:  # not known yet
                continue
            if hw is not None and position is not None:
                out[tp.topic] = out.get(tp.topic, 0) + max(0, hw - position)
        return out


class Track:
    """One partition's read offsets, acknowledged in any order (a delivery command is done when
    its sender is, and SEV1 overtakes): everything below the first one not acknowledged is
    committable."""

    __slots__ = ("read", "done", "dropped", "next")

    def __init__(self) -> None:
        self.read: collections.deque[int] = collections.deque()
        self.done: set[int] = set()
        self.dropped = 0  # read, then given up before a revocation: the next owner reads them
        self.next = -1

    def add(self, offset: int) -> None:
        self.read.append(offset)
        self.next = offset + 1

    def ack(self, offset: int) -> None:
        read = self.read
        if read and read[0] == offset:
            read.popleft()
            done = self.done
            while read and read[0] in done:
                done.discard(read.popleft())
        elif offset >= (read[0] if read else self.next):
            self.done.add(offset)

    def committable(self) -> int:
        """The offset to commit: the first one not acknowledged, or the next to read."""
        return self.read[0] if self.read else self.next

    def in_flight(self) -> int:
        """Read, neither acknowledged nor dropped."""
        return len(self.read) - len(self.done) - self.dropped
