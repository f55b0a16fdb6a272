"""A consumer at the end of a full partition of the embedded broker is answered again once
its fetch wait is raised (infra/fetchwait.py, faust_compat.starved_fetch_wait): the soak's
stall (#19), on the real broker.

Tansu's memory storage lists a partition's every record batch on each fetch and stops listing
when the fetch's wait runs out. 20,000 one-record batches (twice what starves a 1 ms wait here, for a faster machine) take it longer than a 1 ms wait to
list, so a consumer fetching with that wait is answered with nothing while the records wait."""

from __future__ import annotations

import asyncio
import time

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.consumer.fetcher import Fetcher

from tocsin.infra import faust_compat
from tocsin.infra.broker import EmbeddedBroker

N = 20_000
TP = TopicPartition("starve", 0)


async def fill(bootstrap: str) -> None:
    p = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
    await p.start()
    try:
        for _ in range(N):  # one batch each: each send is answered before the next
            await p.send_and_wait(TP.topic, b"x" * 100, partition=TP.partition)
    finally:
        await p.stop()


async def read(bootstrap: str, seconds: float, n: int = N) -> tuple[int, int]:
    """Records read from the start within ``seconds`` with a 1 ms fetch wait, and the
    fetcher's wait at the end."""
    c = AIOKafkaConsumer(bootstrap_servers=bootstrap, fetch_max_wait_ms=1, enable_auto_commit=False,
                         client_id="starved-reader")
    await c.start()
    try:
        c.assign([TP])
        c.seek(TP, 0)
        got, end = 0, time.monotonic() + seconds
        while got < n and time.monotonic() < end:
            got += len((await c.getmany(TP, timeout_ms=100, max_records=5000)).get(TP, []))
        return got, c._fetcher._fetch_max_wait_ms
    finally:
        await c.stop()


@pytest.fixture
def unpatched() -> object:
    faust_compat._unpatch(Fetcher, "_proc_fetch_request")
    yield
    faust_compat._unpatch(Fetcher, "_proc_fetch_request")


async def test_a_starved_consumer_raises_its_wait_and_reads_every_record(
        broker: EmbeddedBroker, unpatched: object, caplog: pytest.LogCaptureFixture) -> None:
    await fill(broker.bootstrap)
    # the broker's behaviour this works around: with the library's fetcher, 1 ms is not answered
    got, wait = await read(broker.bootstrap, 3.0)
    assert got < N and wait == 1
    faust_compat.starved_fetch_wait()
    got, wait = await asyncio.wait_for(read(broker.bootstrap, 60.0), 90)
    assert got == N
    assert wait > 1
    assert "consumer starved-reader: fetch wait now" in caplog.text  # the operator sees which


async def test_an_answered_consumer_keeps_its_wait(broker: EmbeddedBroker, unpatched: object) -> None:
    p = AIOKafkaProducer(bootstrap_servers=broker.bootstrap)
    await p.start()
    await asyncio.gather(*[p.send(TP.topic, b"x", partition=0) for _ in range(1000)])
    await p.stop()
    faust_compat.starved_fetch_wait()
    got, wait = await read(broker.bootstrap, 30.0, 1000)
    assert (got, wait) == (1000, 1)
