"""The record agent: ``P.decisions``, ``P.attempts`` and ``P.lifecycle`` into ClickHouse.

Batches by size and time (``TOCSIN_RECORD_BATCH_ROWS`` / ``TOCSIN_RECORD_BATCH_S``), inserts
through the ``Recorder`` (which hands ClickHouse the message bytes to parse), and lets Faust
commit a batch's offsets only after its insert succeeded. ClickHouse unreachable or failing: the Recorder backs off and retries the
same batch (nothing is lost; a retried batch carries the same deduplication token), while
the other agents, delivery included, go on. A malformed message is kept on ``P.dlq`` with
its reason, acknowledged by the broker before its batch's offsets are released.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..core import metrics
from ..decisions.backoff import Backoff, Failure, retry
from ..errors import ConfigError, OutboxStopped, RecordRefused, StoreError, TocsinError
from ..schemas.codec import dumps
from ..schemas.validate import raw_text
from .record_shapes import kind_for_topic
from .recorder import Pipeline, Recorder, Reject
from .runtime import Runtime

if TYPE_CHECKING:
    from ..core.settings import Settings
    from ..infra.clickhouse.store import Store

log = logging.getLogger(__name__)

WRAPPER_SETTING = "TOCSIN_RECORD_STORE_WRAPPER"

#: between the tries of opening the store while ClickHouse does not answer
OPEN_BACKOFF = Backoff(0.5, 30.0, jitter=0.5)


def store_wrapper(s: Settings) -> Callable[[Store], Store] | None:
    """The function ``TOCSIN_RECORD_STORE_WRAPPER`` names (``module:function``), or None when
    unset: the opened store is handed to it, and the Recorder writes through what it returns
    (the integration tests make inserts fail this way: tests/support/faulty_store.py). A name
    that cannot be imported, or is not callable, is a ``ConfigError`` naming the setting."""
    name = s.record_store_wrapper
    if not name:
        return None
    module, _, attr = name.partition(":")
    try:
        found = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(WRAPPER_SETTING, f"cannot import {name}: {exc}") from None
    if not callable(found):
        raise ConfigError(WRAPPER_SETTING, f"{name} is not callable")
    wrap: Callable[[Store], Store] = found
    return wrap


async def open_recorder(rt: Runtime, wrap: Callable[[Store], Store] | None = None) -> Recorder:
    """Open and migrate the store, retrying with backoff until ClickHouse answers; the store,
    passed through ``wrap`` when given, becomes ``rt.store``."""
    from ..infra.clickhouse.store import open_store

    s = rt.settings
    last: str | None = None  # the failure last logged

    def failed(f: Failure) -> None:
        nonlocal last
        if str(f.error) != last:
            log.error("recording waits for ClickHouse (retrying): %s", f.error)
            last = str(f.error)
        metrics.record_failures.inc()

    def open_migrated() -> Store:
        store = open_store(s.clickhouse_dsn)
        store.migrate()
        return store

    store = await retry(lambda: asyncio.to_thread(open_migrated), OPEN_BACKOFF, on_failure=failed,
                        retry_if=lambda exc: isinstance(exc, StoreError))
    if last is not None:
        log.info("ClickHouse reachable again: recording resumes")
    if wrap is not None:
        log.warning("%s: the store is wrapped by %s", WRAPPER_SETTING, s.record_store_wrapper)
        store = wrap(store)
    rt.store = store
    return Recorder.from_settings(store, s, backoff_s=0.2, backoff_max_s=10.0)


def register(rt: Runtime) -> None:
    app, topics, s = rt.app, rt.topics, rt.settings
    names = [topics.decisions.get_topic_name(), topics.attempts.get_topic_name(),
             topics.lifecycle.get_topic_name()]
    source = app.topic(*names, key_serializer="raw", value_serializer="raw", partitions=s.partitions)
    prefix = s.topic_prefix
    holder: dict[str, Recorder] = {}
    wrap = store_wrapper(s)  # a bad name fails here, at start

    opened = asyncio.Event()

    @app.task
    async def _open() -> None:  # open (and migrate) at start, so queries work from the first second
        holder["r"] = await open_recorder(rt, wrap)
        opened.set()

    dlq_name = topics.dlq.get_topic_name()

    def reject_entry(r: Reject, keep_raw: bool = True) -> bytes:
        raw = bytes(r.value) if isinstance(r.value, bytes | bytearray) else dumps(r.value)
        text, enc = raw_text(raw) if keep_raw else ("", "text")
        return dumps({"error": f"record {r.kind}: {r.error}", "kind": r.kind, "raw": text, "raw_encoding": enc,
                      **({} if keep_raw else {"raw_truncated": True, "raw_size": len(raw)})})

    async def recorded(rejects: list[Reject], events: list[Any]) -> None:
        """A batch is in ClickHouse: keep its rejects on the DLQ, then release its offsets, once
        the broker acknowledged the rejects (a stop first leaves the batch uncommitted)."""
        try:
            await keep_rejects(rejects)
        except OutboxStopped as exc:
            log.warning("record: %s", exc)
            return
        for ev in events:
            ev.ack()

    async def keep_rejects(rejects: list[Reject]) -> None:
        if not rejects:
            return
        try:
            await rt.outbox.send_many([(dlq_name, None, reject_entry(r), None) for r in rejects])
        except RecordRefused as exc:  # too large with their bytes: kept without them
            log.error("%d rejected message(s) refused for good on the DLQ (%s); kept without their bytes",
                      len(exc.refused), exc)
            try:
                await rt.outbox.send_many([(dlq_name, None, reject_entry(rejects[i], keep_raw=False), None)
                                           for i in exc.refused])
            except RecordRefused:
                log.exception("rejected messages could not be kept on the DLQ at all")

    @app.agent(source, name=f"{prefix}.record", concurrency=1)
    async def record(stream: Any) -> None:
        # one batch is checked while the one before is inserted (Pipeline); take_events acks a
        # batch when it moves on, so each message gets one more reference here, released once
        # its batch is in ClickHouse: offsets stay uncommitted until then
        await opened.wait()
        recorder = holder["r"]
        pipeline = Pipeline(recorder, recorded)
        try:
            async for events in stream.take_events(s.record_batch_rows, within=s.record_batch_s):
                batch = []
                for ev in events:
                    ev.message.incref()
                    kind = kind_for_topic(ev.message.topic, prefix)
                    if kind is not None:
                        batch.append((kind, ev.value))
                before, failures = recorder.rows_inserted, recorder.failures
                try:
                    await pipeline.put(batch, events)
                except TocsinError:  # only with max_retries: that batch stays uncommitted
                    log.exception("recording failed")
                metrics.record_failures.inc(recorder.failures - failures)
                metrics.recorded_rows.labels("all").inc(recorder.rows_inserted - before)
        finally:
            pipeline.cancel()  # at shutdown: the batch under way is read again
