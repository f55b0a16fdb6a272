"""The recovery benchmark writes throttle state straight to the changelog: a worker started
on it must decide exactly as if the throttle had written it."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import pytest

from tocsin.bench.scenarios import count_reaches, write_throttle_changelog, write_throttle_store

from .harness import Stack, produce, read_topic
from .test_pipeline import alert_bytes

pytestmark = pytest.mark.integration


async def test_a_worker_restores_the_benchmarks_changelog(stack: Stack) -> None:
    # one event time for the written state and the alerts: inside the bucket before this one,
    # so no 10-minute boundary can fall between the two, however long the steps take
    at = dt.datetime.fromtimestamp((time.time() // 600 - 1) * 600 + 30, dt.UTC)
    await write_throttle_changelog(stack.bootstrap, stack.prefix, 1000, at=at)
    await count_reaches(stack.bootstrap, f"{stack.prefix}-worker-throttle-changelog", 1000, timeout=30)
    await stack.start_worker()
    fps = [f"order_rejected:ACC{i:07d}:BTC-USD:strat-{i % 50}" for i in (5, 6, 999)]
    await produce(stack.bootstrap, stack.topic("alerts"),
                  [alert_bytes(type="order_rejected", severity=2, summary="again", fingerprint=fp,
                               event_timestamp=at) for fp in fps]
                  + [alert_bytes(type="order_rejected", severity=2, summary="new", fingerprint="fresh:1",
                                 event_timestamp=at)])
    decisions = await read_topic(stack.bootstrap, stack.topic("decisions"), min_count=4)
    got = {d["value"]["alert"]["fingerprint"]: (d["value"]["outcome"], d["value"]["suppressed_count"])
           for d in decisions}
    # state i holds i % 7 suppressed: one more is suppressed on top of it
    assert got == {fps[0]: ("suppress", 5 % 7 + 1), fps[1]: ("suppress", 6 % 7 + 1),
                   fps[2]: ("suppress", 999 % 7 + 1), "fresh:1": ("notify", 0)}


async def test_a_worker_restarts_on_the_benchmarks_rocksdb_store(stack: Stack) -> None:
    # the store written straight to disk is the one a first start leaves: the worker keeps it
    # (its offsets are in the changelog), reads no key from the changelog, and decides the same
    at = dt.datetime.fromtimestamp((time.time() // 600 - 1) * 600 + 30, dt.UTC)
    await write_throttle_changelog(stack.bootstrap, stack.prefix, 1000, at=at)
    await count_reaches(stack.bootstrap, f"{stack.prefix}-worker-throttle-changelog", 1000, timeout=30)
    write_throttle_store(Path(stack.env["TOCSIN_DATA_DIR"]), 1000, at=at)
    w = await stack.start_worker(TOCSIN_TABLE_STORE="rocksdb")
    fps = [f"order_rejected:ACC{i:07d}:BTC-USD:strat-{i % 50}" for i in (5, 999)]
    await produce(stack.bootstrap, stack.topic("alerts"),
                  [alert_bytes(type="order_rejected", severity=2, summary="again", fingerprint=fp,
                               event_timestamp=at) for fp in fps])
    decisions = await read_topic(stack.bootstrap, stack.topic("decisions"), min_count=2)
    got = {d["value"]["alert"]["fingerprint"]: (d["value"]["outcome"], d["value"]["suppressed_count"])
           for d in decisions}
    assert got == {fps[0]: ("suppress", 5 % 7 + 1), fps[1]: ("suppress", 999 % 7 + 1)}
    assert "removing" not in w.log_path.read_text()
