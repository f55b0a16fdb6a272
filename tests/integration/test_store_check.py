"""The RocksDB table store (the default) against a broker that started empty: the store built
from the earlier broker's changelogs is removed at start and rebuilt (core/store_check.py),
so an alert is decided from what this broker holds, not from state it never had; restarted
against the same broker, the store is kept and read past its offset."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest

from tocsin.core import store_check
from tocsin.infra.broker import EmbeddedBroker, free_port

from .conftest import base_env
from .harness import WorkerProcess, produce, read_topic
from .test_pipeline import alert_bytes, bucket_time

pytestmark = pytest.mark.integration


async def decide(bootstrap: str, prefix: str, fp: str, n: int, at: int) -> list[tuple[str, int]]:
    """Produce one alert of ``fp``; the (outcome, suppressed_count) of every decision so far,
    once there are ``n``."""
    await produce(bootstrap, f"{prefix}.alerts",
                  [alert_bytes(type="db_write_fail", severity=2, summary=f"write failed {n}", fingerprint=fp,
                               event_timestamp=bucket_time(at))])
    decisions = await read_topic(bootstrap, f"{prefix}.decisions", min_count=n)
    return [(d["value"]["outcome"], d["value"]["suppressed_count"]) for d in decisions]


async def test_a_store_from_a_broker_that_started_empty_is_rebuilt(tmp_path: Path) -> None:
    bootstrap, prefix, fp = f"127.0.0.1:{free_port()}", "s" + uuid.uuid4().hex[:8], f"db:{uuid.uuid4().hex[:6]}"
    env = base_env(bootstrap, prefix, tmp_path)  # no TOCSIN_TABLE_STORE: the default, RocksDB
    tables = store_check.table_dir(Path(env["TOCSIN_DATA_DIR"]) / "faust")  # the first worker's

    def worker(name: str) -> WorkerProcess:
        return WorkerProcess({**env, "TOCSIN_WEB_PORT": str(free_port())}, tmp_path / f"{name}.log")

    with EmbeddedBroker(bootstrap, log_path=tmp_path / "broker-1.log"):
        w = worker("w1").start()
        await w.wait_ready()
        assert await decide(bootstrap, prefix, fp, 1, at=1) == [("notify", 0)]
        await asyncio.sleep(1.5)  # the changelog acknowledged and its offset noted in the store
        w.stop()
        stores = store_check.partition_stores(tables)
        assert ("throttle", 0) in stores  # the RocksDB store is the default
        # restarted on the same broker: the store is kept (its offset is in the changelog)
        w = worker("w2").start()
        await w.wait_ready()
        assert await decide(bootstrap, prefix, fp, 2, at=2) == [("notify", 0), ("suppress", 1)]
        await asyncio.sleep(1.5)
        w.stop()
        assert "removing" not in (tmp_path / "w2.log").read_text()
        offsets = {k: store_check.persisted_offset(p) for k, p in stores.items()}
        assert any(o is not None for k, o in offsets.items() if k[0] == "throttle")
    # the embedded broker keeps its topics in memory: this one starts with none
    with EmbeddedBroker(bootstrap, log_path=tmp_path / "broker-2.log"):
        w = worker("w3").start()
        await w.wait_ready()
        # the old store said "seen twice in this window": a fresh broker never saw it
        assert await decide(bootstrap, prefix, fp, 1, at=3) == [("notify", 0)]
        w.stop()
    log = (tmp_path / "w3.log").read_text()
    assert "removing" in log and "recovery rebuilds it from the changelog" in log
