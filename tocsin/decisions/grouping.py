"""Grouping (#18 item 2): alerts a ``[[groups]]`` rule selects are notified together, one
notification per group, as Alertmanager's aggregation groups do (``dispatch.go``'s
``aggrGroup`` and ``notify.go``'s ``needsUpdate``), but in event time:

- a group starts with its first alert; its first flush is ``group_wait_s`` after that alert's
  event time;
- every flush after it is ``group_interval_s`` after the previous one; a flush notifies when the
  group's firing alerts are not a subset of those the last notification listed (a new alert:
  reason ``group changed``), or when ``repeat_interval_s`` has passed since the last
  notification (``repeat interval elapsed``); otherwise it notifies nothing (``unchanged``);
- a flush at T lists the members whose event time is <= T; a member not seen again for
  ``resolve_timeout_s`` before T is dropped (its own recovery, if any, was notified on its
  own: recoveries are never grouped); a group with no member left is forgotten.

Everything here is pure: plain values in, a verdict with its reason out; the flush time is the
group's own ``next_flush`` (an event time), never the wall clock, so a replay of the same
members flushes at the same times with the same lists. ``catch_up`` takes a group's every flush
due at a clock, in order; the agent (agents/grouping.py) chooses the clock.

Recoveries (``event.is_recovery``) are never grouped (``rule_for`` returns None for them): they
are routed on their own as before, so grouping never mutes a recovery of a notified alert.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from ..schemas.alert import AlertEvent

#: what ``group_by`` may name besides ``details.<key>``
LABELS = ("type", "severity", "fingerprint", "source", "account_id", "symbol", "strategy_id", "run_id")
ENTITY_LABELS = frozenset({"account_id", "symbol", "strategy_id", "run_id"})
#: most members a group keeps (a changelog record per group stays small); more are counted only
MEMBERS_MAX = 500
#: most alerts a group notification's command carries (the rest are counted: ``total``)
CARRIED_MAX = 100
#: the longest label value kept in a group key
VALUE_MAX = 128


@dataclass(frozen=True)
class GroupRule:
    """One ``[[groups]]`` entry of the routing file: which alerts (``types``, ``severities``:
    empty means any), how they are grouped and when their group notifies."""

    name: str
    types: tuple[str, ...] = ()
    severities: tuple[int, ...] = ()
    group_by: tuple[str, ...] = ("type",)
    group_wait_s: float = 30.0
    group_interval_s: float = 300.0
    repeat_interval_s: float = 14400.0
    resolve_timeout_s: float = 3600.0
    #: alerts a notification's text lists before "and M more"
    list_max: int = 5

    def matches(self, event: AlertEvent) -> bool:
        return ((not self.types or event.type in self.types)
                and (not self.severities or event.severity in self.severities))


def rule_for(event: AlertEvent, rules: Iterable[GroupRule]) -> GroupRule | None:
    """The first rule selecting ``event``; None for a recovery (never grouped) or none."""
    if event.is_recovery:
        return None
    for rule in rules:
        if rule.matches(event):
            return rule
    return None


def label_value(event: AlertEvent, label: str) -> str:
    """The value of a ``group_by`` label of ``event`` (empty when it has none)."""
    if label.startswith("details."):
        v: Any = event.details.get(label[8:])
    elif label in ENTITY_LABELS:
        v = getattr(event.entity, label)
    else:
        v = getattr(event, label)
    return "" if v is None else str(v)[:VALUE_MAX]


def group_key(event: AlertEvent, rule: GroupRule) -> str:
    """``rule|label=value,...``: the group of ``event`` under ``rule`` (the P.groups key)."""
    return rule.name + "|" + ",".join(f"{label}={label_value(event, label)}" for label in rule.group_by)


def member_of(event: AlertEvent, suppressed_count: int = 0) -> dict[str, Any]:
    """What a group keeps of one alert: enough to list it (a valid AlertEvent without its
    details) and ``t``, its event time."""
    return {
        "alert_id": str(event.alert_id),
        "type": event.type,
        "severity": event.severity,
        "summary": event.summary,
        "event_timestamp": event.event_timestamp.astimezone(dt.UTC).isoformat(),
        "fingerprint": event.fingerprint,
        "entity": event.entity.model_dump(exclude_none=True),
        "source": event.source,
        "suppressed_count": suppressed_count,
        "t": event.epoch,
    }


@dataclass(frozen=True)
class GroupState:
    """What the groups table keeps per group key (``to_value``: its JSON value)."""

    key: str
    rule: str
    partition: int
    started: float
    next_flush: float
    seq: int = 0
    last_notified: float | None = None
    #: the fingerprints the last notification listed, sorted
    notified: tuple[str, ...] = ()
    members: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    #: members not kept (past MEMBERS_MAX)
    more: int = 0

    def to_value(self) -> dict[str, Any]:
        return {"key": self.key, "rule": self.rule, "partition": self.partition, "started": self.started,
                "next_flush": self.next_flush, "seq": self.seq, "last_notified": self.last_notified,
                "notified": list(self.notified), "members": {k: dict(v) for k, v in self.members.items()},
                "more": self.more}

    @classmethod
    def from_value(cls, value: Any) -> GroupState | None:
        if not value:
            return None
        return cls(value["key"], value["rule"], int(value["partition"]), float(value["started"]),
                   float(value["next_flush"]), int(value.get("seq", 0)), value.get("last_notified"),
                   tuple(value.get("notified", ())), dict(value.get("members", {})), int(value.get("more", 0)))


@dataclass(frozen=True)
class Admission:
    state: GroupState
    reason: str  # group started / joined group / seen again / already in group / group full


def admit(state: GroupState | None, member: Mapping[str, Any], rule: GroupRule, key: str,
          partition: int) -> Admission:
    """``member`` (``member_of``) into its group; a group starts with its first member, its
    first flush ``group_wait_s`` after that member's event time."""
    t = float(member["t"])
    fp = member["fingerprint"]
    if state is None:
        return Admission(GroupState(key, rule.name, partition, t, t + rule.group_wait_s, members={fp: member}),
                         "group started")
    old = state.members.get(fp)
    if old is not None and float(old["t"]) >= t:
        return Admission(state, "already in group")  # re-consumed, or older than what it holds
    if old is None and len(state.members) >= MEMBERS_MAX:
        return Admission(replace(state, more=state.more + 1), "group full")
    members = dict(state.members)
    members[fp] = member
    return Admission(replace(state, members=members), "seen again" if old is not None else "joined group")


