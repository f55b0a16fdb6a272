"""Pydantic models of every message and record, the codec and the alert rules. No I/O."""

from .alert import KNOWN_TYPES, RECOVERS, AlertEvent, Entity, create_alert, sanitize_details
from .codec import dumps, loads
from .messages import (
    AttemptStatus,
    Decision,
    DeliveryAttempt,
    DeliveryCommand,
    InvalidAlert,
    LifecycleAction,
    LifecycleEvent,
    Outcome,
    SourcePosition,
    delivery_id_for,
)
from .validate import validate_raw

__all__ = [
    "KNOWN_TYPES", "RECOVERS", "AlertEvent", "Entity", "create_alert", "sanitize_details",
    "dumps", "loads", "AttemptStatus", "Decision", "DeliveryAttempt", "DeliveryCommand",
    "InvalidAlert", "LifecycleAction", "LifecycleEvent", "Outcome", "SourcePosition",
    "delivery_id_for", "validate_raw",
]


def json_schema() -> dict:
    """The JSON Schema of the alert event, as producers in any language see it."""
    schema = AlertEvent.model_json_schema(mode="validation")
    schema["title"] = "Tocsin AlertEvent"
    schema["description"] = (
        "An alert event on <prefix>.alerts, keyed by fingerprint. severity also accepts "
        "'SEV1'..'SEV3'; event_timestamp must carry an offset; summary over 255 characters "
        "is cut; details over 8 KiB are truncated."
    )
    return schema
