"""Bounded input (issue #14) on the real Tansu broker: a message over TOCSIN_MAX_MESSAGE_BYTES,
overlong text fields, an event_timestamp far ahead of the worker's clock all end on
``P.alerts.invalid`` with their reason while the next alert flows; a record refused for good is
its source message's rejection, not a loop; the delivery read-ahead stops by bytes."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from tocsin.agents.batches import BatchSender
from tocsin.agents.delivery.reader import DeliveryReader
from tocsin.agents.runtime import Runtime
from tocsin.agents.throttle import HotReader
from tocsin.core.settings import Settings
from tocsin.core.topics import ensure_topics
from tocsin.infra.broker import EmbeddedBroker
from tocsin.schemas import DeliveryCommand, create_alert, dumps
from tocsin.streams.app import build

from .harness import Stack, produce, read_topic

pytestmark = pytest.mark.integration


def event(**over: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {"type": "db_write_fail", "severity": 3, "summary": "bounded",
                           "event_timestamp": dt.datetime.now(dt.UTC).isoformat()}
    doc.update(over)
    return doc


async def test_oversized_overlong_and_future_alerts_are_kept_invalid_and_the_next_flows(stack: Stack) -> None:
    await stack.start_worker()
    now = dt.datetime.now(dt.UTC)
    big = orjson.dumps(event(entity={"account_id": "a" * 330_000}))  # was 1.3 MB of records
    items: list[tuple[bytes | None, bytes | None]] = [
        (b"k-big", big),
        (b"k-entity", orjson.dumps(event(entity={"account_id": "a" * 40_000}))),
        (b"k-derived", orjson.dumps(event(entity={"account_id": "a" * 256, "symbol": "s" * 256}))),
        (b"k-ahead", orjson.dumps(event(event_timestamp=(now + dt.timedelta(days=1)).isoformat()))),
    ]
    soon = create_alert("db_write_fail", 3, "a minute ahead", fingerprint=f"soon:{uuid.uuid4().hex}",
                        event_timestamp=now + dt.timedelta(minutes=1))
    normal = create_alert("db_write_fail", 3, "after them", fingerprint=f"normal:{uuid.uuid4().hex}")
    items += [(soon.fingerprint.encode(), dumps(soon)), (normal.fingerprint.encode(), dumps(normal))]
    await produce(stack.bootstrap, stack.topic("alerts"), items)

    decisions = await read_topic(stack.bootstrap, stack.topic("decisions"), timeout=60,
                                 until=lambda ms: {m["key"] for m in ms} >= {soon.fingerprint, normal.fingerprint})
    assert {m["key"] for m in decisions} == {soon.fingerprint, normal.fingerprint}  # nothing else decided
    invalid = await read_topic(stack.bootstrap, stack.topic("alerts.invalid"), min_count=4, timeout=30)
    by_key = {m["key"]: m["value"] for m in invalid}
    assert set(by_key) == {"k-big", "k-entity", "k-derived", "k-ahead"}

    kept = by_key["k-big"]
    assert kept["errors"] == [f"event: message is {len(big):,} bytes, over the 65,536-byte limit "
                              "(TOCSIN_MAX_MESSAGE_BYTES)"]
    assert kept["raw_truncated"] and kept["raw_bytes"] == len(big) and len(kept["raw"]) == 65_536
    assert big.startswith(kept["raw"].encode())
    assert len(orjson.dumps(kept)) < 70_000  # the invalid record is bounded too
    assert by_key["k-entity"]["errors"] == ["entity.account_id: String should have at most 256 characters"]
    assert by_key["k-derived"]["errors"][0].startswith(
        "fingerprint: the default fingerprint type:account_id:symbol:strategy_id is 528 characters, over the "
        "512-character limit")
    ahead = by_key["k-ahead"]["errors"]
    assert len(ahead) == 1 and "ahead of this worker's clock" in ahead[0] and "TOCSIN_MAX_FUTURE_SKEW_S" in ahead[0]


# ------------------------------------------------------------ a record refused for good


@pytest.fixture
async def runtime(broker: EmbeddedBroker, tmp_path: Path) -> Runtime:
    """A worker's runtime, not started: its readers are driven by the test against the broker,
    whose Tocsin topics have one partition each."""
    s = Settings(kafka_bootstrap=broker.bootstrap, topic_prefix="b" + uuid.uuid4().hex[:8], partitions=1,
                 data_dir=tmp_path / "data", record_enabled=False, file_channel_path=tmp_path / "n.jsonl",
                 delivery_read_ahead_bytes=64 * 1024)
    await ensure_topics(broker.bootstrap, s.topic_prefix, 1)
    return build(s, record=False)


def reader_named(rt: Runtime, name: str) -> Any:
    return next(r for r in rt.readers if r.name == name)


@pytest.fixture
async def consumer(broker: EmbeddedBroker) -> AsyncIterator[AIOKafkaConsumer]:
    c = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap, enable_auto_commit=False,
                         auto_offset_reset="earliest")
    await c.start()
    yield c
    await c.stop()


async def read_all(c: AIOKafkaConsumer, tp: TopicPartition, n: int) -> list[Any]:
    """The first ``n`` records of ``tp``, from the start (a reader reading again from a commit)."""
    c.assign([tp])
    await c.seek_to_beginning(tp)
    out: list[Any] = []
    deadline = time.monotonic() + 20
    while len(out) < n and time.monotonic() < deadline:
        out.extend((await c.getmany(tp, timeout_ms=200)).get(tp, []))
    assert len(out) == n
    return out


async def test_a_record_refused_for_good_sends_its_source_to_invalid_once(
        runtime: Runtime, broker: EmbeddedBroker, consumer: AIOKafkaConsumer) -> None:
    hot: HotReader = reader_named(runtime, "hot")
    throttle = hot.throttle
    # a producer that takes records of 4 KiB at most, as a broker with a small message.max.bytes
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=1, max_request_size=4096)
    await producer.start()
    hot.sender = BatchSender(producer)
    commits: list[dict[Any, int]] = []

    async def commit_offsets(offsets: dict[Any, int]) -> None:  # the group commit, through Faust's consumer
        commits.append(dict(offsets))

    hot.commit_offsets = commit_offsets  # type: ignore[method-assign]
    try:
        fat = create_alert("db_write_fail", 3, "fat", fingerprint="fat:1", details={"blob": "x" * 6000})
        thin = create_alert("db_write_fail", 3, "thin", fingerprint="thin:1")
        keyed = throttle.keyed_name  # the throttle decides what it reads there
        await produce(broker.bootstrap, keyed, [(b"fat:1", dumps(fat)), (b"thin:1", dumps(thin))])
        tp = TopicPartition(keyed, 0)

        await hot.handle({tp: await read_all(consumer, tp, 2)})
        await hot.commit()  # the fat alert's decision and command were refused: nothing committed ...
        assert hot.stale and commits == [] and hot.isolate == {tp: 2}

        hot.stale = False  # ... and the reader reads again from the last commit (sync)
        hot.reset()
        await hot.handle({tp: await read_all(consumer, tp, 2)})  # one message at a time
        await hot.commit()
        assert not hot.stale and commits == [{tp: 2}] and not hot.isolate  # past both: no loop

        invalid = await read_topic(broker.bootstrap, throttle.invalid_name, min_count=1, timeout=10, settle=0.5)
        assert len(invalid) == 1
        kept = invalid[0]["value"]
        assert invalid[0]["key"] == "fat:1" and kept["source"] == {"topic": keyed, "partition": 0, "offset": 0}
        assert "was refused for good (MessageSizeTooLargeError" in kept["errors"][0]
        # the rejection with the raw bytes was over 4 KiB too: kept without them, and said so
        assert kept["raw"] == "" and kept["raw_truncated"] and kept["raw_bytes"] == len(dumps(fat))
        decided = await read_topic(broker.bootstrap, throttle.decisions_name, min_count=1, timeout=10, settle=0.5)
        assert {d["key"] for d in decided} == {"thin:1"}  # the thin one went on (read twice: at least once)

        # and from there on, batches again
        thin2 = create_alert("db_write_fail", 3, "thin", fingerprint="thin:2")
        await produce(broker.bootstrap, keyed, [(b"thin:2", dumps(thin2))])
        await hot.handle({tp: (await read_all(consumer, tp, 3))[2:]})
        await hot.commit()
        assert commits[-1] == {tp: 3} and not hot.stale
    finally:
        await producer.stop()


async def test_a_batch_refused_by_the_producer_is_a_failed_future_not_a_retry(broker: EmbeddedBroker) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=1, max_request_size=2048)
    await producer.start()
    try:
        sender = BatchSender(producer)
        sent = await sender.send([("bs", b"a", b"x" * 4000, 0), ("bs", b"b", b"small", 0)])
        results = await asyncio.gather(*(f for *_, f in sent), return_exceptions=True)
        failed = [r for r in results if isinstance(r, BaseException)]
        assert len(failed) == 1 and type(failed[0]).__name__ == "MessageSizeTooLargeError"
        assert "4,0" in str(failed[0]) and "max_request_size of 2,048" in str(failed[0])
        on_broker = await read_topic(broker.bootstrap, "bs", min_count=1, timeout=10, settle=0.5)
        assert [m["key"] for m in on_broker] == ["b"]
    finally:
        await producer.stop()


# ------------------------------------------------------------ the delivery read-ahead, by bytes


def command(i: int) -> tuple[bytes, bytes]:
    """A console command of the same size whatever ``i``."""
    at = dt.datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=dt.UTC)
    alert = create_alert("db_write_fail", 3, f"cmd {i:04d}", fingerprint=f"ra:{i:04d}", event_timestamp=at,
                         details={"pad": "p" * 1000})
    cmd = DeliveryCommand(delivery_id=f"d{i:04d}", alert=alert, dedupe_key=f"ra:{i:04d}:0", receiver="console",
                          destination="console", created_at=at)
    return cmd.delivery_id.encode(), dumps(cmd)


async def test_the_read_ahead_stops_by_bytes(runtime: Runtime, broker: EmbeddedBroker) -> None:
    reader: DeliveryReader = reader_named(runtime, "deliver")
    topic = runtime.topics.deliveries["console"].get_topic_name()
    dispatcher = reader.dispatchers[topic]
    limit = dispatcher.space.max_bytes
    assert limit == 64 * 1024  # TOCSIN_DELIVERY_READ_AHEAD_BYTES; the count (20,000) is far off
    items = [command(i) for i in range(200)]
    sizes = {len(k) + len(v) for k, v in items}
    assert len(sizes) == 1
    size = sizes.pop()
    await produce(broker.bootstrap, topic, items)  # type: ignore[arg-type]

    reader.consumer = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap, enable_auto_commit=False,
                                       auto_offset_reset="earliest")
    await reader.consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        reader.consumer.assign([tp])
        reader.assigned = frozenset({tp})

        async def read_until_full() -> None:
            """The reader's loop with no sender taking: fetch and queue until it fetches no more."""
            idle = 0
            deadline = time.monotonic() + 20
            while idle < 3 and time.monotonic() < deadline:
                batch = await reader.fetch()
                if batch:
                    idle = 0
                    await reader.handle(batch)
                else:
                    idle += 1
                assert dispatcher.space.bytes <= limit  # never more than the limit queued

        await read_until_full()
        full = limit // size
        assert len(dispatcher.heap) == full == dispatcher.read < 200  # stopped by bytes, as full as they allow
        assert tp in reader.consumer.paused()
        # senders take 20: as many more are read, no more
        for _ in range(20):
            await dispatcher.take()
            dispatcher.space.release()
        await read_until_full()
        assert len(dispatcher.heap) == full and dispatcher.read == full + 20
        # and every command is read once, in steps, in order
        while dispatcher.read < 200:
            while dispatcher.heap:
                await dispatcher.take()
                dispatcher.space.release()
            await read_until_full()
        assert dispatcher.read == 200 and dispatcher.space.bytes == len(dispatcher.heap) * size
        assert list(reader.tracks[tp].read) == list(range(200))  # none twice, none skipped
    finally:
        await reader.consumer.stop()
