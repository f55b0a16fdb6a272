"""What the dashboard's charts draw: ``GET /api/alerts/charts``, from ClickHouse.

One answer holds the four series of a window, each a named analyst query
(``infra/clickhouse/queries/*_over_time.sql``, so ``tocsin sql --name`` gives the same rows):

- ``by_severity``: alerts per bucket and severity (``alerts_by_severity_over_time``);
- ``by_outcome``: alerts per bucket and decision outcome (``alerts_by_outcome_over_time``):
  whatever outcomes were recorded, none named here;
- ``delivery``: deliveries and their success rate per bucket and channel
  (``delivery_success_over_time``, ``delivery_bucket_s``);
- ``latency``: p50/p95/p99 and max send latency per bucket and channel
  (``latency_over_time``, ``delivery_bucket_s``).

Parameters: ``until`` (default: now), ``since`` (default: 24 hours before ``until``),
``bucket_s`` (default 60: per minute) and ``delivery_bucket_s`` (default 3600: per hour).
The window is at most ``MAX_SPAN`` and holds at most ``MAX_BUCKETS`` buckets of each size,
so no request makes ClickHouse answer a million rows. Who may call it: as the other reads of
``/api/alerts`` (web/auth.py, surface ``read``). Recording off: 503, the charts need ClickHouse.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import StoreError
from ..schemas.alert import parse_timestamp
from .answers import json_answer

log = logging.getLogger(__name__)

DEFAULT_SPAN = dt.timedelta(hours=24)
MAX_SPAN = dt.timedelta(days=31)
#: a day of minutes, a week at ten minutes, a month at an hour...
MAX_BUCKETS = 10_080
MAX_BUCKET_S = 86_400
#: the times ClickHouse's DateTime64 holds, and more than any alert needs
EARLIEST = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
LATEST = dt.datetime(2200, 1, 1, tzinfo=dt.UTC)

#: answer key → (named query, which bucket size it takes)
SERIES: dict[str, tuple[str, str]] = {
    "by_severity": ("alerts_by_severity_over_time", "bucket_s"),
    "by_outcome": ("alerts_by_outcome_over_time", "bucket_s"),
    "delivery": ("delivery_success_over_time", "delivery_bucket_s"),
    "latency": ("latency_over_time", "delivery_bucket_s"),
}


class BadRequest(ValueError):
    pass


@dataclass(frozen=True)
class Window:
    since: dt.datetime
    until: dt.datetime
    bucket_s: int = 60
    delivery_bucket_s: int = 3600


def _time(q: Mapping[str, Any], name: str) -> dt.datetime | None:
    raw = q.get(name)
    if not raw:
        return None
    try:
        t = parse_timestamp(str(raw))
    except ValueError as exc:
        raise BadRequest(f"{name}: {str(exc).replace('event_timestamp', 'the time')}") from None
    if not EARLIEST <= t < LATEST:
        raise BadRequest(f"{name}: out of range (from {EARLIEST.year} to {LATEST.year})")
    return t


def _seconds(q: Mapping[str, Any], name: str, default: int) -> int:
    raw = q.get(name)
    if raw is None or raw == "":
        return default
    try:
        n = int(str(raw))
    except ValueError:
        raise BadRequest(f"{name}: expected a whole number of seconds") from None
    if not 1 <= n <= MAX_BUCKET_S:
        raise BadRequest(f"{name}: expected 1..{MAX_BUCKET_S} seconds")
    return n


def parse_window(q: Mapping[str, Any], now: dt.datetime) -> Window:
    """Query parameters → the window and bucket sizes; ``BadRequest`` names the bad one."""
    until = _time(q, "until") or now
    since = _time(q, "since") or until - DEFAULT_SPAN
    if since >= until:
        raise BadRequest("since must be before until")
    span = until - since
    if span > MAX_SPAN:
        raise BadRequest(f"the window is at most {MAX_SPAN.days} days")
    w = Window(since, until, _seconds(q, "bucket_s", 60), _seconds(q, "delivery_bucket_s", 3600))
    for name in ("bucket_s", "delivery_bucket_s"):
        if span.total_seconds() / getattr(w, name) > MAX_BUCKETS:
            raise BadRequest(f"{name}: too small for this window (at most {MAX_BUCKETS} buckets)")
    return w


def chart_data(store: Any, w: Window) -> dict[str, Any]:
    """The four series of the window (blocking: run it in a thread)."""
    from ..infra.clickhouse.queries import as_dicts, run_query

    body: dict[str, Any] = {"since": w.since, "until": w.until, "bucket_s": w.bucket_s,
                            "delivery_bucket_s": w.delivery_bucket_s}
    for key, (name, size) in SERIES.items():
        cols, rows = run_query(store, name, None, since=w.since, until=w.until, bucket_s=getattr(w, size))
        body[key] = as_dicts(cols, rows)
    return body


def register(rt: Any) -> None:
    from faust import web as faust_web

    class Charts(faust_web.View):
        async def get(self, request: Any, **kw: Any) -> Any:
            try:
                w = parse_window(request.query, dt.datetime.now(dt.UTC))
            except BadRequest as exc:
                return json_answer({"error": str(exc)}, 400)
            store = rt.store
            if store is None:
                return json_answer({"error": "recording is off on this worker: the charts read ClickHouse"}, 503)
            try:
                return json_answer(await asyncio.to_thread(chart_data, store, w))
            except StoreError as exc:
                log.warning("charts from ClickHouse failed: %s", exc)
                return json_answer({"error": str(exc)}, 503)

    rt.app.page("/api/alerts/charts")(Charts)
