"""The one seam between Tocsin and the insides of Faust (faust-streaming) and aiokafka.

Everything Tocsin does to these two libraries beyond their public API is in this module and
nowhere else: the class-level patches (installed by ``install``, ``keep_paused``) and every
read or call of a private attribute (the small functions below, which callers use instead of
touching the attribute). Each says what it buys. ``tests/unit/infra/test_faust_compat.py`` holds a
canary per patched or reached attribute (it exists, has the signature or type relied on), so
that a release that changes one under Tocsin fails a unit test rather than a worker; and a
worker logs a warning at start when the installed versions are not the tested ones
(``check_versions``, ``TESTED``).

It lives in ``infra`` because ``core`` (the tables), ``agents`` (the readers, the outbox) and
``streams`` (the app, the web views) all reach through it (tests/unit/test_layers.py).

Patches::

    ProducerBuffer.max_messages                  roomier_producer_buffer
    AIOKafkaConsumerThread._create_worker_consumer
      + AIOKafkaConsumer._fetch_max_wait_ms      worker_fetch_max_wait
    AIOKafkaConsumerThread._highwaters           true_highwaters (embedded broker only)
    Fetcher._proc_fetch_request
      + Fetcher._fetch_max_wait_ms, ._records,
        ._client._client_id (named in the log)   starved_fetch_wait
    Consumer.resume_partitions
      + AIOKafkaConsumerThread.verify_event_path keep_paused

Private reaches::

    Producer._ensure_producer                    aiokafka_producer
    Consumer._commit_offsets                     commit_offsets
    Consumer._read_offset                        read_offsets
    faust.streams._current_event                 set_current_event / reset_current_event
    Collection._window_ranges                    window_ranges
    Collection._maybe_set_key_ttl                set_key_ttl
    rocksdb Store._dbs, ._visible_items          rocksdb_items
    rocksdb Store._dbs, ._db_for_partition       rocksdb_get, rocksdb_write
    AIOKafkaProducer._max_request_size           max_request_size
    AIOKafkaConsumer._client.force_metadata_update  refresh_metadata
    AIOKafkaClient._security_protocol            security_protocol

Where aiokafka has a public API Tocsin uses it: ``AIOKafkaProducer.partitions_for`` (not the
client's ``_wait_on_metadata``), ``AIOKafkaConsumer.position`` (not its ``_subscription``),
``assignment()``, ``highwater()``, ``end_offsets()``.
"""

from __future__ import annotations

import asyncio
import contextvars
import heapq
import logging
import types
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from importlib import metadata
from typing import Any

from faust.streams import _current_event

from .broker import CLUSTER_ID

log = logging.getLogger(__name__)

#: the versions this module (and its canaries) was written and tested against
TESTED: dict[str, str] = {"faust-streaming": "0.15.3", "aiokafka": "0.14.0"}

#: (class, attribute) -> the library's own value, taken before the first patch: patching again
#: (a second app in one process, a test) wraps the original, never a patch
_ORIGINALS: dict[tuple[type, str], Any] = {}


def _patch(cls: type, name: str, make: Callable[[Any], Any]) -> None:
    """Set ``cls.name`` to ``make(original)``."""
    if (cls, name) not in _ORIGINALS:
        _ORIGINALS[(cls, name)] = cls.__dict__[name]
    setattr(cls, name, make(_ORIGINALS[(cls, name)]))


def _unpatch(cls: type, name: str) -> None:
    """Give ``cls.name`` back its library value (nothing if it was never patched)."""
    original = _ORIGINALS.pop((cls, name), None)
    if original is not None:
        setattr(cls, name, original)


# ------------------------------------------------------------------------ the versions


def installed_versions() -> dict[str, str | None]:
    """The installed version of each library of ``TESTED`` (None: not installed)."""
    out: dict[str, str | None] = {}
    for name in TESTED:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def check_versions(installed: Mapping[str, str | None] | None = None) -> list[str]:
    """Log a warning for each library whose installed version is not the tested one, and
    return the warnings (empty: all as tested). The worker starts either way."""
    found = installed_versions() if installed is None else installed
    warnings = []
    for name, tested in TESTED.items():
        have = found.get(name)
        if have != tested:
            warnings.append(
                f"{name} {have or '(not installed)'} is installed but Tocsin is tested with {name} {tested}: "
                "its patches and private reaches of Faust and aiokafka (tocsin/infra/faust_compat.py) "
                "may no longer hold; run tests/unit/infra/test_faust_compat.py")
    for w in warnings:
        log.warning("%s", w)
    return warnings


