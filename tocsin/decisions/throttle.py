"""The throttle decision: first event of a fingerprint in a bucket is notified, later ones
suppressed and counted; recoveries bypass; an alert a silence mutes (decisions/silence.py) is
``silenced``, before all that. Event time decides, so a replay decides the same."""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from dataclasses import dataclass
from typing import Any, NamedTuple

from ..schemas.alert import AlertEvent
from ..schemas.messages import NAMESPACE, Outcome

#: bits of an alert id the table keeps: enough to tell a re-consumed first event from another
#: one in its window (a collision only re-sends with the same delivery ids, which delivery
#: recognises), few enough that key and count share one small integer
ALERT_KEY_BITS = 40
_KEY_MASK = (1 << ALERT_KEY_BITS) - 1
_PACKED_COUNT_LIMIT = 1 << (63 - ALERT_KEY_BITS)


def alert_key(alert_id: uuid.UUID | str) -> int:
    """The 40-bit key of an alert id the table keeps (the top bits of the UUID)."""
    u = alert_id if isinstance(alert_id, uuid.UUID) else uuid.UUID(str(alert_id))
    return u.int >> (128 - ALERT_KEY_BITS)


@dataclass(frozen=True, slots=True)
class WindowState:
    """What the throttle table holds per (fingerprint, window): the key of the window's first
    (notified) alert and how many were suppressed since."""

    first_alert_id: int
    suppressed: int = 0

    def to_value(self) -> int | tuple[int, int]:
        """One integer, the count above the alert key's bits: CPython stores it in 32 bytes
        where a (key, count) pair cost 92. Past 2**23 suppressed in one window the integer
        would leave JSON's 64-bit range, so such a count is kept as the pair."""
        if self.suppressed < _PACKED_COUNT_LIMIT:
            return (self.suppressed << ALERT_KEY_BITS) | self.first_alert_id
        return (self.first_alert_id, self.suppressed)

    @classmethod
    def from_value(cls, value: object) -> WindowState | None:
        if isinstance(value, WindowState):
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            return cls(value & _KEY_MASK, value >> ALERT_KEY_BITS)
        if not value:
            return None
        pair: Any = value  # [key, count]; from older versions [alert id or its 64-bit key, count]
        first, suppressed = pair[0], pair[1]
        if isinstance(first, str):
            first = alert_key(first)
        elif first > _KEY_MASK:
            first = int(first) >> (64 - ALERT_KEY_BITS)
        return cls(int(first), int(suppressed))


class Verdict(NamedTuple):
    """A throttle decision: immutable, a named tuple (made once per event; a frozen dataclass
    cost its seven ``object.__setattr__`` calls); a changed copy is ``verdict._replace(...)``."""

    outcome: Outcome
    reason: str
    dedupe_key: str
    bucket: int
    window_start: dt.datetime
    suppressed_count: int
    new_state: WindowState | None  # None: leave the table unchanged

    @property
    def notifies(self) -> bool:
        return self.outcome not in (Outcome.SUPPRESS, Outcome.SILENCED, Outcome.MUTED, Outcome.INHIBITED)


def bucket_of(epoch_s: float, window_s: int) -> int:
    return int(epoch_s // window_s)


def dedupe_key_for(fingerprint: str, bucket: int) -> str:
    return f"{fingerprint}:{bucket}"


def decide(
    state: WindowState | None,
    event: AlertEvent,
    window_s: int,
    previous_suppressed: int = 0,
    silenced_by: str | None = None,
    window_tag: str = "",
) -> Verdict:
    """Decide one event against the state of its (fingerprint, bucket).

    ``previous_suppressed`` is the count suppressed in the previous bucket, shown on the
    next notification. A re-consumed notifying event (same alert_id as the window's first)
    is notified again: its delivery ids are the same, so delivery recognises it.
    ``silenced_by`` names the silence that mutes the event (``decisions.silence.silenced_by``):
    it is decided ``silenced`` with that id as its reason and leaves the window untouched, so
    the first alert after the silence is notified. ``window_tag`` follows the bucket in the
    dedupe key of a window other than the default (``decisions.windows.window_tag``).
    """
    bucket = bucket_of(event.epoch, window_s)
    window_start = dt.datetime.fromtimestamp(bucket * window_s, dt.UTC)
    key = dedupe_key_for(event.fingerprint, bucket) + window_tag
    key_of_alert = alert_key(event.alert_id)
    if silenced_by is not None:
        return Verdict(Outcome.SILENCED, silenced_by, f"{key}:{event.alert_id}" if event.is_recovery else key,
                       bucket, window_start, state.suppressed if state else 0, None)
    if event.is_recovery:
        return Verdict(Outcome.BYPASS, "recovery bypasses the throttle", f"{key}:{event.alert_id}",
                       bucket, window_start, state.suppressed if state else 0, None)
    if state is None:
        return Verdict(Outcome.NOTIFY, "first in window", key, bucket, window_start,
                       previous_suppressed, WindowState(key_of_alert, 0))
    if state.first_alert_id == key_of_alert:
        return Verdict(Outcome.NOTIFY, "redelivered first event", key, bucket, window_start,
                       previous_suppressed, None)
    count = state.suppressed + 1
    return Verdict(Outcome.SUPPRESS, "duplicate in window", key, bucket, window_start, count,
                   WindowState(state.first_alert_id, count))


_DECISION_NAME = NAMESPACE.bytes + b"decision/"
_V5_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))
_V5_SET = (0x5000 << 64) | (0x8000 << 48)


def decision_id_for(alert_id: uuid.UUID | str) -> uuid.UUID:
    """One decision per alert: a re-consumed event yields the same decision id.

    ``uuid.uuid5(NAMESPACE, f"decision/{alert_id}")``, computed without its intermediate
    UUID objects (it is on the throttle's per-event path; a test checks they are equal)."""
    digest = hashlib.sha1(_DECISION_NAME + str(alert_id).encode()).digest()  # noqa: S324 (RFC 4122 v5)
    u = object.__new__(uuid.UUID)
    object.__setattr__(u, "int", (int.from_bytes(digest[:16]) & _V5_CLEAR) | _V5_SET)
    object.__setattr__(u, "is_safe", uuid.SafeUUID.unknown)
    return u


#: a hex digit of a v5 UUID's clock_seq_hi with the RFC 4122 variant bits set
_VARIANT_DIGIT = {f"{d:x}": f"{(d & 0x3) | 0x8:x}" for d in range(16)}


def decision_id_text(alert_id: uuid.UUID | str) -> str:
    """``str(decision_id_for(alert_id))``, formatted from the digest's text without the UUID
    object (the throttle's per-event path writes the id as text; a test checks they are equal)."""
    h = hashlib.sha1(_DECISION_NAME + str(alert_id).encode()).hexdigest()  # noqa: S324 (RFC 4122 v5)
    return f"{h[:8]}-{h[8:12]}-5{h[13:16]}-{_VARIANT_DIGIT[h[16]]}{h[17:20]}-{h[20:32]}"
