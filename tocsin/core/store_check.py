"""A RocksDB table store that was not built from the changelogs on this broker is removed
before the worker starts, so Faust's recovery rebuilds it from them.

A RocksDB store keeps each table partition on disk with the changelog offset it holds up to
(Faust's offset key); on a restart, recovery reads the changelog only past that offset. That
is what makes a restart fast, and what goes wrong when the broker starts empty while the
store does not: the embedded broker keeps its topics in memory (a restarted `tocsin broker`
has none), and a changelog topic can be deleted and made again on any Kafka. The store would
then answer with keys the changelog no longer has, and recovery would skip the new changelog
up to the old offset. A store built from a changelog always holds an offset *below* that
changelog's end (the offset of a record in it); one at or past the end, or whose changelog
is gone, came from somewhere else (``is_stale``) and is removed.

Not detected: a store from an earlier broker whose new changelog has since grown past the
store's offset (another worker wrote it while this one was stopped). `tocsin dev`, which
always starts a fresh broker, removes the stores itself before its worker starts.

Two workers on one machine with one ``TOCSIN_DATA_DIR`` must not open the same RocksDB files
(a database is locked by the process that opened it): each worker claims a store directory of
its own (``claim_store_dir``), ``faust`` for the first, ``faust-1``, ``faust-2``... for the
next ones, by an exclusive lock held for the process's life; a worker started again takes the
first one free, and so its own store back.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: the key under which Faust's RocksDB store keeps a partition's changelog offset
OFFSET_KEY = b"__faust\0offset__"
#: a table partition's database directory in Faust's table directory: ``<table>-<partition>.db``
_PARTITION_DB = re.compile(r"^(?P<table>.+)-(?P<partition>\d+)\.db$")


#: the lock of the store directory this process claimed (held open for the process's life)
_claimed: dict[Path, int] = {}


def store_dirs(data_dir: Path) -> list[Path]:
    """Every worker's store directory under ``data_dir`` (``faust``, ``faust-1``, ...)."""
    if not data_dir.is_dir():
        return []
    return sorted(p for p in data_dir.iterdir() if p.is_dir() and re.fullmatch(r"faust(-\d+)?", p.name))


def claim_store_dir(data_dir: Path, limit: int = 64) -> Path:
    """The first of ``data_dir/faust``, ``faust-1``, ... that no other process on this machine
    holds, locked (``flock`` on ``<dir>.lock``) until this process exits; the same one again
    when this process already claimed one."""
    data_dir.mkdir(parents=True, exist_ok=True)
    for path, _ in _claimed.items():
        if path.parent == data_dir.resolve():
            return path
    for n in range(limit):
        path = (data_dir / ("faust" if n == 0 else f"faust-{n}")).resolve()
        fd = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue
        _claimed[path] = fd
        return path
    raise RuntimeError(f"{limit} workers hold store directories in {data_dir}")


def table_dir(store_dir: Path) -> Path:
    """Where a Faust app whose ``datadir`` is ``store_dir`` keeps its RocksDB tables (Faust adds
    ``v<version>/tables``; the app's ``conf.tabledir``)."""
    return store_dir / "v1" / "tables"


def changelog_topic(app_id: str, table: str) -> str:
    """The changelog topic Faust names for ``table`` of the app ``app_id``."""
    return f"{app_id}-{table}-changelog"


def is_stale(persisted: int | None, end: int) -> bool:
    """A partition's store holding up to changelog offset ``persisted`` (None: nothing kept)
    was not built from a changelog partition ending at ``end`` (the next offset to be written;
    0 when the topic is gone): it holds the offset of one of its records, always below."""
    return persisted is not None and persisted >= end


def partition_stores(tables: Path) -> dict[tuple[str, int], Path]:
    """(table name, partition) → its RocksDB directory, of every table partition on disk."""
    out: dict[tuple[str, int], Path] = {}
    if not tables.is_dir():
        return out
    for path in sorted(tables.iterdir()):
        m = _PARTITION_DB.match(path.name)
        if m and path.is_dir():
            out[(m["table"], int(m["partition"]))] = path
    return out


def persisted_offset(path: Path) -> int | None:
    """The changelog offset a partition's RocksDB store holds up to (opened read-only, no lock
    taken); None when it keeps none."""
    from rocksdict import AccessType, Options, Rdict

    db = Rdict(str(path), options=Options(raw_mode=True), access_type=AccessType.read_only())
    try:
        raw = db.get(OFFSET_KEY)
    finally:
        db.close()
    return int(raw) if raw is not None else None


async def changelog_ends(bootstrap: str, security: Mapping[str, Any],
                         partitions: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
    """The true end of each (topic, partition) (infra/kafka.end_offsets); 0 for a topic or
    partition the broker does not have."""
    from aiokafka import AIOKafkaConsumer

    from ..infra.kafka import end_offsets, started, topic_partitions

    c = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None, **security)
    await started(c, bootstrap)
    try:
        ends = dict.fromkeys(partitions, 0)
        # every topic's partitions first: once assigned, the consumer's metadata has only those
        tps = [tp for topic in sorted({t for t, _ in partitions}) for tp in await topic_partitions(c, topic)
               if (topic, tp.partition) in ends]
        if tps:
            for tp, end in (await end_offsets(c, tps)).items():
                ends[(tp.topic, tp.partition)] = end
        return ends
    finally:
        await c.stop()


async def remove_stale_stores(tables: Path, app_id: str, bootstrap: str,
                              security: Mapping[str, Any]) -> list[Path]:
    """Remove every table partition's RocksDB store in ``tables`` (a Faust table directory) that
    ``is_stale`` against its changelog on the broker at ``bootstrap``; the directories removed,
    each logged."""
    stores = partition_stores(tables)
    if not stores:
        return []
    topic_of = {key: (changelog_topic(app_id, key[0]), key[1]) for key in stores}
    ends = await changelog_ends(bootstrap, security, sorted(set(topic_of.values())))
    removed = []
    for key, path in stores.items():
        offset = persisted_offset(path)
        end = ends[topic_of[key]]
        if is_stale(offset, end):
            log.warning("table %s partition %d: the store on disk holds changelog offset %s but the "
                        "changelog %s ends at %d (a broker that started empty, or a changelog made "
                        "again): removing %s, recovery rebuilds it from the changelog",
                        key[0], key[1], offset, topic_of[key][0], end, path)
            shutil.rmtree(path)
            removed.append(path)
    return removed


def remove_all_stores(data_dir: Path) -> bool:
    """Remove every worker's RocksDB table stores under ``data_dir`` (`tocsin dev`, whose broker
    always starts empty); whether there was one. A store directory another process holds is
    left alone."""
    removed = False
    for store in store_dirs(data_dir):
        tables = table_dir(store)
        if not partition_stores(tables):
            continue
        fd = os.open(f"{store}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            continue  # a worker runs on it
        else:
            shutil.rmtree(tables)
            removed = True
        finally:
            os.close(fd)
    return removed
