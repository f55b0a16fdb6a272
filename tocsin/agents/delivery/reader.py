"""The reader of the delivery topics: this worker's partitions of every
``P.deliveries.<channel>``, read into their channels' queues (dispatch.py)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Collection
from typing import Any

from aiokafka import TopicPartition
from faust.types import TP

from ..common import decode
from ..reader import PartitionReader, Track
from ..runtime import Runtime
from .dispatch import READ_BATCH, Dispatcher, priority

log = logging.getLogger(__name__)


class Command:
    """A read delivery command: the part of a Faust event the senders, the outbox, the table
    store and ``keep_bad`` use (its own ``message``); ``ack`` marks it done in its partition's
    ``Track``."""

    __slots__ = ("value", "key", "topic", "partition", "offset", "tp", "track", "__weakref__")

    def __init__(self, msg: Any, tp: TP, track: Track) -> None:
        self.value, self.key, self.offset = msg.value, msg.key, msg.offset
        self.topic, self.partition, self.tp = tp.topic, tp.partition, tp
        self.track = track
        track.add(msg.offset)

    @property
    def message(self) -> Command:
        return self

    def ack(self) -> bool:
        self.track.ack(self.offset)
        return True


class DeliveryReader(PartitionReader):
    """Reads this worker's partitions of every delivery topic into their channels' queues (a
    ``PartitionReader``, agents/reader.py). A channel whose queue has no room for another
    fetch, by count (TOCSIN_DELIVERY_READ_AHEAD) or by bytes (TOCSIN_DELIVERY_READ_AHEAD_BYTES),
    is paused, and a fetched command over the bytes left is read again later (a seek back); an
    offset is committed once every command up to it was handled (``Track``). Before a
    revocation, the queued commands of the partitions are dropped (their next owner reads them
    again) and the ones being sent are waited for (up to a delivery's timeout), so that their
    table writes reach the changelog before the next owner recovers it."""

    def __init__(self, rt: Runtime, dispatchers: dict[str, Dispatcher]) -> None:
        super().__init__(rt, tuple(dispatchers), "deliver")
        self.dispatchers = dispatchers  # by topic
        self.tracks: dict[TopicPartition, Track] = {}
        self.room = asyncio.Event()
        for d in dispatchers.values():
            d.highwater = self.highwater
            d.space.on_release = self.room.set

    async def started(self) -> None:
        for d in self.dispatchers.values():
            d.start()

    def highwater(self, tp: Any) -> int | None:
        return self.consumer.highwater(TopicPartition(tp.topic, tp.partition)) if self.consumer else None

    def reset(self) -> None:
        self.give_up(None)
        self.tracks = {}

    def give_up(self, tps: Collection[Any] | None) -> None:
        """Drop the queued commands of ``tps`` (default: all), unacknowledged."""
        for d in self.dispatchers.values():
            for ev in d.drop(tps):
                ev.track.dropped += 1

    async def fetch(self) -> dict[TopicPartition, list[Any]]:
        """A fetch for the channels with room for it, by count and by bytes; the others'
        partitions wait paused."""
        consumer = self.consumer
        least = min(READ_BATCH, self.rt.settings.delivery_read_ahead)
        full = {topic for topic, d in self.dispatchers.items()
                if d.space.value < least or d.space.short_of_bytes(least)}
        paused = consumer.paused()
        pause = [tp for tp in self.assigned if tp.topic in full and tp not in paused]
        resume = [tp for tp in paused if tp.topic not in full]
        if pause:
            consumer.pause(*pause)
        if resume:
            consumer.resume(*resume)
        if len(full) == len(self.dispatchers):
            self.room.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.room.wait(), 0.1)
            return {}
        room = min(d.space.value for topic, d in self.dispatchers.items() if topic not in full)
        return await consumer.getmany(timeout_ms=100, max_records=min(READ_BATCH, room))

    async def handle(self, batch: dict[TopicPartition, list[Any]]) -> None:
        for tp, msgs in batch.items():
            dispatcher = self.dispatchers[tp.topic]
            track = self.tracks.get(tp)
            if track is None:
                track = self.tracks[tp] = Track()
            ftp = TP(tp.topic, tp.partition)
            space = dispatcher.space
            for msg in msgs:
                size = len(msg.value or b"") + len(msg.key or b"")
                if not space.takes(size):  # over TOCSIN_DELIVERY_READ_AHEAD_BYTES: read again later
                    self.consumer.seek(tp, msg.offset)
                    break
                event = Command(msg, ftp, track)
                # only the priority now: the sender decodes (and validates) the command
                try:
                    prio = priority(decode(msg.value))
                except ValueError:  # not JSON
                    prio = 0
                dispatcher.note_read(event)
                await dispatcher.submit(prio, event, size)  # never waits: fetched only with room

    async def step(self) -> None:
        await super().step()
        if not self.stale:
            for d in self.dispatchers.values():
                if d.lag() == 0:
                    d.caught_up.set()

    async def commit(self) -> None:
        self.last_commit = time.monotonic()
        await self.commit_offsets({tp: t.committable() for tp, t in self.tracks.items() if t.committable() >= 0})

    async def settle(self) -> None:
        self.give_up(None)
        deadline = time.monotonic() + self.rt.settings.delivery_timeout_s * 1.5 + 1.0
        while any(t.in_flight() > 0 for t in self.tracks.values()) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        left = sum(max(0, t.in_flight()) for t in self.tracks.values())
        if left:
            log.warning("deliver reader: %d commands still being sent at the revocation; their next owner "
                        "reads them again", left)
