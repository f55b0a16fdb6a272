"""The on-call API on the worker's web server.

``GET  /api/alerts``                     alerts by fingerprint, filtered, paged, with ``total``
``GET  /api/alerts/stats``               24-hour totals and the delivery success rate
``GET  /api/alerts/{alert_id}/deliveries`` every delivery attempt of one alert
``POST /api/alerts/{fingerprint}/acknowledge|resolve|dismiss|unacknowledge``  bearer ``TOCSIN_API_TOKEN``;
202 once the broker acknowledged the event on ``P.lifecycle``, 503 when it did not within
``TOCSIN_API_ACK_TIMEOUT_S``

Who may call which is decided once, for every view, by ``webauth.py``.

The alert list reads the status table's index (core/status_index.py: every worker holds all of
it, kept as the table changes, queried off the event loop when it is large: the same answers
as ``list_alerts`` over every status); stats and attempts read ClickHouse through the store
the record agent opened (stats from the index when recording is off).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import uuid
from typing import Any

import orjson
from faust import web as faust_web

from ..core import metrics
from ..core.tables import status_index
from ..errors import OutboxError, StoreError
from ..schemas.alert import parse_timestamp
from ..schemas.codec import dumps
from ..schemas.messages import LifecycleAction, LifecycleEvent
from .answers import json_answer

log = logging.getLogger(__name__)

STATUSES = ("active", "acknowledged", "resolved", "dismissed")
MAX_LIMIT = 500


class BadRequest(ValueError):
    pass


def parse_filters(q: Any) -> dict[str, Any]:
    """Query parameters → filters; ``BadRequest`` names the bad one."""
    f: dict[str, Any] = {}
    if q.get("severity"):
        try:
            sev = int(str(q["severity"]).upper().removeprefix("SEV"))
        except ValueError:
            raise BadRequest("severity: expected 1, 2 or 3") from None
        if sev not in (1, 2, 3):
            raise BadRequest("severity: expected 1, 2 or 3")
        f["severity"] = sev
    if q.get("status"):
        wanted = [x.strip() for x in str(q["status"]).split(",") if x.strip()]
        bad = [x for x in wanted if x not in STATUSES]
        if bad:
            raise BadRequest(f"status: {bad[0]!r} is not one of {', '.join(STATUSES)}")
        if wanted:  # "status=," names none: no filter, as "status=" (an empty set matched nothing)
            f["status"] = set(wanted)
    for name in ("type", "symbol", "strategy_id"):
        if q.get(name):
            f[name] = str(q[name])
    for name in ("since", "until"):
        if q.get(name):
            try:
                f[name] = parse_timestamp(str(q[name]))
            except ValueError as exc:
                raise BadRequest(f"{name}: {exc}") from None
    try:
        f["offset"] = int(q.get("offset") or 0)
        f["limit"] = int(q.get("limit") or 50)
    except ValueError:
        raise BadRequest("offset and limit must be whole numbers") from None
    if f["offset"] < 0 or not 1 <= f["limit"] <= MAX_LIMIT:
        raise BadRequest(f"offset must be >= 0 and limit 1..{MAX_LIMIT}")
    return f


def matches(s: dict[str, Any], f: dict[str, Any]) -> bool:
    if "severity" in f and s.get("severity") != f["severity"]:
        return False
    if "status" in f and s.get("status") not in f["status"]:
        return False
    if "type" in f and s.get("type") != f["type"]:
        return False
    entity = s.get("entity") or {}
    if "symbol" in f and entity.get("symbol") != f["symbol"]:
        return False
    if "strategy_id" in f and entity.get("strategy_id") != f["strategy_id"]:
        return False
    last = s.get("last_seen")
    if ("since" in f or "until" in f) and not last:
        return False
    if last:
        t = dt.datetime.fromisoformat(last.replace("Z", "+00:00"))
        if "since" in f and t < f["since"]:
            return False
        if "until" in f and t >= f["until"]:
            return False
    return True


def list_alerts(statuses: list[dict[str, Any]], f: dict[str, Any]) -> dict[str, Any]:
    hits = [s for s in statuses if s.get("alert_id") and matches(s, f)]
    hits.sort(key=lambda s: (s.get("last_seen") or "", s["fingerprint"]), reverse=True)
    page = hits[f["offset"]: f["offset"] + f["limit"]]
    return {"total": len(hits), "offset": f["offset"], "limit": f["limit"], "items": page}


def stats_from_statuses(statuses: list[dict[str, Any]], now: dt.datetime) -> dict[str, Any]:
    """Fallback when recording is off: fingerprints last seen in 24 h (not every occurrence)."""
    since = (now - dt.timedelta(hours=24)).isoformat().replace("+00:00", "Z")
    recent = [s for s in statuses if (s.get("last_seen") or "") >= since and s.get("alert_id")]
    by_sev: dict[str, int] = {"1": 0, "2": 0, "3": 0}
    by_type: dict[str, int] = {}
    for s in recent:
        by_sev[str(s["severity"])] = by_sev.get(str(s["severity"]), 0) + s["occurrences"]
        by_type[s["type"]] = by_type.get(s["type"], 0) + s["occurrences"]
    return {"total_24h": sum(by_sev.values()), "by_severity": by_sev, "by_type": by_type,
            "delivery_success_rate": None, "source": "status table (recording is off)"}


async def stats_from_index(index: Any, now: dt.datetime) -> dict[str, Any]:
    """``stats_from_statuses`` over the status table's index (its columns, not every dict)."""
    since = (now - dt.timedelta(hours=24)).isoformat().replace("+00:00", "Z")
    async with index.lock:
        index.apply()
        by_sev, by_type = index.stats_since(since)
    return {"total_24h": sum(by_sev.values()), "by_severity": by_sev, "by_type": by_type,
            "delivery_success_rate": None, "source": "status table (recording is off)"}


