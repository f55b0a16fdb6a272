"""The HTTP ways in (DESIGN "Ways in"): Alertmanager's API, its webhook, PagerDuty Events v2.

``POST /api/v2/alerts``, ``/api/v1/alerts``  Alertmanager's API (what Prometheus, Grafana,
                                            Loki and vmalert post to): 200, or 400 with the reasons
``POST /api/ingest/alertmanager``           an Alertmanager webhook receiver's payload
``POST /v2/enqueue``                        PagerDuty Events API v2: 202 / 400 / 429
``GET  /api/v2/status``, ``/-/ready``, ``/-/healthy``  what Alertmanager clients and amtool ask

Kafka is the spine: every alert is validated (decisions/alertmanager.py, pagerduty.py), sent
to ``P.alerts`` (a PagerDuty acknowledge to ``P.lifecycle``) and answered only once the broker
has acknowledged it; the throttle sees these alerts as any other. Not acknowledged within
``TOCSIN_API_ACK_TIMEOUT_S``: 503, and sending again is safe (the same alert has the same
alert_id). As Alertmanager does, the valid alerts of a request are taken even when others of
it are not (those are answered 400 with their reasons).

Who may post is webauth.py's (the ingest surface: ``TOCSIN_INGEST_TOKEN`` or
``TOCSIN_API_TOKEN``, bearer or basic auth); how often, ``decisions/ingest_limits.py``
(``TOCSIN_INGEST_RATE_PER_S``, ``TOCSIN_INGEST_BURST``; 429 with ``Retry-After``).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import orjson
from aiohttp import web as aioweb
from faust import web as faust_web

from ..core import metrics
from ..decisions import pagerduty
from ..decisions.alertmanager import DEFAULT_MAPPING, BadAlert, Mapped, map_postable, map_webhook
from ..decisions.ingest_limits import ClientLimits, client_key
from ..errors import OutboxError
from ..schemas.alert import AlertEvent
from ..schemas.codec import dumps
from .answers import json_answer

log = logging.getLogger(__name__)

V2, V1, WEBHOOK, PD = "alertmanager_v2", "alertmanager_v1", "alertmanager_webhook", "pagerduty"
#: what the (faked) Alertmanager status says it runs
AM_VERSION = "0.25.0"


# what each way in answers: (status, reason) → response
def _answer_v2(status: int, reason: str = "", headers: dict[str, str] | None = None) -> aioweb.Response:
    if status == 200:
        return aioweb.Response(status=200)  # Alertmanager: 200, no body
    return json_answer(reason, status, headers)  # its errors are a JSON string


def _answer_v1(status: int, reason: str = "", headers: dict[str, str] | None = None) -> aioweb.Response:
    if status == 200:
        return json_answer({"status": "success"}, 200)
    kind = {400: "bad_data", 429: "rate_limited"}.get(status, "unavailable")
    return json_answer({"status": "error", "errorType": kind, "error": reason}, status, headers)


def _answer_webhook(status: int, reason: str = "", headers: dict[str, str] | None = None) -> aioweb.Response:
    if status == 200:
        return json_answer({"status": "success"}, 200)
    return json_answer({"error": reason}, status, headers)


def _answer_pd(status: int, reason: str | list[str] = "", headers: dict[str, str] | None = None) -> aioweb.Response:
    if status == 400:
        errors = reason if isinstance(reason, list) else [reason]
        return json_answer({"status": "invalid event", "message": "Event object is invalid", "errors": errors}, 400)
    if status == 429:
        return json_answer({"status": "throttle exceeded", "message": "Requests for this service are arriving too quickly. "
                      "Please retry later.", "errors": [reason]}, 429, headers)
    return json_answer({"status": "unavailable", "message": reason, "errors": [reason]}, status, headers)


ANSWERS: dict[str, Callable[..., aioweb.Response]] = {V2: _answer_v2, V1: _answer_v1, WEBHOOK: _answer_webhook,
                                                      PD: _answer_pd}


async def publish(rt: Any, records: Sequence[tuple[str, bytes, bytes]]) -> str | None:
    """Send ``(topic, key, value)`` records through the Outbox and wait for the broker's
    acknowledgement of each; None, or why they were not all acknowledged in time."""
    if not records:
        return None
    wait = rt.settings.api_ack_timeout_s
    try:
        await asyncio.wait_for(rt.outbox.send_many([(t, k, v, None) for t, k, v in records]), wait)
    except TimeoutError:
        return f"the broker did not acknowledge within {wait:g} s (TOCSIN_API_ACK_TIMEOUT_S); sending again is safe"
    except OutboxError as exc:
        return f"the broker did not take the alerts ({str(exc)[:200]}); sending again is safe"
    return None


def alert_records(rt: Any, events: Sequence[AlertEvent]) -> list[tuple[str, bytes, bytes]]:
    topic = rt.topics.alerts.get_topic_name()
    return [(topic, e.fingerprint.encode(), dumps(e)) for e in events]


def retry_after(wait_s: float) -> dict[str, str]:
    return {"Retry-After": str(max(1, math.ceil(wait_s)))}


def register(rt: Any) -> None:
    app, s = rt.app, rt.settings
    limits = ClientLimits(s.ingest_rate_per_s, s.ingest_burst)
    started = dt.datetime.now(dt.UTC)
    try:
        from importlib.metadata import version

        tocsin_version = version("tocsin")
    except Exception:
        tocsin_version = "unknown"

    def mapping() -> Any:
        # the routing file's [ingest.alertmanager] (decisions/routing.py); a policy without one: the defaults
        return getattr(rt.policy, "alertmanager", DEFAULT_MAPPING)

    def limited(way: str, request: Any) -> aioweb.Response | None:
        """The 429 of a client over its rate, or None."""
        key = client_key(request.remote, request.headers.get("Authorization"))
        wait = limits.take(key, time.monotonic())
        if wait <= 0:
            return None
        metrics.ingest_requests.labels(way, "429").inc()
        reason = f"too many requests from this client (TOCSIN_INGEST_RATE_PER_S={s.ingest_rate_per_s:g}, " \
                 f"TOCSIN_INGEST_BURST={s.ingest_burst}); retry in {wait:.2f} s"
        return ANSWERS[way](429, reason, retry_after(wait))

    async def body_of(request: Any) -> tuple[Any, str | None]:
        raw = await request.read()
        try:
            return orjson.loads(raw), None
        except orjson.JSONDecodeError as exc:
            return None, f"the body is not JSON: {exc}"

    async def take(way: str, request: Any, parse: Callable[[Any, dt.datetime], Mapped]) -> aioweb.Response:
        answer = ANSWERS[way]
        refused = limited(way, request)
        if refused is not None:
            return refused
        data, bad = await body_of(request)
        if bad is None:
            try:
                mapped = parse(data, dt.datetime.now(dt.UTC))
            except BadAlert as exc:
                bad = str(exc)
        if bad is not None:
            metrics.ingest_requests.labels(way, "400").inc()
            return answer(400, bad)
        why = await publish(rt, alert_records(rt, mapped.events))
        if why is not None:
            log.warning("ingest %s: %d alerts not acknowledged: %s", way, len(mapped.events), why)
            metrics.ingest_requests.labels(way, "503").inc()
            return answer(503, why, {"Retry-After": "5"})
        metrics.ingest_alerts.labels(way, "accepted").inc(len(mapped.events))
        if mapped.errors:
            metrics.ingest_alerts.labels(way, "invalid").inc(len(mapped.errors))
            metrics.ingest_requests.labels(way, "400").inc()
            log.info("ingest %s: %d alerts taken, refused: %s", way, len(mapped.events), "; ".join(mapped.errors)[:500])
            return answer(400, "; ".join(mapped.errors))
        metrics.ingest_requests.labels(way, "200").inc()
        return answer(200)

    skew = s.max_future_skew_s

    class AlertmanagerV2Alerts(faust_web.View):
        async def post(self, request: Any, **kw: Any) -> Any:
            return await take(V2, request, lambda d, now: map_postable(
                d, now, mapping(), source="alertmanager_api", max_future_skew_s=skew))

    class AlertmanagerV1Alerts(faust_web.View):
        async def post(self, request: Any, **kw: Any) -> Any:
            return await take(V1, request, lambda d, now: map_postable(
                d, now, mapping(), source="alertmanager_api", max_future_skew_s=skew))

    class AlertmanagerWebhook(faust_web.View):
        async def post(self, request: Any, **kw: Any) -> Any:
            return await take(WEBHOOK, request, lambda d, now: map_webhook(d, now, mapping(), max_future_skew_s=skew))

    class PagerDutyEnqueue(faust_web.View):
        async def post(self, request: Any, **kw: Any) -> Any:
            refused = limited(PD, request)
            if refused is not None:
                return refused
            data, bad = await body_of(request)
            now = dt.datetime.now(dt.UTC)
            parsed = pagerduty.parse_event(data, now, max_future_skew_s=skew) if bad is None else [bad]
            if isinstance(parsed, list):
                metrics.ingest_requests.labels(PD, "400").inc()
                return _answer_pd(400, parsed)
            known = rt.tables.status.get(parsed.dedup_key)
            known = known if isinstance(known, dict) else None
            if parsed.action == "acknowledge":
                ack = pagerduty.acknowledge_event(parsed.dedup_key, now, known, parsed.client)
                records = [(rt.topics.lifecycle.get_topic_name(), parsed.dedup_key.encode(), dumps(ack))]
            else:
                alert = parsed.alert if parsed.action == "trigger" else pagerduty.resolve_alert(
                    parsed.dedup_key, now, s.throttle_window_s, known)
                assert alert is not None
                records = alert_records(rt, [alert])
            why = await publish(rt, records)
            if why is not None:
                log.warning("ingest pagerduty %s of %r not acknowledged: %s", parsed.action, parsed.dedup_key[:100], why)
                metrics.ingest_requests.labels(PD, "503").inc()
                return _answer_pd(503, why, {"Retry-After": "5"})
            metrics.ingest_alerts.labels(PD, "accepted").inc()
            metrics.ingest_requests.labels(PD, "202").inc()
            return json_answer({"status": "success", "message": "Event processed", "dedup_key": parsed.dedup_key}, 202)

    class AlertmanagerStatus(faust_web.View):
        async def get(self, request: Any, **kw: Any) -> Any:
            return json_answer({
                "cluster": {"status": "ready" if rt.ready() else "settling", "name": s.worker_id or "tocsin",
                            "peers": []},
                "versionInfo": {"version": AM_VERSION, "revision": f"tocsin-{tocsin_version}", "branch": "",
                                "buildUser": "tocsin", "buildDate": "", "goVersion": ""},
                "config": {"original": ""},
                "uptime": started.isoformat().replace("+00:00", "Z"),
            }, 200)

    class AlertmanagerReady(faust_web.View):
        async def get(self, request: Any, **kw: Any) -> Any:
            if rt.ready():
                return aioweb.Response(text="OK", status=200)
            return aioweb.Response(text="Service Unavailable", status=503)

    class AlertmanagerHealthy(faust_web.View):
        async def get(self, request: Any, **kw: Any) -> Any:
            return aioweb.Response(text="OK", status=200)

    app.page("/api/v2/alerts")(AlertmanagerV2Alerts)
    app.page("/api/v1/alerts")(AlertmanagerV1Alerts)
    app.page("/api/ingest/alertmanager")(AlertmanagerWebhook)
    app.page("/v2/enqueue")(PagerDutyEnqueue)
    app.page("/api/v2/status")(AlertmanagerStatus)
    app.page("/-/ready")(AlertmanagerReady)
    app.page("/-/healthy")(AlertmanagerHealthy)
