"""Messages on Tocsin's topics other than the alert event (DESIGN "Topics").

Changes are additive: new fields get defaults, none is renamed or removed.
"""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import re
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from .alert import AlertEvent, constructed, fast_alert, uuid_text

NAMESPACE = uuid.UUID("6d1f3c2e-8a44-4c57-9a0e-2b7f51f0c9d1")


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Outcome(str, enum.Enum):
    NOTIFY = "notify"
    SUPPRESS = "suppress"
    BYPASS = "bypass"
    #: muted by a silence (decisions/silence.py); the decision's reason is the silence's id
    SILENCED = "silenced"
    #: muted by a maintenance window (decisions/maintenance.py); the reason names the window
    MUTED = "muted"
    #: the end of a throttle window with suppressed repeats, notified as one digest
    #: (decisions/windows.py); the reason says how many and which window
    DIGEST = "digest"
    #: muted by an inhibition rule while a source alert fires (decisions/inhibit.py); the reason is the rule's name
    INHIBITED = "inhibited"
    #: a step of an escalation policy fired (decisions/escalation.py); the reason names the step
    ESCALATED = "escalated"
    #: an escalation stopped, held (acknowledged, resolved) or joined another; the reason says which
    ESCALATION_STOPPED = "escalation_stopped"
    #: held for its group's notification (decisions/grouping.py); the reason is the group key
    GROUPED = "grouped"
    #: flap detection (decisions/flapping.py): the one notification that a fingerprint flaps
    #: (destinations set), or an event of a flapping fingerprint recorded, not notified (none)
    FLAPPING = "flapping"


#: outcomes recorded by the escalation agent about an alert already decided: not an occurrence
ESCALATION_OUTCOMES = frozenset({Outcome.ESCALATED, Outcome.ESCALATION_STOPPED})


class Decision(BaseModel):
    """The throttle's decision about one valid alert (``P.decisions``, key fingerprint)."""

    model_config = ConfigDict(extra="ignore")

    decision_id: uuid.UUID
    alert: AlertEvent
    dedupe_key: str
    outcome: Outcome
    reason: str
    window_start: dt.datetime
    suppressed_count: int = 0
    destinations: list[str] = Field(default_factory=list)
    decided_at: dt.datetime = Field(default_factory=utcnow)


_UTC_TEXT = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?Z")
_OUTCOMES = {o.value: o for o in Outcome}


def _utc_text(v: Any) -> dt.datetime | None:
    """A time as Tocsin's encoder writes it (RFC 3339, UTC as Z), or None."""
    if type(v) is not str or not _UTC_TEXT.fullmatch(v):
        return None
    try:
        return dt.datetime.fromisoformat(v)
    except ValueError:
        return None


def fast_decision(data: Any) -> Decision | None:
    """``Decision.model_validate(data, context={"internal": True})`` for a decision as the
    throttle writes it (``data`` as JSON gave it), or None: then the model decides. The same
    values (times as UTC datetimes), built without pydantic's validator calls
    (``alert.fast_alert``); a property test checks it against the model."""
    if type(data) is not dict:
        return None
    get = data.get
    decision_id, alert = uuid_text(get("decision_id")), get("alert")
    text = get("outcome")
    outcome = _OUTCOMES.get(text) if type(text) is str else None
    window_start, decided_at = _utc_text(get("window_start")), _utc_text(get("decided_at"))
    suppressed, destinations = get("suppressed_count", 0), get("destinations", [])
    dedupe_key, reason = get("dedupe_key"), get("reason")
    if (decision_id is None or outcome is None or window_start is None or decided_at is None
            or type(alert) is not dict or type(dedupe_key) is not str or type(reason) is not str
            or type(suppressed) is not int or type(destinations) is not list
            or not all(type(d) is str for d in destinations)):
        return None
    event = fast_alert(alert, internal=True)
    if event is None:
        return None
    return constructed(Decision, {  # type: ignore[no-any-return]
        "decision_id": decision_id, "alert": event, "dedupe_key": dedupe_key, "outcome": outcome,
        "reason": reason, "window_start": window_start, "suppressed_count": suppressed,
        "destinations": list(destinations), "decided_at": decided_at,
    }, set(data.keys() & _DECISION_FIELDS))


