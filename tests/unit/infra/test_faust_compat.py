"""Canaries of the seam to Faust and aiokafka (tocsin/infra/faust_compat.py): for every
attribute Tocsin patches or reaches, that it is still there with the signature, the type and
the use relied on. A Faust or aiokafka release that changes one fails here, by name, rather
than in a worker. And the version check the worker runs at start."""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import logging
from types import SimpleNamespace
from typing import Any

import faust
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.client import AIOKafkaClient
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from faust.exceptions import NotReady
from faust.stores.rocksdb import Store as RocksDBStore
from faust.tables.base import Collection
from faust.transport.consumer import Consumer
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread, Producer
from faust.transport.producer import ProducerBuffer
from faust.types import TP
from mode.services import Service, WaitResults

from tocsin.infra import faust_compat
from tocsin.infra.broker import CLUSTER_ID


def params(fn: Any) -> list[str]:
    return list(inspect.signature(fn).parameters)


def source(obj: Any) -> str:
    return inspect.getsource(obj)


@pytest.fixture
def app() -> faust.App:
    return faust.App("compat-canary", broker="kafka://127.0.0.1:1", autodiscover=False, web_enabled=False)


# ------------------------------------------------------------------------ the versions


def test_the_installed_versions_are_the_tested_ones() -> None:
    """A different version is not refused, only warned about: here it says to re-check the
    canaries below and update ``TESTED`` once they pass."""
    assert faust_compat.installed_versions() == faust_compat.TESTED


def test_the_version_check_warns_naming_both_versions(caplog: pytest.LogCaptureFixture) -> None:
    assert faust_compat.check_versions(dict(faust_compat.TESTED)) == []
    with caplog.at_level(logging.WARNING, logger="tocsin.infra.faust_compat"):
        warnings = faust_compat.check_versions({"faust-streaming": "0.16.1", "aiokafka": "0.14.0"})
    assert len(warnings) == 1
    assert "faust-streaming 0.16.1 is installed" in warnings[0]
    assert f"tested with faust-streaming {faust_compat.TESTED['faust-streaming']}" in warnings[0]
    assert [r.levelno for r in caplog.records] == [logging.WARNING]
    assert caplog.records[0].getMessage() == warnings[0]


def test_a_library_not_installed_is_named() -> None:
    warnings = faust_compat.check_versions({"faust-streaming": faust_compat.TESTED["faust-streaming"]})
    assert len(warnings) == 1 and warnings[0].startswith("aiokafka (not installed) is installed")


# ------------------------------------------------------------------------ the patches


def test_producer_buffer_max_messages_is_the_bound_the_conductor_waits_on() -> None:
    assert isinstance(faust_compat._ORIGINALS.get((ProducerBuffer, "max_messages"),
                                                  ProducerBuffer.max_messages), int)
    assert "self.size > self.max_messages" in source(ProducerBuffer.wait_until_ebb)
    faust_compat.roomier_producer_buffer(2000)
    assert ProducerBuffer.max_messages == 2000


def test_the_worker_consumer_is_made_by_create_worker_consumer_with_a_hard_coded_wait() -> None:
    fn = faust_compat._ORIGINALS.get((AIOKafkaConsumerThread, "_create_worker_consumer"),
                                     AIOKafkaConsumerThread._create_worker_consumer)
    assert params(fn) == ["self", "transport"]
    # if Faust ever makes it a setting, use the setting and drop the patch
    assert "fetch_max_wait_ms=1500" in source(fn)
    assert "_create_worker_consumer(" in source(AIOKafkaConsumerThread._create_consumer)


async def test_aiokafka_reads_fetch_max_wait_ms_from_its_private_attribute_at_start() -> None:
    c = AIOKafkaConsumer(bootstrap_servers="127.0.0.1:1", fetch_max_wait_ms=321)
    assert c._fetch_max_wait_ms == 321
    assert "fetch_max_wait_ms=self._fetch_max_wait_ms" in source(AIOKafkaConsumer.start)


async def test_the_patched_worker_consumer_fetches_with_tocsins_wait(app: faust.App) -> None:
    faust_compat.worker_fetch_max_wait(42)
    thread = app.consumer._thread
    assert isinstance(thread, AIOKafkaConsumerThread)
    consumer = thread._create_worker_consumer(app.transport)
    assert isinstance(consumer, AIOKafkaConsumer)
    assert consumer._fetch_max_wait_ms == 42


