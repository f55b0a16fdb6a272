"""Maintenance windows: whether one mutes an alert at its event time. Pure, the time passed in.

Two kinds, asked in this order:

- **recurring**, from the routing file: ``[[maintenance]]`` rules, each naming
  ``time_intervals`` (``[[time_intervals]]``, Alertmanager's shape: decisions/timeinterval.py)
  and ``matchers`` (``['service="orders"']``, as a silence's: decisions/silence.py; none: every
  alert). A rule mutes an alert its matchers match whose event time is in any of its intervals.
  Reason: ``interval:<interval name>`` (``rule <name>`` added when the rule has one).
- **one-off**, set through the API or ``tocsin maintenance``: each a ``MaintenanceWindow`` on
  ``P.maintenance`` (a silence with a name: its versions, its ``[startsAt, endsAt)``, its
  matchers), asked as a silence is (``SilenceIndex``). Reason: ``window:<id>`` and its name.

Either kind never mutes a recovery (``is_recovery``) of an alert whose firing was notified
(``notified_firing``: the throttle asks its table, as for silences); a recovery of a firing
that was itself muted (never notified) is muted too. Event time decides: a window set after an
event's time never changes its decision, so a replay decides the same (under the same routing
file). The outcome is ``muted``; the alert leaves the throttle window untouched.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, Strict

from ..schemas.alert import AlertEvent
from ..schemas.messages import Outcome
from ..schemas.silence import Silence, SilenceMatcher
from .config_model import Loc, Table, invalid
from .silence import InvalidSilence, SilenceIndex, current, labels_of, matches_all, parse_matcher
from .throttle import Verdict, WindowState, decide
from .timeinterval import TimeInterval, active


@dataclass(frozen=True, slots=True)
class MaintenanceRule:
    """``[[maintenance]]``: the alerts ``matchers`` match are muted while any of ``time_intervals`` holds."""

    time_intervals: tuple[str, ...]
    matchers: tuple[SilenceMatcher, ...] = ()
    name: str = ""


@dataclass(frozen=True)
class MaintenancePolicy:
    """The routing file's named intervals and maintenance rules (empty: no recurring window)."""

    intervals: Mapping[str, tuple[TimeInterval, ...]] = field(default_factory=dict)
    rules: tuple[MaintenanceRule, ...] = ()


NO_MAINTENANCE = MaintenancePolicy()


def rule_mutes(rule: MaintenanceRule, intervals: Mapping[str, Sequence[TimeInterval]],
               labels: Mapping[str, str], at: dt.datetime) -> str | None:
    """The reason ``rule`` mutes an alert of ``labels`` at ``at``, or None."""
    if not matches_all(rule.matchers, labels):
        return None
    held = active(intervals, rule.time_intervals, at)
    if not held:
        return None
    return f"interval:{held[0]}" + (f" rule {rule.name}" if rule.name else "")


def window_reason(versions: Sequence[Silence], at: dt.datetime) -> str:
    """``window:<id>`` and the window's name as the version deciding at ``at`` has it
    (``MaintenanceWindow.name``)."""
    v = current(versions, at) or versions[-1]
    name = getattr(v, "name", "")
    return f"window:{v.id}" + (f" {name}" if name else "")


def muted_by(policy: MaintenancePolicy, alert: AlertEvent, at: dt.datetime,
             notified_firing: bool | Callable[[], bool] = False,
             windows: SilenceIndex | None = None,
             versions: Mapping[str, Sequence[Silence]] | None = None) -> str | None:
    """Why a maintenance window mutes ``alert`` at ``at`` (its event time), or None.

    ``policy``: the routing file's rules; ``windows``: the one-off windows (a ``SilenceIndex``
    of them) and ``versions`` their versions by id (for the reason's name). ``notified_firing``:
    whether the firing this recovery resolves was notified (asked only for a recovery a window
    holds); such a recovery is never muted.
    """
    reason: str | None = None
    if policy.rules:
        labels = labels_of(alert)
        for rule in policy.rules:
            reason = rule_mutes(rule, policy.intervals, labels, at)
            if reason is not None:
                break
    if reason is None and windows is not None and len(windows):
        # a window never mutes a notified firing's recovery: as a silence without muteResolved
        wid = windows.silenced_by(alert, at, notified_firing)
        if wid is None:
            return None
        got = versions.get(wid) if versions is not None else None
        return window_reason(got, at) if got else f"window:{wid}"
    if reason is not None and alert.is_recovery:
        notified = notified_firing() if callable(notified_firing) else notified_firing
        if notified:
            return None
    return reason


def muted_verdict(state: WindowState | None, event: AlertEvent, window_s: int, reason: str,
                  window_tag: str = "") -> Verdict:
    """The throttle's verdict for an event a window mutes: ``muted`` with ``reason``, the window
    untouched (as a silence leaves it), so the first alert after the window is notified."""
    return decide(state, event, window_s, silenced_by=reason, window_tag=window_tag)._replace(outcome=Outcome.MUTED)


# ------------------------------------------------------------------ the routing file's table


def _matcher(text: Any) -> SilenceMatcher:
    if not isinstance(text, str):
        raise invalid('expected text: a matcher (\'service="orders"\')')
    try:
        return parse_matcher(text)
    except (ValueError, InvalidSilence) as exc:
        raise invalid("{why}", why=exc) from None


class MaintenanceFile(Table):
    """``[[maintenance]]``: which alerts are muted while which named intervals hold."""

    name: Annotated[str, Strict()] = Field(default="", max_length=256, description="expected a name (text)")
    time_intervals: tuple[Annotated[str, Strict()], ...] = Field(
        min_length=1, description="expected a non-empty list of [[time_intervals]] names")
    matchers: tuple[Annotated[SilenceMatcher, BeforeValidator(_matcher)], ...] = Field(
        default=(), description='expected a list of matchers (\'service="orders"\', \'severity=~"2|3"\')')

    def rule(self) -> MaintenanceRule:
        return MaintenanceRule(self.time_intervals, self.matchers, self.name)


def maintenance_policy(intervals: Mapping[str, tuple[TimeInterval, ...]],
                       files: Sequence[MaintenanceFile]) -> tuple[MaintenancePolicy, tuple[Loc, str] | None]:
    """The policy of a routing file's named intervals and rules, and the first rule naming an
    interval the file does not define (its key path and the message), or None."""
    for i, f in enumerate(files):
        for j, name in enumerate(f.time_intervals):
            if name not in intervals:
                known = ", ".join(intervals) or "none defined"
                return NO_MAINTENANCE, (("maintenance", i, "time_intervals", j),
                                        f"no [[time_intervals]] named {name!r} (known: {known})")
    if not files:
        return NO_MAINTENANCE, None
    return MaintenancePolicy(dict(intervals), tuple(f.rule() for f in files)), None


__all__ = ["NO_MAINTENANCE", "MaintenanceFile", "MaintenancePolicy", "MaintenanceRule", "maintenance_policy",
           "muted_by", "muted_verdict", "rule_mutes", "window_reason"]
