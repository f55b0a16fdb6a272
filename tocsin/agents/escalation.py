"""Escalation policies carried out (decisions/escalation.py decides).

    throttle   a notified alert a policy selects: step 0's targets (``after_s = 0``) go out with
               the notification, an ``escalated`` decision records it, and the first later
               step's timer goes to P.deliveries.retry (``Escalation.start``)
    retry      holds the timer until its not_before, then releases it to P.escalations, keyed by
               the fingerprint (``release_to``)
    escalation this agent (P.escalations and P.lifecycle, co-partitioned by fingerprint; the
               ``escalations`` table's only writer, concurrency 1): a due timer is decided on
               the fingerprint's status at that moment (the global status table) and its chain's
               state: fired (delivery commands to the step's targets, the next timer), stopped,
               held until the acknowledgement times out, or joined to the chain already
               running; every verdict but a repeat is a decision on P.decisions (``escalated`` or
               ``escalation_stopped``, the step in its reason). An ``unacknowledge`` on
               P.lifecycle resumes a chain an acknowledgement stopped.

A timer is a ``DeliveryCommand`` with ``escalation`` set (destination ``escalation:<policy>``), so
the retry agent holds it as it holds any command. Ids are deterministic (``step_key``,
``timer_id``, ``record_id``): a re-consumed timer or a replay sends each step once (the
delivery table drops a repeated delivery id) and records it once (ClickHouse replaces by
decision id).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import ValidationError

from ..core.tables import (
    changelog_record,
    expired_keys,
    note_persisted,
    owned_partitions,
    send_tombstones,
    sweep_interval,
)
from ..decisions.escalation import (
    Action,
    ChainState,
    EscalationPolicy,
    Position,
    StatusView,
    Timer,
    decide,
    record_id,
    resume,
    select,
    start,
    step_key,
    timer_id,
)
from ..decisions.retention import MIN_ESCALATION_RETENTION_S, escalation_expiry
from ..decisions.routing import Route, RoutingPolicy, default_failover
from ..errors import OutboxStopped, RecordRefused
from ..infra import faust_compat
from ..schemas.alert import AlertEvent
from ..schemas.codec import dumps
from ..schemas.messages import (
    DeliveryCommand,
    LifecycleAction,
    LifecycleEvent,
    Outcome,
    command_record,
    decision_record,
    delivery_id_for,
)
from .batches import partition_for_text
from .common import decode, keep_bad
from .outbox import Record, record
from .runtime import Runtime

log = logging.getLogger(__name__)

#: the channel part of a timer's destination (``escalation:<policy>``); no channel has it
TIMER_CHANNEL = "escalation"
#: Tocsin's own messages: their alert's details were sanitized once already (schemas/alert.py)
INTERNAL = {"internal": True}


def routes_to(names: Iterable[str], policy: RoutingPolicy, enabled: Iterable[str], fallback: bool = True) -> list[Route]:
    """The routes of a step's targets, as ``routing.route`` makes them: the enabled ones, each
    with its receiver's policy and failover chain; none enabled: the console (``fallback``)."""
    enabled_set = set(enabled) | {"console:default"}
    wanted = [n for n in dict.fromkeys(names) if n in enabled_set]
    if not wanted and fallback:
        wanted = ["console:default"]
    out = []
    for name in wanted:
        rp = policy.policy_for(name)
        chain = rp.failover if rp.failover is not None else default_failover(name)
        out.append(Route(name, name, rp.max_attempts, rp.schedule,
                         tuple(d for d in chain if d in enabled_set and d != name)))
    return out


