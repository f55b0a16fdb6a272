"""Recipient preferences (issue #18 item 11): a recipient (a person or a team) owns some
destinations and says which of them its alerts reach: it opts out of channels per severity
and type, opts in to more of its own destinations, and sets quiet hours in its time zone,
during which only a SEV1 reaches it.

Pure over plain values: ``apply(destinations, recipients, ...)`` takes the destinations
routing chose for one alert and returns those the preferences leave, with one reason per
change, which the throttle appends to the decision's reason. The alert's event time decides
(quiet hours, and which version of a person's preferences set through the API is in force:
``in_force``), so a replay decides the same.

Rules, in this order, for each recipient:

1. ``opt_in``: a rule whose severities and types match adds its destinations (the recipient's
   own, enabled ones; a firing and its recovery alike).
2. ``opt_out``: a rule whose severities and types match removes the recipient's destinations
   of its channels (or the destinations it names; neither: all of the recipient's). It applies to
   recoveries too: the same rule kept the firing from that destination.
3. ``quiet_hours``: between ``start`` and ``end`` in the recipient's time zone (across midnight
   when ``end`` is earlier), every destination of the recipient but for a SEV1 is removed. A
   recovery is never held back by quiet hours: its firing may have reached the recipient before
   they began.

When the preferences leave nothing of what routing chose, the alert goes to the console, as
routing does when nothing enabled remains: nothing is dropped without a trace.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from zoneinfo import ZoneInfo

CONSOLE = "console:default"


@dataclass(frozen=True, slots=True)
class Rule:
    """An ``opt_in`` or ``opt_out`` rule: which alerts (``severities``, ``types``: empty is any)
    and which of the recipient's destinations (``channels``, ``destinations``: both empty is all
    of them)."""

    severities: frozenset[int] = frozenset()
    types: frozenset[str] = frozenset()
    channels: frozenset[str] = frozenset()
    destinations: tuple[str, ...] = ()

    def matches(self, severity: int, alert_type: str) -> bool:
        return (not self.severities or severity in self.severities) and (not self.types or alert_type in self.types)

    def covers(self, destination: str) -> bool:
        if not self.channels and not self.destinations:
            return True
        return destination in self.destinations or destination.split(":", 1)[0] in self.channels

    def said(self) -> str:
        """What the rule is about, for a reason: ``severity 3, type disk_full``."""
        parts = []
        if self.severities:
            parts.append("severity " + "/".join(str(s) for s in sorted(self.severities)))
        if self.types:
            parts.append("type " + "/".join(sorted(self.types)))
        return ", ".join(parts) or "every alert"


@dataclass(frozen=True, slots=True)
class QuietHours:
    """From ``start`` to ``end`` (exclusive), local times; across midnight when ``end <= start``."""

    start: dt.time
    end: dt.time

    def contains(self, local: dt.time) -> bool:
        if self.start < self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end

    def said(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M}"


@dataclass(frozen=True, slots=True)
class Preferences:
    """What a recipient says; a person's may be replaced through the API (``in_force``)."""

    time_zone: str = "UTC"
    quiet_hours: QuietHours | None = None
    opt_in: tuple[Rule, ...] = ()
    opt_out: tuple[Rule, ...] = ()


@dataclass(frozen=True, slots=True)
class Recipient:
    """A person or a team (routing file ``[recipients.<name>]``): the destinations it owns and
    its preferences (the file's)."""

    name: str
    kind: str  # "person" or "team"
    destinations: tuple[str, ...]
    preferences: Preferences = Preferences()


@dataclass(frozen=True, slots=True)
class Version:
    """A person's preferences set through the API from ``since`` on (``preferences`` None: the
    routing file's again)."""

    since: dt.datetime
    preferences: Preferences | None


@dataclass(frozen=True, slots=True)
class Applied:
    destinations: tuple[str, ...]
    #: one reason per destination added or removed, in order (empty: nothing changed)
    changes: tuple[str, ...]

    @property
    def reason(self) -> str:
        return "preferences: " + "; ".join(self.changes) if self.changes else ""


@lru_cache(maxsize=256)
def zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def in_force(recipient: Recipient, versions: Sequence[Version], at: dt.datetime) -> Preferences:
    """The preferences of ``recipient`` at ``at``: the latest API version set at or before it,
    else the routing file's. ``versions`` in the order they were set."""
    chosen: Preferences | None = recipient.preferences
    latest: dt.datetime | None = None
    for v in versions:
        if v.since <= at and (latest is None or v.since >= latest):
            latest, chosen = v.since, v.preferences
    return chosen if chosen is not None else recipient.preferences


def apply(
    destinations: Sequence[str],
    recipients: Iterable[Recipient],
    severity: int,
    alert_type: str,
    at: dt.datetime,
    *,
    is_recovery: bool = False,
    enabled: Iterable[str] = (),
    versions: Mapping[str, Sequence[Version]] | None = None,
) -> Applied:
    """The destinations left of ``destinations`` (routing's, for one alert at event time ``at``)
    once every recipient's preferences are applied, and why (see the module's docstring).
    ``enabled``: the destinations an opt-in may add (a disabled one is never added).
    ``versions``: the API versions of people's preferences, by name."""
    out = list(destinations)
    changes: list[str] = []
    enabled_set = set(enabled)
    for r in recipients:
        prefs = in_force(r, (versions or {}).get(r.name, ()), at)
        for rule in prefs.opt_in:
            if not rule.matches(severity, alert_type):
                continue
            for d in rule.destinations:
                if d in enabled_set and d not in out:
                    out.append(d)
                    changes.append(f"{d} added ({r.name} opted in: {rule.said()})")
        owned = [d for d in out if d in r.destinations]
        for d in owned:
            why = None
            for rule in prefs.opt_out:
                if rule.matches(severity, alert_type) and rule.covers(d):
                    why = f"{r.name} opted out: {rule.said()}"
                    break
            if why is None and prefs.quiet_hours is not None and severity != 1 and not is_recovery:
                local = at.astimezone(zone(prefs.time_zone)).time()
                if prefs.quiet_hours.contains(local):
                    why = f"{r.name}'s quiet hours {prefs.quiet_hours.said()} {prefs.time_zone}"
            if why is not None:
                out.remove(d)
                changes.append(f"{d} removed ({why})")
    if not out and destinations:
        out.append(CONSOLE)
        changes.append(f"{CONSOLE} added (the preferences left no destination)")
    return Applied(tuple(out), tuple(changes))