def test_highwaters_is_what_recovery_asks_and_reads_list_offsets() -> None:
    fn = faust_compat._ORIGINALS.get((AIOKafkaConsumerThread, "_highwaters"), AIOKafkaConsumerThread._highwaters)
    assert inspect.iscoroutinefunction(fn)
    assert params(fn) == ["self", "partitions"]
    assert "end_offsets(partitions)" in source(fn)  # ListOffsets: what the embedded broker under-reports
    assert "self._highwaters" in source(AIOKafkaConsumerThread.highwaters)


async def test_describe_cluster_answers_the_cluster_id() -> None:
    assert inspect.iscoroutinefunction(AIOKafkaAdminClient.describe_cluster)
    assert "cluster_id" not in source(AIOKafkaAdminClient.describe_cluster) or True  # the broker's answer
    assert faust_compat.EMBEDDED_CLUSTER_ID == CLUSTER_ID == "tansu_cluster"


class _Thread:
    """What Faust's ``_highwaters`` reads of its consumer thread."""

    def __init__(self, listed: dict[Any, int]) -> None:
        self.consumer = SimpleNamespace(in_transaction=False)
        self._listed = listed

    def _ensure_consumer(self) -> Any:
        async def end_offsets(partitions: list[Any]) -> dict[Any, int]:
            return {tp: self._listed[tp] for tp in partitions}

        return SimpleNamespace(end_offsets=end_offsets)


@pytest.fixture
def restore_highwaters() -> Any:
    yield
    faust_compat._unpatch(AIOKafkaConsumerThread, "_highwaters")


@pytest.mark.parametrize(("embedded", "cluster", "expected"), [
    (False, CLUSTER_ID, 5),  # told it is not: Faust's own, no patch
    (True, "anything", 9),  # told it is: the true end, the broker not asked
    (None, CLUSTER_ID, 9),  # asked: the embedded broker
    (None, "kafka-prod", 5),  # asked: another broker, Faust's own
])
async def test_the_end_offset_fix_is_gated_on_the_embedded_broker(
        monkeypatch: pytest.MonkeyPatch, restore_highwaters: Any, embedded: bool | None, cluster: str,
        expected: int) -> None:
    asked: list[str] = []

    async def cluster_id(bootstrap: str, security: Any) -> str:
        asked.append(bootstrap)
        return cluster

    async def true_ends(bootstrap: str, security: Any, partitions: list[Any], listed: dict[Any, int]) -> Any:
        return {tp: 9 for tp in partitions}

    monkeypatch.setattr(faust_compat, "cluster_id", cluster_id)
    monkeypatch.setattr(faust_compat, "_true_ends", true_ends)
    library = faust_compat._ORIGINALS.get((AIOKafkaConsumerThread, "_highwaters"),
                                          AIOKafkaConsumerThread.__dict__["_highwaters"])
    faust_compat.true_highwaters("b:1", {}, embedded)
    patched = AIOKafkaConsumerThread.__dict__["_highwaters"]
    assert (patched is library) == (embedded is False)
    tp = TP("t", 0)
    thread = _Thread({tp: 5})
    assert await patched(thread, [tp]) == {tp: expected}
    assert await patched(thread, [tp]) == {tp: expected}
    assert asked == (["b:1"] if embedded is None else [])  # asked once


def test_patching_again_wraps_the_library_function(restore_highwaters: Any) -> None:
    library = faust_compat._ORIGINALS.get((AIOKafkaConsumerThread, "_highwaters"),
                                          AIOKafkaConsumerThread.__dict__["_highwaters"])
    faust_compat.true_highwaters("a:1", {}, True)
    faust_compat.true_highwaters("b:1", {}, True)
    assert faust_compat._ORIGINALS[(AIOKafkaConsumerThread, "_highwaters")] is library
    faust_compat.true_highwaters("b:1", {}, False)
    assert AIOKafkaConsumerThread.__dict__["_highwaters"] is library


def test_wait_first_is_how_the_consumer_hands_each_record_to_the_agents() -> None:
    fn = faust_compat._ORIGINALS.get((Consumer, "wait_first"), Consumer.wait_first)
    assert fn is Service.wait_first
    assert inspect.iscoroutinefunction(fn)
    sig = inspect.signature(fn)
    assert list(sig.parameters) == ["self", "coros", "timeout"]
    assert sig.parameters["coros"].kind is inspect.Parameter.VAR_POSITIONAL
    assert sig.parameters["timeout"].default is None
    assert "self.wait_first(" in source(Consumer._drain_messages)
    assert WaitResults._fields == ("done", "results", "stopped")


