"""The lifecycle agent: folds decisions and on-call actions into the status table.

Statuses: ``active`` → ``acknowledged`` → ``resolved`` / ``dismissed``; a resolved or
dismissed fingerprint that fires again is ``active`` again. A recovery (decision ``bypass``)
resolves the fingerprint it names in ``resolves``: the agent writes that as a
``LifecycleEvent(resolve, by="tocsin:recovery")`` on ``P.lifecycle`` keyed by the resolved
fingerprint, so the fold happens on that fingerprint's partition, like every other write.

Statuses do not stay for ever: a resolved or dismissed one is forgotten ``TOCSIN_STATUS_RETENTION_S``
after it was closed (``status_expiry``, decisions/retention.py; ClickHouse keeps its history).
A timer of this module (``sweep_statuses``) deletes those of the partitions this worker
writes, each with a tombstone on the changelog to the partition its last record went to.
Deleting is synchronous with the fold's reads and writes (both run on the event loop, with
no wait between the decision and the store's delete) and the records reach a partition in
the order they were made: a status folded again while its tombstone is on the way is
written after it, and kept.

``fold`` is pure; the agent (concurrency 1, the table's only writer) decodes, folds, writes;
a batch's offsets are committed only once its status records and implied resolves were
acknowledged by the broker (agents/outbox.py).
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from typing import Any

from pydantic import ValidationError

from ..core.status_index import StatusIndex, time_us
from ..core.tables import (
    changelog_record,
    note_persisted,
    owned_partitions,
    send_tombstones,
    status_index,
    sweep_interval,
)
from ..decisions.inhibit import closed_facts
from ..decisions.retention import status_expiry
from ..errors import OutboxStopped, RecordRefused
from ..infra import faust_compat
from ..schemas.codec import dumps
from ..schemas.messages import (
    ESCALATION_OUTCOMES,
    NAMESPACE,
    Decision,
    LifecycleAction,
    LifecycleEvent,
    Outcome,
    fast_decision,
)
from .channels import pagerduty
from .common import decode, keep_bad
from .outbox import Record, record
from .runtime import Runtime

log = logging.getLogger(__name__)

#: Tocsin's own messages: their alert's details were sanitized once already (schemas/alert.py)
INTERNAL = {"internal": True}

#: the decision reason a status keeps (the decision record keeps all of it)
REASON_MAX = 200

ACTIVE, ACKNOWLEDGED, RESOLVED, DISMISSED = "active", "acknowledged", "resolved", "dismissed"
STATUSES = (ACTIVE, ACKNOWLEDGED, RESOLVED, DISMISSED)
_BY_ACTION = {LifecycleAction.ACKNOWLEDGE: ACKNOWLEDGED, LifecycleAction.RESOLVE: RESOLVED,
              LifecycleAction.DISMISS: DISMISSED, LifecycleAction.UNACKNOWLEDGE: ACTIVE}


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
    if d.outcome is Outcome.DIGEST:  # the end of a window, not an occurrence (decisions/windows.py)
        return s
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
        # why the latest alert was or was not notified (the dashboard shows it)
        s.update(outcome=d.outcome.value, reason=d.reason[:REASON_MAX])
    if d.outcome not in (Outcome.SUPPRESS, Outcome.SILENCED, Outcome.MUTED, Outcome.INHIBITED) and newest:
        s["notified_alert_id"] = str(a.alert_id)  # the alert whose deliveries to show
    if newest and d.outcome is Outcome.INHIBITED:  # held by an inhibition rule (decisions/inhibit.py)
        s["inhibited_by"] = d.reason
    elif newest:
        s.pop("inhibited_by", None)
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
    elif e.action is LifecycleAction.UNACKNOWLEDGE:
        s["acknowledged_by"] = None
    elif e.action is LifecycleAction.RESOLVE:
        s["resolved_by"] = e.by
    return s


def fold(status: dict[str, Any] | None, event: Decision | LifecycleEvent) -> dict[str, Any]:
    if isinstance(event, Decision):
        return fold_decision(status, event)
    return fold_action(status, event)


def ends_problem(d: Decision) -> bool:
    """A recovery, notified (``bypass``) or muted by a silence, a maintenance window or an
    inhibition: the problem ended either way."""
    return d.outcome is Outcome.BYPASS or (d.outcome in (Outcome.SILENCED, Outcome.MUTED, Outcome.INHIBITED)
                                           and d.alert.is_recovery)


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


#: statuses a sweep deletes before it lets the event loop go on (and sends their tombstones)
SWEEP_MAX = 5_000


def expired_statuses(index: StatusIndex, now: dt.datetime, retention_s: float, owned: set[int],
                     limit: int = SWEEP_MAX) -> list[tuple[str, int]]:
    """Delete from the table's index every status of the ``owned`` partitions past the
    retention at ``now``; the (fingerprint, partition) of each, for its tombstone. The
    columns pick the candidates (the caller applied them); each is decided on its status."""
    before = time_us(now - dt.timedelta(seconds=retention_s))
    out: list[tuple[str, int]] = []
    for fp in index.closed_before(before, owned, limit):
        partition = index.partition_of(fp)
        if partition not in owned or not status_expiry(index.get(fp), now, retention_s).expired:
            continue
        index.discard(fp)
        out.append((fp, partition))
    return out


def register_sweep(rt: Runtime) -> None:
    """The status table's retention: a timer deleting what ``expired_statuses`` finds."""
    app, table = rt.app, rt.tables.status
    retention = rt.settings.status_retention_s
    decisions_name = rt.topics.decisions.get_topic_name()
    index = status_index(table)

    @app.timer(sweep_interval(retention), name=f"{rt.settings.topic_prefix}.status_retention")
    async def sweep_statuses() -> None:
        if not rt.ready():
            return
        try:
            now, deleted = dt.datetime.now(dt.UTC), 0
            while True:  # a chunk at a time, the event loop let go on between them
                async with index.lock:
                    index.apply()
                    keys = expired_statuses(index, now, retention, owned_partitions(app, decisions_name))
                if not keys:
                    break
                deleted += len(keys)
                await send_tombstones(app, table, keys)
            if deleted:
                log.info("status: %d closed statuses past the %g s retention deleted", deleted, retention)
        except Exception:  # the next sweep tries again; a timer that raised would stop
            log.exception("status: the retention sweep failed")


