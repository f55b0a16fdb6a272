"""The lifecycle agent: folds decisions and on-call actions into the status table.

Statuses: ``active`` → ``acknowledged`` → ``resolved`` / ``dismissed``; a resolved or
dismissed fingerprint that fires again is ``active`` again. A recovery (decision ``bypass``)
resolves the fingerprint it names in ``resolves``: the agent writes that as a
``LifecycleEvent(resolve, by="tocsin:recovery")`` on ``P.lifecycle`` keyed by the resolved
fingerprint, so the fold happens on that fingerprint's partition, like every other write.

``fold`` is pure; the agent (concurrency 1, the table's only writer) decodes, folds, writes.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
import weakref
from typing import Any

from faust.streams import _current_event
from pydantic import ValidationError

from ..schemas.codec import dumps
from ..schemas.messages import NAMESPACE, Decision, LifecycleAction, LifecycleEvent, Outcome
from ..streams.app import Runtime
from ..streams.tables import write
from .channels import pagerduty
from .common import decode, keep_bad

log = logging.getLogger(__name__)

#: Tocsin's own messages: their alert's details were sanitized once already (schemas/alert.py)
INTERNAL = {"internal": True}

ACTIVE, ACKNOWLEDGED, RESOLVED, DISMISSED = "active", "acknowledged", "resolved", "dismissed"
STATUSES = (ACTIVE, ACKNOWLEDGED, RESOLVED, DISMISSED)
_BY_ACTION = {LifecycleAction.ACKNOWLEDGE: ACKNOWLEDGED, LifecycleAction.RESOLVE: RESOLVED,
              LifecycleAction.DISMISS: DISMISSED}


def _iso(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def _parse(t: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(t.replace("Z", "+00:00")) if t else None


def empty_status(fingerprint: str) -> dict[str, Any]:
    return {
        "fingerprint": fingerprint, "alert_id": None, "type": None, "severity": None, "summary": None,
        "status": ACTIVE, "occurrences": 0, "suppressed_count": 0, "first_seen": None, "last_seen": None,
        "requires_action": False, "entity": {}, "source": None, "acknowledged_by": None, "note": None,
        "status_changed_at": None, "notified_alert_id": None,
    }


def fold_decision(status: dict[str, Any] | None, d: Decision) -> dict[str, Any]:
    """A valid alert's decision folded into its fingerprint's status."""
    a = d.alert
    s = dict(status) if status else empty_status(a.fingerprint)
    seen = _iso(a.event_timestamp)
    s["occurrences"] += 1
    if d.outcome is Outcome.SUPPRESS:
        s["suppressed_count"] += 1
    newest = s["last_seen"] is None or seen >= s["last_seen"]
    if s["first_seen"] is None or seen < s["first_seen"]:
        s["first_seen"] = seen
    if newest:
        s.update(last_seen=seen, alert_id=str(a.alert_id), type=a.type, severity=a.severity,
                 summary=a.summary, entity=a.entity.model_dump(exclude_none=True), source=a.source,
                 requires_action=a.requires_action)
    if d.outcome is not Outcome.SUPPRESS and d.outcome is not Outcome.SILENCED and newest:
        s["notified_alert_id"] = str(a.alert_id)  # the alert whose deliveries to show
    paged = [x for x in d.destinations if x.startswith("pagerduty:")]
    if paged:  # an on-call action on it is relayed there (channels/pagerduty.py)
        s["paged"] = sorted({*s.get("paged", ()), *paged})
    if ends_problem(d):
        # a recovery is itself resolved: it reports the end of a problem
        if s["status"] != RESOLVED:
            s.update(status=RESOLVED, status_changed_at=seen)
    elif s["status"] in (RESOLVED, DISMISSED):
        changed = _parse(s["status_changed_at"])
        if changed is None or a.event_timestamp >= changed:  # fired again after it was closed
            s.update(status=ACTIVE, status_changed_at=seen, acknowledged_by=None, note=None)
    return s


def fold_action(status: dict[str, Any] | None, e: LifecycleEvent) -> dict[str, Any]:
    """An on-call action (or a recovery's resolve) folded into the status."""
    s = dict(status) if status else empty_status(e.fingerprint)
    s.update(status=_BY_ACTION[e.action], status_changed_at=_iso(e.at), note=e.note or s["note"])
    if e.action is LifecycleAction.ACKNOWLEDGE:
        s["acknowledged_by"] = e.by
    elif e.action is LifecycleAction.RESOLVE:
        s["resolved_by"] = e.by
    return s


def fold(status: dict[str, Any] | None, event: Decision | LifecycleEvent) -> dict[str, Any]:
    if isinstance(event, Decision):
        return fold_decision(status, event)
    return fold_action(status, event)


def ends_problem(d: Decision) -> bool:
    """A recovery, notified (``bypass``) or muted by a silence: the problem ended either way."""
    return d.outcome is Outcome.BYPASS or (d.outcome is Outcome.SILENCED and d.alert.is_recovery)


def recovery_resolve(d: Decision) -> LifecycleEvent | None:
    """The resolve a recovery (or an ``action: resolve`` event) implies, if any."""
    if not ends_problem(d):
        return None
    target = d.alert.resolves
    if not target or target == d.alert.fingerprint:  # its own status is folded as resolved
        return None
    return LifecycleEvent(
        event_id=uuid.uuid5(NAMESPACE, f"recovery/{d.alert.alert_id}"),
        fingerprint=target, action=LifecycleAction.RESOLVE, by="tocsin:recovery",
        note=f"{d.alert.type}: {d.alert.summary}"[:255], at=d.alert.event_timestamp,
        alert_id=d.alert.alert_id,
    )


def register(rt: Runtime) -> None:
    app, topics, s = rt.app, rt.topics, rt.settings
    decisions_name = topics.decisions.get_topic_name()
    source = app.topic(decisions_name, topics.lifecycle.get_topic_name(), key_serializer="raw",
                       value_serializer="raw", partitions=s.partitions)
    table = rt.tables.status
    deliveries = {ch: t.get_topic_name() for ch, t in topics.deliveries.items()}

    @app.agent(source, name=f"{s.topic_prefix}.lifecycle", concurrency=1)
    async def lifecycle(stream: Any) -> None:
        producer = app.producer
        async for events in stream.take_events(1000, within=0.01):
            out: list[tuple[bytes, bytes]] = []
            relayed: list[Any] = []  # on-call actions on paged alerts, for PagerDuty
            # folded per fingerprint through the batch, written once each: the changelog
            # keeps the latest status, so the intermediate ones need no record of their own
            folded: dict[str, tuple[dict[str, Any], Any]] = {}
            for ev in events:
                try:
                    event: Decision | LifecycleEvent
                    if ev.message.topic == decisions_name:
                        decision = Decision.model_validate(decode(ev.value), context=INTERNAL)
                        implied = recovery_resolve(decision)
                        if implied is not None:
                            out.append((implied.fingerprint.encode(), dumps(implied)))
                        event, fp = decision, decision.alert.fingerprint
                    else:
                        event = LifecycleEvent.model_validate(decode(ev.value))
                        fp = event.fingerprint
                    current = folded[fp][0] if fp in folded else table.get(fp)
                    if isinstance(event, LifecycleEvent):  # an on-call action on a paged alert goes to PagerDuty
                        relayed.extend(pagerduty.relays(current, event))
                    folded[fp] = (fold(current, event), ev)
                except (ValidationError, TypeError, ValueError) as exc:
                    await keep_bad(rt, ev, f"lifecycle: {exc}")
                except Exception:
                    log.exception("lifecycle: failed on %s/%s@%s", ev.message.topic, ev.message.partition,
                                  ev.message.offset)
            for fp, (status, ev) in folded.items():
                _current_event.set(weakref.ref(ev))  # its changelog record goes to ev's partition
                await write(app, table, fp, status, ev.message.partition)
            lifecycle_name = topics.lifecycle.get_topic_name()
            for key, value in out:
                await producer.send(lifecycle_name, key, value, None, None, None)
            for cmd in relayed:
                await producer.send(deliveries[cmd.channel], cmd.delivery_id.encode(), dumps(cmd), None, None, None)
