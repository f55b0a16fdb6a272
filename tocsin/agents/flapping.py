"""Flap detection in the throttle agent: the step between inhibition and the throttle window
(decisions/flapping.py decides; this carries it out).

``Flapping.step`` decides one event against its home fingerprint's flap state (the
``flapping`` table), sends the table's changelog record with the batch, a settled
notification when the event ends an episode, the event's ``flapping`` decision (and, at the
crossing, its one notification), and schedules the end-of-hold timer: a ``Wake`` on
``P.deliveries.retry`` (key: the timer's deterministic id) that the retry agent holds until its
``not_before`` and then publishes to ``P.alerts.keyed`` with the home fingerprint as key, so it
comes back here, on the partition of the state, in order with the fingerprint's events
(``Flapping.on_timer``). A timer survives a restart on the retry topic; one that comes back
after the episode changed or ended is stale and does nothing.

A timer's ``not_before`` is the processing time of the change that scheduled it plus
``hold_s``: live, that is the end of the hold in event time; in a replay of old events it
still leaves the replayed events of the hold their turn first.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from ..core.tables import expired_keys, owned_partitions, send_tombstones, sweep_interval
from ..decisions.flapping import (
    FIRING,
    FlapPolicy,
    FlapState,
    Kind,
    Settled,
    Timer,
    decide,
    decide_timer,
    episode_key,
    home_of,
    problem_type,
    settled_alert_id,
    settled_key,
    state_of,
    timer_id,
)
from ..decisions.retention import flap_expiry, flap_horizon
from ..decisions.throttle import bucket_of, decision_id_for
from ..schemas.alert import AlertEvent, truncate_summary
from ..schemas.codec import dumps, loads
from ..schemas.messages import (
    WAKE_PREFIX,
    Outcome,
    Wake,
    command_record,
    decision_record,
    delivery_id_for,
)
from .batches import partition_for_text

if TYPE_CHECKING:
    from .batches import Outgoing
    from .reader import PartitionReader
    from .runtime import Runtime
    from .throttle import Throttle

log = logging.getLogger(__name__)


class Flapping:
    """The flapping step of one throttle agent (its table, its policy, its timers)."""

    def __init__(self, throttle: Throttle) -> None:
        rt = throttle.rt
        self.throttle = throttle
        self.settings = rt.policy.flapping
        self.table = rt.tables.flapping
        self.enabled = self.settings.enabled and self.table is not None
        self.retry_name = rt.topics.retry.get_topic_name()

    def home(self, event: AlertEvent) -> str:
        """The key an event is decided under: with flap detection on, a recovery goes to the
        partition of the fingerprint it resolves (where its flap state is)."""
        return home_of(event) if self.enabled else event.fingerprint

    @staticmethod
    def is_wake(value: Any) -> bool:
        return isinstance(value, bytes) and value.startswith(WAKE_PREFIX)

    # ---------------------------------------------------------------------------- an event

    def step(self, event: AlertEvent, out: Outgoing, now: dt.datetime, partition: int) -> bool:
        """Decide ``event``; True when it was decided here (``flapping``), False when it goes on
        to the throttle window (after any settled notification this event brought)."""
        if not self.enabled:
            return False
        policy = self.settings.for_type(problem_type(event))
        if policy is None:
            return False
        assert self.table is not None
        home = home_of(event)
        state = self.table.get(home)
        # (a crossing needs a state: its alert id, kept to know it again, is only wanted then)
        v = decide(state, state_of(event), event.epoch, policy, None,
                   str(event.alert_id) if state is not None else None)
        new_state = v.new_state
        if new_state is not None and new_state.flapping and not v.late and v.kind is not Kind.PASS:
            # the event the settled notification reports: dumped only while flapping
            new_state = replace(new_state, alert=event.model_dump(mode="json"))
        if new_state is not None:
            out.append(self.table.store(home, new_state, partition))
        if v.settled is not None:
            self.notify_settled(home, v.settled, out, now)
        if v.timer is not None:
            self.schedule(home, event.type, v.timer, event.epoch, out, now)
        if v.kind is Kind.PASS:
            return False
        episode = new_state if new_state is not None else state
        assert episode is not None and episode.since is not None
        notified = v.kind is Kind.NOTIFY
        shown = None
        if notified:
            shown = {**event.model_dump(mode="python"),
                     "summary": truncate_summary(f"[flapping] {event.summary}")}
        self.emit(event.model_dump(mode="python"), shown, episode_key(home, episode.since), Outcome.FLAPPING,
                  v.reason, episode.suppressed, out, now, event)
        return True

    # ----------------------------------------------------------------------------- a timer

    def on_timer(self, msg: Any, out: Outgoing, now: dt.datetime) -> None:
        """A ``Wake`` back from the retry agent: settle the episode if it is still as it was."""
        wake = Wake.model_validate(loads(msg.value))
        body = wake.body
        timer = Timer(float(body["since"]), float(body["last_change"]), float(body["due"]))
        policy = self.settings.for_type(str(body.get("type", ""))) or FlapPolicy(hold_s=timer.due - timer.last_change)
        if self.table is None:
            return
        settled, new_state = decide_timer(self.table.get(wake.key), timer, policy)
        if settled is None or new_state is None:
            log.debug("flapping: timer %s is stale", wake.timer_id)
            return
        out.append(self.table.store(wake.key, new_state, msg.partition))
        self.notify_settled(wake.key, settled, out, now)

    def schedule(self, home: str, alert_type: str, timer: Timer, ts: float, out: Outgoing, now: dt.datetime) -> None:
        tid = timer_id(home, timer)
        wake = Wake(timer="flapping", key=home, timer_id=tid,
                    not_before=now + dt.timedelta(seconds=max(0.0, timer.due - ts)),
                    body={"since": timer.since, "last_change": timer.last_change, "due": timer.due,
                          "type": alert_type})
        out.append((self.retry_name, tid.encode(), dumps(wake), None))

    # ------------------------------------------------------------------------------ records

    def notify_settled(self, home: str, settled: Settled, out: Outgoing, now: dt.datetime) -> None:
        """The one notification of the state the episode settled in: ``notify`` (firing) or
        ``bypass`` (resolved: it resolves, as a recovery does)."""
        if settled.alert is None:  # pragma: no cover - the step always keeps the event
            log.error("flapping: episode of %s settled with no alert kept", home)
            return
        last = AlertEvent.model_validate(settled.alert)
        at = dt.datetime.fromtimestamp(settled.at, dt.UTC)
        alert = {**last.model_dump(mode="python"), "alert_id": settled_alert_id(home, settled),
                 "event_timestamp": at,
                 "summary": truncate_summary(f"[settled {settled.state}] {last.summary}")}
        outcome = Outcome.NOTIFY if settled.state == FIRING else Outcome.BYPASS
        self.emit(alert, alert, settled_key(home, settled), outcome, settled.reason, settled.suppressed, out, now,
                  last.model_copy(update={"event_timestamp": at}))

    def emit(self, alert: dict[str, Any], shown: dict[str, Any] | None, dedupe_key: str, outcome: Outcome,
             reason: str, suppressed: int, out: Outgoing, now: dt.datetime, event: AlertEvent | None = None) -> None:
        """The decision of ``alert`` and, when ``shown`` (the alert as its receivers see it),
        its commands to every route, as the throttle sends them."""
        t = self.throttle
        t.outcomes[outcome] += 1
        destinations: list[str] = []
        commands: Outgoing = []
        if shown is not None:
            routes = t.routes(shown["severity"], shown["type"])
            if event is not None and t.rt.policy.recipients:  # their preferences, as the throttle's
                routes, said = t.preferred(routes, event)
                reason = f"{reason}; {said}" if said else reason
            for r in routes:
                did = delivery_id_for(dedupe_key, r.receiver, r.destination)
                cmd = command_record(did, shown, dedupe_key, r.receiver, r.destination, r.max_attempts,
                                     list(r.backoff_s), suppressed, list(r.failover), now)
                destinations.append(r.destination)
                commands.append((t.deliveries[r.destination.split(":", 1)[0]], did.encode(), dumps(cmd), None))
        ts = alert["event_timestamp"].timestamp()
        window_start = dt.datetime.fromtimestamp(bucket_of(ts, t.window) * t.window, dt.UTC)
        decision = decision_record(decision_id_for(alert["alert_id"]), alert, dedupe_key, outcome, reason,
                                   window_start, suppressed, destinations, now)
        out.append((t.decisions_name, str(alert["fingerprint"]).encode(), dumps(decision), None))
        out.extend(commands)


# ---------------------------------------------------------------------------- retention


async def sweep_flaps(rt: Runtime, lock: Any, now_s: float | None = None) -> int:
    """Delete the flap states stable past the longest ``window_s + hold_s`` of the routing file
    (decisions/retention.flap_expiry: deciding without one decides the same) of the partitions
    this worker writes, with a tombstone on the changelog each, under the hot reader's ``lock``
    (no batch between a delete and its tombstone); how many were tombstoned."""
    flap = rt.tables.flapping
    if flap is None:
        return 0
    table = flap.table
    horizon = flap_horizon(rt.policy.flapping)
    at = time.time() if now_s is None else now_s
    owned = owned_partitions(rt.app, table.changelog_topic.get_topic_name())
    n = rt.settings.partitions

    def expired(value: Any) -> bool:
        return flap_expiry(FlapState.from_value(value), at, horizon).expired

    sent = 0
    while True:  # a chunk at a time, the event loop let go on between them
        async with lock:
            keys = expired_keys(table.data, expired, owned, lambda k: partition_for_text(k, n))
            sent += await send_tombstones(rt.app, table, keys)
        if not keys:
            break
    if sent:
        log.info("flapping: %d states stable past %g s deleted", sent, horizon)
    return sent


def register_sweep(rt: Runtime, reader: PartitionReader) -> None:
    """The flapping table's retention: a timer deleting what ``sweep_flaps`` finds."""

    @rt.app.timer(sweep_interval(flap_horizon(rt.policy.flapping)), name=f"{rt.settings.topic_prefix}.flap_retention")
    async def sweep_flapping() -> None:
        if not rt.ready():
            return
        try:
            await sweep_flaps(rt, reader.lock)
        except Exception:  # the next sweep tries again; a timer that raised would stop
            log.exception("flapping: the retention sweep failed")