_DECISION_FIELDS = frozenset(Decision.model_fields)


def delivery_id_for(dedupe_key: str, receiver: str, destination: str) -> str:
    """Deterministic: the same alert notification to the same destination has one id."""
    raw = f"{dedupe_key}\x1f{receiver}\x1f{destination}".encode()
    return hashlib.sha256(raw).hexdigest()[:32]


class DigestInfo(BaseModel):
    """What makes a delivery command a digest (decisions/windows.py): the throttle window it
    sums up; its ``suppressed_count`` is the window's count when it is released."""

    model_config = ConfigDict(extra="ignore")

    window_start: dt.datetime
    window_s: int
    decision_id: uuid.UUID
    #: the receivers of the window's digest (the decision's destinations)
    destinations: list[str] = Field(default_factory=list)
class EscalationTimer(BaseModel):
    """A command on ``P.deliveries.retry`` that is an escalation step's timer, not a delivery:
    the retry agent releases it to ``P.escalations`` (key fingerprint) at ``not_before``."""

    model_config = ConfigDict(extra="ignore")

    policy: str
    #: the chain: the dedupe key of the notification that started it
    chain: str
    cycle: int = 0
    step: int
    #: the chain's anchor (the notified alert's event time, moved by a resume), epoch seconds
    anchor: float
    #: when it is due, epoch seconds (its command's not_before)
    due: float


class DeliveryCommand(BaseModel):
    """Deliver one alert to one destination (``P.deliveries.<channel>``, key delivery_id)."""

    model_config = ConfigDict(extra="ignore")

    delivery_id: str
    alert: AlertEvent
    dedupe_key: str
    receiver: str
    destination: str
    attempt: int = 1
    max_attempts: int = 5
    backoff_s: list[float] = Field(default_factory=lambda: [1.0, 2.0, 4.0, 8.0])
    not_before: dt.datetime | None = None
    suppressed_count: int = 0
    failover: list[str] = Field(default_factory=list)
    failover_of: str | None = None
    last_error: str | None = None
    redriven: bool = False
    created_at: dt.datetime = Field(default_factory=utcnow)
    #: an on-call action relayed to the destination (PagerDuty's acknowledge), not a notification
    lifecycle: Literal["acknowledge", "resolve"] | None = None
    #: why it waits on ``P.deliveries.retry``: a failed contact (``retry``), an open circuit
    #: (``circuit_open``) or its rate slot (``rate_limited``); the first two are released early
    #: once the destination's breaker closes again, a rate slot is kept
    waiting_for: Literal["retry", "circuit_open", "rate_limited"] | None = None
    #: a digest of a throttle window's suppressed repeats, not the alert's first notification
    digest: DigestInfo | None = None
    #: set on an escalation step's timer (agents/escalation.py), which is no delivery
    escalation: EscalationTimer | None = None
    #: a group's notification (decisions/grouping.notice): its key, flush sequence, reason, the
    #: alerts it lists (``alerts``, most severe first) and how many it has (``total``); ``alert``
    #: is then the group's most severe alert
    group: dict[str, Any] | None = None

    @property
    def channel(self) -> str:
        return self.destination.split(":", 1)[0]

    @property
    def severity(self) -> int:
        return self.alert.severity


class AttemptStatus(str, enum.Enum):
    SENT = "sent"
    FAILED = "failed"  # retryable, will be retried
    DEAD = "dead"  # permanent or exhausted: to the DLQ
    SKIPPED_DUPLICATE = "skipped_duplicate"
    RATE_LIMITED = "rate_limited"
    CIRCUIT_OPEN = "circuit_open"


class DeliveryAttempt(BaseModel):
    """One delivery attempt, whatever its outcome (``P.attempts``, key delivery_id)."""

    model_config = ConfigDict(extra="ignore")

    attempt_id: uuid.UUID = Field(default_factory=uuid.uuid4)
    delivery_id: str
    alert_id: uuid.UUID
    fingerprint: str
    type: str
    severity: int
    channel: str
    destination: str
    attempt: int
    status: AttemptStatus
    reason: str = ""
    response_code: int | None = None
    error: str | None = None
    started_at: dt.datetime
    finished_at: dt.datetime
    latency_ms: float = 0.0


