"""The throttle's write batch on a RocksDB store (core/tables.ThrottleTable ``begin``/``flush``):
a fetch decided with its writes held and put in the store as one batch decides, sends and keeps
exactly what the same events decided one write at a time through Faust's store do; and a
restarted worker's store holds what the batches wrote."""

from __future__ import annotations

import atexit
import datetime as dt
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

import orjson
from faust.stores.memory import Store as MemoryStore
from faust.stores.rocksdb import Store as RocksDBStore
from faust.types import TP
from hypothesis import given, settings
from hypothesis import strategies as st

from tocsin.agents.batches import partition_for_text
from tocsin.agents.throttle import Throttle
from tocsin.core.settings import Settings
from tocsin.core.tables import range_of
from tocsin.decisions.throttle import WindowState
from tocsin.infra import faust_compat
from tocsin.schemas.alert import AlertEvent, create_alert
from tocsin.streams.app import build

PARTITIONS = 4
#: a per-type window besides the default one (600 s): order_filled decides in 1,800 s windows
ROUTING = Path(__file__).resolve().parents[3] / "tocsin" / "routing.default.toml"
T0 = 1_733_000_400.0  # a window start of both lengths
KEY = range_of(T0, 600)  # the range of T0's default window, as Faust writes it
NOW = dt.datetime.fromtimestamp(T0 + 7200, dt.UTC)


def runtime(store: str, data_dir: Path) -> Any:
    routing = data_dir / "routing.toml"
    data_dir.mkdir(parents=True, exist_ok=True)
    routing.write_text(ROUTING.read_text() + "\n[throttle.types]\norder_filled = 1800\n")
    return build(Settings(kafka_bootstrap="127.0.0.1:1", table_store=store, data_dir=data_dir, routing_file=routing,
                          partitions=PARTITIONS), record=False)


TMP = Path(tempfile.mkdtemp(prefix="tocsin-batch-"))
atexit.register(shutil.rmtree, TMP, ignore_errors=True)
#: the batched path, Faust's own one write at a time (the store read and written through Faust's
#: SerializedStore, as before the batch), and the memory store
BATCHED, ONE_BY_ONE, MEMORY = (Throttle(runtime(s, TMP / name)) for s, name in
                               (("rocksdb", "batched"), ("rocksdb", "one"), ("memory", "memory")))
ONE_BY_ONE.table._rocks = False  # noqa: SLF001  (Faust's store API for reads and writes)


def test_the_runtimes_hold_the_stores_compared() -> None:
    assert isinstance(BATCHED.table.table.data, RocksDBStore) and BATCHED.table.rocks()
    assert isinstance(ONE_BY_ONE.table.table.data, RocksDBStore) and not ONE_BY_ONE.table.rocks()
    assert isinstance(MEMORY.table.table.data, MemoryStore) and not MEMORY.table.rocks()
    MEMORY.table.begin()  # a memory store is written at once: nothing held
    assert MEMORY.table._held is None  # noqa: SLF001


def events(prefix: str, seq: list[tuple[int, int, str]]) -> list[tuple[AlertEvent, int]]:
    """(fingerprint index, seconds after T0, kind) -> (the event, its fingerprint's partition).
    A recovery resolves the fingerprint of its index (another partition, often)."""
    out = []
    for i, (f, at, kind) in enumerate(seq):
        ts = dt.datetime.fromtimestamp(T0 + at, dt.UTC)
        fp = f"{prefix}:{f}"
        if kind == "recovery":
            e = create_alert("component_recovered", 2, f"up {i}", event_timestamp=ts, fingerprint=f"{fp}:up",
                             resolves=fp)
        else:
            e = create_alert(kind, 3, f"{kind} {i}", event_timestamp=ts, fingerprint=fp)
        e = e.model_copy(update={"alert_id": uuid.uuid5(uuid.NAMESPACE_URL, f"{prefix}/{i}")})
        out.append((e, partition_for_text(e.fingerprint, PARTITIONS)))
    return out


def decide_all(throttle: Throttle, evs: list[tuple[AlertEvent, int]], cuts: set[int] | None) -> list[Any]:
    """Each event decided; ``cuts``: batched, a flush (and a new batch) before each index in it."""
    outs = []
    table = throttle.table
    if cuts is not None:
        table.begin()
    try:
        for i, (e, partition) in enumerate(evs):
            if cuts is not None and i in cuts:
                table.flush()
                table.begin()
            out: list[Any] = []
            throttle.decide(e, out, NOW, partition)
            outs.append(out)
    finally:
        table.flush()
    return outs


def stored(throttle: Throttle, prefix: str) -> dict[int, list[tuple[bytes, bytes]]]:
    """The raw (key, value) pairs of each partition's database under the example's prefix."""
    data = throttle.table.table.data
    for p in range(PARTITIONS):
        data.persisted_offset(TP("x", p))  # opens the partition's database, as an assignment does
    mark = orjson.dumps(prefix)[:-1]
    return {p: sorted(kv for kv in faust_compat.rocksdb_items(data, p) or () if kv[0].startswith(b"[" + mark))
            for p in range(PARTITIONS)}