def test_create_event_makes_the_event_of_the_conf_event_class(app: faust.App) -> None:
    from faust.app.base import App

    fn = faust_compat._ORIGINALS.get((App, "create_event"), App.create_event)
    assert params(fn) == ["self", "key", "value", "headers", "message"]
    assert "self.conf.Event(self, key, value, headers, message)" in source(fn)
    faust_compat.event_class_once()
    message = SimpleNamespace(partition=0)
    ev = app.create_event(b"k", b"v", [], message)  # type: ignore[arg-type]
    again = app.create_event(b"k2", b"v2", [], message)  # type: ignore[arg-type]
    assert type(ev) is type(again) is app.conf.Event is faust.Event
    assert (ev.app, ev.key, ev.value, ev.message) == (app, b"k", b"v", message)
    assert again.key == b"k2"


def test_resume_partitions_and_verify_event_path_have_the_signatures_patched() -> None:
    resume = faust_compat._ORIGINALS.get((Consumer, "resume_partitions"), Consumer.resume_partitions)
    assert params(resume) == ["self", "tps"]
    verify = faust_compat._ORIGINALS.get((AIOKafkaConsumerThread, "verify_event_path"),
                                         AIOKafkaConsumerThread.verify_event_path)
    assert params(verify) == ["self", "now", "tp"]
    # the consumer's liveness check goes through the thread's
    assert "verify_event_path(now, tp)" in source(Consumer.verify_all_partitions_active)


def test_keep_paused_leaves_the_hot_topics_paused(app: faust.App) -> None:
    faust_compat.keep_paused(app, frozenset({"hot"}))
    consumer = app.consumer
    hot, cold = TP("hot", 0), TP("cold", 0)
    consumer.pause_partitions([hot, cold])
    consumer.resume_partitions([hot, cold])
    assert consumer._paused_partitions == {hot}  # noqa: SLF001
    assert faust_compat.hot_topics(app) == {"hot"}
    # the liveness check is not asked about a hot partition
    thread = SimpleNamespace(consumer=consumer)
    assert AIOKafkaConsumerThread.verify_event_path(thread, 0.0, hot) is None


# ------------------------------------------------------------------------ the private reaches


def test_ensure_producer_returns_the_aiokafka_producer(app: faust.App) -> None:
    assert params(Producer._ensure_producer) == ["self"]
    with pytest.raises(NotReady):
        faust_compat.aiokafka_producer(app)
    producer = object()
    app.producer._producer = producer  # noqa: SLF001  (what on_start sets)
    assert faust_compat.aiokafka_producer(app) is producer


async def test_commit_offsets_commits_the_offsets_given() -> None:
    fn = Consumer._commit_offsets
    assert inspect.iscoroutinefunction(fn)
    assert params(fn) == ["self", "offsets", "start_new_transaction"]
    assert inspect.signature(fn).parameters["start_new_transaction"].default is True
    assert "self.assignment()" in source(fn)  # drops the partitions no longer assigned
    got: list[Any] = []

    async def commit(offsets: Any) -> bool:
        got.append(offsets)
        return True

    assert await faust_compat.commit_offsets(SimpleNamespace(_commit_offsets=commit), {TP("t", 0): 3})
    assert got == [{TP("t", 0): 3}]


def test_read_offset_is_the_consumers_last_read_offset_per_partition(app: faust.App) -> None:
    read = faust_compat.read_offsets(app.consumer)
    assert read is app.consumer._read_offset  # noqa: SLF001
    assert read[TP("t", 0)] is None  # a defaultdict: None until a record is read
    assert "set_read_offset(tp, offset)" in source(Consumer._drain_messages)


def test_current_event_is_the_context_variable_faust_reads() -> None:
    from faust import streams

    assert isinstance(streams._current_event, contextvars.ContextVar)  # noqa: SLF001
    class Event:  # weakly referenced, as Faust's own events are
        message = SimpleNamespace(partition=3)

    event = Event()

    def run() -> None:
        token = faust_compat.set_current_event(event)
        assert streams.current_event() is event
        faust_compat.reset_current_event(token)
        assert streams.current_event() is None

    contextvars.copy_context().run(run)