class LifecycleAction(str, enum.Enum):
    ACKNOWLEDGE = "acknowledge"
    RESOLVE = "resolve"
    DISMISS = "dismiss"
    #: back to active: an escalation stopped by the acknowledgement resumes (agents/escalation.py)
    UNACKNOWLEDGE = "unacknowledge"


class LifecycleEvent(BaseModel):
    """An on-call action on a fingerprint (``P.lifecycle``, key fingerprint)."""

    model_config = ConfigDict(extra="ignore")

    event_id: uuid.UUID = Field(default_factory=uuid.uuid4)
    fingerprint: str
    action: LifecycleAction
    by: str = "unknown"
    note: str = ""
    at: dt.datetime = Field(default_factory=utcnow)
    alert_id: uuid.UUID | None = None


class Wake(BaseModel):
    """A timer of a throttle step (flapping: the end of a hold): held on ``P.deliveries.retry``
    (key ``timer_id``) until ``not_before``, then published to ``P.alerts.keyed`` with ``key``
    (a fingerprint: the partition of the step's state), where the throttle agent hands ``body``
    to the step named ``timer``. ``timer`` is the first key of its JSON (how the throttle tells
    it from an alert event without parsing)."""

    model_config = ConfigDict(extra="ignore")

    timer: Literal["flapping"]
    key: str
    timer_id: str
    not_before: dt.datetime
    body: dict[str, Any] = Field(default_factory=dict)


#: how the JSON of a ``Wake`` starts
WAKE_PREFIX = b'{"timer":'


class SourcePosition(BaseModel):
    topic: str
    partition: int
    offset: int


class InvalidAlert(BaseModel):
    """A rejected message, kept with its raw bytes (``P.alerts.invalid``, original key).

    Bounded: the raw bytes kept are cut to TOCSIN_MAX_MESSAGE_BYTES (``raw_truncated``, with the
    original size in ``raw_bytes``), the key to 512 characters (``key_truncated``)."""

    raw: str
    raw_encoding: Literal["text", "base64"]
    key: str | None = None
    source: SourcePosition
    errors: list[str]
    received_at: dt.datetime = Field(default_factory=utcnow)
    #: the size of the message's value as received
    raw_bytes: int | None = None
    raw_truncated: bool = False
    key_truncated: bool = False


def as_record(model: BaseModel) -> dict[str, Any]:
    """The python-mode dump the codec turns into JSON."""
    return model.model_dump(mode="python")


# --------------------------------------------------------------------------- fast records
# The throttle builds its outgoing messages as plain dicts (no per-message model validation);
# tests/unit/agents/test_records.py checks that each validates as its model and dumps identically.


def decision_record(decision_id: uuid.UUID | str, alert: dict[str, Any], dedupe_key: str, outcome: Outcome,
                    reason: str, window_start: dt.datetime, suppressed_count: int,
                    destinations: list[str], decided_at: dt.datetime) -> dict[str, Any]:
    return {
        "decision_id": decision_id,
        "alert": alert,
        "dedupe_key": dedupe_key,
        "outcome": outcome.value,
        "reason": reason,
        "window_start": window_start,
        "suppressed_count": suppressed_count,
        "destinations": destinations,
        "decided_at": decided_at,
    }


def command_record(delivery_id: str, alert: dict[str, Any], dedupe_key: str, receiver: str,
                   destination: str, max_attempts: int, backoff_s: list[float], suppressed_count: int,
                   failover: list[str], created_at: dt.datetime,
                   group: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "delivery_id": delivery_id,
        "alert": alert,
        "dedupe_key": dedupe_key,
        "receiver": receiver,
        "destination": destination,
        "attempt": 1,
        "max_attempts": max_attempts,
        "backoff_s": backoff_s,
        "not_before": None,
        "suppressed_count": suppressed_count,
        "failover": failover,
        "failover_of": None,
        "last_error": None,
        "redriven": False,
        "created_at": created_at,
        "lifecycle": None,
        "waiting_for": None,
        "digest": None,
        "escalation": None,
        "group": group,
    }
