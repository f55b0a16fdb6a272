"""The Faust app and everything a worker holds: topics, tables, channels, routing policy.

``build(settings)`` makes the ``Runtime`` (agents/runtime.py); each agent module's
``register(rt)`` adds its agent, then the web views are registered.
"""

from __future__ import annotations

import gc
import logging
from typing import Any

import faust

from ..agents.channels import build_channels
from ..agents.outbox import Outbox
from ..agents.runtime import Runtime
from ..core.settings import Settings
from ..core.store_check import claim_store_dir
from ..core.tables import make_tables
from ..core.topics import make_topics
from ..decisions.routing import load_policy
from ..decisions.windows import default_window
from ..infra import faust_compat
from ..infra.kafka import broker_credentials, client_kwargs
from ..schemas import codec as _codec  # noqa: F401  (registers the "tocsin" codec)
from ..web import auth as webauth

log = logging.getLogger(__name__)


def table_store(s: Settings) -> str:
    """The table store the worker runs (``Settings.effective_table_store``), with one warning
    when the default RocksDB store is not installed and the memory store stands in."""
    store = s.effective_table_store()
    if store != s.table_store:
        log.warning("TOCSIN_TABLE_STORE: rocksdict is not installed, the tables are kept in memory: a "
                    "restart replays their whole changelogs (about 8-10 s per 100,000 throttle keys, "
                    "README, Performance) and they hold the heap (~270 MB per million keys); "
                    "pip install rocksdict, or set TOCSIN_TABLE_STORE=memory to say so")
    return store


def make_faust_app(s: Settings) -> faust.App:
    security = client_kwargs(s)  # TLS and SASL: the same for Faust's clients and ours
    # what Tocsin changes in Faust and aiokafka, each with what it buys (infra/faust_compat.py)
    faust_compat.install(s.background_fetch_max_wait_ms, s.kafka_bootstrap, security, s.kafka_embedded)
    store = f"{table_store(s)}://"
    return faust.App(
        s.app_id,
        broker=[f"kafka://{h.strip()}" for h in s.kafka_bootstrap.split(",")],
        broker_credentials=broker_credentials(security),
        store=store,
        # a directory of this worker's own: two workers on one machine share TOCSIN_DATA_DIR
        datadir=str(claim_store_dir(s.data_dir)),
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
        # faust_compat.true_highwaters): a false alarm must not stop notifications
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
    policy = load_policy(settings.routing_file)
    # the routing file's [throttle] default_s, else TOCSIN_THROTTLE_WINDOW_S (decisions/windows.py)
    tables = make_tables(app, settings.topic_prefix, default_window(policy.windows, settings.throttle_window_s),
                         settings.throttle_expires_s, settings.partitions)
    channels = build_channels(settings, policy)
    rt = Runtime(settings, app, topics, tables, policy, channels, Outbox.for_app(app))

    from ..agents import delivery, escalation, grouping, lifecycle, retry, throttle
    from ..agents import record as record_agent

    throttle.register(rt)
    delivery.register(rt)
    retry.register(rt)
    lifecycle.register(rt)
    escalation.register(rt)
    grouping.register(rt)
    if record if record is not None else settings.record_enabled:
        record_agent.register(rt)
    from ..web import views as web

    web.register(rt)

    @app.task
    async def _declare() -> None:
        # declare every Tocsin topic up front so producers and replays find them
        for t in topics.all():
            await t.maybe_declare()

    frozen = False

    @app.on_rebalance_complete.connect  # type: ignore[arg-type]
    async def _ready(sender: Any, **kw: Any) -> None:
        nonlocal frozen
        if not frozen:
            # what start-up made (modules, the app, its agents and clients) lives as long as
            # the worker: moved out of the collector's generations, every full collection
            # walks only what the streams allocate since
            frozen = True
            gc.collect()
            gc.freeze()
        rt.started = True

    @app.task
    async def _tasks_on_sigusr1() -> None:
        # an operator's view of a worker that seems stuck: `kill -USR1 <pid>` logs every task of
        # the event loop with where it waits (py-spy shows threads, not what coroutines await)
        import asyncio
        import signal

        def dump() -> None:
            tasks = asyncio.all_tasks()
            log.warning("SIGUSR1: %d tasks", len(tasks))
            for t in tasks:
                chain: list[str] = []
                coro: Any = t.get_coro()
                while coro is not None and len(chain) < 16:  # what each coroutine awaits, outermost first
                    frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
                    if frame is not None:
                        chain.append(f"{frame.f_code.co_name} ({frame.f_code.co_filename.rsplit('/', 2)[-1]}:"
                                     f"{frame.f_lineno})")
                    coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
                log.warning("task %s: %s", t.get_name(), " -> ".join(chain) or "(not started or done)")

        asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, dump)

    @app.timer(interval=1.0)
    async def _mark_started() -> None:
        if app.tables.recovery.completed.is_set():  # type: ignore[attr-defined]
            rt.started = True

    return rt