def _order(m: Mapping[str, Any]) -> tuple[int, float, str]:
    return (int(m["severity"]), float(m["t"]), str(m["fingerprint"]))


@dataclass(frozen=True)
class Flush:
    """One flush of a group at ``at`` (its due time): whether it notifies and why, what it
    lists (most severe first, then by event time), and the group's state after it (None: the
    group is empty and forgotten)."""

    at: float
    notify: bool
    reason: str
    seq: int
    listed: tuple[Mapping[str, Any], ...]
    total: int
    state: GroupState | None

    @property
    def dedupe_key(self) -> str:
        return f"group:{self.state.key if self.state else ''}:{self.seq}"


def flush(state: GroupState, rule: GroupRule) -> Flush:
    """The flush of ``state`` at its due time (``next_flush``), as Alertmanager's needsUpdate:
    notify when a firing member was not in the last notification, or when the repeat interval
    has passed since it; a member whose last event is ``resolve_timeout_s`` or more before the
    flush is dropped."""
    at = state.next_flush
    kept: dict[str, Mapping[str, Any]] = {}
    firing: list[Mapping[str, Any]] = []
    for fp, m in state.members.items():
        t = float(m["t"])
        if t > at:
            kept[fp] = m  # not yet: the next flush's
        elif at - t < rule.resolve_timeout_s:
            kept[fp] = m
            firing.append(m)
    if not kept:
        return Flush(at, False, "group empty", state.seq, (), 0, None)
    firing.sort(key=_order)
    fps = tuple(sorted(str(m["fingerprint"]) for m in firing))
    nxt = at + rule.group_interval_s
    total = len(firing) + state.more
    if not firing:
        reason, notify = "nothing due", False
    elif not set(fps) <= set(state.notified):
        reason, notify = ("first notification" if state.seq == 0 else "group changed"), True
    elif state.last_notified is not None and at - state.last_notified >= rule.repeat_interval_s:
        reason, notify = "repeat interval elapsed", True
    else:
        reason, notify = "unchanged", False
    if notify:
        after = replace(state, next_flush=nxt, seq=state.seq + 1, last_notified=at, notified=fps, members=kept)
    else:  # a member that left and comes back is new again
        notified = tuple(fp for fp in state.notified if fp in fps)
        after = replace(state, next_flush=nxt, notified=notified, members=kept)
    return Flush(at, notify, reason, after.seq, tuple(firing[:CARRIED_MAX]) if notify else (), total, after)


def before(t: float) -> float:
    """The clock an alert of event time ``t`` flushes its partition's groups at before it is
    admitted: just before ``t``, so a flush due at ``t`` itself lists it (``<= T``)."""
    return math.nextafter(t, -math.inf)


def catch_up(state: GroupState | None, rule: GroupRule, clock: float, max_flushes: int = 10_000
             ) -> tuple[GroupState | None, list[Flush]]:
    """Every flush of the group due at ``clock`` (event time), in order; the state after them."""
    out: list[Flush] = []
    while state is not None and state.next_flush <= clock and len(out) < max_flushes:
        f = flush(state, rule)
        out.append(f)
        state = f.state
    return state, out


# -- what a group notification says (every channel's text; the webhook's ``group``) --------


def member_line(m: Mapping[str, Any]) -> str:
    entity = " ".join(f"{k}={v}" for k, v in (m.get("entity") or {}).items())
    return f"[SEV{m['severity']}] {m['summary']}" + (f" ({entity})" if entity else "")


def group_text(notice: Mapping[str, Any]) -> str:
    """The lines of a group notification: how many, then the first ``list_max`` alerts, then
    ``and M more``."""
    alerts = notice.get("alerts") or []
    total = int(notice.get("total", len(alerts)))
    n = max(1, int(notice.get("list_max", 5)))
    lines = [f"{total} alert{'s' if total != 1 else ''} in group {notice.get('key', '')}"]
    lines += [f"- {member_line(m)}" for m in alerts[:n]]
    if total > min(n, len(alerts)):
        lines.append(f"and {total - min(n, len(alerts))} more")
    return "\n".join(lines)


def notice(f: Flush, rule: GroupRule) -> dict[str, Any]:
    """The ``group`` of a flush's delivery commands."""
    assert f.state is not None
    return {"key": f.state.key, "rule": rule.name, "seq": f.seq, "reason": f.reason,
            "flushed_at": dt.datetime.fromtimestamp(f.at, dt.UTC).isoformat(),
            "total": f.total, "list_max": rule.list_max,
            "alerts": [{k: v for k, v in m.items() if k != "t"} for m in f.listed]}
