"""Every table of Tocsin, each backed by a changelog topic so a restarted or rebalanced
worker restores it and decides exactly as before.

| table         | key          | value                                   | kind                 |
|---------------|--------------|-----------------------------------------|----------------------|
| throttle      | fingerprint  | [first alert_id, suppressed count]      | tumbling window (event time), ``throttle_window_s``; a per-type window of another length (routing file ``[throttle.types]``) keyed by its own range |
| deliveries    | delivery_id  | ["sent" / "dead", written at]           | plain                |
| status        | fingerprint  | alert status (active/acknowledged/...)  | global (every worker reads all) |
| escalations   | fingerprint  | its escalation chain (decisions/escalation.ChainState) | plain |
| groups        | group key    | a group's members and flush state (decisions/grouping.GroupState) | plain |
| flapping      | fingerprint (a recovery's: the one it resolves) | flap state: last state, recent change times, the episode | plain (only fingerprints that changed state) |

Neither the status nor the delivery table grows for ever: the sweeps of the lifecycle and
delivery agents delete (and those of the escalation agent and the throttle's flap detection, for
the escalations and flapping tables: ``expired_keys``) what is past its retention (decisions/retention.py) with a tombstone
on the changelog (a null value), which compaction keeps as the key's last word and recovery
applies as a delete; both changelogs are compacted (``cleanup.policy=compact``, Faust's for
a plain table). Each worker deletes only the keys of the partitions it writes.

The status table lives in ``StatusStore`` whatever ``TOCSIN_TABLE_STORE`` says: its contents
are the index ``GET /api/alerts`` answers from (status_index.py), held in memory on every
worker; a start replays its compacted changelog.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import faust
import orjson
from faust.stores.memory import Store as MemoryStore
from faust.stores.rocksdb import Store as RocksDBStore
from faust.tables.globaltable import GlobalTable
from faust.tables.table import Table
from faust.types import TP

from ..decisions.flapping import FlapState
from ..decisions.retention import delivery_expiry
from ..decisions.throttle import WindowState
from ..infra import faust_compat
from ..schemas.codec import dumps
from . import allocator
from .status_index import StatusIndex

log = logging.getLogger(__name__)


class _PartitionEvent:
    __slots__ = ("message", "__weakref__")

    def __init__(self, message: Any) -> None:
        self.message = message


def range_of(ts: float, window_s: int) -> tuple[float, float]:
    """The range of the tumbling window of ``window_s`` at ``ts``, as Faust writes a window's
    (``WindowRange_from_start``: start, start + size - 0.1)."""
    start = float((ts // window_s) * window_s)
    return (start, start + window_s - 0.1)


class ThrottleTable:
    """Event-time access to the windowed throttle table.

    Faust's ``relative_to_field`` needs the event being processed to be Faust's *current
    event* and its value a Faust Record; the throttle reads its partitions with its own
    consumer (agents/throttle.py) and processes validated events in batches, so it names the
    event time and the partition explicitly instead (``ts`` below is the event's
    ``event_timestamp``): the same window arithmetic, the same store, the same changelog
    record in the same partition and the same expiry index as Faust's own ``__setitem__``.

    On a RocksDB store, the throttle's hot reader decides a whole fetch between ``begin`` and
    ``flush``: the states written in between are held here (a read sees them: two alerts of a
    fingerprint in one fetch) and put in the store at ``flush``, one write batch per
    partition, before any changelog record of the fetch is sent (so before the offset persisted
    with the store can pass them). The store's bytes are those Faust's ``__setitem__`` would
    put (tested); reads go to the store's databases directly, with the serializer Faust's would
    use (faust_compat.rocksdb_get). The caller never awaits between ``begin`` and ``flush``:
    nothing else (Faust's expiry, a rebalance) sees the store without the fetch's writes. A
    memory store is written at once: a dict, nothing to gain.
    """

    def __init__(self, wrapper: Any, window_s: int) -> None:
        self.wrapper = wrapper
        self.table = wrapper.table  # the windowed Table under Faust's WindowWrapper
        self._ranges: dict[tuple[float, float], tuple[float, float]] = {}
        self.window_s = window_s
        #: per partition, a stand-in event, kept alive here (Faust holds its current event weakly)
        self._events: dict[int, _PartitionEvent] = {}
        #: whether the store is Faust's RocksDB store (known at the first read or ``begin``)
        self._rocks: bool | None = None
        #: between ``begin`` and ``flush``: key -> (partition, value) of the states written
        self._held: dict[tuple, tuple[int, Any]] | None = None

    def rocks(self) -> bool:
        if self._rocks is None:
            self._rocks = isinstance(self.table.data, RocksDBStore)
        return self._rocks

    def begin(self) -> None:
        """Hold the writes until ``flush`` (a RocksDB store; a memory store is written at once)."""
        if self._held is None and self.rocks():
            self._held = {}

    def flush(self) -> None:
        """Put the writes held since ``begin`` in the store: one write batch per partition."""
        held, self._held = self._held, None
        if not held:
            return
        parts: dict[int, list[tuple[bytes, bytes]]] = {}
        for key, (partition, value) in held.items():
            items = parts.get(partition)
            if items is None:
                items = parts[partition] = []
            items.append((orjson.dumps(key), orjson.dumps(value)))
        data = self.table.data
        for partition, items in parts.items():
            faust_compat.rocksdb_write(data, partition, items)

    def _key(self, fingerprint: str, ts: float) -> tuple:
        return (fingerprint, self.table.window.current(ts))

    def _key_of(self, fingerprint: str, ts: float, window_s: int | None) -> tuple:
        if window_s is None or window_s == self.window_s:
            return self._key(fingerprint, ts)
        return (fingerprint, range_of(ts, window_s))

    def get(self, fingerprint: str, ts: float, window_s: int | None = None,
            partition: int | None = None) -> WindowState | None:
        """The state of the fingerprint's window at ``ts``: the table's own, or, ``window_s``
        another length (a per-type window, decisions/windows.py), that length's window.
        ``partition``: where the fingerprint's states are written, when known (a RocksDB
        store's partition asked first; it does not change the answer)."""
        key = self._key_of(fingerprint, ts, window_s)
        if self._held is not None:
            held = self._held.get(key)
            if held is not None:
                return WindowState.from_value(held[1])
        if self.rocks():
            raw = faust_compat.rocksdb_get(self.table.data, orjson.dumps(key), partition)
            return None if raw is None else WindowState.from_value(orjson.loads(raw))
        return WindowState.from_value(self.table.data.get(key))

    def previous(self, fingerprint: str, ts: float, window_s: int | None = None,
                 partition: int | None = None) -> WindowState | None:
        return self.get(fingerprint, ts - (window_s or self.window_s), window_s, partition)

    def store(self, fingerprint: str, ts: float, state: WindowState, partition: int,
              window_s: int | None = None) -> list[tuple[Any, Any]]:
        """Keep ``state`` for the fingerprint's window(s) and index it for expiry; returns the
        (key, value) changelog records to send to ``partition``. One shared range tuple per
        window, not one per key. ``window_s`` another length than the table's: that window,
        kept until the end of the one after it (its count is shown on that one's first
        notification) plus the table's expiry. Between ``begin`` and ``flush``: held for the
        fetch's write batch."""
        table = self.table
        value = state.to_value()
        # (key, the end its expiry is indexed at: None for its own window's)
        keys: list[tuple[tuple, float | None]]
        if window_s is not None and window_s != self.window_s:
            rng = range_of(ts, window_s)
            rng = self._ranges.setdefault(rng, rng)
            keys = [((fingerprint, rng), rng[1] + window_s)]
        else:
            keys = [((fingerprint, self._ranges.setdefault(rng, rng)), None)
                    for rng in faust_compat.window_ranges(table, ts)]
        held = self._held
        if held is not None:
            for key, _ in keys:
                held[key] = (partition, value)
        else:
            # the RocksDB store picks the partition's database from Faust's current event
            token = faust_compat.set_current_event(self._partition_event(partition))
            try:
                for key, _ in keys:
                    table.data[key] = value
            finally:
                faust_compat.reset_current_event(token)
        for key, at in keys:
            faust_compat.set_key_ttl(table, key, partition, at=at)
        if len(self._ranges) > 4096:
            self._ranges.clear()
        return [(key, value) for key, _ in keys]

    def _partition_event(self, partition: int) -> _PartitionEvent:
        """A stand-in event of ``partition`` (all a store reads of it)."""
        event = self._events.get(partition)
        if event is None:
            event = self._events[partition] = _PartitionEvent(SimpleNamespace(partition=partition))
        return event

    def __len__(self) -> int:
        return len(self.table.data)


def changelog_record(table: Any, key: str, value: Any, partition: int) -> tuple[str, bytes, bytes, int]:
    """``table[key] = value`` for a plain (or global) table, in the store now; returns its
    changelog record (the bytes Faust's own send would write, to the same partition: tested),
    for the caller to send through the Outbox. The caller has set the current event (the
    RocksDB store picks the partition's database from it)."""
    index = getattr(table.data, "data", None)
    if isinstance(index, StatusIndex):
        index.put(key, value, partition)  # it keeps the partition: the sweep's and the tombstone's
    else:
        table.data[key] = value
    return table.changelog_topic.get_topic_name(), orjson.dumps(key), dumps(value), partition


def note_persisted(table: Any, acked: Iterable[Any]) -> None:
    """As Faust does once changelog records are acknowledged: a RocksDB store remembers how
    far the changelog is in it. ``acked``: the Outbox's ``Acked`` of a call (None: refused)."""
    data = table.data
    if isinstance(data, MemoryStore) and not isinstance(data, StatusStore):
        return
    changelog = table.changelog_topic.get_topic_name()
    last: dict[int, int] = {}
    for a in acked:
        if a is not None and a.topic == changelog and a.offset > last.get(a.partition, -1):
            last[a.partition] = a.offset
    for partition, offset in last.items():
        data.set_persisted_offset(TP(changelog, partition), offset)


async def write(outbox: Any, table: Any, key: str, value: Any, partition: int) -> None:
    """``table[key] = value`` with its changelog record sent through ``outbox`` and
    acknowledged by the broker before this returns (``changelog_record``)."""
    acked = await outbox.send_many([changelog_record(table, key, value, partition)])
    note_persisted(table, acked)


async def send_tombstones(app: Any, table: Any, keys: list[tuple[str, int]]) -> int:
    """A null value on the table's changelog for each (key, partition), the key already
    deleted from the store; how many the broker acknowledged. One not acknowledged leaves the
    key's last value in the changelog: a restart brings it back, and the next sweep deletes
    it again."""
    if not keys:
        return 0
    topic = table.changelog_topic.get_topic_name()
    producer = app.producer
    futures = [await producer.send(topic, orjson.dumps(key), None, partition, None, None) for key, partition in keys]
    results = await asyncio.gather(*futures, return_exceptions=True)
    failed = [r for r in results if isinstance(r, BaseException)]
    if failed:
        log.warning("%s: %d of %d tombstones not acknowledged (%s); the next sweep deletes them again",
                    table.name, len(failed), len(keys), failed[0])
    if not isinstance(table.data, MemoryStore):
        last: dict[int, int] = {}
        for r in results:
            if not isinstance(r, BaseException) and r.offset > last.get(r.partition, -1):
                last[r.partition] = r.offset
        for partition, offset in last.items():
            table.data.set_persisted_offset(TP(topic, partition), offset)
    return len(keys) - len(failed)


def owned_partitions(app: Any, topic: str) -> set[int]:
    """The partitions of ``topic`` this worker is assigned as active (the ones it writes)."""
    return {tp.partition for tp in app.assignor.assigned_actives() if tp.topic == topic}


def sweep_interval(retention_s: float) -> float:
    """How often a sweep looks for what is past ``retention_s``: a twentieth of it, from 1 s
    to a minute."""
    return min(60.0, max(1.0, retention_s / 20))


# -- the status table ----------------------------------------------------------------------


class StatusStore(MemoryStore):
    """The status table's store: a ``StatusIndex`` (compact records and the list's columns)
    where Faust's memory store keeps a dict. Every change reaches it: the writer's ``put``
    (tables.changelog_record), the changelog records of other workers and the recovery's
    (``apply_changelog_batch``: a null value deletes).

    It knows, per changelog partition, the last offset it holds (its own writes once the
    broker acknowledged them, ``note_persisted``; and what it applied), as a RocksDB store
    does: a rebalance recovers a partition from there, not from the beginning. Replaying its
    own older records over what it folded since (a batch whose records were not acknowledged
    yet when the rebalance read the end) would set a fingerprint's counts back."""

    data: StatusIndex  # type: ignore[assignment]

    def __post_init__(self) -> None:
        super().__post_init__()
        self.data = StatusIndex()
        self._persisted: dict[TP, int] = {}

    def persisted_offset(self, tp: TP) -> int | None:
        return self._persisted.get(tp)

    def set_persisted_offset(self, tp: TP, offset: int) -> None:
        if offset > self._persisted.get(tp, -1):
            self._persisted[tp] = offset

    def apply_changelog_batch(self, batch: Iterable[Any], to_key: Any, to_value: Any) -> None:
        index = self.data
        last: dict[TP, int] = {}
        held = self._persisted
        for event in batch:
            message = event.message
            if message.offset <= held.get(message.tp, -1):  # held already, or newer (Faust's
                continue  # recovery reads the last persisted record again)
            key = to_key(event.key)
            if message.value is None:
                index.discard(key)
            else:
                index.put(key, to_value(event.value), message.partition)
            last[message.tp] = message.offset
        for tp, offset in last.items():
            self.set_persisted_offset(tp, offset)

    async def on_recovery_completed(self, active_tps: set[TP], standby_tps: set[TP]) -> None:
        """A global table keeps every partition (Faust's memory store drops the keys of the
        partitions that are not active: for a global table, none)."""


class StatusTable(GlobalTable):
    def _new_store_by_url(self, url: Any) -> Any:
        return StatusStore(url, self.app, self, table_name=self.name, key_type=self.key_type,
                           key_serializer=self.key_serializer, value_serializer=self.value_serializer,
                           value_type=self.value_type, loop=self.loop, options=self.options)


def status_index(table: Any) -> StatusIndex:
    return table.data.data  # type: ignore[no-any-return]


# -- the delivery table ----------------------------------------------------------------------

#: a delivery state's written time is rounded up to this (so never early, and one shared
#: value a minute), or to a twentieth of a shorter retention
WRITTEN_STEP_S = 60


def state_of(value: Any) -> str | None:
    """The state ("sent"/"dead") of a delivery table value: ``[state, written]``, or a bare
    state as written before the time was kept."""
    if isinstance(value, tuple | list):
        return value[0] if value else None
    return value  # type: ignore[no-any-return]


def written_of(value: Any) -> int | None:
    if isinstance(value, tuple | list) and len(value) > 1 and isinstance(value[1], int):
        return value[1]
    return None


class DeliveryStates:
    """When each delivery state was written, for its expiry (``delivery_expiry``).

    The value written is ``(state, written)``, ``written`` the epoch second rounded up to the
    minute (``step``): one shared tuple per state and minute in the store, ``["sent",
    1733000040]`` on the changelog. Every key written is listed under (its changelog partition, that minute); a
    sweep takes the lists past the retention, and deletes each key still written at that
    minute (one written again since is in a later list). Recovered and standby records are
    listed by ``on_changelog_event``, a bare state (written before the time was kept) by its
    record's timestamp; a RocksDB store's keys from before the start, by a scan of each
    partition once it is recovered."""

    def __init__(self, retention_s: float) -> None:
        self.retention_s = retention_s
        self._values: dict[tuple[str, int], tuple[str, int]] = {}
        self._lists: dict[tuple[int, int], list[str]] = {}
        #: (written, partition) of every list, earliest first
        self._due: list[tuple[int, int]] = []
        self._scanned: set[int] = set()

    @property
    def retention_s(self) -> float:
        return self._retention_s

    @retention_s.setter
    def retention_s(self, value: float) -> None:
        self._retention_s = value
        self.step = int(max(1, min(WRITTEN_STEP_S, value // 20)))

    def minute(self, t: float) -> int:
        """``t`` rounded up to the step."""
        return -(-int(-(-t // 1)) // self.step) * self.step

    def value(self, state: str, written: int) -> tuple[str, int]:
        v = self._values.get((state, written))
        if v is None:
            v = self._values[(state, written)] = (state, written)
        return v

    def stamp(self, key: str, state: str, partition: int, now: float | None = None) -> tuple[str, int]:
        """The value to write for ``key``'s ``state`` now, its expiry noted."""
        written = self.minute(time.time() if now is None else now)
        self._list(partition, written).append(key)
        return self.value(state, written)

    def _list(self, partition: int, written: int) -> list[str]:
        keys = self._lists.get((partition, written))
        if keys is None:
            keys = self._lists[(partition, written)] = []
            heapq.heappush(self._due, (written, partition))
        return keys

    def canonical(self, value: Any) -> Any:
        """A value read from the changelog as the shared tuple the store keeps."""
        written = written_of(value)
        if written is None:
            return value
        return self.value(value[0], written)

    def note(self, key: str, value: Any, partition: int, timestamp_s: float | None) -> None:
        written = written_of(value)
        if written is None:
            written = self.minute(timestamp_s if timestamp_s else time.time())
        self._list(partition, written).append(key)

    def scan(self, store: Any, partitions: set[int]) -> int:
        """List the keys a RocksDB store held before this start (its recovery replayed only
        the changelog past them); each partition once."""
        n = 0
        for partition in sorted(partitions - self._scanned):
            items = faust_compat.rocksdb_items(store, partition)
            if items is None:  # not a RocksDB store, or no database of this partition
                continue
            self._scanned.add(partition)
            for raw_key, raw_value in items:
                try:
                    key, value = orjson.loads(raw_key), orjson.loads(raw_value)
                except orjson.JSONDecodeError:
                    continue
                self.note(key, value, partition, None)
                n += 1
        if n:
            log.info("deliveries: %d states found on disk, listed for their expiry", n)
        return n

    def forget_partitions(self, partitions: set[int]) -> None:
        self._scanned -= partitions

    def expired(self, data: Any, now: float, owned: set[int], limit: int = 1 << 62) -> list[tuple[str, int]]:
        """Delete from ``data`` (the table's store) the states past the retention, about
        ``limit`` of them (the rest at the next call); the (key, partition) to tombstone:
        those of the ``owned`` partitions (the others' states are deleted here too, without a
        tombstone: their owner writes it)."""
        out: list[tuple[str, int]] = []
        due = self._due
        seen = 0
        while due and seen < limit and delivery_expiry(due[0][0], now, self.retention_s).expired:
            written, partition = heapq.heappop(due)
            keys = self._lists.pop((partition, written), [])
            if len(keys) > limit - seen:  # the rest stays listed, due at once
                self._lists[(partition, written)] = keys[limit - seen:]
                heapq.heappush(due, (written, partition))
                keys = keys[:limit - seen]
            seen += len(keys)
            for key in keys:
                current = data.get(key)
                if current is None:
                    continue
                at = written_of(current)
                if at is not None and at != written:
                    continue  # written again since: listed again, under its later minute
                del data[key]
                if partition in owned:
                    out.append((key, partition))
        for kv in [kv for kv in self._values if delivery_expiry(kv[1], now, self.retention_s).expired]:
            del self._values[kv]
        return out

    def __len__(self) -> int:
        return sum(len(keys) for keys in self._lists.values())


class DeliveriesTable(Table):
    """The delivery table, its states' expiry noted on every changelog record it reads."""

    states: DeliveryStates

    def _to_value(self, v: Any) -> Any:
        return self.states.canonical(v)

    async def on_changelog_event(self, event: Any) -> None:
        message = event.message
        if message.value is not None:
            ts = message.timestamp
            self.states.note(event.key, event.value, message.partition, ts / 1000 if ts else None)
        await super().on_changelog_event(event)

    async def on_recovery_completed(self, active_tps: set[TP], standby_tps: set[TP]) -> None:
        await super().on_recovery_completed(active_tps, standby_tps)
        if not isinstance(self.data, MemoryStore):
            topic = self.changelog_topic.get_topic_name()
            self.states.scan(self.data, {tp.partition for tp in active_tps if tp.topic == topic})

    async def on_rebalance(self, assigned: set[TP], revoked: set[TP], newly_assigned: set[TP],
                           generation_id: int = 0) -> None:
        await super().on_rebalance(assigned, revoked, newly_assigned, generation_id)
        topic = self.changelog_topic.get_topic_name()
        self.states.forget_partitions({tp.partition for tp in revoked if tp.topic == topic})


#: keys a sweep deletes before it lets the event loop go on (and sends their tombstones)
SWEEP_CHUNK = 5_000


def expired_keys(data: Any, expired: Callable[[Any], bool], owned: set[int], partition_of: Callable[[str], int],
                 limit: int = SWEEP_CHUNK) -> list[tuple[str, int]]:
    """Delete from ``data`` (a plain table's store, keyed by fingerprint) the keys of the
    ``owned`` partitions whose value ``expired`` says is past its retention, at most ``limit``;
    the (key, partition) of each, for its tombstone. (The escalations and flapping sweeps.)"""
    out: list[tuple[str, int]] = []
    for key, value in list(data.items()):
        partition = partition_of(key)
        if partition not in owned or not expired(value):
            continue
        del data[key]
        out.append((key, partition))
        if len(out) >= limit:
            break
    return out


async def sweep_deliveries(app: Any, table: Any, now: float | None = None) -> int:
    """Delete the delivery states past their retention, with tombstones for the partitions
    this worker writes, ``SWEEP_CHUNK`` at a time; how many were tombstoned."""
    states: DeliveryStates = table.states
    owned = owned_partitions(app, table.changelog_topic.get_topic_name())
    at = time.time() if now is None else now
    sent = 0
    while True:
        before = len(states)
        keys = states.expired(table.data, at, owned, SWEEP_CHUNK)
        sent += await send_tombstones(app, table, keys)
        if len(states) == before:
            break
    if sent:
        log.info("deliveries: %d states past the %g s retention deleted", sent, states.retention_s)
    return sent


# -- the flapping table ---------------------------------------------------------------------


class FlapTable:
    """The flap state per home fingerprint (decisions/flapping.py), written by the throttle
    agent's hot reader: each write returns its changelog record for the batch's sends, to the
    partition of the event's source, as the throttle table's."""

    def __init__(self, table: Any) -> None:
        self.table = table
        self._events: dict[int, _PartitionEvent] = {}

    def get(self, fingerprint: str) -> FlapState | None:
        return FlapState.from_value(self.table.data.get(fingerprint))

    def store(self, fingerprint: str, state: FlapState, partition: int) -> tuple[str, bytes, bytes, int]:
        event = self._events.get(partition)
        if event is None:
            event = self._events[partition] = _PartitionEvent(SimpleNamespace(partition=partition))
        token = faust_compat.set_current_event(event)  # a RocksDB store's partition database
        try:
            return changelog_record(self.table, fingerprint, state.to_value(), partition)
        finally:
            faust_compat.reset_current_event(token)


@dataclass
class Tables:
    throttle: ThrottleTable
    deliveries: Any
    status: Any
    #: per fingerprint, its escalation chain (agents/escalation.py, its only writer)
    escalations: Any = None
    #: grouping (agents/grouping.py): written only by the grouping agent, keyed like P.groups
    groups: Any = None
    flapping: FlapTable | None = None


def make_tables(app: faust.App, prefix: str, window_s: int, expires_s: int, partitions: int) -> Tables:
    # what the tables keep is bounded; what the C heap keeps free around it is bounded by this
    allocator.tune()
    throttle = app.Table(
        "throttle",
        default=None,
        partitions=partitions,
        key_type=str,
        help="first alert and suppressed count per fingerprint per window",
    ).tumbling(window_s, expires=timedelta(seconds=max(expires_s, window_s * 2)))
    deliveries = DeliveriesTable(
        app, name="deliveries", default=None, beacon=app.tables.beacon, partitions=partitions, key_type=str,
        help="delivery state per delivery_id: a command delivered once is never sent again",
    )
    # until delivery.register sets the retention from the settings: the default's
    deliveries.states = DeliveryStates(expires_s + 2 * 86400)
    app.tables.add(deliveries)
    # global: every worker's web view lists every alert, whichever worker folds it (as
    # app.GlobalTable makes it, with the index for a store)
    status = app.tables.add(StatusTable(
        app, name="status", default=None, beacon=app.tables.beacon, partitions=partitions, key_type=str,
        standby_buffer_size=1, is_global=True, synchronize_all_active_partitions=False,
        # every partition is an "active" one of a global table: Faust's recovery applies what it
        # reads of the other workers' partitions once 1,000 records are buffered (its default),
        # so their statuses would wait; one at a time, as its standby reads (cheap here: a put)
        recovery_buffer_size=1,
        help="alert status per fingerprint (lifecycle)",
    ))
    escalations = app.Table("escalations", default=None, partitions=partitions, key_type=str,
                            help="escalation chain per fingerprint: where it is, stopped or done")
    groups = app.Table("groups", default=None, partitions=partitions, key_type=str,
                       help="members and next flush per alert group (grouping)")
    flapping = app.Table("flapping", default=None, partitions=partitions, key_type=str,
                         help="flap state per fingerprint (a recovery's: the fingerprint it resolves)")
    return Tables(ThrottleTable(throttle, window_s), deliveries, status, escalations=escalations, groups=groups,
                  flapping=FlapTable(flapping))
