"""The Faust app and everything a worker holds: topics, tables, channels, routing policy.

``build(settings)`` makes a ``Runtime``; each agent module's ``register(rt)`` adds its agent.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import types
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import faust

from ..agents.channels import Channel, build_channels
from ..agents.outbox import Outbox
from ..decisions.routing import RoutingPolicy, load_policy
from ..infra.kafka import broker_credentials, client_kwargs
from ..schemas import codec as _codec  # noqa: F401  (registers the "tocsin" codec)
from . import webauth
from .settings import Settings
from .tables import Tables, make_tables
from .topics import Topics, make_topics

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    settings: Settings
    app: faust.App
    topics: Topics
    tables: Tables
    policy: RoutingPolicy
    channels: dict[str, Channel]
    #: every record whose loss would lose a notification or a record goes out through it,
    #: acknowledged by the broker before the offset that made it is committed (agents/outbox.py)
    outbox: Outbox
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def enabled(self) -> list[str]:
        return sorted(self.channels)

    def ready(self) -> bool:
        """Joined the group and recovered the tables."""
        app = self.app
        try:
            recovered = app.tables.recovery.completed.is_set()  # type: ignore[attr-defined]
        except AttributeError:
            return False
        return bool(recovered and not app.rebalancing and not getattr(app, "in_recovery", False)
                    and self.extras.get("started"))


def _true_highwaters(bootstrap: str, security: Mapping[str, Any]) -> None:
    """The embedded broker (Tansu) answers ListOffsets(latest) with the end of a partition's
    last record batch's *first* record, so Faust's table recovery, which reads changelogs up
    to that "highwater", would stop short of the last batch (state lost on restart) and its
    consistency check would crash the worker. Recovery asks for the true high watermark
    instead: the larger of ListOffsets and a fetch response's watermark (infra/kafka.py)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from faust.transport.drivers import aiokafka as driver

    from ..infra.kafka import end_offsets

    cls = driver.AIOKafkaConsumerThread
    original = getattr(cls, "_tocsin_original_highwaters", None) or cls._highwaters

    async def highwaters(self: Any, partitions: list[Any]) -> Any:
        listed = dict(await original(self, partitions))
        if self.consumer.in_transaction or not partitions:
            return listed
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

    cls._tocsin_original_highwaters = original  # type: ignore[attr-defined]
    cls._highwaters = highwaters  # type: ignore[method-assign]


def _tune_consumer(fetch_max_wait_ms: int) -> None:
    """Faust 0.15 hard-codes ``fetch_max_wait_ms=1500`` for its worker consumer; on the embedded
    broker a fetch that touches paused or idle partitions waits that long, which put 1.5 s on
    every hop. Apply our setting to the consumer it creates (aiokafka reads it at start)."""
    from faust.transport.drivers import aiokafka as driver

    cls = driver.AIOKafkaConsumerThread
    original = getattr(cls, "_tocsin_original_create", None) or cls._create_worker_consumer

    def create(self: Any, transport: Any) -> Any:
        consumer = original(self, transport)
        consumer._fetch_max_wait_ms = fetch_max_wait_ms  # noqa: SLF001
        return consumer

    cls._tocsin_original_create = original  # type: ignore[attr-defined]
    cls._create_worker_consumer = create  # type: ignore[method-assign]


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


def _fast_drain() -> None:
    """Faust's consumer hands each record to the agents with
    ``wait_first(callback(message), suspend_flow.wait())``: four tasks and an
    ``asyncio.wait`` per record (about 20 µs here), so that a rebalance can interrupt a
    callback blocked on flow control or a full buffer. Almost every callback completes
    without blocking: run it directly up to its first suspension, and only when it does
    suspend hand the rest to the original ``wait_first``, with the same semantics."""
    from faust.transport.consumer import Consumer
    from mode.services import WaitResults

    original = getattr(Consumer, "_tocsin_original_wait_first", None) or Consumer.wait_first

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

    Consumer._tocsin_original_wait_first = original  # type: ignore[attr-defined]
    Consumer.wait_first = wait_first  # type: ignore[method-assign]


