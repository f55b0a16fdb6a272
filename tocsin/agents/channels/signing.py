"""Webhook signatures: ``sign`` makes the ``X-Tocsin-Signature`` of a body, ``verify`` is
the receiver's check of it (the recipe in ``SIGNING.md``, for receivers with Tocsin
installed).

The signature is ``v1=`` + hex HMAC-SHA256 of ``timestamp + "." + body``, keyed with the
destination's secret; ``timestamp`` (``X-Tocsin-Timestamp``) is the Unix time in seconds when
it was sent, and a receiver refuses one more than ``SIGNATURE_TOLERANCE_S`` from its clock.
"""

from __future__ import annotations

import hashlib
import hmac
import math

SIGNATURE_TOLERANCE_S = 300


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """``X-Tocsin-Signature``: ``v1=`` + hex HMAC-SHA256 of ``timestamp + "." + body``."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "v1=" + mac.hexdigest()


def verify(secret: str, timestamp: str, body: bytes | str, signature: str, now: float,
           tolerance_s: float = SIGNATURE_TOLERANCE_S) -> bool:
    """The receiver's check (SIGNING.md): the signature is ours and the timestamp fresh.

    ``timestamp`` and ``signature`` are the ``X-Tocsin-Timestamp`` and
    ``X-Tocsin-Signature`` headers as received, ``body`` the raw request body, ``now``
    the receiver's clock in epoch seconds. Constant-time comparison; never raises.
    """
    if not isinstance(timestamp, str) or not isinstance(signature, str):
        return False
    try:
        sent = int(timestamp)
    except ValueError:
        return False
    if not math.isfinite(now) or abs(now - sent) > tolerance_s:
        return False
    raw = body.encode() if isinstance(body, str) else bytes(body)
    expected = sign(secret, timestamp, raw)
    return hmac.compare_digest(expected.encode(), signature.encode("utf-8", "replace"))


__all__ = ["SIGNATURE_TOLERANCE_S", "sign", "verify"]