def register(rt: Any) -> None:
    app = rt.app
    table = rt.tables.status
    index = status_index(table)

    class Alerts(faust_web.View):
        async def get(self, request: Any, **kw: Any) -> Any:
            try:
                f = parse_filters(request.query)
            except BadRequest as exc:
                return json_answer({"error": str(exc)}, 400)
            return json_answer(await index.list_alerts(f))

    class Stats(faust_web.View):
        async def get(self, request: Any, **kw: Any) -> Any:
            now = dt.datetime.now(dt.UTC)
            store = rt.store
            if store is None:
                return json_answer(await stats_from_index(index, now))
            from ..infra.clickhouse.queries import outcomes_24h, stats_24h

            try:
                body = await asyncio.to_thread(stats_24h, store, now)
                body["by_severity"] = {k.removeprefix("SEV"): v for k, v in body["by_severity"].items()}
                body["by_outcome"] = await asyncio.to_thread(outcomes_24h, store, now)
            except StoreError as exc:
                log.warning("stats from ClickHouse failed: %s", exc)
                body = await stats_from_index(index, now)
            return json_answer(body)

    class Deliveries(faust_web.View):
        async def get(self, request: Any, alert_id: str, **kw: Any) -> Any:
            try:
                aid = uuid.UUID(alert_id)
            except ValueError:
                return json_answer({"error": f"alert_id: {alert_id!r} is not a UUID"}, 400)
            store = rt.store
            if store is None:
                return json_answer({"error": "recording is off on this worker: no attempts to show"}, 503)
            from ..infra.clickhouse.queries import as_dicts, run_query

            try:
                cols, rows = await asyncio.to_thread(run_query, store, "attempts_of_alert", alert_id=str(aid))
            except StoreError as exc:
                return json_answer({"error": str(exc)}, 503)
            return json_answer({"alert_id": str(aid), "items": as_dicts(cols, rows)})

    class Action(faust_web.View):
        async def post(self, request: Any, fingerprint: str, action: str, **kw: Any) -> Any:
            try:
                act = LifecycleAction(action)
            except ValueError:
                return json_answer({"error": f"unknown action {action!r}: acknowledge, resolve, dismiss or unacknowledge"}, 404)
            # the API token was checked by webauth's middleware; the router decoded the path
            # once already: the fingerprint is used as it comes (a '%' in it is its own)
            fp = fingerprint
            body: dict[str, Any] = {}
            raw = await request.read()
            if raw:
                try:
                    body = orjson.loads(raw)
                    if not isinstance(body, dict):
                        raise TypeError
                except (orjson.JSONDecodeError, TypeError):
                    return json_answer({"error": "body must be a JSON object {\"by\": ..., \"note\": ...}"}, 400)
            by, note = str(body.get("by") or "api")[:255], str(body.get("note") or "")[:1000]
            current = table.get(fp)
            event = LifecycleEvent(fingerprint=fp, action=act, by=by, note=note,
                                   alert_id=(current or {}).get("alert_id"))
            body_out = dumps(event)
            # 202 only once the broker has the event: the fold happens when it is read back
            wait = rt.settings.api_ack_timeout_s
            try:
                await asyncio.wait_for(rt.outbox.send(rt.topics.lifecycle.get_topic_name(), fp, body_out), wait)
            except (TimeoutError, OutboxError) as exc:
                why = f"not acknowledged within {wait:g} s" if isinstance(exc, TimeoutError) else str(exc)
                log.warning("lifecycle %s of %r: the broker did not take it (%s)", act.value, fp[:200], why)
                return json_answer({"error": f"the {act.value} was not accepted: the broker did not acknowledge "
                                             f"it ({why}); it may still be applied later, and sending it "
                                             "again is safe", "event_id": str(event.event_id)}, 503)
            metrics.lifecycle_actions.labels(act.value).inc()
            return json_answer(orjson.loads(body_out), 202)

    app.page("/api/alerts")(Alerts)
    app.page("/api/alerts/stats")(Stats)
    app.page("/api/alerts/{alert_id}/deliveries")(Deliveries)
    app.page("/api/alerts/{fingerprint}/{action}")(Action)
