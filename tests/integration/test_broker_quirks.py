"""The embedded broker's ListOffsets under-reports a partition's end when the last record
batch holds several records; Tocsin's end_offsets (used by table recovery, replay, the DLQ
commands) reads the true high watermark from a fetch."""

from __future__ import annotations

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from tocsin.infra.broker import EmbeddedBroker
from tocsin.infra.kafka import end_offsets

pytestmark = pytest.mark.integration


async def test_listoffsets_quirk_and_the_true_end(broker: EmbeddedBroker) -> None:
    p = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=50)
    await p.start()
    futs = [await p.send("quirk", b"v%d" % i, partition=0) for i in range(10)]  # one batch
    for f in futs:
        await f
    await p.stop()
    c = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap, enable_auto_commit=False)
    await c.start()
    try:
        tp = TopicPartition("quirk", 0)
        listed = (await c.end_offsets([tp]))[tp]
        true = (await end_offsets(c, [tp]))[tp]
    finally:
        await c.stop()
    assert true == 10
    # the quirk itself: if the broker is ever fixed, this documents that the workaround is moot
    print(f"\nListOffsets end {listed}, true end {true}")
    assert listed <= true
