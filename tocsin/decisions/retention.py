"""How long state is kept: pure decisions over plain values, the clock passed in.

- A fingerprint's **status** (the status table) is kept while it is open (``active``,
  ``acknowledged``) and for ``TOCSIN_STATUS_RETENTION_S`` after it was closed (``resolved``,
  ``dismissed``); ClickHouse keeps its history. Closed *when*: the later of its
  ``status_changed_at`` and its ``last_seen`` (event times, so a replay decides the same).
- A **delivery state** (the delivery table, delivery_id → sent/dead) is kept for
  ``TOCSIN_DELIVERY_STATE_RETENTION_S`` after it was written: past it, no replay or retry of
  its command is expected any more (core/settings.py says how the default is made).

Each returns an ``Expiry``: whether, and why (the reason is for logs and tests).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any, NamedTuple

OPEN = ("active", "acknowledged")
CLOSED = ("resolved", "dismissed")


class Expiry(NamedTuple):
    expired: bool
    reason: str


def parse_time(value: Any) -> dt.datetime | None:
    """An RFC 3339 time as the status table holds it (``...Z``), or None when it is none."""
    if not isinstance(value, str) or not value:
        return None
    try:
        t = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo is not None else t.replace(tzinfo=dt.UTC)


def closed_at(status: Mapping[str, Any]) -> dt.datetime | None:
    """When a closed status was closed: the later of ``status_changed_at`` and ``last_seen``
    (a suppressed occurrence from before the resolve may move ``last_seen`` without reopening
    it); None when it is open or has neither time."""
    if status.get("status") not in CLOSED:
        return None
    times = [t for t in (parse_time(status.get("status_changed_at")), parse_time(status.get("last_seen")))
             if t is not None]
    return max(times) if times else None


def status_expiry(status: Mapping[str, Any] | None, now: dt.datetime, retention_s: float) -> Expiry:
    """Whether the status table forgets this status at ``now``: only a closed one, exactly
    once ``retention_s`` has passed since it was closed."""
    if status is None:
        return Expiry(False, "no status")
    state = status.get("status")
    if state in OPEN:
        return Expiry(False, f"{state}: kept while open")
    if state not in CLOSED:
        return Expiry(False, f"status {state!r} is not a closed one: kept")
    since = closed_at(status)
    if since is None:
        return Expiry(False, f"{state} at no known time: kept")
    age = now - since
    if age >= dt.timedelta(seconds=retention_s):
        return Expiry(True, f"{state} {age.total_seconds():.0f} s ago, past the {retention_s:g} s retention")
    return Expiry(False, f"{state} {age.total_seconds():.0f} s ago, within the {retention_s:g} s retention")


def delivery_expiry(written_s: float | None, now_s: float, retention_s: float) -> Expiry:
    """Whether a delivery state written at ``written_s`` (epoch seconds; None: unknown) is
    forgotten at ``now_s``: exactly once ``retention_s`` has passed."""
    if written_s is None:
        return Expiry(False, "written at no known time: kept")
    age = now_s - written_s
    if age >= retention_s:
        return Expiry(True, f"written {age:.0f} s ago, past the {retention_s:g} s retention")
    return Expiry(False, f"written {age:.0f} s ago, within the {retention_s:g} s retention")
