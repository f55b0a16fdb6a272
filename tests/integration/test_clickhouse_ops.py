"""`tocsin rebuild` from the topics of the real embedded broker, and `tocsin stats` text."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import orjson
import pytest

from tocsin.infra.broker import EmbeddedBroker
from tocsin.infra.clickhouse.ops import TABLES, format_table, stats_text
from tocsin.infra.clickhouse.queries import stats_24h
from tocsin.infra.clickhouse.store import Store, open_store
from tocsin.tools.rebuild import rebuild, topic_kinds

from ..support.samples import synthetic_messages
from .test_clickhouse_queries import NOW, _record, dataset

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    s = open_store(f"chdb://{tmp_path_factory.mktemp('chops')}")
    s.migrate()
    yield s
    s.close()


async def publish(bootstrap: str, prefix: str, messages: list[tuple[str, bytes]]) -> None:
    from aiokafka import AIOKafkaProducer
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(t, num_partitions=3, replication_factor=1) for t in topic_kinds(prefix)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for i, (kind, value) in enumerate(messages):
            await producer.send(f"{prefix}.{kind}", value, key=str(i % 7).encode())
        await producer.flush()
    finally:
        await producer.stop()


async def test_rebuild_reads_the_topics_again(broker: EmbeddedBroker, store: Store) -> None:
    prefix = "rb" + uuid.uuid4().hex[:6]
    msgs, _ = dataset()
    wire_msgs = [(k, orjson.dumps(v)) for k, v in msgs]
    wire_msgs.insert(3, ("attempts", b"{\"not\": \"an attempt\"}"))
    await publish(broker.bootstrap, prefix, wire_msgs)
    # what the tables held before (another history) must be gone afterwards
    await _record(store, synthetic_messages(50, NOW))
    progress: list[tuple[int, int]] = []

    counts = await rebuild(store, broker.bootstrap, prefix, lambda done, total: progress.append((done, total)),
                           batch_rows=5)
    assert counts == {"decisions": 11, "attempts": 12, "lifecycle": 2, "rejected": 1}
    assert progress[0][0] == 0 and progress[-1] == (25, 25)  # the total may grow: see rebuild
    assert [d for d, _ in progress] == sorted(d for d, _ in progress)
    assert stats_24h(store, NOW) == {
        "total_24h": 10,
        "by_severity": {"SEV1": 6, "SEV2": 3, "SEV3": 1},
        "by_type": {"position_limit_hit": 5, "order_rejected": 3, "component_recovered": 1, "component_unhealthy": 1},
        "delivery_success_rate": round(5 / 6, 4),
    }
    assert store.query("SELECT count() FROM tocsin.alerts FINAL")[1] == [(11,)]
    assert store.query("SELECT sum(attempts) FROM tocsin.delivery_stats_1m")[1] == [(11,)]

    # a second rebuild gives the same tables (idempotent)
    assert await rebuild(store, broker.bootstrap, prefix) == counts
    assert store.query("SELECT count() FROM tocsin.delivery_attempts FINAL")[1] == [(11,)]


async def test_rebuild_of_missing_topics_empties_the_tables(broker: EmbeddedBroker, store: Store) -> None:
    await _record(store, synthetic_messages(10, NOW))
    counts = await rebuild(store, broker.bootstrap, "nothing" + uuid.uuid4().hex[:6])
    assert counts == {"decisions": 0, "attempts": 0, "lifecycle": 0, "rejected": 0}
    for table in TABLES:
        assert store.query(f"SELECT count() FROM tocsin.{table}")[1] == [(0,)]


async def test_stats_text(store: Store) -> None:
    for table in TABLES:
        store.truncate(table)
    empty = stats_text(store, NOW)
    assert "alerts 0" in empty and "delivery success -" in empty
    msgs, _ = dataset()
    await _record(store, msgs)
    text = stats_text(store, NOW)
    assert text.splitlines()[0] == "Tocsin: the 24 hours to 2025-06-01 12:00 UTC"
    assert "alerts 10   delivery success 83.3% (5 of 6 deliveries)" in text
    assert "SEV1           6         2           4" in text
    assert "webhook           2    50.0%   305.0   318.5   319.7" in text
    assert "position_limit_hit" in text and "webhook:default" in text and "server error 3" in text
    assert "noisiest fingerprints" in text and "failing destinations" in text


def test_format_table_aligns_numbers_right() -> None:
    out = format_table(["name", "n", "rate", "ok"], [["a", 1, 0.5, "50.0%"], ["long name", 100, None, "-"]])
    assert out.splitlines() == [
        "name         n  rate     ok",
        "---------  ---  ----  -----",
        "a            1   0.5  50.0%",
        "long name  100     -      -",
    ]
