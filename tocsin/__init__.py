"""Tocsin: alert events in, throttled notifications out."""

from .schemas import AlertEvent, create_alert, dumps

__all__ = ["AlertEvent", "create_alert", "dumps", "encode"]
__version__ = "0.1.0"


def encode(event: AlertEvent) -> bytes:
    """The bytes to publish on ``<prefix>.alerts`` for an event (key: ``event.fingerprint``)."""
    return dumps(event)
