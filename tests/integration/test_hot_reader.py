"""The throttle's reader holds its decisions and changelog records (off an alert's way to its
receiver) for a moment, to send them as fewer, larger batches; the commands go at once. An
offset is never committed before what its alerts produced is on the broker."""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer, TopicPartition

from tocsin.agents.batches import BatchSender
from tocsin.agents.throttle import HOLD_S, HotReader
from tocsin.infra.broker import EmbeddedBroker

from .harness import read_topic

P = "hr"


class Emits:
    """Stands for the throttle: each alert message gives a command, a decision and a
    changelog record (what ``Throttle.process_safely`` appends)."""

    decisions_name = f"{P}.decisions"
    changelog_name = f"{P}-throttle-changelog"

    def __init__(self) -> None:
        self.persisted: dict[Any, int] = {}
        #: the table's write batches: opened (begin) and put in the store (flush)
        self.batches: list[str] = []
        self.table = SimpleNamespace(table=SimpleNamespace(data=SimpleNamespace(
            set_persisted_offset=lambda tp, off: self.persisted.__setitem__(tp, off))),
            begin=lambda: self.batches.append("begin"), flush=lambda: self.batches.append("flush"))

    def process_safely(self, msg: Any, out: list[Any], now: Any) -> None:
        key = msg.key
        out.append((f"{P}.deliveries.webhook", key, b'{"command": 1}', None))
        out.append((self.decisions_name, key, orjson.dumps({"decision": key.decode()}), None))
        out.append((self.changelog_name, key, b'{"state": 1}', 0))

    def flush_metrics(self) -> None:
        pass


async def test_held_records_reach_the_broker_before_the_offsets_are_committed(broker: EmbeddedBroker) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=1)
    await producer.start()
    commits: list[tuple[dict[Any, int], int]] = []

    async def commit_offsets(offsets: dict[Any, int]) -> None:  # Faust's consumer's, which flushes first
        await producer.flush()
        on_broker = await read_topic(broker.bootstrap, Emits.decisions_name, min_count=3, timeout=5)
        commits.append((dict(offsets), len(on_broker)))

    emits = Emits()
    app = SimpleNamespace(consumer=SimpleNamespace(_commit_offsets=commit_offsets), conf=SimpleNamespace(id=P))
    rt: Any = SimpleNamespace(app=app, settings=SimpleNamespace(commit_interval_s=1.0))
    reader = HotReader(rt, emits, (f"{P}.alerts",))  # type: ignore[arg-type]
    reader.sender = BatchSender(producer)
    try:
        tp = TopicPartition(f"{P}.alerts", 0)
        msgs = [SimpleNamespace(key=f"fp{i}".encode(), offset=i) for i in range(3)]
        t0 = time.monotonic()
        await reader.handle({tp: msgs})
        assert emits.batches == ["begin", "flush"]  # the fetch's table writes: one batch
        # the commands went at once; the decisions and changelog records wait
        assert {t for t, *_ in reader.unacked} == {f"{P}.deliveries.webhook"}
        assert len(reader.held) == 6 and time.monotonic() - t0 < HOLD_S
        await reader.commit()
        assert commits == [({tp: 3}, 3)]  # committed once the three decisions were on the broker
        assert not reader.held and not reader.unacked
        assert list(emits.persisted.values()) == [2]  # the changelog's last offset, for a RocksDB store
        # past HOLD_S, the next batch sends what was held without waiting for a commit
        await reader.handle({tp: [SimpleNamespace(key=b"fp3", offset=3)]})
        assert len(reader.held) == 2
        reader.held_since -= HOLD_S
        await reader.release_held()
        assert not reader.held and {t for t, *_ in reader.unacked} >= {Emits.decisions_name}
    finally:
        await producer.stop()
