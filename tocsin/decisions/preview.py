"""A dry run of one alert (``tocsin route --dry-run``): what the worker would decide and where
it would send it, from plain values, touching nothing. Pure, the clock passed in.

It decides as the throttle agent does (``decisions/throttle.decide``) for a *first sighting*:
no earlier event of the fingerprint in its window, so a trigger is ``notify`` (first in
window) and a recovery ``bypass``; a silence that matches at the event's time makes it
``silenced`` (``decisions/silence``; for a recovery, as if the firing it resolves was not
notified). It routes as the agent does (``decisions/routing.route``) over the destinations
enabled where it runs, and builds each destination's command record exactly as the agent
sends it to ``P.deliveries.<channel>``; a muted alert's routes are still given, as what
would be sent without its mute. Building the messages the channels would send from those
commands is the caller's (``cli/route.py``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..schemas.alert import AlertEvent
from ..schemas.messages import Outcome, command_record, decision_record, delivery_id_for
from ..schemas.silence import Silence
from .escalation import select
from .grouping import group_key, rule_for
from .maintenance import muted_by as maintenance_muted_by
from .maintenance import muted_verdict
from .routing import ReceiverPolicy, Route, RoutingPolicy, default_failover, preferred, route
from .silence import SilenceIndex, current, labels_of
from .throttle import Verdict, decide, decision_id_for
from .windows import wants_digest, window_for, window_tag

#: what the dry run assumes of the throttle's state, said with its decision
ASSUMES = "no earlier event of this fingerprint in its throttle window (a first sighting)"
#: why a destination the routing names is left out
NOT_ENABLED = "not enabled here: its settings are absent from this environment"


@dataclass(frozen=True)
class Delivery:
    """One destination of the alert: its route, its receiver's policy, the command the throttle
    would send (``record``: the message of ``P.deliveries.<channel>``) and the failover
    destinations the route leaves out because they are not enabled."""

    route: Route
    policy: ReceiverPolicy
    delivery_id: str
    record: dict[str, Any]
    failover_skipped: tuple[str, ...] = ()

    @property
    def channel(self) -> str:
        return self.route.destination.split(":", 1)[0]


@dataclass(frozen=True)
class Preview:
    """What the worker would do with one valid alert."""

    event: AlertEvent
    verdict: Verdict  # what the throttle decides: notify, bypass or silenced
    unmuted: Verdict  # what it decides without silences: notify or bypass
    muted_by: tuple[Silence, ...]  # every silence that matches at the event's time, by id
    decision: dict[str, Any]  # the record the throttle sends to P.decisions
    deliveries: tuple[Delivery, ...]  # sent when ``notifies``; else what would be without the mute
    skipped: tuple[str, ...]  # destinations the routing names for the alert, not enabled here
    #: what the routing file's noise control does with it (maintenance, inhibition, flapping,
    #: throttle window, digest, grouping, escalation), each said in a line; a recurring
    #: maintenance window that holds it is its ``verdict`` (``muted``) too
    noise: tuple[str, ...] = ()

    @property
    def notifies(self) -> bool:
        return self.verdict.notifies


def named_for(event: AlertEvent, policy: RoutingPolicy) -> list[str]:
    """The destinations the routing names for the alert, in routing order, without repeats."""
    names = (*policy.by_severity.get(event.severity, ()), *policy.by_type.get(event.type, ()), *policy.always)
    return list(dict.fromkeys(names))


def muting(event: AlertEvent, silences: Mapping[str, Sequence[Silence]]) -> tuple[Silence, ...]:
    """Every silence (each the list of its versions, by id) that mutes ``event`` at its event
    time, as the throttle asks (``SilenceIndex.silenced_by``), by id; each the version that decides."""
    found = []
    for sid in sorted(silences):
        index = SilenceIndex({sid: silences[sid]})
        deciding = current(silences[sid], event.event_timestamp)
        if deciding is not None and index.silenced_by(event, event.event_timestamp) is not None:
            found.append(deciding)
    return tuple(found)


def preview(event: AlertEvent, policy: RoutingPolicy, enabled: Iterable[str], window_s: int,
            now: dt.datetime, silences: Mapping[str, Sequence[Silence]] | None = None) -> Preview:
    """The dry run of ``event`` (already valid, as ``schemas.validate.validate_raw`` leaves it)
    against ``policy`` with the destinations ``enabled``, a throttle window of ``window_s``,
    the silences given (by id, each its versions) and ``now`` as the throttle's clock."""
    enabled_set = set(enabled) | {"console:default"}
    window = window_for(policy.windows, event.type, window_s)
    tag = window_tag(window, window_s)
    muted_by = muting(event, silences or {})
    unmuted = decide(None, event, window, window_tag=tag)
    in_maintenance = None if muted_by else maintenance_muted_by(policy.maintenance, event, event.event_timestamp)
    if muted_by:
        verdict = decide(None, event, window, silenced_by=muted_by[0].id, window_tag=tag)
    elif in_maintenance is not None:
        verdict = muted_verdict(None, event, window, in_maintenance, window_tag=tag)
    else:
        verdict = unmuted
    noise = noise_notes(event, policy, window, window_s, in_maintenance)
    alert = event.model_dump(mode="python")
    deliveries = []
    routes = route(event.severity, event.type, policy, enabled_set)
    reason = verdict.reason
    if policy.recipients:  # as the throttle applies them (the routing file's; not the API's)
        routes, said = preferred(routes, policy, event.severity, event.type, event.event_timestamp,
                                 is_recovery=event.is_recovery, enabled=enabled_set)
        if said and verdict.notifies:
            reason = f"{reason}; {said}"
    for r in routes:
        rp = policy.policy_for(r.receiver)
        chain = rp.failover if rp.failover is not None else default_failover(r.destination)
        did = delivery_id_for(unmuted.dedupe_key, r.receiver, r.destination)
        record = command_record(did, alert, unmuted.dedupe_key, r.receiver, r.destination, r.max_attempts,
                                list(r.backoff_s), unmuted.suppressed_count, list(r.failover), now)
        deliveries.append(Delivery(r, rp, did, record,
                                   tuple(d for d in chain if d not in enabled_set and d != r.destination)))
    destinations = [d.route.destination for d in deliveries] if verdict.notifies else []
    outcome = verdict.outcome
    group = rule_for(event, policy.groups) if verdict.outcome is Outcome.NOTIFY else None
    if group is not None:  # the throttle decides it grouped: its group notifies (agents/grouping.py)
        outcome, reason, destinations = Outcome.GROUPED, group_key(event, group), []
    decision = decision_record(decision_id_for(event.alert_id), alert, verdict.dedupe_key, outcome,
                               reason, verdict.window_start, verdict.suppressed_count, destinations, now)
    skipped = tuple(n for n in named_for(event, policy) if n not in enabled_set)
    return Preview(event, verdict, unmuted, muted_by, decision, tuple(deliveries), skipped, noise)