def _roomier_producer_buffer(max_messages: int = 2000) -> None:
    """Table writes go through Faust's producer buffer (``send_soon``), drained one message
    at a time by a background task. Past ``max_messages`` (Faust: 100) the conductor stops
    handing records to every agent and flushes the buffer with a ``wait_for`` per message;
    under a burst of notifications the delivery and status tables' changelog writes crossed
    100 all the time and stalled every agent. A larger bound keeps the drain in the
    background; it still bounds the buffer."""
    from faust.transport.producer import ProducerBuffer

    ProducerBuffer.max_messages = max_messages


def make_faust_app(s: Settings) -> faust.App:
    _fast_drain()
    _roomier_producer_buffer()
    _tune_consumer(s.background_fetch_max_wait_ms)
    security = client_kwargs(s)  # TLS and SASL: the same for Faust's clients and ours
    _true_highwaters(s.kafka_bootstrap, security)
    store = "memory://" if s.table_store == "memory" else "rocksdb://"
    return faust.App(
        s.app_id,
        broker=[f"kafka://{h.strip()}" for h in s.kafka_bootstrap.split(",")],
        broker_credentials=broker_credentials(security),
        store=store,
        datadir=str((s.data_dir / "faust").resolve()),
        topic_partitions=s.partitions,
        topic_replication_factor=1,
        topic_allow_declare=True,
        broker_session_timeout=s.broker_session_timeout_s,
        broker_heartbeat_interval=s.broker_heartbeat_interval_s,
        broker_rebalance_timeout=s.broker_rebalance_timeout_s,
        broker_commit_interval=s.commit_interval_s,
        broker_request_timeout=max(30.0, s.broker_session_timeout_s * 5),
        stream_processing_timeout=60.0,
        consumer_auto_offset_reset="earliest",
        processing_guarantee="at_least_once",
        table_cleanup_interval=30.0,
        # the check compares against ListOffsets; the embedded broker under-reports it (see
        # _true_highwaters): a false alarm must not stop notifications
        recovery_consistency_check=False,
        producer_linger_ms=1,
        # how long a produce request (and a batch in the producer) waits for the broker before it
        # fails; the Outbox sends it again (Faust: 20 minutes, a stalled broker went unnoticed)
        producer_request_timeout=s.producer_request_timeout_s,
        # the throttle hands whole record batches to the producer (agents/batches.py)
        producer_max_batch_size=256 * 1024,
        web_enabled=True,
        # one access decision for every view, Faust's own included (webauth.py), and a bound
        # on what a request body may be
        web_application_options={"middlewares": [webauth.middleware(s)],
                                 "client_max_size": s.web_max_body_bytes},
        web_port=s.web_port,
        web_bind=s.web_host,
        web_host=s.web_host,
        web_in_thread=False,
        key_serializer="json",
        value_serializer="tocsin",
        autodiscover=False,
        stream_wait_empty=False,
        logging_config=None,
    )


def build(settings: Settings, *, record: bool | None = None) -> Runtime:
    webauth.check_exposure(settings)
    app = make_faust_app(settings)
    topics = make_topics(app, settings.topic_prefix, settings.partitions)
    tables = make_tables(app, settings.topic_prefix, settings.throttle_window_s,
                         settings.throttle_expires_s, settings.partitions)
    policy = load_policy(settings.routing_file)
    channels = build_channels(settings, policy)
    rt = Runtime(settings, app, topics, tables, policy, channels, Outbox.for_app(app))

    from ..agents import deliver, lifecycle, retry, throttle
    from ..agents import record as record_agent

    throttle.register(rt)
    deliver.register(rt)
    retry.register(rt)
    lifecycle.register(rt)
    if record if record is not None else settings.record_enabled:
        record_agent.register(rt)
    from . import web

    web.register(rt)

    @app.task
    async def _declare() -> None:
        # declare every Tocsin topic up front so producers and replays find them
        for t in topics.all():
            await t.maybe_declare()

    @app.on_rebalance_complete.connect  # type: ignore[arg-type]
    async def _ready(sender: Any, **kw: Any) -> None:
        if not rt.extras.get("frozen"):
            # what start-up made (modules, the app, its agents and clients) lives as long as
            # the worker: moved out of the collector's generations, every full collection
            # walks only what the streams allocate since
            rt.extras["frozen"] = True
            gc.collect()
            gc.freeze()
        rt.extras["started"] = True

    @app.timer(interval=1.0)
    async def _mark_started() -> None:
        if app.tables.recovery.completed.is_set():  # type: ignore[attr-defined]
            rt.extras["started"] = True

    return rt
