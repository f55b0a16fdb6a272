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


def register(rt: Any) -> None:
    app = rt.app

    from faust import web as faust_web

    async def sql(web: Any, request: Any) -> Any:
        store = rt.store
        if store is None:
            return json_answer({"error": "this worker has no ClickHouse store open (yet)"}, 503)
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
        store = rt.store
        if store is None:
            return json_answer({"error": "this worker has no ClickHouse store open (yet)"}, 503)
        from ..infra.clickhouse.ops import stats_text

        try:
            text = await asyncio.to_thread(stats_text, store)
        except StoreError as exc:
            return json_answer({"error": str(exc)}, 422)
        return web.text(text)
