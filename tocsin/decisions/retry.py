"""Failure classes and the retry schedule (DESIGN "Delivery").

A contact's outcome is classified (``classify_http``, ``classify_smtp``: ok, retryable, and a
``Reason`` that becomes a metric label); a Retry-After is read (``parse_retry_after``). The
schedule has two tiers, fast retries (1, 2, 4, 8 s) riding out a blip, then slow ones (5 min,
30 min, 2 h, 12 h, 24 h) riding out an outage, with a deadline (``max_age_s``, 2 days by
default) after which a command is dead. The delivery decision that follows them is
``decisions.delivery.decide``.
"""

from __future__ import annotations

import datetime as dt
import enum
import math
import random
from dataclasses import dataclass

DEFAULT_BACKOFF_S: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0)
#: the slow tier, after the fast one
DEFAULT_SLOW_BACKOFF_S: tuple[float, ...] = (300.0, 1800.0, 7200.0, 43200.0, 86400.0)
DEFAULT_SCHEDULE_S: tuple[float, ...] = DEFAULT_BACKOFF_S + DEFAULT_SLOW_BACKOFF_S
#: the first contact, then one per step of the schedule
DEFAULT_MAX_ATTEMPTS = 1 + len(DEFAULT_SCHEDULE_S)
DEFAULT_MAX_AGE_S = 2 * 86400.0
JITTER = 0.2  # +/- 20 %
MAX_RETRY_AFTER_S = 3600.0  # the longest Retry-After honoured


class Reason(str, enum.Enum):
    OK = "ok"
    CLIENT_ERROR = "client_error"  # permanent
    SERVER_ERROR = "server_error"
    RATE_LIMITED = "rate_limited"
    TIMEOUT = "timeout"
    CONNECTION = "connection"
    CONFIG = "config"  # permanent: destination misconfigured
    INVALID_MESSAGE = "invalid_message"  # permanent: the channel cannot build this message
    CIRCUIT_OPEN = "circuit_open"
    UNKNOWN = "unknown"


def classify_http(status: int) -> tuple[bool, bool, Reason]:
    """HTTP status -> (ok, retryable, reason). 4xx other than 408/429 is permanent."""
    if 200 <= status < 300:
        return True, False, Reason.OK
    if status == 429:
        return False, True, Reason.RATE_LIMITED
    if status == 408:
        return False, True, Reason.TIMEOUT
    if 400 <= status < 500:
        return False, False, Reason.CLIENT_ERROR
    if 500 <= status < 600:
        return False, True, Reason.SERVER_ERROR
    # 1xx/3xx: the receiver did not take it; try again
    return False, True, Reason.UNKNOWN


def classify_smtp(code: int) -> tuple[bool, bool, Reason]:
    """SMTP reply code -> (ok, retryable, reason). 5xx permanent, 4xx transient."""
    if 200 <= code < 400:
        return True, False, Reason.OK
    if 400 <= code < 500:
        return False, True, Reason.SERVER_ERROR
    return False, False, Reason.CLIENT_ERROR


def parse_retry_after(value: str | None, now: dt.datetime) -> float | None:
    """Retry-After as seconds (delta-seconds or an HTTP date); None if absent or bad.

    Never negative, never more than ``MAX_RETRY_AFTER_S`` (a receiver asking for days, or
    sending ``inf``, must not park a delivery for ever); never raises.
    """
    if not value or not isinstance(value, str):
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        if not math.isfinite(seconds):
            return None
        return min(MAX_RETRY_AFTER_S, max(0.0, seconds))
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    if now.tzinfo is None:
        now = now.replace(tzinfo=dt.UTC)
    try:
        delta = (when - now).total_seconds()
    except OverflowError:
        return None
    return min(MAX_RETRY_AFTER_S, max(0.0, delta))


@dataclass(frozen=True, slots=True)
class RetryPlan:
    retry: bool
    reason: str
    not_before: dt.datetime | None = None
    delay_s: float = 0.0


def plan_retry(
    attempt: int,
    max_attempts: int,
    backoff_s: list[float] | tuple[float, ...],
    retryable: bool,
    now: dt.datetime,
    retry_after_s: float | None = None,
    rng: random.Random | None = None,
) -> RetryPlan:
    """After failed attempt number ``attempt`` (1-based): retry when, or give up why."""
    if not retryable:
        return RetryPlan(False, "permanent failure")
    if attempt >= max_attempts:
        return RetryPlan(False, f"exhausted after {attempt} attempts")
    schedule = list(backoff_s) or list(DEFAULT_BACKOFF_S)
    base = schedule[min(max(attempt, 1) - 1, len(schedule) - 1)]
    r = rng or random
    delay = base * (1.0 + r.uniform(-JITTER, JITTER))
    if retry_after_s is not None and math.isfinite(retry_after_s):
        delay = max(delay, min(retry_after_s, MAX_RETRY_AFTER_S))
    return RetryPlan(True, "retry scheduled", now + dt.timedelta(seconds=delay), delay)
