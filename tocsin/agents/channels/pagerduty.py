"""PagerDuty channel: the Events API v2 (``POST {api_base}/v2/enqueue``, JSON).

One incident per problem: ``dedup_key`` is the alert's fingerprint (a recovery's: the
fingerprint it resolves), so a notified alert is a ``trigger``, its recovery a ``resolve``,
and an on-call's acknowledge in Tocsin an ``acknowledge`` (``relays`` below, called by the
lifecycle agent for fingerprints that were paged). A fingerprint longer than PagerDuty's 255
characters is cut and ends with a hash of the whole, the same for all three.

Settings: ``pagerduty:default`` takes the routing key (the integration key of an Events API v2
integration) from ``TOCSIN_PAGERDUTY_ROUTING_KEY`` and the API base from
``TOCSIN_PAGERDUTY_API_BASE`` (default ``https://events.pagerduty.com``; tests and proxies
stand in for it); a named destination names them in the routing file (``routing_key_env``,
``api_base_env``). The routing key is a secret: it travels in the body only and never appears
in a result, a log line or a repr.

PagerDuty answers 202 ``{"status": "success", "dedup_key": ...}``; 400 ``{"status": "invalid
event", "errors": [...]}`` (permanent); 429 when the integration's rate is exceeded
(retryable, its Retry-After honoured); 5xx (retryable): the shared HTTP classification of
``HttpChannel`` (http.py), whose transport reads an answer to 64 KiB at most.
Limit: 120 events a minute per routing key (``default_rate_per_s``).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from typing import Any, Literal

import aiohttp

from ...schemas.codec import dumps
from ...schemas.messages import DeliveryCommand, LifecycleAction, LifecycleEvent, delivery_id_for
from . import text as safe
from .base import DeliveryResult, payload_dict, redact_url
from .http import Answer, HttpChannel

log = logging.getLogger(__name__)

EVENTS_API = "https://events.pagerduty.com"
SEVERITY = {1: "critical", 2: "error", 3: "warning"}
DEDUP_KEY_MAX = 255  # PagerDuty's limit
SUMMARY_MAX = 1024  # PagerDuty's limit on payload.summary
SOURCE_MAX = 255
#: the on-call actions relayed to PagerDuty, as its event actions
RELAYED: dict[LifecycleAction, Literal["acknowledge", "resolve"]] = {
    LifecycleAction.ACKNOWLEDGE: "acknowledge", LifecycleAction.RESOLVE: "resolve"}
#: who resolved when a recovery did: its resolve reaches PagerDuty as the recovery's notification
RECOVERY_BY = "tocsin:recovery"


def dedup_key(fingerprint: str) -> str:
    """The fingerprint, or, past 255 characters, its first 238 and 16 hex of its SHA-256."""
    if len(fingerprint) <= DEDUP_KEY_MAX:
        return fingerprint
    digest = hashlib.sha256(fingerprint.encode()).hexdigest()[:16]
    return f"{fingerprint[:DEDUP_KEY_MAX - 17]}~{digest}"


def event_action(command: DeliveryCommand) -> str:
    if command.lifecycle is not None:
        return command.lifecycle
    return "resolve" if command.alert.is_recovery else "trigger"


def incident_of(command: DeliveryCommand) -> str:
    """The fingerprint whose incident the command is about."""
    a = command.alert
    if a.is_recovery and command.lifecycle is None:
        return a.resolves or a.fingerprint
    return a.fingerprint


def render(command: DeliveryCommand, routing_key: str) -> dict[str, Any]:
    """The Events API v2 event of a command: a trigger with its ``payload``, an acknowledge or
    a resolve with the ``dedup_key`` only."""
    a = command.alert
    action = event_action(command)
    event: dict[str, Any] = {
        "routing_key": routing_key,
        "event_action": action,
        "dedup_key": dedup_key(incident_of(command)),
    }
    if action != "trigger":
        return event
    text = safe.plain(payload_dict(command)["text"])
    details: dict[str, Any] = {"type": a.type, "fingerprint": a.fingerprint, "alert_id": str(a.alert_id),
                               **a.entity.model_dump(exclude_none=True)}
    if command.suppressed_count:
        details["suppressed_count"] = command.suppressed_count
    if a.details:
        details["details"] = a.details
    event["payload"] = {
        "summary": text if len(text) <= SUMMARY_MAX else text[: SUMMARY_MAX - 1] + "…",
        "source": safe.plain(a.source or "tocsin")[:SOURCE_MAX] or "tocsin",
        "severity": SEVERITY[a.severity],
        "timestamp": a.event_timestamp.isoformat().replace("+00:00", "Z"),
        "class": a.type,
        "custom_details": details,
    }
    if a.entity.account_id:
        event["payload"]["group"] = safe.plain(a.entity.account_id)
    if a.entity.strategy_id:
        event["payload"]["component"] = safe.plain(a.entity.strategy_id)
    event["client"] = "Tocsin"
    return event


class PagerDutyChannel(HttpChannel):
    channel = "pagerduty"
    default_rate_per_s = 2.0  # PagerDuty: 120 events a minute per routing key

    def __init__(self, destination: str, routing_key: str, api_base: str = EVENTS_API, timeout_s: float = 10.0,
                 session: aiohttp.ClientSession | None = None) -> None:
        super().__init__(destination, timeout_s, session)
        self._routing_key = routing_key
        self.api_base = api_base.rstrip("/")
        self.url = f"{self.api_base}/v2/enqueue"

    def secrets(self) -> list[str]:
        return [self._routing_key] if self._routing_key else []

    def target(self) -> str:
        return f"POST {redact_url(self.url)}"

    def body(self, command: DeliveryCommand) -> bytes:
        return dumps(render(command, self._routing_key))

    def failure_text(self, resp: Answer, body: Any) -> str:
        if isinstance(body, dict) and isinstance(body.get("message"), str):
            errors = body.get("errors")
            extra = "; ".join(str(e)[:200] for e in errors[:5]) if isinstance(errors, list) else ""
            return f"HTTP {resp.status}: {body['message'][:200]}" + (f" ({extra})" if extra else "")
        return super().failure_text(resp, body)

    async def send(self, command: DeliveryCommand) -> DeliveryResult:
        return await self.send_body(command, self.url)


def relays(status: Mapping[str, Any] | None, event: LifecycleEvent) -> list[DeliveryCommand]:
    """The commands relaying an on-call action to the PagerDuty destinations its fingerprint
    was paged on (``status["paged"]``, folded from the decisions' destinations): acknowledge,
    and resolve by a person (a recovery's resolve reaches PagerDuty as its notification).
    Deterministic: the same lifecycle event gives the same delivery ids."""
    if not status or event.action not in RELAYED or not status.get("alert_id"):
        return []
    if event.action is LifecycleAction.RESOLVE and event.by == RECOVERY_BY:
        return []
    paged = [d for d in status.get("paged") or () if isinstance(d, str) and d.startswith("pagerduty:")]
    if not paged:
        return []
    from pydantic import ValidationError

    from ...schemas.alert import AlertEvent

    try:
        alert = AlertEvent.model_validate({
            "alert_id": status["alert_id"], "type": status.get("type"), "severity": status.get("severity"),
            "summary": status.get("summary") or event.fingerprint, "event_timestamp": event.at,
            "fingerprint": event.fingerprint, "entity": status.get("entity") or {}, "source": status.get("source"),
            "details": {"by": event.by, **({"note": event.note} if event.note else {})},
        })
    except ValidationError as exc:  # a status this cannot describe: the action is folded all the same
        log.warning("pagerduty: the %s of %s is not relayed: %s", event.action.value, event.fingerprint,
                    str(exc).replace("\n", " ")[:300])
        return []
    key = f"{event.fingerprint}:{event.action.value}:{event.event_id}"
    return [DeliveryCommand(delivery_id=delivery_id_for(key, dest, dest), alert=alert, dedupe_key=key, receiver=dest,
                            destination=dest, lifecycle=RELAYED[event.action])
            for dest in sorted(set(paged))]


__all__ = ["EVENTS_API", "PagerDutyChannel", "dedup_key", "event_action", "relays", "render"]
