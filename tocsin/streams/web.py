"""Web views on the worker's web server: health, metrics, the API and the dashboard."""

from __future__ import annotations

import logging
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from . import metrics

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

    @app.page("/metrics")
    async def prometheus(web: Any, request: Any) -> Any:
        return web.bytes(generate_latest(metrics.REGISTRY), content_type=CONTENT_TYPE_LATEST.split(";")[0])

    from . import sqlapi

    sqlapi.register(rt)

    try:
        from . import api
    except ImportError:
        return
    api.register(rt)

    try:
        from . import dashboard
    except ImportError:
        return
    dashboard.register(rt)