# ------------------------------------------------------------------------ the patches


def install(fetch_max_wait_ms: int, bootstrap: str, security: Mapping[str, Any], embedded: bool | None) -> None:
    """Every class-level patch a worker's Faust app needs (streams/app.py, before the app is
    made); ``keep_paused`` is installed by the readers that need it (agents/reader.py)."""
    fast_drain()
    event_class_once()
    roomier_producer_buffer()
    worker_fetch_max_wait(fetch_max_wait_ms)
    true_highwaters(bootstrap, security, embedded)
    starved_fetch_wait()


@types.coroutine
def _resume(coro: Any, waiting: Any) -> Any:
    """Drive a coroutine that already ran up to its first suspension (on ``waiting``)."""
    while True:
        try:
            value = yield waiting
        except BaseException as exc:  # cancelled or thrown into: pass it on
            try:
                waiting = coro.throw(exc)
            except StopIteration as stop:
                return stop.value
        else:
            try:
                waiting = coro.send(value)
            except StopIteration as stop:
                return stop.value


async def _continued(coro: Any, waiting: Any) -> Any:
    return await _resume(coro, waiting)


def fast_drain() -> None:
    """``Consumer.wait_first`` (mode's ``Service.wait_first``, as Faust's consumer has it).

    Buys: Faust's consumer hands each record to the agents with
    ``wait_first(callback(message), suspend_flow.wait())``: four tasks and an
    ``asyncio.wait`` per record (about 20 µs here), so that a rebalance can interrupt a
    callback blocked on flow control or a full buffer. Almost every callback completes without
    blocking: run it directly up to its first suspension, and only when it does suspend hand
    the rest to the original ``wait_first``, with the same semantics."""
    from faust.transport.consumer import Consumer
    from mode.services import Service, WaitResults

    def make(original: Any) -> Any:
        async def wait_first(self: Any, *coros: Any, timeout: Any = None) -> Any:
            if timeout is None and len(coros) == 2 and asyncio.iscoroutine(coros[0]):
                coro, other = coros
                try:
                    waiting = coro.send(None)
                except StopIteration as stop:
                    if asyncio.iscoroutine(other):
                        other.close()
                    return WaitResults([coro], [stop.value], False)
                except BaseException:
                    if asyncio.iscoroutine(other):
                        other.close()
                    raise
                return await original(self, _continued(coro, waiting), other)
            return await original(self, *coros, timeout=timeout)

        return wait_first

    _ORIGINALS.setdefault((Consumer, "wait_first"), Service.wait_first)  # Consumer inherits it
    _patch(Consumer, "wait_first", make)


def event_class_once() -> None:
    """``App.create_event``.

    Buys: Faust makes the event of every record its consumer hands a stream with
    ``self.conf.Event(...)``, and ``conf.Event`` is a Symbol setting resolved by
    ``symbol_by_name`` at each access: about 3 % of a worker's time in the pipeline benchmark,
    where Faust's consumer reads every decision for the lifecycle agent. The class is resolved
    once per app, at its first event (Tocsin sets no ``Event`` class: Faust's own)."""
    from faust.app.base import App

    def make(original: Any) -> Any:
        def create_event(self: Any, key: Any, value: Any, headers: Any, message: Any) -> Any:
            cls = self.__dict__.get("_tocsin_event_class")
            if cls is None:
                cls = self.__dict__["_tocsin_event_class"] = self.conf.Event
            return cls(self, key, value, headers, message)

        return create_event

    _patch(App, "create_event", make)


def roomier_producer_buffer(max_messages: int = 2000) -> None:
    """``ProducerBuffer.max_messages`` (a class attribute, Faust: 100).

    Buys: table writes go through Faust's producer buffer (``send_soon``), drained one message
    at a time by a background task. Past ``max_messages`` the conductor stops handing records
    to every agent and flushes the buffer with a ``wait_for`` per message; under a burst of
    notifications the delivery and status tables' changelog writes crossed 100 all the time
    and stalled every agent. A larger bound keeps the drain in the background; it still
    bounds the buffer."""
    from faust.transport.producer import ProducerBuffer

    _patch(ProducerBuffer, "max_messages", lambda original: max_messages)


