"""Web views on the worker's web server: health, metrics, the API and the dashboard."""

from __future__ import annotations

import logging
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ..core import metrics
from ..infra import faust_compat

log = logging.getLogger(__name__)


def register(rt: Any) -> None:
    app = rt.app

    @app.page("/health")
    async def health(web: Any, request: Any) -> Any:
        ready = rt.ready()
        body = {
            "status": "ready" if ready else "starting",
            "ready": ready,
            "worker": rt.settings.worker_id or None,
            "destinations": rt.enabled,
            "assigned_partitions": len(app.consumer.assignment()) if ready else 0,
        }
        return web.json(body, status=200 if ready else 503)

    @app.timer(interval=5.0)
    async def _gauges() -> None:
        """Consumer lag per topic and the DLQ's size, for /metrics."""
        if not rt.ready():
            return
        consumer = app.consumer
        lag: dict[str, int] = {}
        read = faust_compat.read_offsets(consumer)
        for tp in consumer.assignment():
            try:
                hw = consumer.highwater(tp)
            except Exception:
                continue
            if hw is None:
                continue
            done = read.get(tp)
            lag[tp.topic] = lag.get(tp.topic, 0) + max(0, hw - ((done + 1) if done is not None else 0))
        for reader in rt.readers:  # the alert and delivery topics (agents/reader.py)
            lag.update(await reader.lag())
        for topic, n in lag.items():
            metrics.consumer_lag.labels(topic).set(n)
        try:
            metrics.dlq_size.set(await dlq_size())
        except Exception:
            log.debug("DLQ size unavailable", exc_info=True)

    client: dict[str, Any] = {}

    async def dlq_size() -> int:
        from aiokafka import AIOKafkaConsumer, TopicPartition

        c = client.get("c")
        if c is None:
            from ..infra.kafka import client_kwargs

            c = client["c"] = AIOKafkaConsumer(bootstrap_servers=rt.settings.kafka_bootstrap,
                                               enable_auto_commit=False, **client_kwargs(rt.settings))
            await c.start()
        topic = rt.topics.dlq.get_topic_name()
        parts = c.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in parts]
        if not tps:
            return 0
        from ..infra.kafka import end_offsets

        ends = await end_offsets(c, tps)
        begins = await c.beginning_offsets(tps)
        return sum(ends[tp] - begins[tp] for tp in tps)

    @app.page("/metrics")
    async def prometheus(web: Any, request: Any) -> Any:
        return web.bytes(generate_latest(metrics.REGISTRY), content_type=CONTENT_TYPE_LATEST.split(";")[0])

    from . import sql as sqlapi

    sqlapi.register(rt)

    from . import openapi as openapi_view

    openapi_view.register(rt)

    try:
        from . import api
    except ImportError:
        return
    api.register(rt)

    from . import charts

    charts.register(rt)

    try:
        from . import dashboard
    except ImportError:
        return
    dashboard.register(rt)

    from . import silences

    silences.register(rt)

    from . import preferences

    preferences.register(rt)
    from . import maintenance

    maintenance.register(rt)

    from . import ingest

    ingest.register(rt)
