"""A small stand-in for what the Outbox uses of an ``AIOKafkaProducer`` (record batches,
metadata), for the faults no real broker produces on demand: a batch future that fails with a
given error, a hand-over that raises, an acknowledgement held back."""

from __future__ import annotations

import asyncio
from collections import deque
from types import SimpleNamespace
from typing import Any

#: what becomes of a batch handed over: acknowledged (None), its future failed (an exception),
#: the hand-over itself raising ("raise"), or the future left pending ("hold")
Outcome = BaseException | str | None


class FakeBatch:
    def __init__(self, batch_size: int) -> None:
        self.records: list[tuple[bytes | None, bytes]] = []
        self.size = 0
        self.batch_size = batch_size

    def append(self, key: bytes | None, value: bytes, timestamp: Any) -> object | None:
        n = len(value) + len(key or b"")
        if self.records and self.size + n > self.batch_size:  # as aiokafka: the first always fits
            return None
        self.records.append((key, value))
        self.size += n
        return object()


class FakeProducer:
    def __init__(self, *outcomes: Outcome, partitions: int = 4, batch_size: int = 1 << 20,
                 max_request_size: int = 1 << 20) -> None:
        self.outcomes: deque[Outcome] = deque(outcomes)
        self.batch_size = batch_size
        self._max_request_size = max_request_size
        #: every batch handed over: (topic, partition, records)
        self.sent: list[tuple[str, int, list[tuple[bytes | None, bytes]]]] = []
        self.held: list[tuple[asyncio.Future[Any], int]] = []
        self.ends: dict[tuple[str, int], int] = {}
        self.partitions = partitions

    async def partitions_for(self, topic: str) -> set[int]:
        return set(range(self.partitions))

    def create_batch(self) -> FakeBatch:
        return FakeBatch(self.batch_size)

    def _offset(self, topic: str, partition: int, count: int) -> int:
        base = self.ends.get((topic, partition), 100)
        self.ends[(topic, partition)] = base + count
        return base

    async def send_batch(self, batch: FakeBatch, topic: str, partition: int) -> asyncio.Future[Any]:
        outcome = self.outcomes.popleft() if self.outcomes else None
        if outcome == "raise":
            raise ConnectionError("broker away")
        self.sent.append((topic, partition, batch.records))
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if outcome == "hold":
            self.held.append((fut, self._offset(topic, partition, len(batch.records))))
        elif isinstance(outcome, BaseException):
            fut.set_exception(outcome)
        else:
            fut.set_result(SimpleNamespace(offset=self._offset(topic, partition, len(batch.records))))
        return fut

    def release(self) -> None:
        """Acknowledge the held batches."""
        for fut, offset in self.held:
            fut.set_result(SimpleNamespace(offset=offset))
        self.held.clear()
