"""Every table of Tocsin, each backed by a changelog topic so a restarted or rebalanced
worker restores it and decides exactly as before.

| table         | key          | value                                   | kind                 |
|---------------|--------------|-----------------------------------------|----------------------|
| throttle      | fingerprint  | [first alert_id, suppressed count]      | tumbling window (event time), ``throttle_window_s`` |
| deliveries    | delivery_id  | "sent" / "dead"                         | plain                |
| status        | fingerprint  | alert status (active/acknowledged/...)  | global (every worker reads all) |
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import faust
import orjson
from faust.stores.memory import Store as MemoryStore
from faust.streams import _current_event
from faust.types import TP

from ..decisions.throttle import WindowState
from ..schemas.codec import dumps


class _PartitionEvent:
    __slots__ = ("message", "__weakref__")

    def __init__(self, message: Any) -> None:
        self.message = message


class ThrottleTable:
    """Event-time access to the windowed throttle table.

    Faust's ``relative_to_field`` needs the event being processed to be Faust's *current
    event* and its value a Faust Record; the throttle reads its partitions with its own
    consumer (agents/throttle.py) and processes validated events in batches, so it names the
    event time and the partition explicitly instead (``ts`` below is the event's
    ``event_timestamp``): the same window arithmetic, the same store, the same changelog
    record in the same partition and the same expiry index as Faust's own ``__setitem__``.
    """

    def __init__(self, wrapper: Any, window_s: int) -> None:
        self.wrapper = wrapper
        self.table = wrapper.table  # the windowed Table under Faust's WindowWrapper
        self._ranges: dict[tuple[float, float], tuple[float, float]] = {}
        self.window_s = window_s
        self._events: dict[int, Any] = {}
        self._keep: list[Any] = []

    def _key(self, fingerprint: str, ts: float) -> tuple:
        return (fingerprint, self.table.window.current(ts))

    def get(self, fingerprint: str, ts: float) -> WindowState | None:
        return WindowState.from_value(self.table.data.get(self._key(fingerprint, ts)))

    def previous(self, fingerprint: str, ts: float) -> WindowState | None:
        return self.get(fingerprint, ts - self.window_s)

    def store(self, fingerprint: str, ts: float, state: WindowState, partition: int) -> list[tuple[Any, Any]]:
        """Keep ``state`` for the fingerprint's window(s) and index it for expiry; returns the
        (key, value) changelog records to send to ``partition``. One shared range tuple per
        window, not one per key."""
        table = self.table
        value = state.to_value()
        records = []
        # the RocksDB store picks the partition's database from Faust's current event
        token = _current_event.set(self._partition_event(partition))
        try:
            for rng in table._window_ranges(ts):
                rng = self._ranges.setdefault(rng, rng)
                key = (fingerprint, rng)
                table.data[key] = value
                table._maybe_set_key_ttl(key, partition)
                records.append((key, value))
        finally:
            _current_event.reset(token)
        if len(self._ranges) > 4096:
            self._ranges.clear()
        return records

    def _partition_event(self, partition: int) -> Any:
        """A weak reference to a stand-in event of ``partition`` (all a store reads of it)."""
        ref = self._events.get(partition)
        if ref is None:
            event = _PartitionEvent(SimpleNamespace(partition=partition))
            self._keep.append(event)
            ref = self._events[partition] = weakref.ref(event)
        return ref

    def __len__(self) -> int:
        return len(self.table.data)


async def write(app: Any, table: Any, key: str, value: Any, partition: int) -> None:
    """``table[key] = value`` for a plain (or global) table, with the changelog record handed
    straight to the producer instead of Faust's one-at-a-time send buffer: the same store
    write, the same bytes to the same partition (tested), and, for a RocksDB store, the same
    persisted-offset bookkeeping once the record is acknowledged. The caller has set the
    current event (the RocksDB store picks the partition's database from it)."""
    table.data[key] = value
    topic = table.changelog_topic.get_topic_name()
    fut = await app.producer.send(topic, orjson.dumps(key), dumps(value), partition, None, None)
    if not isinstance(table.data, MemoryStore):
        data = table.data
        tp = TP(topic, partition)
        fut.add_done_callback(lambda f: None if f.cancelled() or f.exception() else
                              data.set_persisted_offset(tp, f.result().offset))


@dataclass
class Tables:
    throttle: ThrottleTable
    deliveries: Any
    status: Any


def make_tables(app: faust.App, prefix: str, window_s: int, expires_s: int, partitions: int) -> Tables:
    throttle = app.Table(
        "throttle",
        default=None,
        partitions=partitions,
        key_type=str,
        help="first alert and suppressed count per fingerprint per window",
    ).tumbling(window_s, expires=timedelta(seconds=max(expires_s, window_s * 2)))
    deliveries = app.Table(
        "deliveries", default=None, partitions=partitions, key_type=str,
        help="delivery state per delivery_id: a command delivered once is never sent again",
    )
    # global: every worker's web view lists every alert, whichever worker folds it
    status = app.GlobalTable(
        "status", default=None, partitions=partitions, key_type=str,
        help="alert status per fingerprint (lifecycle)",
    )
    return Tables(ThrottleTable(throttle, window_s), deliveries, status)
