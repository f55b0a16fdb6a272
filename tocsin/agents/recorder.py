"""Batching topic messages into ClickHouse: the ``Recorder`` (no Faust in here).

One batch at a time (the rebuild from the topics, ``streams/rebuild.py``)::

    recorder = Recorder(store, batch_rows=settings.record_batch_rows,
                        batch_s=settings.record_batch_s)
    rejects = await recorder.record_batch([("decisions", value), ("attempts", value2)])
    # every row is now in ClickHouse; put each reject on a dead-letter topic, then commit

The record agent drives it through a ``Pipeline`` instead: the values of ``P.decisions``,
``P.attempts`` and ``P.lifecycle`` of one batch are checked while the batch before is being
inserted, and a batch's offsets are committed only once it is in ClickHouse. Or, event by
event: ``add(kind, value)`` (returns a ``Reject`` for a malformed message),
``if recorder.due(): await recorder.flush()``.

ClickHouse parses the messages itself: a message that passes a strict check in C
(``record_shapes.json_id``, msgspec: the fields a row needs, of the right types, numbers
in range; the views check UUIDs and timestamps in canonical text) is kept as its bytes,
and a batch's messages go in one ``INSERT ... FORMAT JSONEachRow`` into the table's
``*_json`` Null table, whose materialized view writes the row
(``infra/clickhouse/002_json_ingest.sql``). Every other message is turned into a row in
Python (``record_rows.row_for``: the same shape, one builder per kind). Both ways give the
same row for a message, ``details`` kept as the JSON text the message holds
(tests/integration/test_clickhouse_json.py). A store without ``insert_json`` gets rows only.

Guarantees:

- a malformed message never raises: it becomes a ``Reject`` (kind, value, error); should
  ClickHouse refuse a checked batch all the same (``DataRefusedError``), its messages take
  the Python row path, which rejects the bad one and inserts the others; rows the driver
  or ClickHouse refuse as data are halved until each refused row is alone, which becomes a
  reject (never a batch retried forever);
- ``flush`` returns only when every pending row is inserted; on a ``StoreError`` it keeps
  the batch, backs off exponentially (capped) and tries again, so no row is ever lost
  (``max_retries`` makes it give up with ``StoreError``, the rows still pending);
- each table's batch carries an ``insert_deduplication_token`` made from its ids (and the
  table it goes to), so a retried batch is dropped by ClickHouse, materialized views
  included; the ReplacingMergeTree tables collapse rows of a replayed topic by id.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from ..decisions.backoff import Backoff, Failure, retry
from ..errors import DataRefusedError, StoreError
from .record_rows import RecordError, row_for
from .record_shapes import JSON_TABLES, KINDS, TABLES, json_id, wire

log = logging.getLogger(__name__)

_ID_COLUMN: dict[str, str] = dict(TABLES.values())

#: The interpreter's switch interval in a worker (``sys.setswitchinterval``, set by
#: ``run_worker``). Inserts run in a thread that gives up Python's lock at each system call
#: (clickhouse-connect's chdb backend writes the batch to a file and the engine reads it)
#: and then waits for it, up to the switch interval, while the event loop runs Python: at
#: the default 5 ms a 30 ms insert of 10,000 rows took 66-69 ms next to a busy loop, at
#: 0.5 ms 38-44 ms. A thread-less worker never switches, whatever the interval.
SWITCH_INTERVAL_S = 0.0005


@dataclass(frozen=True)
class Reject:
    """A message the recorder could not turn into a row, for a dead-letter topic."""

    kind: str
    value: Any
    error: str


def batch_token(table: str, ids: Iterable[Any]) -> str:
    """Deterministic ``insert_deduplication_token``: the same rows give the same token."""
    h = hashlib.sha256(table.encode())
    keys = sorted(map(str, ids))
    if keys:
        h.update(("\n" + "\n".join(keys)).encode())
    return f"{table}:{h.hexdigest()[:32]}"


# --------------------------------------------------------------------------- recorder


class Recorder:
    """Batches rows per table and inserts them, by size and by time, never losing one."""

    def __init__(
        self,
        store: Any,
        *,
        batch_rows: int = 10_000,
        batch_s: float = 1.0,
        backoff_s: float = 0.5,
        backoff_max_s: float = 30.0,
        max_retries: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        self.store = store
        self.batch_rows = batch_rows
        self.batch_s = batch_s
        #: between the tries of an insert that failed in a way that may pass
        self.backoff = Backoff(backoff_s, backoff_max_s, jitter=0.5)
        self.max_retries = max_retries
        self._clock = clock
        self._sleep = sleep
        #: does the store take JSON messages (``insert_json``)? otherwise rows only
        self.parses_json = callable(getattr(store, "insert_json", None))
        self._pending: dict[str, list[dict[str, Any]]] = {TABLES[k][0]: [] for k in KINDS}
        # the values the pending rows were built from, row for row (for a reject, should
        # the driver or ClickHouse refuse a row)
        self._pending_values: dict[str, list[Any]] = {TABLES[k][0]: [] for k in KINDS}
        # per kind, the checked messages for ClickHouse to parse: their bytes, record ids
        # and the values as given (for a reject, should ClickHouse refuse the batch)
        self._json: dict[str, _JsonBatch] = {k: _JsonBatch() for k in KINDS}
        self._oldest: float | None = None
        self._lock = asyncio.Lock()
        self._last_error: str | None = None
        self.rejects: list[Reject] = []
        # counters
        self.rows_inserted = 0
        self.batches_inserted = 0
        self.failures = 0
        self.rows_rejected = 0
        self.json_refused = 0

    @classmethod
    def from_settings(cls, store: Any, settings: Any, **kw: Any) -> Recorder:
        """Batch size and time from ``TOCSIN_RECORD_BATCH_ROWS`` / ``TOCSIN_RECORD_BATCH_S``."""
        return cls(store, batch_rows=settings.record_batch_rows, batch_s=settings.record_batch_s, **kw)

    # -- rows

    def rows_for(self, kind: str, value: Any) -> tuple[str, dict[str, Any]]:
        """The (table, row) of one topic message (``record_rows.row_for``); ``RecordError``
        when it is malformed."""
        return row_for(kind, value)

    def add(self, kind: str, value: Any) -> Reject | None:
        """Queue one message; a malformed one is returned (and kept in ``rejects``)."""
        if self.parses_json:
            raw = value if type(value) is bytes else wire(value)
            if raw is not None:
                rid = json_id(kind, raw)
                if rid is not None:
                    if self._oldest is None:
                        self._oldest = self._clock()
                    batch = self._json[kind]
                    batch.raw.append(raw)
                    batch.ids.append(rid)
                    batch.values.append(value)
                    return None
        return self._add_row(kind, value)

    def _add_row(self, kind: str, value: Any) -> Reject | None:
        try:
            table, row = self.rows_for(kind, value)
        except RecordError as exc:
            return self._reject(kind, value, str(exc))
        except Exception as exc:  # never let one message stop the agent
            log.exception("record: unexpected error on a %s message", kind)
            return self._reject(kind, value, f"{type(exc).__name__}: {exc}"[:500], logged=True)
        if self._oldest is None:
            self._oldest = self._clock()
        self._pending[table].append(row)
        self._pending_values[table].append(value)
        return None

    def _reject(self, kind: str, value: Any, error: str, logged: bool = False) -> Reject:
        reject = Reject(kind, value, error)
        self.rejects.append(reject)
        self.rows_rejected += 1
        if not logged:
            log.warning("record: rejected a %s message: %s", kind, reject.error)
        return reject

    def take_rejects(self) -> list[Reject]:
        """The rejects collected so far, emptied."""
        out, self.rejects = self.rejects, []
        return out

    # -- batching

    @property
    def pending(self) -> int:
        return sum(len(rows) for rows in self._pending.values()) + sum(len(b.raw) for b in self._json.values())

    def due(self, now: float | None = None) -> bool:
        """True when about ``batch_rows`` rows wait, or the oldest waited ``batch_s``."""
        n = self.pending
        if n == 0:
            return False
        if n >= self.batch_rows:
            return True
        now = self._clock() if now is None else now
        return self._oldest is not None and now - self._oldest >= self.batch_s

    async def flush(self) -> int:
        """Insert every pending row; return how many. Retries until done (see module doc)."""
        async with self._lock:
            total = 0
            for kind in KINDS:
                total += await self._flush_json(kind)
                table = TABLES[kind][0]
                rows, values = self._pending[table], self._pending_values[table]
                if not rows:
                    continue
                self._pending[table], self._pending_values[table] = [], []
                try:
                    total += await self._insert_rows(kind, table, rows, values)
                except BaseException:
                    self._pending[table] = rows + self._pending[table]
                    self._pending_values[table] = values + self._pending_values[table]
                    raise
            if self.pending == 0:
                self._oldest = None
            return total

    async def _insert_rows(self, kind: str, table: str, rows: list[dict[str, Any]], values: list[Any],
                           top: bool = True) -> int:
        """Insert rows; returns how many. Rows refused as data (``DataRefusedError``: the
        same rows would be refused again) are halved until each refused row is alone: it
        becomes a reject with its message, the others are inserted. A builder's bug thus
        costs the messages it touches, never the agent's progress."""
        try:
            column = _ID_COLUMN[table]
            await self._insert(table, len(rows), lambda: batch_token(table, (r[column] for r in rows)),
                               self.store.insert, table, rows)
            return len(rows)
        except DataRefusedError as exc:
            if len(rows) == 1:
                self._reject(kind, values[0], f"ClickHouse refused its row: {exc}"[:500])
                return 0
            if top:
                log.warning("record: %d rows refused by %s, looking for the refused ones: %s", len(rows), table, exc)
        mid = len(rows) // 2
        return (await self._insert_rows(kind, table, rows[:mid], values[:mid], top=False)
                + await self._insert_rows(kind, table, rows[mid:], values[mid:], top=False))

    async def _flush_json(self, kind: str) -> int:
        """Insert the kind's checked messages; if ClickHouse refuses them, queue their rows."""
        batch = self._json[kind]
        if not batch.raw:
            return 0
        self._json[kind] = _JsonBatch()
        table = JSON_TABLES[kind]
        try:
            await self._insert(table, len(batch.raw), lambda: batch_token(table, batch.ids),
                               self.store.insert_json, table, batch.raw)
        except DataRefusedError as exc:
            # the checks let through something ClickHouse cannot parse: nothing was written
            # (one block); build these rows here, rejecting the bad message with its reason
            self.json_refused += 1
            log.warning("record: ClickHouse refused %d checked %s messages, building their rows instead: %s",
                        len(batch.raw), kind, exc)
            for value in batch.values:
                self._add_row(kind, value)
            return 0
        except BaseException:
            self._json[kind] = batch.merge(self._json[kind])
            raise
        return len(batch.raw)

    async def record_batch(self, events: Iterable[tuple[str, Any]]) -> list[Reject]:
        """Queue ``(kind, value)`` events and flush; returns once they are durably inserted.

        Returns every reject collected since the last ``take_rejects`` (this batch's
        malformed messages), for the caller to put on a dead-letter topic before committing.
        """
        for kind, value in events:
            self.add(kind, value)
        await self.flush()
        return self.take_rejects()

    async def _insert(self, table: str, n: int, token_of: Callable[[], str], call: Callable[..., Any],
                      *args: Any) -> None:
        """``call(*args, token)`` in a thread until it succeeds (backing off on StoreError);
        a ``DataRefusedError`` is raised at once (the same data would be refused again).
        The batch's token is computed once, in the thread too: sorting and hashing its ids
        then overlaps the checks of the next batch instead of delaying this insert."""
        token: list[str] = []

        def send() -> None:
            if not token:
                token.append(token_of())
            call(*args, token[0])

        tries = 0

        def failed(f: Failure) -> None:
            nonlocal tries
            tries = f.failures
            self.failures += 1
            if str(f.error) != self._last_error:
                log.warning("record: insert of %d rows into %s failed, retrying: %s", n, table, f.error)
                self._last_error = str(f.error)

        await retry(lambda: asyncio.to_thread(send), self.backoff, on_failure=failed, max_retries=self.max_retries,
                    retry_if=lambda exc: isinstance(exc, StoreError) and not isinstance(exc, DataRefusedError),
                    sleep=self._sleep)
        if self._last_error is not None:
            log.info("record: inserts into ClickHouse work again (after %d failed tries)", tries)
            self._last_error = None
        self.rows_inserted += n
        self.batches_inserted += 1
        log.debug("record: inserted %d rows into %s", n, table)

    def stats(self) -> dict[str, int]:
        return {
            "rows_inserted": self.rows_inserted,
            "batches_inserted": self.batches_inserted,
            "failures": self.failures,
            "rows_rejected": self.rows_rejected,
            "pending": self.pending,
        }