def noise_notes(event: AlertEvent, policy: RoutingPolicy, window: int, default_s: int,
                in_maintenance: str | None) -> tuple[str, ...]:
    """What the routing file's noise control does with ``event``, a line each, in the throttle's
    order. What depends on the broker's state (a source alert firing, the fingerprint's
    history) is said as a condition."""
    notes = []
    if in_maintenance is not None:
        notes.append(f"maintenance: muted by {in_maintenance} at its event time")
    labels = labels_of(event)
    for rule in policy.inhibit_rules:
        if rule.is_target(labels) and not rule.is_source(labels):
            same = ", ".join(f"{n}={labels.get(n, '')!r}" for n in rule.equal) or "any labels"
            notes.append(f"inhibition: held while a source of rule {rule.name!r} fires with {same} "
                         "(which alerts fire is the broker's: not known here)")
    flap = policy.flapping.for_type(event.type)
    if flap is not None:
        notes.append(f"flapping: more than {flap.changes} firing/resolved changes within {flap.window_s:g} s mark it "
                     f"flapping, quiet until stable for {flap.hold_s:g} s (its history is the broker's: not known here)")
    if window != default_s:
        notes.append(f"throttle: a {window} s window for type {event.type} ([throttle.types])")
    if wants_digest(policy.windows, event.type) and not event.is_recovery:
        notes.append("digest: repeats suppressed in its window are notified as one digest at the window's end")
    group = rule_for(event, policy.groups)
    if group is not None and not event.is_recovery:
        notes.append(f"grouping: notified with group {group_key(event, group)!r} (rule {group.name!r}): first after "
                     f"{group.group_wait_s:g} s, then each {group.group_interval_s:g} s when it changed")
    esc = select(policy.escalations, event.severity, event.type, event.is_recovery)
    if esc is not None:
        steps = "; ".join(f"after {st.after_s:g} s to {', '.join(st.to)}" for st in esc.steps)
        notes.append(f"escalation {esc.name!r} unless acknowledged or resolved: {steps}")
    return tuple(notes)


__all__ = ["ASSUMES", "NOT_ENABLED", "Delivery", "Preview", "muting", "named_for", "noise_notes", "preview"]