def worker_fetch_max_wait(fetch_max_wait_ms: int) -> None:
    """``AIOKafkaConsumerThread._create_worker_consumer``, and the ``_fetch_max_wait_ms`` of the
    ``AIOKafkaConsumer`` it returns (read by aiokafka when the consumer starts its fetcher).

    Buys: Faust 0.15 hard-codes ``fetch_max_wait_ms=1500`` for its worker consumer; on the
    embedded broker a fetch that touches paused or idle partitions waits that long, which put
    1.5 s on every hop through Faust's consumer. Tocsin's setting (``background_fetch_max_wait_ms``)
    applies instead."""
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

    def make(original: Any) -> Any:
        def _create_worker_consumer(self: Any, transport: Any) -> Any:
            consumer = original(self, transport)
            consumer._fetch_max_wait_ms = fetch_max_wait_ms  # noqa: SLF001
            return consumer

        return _create_worker_consumer

    _patch(AIOKafkaConsumerThread, "_create_worker_consumer", make)


def starved_fetch_wait() -> None:
    """``Fetcher._proc_fetch_request`` (every aiokafka consumer's fetcher in the process):
    after each fetch response, whether it was *starved* (no partition came back with records
    while the broker's high watermark of one lies past the offset fetched), and the fetcher's
    ``_fetch_max_wait_ms`` for its next fetch as ``infra/fetchwait.FetchWait`` decides it.

    Buys: Tansu's memory storage answers a fetch with what it listed of the partition before
    the fetch's wait ran out; once a partition holds more record batches than it lists in the
    wait, a consumer at its end was never answered again, and the worker stalled with its
    records on the broker (the soak's stall after 55,000–75,000 alerts, #19). The starved
    fetcher's wait doubles until the broker answers (and halves back after 30 s without a
    starved response). Against Kafka no fetch is ever starved and nothing changes. Idle (no
    records, none waiting) for a while, a fetcher waits longer (``FetchWait.idle_ms``): idle
    readers fetching every 10 ms kept an idle worker at 21 % of a core and its broker at 32 %
    (11 % and 14 % since)."""
    import time

    from aiokafka.consumer.fetcher import Fetcher
    from aiokafka.structs import TopicPartition

    from .fetchwait import FetchWait

    def verdict(fetcher: Any, assignment: Any, request: Any, since_ms: int) -> tuple[bool, bool]:
        """(starved, idle) of the response just handled: no records with some waiting past the
        offset fetched, or no records and none waiting; (False, False) when it had records."""
        if not assignment.active:
            return False, False
        lagging = False
        for topic, partitions in request.topics:
            for part in partitions:
                tp = TopicPartition(topic, part[0])
                if tp in fetcher._records:  # noqa: SLF001
                    return False, False  # the broker answered with records
                state = assignment.state_value(tp)
                if state is None or not state.has_valid_position or state.position != part[1]:
                    continue
                # answered in this response (timestamp) with its high watermark past the offset
                if (state.timestamp or 0) >= since_ms and (state.highwater or 0) > part[1]:
                    lagging = True
        return lagging, not lagging

    def make(original: Any) -> Any:
        async def _proc_fetch_request(self: Any, assignment: Any, node_id: Any, request: Any) -> Any:
            since_ms = int(1000 * time.time())
            result = await original(self, assignment, node_id, request)
            wait = self.__dict__.get("_tocsin_wait")
            if wait is None:
                wait = self._tocsin_wait = FetchWait(self._fetch_max_wait_ms)
            raised = wait.wait_ms
            starved, idle = verdict(self, assignment, request, since_ms)
            after = wait.observe(starved, time.monotonic(), idle=idle)
            if after != self._fetch_max_wait_ms:
                self._fetch_max_wait_ms = after
                if wait.wait_ms > self.__dict__.get("_tocsin_peak", raised):  # starvation's new high: say it once
                    self._tocsin_peak = wait.wait_ms
                    log.warning("fetches came back empty with records waiting past the position (a broker "
                                "answering only what it lists within the fetch's wait: the embedded broker as "
                                "its partitions fill); consumer %s: fetch wait now %d ms",
                                getattr(self._client, "_client_id", "?"), after)
                else:
                    log.debug("consumer %s: fetch wait now %d ms", getattr(self._client, "_client_id", "?"), after)
            return result

        return _proc_fetch_request

    _patch(Fetcher, "_proc_fetch_request", make)


