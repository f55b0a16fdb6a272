"""The Outbox (agents/outbox.py): a call returns once the broker acknowledged every record;
what may pass is sent again, with a bounded backoff, until it is; what is refused for good is
named, never sent again; a stop ends the waiting without acknowledging anything.

The faults are a producer's (tests/unit/producers.py): a batch future failing with a given
error, a hand-over raising, an acknowledgement held back. The same mechanism against the
real broker, paused: tests/integration/test_outbox_broker.py."""

from __future__ import annotations

import asyncio
import time

import pytest
from aiokafka.errors import (
    KafkaTimeoutError,
    MessageSizeTooLargeError,
    NotLeaderForPartitionError,
    RequestTimedOutError,
)

from tocsin.agents.batches import partition_for
from tocsin.agents.outbox import Acked, Outbox, record, refusal
from tocsin.errors import OutboxStopped, RecordRefused
from tocsin.schemas.codec import loads

from ..producers import FakeProducer


def box(producer: FakeProducer, stopping: list[bool] | None = None, **kw: float) -> Outbox:
    flag = stopping if stopping is not None else [False]
    kw.setdefault("backoff_s", 0.01)
    kw.setdefault("backoff_max_s", 0.04)
    return Outbox(lambda: producer, lambda: flag[0], **kw)


async def test_one_record_batch_per_partition_and_each_record_placed_in_order() -> None:
    producer = FakeProducer()
    records = [record("t", f"k{i}", {"n": i}) for i in range(20)] + [record("u", "x", b"raw", 3)]
    acked = await box(producer).send_many(records)
    assert len(producer.sent) == len({(t, p) for t, p, _ in producer.sent})  # one batch each
    assert sum(len(r) for *_, r in producer.sent) == 21
    for i, a in enumerate(acked[:20]):
        assert a.topic == "t" and a.partition == partition_for(f"k{i}".encode(), 4)
    assert acked[20] == Acked("u", 3, 100)
    # offsets: consecutive within a partition, in the order of the call
    by_partition: dict[int, list[int]] = {}
    for a in acked[:20]:
        by_partition.setdefault(a.partition, []).append(a.offset)
    assert all(offs == list(range(100, 100 + len(offs))) for offs in by_partition.values())


def test_record_encodes_as_a_topic_send_would() -> None:
    assert record("t", "fp:1", {"a": 1}) == ("t", b"fp:1", b'{"a":1}', None)
    assert record("t", None, b"\x00raw", 2) == ("t", None, b"\x00raw", 2)


@pytest.mark.parametrize("error", [KafkaTimeoutError(), RequestTimedOutError(), NotLeaderForPartitionError(),
                                   ConnectionError("reset")])
async def test_a_failure_that_may_pass_is_sent_again_until_acknowledged(error: BaseException) -> None:
    producer = FakeProducer(error, error, None)
    acked = await box(producer).send_many([record("t", "k", b"v", 1)])
    assert len(producer.sent) == 3  # twice failed, the third acknowledged
    assert acked == [Acked("t", 1, 100)]


async def test_only_the_failed_batches_are_sent_again() -> None:
    producer = FakeProducer(None, KafkaTimeoutError())  # partition 0's batch acked, 1's failed once
    acked = await box(producer).send_many([record("t", "a", b"1", 0), record("t", "b", b"2", 1)])
    assert [(t, p) for t, p, _ in producer.sent] == [("t", 0), ("t", 1), ("t", 1)]
    assert acked == [Acked("t", 0, 100), Acked("t", 1, 100)]


async def test_a_hand_over_that_raises_is_sent_again() -> None:
    producer = FakeProducer("raise", "raise", None)
    assert await box(producer).send_many([record("t", "k", b"v", 0)]) == [Acked("t", 0, 100)]


async def test_nothing_returns_before_the_broker_acknowledges() -> None:
    producer = FakeProducer("hold")
    task = asyncio.ensure_future(box(producer).send_many([record("t", "k", b"v", 0)]))
    await asyncio.sleep(0.05)
    assert not task.done() and len(producer.sent) == 1  # handed over, not acknowledged
    producer.release()
    assert await asyncio.wait_for(task, 1) == [Acked("t", 0, 100)]


async def test_the_backoff_doubles_up_to_its_bound() -> None:
    failures = [KafkaTimeoutError()] * 6
    producer = FakeProducer(*failures, None)
    times: list[float] = []
    original = producer.send_batch

    async def timed(*a: object, **kw: object) -> object:
        times.append(time.monotonic())
        return await original(*a, **kw)  # type: ignore[arg-type]

    producer.send_batch = timed  # type: ignore[method-assign]
    await box(producer, backoff_s=0.02, backoff_max_s=0.08).send_many([record("t", "k", b"v", 0)])
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert len(gaps) == 6
    for gap, wanted in zip(gaps, [0.02, 0.04, 0.08, 0.08, 0.08, 0.08], strict=True):
        assert wanted * 0.9 <= gap < wanted + 0.06


async def test_a_record_refused_for_good_is_named_and_not_sent_again() -> None:
    producer = FakeProducer(MessageSizeTooLargeError("too big"), None)
    records = [record("t", "big", b"x" * 10, 0), record("t", "ok", b"y", 1)]
    with pytest.raises(RecordRefused) as info:
        await box(producer).send_many(records)
    assert set(info.value.refused) == {0}
    assert isinstance(info.value.refused[0], MessageSizeTooLargeError)
    assert info.value.acked == [None, Acked("t", 1, 100)]  # the other one is on the broker
    assert len(producer.sent) == 2  # never again


async def test_a_batch_refused_for_good_is_sent_again_record_by_record() -> None:
    # the broker refuses the batch of three; alone, only one of them is refused
    producer = FakeProducer(MessageSizeTooLargeError("batch"), None, MessageSizeTooLargeError("this one"), None)
    records = [record("t", f"k{i}", f"v{i}".encode(), 2) for i in range(3)]
    with pytest.raises(RecordRefused) as info:
        await box(producer).send_many(records)
    assert set(info.value.refused) == {1}
    assert [len(r) for *_, r in producer.sent] == [3, 1, 1, 1]
    assert [a.offset if a else None for a in info.value.acked] == [100, None, 101]


async def test_a_record_over_max_request_size_is_refused_without_a_send() -> None:
    producer = FakeProducer(max_request_size=1000)
    with pytest.raises(RecordRefused) as info:
        await box(producer).send_many([record("t", "k", b"x" * 5000, 0)])
    assert not producer.sent and "max_request_size" in str(info.value.refused[0])


async def test_a_stop_ends_the_resending_with_nothing_acknowledged() -> None:
    stopping = [False]
    producer = FakeProducer(*[KafkaTimeoutError()] * 1000)
    task = asyncio.ensure_future(box(producer, stopping).send_many([record("t", "k", b"v", 0)]))
    await asyncio.sleep(0.1)
    assert not task.done()
    stopping[0] = True
    with pytest.raises(OutboxStopped):
        await asyncio.wait_for(task, 1)


def test_a_refusal_note_says_what_was_refused() -> None:
    note = loads(refusal(("p.dlq", b"d1", b"x" * 10_000, None), MessageSizeTooLargeError("big"), "a DLQ entry"))
    assert note["error"].startswith("a DLQ entry was refused for good (MessageSizeTooLargeError")
    assert note["refused"]["topic"] == "p.dlq" and note["refused"]["size"] == 10_000
    assert len(note["refused"]["head"]) == 2048
