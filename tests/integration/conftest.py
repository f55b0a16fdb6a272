from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tocsin.bench import peers
from tocsin.infra.broker import EmbeddedBroker, free_port
from tocsin.infra.clickhouse.ops import TABLES
from tocsin.infra.clickhouse.store import Store, open_store

from .harness import HttpReceiver, SmtpReceiver, Stack


@pytest.fixture(autouse=True)
def one_bucket_per_test() -> Iterator[None]:
    """Every ``bucket_time`` of a test in the throttle bucket it started in (test_pipeline.PINNED):
    a test that crosses a 10-minute boundary must not see its events in two buckets."""
    from . import test_pipeline

    test_pipeline.PINNED.append(time.time())
    yield
    test_pipeline.PINNED.clear()


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    b = EmbeddedBroker(f"127.0.0.1:{free_port()}", log_path=tmp_path / "broker.log").start()
    yield b
    b.stop()


@pytest.fixture
async def webhook() -> AsyncIterator[HttpReceiver]:
    r = await HttpReceiver().start()
    yield r
    await r.stop()


@pytest.fixture
def smtp() -> Iterator[SmtpReceiver]:
    s = SmtpReceiver().start()
    yield s
    s.stop()


def base_env(bootstrap: str, prefix: str, tmp: Path, **extra: Any) -> dict[str, str]:
    """The worker environment the bench uses too (``tocsin.bench.peers.base_env``), with the
    file channel on: the tests read what it writes (``tmp/notifications.jsonl``)."""
    return peers.base_env(bootstrap, prefix, tmp, file_channel=True, **extra)


@pytest.fixture
def stack(broker: EmbeddedBroker, tmp_path: Path) -> Iterator[Stack]:
    prefix = "t" + uuid.uuid4().hex[:8]
    st = Stack(broker.bootstrap, prefix, tmp_path, base_env(broker.bootstrap, prefix, tmp_path))
    yield st
    for w in st.workers:
        w.stop(timeout=15)


# -- the embedded ClickHouse engine (chdb): one migrated store per test module, emptied
# for each test (a module may define its own ``store``)


@pytest.fixture(scope="module")
def chdb_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("chdb")


@pytest.fixture(scope="module")
def shared_store(chdb_path: Path) -> Iterator[Store]:
    store = open_store(f"chdb://{chdb_path}")
    store.migrate()
    yield store
    store.close()


@pytest.fixture
def store(shared_store: Store) -> Store:
    for table in TABLES:
        shared_store.truncate(table)
    return shared_store
