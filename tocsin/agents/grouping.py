"""Grouping (#18 item 2): the throttle's side (``Grouper``: which group an alert joins) and the
grouping agent, which holds every group of its partitions and notifies each when it is due.

::

    throttle: decide → NOTIFY and a [[groups]] rule selects it → outcome "grouped" (reason: the
              group key), no delivery command; the alert goes to P.groups keyed by group key
    grouping agent (concurrency 1, the groups table's only writer):
              P.groups ──► flush every group of the partition due at the event's time (the
              partition's watermark: the latest event time read), then admit the alert
              timer   ──► a partition idle for IDLE_S: flush what is due at the wall clock
              a flush that notifies ──► one DeliveryCommand per receiver (``group`` set) on
              P.deliveries.<channel>, delivery id from ``group:<key>:<seq>``

The group key is not the fingerprint, so the groups are not co-partitioned with the throttle:
the alert travels once more, keyed by its group (as ``P.alerts.keyed`` does for fingerprints).
Flush times are event times (decisions/grouping.py): a replay, read faster than the wall
clock, flushes each group when its partition's events pass the flush time, with the same
lists; the wall clock flushes a partition only once nothing is read there (live: no further
alert came). Nothing is held only in memory: the groups table is changelog-backed, so a
restarted worker finds every group and its next flush again, and a flush's delivery commands
and the group's new state go out together through the Outbox before the events that made
them are acknowledged (a flush taken twice after a crash makes the same delivery ids, which the
delivery table recognises).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from types import SimpleNamespace
from typing import Any

from ..core.tables import changelog_record, note_persisted, owned_partitions, send_tombstones
from ..decisions.grouping import (
    GroupRule,
    GroupState,
    admit,
    before,
    catch_up,
    group_key,
    member_of,
    notice,
    rule_for,
)
from ..decisions.routing import route
from ..errors import OutboxStopped, RecordRefused
from ..infra import faust_compat
from ..schemas.alert import AlertEvent
from ..schemas.codec import dumps
from ..schemas.messages import command_record, delivery_id_for
from .common import decode, keep_bad
from .outbox import Record, record
from .runtime import Runtime

log = logging.getLogger(__name__)

#: how often the timer looks for due groups
TICK_S = 0.25
#: a partition with nothing read for this long is flushed by the wall clock
IDLE_S = 0.5
#: the fields of an AlertEvent a member keeps (the others are the group's own)
_ALERT_FIELDS = ("alert_id", "type", "severity", "summary", "event_timestamp", "fingerprint", "entity", "source")


class Grouper:
    """The throttle's step (after the throttle window, before routing): the group an alert
    the throttle would notify joins, and the record taking it there."""

    def __init__(self, rt: Runtime) -> None:
        self.rules = rt.policy.groups
        self.topic = rt.topics.groups.get_topic_name() if rt.topics.groups is not None else ""

    def join(self, event: AlertEvent, suppressed_count: int) -> tuple[str, Record] | None:
        """The group key of ``event`` and its record for P.groups; None: not grouped (no rule
        selects it, or it is a recovery: never grouped)."""
        if not self.rules:
            return None
        rule = rule_for(event, self.rules)
        if rule is None:
            return None
        key = group_key(event, rule)
        value = dumps({"rule": rule.name, "key": key, "member": member_of(event, suppressed_count)})
        return key, (self.topic, key.encode(), value, None)


class _Stand:
    """A stand-in current event of a partition (what a table write reads of it)."""

    __slots__ = ("message", "__weakref__")

    def __init__(self, partition: int) -> None:
        self.message = SimpleNamespace(partition=partition)


class GroupAgent:
    """The groups of this worker's partitions: admits alerts, flushes due groups."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.table = rt.tables.groups
        self.rules = {r.name: r for r in rt.policy.groups}
        assert rt.topics.groups is not None
        self.topic = rt.topics.groups.get_topic_name()
        self.deliveries = {ch: t.get_topic_name() for ch, t in rt.topics.deliveries.items()}
        self.enabled = set(rt.channels)
        self.lock = asyncio.Lock()
        #: per partition, the latest event time read, and when (monotonic) it was last read
        self.watermark: dict[int, float] = {}
        self.last_read: dict[int, float] = {}
        self._stands: dict[int, _Stand] = {}
        self.flushed = 0

    def rule(self, name: str) -> GroupRule:
        """A group's rule; one removed from the routing file since: its defaults (the group is
        flushed and forgotten as usual)."""
        return self.rules.get(name) or GroupRule(name)

    def groups_of(self, partition: int, working: dict[str, GroupState | None]) -> list[GroupState]:
        """Every group of ``partition``: this batch's working copy over the table."""
        out = {k: s for k, s in working.items() if s is not None and s.partition == partition}
        for key, value in list(self.table.items()):
            if key not in working and value and value.get("partition") == partition:
                st = GroupState.from_value(value)
                if st is not None:
                    out[key] = st
        return list(out.values())

    def flush_due(self, partition: int, clock: float, working: dict[str, GroupState | None],
                  out: list[Record], now: dt.datetime) -> None:
        """Flush every group of ``partition`` due at ``clock`` (event time) into ``working``
        and ``out``."""
        for st in self.groups_of(partition, working):
            if st.next_flush > clock:
                continue
            rule = self.rule(st.rule)
            after, flushes = catch_up(st, rule, clock)
            for f in flushes:
                if f.notify:
                    out.extend(self.commands(f, rule, now))
                    self.flushed += 1
                    log.info("group %s: notified %d alert(s), flush %d (%s)", st.key, f.total, f.seq, f.reason)
            working[st.key] = after

    def commands(self, f: Any, rule: GroupRule, now: dt.datetime) -> list[Record]:
        """One delivery command per receiver of the group's alerts (each alert's routes,
        without repeats), its ``alert`` the group's most severe."""
        listed = f.listed
        alert = {k: listed[0][k] for k in _ALERT_FIELDS if k in listed[0]}
        seen: dict[str, Any] = {}
        for sev, typ in dict.fromkeys((int(m["severity"]), str(m["type"])) for m in listed):
            for r in route(sev, typ, self.rt.policy, self.enabled):
                seen.setdefault(r.destination, r)
        group = notice(f, rule)
        out = []
        for r in seen.values():
            did = delivery_id_for(f.dedupe_key, r.receiver, r.destination)
            cmd = command_record(did, alert, f.dedupe_key, r.receiver, r.destination, r.max_attempts,
                                 list(r.backoff_s), 0, list(r.failover), now, group=group)
            out.append(record(self.deliveries[r.destination.split(":", 1)[0]], did, dumps(cmd)))
        return out

    async def write(self, working: dict[str, GroupState | None], out: list[Record],
                    owners: list[Any] | None = None) -> None:
        """The batch's delivery commands and its groups' new states (a forgotten group: a
        tombstone), acknowledged by the broker before this returns."""
        gone: list[tuple[str, int]] = []
        n_cmds = len(out)
        for key, st in working.items():
            if st is None:
                continue
            stand = self._stands.setdefault(st.partition, _Stand(st.partition))
            token = faust_compat.set_current_event(stand)
            try:
                out.append(changelog_record(self.table, key, st.to_value(), st.partition))
            finally:
                faust_compat.reset_current_event(token)
        for key, st in working.items():
            if st is None and self.table.get(key) is not None:
                partition = int(self.table.get(key).get("partition", 0))
                try:
                    del self.table.data[key]
                except KeyError:
                    pass
                gone.append((key, partition))
        if out:
            try:
                acked = await self.rt.outbox.send_many(out)
            except RecordRefused as exc:
                acked = exc.acked
                for i, error in exc.refused.items():
                    log.error("grouping: a %s record was refused for good (%s: %s)",
                              "delivery" if i < n_cmds else "group state", type(error).__name__, error)
            note_persisted(self.table, acked)
        if gone:
            await send_tombstones(self.rt.app, self.table, gone)

    async def handle(self, events: list[Any]) -> None:
        """A batch of grouped alerts: for each, flush its partition's due groups at its event
        time, then admit it."""
        now = dt.datetime.now(dt.UTC)
        working: dict[str, GroupState | None] = {}
        out: list[Record] = []
        mono = time.monotonic()
        async with self.lock:
            for ev in events:
                p = ev.message.partition
                self.last_read[p] = mono
                try:
                    msg = decode(ev.value)
                    key, member, rule = str(msg["key"]), msg["member"], self.rule(str(msg["rule"]))
                    t = float(member["t"])
                    if not member.get("fingerprint"):
                        raise ValueError("a member without a fingerprint")
                except (KeyError, TypeError, ValueError) as exc:
                    await keep_bad(self.rt, ev, f"grouping: {exc}")
                    continue
                if t > self.watermark.get(p, float("-inf")):
                    self.watermark[p] = t
                    # the flushes due before t: one due at t itself lists this alert too
                    self.flush_due(p, before(t), working, out, now)
                state = working[key] if key in working else GroupState.from_value(self.table.get(key))
                working[key] = admit(state, member, rule, key, p).state
            await self.write(working, out)

    async def tick(self) -> None:
        """Flush the due groups of every partition nothing was read from for IDLE_S, at the
        wall clock (never before a partition's own watermark)."""
        if not self.rt.ready():
            return
        mono, wall = time.monotonic(), time.time()
        now = dt.datetime.now(dt.UTC)
        async with self.lock:
            working: dict[str, GroupState | None] = {}
            out: list[Record] = []
            for p in sorted(owned_partitions(self.rt.app, self.topic)):
                if mono - self.last_read.get(p, 0.0) < IDLE_S:
                    continue
                self.flush_due(p, max(wall, self.watermark.get(p, wall)), working, out, now)
            if working or out:
                await self.write(working, out)


def register(rt: Runtime) -> None:
    """The grouping agent, when the routing file has ``[[groups]]`` rules."""
    if not rt.policy.groups or rt.topics.groups is None:
        return
    app, s = rt.app, rt.settings
    agent_ = GroupAgent(rt)
    source = app.topic(agent_.topic, key_serializer="raw", value_serializer="raw", partitions=s.partitions)

    @app.agent(source, name=f"{s.topic_prefix}.grouping", concurrency=1)
    async def grouping(stream: Any) -> None:
        async for events in stream.take_events(1000, within=0.01):
            for ev in events:  # released once what the batch made is on the broker
                ev.message.incref()
            try:
                await agent_.handle(events)
            except OutboxStopped as exc:
                log.warning("grouping: %s", exc)
                return
            except Exception:  # keep going; the batch is read again after a restart
                log.exception("grouping: a batch failed")
                continue
            for ev in events:
                ev.ack()

    @app.timer(TICK_S, name=f"{s.topic_prefix}.grouping_flush")
    async def grouping_flush() -> None:
        try:
            await agent_.tick()
        except OutboxStopped as exc:
            log.warning("grouping: %s", exc)
        except Exception:  # the next tick tries again; a timer that raised would stop
            log.exception("grouping: the flush failed")