def test_window_ranges_and_key_ttl_are_what_a_windowed_set_does(app: faust.App) -> None:
    assert params(Collection._window_ranges) == ["self", "timestamp"]
    assert params(Collection._maybe_set_key_ttl) == ["self", "key", "partition"]
    table = app.Table("canary", default=int).tumbling(600, expires=1200).table
    ranges = list(faust_compat.window_ranges(table, 1234.0))
    assert ranges == [(1200.0, 1799.9)]
    key = ("fp", ranges[0])
    faust_compat.set_key_ttl(table, key, 2)
    assert key in table._partition_timestamp_keys[(2, ranges[0][1])]  # noqa: SLF001
    # indexed at another time: what _maybe_set_key_ttl writes, at that time; and expired by it
    assert "heappush(self._partition_timestamps[partition], range_end)" in source(Collection._maybe_set_key_ttl)
    assert "self._partition_timestamp_keys.pop(" in source(Collection._del_old_keys)
    faust_compat.set_key_ttl(table, ("long", (0.0, 86399.9)), 2, at=172799.9)
    assert ("long", (0.0, 86399.9)) in table._partition_timestamp_keys[(2, 172799.9)]  # noqa: SLF001
    assert 172799.9 in table._partition_timestamps[2]  # noqa: SLF001


def test_the_rocksdb_store_keeps_a_database_per_partition() -> None:
    assert "self._dbs = {}" in source(RocksDBStore.__init__)
    assert params(RocksDBStore._visible_items) == ["self", "db"]
    rows = [(b"k", b"v")]
    store = SimpleNamespace(_dbs={1: "db1"}, _visible_items=lambda db: iter(rows) if db == "db1" else None)
    assert list(faust_compat.rocksdb_items(store, 1) or ()) == rows
    assert faust_compat.rocksdb_items(store, 2) is None  # no database of the partition
    assert faust_compat.rocksdb_items(SimpleNamespace(), 1) is None  # the memory store


def test_the_rocksdb_store_is_read_and_written_as_its_own_get_and_set_do(tmp_path: Any) -> None:
    """``rocksdb_get``/``rocksdb_write`` (the throttle's reads and write batches): Faust's store
    keeps a database per partition in ``_dbs``, opened by ``_db_for_partition``; ``_set`` puts
    the raw bytes in the current event's partition's database (and notes it in the key index, a
    cache); ``_get`` without a current event looks in every open database."""
    assert params(RocksDBStore._db_for_partition) == ["self", "partition"]
    assert "db.put(key, value)" in source(RocksDBStore._set)
    assert "self._key_index[key] = partition" in source(RocksDBStore._set)
    assert "self._dbs.items()" in source(RocksDBStore._get_bucket_for_key)
    app = faust.App("compat-rocks", broker="kafka://127.0.0.1:1", store="rocksdb://", datadir=str(tmp_path),
                    autodiscover=False, web_enabled=False)
    store = app.Table("canary", default=None, partitions=4).data
    assert isinstance(store, RocksDBStore)
    faust_compat.rocksdb_write(store, 2, [(b'"a"', b"[1,2]"), (b'"b"', b"3")])
    faust_compat.rocksdb_write(store, 0, [(b'"c"', b'"x"')])
    assert set(store._dbs) == {0, 2}  # noqa: SLF001  (opened by the writes)
    assert (store["a"], store["b"], store["c"]) == ([1, 2], 3, "x")  # Faust's own read finds them
    class Event:
        message = SimpleNamespace(partition=1)

    event = Event()
    token = faust_compat.set_current_event(event)
    try:
        store["d"] = [4]  # Faust's own write, to the current event's partition
    finally:
        faust_compat.reset_current_event(token)
    for hint in (None, 0, 1, 2, 3):
        assert faust_compat.rocksdb_get(store, b'"a"', hint) == b"[1,2]"
        assert faust_compat.rocksdb_get(store, b'"d"', hint) == b"[4]"
        assert faust_compat.rocksdb_get(store, b'"none"', hint) is None
    assert list(faust_compat.rocksdb_items(store, 2) or ()) == [(b'"a"', b"[1,2]"), (b'"b"', b"3")]


