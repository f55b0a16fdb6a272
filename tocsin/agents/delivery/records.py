"""What handling a delivery command writes besides its table state: the attempt record, the
command for the next destination of a failover chain, the SEV1 failure alert; and the
labelled metric children they count with, looked up once."""

from __future__ import annotations

import datetime as dt
import functools
import uuid
from typing import Any

from ...schemas.alert import AlertEvent
from ...schemas.messages import NAMESPACE, AttemptStatus, DeliveryCommand, delivery_id_for
from ..channels.base import DeliveryResult
from ..runtime import Runtime

DELIVERY_FAILED = "alert_delivery_failed"


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@functools.lru_cache(maxsize=4096)
def child(metric: Any, *labels: str) -> Any:
    """A metric's labelled child, looked up once (``labels()`` costs a few µs a call)."""
    return metric.labels(*labels)


def attempt_record(cmd: DeliveryCommand, status: AttemptStatus, started: dt.datetime,
                   finished: dt.datetime, result: DeliveryResult | None = None, reason: str = "",
                   error: str | None = None) -> dict[str, Any]:
    """A DeliveryAttempt as the plain dict its model would dump (a property test checks it),
    built without the model's validation: it is on every delivery's path."""
    a = cmd.alert
    return {
        "attempt_id": uuid.uuid4(),
        "delivery_id": cmd.delivery_id,
        "alert_id": a.alert_id,
        "fingerprint": a.fingerprint,
        "type": a.type,
        "severity": a.severity,
        "channel": cmd.channel,
        "destination": cmd.destination,
        "attempt": cmd.attempt,
        "status": status,
        "reason": reason or (result.reason.value if result else ""),
        "response_code": result.status_code if result else None,
        "error": error if error is not None else (result.error if result else None),
        "started_at": started,
        "finished_at": finished,
        "latency_ms": round((finished - started).total_seconds() * 1000.0, 3),
    }


def failover_command(rt: Runtime, cmd: DeliveryCommand, error: str | None) -> DeliveryCommand:
    """The command for the next destination of ``cmd``'s failover chain (a delivery of its own)."""
    nxt, rest = cmd.failover[0], cmd.failover[1:]
    rp = rt.policy.policy_for(nxt)
    return cmd.model_copy(update={
        "delivery_id": delivery_id_for(cmd.dedupe_key, cmd.receiver, nxt),
        "destination": nxt,
        "failover": list(rest),
        "failover_of": cmd.destination,
        "attempt": 1,
        "max_attempts": rp.max_attempts,
        "backoff_s": list(rp.schedule),
        "not_before": None,
        "last_error": error,
        "created_at": utcnow(),
        "redriven": False,
    })


def failure_alert(cmd: DeliveryCommand, error: str | None) -> AlertEvent:
    """The SEV1 raised when a SEV1's delivery is dead; one per dead delivery (deterministic id),
    throttled per destination, so a down endpoint raises one alert per window, not a flood."""
    a = cmd.alert
    return AlertEvent(
        alert_id=uuid.uuid5(NAMESPACE, f"delivery-failed/{cmd.delivery_id}"),
        type=DELIVERY_FAILED,
        severity=1,
        event_timestamp=utcnow(),
        fingerprint=f"{DELIVERY_FAILED}:{cmd.destination}",
        summary=f"Delivery to {cmd.destination} failed for SEV1 '{a.summary}'"[:255],
        details={
            "delivery_id": cmd.delivery_id,
            "destination": cmd.destination,
            "receiver": cmd.receiver,
            "attempts": cmd.attempt,
            "last_error": error,
            "alert_id": str(a.alert_id),
            "fingerprint": a.fingerprint,
        },
        source="tocsin",
        requires_action=True,
    )