def register(rt: Runtime) -> None:
    app, topics, s = rt.app, rt.topics, rt.settings
    decisions_name = topics.decisions.get_topic_name()
    source = app.topic(decisions_name, topics.lifecycle.get_topic_name(), key_serializer="raw",
                       value_serializer="raw", partitions=s.partitions)
    table = rt.tables.status
    register_sweep(rt)

    lifecycle_name = topics.lifecycle.get_topic_name()
    deliveries = {ch: t.get_topic_name() for ch, t in topics.deliveries.items()}
    # an on-call's resolve/dismiss ends the fingerprint's inhibition as source and target (decisions/inhibit.py)
    inhibitions = topics.inhibitions.get_topic_name() if topics.inhibitions is not None and rt.policy.inhibit_rules else None

    async def fold_batch(events: list[Any]) -> None:
        """Fold a batch into the table; its changelog records and implied resolves are on the
        broker (acknowledged) before this returns."""
        out: list[Record] = []
        owners: list[Any] = []  # the event each record of ``out`` was made from
        # folded per fingerprint through the batch, written once each: the changelog
        # keeps the latest status, so the intermediate ones need no record of their own
        folded: dict[str, tuple[dict[str, Any], Any]] = {}
        for ev in events:
            try:
                event: Decision | LifecycleEvent
                if ev.message.topic == decisions_name:
                    data = decode(ev.value)  # a decision as the throttle writes it without pydantic's validators
                    decision = fast_decision(data) or Decision.model_validate(data, context=INTERNAL)
                    if decision.outcome in ESCALATION_OUTCOMES:  # about an alert folded already
                        continue
                    implied = recovery_resolve(decision)
                    if implied is not None:
                        out.append(record(lifecycle_name, implied.fingerprint, dumps(implied)))
                        owners.append(ev)
                    event, fp = decision, decision.alert.fingerprint
                else:
                    event = LifecycleEvent.model_validate(decode(ev.value))
                    fp = event.fingerprint
                    if (inhibitions is not None and event.by != "tocsin:recovery"  # a recovery's are made already
                            and event.action in (LifecycleAction.RESOLVE, LifecycleAction.DISMISS)):
                        for fact in closed_facts(fp, event.at, str(event.event_id)):
                            out.append(record(inhibitions, fact.key, dumps(fact)))
                            owners.append(ev)
                current = folded[fp][0] if fp in folded else table.get(fp)
                if isinstance(event, LifecycleEvent):  # an on-call action on a paged alert goes to PagerDuty
                    for cmd in pagerduty.relays(current, event):
                        out.append(record(deliveries[cmd.channel], cmd.delivery_id, dumps(cmd)))
                        owners.append(ev)
                folded[fp] = (fold(current, event), ev)
            except (ValidationError, TypeError, ValueError) as exc:
                await keep_bad(rt, ev, f"lifecycle: {exc}")
            except Exception:
                log.exception("lifecycle: failed on %s/%s@%s", ev.message.topic, ev.message.partition,
                              ev.message.offset)
        for fp, (status, ev) in folded.items():
            faust_compat.set_current_event(ev)  # its changelog record goes to ev's partition
            out.append(changelog_record(table, fp, status, ev.message.partition))
            owners.append(ev)
        try:
            acked = await rt.outbox.send_many(out)
        except RecordRefused as exc:
            acked = exc.acked
            for i, error in exc.refused.items():
                what = "status" if out[i][0] != lifecycle_name else "implied resolve"
                await keep_bad(rt, owners[i], f"lifecycle: its {what} record was refused for good: "
                                              f"{type(error).__name__}: {error}")
        note_persisted(table, acked)

    @app.agent(source, name=f"{s.topic_prefix}.lifecycle", concurrency=1)
    async def lifecycle(stream: Any) -> None:
        async for events in stream.take_events(1000, within=0.01):
            # take_events acknowledges a batch when it moves on, whatever became of it: each
            # message gets one more reference, released only once what the batch made is on
            # the broker, so a stop (or a broker that never answers) leaves it uncommitted
            for ev in events:
                ev.message.incref()
            try:
                await fold_batch(events)
            except OutboxStopped as exc:
                log.warning("lifecycle: %s", exc)
                return
            for ev in events:
                ev.ack()
