"""The table stores' check against their changelogs (core/store_check.py) and the choice of
the table store (Settings.effective_table_store)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tocsin.core import store_check
from tocsin.core.settings import load_settings
from tocsin.errors import ConfigError


@pytest.mark.parametrize(("persisted", "end", "stale", "why"), [
    (None, 0, False, "nothing kept: nothing to contradict"),
    (None, 500, False, "nothing kept, the changelog has records: recovery reads them all"),
    (0, 1, False, "built from the one record of the changelog"),
    (499, 500, False, "up to the changelog's last record"),
    (120, 500, False, "behind the changelog: recovery reads the tail"),
    (0, 0, True, "the changelog is gone (a broker that started empty)"),
    (499, 0, True, "the changelog is gone"),
    (500, 500, True, "past the changelog's last record: another changelog's offset"),
    (9_999, 12, True, "a longer changelog of an earlier broker"),
])
def test_a_store_is_stale_when_its_offset_is_not_in_its_changelog(persisted: int | None, end: int, stale: bool,
                                                                   why: str) -> None:
    assert store_check.is_stale(persisted, end) is stale, why


@given(st.integers(min_value=0, max_value=10**12), st.integers(min_value=1, max_value=10**6))
def test_a_store_built_from_a_changelog_is_never_stale_against_it(offset: int, more: int) -> None:
    # a store holds the offset of a record of its changelog: the end is past it, however far
    assert not store_check.is_stale(offset, offset + more)


def test_the_table_partitions_on_disk_are_found_by_their_directory_names(tmp_path: Path) -> None:
    tables = store_check.table_dir(tmp_path)
    for name in ("throttle-0.db", "throttle-3.db", "deliveries-12.db", "my-table-1.db"):
        (tables / name).mkdir(parents=True)
    (tables / "throttle-backups").mkdir()
    (tables / "throttle-9.db.tmp").mkdir()
    (tables / "stray-2.db").write_text("a file, not a database")
    assert store_check.partition_stores(tables) == {
        ("deliveries", 12): tables / "deliveries-12.db", ("my-table", 1): tables / "my-table-1.db",
        ("throttle", 0): tables / "throttle-0.db", ("throttle", 3): tables / "throttle-3.db"}
    assert store_check.partition_stores(tmp_path / "none") == {}
    assert store_check.changelog_topic("tocsin-worker", "throttle") == "tocsin-worker-throttle-changelog"


def test_the_persisted_offset_is_read_as_faust_wrote_it(tmp_path: Path) -> None:
    from faust.stores.rocksdb import RocksDBOptions

    path = tmp_path / "throttle-0.db"
    db = RocksDBOptions(use_rocksdict=True).open(path)  # Faust's own options, as the worker opens it
    db.put(b"k", b"v")
    db.put(store_check.OFFSET_KEY, b"41")
    db.flush()
    assert store_check.persisted_offset(path) == 41  # read-only, beside the writer holding it open
    db.close()
    empty = tmp_path / "throttle-1.db"
    RocksDBOptions(use_rocksdict=True).open(empty).close()
    assert store_check.persisted_offset(empty) is None


def test_tocsin_dev_removes_every_store_no_worker_holds(tmp_path: Path) -> None:
    assert store_check.remove_all_stores(tmp_path) is False
    first, second = store_check.table_dir(tmp_path / "faust"), store_check.table_dir(tmp_path / "faust-1")
    for tables in (first, second):
        (tables / "throttle-0.db").mkdir(parents=True)
    (tmp_path / "clickhouse").mkdir()
    holder = _hold(tmp_path / "faust-1")  # a worker runs on the second one
    try:
        assert store_check.remove_all_stores(tmp_path) is True
        assert not first.exists() and second.exists() and (tmp_path / "clickhouse").is_dir()
    finally:
        holder.kill()
        holder.wait()


def _hold(store: Path) -> subprocess.Popen[str]:
    """Another process holding ``store``'s lock, as a worker does, until killed."""
    code = ("import fcntl, os, sys; fd = os.open(sys.argv[1] + '.lock', os.O_RDWR | os.O_CREAT); "
            "fcntl.flock(fd, fcntl.LOCK_EX); print('held', flush=True); sys.stdin.read()")
    p = subprocess.Popen([sys.executable, "-c", code, str(store.resolve())], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True)
    assert p.stdout is not None and p.stdout.readline().strip() == "held"
    return p


def test_each_worker_on_a_machine_claims_a_store_directory_of_its_own(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    holder = _hold(data / "faust")
    try:
        mine = store_check.claim_store_dir(data)
        assert mine == (data / "faust-1").resolve()  # the first is another worker's
        assert store_check.claim_store_dir(data) == mine  # one process: one directory
        assert store_check.store_dirs(data) == []  # Faust makes them
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.parametrize(("env", "installed", "expected"), [
    ({}, True, "rocksdb"),  # the default where rocksdict installs
    ({}, False, "memory"),  # falls back (the worker warns once)
    ({"TOCSIN_TABLE_STORE": "memory"}, True, "memory"),
    ({"TOCSIN_TABLE_STORE": "memory"}, False, "memory"),
    ({"TOCSIN_TABLE_STORE": "rocksdb"}, True, "rocksdb"),
    ({"TOCSIN_TABLE_STORE": "rocksdb"}, False, ConfigError),  # asked for by name: stop at start
])
def test_the_table_store_is_rocksdb_where_it_installs(monkeypatch: pytest.MonkeyPatch, env: dict[str, str],
                                                       installed: bool, expected: object) -> None:
    monkeypatch.delenv("TOCSIN_TABLE_STORE", raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    s = load_settings()
    if expected is ConfigError:
        with pytest.raises(ConfigError, match="TOCSIN_TABLE_STORE: rocksdb needs the rocksdict package"):
            s.effective_table_store(installed)
    else:
        assert s.effective_table_store(installed) == expected
