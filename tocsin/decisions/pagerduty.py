"""PagerDuty Events API v2 events (``POST /v2/enqueue``) as Tocsin's. Pure: the clock and the
key generator are parameters; no I/O.

- ``trigger`` → an AlertEvent: ``dedup_key`` is the fingerprint (a trigger without one gets a
  fresh key, answered to the client); ``payload.summary`` the summary (cut to 255, the whole
  kept in the details); ``payload.severity`` critical → 1, error/warning → 2, info → 3;
  ``payload.timestamp`` (else now) the event time; ``payload.class`` the type (normalized,
  else ``pagerduty``); source, component, group, class, custom_details, links and images the
  details;
- ``acknowledge`` → a LifecycleEvent (acknowledge) on ``P.lifecycle`` for the fingerprint;
- ``resolve`` → an AlertEvent with ``action: resolve`` (type, severity and summary of the
  alert it resolves when the status table knows it). Its alert_id is derived from the key and
  the throttle window it falls in: a resolve sent again in the same window is the same alert,
  with the same delivery ids, so it is delivered once.

Validation answers as PagerDuty does: every error of the event, in a list.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from ..schemas.alert import AlertEvent, parse_timestamp
from ..schemas.messages import NAMESPACE, LifecycleAction, LifecycleEvent
from .alertmanager import normalize_type

SEVERITIES: Mapping[str, int] = {"critical": 1, "error": 2, "warning": 2, "info": 3}
ACTIONS = ("trigger", "acknowledge", "resolve")
DEDUP_KEY_MAX = 255
SUMMARY_MAX = 1024
DEFAULT_TYPE = "pagerduty"
#: longest optional payload string kept (source, component, group, class)
FIELD_MAX = 1024
#: most links and images kept
LINKS_MAX = 20


@dataclass(frozen=True)
class PdEvent:
    """One valid event: what it does, to which key, and (trigger) the alert it carries."""

    action: str
    dedup_key: str
    #: the key was made here (a trigger without one)
    generated: bool = False
    alert: AlertEvent | None = None
    client: str | None = None


def _string(d: Mapping[str, Any], key: str, where: str, errors: list[str], *, limit: int = FIELD_MAX,
            required: bool = False) -> str | None:
    v = d.get(key)
    if v is None or (isinstance(v, str) and not v.strip() and required):
        if required:
            errors.append(f"'{where}{key}' is missing or blank")
        return None
    if not isinstance(v, str):
        errors.append(f"'{where}{key}' must be a string")
        return None
    if len(v) > limit:
        errors.append(f"'{where}{key}' is too long (at most {limit} characters)")
        return None
    return v


def _links(v: Any, key: str, fields: tuple[str, ...], required: str, errors: list[str]) -> list[dict[str, str]]:
    if v is None:
        return []
    if not isinstance(v, list):
        errors.append(f"'{key}' must be an array")
        return []
    out = []
    for i, item in enumerate(v[:LINKS_MAX]):
        if not isinstance(item, dict) or not isinstance(item.get(required), str) or not item[required]:
            errors.append(f"'{key}[{i}].{required}' is missing or blank")
            continue
        out.append({f: str(item[f])[:FIELD_MAX] for f in fields if isinstance(item.get(f), str)})
    return out


def parse_event(data: Any, now: dt.datetime, new_key: Callable[[], str] = lambda: uuid.uuid4().hex, *,
                max_future_skew_s: float = 300.0) -> PdEvent | list[str]:
    """A posted event as a PdEvent, or the list of what is wrong with it."""
    if not isinstance(data, dict):
        return ["Event object must be a JSON object"]
    errors: list[str] = []
    _string(data, "routing_key", "", errors, limit=DEDUP_KEY_MAX, required=True)
    action = data.get("event_action")
    if action is None or action == "":
        errors.append("'event_action' is missing or blank")
    elif not isinstance(action, str) or action not in ACTIONS:
        errors.append(f"'event_action' is invalid (must be one of {', '.join(ACTIONS)})")
    key = _string(data, "dedup_key", "", errors, limit=DEDUP_KEY_MAX)
    if key is not None and not key.strip():
        key = None
    if action in ("acknowledge", "resolve") and key is None:
        errors.append(f"'dedup_key' is missing or blank (required to {action})")
    client = _string(data, "client", "", errors)
    client_url = _string(data, "client_url", "", errors)
    links = _links(data.get("links"), "links", ("href", "text"), "href", errors)
    images = _links(data.get("images"), "images", ("src", "href", "alt"), "src", errors)
    if action != "trigger":
        if errors:
            return errors
        assert isinstance(action, str) and key is not None
        return PdEvent(action, key, client=client)

    payload = data.get("payload")
    if not isinstance(payload, dict):
        errors.append("'payload' is missing or not an object")
        return errors
    summary = _string(payload, "summary", "payload.", errors, limit=SUMMARY_MAX, required=True)
    source = _string(payload, "source", "payload.", errors, required=True)
    sev = payload.get("severity")
    if sev is None or sev == "":
        errors.append("'payload.severity' is missing or blank")
    elif not isinstance(sev, str) or sev not in SEVERITIES:
        errors.append(f"'payload.severity' is invalid (must be one of {', '.join(SEVERITIES)})")
    when = now
    ts = payload.get("timestamp")
    if ts is not None:
        try:
            when = parse_timestamp(ts)
        except ValueError:
            errors.append("'payload.timestamp' is not an ISO 8601 time with an offset")
        else:
            if (when - now).total_seconds() > max_future_skew_s:
                errors.append(f"'payload.timestamp' is more than {max_future_skew_s:g} s ahead of this "
                              "worker's clock (TOCSIN_MAX_FUTURE_SKEW_S)")
    parts = {k: _string(payload, k, "payload.", errors) for k in ("component", "group", "class")}
    custom = payload.get("custom_details")
    if errors:
        return errors
    assert summary is not None and isinstance(sev, str)
    generated = key is None
    key = key if key is not None else new_key()
    details: dict[str, Any] = {"source": source, **{k: v for k, v in parts.items() if v},
                               "pagerduty_severity": sev, "dedup_key": key}
    if custom is not None:
        details["custom_details"] = custom
    if len(summary.strip()) > 255:
        details["summary"] = summary
    for name, value in (("links", links), ("images", images)):
        if value:
            details[name] = value
    for name, text in (("client", client), ("client_url", client_url)):
        if text:
            details[name] = text
    event_data = {
        # the same event posted again (a client's retry) is the same alert
        "alert_id": uuid.uuid5(NAMESPACE, f"pagerduty/trigger/{key}/{when.isoformat()}/{summary}")
        if ts is not None else uuid.uuid4(),
        "type": normalize_type(parts["class"] or "") or DEFAULT_TYPE,
        "severity": SEVERITIES[sev],
        "event_timestamp": when,
        "fingerprint": key,
        "summary": summary,
        "details": details,
        "source": "pagerduty",
    }
    try:
        alert = AlertEvent.model_validate(event_data)
    except ValidationError as exc:
        return [f"'{'.'.join(str(p) for p in e.get('loc', ()))}': {e.get('msg', 'invalid')}"
                for e in exc.errors(include_url=False)][:20]
    return PdEvent("trigger", key, generated, alert, client)


def resolve_alert(dedup_key: str, now: dt.datetime, window_s: int, known: Mapping[str, Any] | None) -> AlertEvent:
    """The resolve of ``dedup_key``, with the type, severity and summary of the alert the
    status table ``known`` (None: unknown) holds for it."""
    k = known or {}
    severity = k.get("severity") if k.get("severity") in (1, 2, 3) else 3
    bucket = int(now.timestamp() // window_s)
    return AlertEvent.model_validate({
        "alert_id": uuid.uuid5(NAMESPACE, f"pagerduty/resolve/{dedup_key}/{bucket}"),
        "type": k.get("type") or DEFAULT_TYPE,
        "severity": severity,
        "event_timestamp": now,
        "fingerprint": dedup_key,
        "summary": k.get("summary") or f"{dedup_key} resolved",
        "details": {"dedup_key": dedup_key, "pagerduty_action": "resolve"},
        "source": "pagerduty",
        "action": "resolve",
        "resolves": dedup_key,
    })


def acknowledge_event(dedup_key: str, now: dt.datetime, known: Mapping[str, Any] | None,
                      client: str | None = None) -> LifecycleEvent:
    """The acknowledge of ``dedup_key`` for ``P.lifecycle``."""
    alert_id = (known or {}).get("alert_id")
    return LifecycleEvent(fingerprint=dedup_key, action=LifecycleAction.ACKNOWLEDGE,
                          by=f"pagerduty:{client}"[:255] if client else "pagerduty", note="PagerDuty Events v2",
                          at=now, alert_id=alert_id)
