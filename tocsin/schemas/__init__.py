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
        "'SEV1'..'SEV3'; event_timestamp must carry an offset and be at most "
        "TOCSIN_MAX_FUTURE_SKEW_S (300 s) ahead of the worker's clock; summary over 255 "
        "characters is cut; details over 8 KiB are truncated; the fingerprint and resolves, "
        "given or derived from the entity, are at most 512 characters; a message is at most "
        "TOCSIN_MAX_MESSAGE_BYTES (64 KiB)."
    )
    return schema
