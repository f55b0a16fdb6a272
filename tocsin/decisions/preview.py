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
from ..schemas.messages import command_record, decision_record, delivery_id_for
from ..schemas.silence import Silence
from . import preferences
from .routing import ReceiverPolicy, Route, RoutingPolicy, default_failover, route, route_to
from .silence import SilenceIndex, current
from .throttle import Verdict, decide, decision_id_for

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
    muted_by = muting(event, silences or {})
    unmuted = decide(None, event, window_s)
    verdict = decide(None, event, window_s, silenced_by=muted_by[0].id) if muted_by else unmuted
    alert = event.model_dump(mode="python")
    deliveries = []
    routes = route(event.severity, event.type, policy, enabled_set)
    reason = verdict.reason
    if policy.recipients:  # as the throttle applies them (the routing file's; not the API's)
        applied = preferences.apply([r.destination for r in routes], policy.recipients, event.severity, event.type,
                                    event.event_timestamp, is_recovery=event.is_recovery, enabled=enabled_set)
        if applied.changes:
            by_name = {r.destination: r for r in routes}
            routes = [by_name.get(d) or route_to(d, policy, enabled_set) for d in applied.destinations]
            reason = f"{reason}; {applied.reason}"
    for r in routes:
        rp = policy.policy_for(r.receiver)
        chain = rp.failover if rp.failover is not None else default_failover(r.destination)
        did = delivery_id_for(unmuted.dedupe_key, r.receiver, r.destination)
        record = command_record(did, alert, unmuted.dedupe_key, r.receiver, r.destination, r.max_attempts,
                                list(r.backoff_s), unmuted.suppressed_count, list(r.failover), now)
        deliveries.append(Delivery(r, rp, did, record,
                                   tuple(d for d in chain if d not in enabled_set and d != r.destination)))
    destinations = [d.route.destination for d in deliveries] if verdict.notifies else []
    decision = decision_record(decision_id_for(event.alert_id), alert, verdict.dedupe_key, verdict.outcome,
                               reason, verdict.window_start, verdict.suppressed_count, destinations, now)
    skipped = tuple(n for n in named_for(event, policy) if n not in enabled_set)
    return Preview(event, verdict, unmuted, muted_by, decision, tuple(deliveries), skipped)


__all__ = ["ASSUMES", "NOT_ENABLED", "Delivery", "Preview", "muting", "named_for", "preview"]