async def test_max_request_size_is_the_producers_own() -> None:
    p = AIOKafkaProducer(bootstrap_servers="127.0.0.1:1", max_request_size=12345)
    assert faust_compat.max_request_size(p, 1) == 12345
    assert faust_compat.max_request_size(SimpleNamespace(), 7) == 7
    assert "self._max_request_size" in source(AIOKafkaProducer._serialize)  # send checks it
    # the batch sender's own check estimates the record as aiokafka does
    assert params(DefaultRecordBatchBuilder.estimate_size_in_bytes)[:3] == ["key", "value", "headers"]


async def test_force_metadata_update_is_the_consumers_clients() -> None:
    c = AIOKafkaConsumer(bootstrap_servers="127.0.0.1:1")
    assert isinstance(c._client, AIOKafkaClient)  # noqa: SLF001
    assert params(AIOKafkaClient.force_metadata_update) == ["self"]
    fut = c._client.force_metadata_update()  # noqa: SLF001  (a future: awaited, it updates)
    assert asyncio.isfuture(fut)
    fut.cancel()


async def test_security_protocol_is_read_from_producer_and_consumer() -> None:
    sasl = {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "PLAIN", "sasl_plain_username": "u",
            "sasl_plain_password": "p"}
    p = AIOKafkaProducer(bootstrap_servers="127.0.0.1:1", **sasl)
    c = AIOKafkaConsumer(bootstrap_servers="127.0.0.1:1", **sasl)
    assert faust_compat.security_protocol(p) == "SASL_PLAINTEXT"
    assert faust_compat.security_protocol(c) == "SASL_PLAINTEXT"
    assert faust_compat.security_protocol(AIOKafkaProducer(bootstrap_servers="127.0.0.1:1")) == "PLAINTEXT"


def test_the_public_apis_used_instead_of_private_ones() -> None:
    assert inspect.iscoroutinefunction(AIOKafkaProducer.partitions_for)
    assert params(AIOKafkaProducer.partitions_for) == ["self", "topic"]
    assert inspect.iscoroutinefunction(AIOKafkaConsumer.position)
    assert params(AIOKafkaConsumer.position) == ["self", "partition"]
    assert params(AIOKafkaProducer.send_batch) == ["self", "batch", "topic", "partition"]
    assert params(AIOKafkaProducer.create_batch) == ["self"]


def test_the_fetch_response_handler_is_what_starved_fetch_wait_wraps() -> None:
    from aiokafka.consumer.fetcher import Fetcher
    from aiokafka.consumer.subscription_state import TopicPartitionState

    library = faust_compat._ORIGINALS.get((Fetcher, "_proc_fetch_request"), Fetcher.__dict__["_proc_fetch_request"])
    assert params(library) == ["self", "assignment", "node_id", "request"]
    src = source(library)
    # a partition answered without error gets its high watermark and the answer's time
    assert "tp_state.highwater = highwater" in src and "tp_state.timestamp = now_ms" in src
    assert "now_ms = int(1000 * time.time())" in src
    # records go to the fetcher's buffer, keyed by partition
    assert "self._records[tp] = FetchResult(" in src
    # the wait is read from the fetcher for every request it builds
    assert "self._fetch_max_wait_ms" in source(Fetcher._get_actions_per_node)
    # the consumer's name, for the warning: the fetcher's client keeps it
    assert "self._client = client" in source(Fetcher.__init__)
    assert "self._client_id = client_id" in source(AIOKafkaClient.__init__)
    init = source(TopicPartitionState.__init__)
    assert "self.highwater = None" in init and "self.timestamp = None" in init
    assert isinstance(TopicPartitionState.has_valid_position, property)


def test_starved_fetch_wait_wraps_the_library_function() -> None:
    from aiokafka.consumer.fetcher import Fetcher

    library = faust_compat._ORIGINALS.get((Fetcher, "_proc_fetch_request"), Fetcher.__dict__["_proc_fetch_request"])
    try:
        faust_compat.starved_fetch_wait()
        faust_compat.starved_fetch_wait()  # twice: still one wrapper around the library's
        assert Fetcher.__dict__["_proc_fetch_request"] is not library
        assert faust_compat._ORIGINALS[(Fetcher, "_proc_fetch_request")] is library
    finally:
        faust_compat._unpatch(Fetcher, "_proc_fetch_request")
    assert Fetcher.__dict__["_proc_fetch_request"] is library