def _epoch_dt(t: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(t, dt.UTC)


def timer_command(alert: dict[str, Any], timer: Timer, now: dt.datetime) -> dict[str, Any]:
    """The command that is ``timer`` on the retry topic (a ``DeliveryCommand``)."""
    tid = timer_id(timer.chain, timer.policy, timer.pos, timer.due)
    cmd = command_record(tid, alert, timer.chain, f"{TIMER_CHANNEL}:{timer.policy}",
                         f"{TIMER_CHANNEL}:{timer.policy}", 1, [], 0, [], now)
    cmd["not_before"] = _epoch_dt(timer.due)
    cmd["escalation"] = {"policy": timer.policy, "chain": timer.chain, "cycle": timer.pos.cycle,
                         "step": timer.pos.step, "anchor": timer.anchor, "due": timer.due}
    return cmd


def release_to(rt: Runtime, cmd: DeliveryCommand) -> tuple[str, str]:
    """Where the retry agent releases a due command, and its key: a timer to P.escalations by
    fingerprint, a delivery to its channel's topic by delivery id."""
    if cmd.escalation is not None:
        return rt.topics.escalations.get_topic_name(), cmd.alert.fingerprint
    return rt.topics.deliveries[cmd.channel].get_topic_name(), cmd.delivery_id


def step_commands(alert: dict[str, Any], chain: str, policy_name: str, pos: Position, routes: list[Route],
                  suppressed: int, now: dt.datetime) -> list[tuple[str, dict[str, Any]]]:
    """(channel, command) of a step's deliveries: ids per alert, step and repeat."""
    key = step_key(chain, policy_name, pos)
    return [(r.destination.split(":", 1)[0],
             command_record(delivery_id_for(key, r.receiver, r.destination), alert, chain, r.receiver, r.destination,
                            r.max_attempts, list(r.backoff_s), suppressed, list(r.failover), now))
            for r in routes]


class Escalation:
    """The throttle's step: what a notification starts (``start``)."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.retry_name = rt.topics.retry.get_topic_name()
        self.decisions_name = rt.topics.decisions.get_topic_name()
        self.deliveries = {ch: t.get_topic_name() for ch, t in rt.topics.deliveries.items()}
        self.enabled = set(rt.channels)

    def start(self, event: AlertEvent, alert: dict[str, Any], verdict: Any, destinations: list[str],
              out: list[Any], now: dt.datetime) -> None:
        """A notified alert a policy selects: step 0's targets not among ``destinations`` get
        their commands (added to ``destinations``), an ``escalated`` decision records the step,
        and the first later step's timer goes to the retry topic. Records appended to ``out``."""
        policy = select(self.rt.policy.escalations, event.severity, event.type, event.is_recovery)
        if policy is None:
            return
        chain, anchor = verdict.dedupe_key, event.epoch
        begun = start(policy, anchor)
        if begun.now:
            first = Position(0, 0)
            routes = [r for r in routes_to(begun.now, self.rt.policy, self.enabled, fallback=False)
                      if r.destination not in destinations]
            sent = [r.destination for r in routes]
            for channel, cmd in step_commands(alert, chain, policy.name, first, routes, verdict.suppressed_count, now):
                out.append((self.deliveries[channel], cmd["delivery_id"].encode(), dumps(cmd), None))
            destinations.extend(sent)
            reason = (f"escalation {policy.name} step 0/{len(policy.steps) - 1}: to {', '.join(begun.now)} "
                      "with the notification")
            rec = decision_record(record_id(chain, policy.name, first, Action.FIRE, anchor), alert, chain,
                                  Outcome.ESCALATED, reason, verdict.window_start, verdict.suppressed_count,
                                  list(begun.now), now)
            out.append((self.decisions_name, event.fingerprint.encode(), dumps(rec), None))
        if begun.first is not None and begun.due is not None:
            timer = Timer(chain, policy.name, begun.first, anchor, begun.due)
            cmd = timer_command(alert, timer, now)
            out.append((self.retry_name, cmd["delivery_id"].encode(), dumps(cmd), None))


# ---------------------------------------------------------------- the agent


def status_view(status: Mapping[str, Any] | None) -> StatusView | None:
    """What the decision reads of a status-table value."""
    if not status:
        return None
    changed = status.get("status_changed_at")
    at = dt.datetime.fromisoformat(changed.replace("Z", "+00:00")).timestamp() if isinstance(changed, str) else None
    st = str(status.get("status") or "active")
    by = status.get("acknowledged_by") if st == "acknowledged" else status.get("resolved_by")
    return StatusView(st, at, by if isinstance(by, str) else None)


def policies(rt: Runtime) -> dict[str, EscalationPolicy]:
    return {p.name: p for p in rt.policy.escalations}


class Handler:
    """Decides a batch of timers and lifecycle events (the agent's body, without Faust's loop)."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.table = rt.tables.escalations
        self.escalations_name = rt.topics.escalations.get_topic_name()
        self.retry_name = rt.topics.retry.get_topic_name()
        self.decisions_name = rt.topics.decisions.get_topic_name()
        self.deliveries = {ch: t.get_topic_name() for ch, t in rt.topics.deliveries.items()}
        self.enabled = set(rt.channels)
        self.policies = policies(rt)
        #: a batch and a retention sweep, one at a time (a chain written in a batch is never
        #: tombstoned after it; the sweep's tombstones are acknowledged before the next batch)
        self.lock = asyncio.Lock()

    def state(self, folded: dict[str, tuple[ChainState, Any]], fp: str) -> ChainState | None:
        if fp in folded:
            return folded[fp][0]
        return ChainState.from_value(self.table.get(fp))

    def timer(self, cmd: DeliveryCommand, state: ChainState | None, now: dt.datetime) -> tuple[Any, list[Record]]:
        """A due timer: its verdict and the records carrying it out (but the state's)."""
        t = cmd.escalation
        assert t is not None
        fp = cmd.alert.fingerprint
        timer = Timer(t.chain, t.policy, Position(t.cycle, t.step), t.anchor, t.due)
        status = status_view(self.rt.tables.status.get(fp))
        alert_json = cmd.alert.model_dump(mode="json")
        verdict = decide(state, timer, status, self.policies.get(t.policy), alert_json)
        out: list[Record] = []
        if not verdict.recorded:
            log.debug("escalation: %s: %s", fp, verdict.reason)
            return verdict, out
        alert = cmd.alert.model_dump(mode="python")
        destinations: list[str] = []
        if verdict.action is Action.FIRE:
            routes = routes_to(verdict.targets, self.rt.policy, self.enabled)
            for channel, c in step_commands(alert, t.chain, t.policy, timer.pos, routes, cmd.suppressed_count, now):
                out.append(record(self.deliveries[channel], c["delivery_id"], dumps(c)))
                destinations.append(c["destination"])
        if verdict.next is not None:
            nxt = timer_command(alert, verdict.next, now)
            out.append(record(self.retry_name, nxt["delivery_id"], dumps(nxt)))
        outcome = Outcome.ESCALATED if verdict.action is Action.FIRE else Outcome.ESCALATION_STOPPED
        rec = decision_record(record_id(t.chain, t.policy, timer.pos, verdict.action, t.due), alert, t.chain,
                              outcome, verdict.reason, _epoch_dt(t.due), cmd.suppressed_count, destinations, now)
        out.insert(0, record(self.decisions_name, fp, dumps(rec)))
        log.info("escalation: %s: %s", fp, verdict.reason)
        return verdict, out

    def unacknowledge(self, e: LifecycleEvent, state: ChainState | None, now: dt.datetime) -> tuple[ChainState | None, list[Record]]:
        policy = self.policies.get(state.policy) if state is not None else None
        resumed = resume(state, e.at.timestamp(), policy)
        if resumed is None:
            return None, []
        new, timer = resumed
        alert = AlertEvent.model_validate(new.alert, context=INTERNAL).model_dump(mode="python")
        cmd = timer_command(alert, timer, now)
        log.info("escalation: %s: un-acknowledged by %s: %s resumes at step %d", e.fingerprint, e.by, new.policy,
                 timer.pos.step)
        return new, [record(self.retry_name, cmd["delivery_id"], dumps(cmd))]

    async def batch(self, events: list[Any]) -> None:
        """Decide a batch; its records and the table's changelog records are on the broker
        (acknowledged) before this returns."""
        out: list[Record] = []
        owners: list[Any] = []
        folded: dict[str, tuple[ChainState, Any]] = {}
        now = dt.datetime.now(dt.UTC)
        for ev in events:
            try:
                new: ChainState | None
                if ev.message.topic == self.escalations_name:
                    cmd = DeliveryCommand.model_validate(decode(ev.value), context=INTERNAL)
                    if cmd.escalation is None:
                        raise ValueError("not an escalation timer")
                    fp = cmd.alert.fingerprint
                    verdict, made = self.timer(cmd, self.state(folded, fp), now)
                    new = verdict.state
                else:
                    e = LifecycleEvent.model_validate(decode(ev.value))
                    if e.action is not LifecycleAction.UNACKNOWLEDGE:
                        continue
                    fp = e.fingerprint
                    new, made = self.unacknowledge(e, self.state(folded, fp), now)
                out.extend(made)
                owners.extend([ev] * len(made))
                if new is not None:
                    folded[fp] = (new, ev)
            except (ValidationError, TypeError, ValueError) as exc:
                await keep_bad(self.rt, ev, f"escalation: {exc}")
            except Exception:
                log.exception("escalation: failed on %s/%s@%s", ev.message.topic, ev.message.partition,
                              ev.message.offset)
        for fp, (state, ev) in folded.items():
            faust_compat.set_current_event(ev)  # its changelog record goes to ev's partition
            out.append(changelog_record(self.table, fp, state.to_value(), ev.message.partition))
            owners.append(ev)
        try:
            acked = await self.rt.outbox.send_many(out)
        except RecordRefused as exc:
            acked = exc.acked
            for i, error in exc.refused.items():
                await keep_bad(self.rt, owners[i], f"escalation: a record was refused for good: "
                                                   f"{type(error).__name__}: {error}")
        note_persisted(self.table, acked)


def chain_expired(handler: Handler, now_s: float) -> Any:
    """The sweep's test of one ``escalations`` value (decisions/retention.escalation_expiry)."""
    override = handler.rt.settings.escalation_retention_s

    def expired(value: Any) -> bool:
        state = ChainState.from_value(value)
        if state is None:  # not a chain (nothing this version wrote): nothing decides with it
            return True
        return escalation_expiry(state, handler.policies.get(state.policy), now_s, override).expired

    return expired


async def sweep_chains(handler: Handler, now_s: float | None = None) -> int:
    """Delete the chains past their retention (decisions/retention.py) of the partitions this
    worker writes, with a tombstone on the changelog each; how many were tombstoned."""
    rt, table = handler.rt, handler.table
    owned = owned_partitions(rt.app, table.changelog_topic.get_topic_name())
    n = rt.settings.partitions
    expired = chain_expired(handler, time.time() if now_s is None else now_s)
    sent = 0
    while True:  # a chunk at a time, the event loop let go on between them
        async with handler.lock:
            keys = expired_keys(table.data, expired, owned, lambda k: partition_for_text(k, n))
            sent += await send_tombstones(rt.app, table, keys)
        if not keys:
            break
    if sent:
        log.info("escalations: %d chains past their retention deleted", sent)
    return sent


def register_sweep(rt: Runtime, handler: Handler) -> None:
    """The escalations table's retention: a timer deleting what ``sweep_chains`` finds."""
    every = sweep_interval(rt.settings.escalation_retention_s or MIN_ESCALATION_RETENTION_S)

    @rt.app.timer(every, name=f"{rt.settings.topic_prefix}.escalation_retention")
    async def sweep_escalations() -> None:
        if not rt.ready():
            return
        try:
            await sweep_chains(handler)
        except Exception:  # the next sweep tries again; a timer that raised would stop
            log.exception("escalations: the retention sweep failed")


def register(rt: Runtime) -> None:
    app, topics, s = rt.app, rt.topics, rt.settings
    source = app.topic(topics.escalations.get_topic_name(), topics.lifecycle.get_topic_name(),
                       key_serializer="raw", value_serializer="raw", partitions=s.partitions)
    handler = Handler(rt)
    register_sweep(rt, handler)

    @app.agent(source, name=f"{s.topic_prefix}.escalation", concurrency=1)
    async def escalation(stream: Any) -> None:
        async for events in stream.take_events(500, within=0.01):
            # as the lifecycle agent: a batch's messages are released only once what it made is on the broker
            for ev in events:
                ev.message.incref()
            try:
                async with handler.lock:
                    await handler.batch(events)
            except OutboxStopped as exc:
                log.warning("escalation: %s", exc)
                return
            for ev in events:
                ev.ack()
