"""Deterministic topic messages for the recording tests.

Built from the real models and encoded the way they travel on the topics (orjson, UTC as
``Z``, UUIDs as strings), then decoded to the dicts a consumer sees.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import orjson
from pydantic import BaseModel

from tocsin.schemas.alert import create_alert
from tocsin.schemas.messages import (
    AttemptStatus,
    Decision,
    DeliveryAttempt,
    LifecycleAction,
    LifecycleEvent,
    Outcome,
    delivery_id_for,
)

NS = uuid.UUID("0b3c5a7e-51b1-4d0e-9c57-6a1f0c2d9e11")
Message = tuple[str, dict[str, Any]]


def wire(model: BaseModel) -> dict[str, Any]:
    """The dict a consumer decodes from the topic (same options as the tocsin codec)."""
    data = orjson.dumps(model.model_dump(mode="python"), option=orjson.OPT_UTC_Z | orjson.OPT_NON_STR_KEYS)
    return dict(orjson.loads(data))


def _id(*parts: object) -> uuid.UUID:
    return uuid.uuid5(NS, "/".join(str(p) for p in parts))


def decision(
    *,
    type: str,
    severity: int,
    at: dt.datetime,
    outcome: Outcome,
    n: int,
    window_s: int = 600,
    suppressed_count: int = 0,
    destinations: list[str] | None = None,
    **alert: Any,
) -> Decision:
    """One alert and the throttle's decision about it; ids derive from (type, at, n)."""
    event = create_alert(type, severity, alert.pop("summary", f"{type} #{n}"), event_timestamp=at,
                         alert_id=_id("alert", type, at.isoformat(), n), **alert)
    bucket = int(event.epoch) // window_s
    return Decision(
        decision_id=_id("decision", event.alert_id),
        alert=event,
        dedupe_key=f"{event.fingerprint}:{bucket}",
        outcome=outcome,
        reason=outcome.value,
        window_start=dt.datetime.fromtimestamp(bucket * window_s, dt.UTC),
        suppressed_count=suppressed_count,
        destinations=destinations or [],
        decided_at=at + dt.timedelta(milliseconds=5),
    )


def attempt(
    d: Decision,
    destination: str,
    n: int,
    status: AttemptStatus,
    at: dt.datetime,
    latency_ms: float,
    response_code: int | None = None,
    error: str | None = None,
) -> DeliveryAttempt:
    delivery_id = delivery_id_for(d.dedupe_key, destination, destination)
    return DeliveryAttempt(
        attempt_id=_id("attempt", delivery_id, n, status.value),
        delivery_id=delivery_id,
        alert_id=d.alert.alert_id,
        fingerprint=d.alert.fingerprint,
        type=d.alert.type,
        severity=d.alert.severity,
        channel=destination.split(":", 1)[0],
        destination=destination,
        attempt=n,
        status=status,
        reason=status.value,
        response_code=response_code,
        error=error,
        started_at=at,
        finished_at=at + dt.timedelta(milliseconds=latency_ms),
        latency_ms=latency_ms,
    )


def lifecycle(fingerprint: str, action: LifecycleAction, at: dt.datetime, by: str = "oncall") -> LifecycleEvent:
    return LifecycleEvent(event_id=_id("lifecycle", fingerprint, action.value, at.isoformat()),
                          fingerprint=fingerprint, action=action, by=by, note="", at=at)


def synthetic_messages(n: int, now: dt.datetime, *, fingerprints: int = 100) -> list[Message]:
    """``n`` decisions and one attempt of each, spread over the hour before ``now``."""
    out: list[Message] = []
    statuses = [AttemptStatus.SENT] * 8 + [AttemptStatus.FAILED, AttemptStatus.DEAD]
    for i in range(n):
        at = now - dt.timedelta(seconds=(i * 3571) % 3600)
        d = decision(type="order_rejected", severity=1 + i % 3, at=at, n=i,
                     outcome=Outcome.NOTIFY if i % 5 == 0 else Outcome.SUPPRESS,
                     account_id=f"acc{i % fingerprints}", symbol="SYM", strategy_id="s",
                     destinations=["webhook:default"])
        out.append(("decisions", wire(d)))
        out.append(("attempts", wire(attempt(d, "webhook:default", 1, statuses[i % 10], at, 5.0 + i % 50))))
    return out


__all__ = ["Message", "attempt", "decision", "lifecycle", "synthetic_messages", "wire"]
