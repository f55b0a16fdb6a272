"""Read-only SQL through a running worker: chdb allows one engine per process, so while a
worker holds the embedded store, ``tocsin sql`` and ``tocsin stats`` ask the worker.

``POST /api/sql`` ``{"sql": "SELECT ..."}`` → ``{"columns": [...], "rows": [[...], ...]}``;
``GET /api/sql/stats`` → the text of ``tocsin stats``. Both
need the read or the API token (``webauth.py``); with neither configured SQL is refused.
Untrusted text runs under ``infra/clickhouse/readonly.py``'s guarantees and the
``TOCSIN_SQL_*`` limits.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from ..errors import ReadOnlyError, StoreError
from .answers import json_answer

#: how long a request waits for the record agent to open the store (it does so as the worker
#: starts: a ``tocsin sql`` right after ``make dev`` says ready is answered, not refused)
STORE_WAIT_S = 15.0


async def opened_store(rt: Any, wait_s: float = STORE_WAIT_S) -> Any:
    """The store the record agent opened, waiting up to ``wait_s`` for it; None when recording
    is off or it is not open by then."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + (wait_s if rt.settings.record_enabled else 0.0)
    while rt.store is None and loop.time() < deadline:
        await asyncio.sleep(0.1)
    return rt.store


def no_store(rt: Any) -> Any:
    why = ("recording is off on this worker (TOCSIN_RECORD_ENABLED)" if not rt.settings.record_enabled
           else "this worker has not opened its ClickHouse store yet: try again shortly")
    return json_answer({"error": why}, 503, {"Retry-After": "5"})


def register(rt: Any) -> None:
    app = rt.app

    from faust import web as faust_web

    async def sql(web: Any, request: Any) -> Any:
        store = await opened_store(rt)
        if store is None:
            return no_store(rt)
        try:
            body = orjson.loads(await request.read())
            name, params, text = body.get("name"), body.get("params") or {}, body.get("sql")
            if name is not None and not isinstance(name, str) or text is not None and not isinstance(text, str):
                raise TypeError
            if (name is None) == (text is None) or not isinstance(params, dict):
                raise TypeError
        except (orjson.JSONDecodeError, AttributeError, TypeError):
            return json_answer({"error": "expected a JSON body {\"sql\": \"SELECT ...\"} or {\"name\": ..., \"params\": {...}}"}, 400)
        from ..infra.clickhouse.queries import run_query

        try:
            if name is not None:
                columns, rows = await asyncio.to_thread(run_query, store, name, None, **params)
            else:
                columns, rows = await asyncio.to_thread(store.query_readonly, text, rt.settings.sql_limits)
        except (ValueError, KeyError, FileNotFoundError) as exc:
            return json_answer({"error": str(exc)}, 400)
        except ReadOnlyError as exc:
            return json_answer({"error": str(exc)}, 400)
        except StoreError as exc:
            return json_answer({"error": str(exc)}, 422)
        return json_answer({"columns": columns, "rows": [list(r) for r in rows]})

    class SqlView(faust_web.View):
        async def post(self, request: Any, **kw: Any) -> Any:
            return await sql(self, request)

        async def get(self, request: Any, **kw: Any) -> Any:
            return json_answer({"error": "POST a JSON body {\"sql\": \"SELECT ...\"}"}, 405)

    app.page("/api/sql")(SqlView)

    @app.page("/api/sql/stats")
    async def stats(web: Any, request: Any) -> Any:
        store = await opened_store(rt)
        if store is None:
            return no_store(rt)
        from ..infra.clickhouse.ops import stats_text

        try:
            text = await asyncio.to_thread(stats_text, store)
        except StoreError as exc:
            return json_answer({"error": str(exc)}, 422)
        return web.text(text)