def expiry_index(throttle: Throttle, prefix: str) -> set[tuple[int, float, Any]]:
    index = throttle.table.table._partition_timestamp_keys  # noqa: SLF001
    return {(p, at, key) for (p, at), keys in index.items() for key in keys if key[0].startswith(prefix)}


@settings(max_examples=60, deadline=None)
@given(seq=st.lists(st.tuples(st.integers(0, 5), st.integers(0, 4000),
                              st.sampled_from(["order_rejected", "order_rejected", "order_filled", "recovery"])),
                    min_size=1, max_size=40),
       cuts=st.sets(st.integers(1, 39)))
def test_a_batched_fetch_decides_sends_and_keeps_what_one_write_at_a_time_does(
        seq: list[tuple[int, int, str]], cuts: set[int]) -> None:
    prefix = uuid.uuid4().hex[:12]  # a fresh part of each store
    evs = events(prefix, seq)
    batched = decide_all(BATCHED, evs, cuts)
    one = decide_all(ONE_BY_ONE, evs, None)
    memory = decide_all(MEMORY, evs, None)
    # the same decisions and every other record, the changelog's byte for byte, in the same order
    assert batched == one == memory
    changelog = [r for out in batched for r in out if r[0] == BATCHED.changelog_name]
    # the same bytes in the same partitions' databases, and the same expiry index
    assert stored(BATCHED, prefix) == stored(ONE_BY_ONE, prefix)
    assert expiry_index(BATCHED, prefix) == expiry_index(ONE_BY_ONE, prefix) == expiry_index(MEMORY, prefix)
    # the last changelog record of each key is what the store holds (recovery would agree)
    last = {key: value for _, key, value, _ in changelog}
    on_disk = {k: v for kvs in stored(BATCHED, prefix).values() for k, v in kvs}
    assert on_disk == last


def test_a_read_within_the_batch_sees_the_batchs_writes() -> None:
    prefix = uuid.uuid4().hex[:12]
    table = BATCHED.table
    data = table.table.data
    table.begin()
    try:
        assert table.get(f"{prefix}:a", T0 + 1) is None
        table.store(f"{prefix}:a", T0 + 1, WindowState(7, 0), 2)
        table.store(f"{prefix}:a", T0 + 2, WindowState(7, 1), 2)
        assert table.get(f"{prefix}:a", T0 + 3) == WindowState(7, 1)  # held, not in the store yet
        assert table.get(f"{prefix}:a", T0 + 3, partition=1) == WindowState(7, 1)
        assert data.get((f"{prefix}:a", KEY)) is None
    finally:
        table.flush()
    assert data.get((f"{prefix}:a", KEY)) == WindowState(7, 1).to_value()  # Faust reads it
    assert table.get(f"{prefix}:a", T0 + 3) == WindowState(7, 1)
    table.flush()  # nothing held: nothing written
    assert table._held is None  # noqa: SLF001


def test_a_state_is_found_in_any_partition_whatever_the_hint() -> None:
    """As Faust's own read without a current event: every database the store has open."""
    prefix = uuid.uuid4().hex[:12]
    table = BATCHED.table
    table.begin()
    table.store(f"{prefix}:b", T0, WindowState(9, 4), 3)
    table.flush()
    for hint in (None, 0, 1, 2, 3, 17):
        assert table.get(f"{prefix}:b", T0, partition=hint) == WindowState(9, 4)
    assert table.get(f"{prefix}:nothing", T0, partition=3) is None


WRITER = """
import os, sys
from pathlib import Path
sys.path.insert(0, {root!r})
from tests.unit.core.test_throttle_batch import runtime
from tocsin.decisions.throttle import WindowState
from faust.types import TP
t = runtime("rocksdb", Path({data!r})).tables.throttle
t.begin()
for i in range(200):
    t.store(f"restart:{{i % 50}}", {t0} + i, WindowState(i % 50, i // 50), i % 50 % 4)
t.flush()
t.table.data.set_persisted_offset(TP(t.table.changelog_topic.get_topic_name(), 2), 41)
os._exit(0)  # no close, no flush of the memtables: as a worker killed
"""


def test_a_restarted_store_holds_what_the_batches_wrote(tmp_path: Path) -> None:
    root = str(Path(__file__).resolve().parents[3])
    code = WRITER.format(root=root, data=str(tmp_path / "w"), t0=T0)
    env = {**os.environ, "PYTHONPATH": root}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=120)
    table = runtime("rocksdb", tmp_path / "w").tables.throttle
    data = table.table.data
    changelog = table.table.changelog_topic.get_topic_name()
    assert data.persisted_offset(TP(changelog, 2)) == 41  # opens partition 2's database
    for p in range(PARTITIONS):
        data.persisted_offset(TP(changelog, p))
    for f in range(50):
        want = WindowState(f, 3)  # the last of its four writes (i = f + 150)
        assert table.get(f"restart:{f}", T0) == want
        assert data.get((f"restart:{f}", KEY)) == want.to_value()  # through Faust's own read