class Pipeline:
    """Checks one batch while the one before is being inserted (the insert runs in a thread,
    and ClickHouse parses without Python's lock): ``await put(events, token)`` queues the
    batch's messages, waits for the previous batch's insert, and starts this one's; once a
    batch is inserted, ``done(rejects, token)`` runs, in batch order (the caller commits
    there: a batch's offsets go only after a flush that began after its messages were
    queued). ``drain()`` waits for the last one. A failed insert is raised by the next
    ``put`` or ``drain``; its batch's ``done`` never runs (nothing committed: read again)."""

    def __init__(self, recorder: Recorder, done: Callable[[list[Reject], Any], Awaitable[None]]) -> None:
        self.recorder = recorder
        self.done = done
        self._inserting: asyncio.Task[None] | None = None

    async def put(self, events: Iterable[tuple[str, Any]], token: Any = None) -> None:
        for kind, value in events:
            self.recorder.add(kind, value)
        await self.drain()
        self._inserting = asyncio.create_task(self._insert(token))
        await asyncio.sleep(0)  # the insert starts (its rows taken, sent to a thread) before the caller goes on

    async def drain(self) -> None:
        task, self._inserting = self._inserting, None
        if task is not None:
            await task

    def cancel(self) -> None:
        """Stop the insert under way (at shutdown): its batch is not committed, read again."""
        task, self._inserting = self._inserting, None
        if task is not None:
            task.cancel()

    async def _insert(self, token: Any) -> None:
        await self.recorder.flush()
        await self.done(self.recorder.take_rejects(), token)


@dataclass
class _JsonBatch:
    raw: list[bytes] = field(default_factory=list)
    ids: list[Any] = field(default_factory=list)
    values: list[Any] = field(default_factory=list)

    def merge(self, later: _JsonBatch) -> _JsonBatch:
        """This batch followed by ``later`` (messages added while this one was inserting)."""
        return _JsonBatch(self.raw + later.raw, self.ids + later.ids, self.values + later.values)


__all__ = ["SWITCH_INTERVAL_S", "Pipeline", "Recorder", "Reject", "batch_token"]