#: the cluster id the embedded broker answers with (Tansu's default): how a worker left to
#: detect it (TOCSIN_KAFKA_EMBEDDED unset) knows it
EMBEDDED_CLUSTER_ID = CLUSTER_ID


async def cluster_id(bootstrap: str, security: Mapping[str, Any]) -> str | None:
    """The broker's cluster id (its Metadata answer, through the public admin API)."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **security)
    await admin.start()
    try:
        return (await admin.describe_cluster()).get("cluster_id")
    finally:
        await admin.close()


def true_highwaters(bootstrap: str, security: Mapping[str, Any], embedded: bool | None) -> None:
    """``AIOKafkaConsumerThread._highwaters``, on the embedded broker only.

    Buys: the embedded broker (Tansu) answers ListOffsets(latest) with the end of a
    partition's last record batch's *first* record, so Faust's table recovery, which reads
    changelogs up to that "highwater", would stop short of the last batch (state lost on
    restart) and its consistency check would crash the worker. Recovery asks for the true high
    watermark instead: the larger of ListOffsets and a fetch response's watermark
    (infra/kafka.end_offsets).

    ``embedded``: TOCSIN_KAFKA_EMBEDDED. False: Faust's own (no patch); True: the fix; None:
    the first call asks the broker its cluster id (``EMBEDDED_CLUSTER_ID``: the fix, else
    Faust's own from then on)."""
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

    if embedded is False:
        _unpatch(AIOKafkaConsumerThread, "_highwaters")
        return
    known: list[bool] = [] if embedded is None else [True]

    def make(original: Any) -> Any:
        async def _highwaters(self: Any, partitions: list[Any]) -> Any:
            listed = dict(await original(self, partitions))
            if self.consumer.in_transaction or not partitions:
                return listed
            if not known:
                try:
                    cid = await cluster_id(bootstrap, security)
                except Exception:
                    log.warning("could not ask the broker its cluster id; reading the true end offsets",
                                exc_info=True)
                    cid = EMBEDDED_CLUSTER_ID
                known.append(cid == EMBEDDED_CLUSTER_ID)
                log.info("the broker's cluster id is %r: %s", cid,
                         "the embedded broker, table recovery reads the true end offsets" if known[0]
                         else "not the embedded broker, table recovery reads ListOffsets")
            if not known[0]:
                return listed
            return await _true_ends(bootstrap, security, partitions, listed)

        return _highwaters

    _patch(AIOKafkaConsumerThread, "_highwaters", make)


async def _true_ends(bootstrap: str, security: Mapping[str, Any], partitions: list[Any],
                     listed: dict[Any, Any]) -> dict[Any, Any]:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from .kafka import end_offsets

    probe = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, **security)
    try:
        await probe.start()
        tps = [TopicPartition(tp.topic, tp.partition) for tp in partitions]
        true = await end_offsets(probe, tps)
    except Exception:
        log.warning("could not probe the true end offsets; using the broker's", exc_info=True)
        return listed
    finally:
        await probe.stop()
    for tp in partitions:
        hw = true.get(TopicPartition(tp.topic, tp.partition))
        if hw is not None and (listed.get(tp) is None or hw > listed[tp]):
            listed[tp] = hw
    return listed


#: per Faust app, the topics its own consumer never fetches (read by agents/reader.py's readers)
_hot_topics: weakref.WeakKeyDictionary[Any, frozenset[str]] = weakref.WeakKeyDictionary()


def hot_topics(app: Any) -> frozenset[str]:
    return _hot_topics.get(app, frozenset())


