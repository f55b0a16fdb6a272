"""The one way out for every record whose loss would lose or falsify a notification or a
record: delivery commands, retries, dead letters, failovers, failure alerts, attempts,
rejects, lifecycle events and the tables' changelog records.

``Outbox.send`` / ``send_many`` hand records to the producer and return only once the broker
has acknowledged every one of them. The caller acknowledges the event that made them after
that, so an offset is never committed before what its event caused is on the broker::

    event ──► records ──► Outbox.send_many ──► broker acks ──► event.ack() ──► commit

- a send that failed in a way that may pass (a timeout, the broker away or stalled, a leader
  moving) is sent again after a backoff doubling from 0.1 s to 5 s, until the broker
  acknowledges it or the worker stops: then ``OutboxStopped``, the event stays
  unacknowledged and is read again;
- a record refused for good (over ``max_request_size``, corrupt: ``batches.refused_for_good``)
  is never sent again: ``RecordRefused`` is raised once every other record of the call was
  acknowledged, naming the refused ones, and the caller keeps what they were made from on the
  DLQ or the invalid topic (``refusal`` makes a small entry saying what was refused);
- the records of one call go as one record batch per partition and are awaited together: a
  batch of events costs one round trip, not one per record.

A record sent again after a timeout may have reached the broker the first time: at least
once, never lost. The throttle's reader (throttle.py) keeps its own ack bookkeeping: it reads
again from the last commit instead of sending again.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from aiokafka.errors import MessageSizeTooLargeError
from prometheus_client import Counter

from ..core import metrics
from ..decisions.backoff import Backoff
from ..errors import OutboxStopped, RecordRefused
from ..infra import faust_compat
from ..schemas.codec import dumps
from .batches import BatchSender, partition_for, refused_for_good

log = logging.getLogger(__name__)

#: (topic, key, value, partition or None for the key's), as ``batches.Outgoing``
Record = tuple[str, bytes | None, bytes, int | None]

BACKOFF_S = 0.1
BACKOFF_MAX_S = 5.0

#: on /metrics with the others (core/metrics.py)
resent_total = Counter("tocsin_outbox_resent_total",
                       "Records sent again because the broker did not acknowledge them", registry=metrics.REGISTRY)


class Acked(NamedTuple):
    """Where the broker put a record."""

    topic: str
    partition: int
    offset: int


def record(topic: str, key: str | bytes | None, value: Any, partition: int | None = None) -> Record:
    """A record of the bytes a Tocsin topic's ``send`` would write: a text key as UTF-8, a
    value that is not bytes through the ``tocsin`` codec."""
    k = key.encode() if isinstance(key, str) else key
    v = value if isinstance(value, bytes) else dumps(value)
    return topic, k, v, partition


def refusal(rec: Record, error: BaseException, why: str = "") -> bytes:
    """A small DLQ entry for a record refused for good: where it was going, its key and size,
    and the start of it (the record itself could not be kept)."""
    topic, key, value, partition = rec
    return dumps({
        "error": f"{why or 'a record'} was refused for good ({type(error).__name__}: {error})"[:1000],
        "refused": {"topic": topic, "partition": partition,
                    "key": key.decode("utf-8", "replace")[:512] if key is not None else None,
                    "size": len(value), "head": value[:2048].decode("utf-8", "replace")},
    })


class Outbox:
    """Sends records and waits for the broker's acknowledgement of each (module docstring).

    ``producer`` returns the started ``AIOKafkaProducer`` (Faust's: it may not be started
    yet, which is one more failure that passes); ``stopping`` says the worker is stopping."""

    def __init__(self, producer: Callable[[], Any], stopping: Callable[[], bool] = lambda: False, *,
                 backoff_s: float = BACKOFF_S, backoff_max_s: float = BACKOFF_MAX_S) -> None:
        self._producer = producer
        self.stopping = stopping
        #: between the sends of what the broker did not acknowledge
        self.backoff = Backoff(backoff_s, backoff_max_s)
        self._sender: BatchSender | None = None
        #: the failure last logged, so that a broker away is logged once, not once a retry
        self._failing: str | None = None

    @classmethod
    def for_app(cls, app: Any) -> Outbox:
        return cls(lambda: faust_compat.aiokafka_producer(app), lambda: bool(app.should_stop))

    def sender(self) -> BatchSender:
        producer = self._producer()
        if self._sender is None or self._sender.producer is not producer:
            self._sender = BatchSender(producer)
        return self._sender

    async def send(self, topic: str, key: str | bytes | None, value: Any, partition: int | None = None) -> Acked:
        """Send one record (``record``'s encoding) and wait for the broker's acknowledgement."""
        return (await self.send_many([record(topic, key, value, partition)]))[0]

    async def send_many(self, records: Sequence[Record]) -> list[Acked]:
        """Send every record and wait until the broker acknowledged each; their places, in
        order. Raises ``RecordRefused`` (after the others were acknowledged) or
        ``OutboxStopped``."""
        acked: list[Acked | None] = [None] * len(records)
        refused: dict[int, BaseException] = {}
        alone: set[int] = set()  # sent in a record batch of their own (theirs was refused)
        pending = list(range(len(records)))
        delays, resends = self.backoff.delays(), 0
        while True:
            failed, error = await self._round(records, pending, acked, refused, alone)
            if not failed:
                break
            resends += 1
            resent_total.inc(len(failed))
            delay = next(delays)
            self._failed(len(failed), error, delay)
            await self._pause(delay, len(failed))
            pending = failed
        if resends and self._failing is not None:
            log.info("the broker acknowledges again (%d record(s) after %d resend(s))", len(records), resends)
            self._failing = None
        if refused:
            raise RecordRefused(refused, acked)
        return acked  # type: ignore[return-value]  # every one acknowledged or refused

    async def _round(self, records: Sequence[Record], pending: list[int], acked: list[Acked | None],
                     refused: dict[int, BaseException], alone: set[int]) -> tuple[list[int], BaseException | None]:
        """Hand ``pending`` to the producer and wait for them; the ones to send again, and why."""
        batches: list[tuple[list[int], str, int, Any]] = []
        again: list[int] = []
        error: BaseException | None = None
        try:
            sender = self.sender()
            producer = sender.producer
            groups: dict[tuple[str, int], list[int]] = {}
            for i in pending:
                topic, key, value, partition = records[i]
                if partition is None:
                    n = await sender.partitions(topic)
                    partition = partition_for(key, n) if key is not None else random.randrange(n)
                size = sender.too_large(key, value)
                if size:
                    refused[i] = MessageSizeTooLargeError(
                        f"the record is {size:,} bytes, over the producer's max_request_size of {sender.max_record:,}")
                    continue
                groups.setdefault((topic, partition), []).append(i)
            for (topic, partition), indices in groups.items():
                batch = producer.create_batch()
                chunk: list[int] = []
                for i in indices:
                    _, key, value, _ = records[i]
                    if chunk and (i in alone or chunk[-1] in alone
                                  or batch.append(key=key, value=value, timestamp=None) is None):
                        batches.append((chunk, topic, partition, await producer.send_batch(batch, topic,
                                                                                            partition=partition)))
                        batch, chunk = producer.create_batch(), []
                    if not chunk and batch.append(key=key, value=value, timestamp=None) is None:
                        refused[i] = MessageSizeTooLargeError("the record does not fit a record batch")
                        continue
                    chunk.append(i)
                if chunk:
                    batches.append((chunk, topic, partition, await producer.send_batch(batch, topic,
                                                                                        partition=partition)))
        except Exception as exc:  # not handed over (no producer yet, no metadata, a full queue)
            error = exc
            handed = {i for chunk, *_ in batches for i in chunk}
            again = [i for i in pending if i not in handed and i not in refused]
        results = await asyncio.gather(*(fut for *_, fut in batches), return_exceptions=True)
        for (chunk, topic, partition, _), result in zip(batches, results, strict=True):
            if not isinstance(result, BaseException):
                base = result.offset
                for n, i in enumerate(chunk):
                    acked[i] = Acked(topic, partition, base + n)
            elif refused_for_good(result) and len(chunk) == 1:
                refused[chunk[0]] = result
            elif refused_for_good(result):  # the batch, perhaps not each record: each alone
                alone.update(chunk)
                again.extend(chunk)
            else:
                error = error or result
                again.extend(chunk)
        return again, error

    def _failed(self, count: int, error: BaseException | None, delay: float) -> None:
        what = f"{type(error).__name__}: {error}" if error is not None else "unknown"
        if what != self._failing:
            log.warning("the broker did not acknowledge %d record(s) (%s); sending them again every %.1f-%.0fs "
                        "until it does, the events that made them unacknowledged", count, what, delay,
                        self.backoff.max_s)
            self._failing = what

    async def _pause(self, delay: float, count: int) -> None:
        """Wait ``delay``; ``OutboxStopped`` as soon as the worker stops."""
        deadline = time.monotonic() + delay
        while True:
            if self.stopping():
                raise OutboxStopped(f"the worker stopped before the broker acknowledged {count} record(s); "
                                    "what made them stays unacknowledged and is read again")
            left = deadline - time.monotonic()
            if left <= 0:
                return
            await asyncio.sleep(min(left, 0.1))
