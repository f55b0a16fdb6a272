"""Send a processed batch's messages as one Kafka record batch per topic partition.

``AIOKafkaProducer.send`` costs a future, an accumulator lookup and a wake-up per message;
``create_batch``/``send_batch`` cost them once per partition batch. Keyed messages go to the
partition Kafka's default partitioner (murmur2, as the Java client and aiokafka) would pick,
so consumers and tables see exactly what a per-message ``send`` would have produced.

A record larger than the producer's ``max_request_size`` is refused here, as ``send`` would
refuse it: its future fails with ``MessageSizeTooLargeError`` (``refused_for_good``), and the
caller decides what becomes of the message it was made from; it is never retried.
"""

from __future__ import annotations

import asyncio
import logging
import random
import struct
from collections import defaultdict
from functools import lru_cache
from typing import Any

from aiokafka.errors import (
    CorruptRecordException,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    RecordTooLargeError,
)
from aiokafka.record.default_records import DefaultRecordBatchBuilder

from ..infra import faust_compat

log = logging.getLogger(__name__)

#: (topic, key, value, partition or None for the key's)
Outgoing = list[tuple[str, bytes | None, bytes, int | None]]

#: produce errors about the records themselves: sending them again is refused again
PERMANENT = (MessageSizeTooLargeError, RecordListTooLargeError, RecordTooLargeError, CorruptRecordException)
#: aiokafka's (and Faust's) default max_request_size
DEFAULT_MAX_REQUEST = 1_048_576


def refused_for_good(exc: BaseException) -> bool:
    """Whether a failed send will fail again however often it is retried (too large, corrupt)."""
    return isinstance(exc, PERMANENT)


_M = 0x5BD1E995
_MASK = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 (``org.apache.kafka.common.utils.Utils.murmur2``), as aiokafka's
    ``murmur2`` computes it, reading the body as little-endian 32-bit words at once (about
    three times faster than byte by byte; the same results, a property test checks)."""
    length = len(data)
    h = 0x9747B28C ^ length
    body = length & ~3
    for (k,) in struct.iter_unpack("<I", data[:body]):
        k = (k * _M) & _MASK
        k ^= k >> 24
        h = ((h * _M) & _MASK) ^ ((k * _M) & _MASK)
    extra = length & 3
    if extra >= 3:
        h ^= data[body + 2] << 16
    if extra >= 2:
        h ^= data[body + 1] << 8
    if extra >= 1:
        h = ((h ^ data[body]) * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    return h ^ (h >> 15)


def partition_for(key: bytes, partitions: int) -> int:
    """Kafka's default partitioner (murmur2) over ``partitions`` partitions."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


@lru_cache(maxsize=1 << 14)
def partition_for_key(key: bytes, partitions: int) -> int:
    """``partition_for``, remembered: the decisions' keys are fingerprints, which repeat.
    Bounded by count and by the key's length (a fingerprint's, or a delivery id's)."""
    return partition_for(key, partitions)


@lru_cache(maxsize=1 << 14)
def partition_for_text(key: str, partitions: int) -> int:
    """``partition_for`` of a text key, remembered: fingerprints repeat. Bounded by count and
    by the fingerprint's length (512 characters, validated before): at most about 10 MB."""
    return partition_for(key.encode(), partitions)


class BatchSender:
    """Groups messages by (topic, partition) and hands each group to the producer as record
    batches; returns the batches' futures (each resolves to the batch's first offset)."""

    def __init__(self, producer: Any) -> None:
        self.producer = producer  # an started AIOKafkaProducer
        self._counts: dict[str, int] = {}
        #: the largest record the producer would send (``send`` checks it; ``send_batch`` does not)
        self.max_record = faust_compat.max_request_size(producer, DEFAULT_MAX_REQUEST)

    async def partitions(self, topic: str) -> int:
        n = self._counts.get(topic)
        if n is None:
            n = self._counts[topic] = len(await self.producer.partitions_for(topic))
        return n

    def too_large(self, key: bytes | None, value: bytes) -> int:
        """The record's size when it is over the producer's ``max_request_size``, else 0."""
        if len(value) + (len(key) if key else 0) < self.max_record - 128:  # the usual case, at once
            return 0
        size = int(DefaultRecordBatchBuilder.estimate_size_in_bytes(key, value, []))
        return size if size > self.max_record else 0

    def refuse(self, topic: str, partition: int, size: int) -> tuple[str, int, int, asyncio.Future[Any]]:
        """A record the producer would refuse, as a batch of one whose future failed for good."""
        log.warning("a record of %d bytes for %s is over the producer's max_request_size (%d): refused",
                    size, topic, self.max_record)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        fut.set_exception(MessageSizeTooLargeError(
            f"the record is {size:,} bytes, over the producer's max_request_size of {self.max_record:,}"))
        fut.add_done_callback(_retrieved)
        return topic, partition, 1, fut

    async def send(self, out: Outgoing) -> list[tuple[str, int, int, asyncio.Future[Any]]]:
        """Queue every message; returns (topic, partition, count, future) per record batch. A
        record over ``max_request_size`` is a batch of its own whose future failed for good."""
        groups: dict[tuple[str, int], list[tuple[bytes | None, bytes]]] = defaultdict(list)
        futures = []
        counts = self._counts
        for topic, key, value, partition in out:
            if partition is None:
                n = counts.get(topic) or await self.partitions(topic)
                partition = partition_for_key(key, n) if key is not None else random.randrange(n)
            size = self.too_large(key, value)
            if size:
                futures.append(self.refuse(topic, partition, size))
                continue
            groups[(topic, partition)].append((key, value))
        create, send_batch = self.producer.create_batch, self.producer.send_batch
        for (topic, partition), msgs in groups.items():
            batch, count = create(), 0
            for key, value in msgs:
                if batch.append(key=key, value=value, timestamp=None) is None:
                    if count == 0:
                        raise ValueError(f"a message of {len(value)} bytes does not fit a record batch for {topic}")
                    futures.append((topic, partition, count, await send_batch(batch, topic, partition=partition)))
                    batch, count = create(), 0
                    if batch.append(key=key, value=value, timestamp=None) is None:
                        raise ValueError(f"a message of {len(value)} bytes does not fit a record batch for {topic}")
                count += 1
            futures.append((topic, partition, count, await send_batch(batch, topic, partition=partition)))
        return futures


def _retrieved(fut: asyncio.Future[Any]) -> None:
    """Mark a refusal's exception as seen: a caller that only counts batches (the delivery
    outbox) leaves it unread, and asyncio would log it again when the future is collected."""
    if not fut.cancelled():
        fut.exception()