def keep_paused(app: Any, topics: frozenset[str]) -> None:
    """``Consumer.resume_partitions`` and ``AIOKafkaConsumerThread.verify_event_path``.

    Buys: the hot topics are read by Tocsin's own aiokafka readers (agents/reader.py), in step
    with Faust's group. Faust still assigns them (co-partitioned with the tables) and its
    consumer would fetch them too when recovery resumes the partitions: ``topics`` (added to
    those of earlier calls for ``app``) stay paused in Faust's consumer. Nor does its liveness
    check report them as a stream that never started."""
    from faust.transport.consumer import Consumer
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

    _hot_topics[app] = hot_topics(app) | topics
    if (Consumer, "resume_partitions") in _ORIGINALS:
        return

    def make_resume(original: Any) -> Any:
        def resume_partitions(self: Any, tps: Any) -> None:
            hot = _hot_topics.get(self.app)
            original(self, [tp for tp in tps if tp.topic not in hot] if hot else tps)

        return resume_partitions

    def make_verify(original: Any) -> Any:
        def verify_event_path(self: Any, now: float, tp: Any) -> None:
            hot = _hot_topics.get(self.consumer.app)
            if hot and tp.topic in hot:
                return None
            return original(self, now, tp)  # type: ignore[no-any-return]

        return verify_event_path

    _patch(Consumer, "resume_partitions", make_resume)
    _patch(AIOKafkaConsumerThread, "verify_event_path", make_verify)


# ------------------------------------------------------------------------ the private reaches


def aiokafka_producer(app: Any) -> Any:
    """The started ``AIOKafkaProducer`` under Faust's producer (``Producer._ensure_producer``;
    raises Faust's ``NotReady`` before it started).

    Buys: the throttle and the Outbox hand whole record batches to it (agents/batches.py:
    ``create_batch``/``send_batch``, public aiokafka) and wait for the broker's acknowledgement
    of each, on the same connection and with the same settings as Faust's own sends."""
    return app.producer._ensure_producer()  # noqa: SLF001


async def commit_offsets(consumer: Any, offsets: Mapping[Any, int]) -> bool:
    """Commit ``offsets`` (Faust ``TP`` -> next offset) through Faust's consumer
    (``Consumer._commit_offsets``; its public ``commit`` commits only what Faust's own streams
    acknowledged).

    Buys: the readers (agents/reader.py) commit in Faust's group and generation, after Faust's
    producer is flushed (a committed offset has its outputs on the broker), and the partitions
    no longer assigned are dropped from the commit."""
    return bool(await consumer._commit_offsets(offsets))  # noqa: SLF001


def read_offsets(consumer: Any) -> Mapping[Any, int | None]:
    """The last offset Faust's consumer handed to its streams, per partition
    (``Consumer._read_offset``). Buys: the consumer lag gauge of the topics Faust reads."""
    return getattr(consumer, "_read_offset", {})  # type: ignore[no-any-return]


def set_current_event(event: Any) -> contextvars.Token[Any]:
    """Make ``event`` Faust's current event (``faust.streams._current_event``; Faust has a
    public getter, ``current_event()``, and no setter). ``event`` needs ``.message.partition``;
    it is held weakly, the caller keeps it alive.

    Buys: a table write (``table[key] = value``) goes to the changelog partition of the
    current event, and a RocksDB store picks its partition's database from it; the readers
    handle records that never went through a Faust stream. (On the delivery path: the variable
    is imported once, with this module; imported per call it cost 2 µs.)"""
    return _current_event.set(weakref.ref(event))


def reset_current_event(token: contextvars.Token[Any]) -> None:
    _current_event.reset(token)


def window_ranges(table: Any, ts: float) -> Iterator[tuple[float, float]]:
    """The window ranges of a windowed table at event time ``ts`` (``Collection._window_ranges``).
    Buys: the throttle's table writes take the same windows as Faust's ``__setitem__`` without
    a Faust event being current (core/tables.ThrottleTable)."""
    return table._window_ranges(ts)  # type: ignore[no-any-return]  # noqa: SLF001


def set_key_ttl(table: Any, key: Any, partition: int, at: float | None = None) -> None:
    """Index a windowed key for expiry (``Collection._maybe_set_key_ttl``), as Faust's
    ``__setitem__`` does. Buys: the throttle's windows expire as Faust's own would.

    ``at``: index it as if its window ended then (Faust's expiry is that + ``expires``), not at
    its own range's end: a per-type window longer than the table's (decisions/windows.py) is
    kept through the window after it, whose first notification shows its count. The same
    three structures ``_maybe_set_key_ttl`` writes."""
    if at is None:
        table._maybe_set_key_ttl(key, partition)  # noqa: SLF001
        return
    if not table._should_expire_keys():  # noqa: SLF001
        return
    heapq.heappush(table._partition_timestamps[partition], at)  # noqa: SLF001
    latest = table._partition_latest_timestamp  # noqa: SLF001
    latest[partition] = max(latest[partition], at)
    table._partition_timestamp_keys[(partition, at)].add(key)  # noqa: SLF001


def rocksdb_items(store: Any, partition: int) -> Iterator[tuple[bytes, bytes]] | None:
    """The raw (key, value) pairs a RocksDB store holds for ``partition`` (``Store._dbs`` and
    ``Store._visible_items``); None when it holds no database of the partition (or is not a
    RocksDB store). Buys: the delivery states on disk before this start are listed for their
    expiry (core/tables.py), which replaying the changelog past them would not do."""
    dbs = getattr(store, "_dbs", None)
    db = dbs.get(partition) if dbs is not None else None
    if db is None:
        return None
    return store._visible_items(db)  # type: ignore[no-any-return]  # noqa: SLF001


def rocksdb_get(store: Any, key: bytes, partition: int | None = None) -> bytes | None:
    """The raw value a RocksDB store holds for the raw ``key``, or None: what ``Store._get``
    finds without a current event (``_get_bucket_for_key``: every database the store has open,
    ``Store._dbs``), ``partition``'s database asked first (a hint: where the key's writer puts it).

    Buys: the throttle reads its table once or twice an alert; through Faust's store that is
    ``Mapping.get`` catching a ``KeyError``, its serializer registry both ways (about 9 µs) and
    its key index (a locked LRU): a quarter of a decision (core/tables.ThrottleTable)."""
    dbs = store._dbs  # noqa: SLF001
    if partition is not None:
        db = dbs.get(partition)
        if db is not None:
            value = db.get(key)
            if value is not None:
                return value  # type: ignore[no-any-return]
    for p, db in dbs.items():
        if p != partition:
            value = db.get(key)
            if value is not None:
                return value  # type: ignore[no-any-return]
    return None


def rocksdb_write(store: Any, partition: int, items: Iterable[tuple[bytes, bytes]]) -> None:
    """Put the raw (key, value) ``items`` in ``partition``'s database of a RocksDB store (opened
    if it is not yet: ``Store._db_for_partition``), as one write batch (rocksdict's
    ``WriteBatch``, raw as Faust opens the database, and ``Rdict.write``).

    Buys: what ``Store._set`` does for each (``db.put``), once for a whole fetch of the throttle
    (core/tables.ThrottleTable), without its serializer registry and its per-put lookups of the
    current event and the key index. The key index is left alone: it is a cache of where a key
    is (Faust looks in every database for a key it does not list), and the throttle's keys
    stay in their fingerprint's partition."""
    from rocksdict import WriteBatch

    batch = WriteBatch(raw_mode=True)
    for key, value in items:
        batch.put(key, value)
    store._db_for_partition(partition).write(batch)  # noqa: SLF001


def max_request_size(producer: Any, default: int) -> int:
    """The ``max_request_size`` an ``AIOKafkaProducer`` was made with (``_max_request_size``).
    Buys: ``send`` refuses a record over it; ``send_batch`` does not check, so the batch sender
    does it (agents/batches.py)."""
    return int(getattr(producer, "_max_request_size", default))


async def refresh_metadata(consumer: Any) -> None:
    """Fetch the cluster's metadata now (``AIOKafkaConsumer._client.force_metadata_update``;
    the public ``topics()`` fetches it without updating the consumer's). Buys: a topic just
    created is found by ``partitions_for_topic`` at once, not at the next refresh."""
    await consumer._client.force_metadata_update()  # noqa: SLF001


def security_protocol(client: Any) -> str:
    """The security protocol of an aiokafka producer or consumer (its client's
    ``_security_protocol``). Buys: a failed start can say which protocol it tried
    (infra/kafka.started)."""
    inner = getattr(client, "client", None) or getattr(client, "_client", None)  # producer / consumer
    return str(getattr(inner, "_security_protocol", "PLAINTEXT"))
