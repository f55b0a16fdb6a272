"""The throttle agent: validate → (repartition by fingerprint) → decide → route → send.

Consumes ``P.alerts`` (raw bytes, any producer) and ``P.alerts.keyed`` (events this agent
re-keyed because their key or partition was not their fingerprint's). Every rejected message
goes to ``P.alerts.invalid`` with its raw bytes, where it came from and the errors; no
exception leaves the loop.

Shaped for throughput: the alert topics are read by a plain aiokafka consumer
(``HotReader``, on ``reader.PartitionReader``) that follows Faust's group, not by Faust's
stream. It processes whole fetches, hands every output (and the table's changelog records,
to the partition of the event's source) to the producer without awaiting each, and commits
its offsets only after every send of the batch was acknowledged: at least once. On a
revocation it finishes the batch under way, flushes and commits before Faust lets the
partitions go.

Bounded input: a message is validated against TOCSIN_MAX_MESSAGE_BYTES and
TOCSIN_MAX_FUTURE_SKEW_S (schemas/validate.py). A record the producer or the broker refuses for
good (too large: ``batches.refused_for_good``) is not a reason to read the same messages again
and again: the reader reads again from the last commit, once, handling each message up to
where it had read on its own, so the one whose record is refused is found, and that message
goes to ``P.alerts.invalid`` with the reason.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from typing import Any

import orjson
from aiokafka import TopicPartition
from aiokafka.errors import ProducerClosed
from faust.types import TP

from ..core import metrics
from ..core.silences import wait_loaded
from ..decisions.backoff import Backoff, Failure, retry
from ..decisions.maintenance import muted_verdict
from ..decisions.routing import preferred, route
from ..decisions.silence import silenced_by
from ..decisions.throttle import decide, decision_id_text
from ..decisions.windows import (
    DEFAULT_WINDOWS,
    WindowPolicy,
    default_window,
    window_for,
    window_lengths,
    window_tag,
)
from ..infra import faust_compat
from ..schemas.alert import AlertEvent, alert_record
from ..schemas.codec import dumps
from ..schemas.messages import (
    InvalidAlert,
    Outcome,
    SourcePosition,
    command_record,
    decision_record,
    delivery_id_for,
)
from ..schemas.validate import InputLimits, rejection, validate_raw
from .batches import BatchSender, Outgoing, refused_for_good
from .batches import partition_for_text as partition_for
from .digest import Digests
from .escalation import Escalation
from .flapping import Flapping
from .flapping import register_sweep as register_flap_sweep
from .grouping import Grouper
from .inhibit import Inhibitor
from .maintenance import Maintenance
from .reader import PartitionReader
from .runtime import Runtime

log = logging.getLogger(__name__)

BATCH = 2000
#: longest the decisions and the throttle table's changelog records wait to be sent (HotReader)
HOLD_S = 0.05
#: and most bytes of them held
HOLD_BYTES = 8 << 20
#: most (severity, type) routes remembered: types are the producers' (64 characters at most)
ROUTES_MAX = 1024
#: between the tries of handing a batch to a producer that refused it
SEND_BACKOFF = Backoff(0.1, 5.0)


class Throttle:
    """Decides one event at a time and collects what to send."""

    #: the routing file's per-type windows and digests (set from the policy in __init__)
    policy_windows: WindowPolicy = DEFAULT_WINDOWS
    #: the inhibition step (agents/inhibit.py); None where a Throttle is built without __init__
    inhibitor: Inhibitor | None = None
    #: flap detection (agents/flapping.py); None: none (a Throttle made without __init__)
    flap: Flapping | None = None

    def __init__(self, rt: Runtime) -> None:
        s = rt.settings
        self.rt = rt
        self.table = rt.tables.throttle
        self.changelog_name = self.table.table.changelog_topic.get_topic_name()
        self.policy_windows = rt.policy.windows
        #: the default window (the routing file's [throttle] default_s, else the setting) and
        #: the digests (decisions/windows.py, agents/digest.py)
        self.window = default_window(self.policy_windows, s.throttle_window_s)
        self.digests = Digests(rt)
        self.partitions = s.partitions
        self.limits = InputLimits(max_message_bytes=s.max_message_bytes, max_future_skew_s=s.max_future_skew_s)
        self.alerts_name = rt.topics.alerts.get_topic_name()
        self.keyed_name = rt.topics.alerts_keyed.get_topic_name()
        self.invalid_name = rt.topics.invalid.get_topic_name()
        self.decisions_name = rt.topics.decisions.get_topic_name()
        self.deliveries = {ch: t.get_topic_name() for ch, t in rt.topics.deliveries.items()}
        self.enabled = set(rt.channels)
        self._routes: dict[tuple[int, str], list[Any]] = {}
        self.outcomes = {o: 0 for o in Outcome}
        self._alerts_ok: bool | None = None
        self.invalid = 0
        self.maintenance = Maintenance(rt, self.notified_before)
        self.inhibitor = Inhibitor(rt)  # [[inhibit_rules]] (agents/inhibit.py)
        self.escalation = Escalation(rt)
        self.grouper = Grouper(rt)
        self.flap = Flapping(self)  # flap detection (agents/flapping.py)

    def alerts_copartitioned(self) -> bool:
        """Whether P.alerts has TOCSIN_PARTITIONS partitions, like the tables; if a producer
        created it with another count, every event takes the re-keying hop instead."""
        if self._alerts_ok is None:
            n = self.rt.app.consumer.topic_partitions(self.alerts_name)
            if n is None:
                return False  # not known yet: the safe path
            self._alerts_ok = n == self.partitions
            if not self._alerts_ok:
                log.warning("%s has %d partitions, not TOCSIN_PARTITIONS=%d: every event is re-keyed "
                            "through %s", self.alerts_name, n, self.partitions, self.keyed_name)
        return self._alerts_ok

    def routes(self, severity: int, alert_type: str) -> list[Any]:
        key = (severity, alert_type)
        r = self._routes.get(key)
        if r is None:
            if len(self._routes) >= ROUTES_MAX:  # a producer inventing types: start again
                self._routes.clear()
            r = self._routes[key] = route(severity, alert_type, self.rt.policy, self.enabled)
        return r

    def reject(self, invalid: InvalidAlert, out: Outgoing, count: bool = True) -> None:
        self.invalid += count
        log.warning("invalid alert from %s/%d@%d: %s", invalid.source.topic, invalid.source.partition,
                    invalid.source.offset, "; ".join(invalid.errors)[:300])
        key = invalid.key.encode() if invalid.key is not None else None
        out.append((self.invalid_name, key, dumps(invalid), None))

    def refused(self, msg: Any, exc: BaseException) -> InvalidAlert:
        """The rejection of a message a record made from which was refused for good."""
        pos = SourcePosition(topic=msg.topic, partition=msg.partition, offset=msg.offset)
        raw = msg.value if isinstance(msg.value, bytes) else None
        why = (f"event: a record made from this message was refused for good ({type(exc).__name__}: {exc}); "
               "it is not retried")
        return rejection(raw, msg.key, pos, [why], self.limits.max_message_bytes)

    def process(self, msg: Any, out: Outgoing, now: dt.datetime) -> None:
        """One record (``topic``, ``partition``, ``offset``, ``key``, ``value``)."""
        flap = self.flap
        if flap is not None and msg.topic == self.keyed_name and flap.is_wake(msg.value):
            flap.on_timer(msg, out, now)  # a flapping hold's end, back from the retry agent
            return
        result = validate_raw(msg.value, msg.key, (msg.topic, msg.partition, msg.offset), now=now,
                              limits=self.limits)
        if isinstance(result, InvalidAlert):
            self.reject(result, out)
            return
        fp = flap.home(result) if flap is not None else result.fingerprint
        if msg.topic == self.alerts_name:
            key = msg.key
            key_text = key.decode("utf-8", "replace") if isinstance(key, bytes) else key
            if (key_text != fp or not self.alerts_copartitioned()
                    or msg.partition != partition_for(fp, self.partitions)):
                # re-key: the default partitioner puts it on the fingerprint's partition
                out.append((self.keyed_name, fp.encode(), dumps(result), None))
                return
        # table writes go to the changelog partition of the event's source partition
        self.decide(result, out, now, msg.partition)

    def process_safely(self, msg: Any, out: Outgoing, now: dt.datetime) -> None:
        try:
            self.process(msg, out, now)
        except Exception as exc:  # keep the event with its reason; never crash the loop
            log.exception("throttle failed on %s/%s@%s", msg.topic, msg.partition, msg.offset)
            pos = SourcePosition(topic=msg.topic, partition=msg.partition, offset=msg.offset)
            raw = msg.value if isinstance(msg.value, bytes) else None
            self.reject(rejection(raw, msg.key, pos, [f"internal: {type(exc).__name__}: {exc}"[:500]],
                                  self.limits.max_message_bytes), out)

    def decide(self, event: AlertEvent, out: Outgoing, now: dt.datetime, partition: int) -> None:
        ts = event.epoch
        fp = event.fingerprint
        window = window_for(self.policy_windows, event.type, self.window)  # per type
        state = self.table.get(fp, ts, window, partition)
        previous = 0
        if state is None and not event.is_recovery:
            prev = self.table.previous(fp, ts, window, partition)
            previous = prev.suppressed if prev else 0
        silenced = self.silenced(event)
        muted = None if silenced is not None else self.maintenance.muted(event)
        tag = window_tag(window, self.window)
        verdict = (decide(state, event, window, previous, silenced, window_tag=tag) if muted is None
                   else muted_verdict(state, event, window, muted, window_tag=tag))
        if self.inhibitor is not None:
            verdict = self.inhibitor.apply(event, verdict, out, lambda: self.notified_before(event))
        if (verdict.outcome not in (Outcome.SILENCED, Outcome.MUTED, Outcome.INHIBITED) and self.flap is not None
                and self.flap.step(event, out, now, partition)):
            return  # flapping (agents/flapping.py): decided and recorded there, the throttle window untouched
        if verdict.new_state is not None:
            for key, value in self.table.store(fp, ts, verdict.new_state, partition, window):
                # the bytes Faust's own changelog send would write (its "json" codec; tested)
                out.append((self.changelog_name, orjson.dumps(key), orjson.dumps(value), partition))
        outcome, reason = verdict.outcome, verdict.reason
        # grouping: an alert to notify joins its group instead (agents/grouping.py)
        grouped = self.grouper.join(event, verdict.suppressed_count) if outcome is Outcome.NOTIFY else None
        if grouped is not None:
            outcome, reason = Outcome.GROUPED, grouped[0]
        self.outcomes[outcome] += 1
        alert = alert_record(event)  # its model_dump
        destinations: list[str] = []
        mark = len(out)
        if verdict.notifies and grouped is None:
            routes = self.routes(event.severity, event.type)
            if self.rt.policy.recipients:
                routes, said = self.preferred(routes, event)
                reason = f"{reason}; {said}" if said else reason
            for r in routes:
                did = delivery_id_for(verdict.dedupe_key, r.receiver, r.destination)
                cmd = command_record(did, alert, verdict.dedupe_key, r.receiver, r.destination,
                                     r.max_attempts, list(r.backoff_s), verdict.suppressed_count,
                                     list(r.failover), now)
                destinations.append(r.destination)
                out.append((self.deliveries[r.destination.split(":", 1)[0]], did.encode(), dumps(cmd), None))
            # escalation: step 0 with the notification, the first later step's timer (agents/escalation.py)
            self.escalation.start(event, alert, verdict, destinations, out, now)
        if verdict.outcome is Outcome.SUPPRESS and self.policy_windows.digest_types:
            self.digests.schedule(event, verdict, window, self.routes(event.severity, event.type), out, now, partition)
        decision = decision_record(decision_id_text(event.alert_id), alert, verdict.dedupe_key,
                                   outcome, reason, verdict.window_start,
                                   verdict.suppressed_count, destinations, now)
        # the decision goes first in the batch's sends: it is what the record is built from
        out.insert(mark, (self.decisions_name, fp.encode(), dumps(decision), None))
        if grouped is not None:
            out.append(grouped[1])

    def preferred(self, routes: list[Any], event: AlertEvent) -> tuple[list[Any], str]:
        """``routes`` as the recipients' preferences leave them at the event's time
        (decisions/preferences.py), and why they changed ("" when they did not)."""
        view = self.rt.preferences
        return preferred(routes, self.rt.policy, event.severity, event.type, event.event_timestamp,
                         is_recovery=event.is_recovery, enabled=self.enabled,
                         versions=view.versions if view is not None else None)

    def silenced(self, event: AlertEvent) -> str | None:
        """The silence muting ``event`` at its event time, if any (core/silences.py)."""
        view = self.rt.silences
        if view is None or not view.index:
            return None
        return silenced_by(view.index, event, event.event_timestamp, lambda: self.notified_before(event))

    def notified_before(self, event: AlertEvent) -> bool:
        """Whether a firing of the fingerprint a recovery resolves was notified in a window the
        table still keeps (TOCSIN_THROTTLE_EXPIRES_S): a window holds state only then."""
        target, ts = event.resolves or event.fingerprint, event.epoch
        expires = self.rt.settings.throttle_expires_s
        for window in window_lengths(self.policy_windows, self.window):  # the problem's type is not known
            kept = max(expires, window * 2) // window + 1
            if any(self.table.get(target, ts - k * window, window) is not None for k in range(kept)):
                return True
        return False

    def flush_metrics(self) -> None:
        for o, n in self.outcomes.items():
            if n:
                metrics.decisions.labels(o.value).inc(n)
                self.outcomes[o] = 0
        if self.invalid:
            metrics.events_invalid.inc(self.invalid)
            self.invalid = 0


class HotReader(PartitionReader):
    """Reads this worker's partitions of the alert topics (see the module's docstring): whole
    fetches processed at once, every output handed to the producer without awaiting each,
    the offsets committed once every send of them was acknowledged."""

    batch = BATCH

    def __init__(self, rt: Runtime, throttle: Throttle, topics: tuple[str, ...]) -> None:
        super().__init__(rt, topics, "hot")
        self.throttle = throttle
        self.positions: dict[TopicPartition, int] = {}
        self.unacked: list[tuple[str, int, int, asyncio.Future[Any]]] = []
        self.sender: Any = None
        #: the decisions and the table's changelog records: off an alert's way to its receiver,
        #: so held for up to HOLD_S and sent as fewer, larger record batches
        self.background = frozenset({throttle.decisions_name, throttle.changelog_name})
        self.held: Outgoing = []
        self.held_since = 0.0
        self.held_bytes = 0
        #: per partition, the offset below which messages are handled one at a time, each one's
        #: records sent and waited for: set when a record was refused for good, to find the
        #: message it was made from (read again from the last commit)
        self.isolate: dict[TopicPartition, int] = {}

    async def started(self) -> None:
        self.sender = BatchSender(faust_compat.aiokafka_producer(self.app))
        await wait_loaded(self.rt.silences)  # decide knowing every silence set before this worker started
        await wait_loaded(self.rt.maintenance)  # and every one-off maintenance window
        if self.throttle.inhibitor is not None:
            await self.throttle.inhibitor.loaded()  # and every inhibition fact

    def reset(self) -> None:
        self.positions.clear()
        self.held.clear()  # not sent: what made them is read again from the committed offsets
        self.held_bytes = 0

    def commit_due(self) -> bool:
        return bool(self.unacked or self.held) and (super().commit_due() or len(self.unacked) > 50_000)

    async def handle(self, batch: dict[TopicPartition, list[Any]]) -> None:
        throttle_ = self.throttle
        out: Outgoing = []
        now = dt.datetime.now(dt.UTC)
        n = 0
        # the fetch's table writes go to the store as one write batch, before anything is sent
        # (core/tables.ThrottleTable); none is held across an await
        table = throttle_.table
        table.begin()
        try:
            for tp, msgs in batch.items():
                upto = self.isolate.get(tp)
                if upto is None:
                    for msg in msgs:
                        throttle_.process_safely(msg, out, now)
                else:
                    for msg in msgs:
                        if msg.offset < upto:
                            table.flush()
                            await self.handle_alone(msg, now)
                            table.begin()
                        else:
                            throttle_.process_safely(msg, out, now)
                    if msgs[-1].offset + 1 >= upto:
                        del self.isolate[tp]
                        log.info("hot reader: %s read again one message at a time up to %d; batches again", tp,
                                 upto)
                n += len(msgs)
                self.positions[tp] = msgs[-1].offset + 1
        finally:
            table.flush()
        metrics.events_in.inc(n)
        throttle_.flush_metrics()
        background, held = self.background, self.held
        urgent: Outgoing = []
        if not held:
            self.held_since = time.monotonic()
        for record in out:
            if record[0] in background:
                held.append(record)
                self.held_bytes += len(record[2])
            else:
                urgent.append(record)
        await self.send(urgent)
        await self.release_held()

    async def handle_alone(self, msg: Any, now: dt.datetime) -> None:
        """One message of a range read again after a refusal: its records sent on their own and
        waited for. One refused for good sends the message to ``P.alerts.invalid`` with the
        reason (and, refused too, the rejection without the raw bytes); other records it made
        stay sent. A failure that may pass raises: the reader reads again from the last commit."""
        out: Outgoing = []
        self.throttle.process_safely(msg, out, now)
        refused = await self.deliver(out)
        if refused is None:
            return
        invalid = self.throttle.refused(msg, refused)
        log.error("a record made from %s/%d@%d was refused for good (%s): the message is kept on %s",
                  msg.topic, msg.partition, msg.offset, refused, self.throttle.invalid_name)
        for attempt in (invalid, bare(invalid)):
            kept: Outgoing = []
            self.throttle.reject(attempt, kept, count=attempt is invalid)
            again = await self.deliver(kept)
            if again is None:
                self.throttle.flush_metrics()
                return
            log.error("the rejection of %s/%d@%d (%d bytes) was refused too (%s)", msg.topic, msg.partition,
                      msg.offset, len(kept[0][2]), again)
        log.error("%s/%d@%d could not be kept anywhere; going on without it", msg.topic, msg.partition, msg.offset)
        self.throttle.flush_metrics()

    async def deliver(self, out: Outgoing) -> BaseException | None:
        """Send ``out`` now and wait for every batch of it; the first refusal for good, or None.
        A failure that may pass raises."""
        if not out:
            return None
        sent = await self.sender.send(out)
        results = await asyncio.gather(*(f for *_, f in sent), return_exceptions=True)
        refused: BaseException | None = None
        for entry, result in zip(sent, results, strict=True):
            if not isinstance(result, BaseException):
                self.unacked.append(entry)  # acknowledged: the commit reads the changelog's offsets
            elif refused_for_good(result):
                refused = refused or result
            else:
                raise result
        return refused

    async def release_held(self, now: bool = False) -> None:
        """Send the held records once the oldest is HOLD_S old (or ``now``, or there are many)."""
        if self.held and (now or time.monotonic() - self.held_since >= HOLD_S or len(self.held) > BATCH * 4
                          or self.held_bytes > HOLD_BYTES):
            held, self.held, self.held_bytes = self.held, [], 0
            await self.send(held)

    async def send(self, out: Outgoing) -> None:
        """Hand ``out`` to the producer, trying again until it is taken (nothing of this batch
        is committed before it is sent) or the worker stops."""
        if not out:
            return

        def failed(f: Failure) -> None:
            log.warning("queueing the batch's %d messages failed (%s), retrying in %.1fs", len(out), f.error, f.delay_s)

        try:
            self.unacked.extend(await retry(lambda: self.sender.send(out), SEND_BACKOFF, on_failure=failed,
                                            retry_if=lambda exc: not (self.closed or isinstance(exc, ProducerClosed))))
        except Exception:  # only what retry_if refuses: the worker is stopping
            # nothing of what made the batch is committed (stale), the next owner reads it again
            self.stale = True
            log.info("the worker stops with %d messages not sent; they are read again", len(out))

    async def step(self) -> None:
        await super().step()
        if self.held and not self.stale:
            async with self.lock:
                await self.release_held()

    async def commit(self) -> None:
        """Commit what was processed once every send of it (and the table's changelog) is
        acknowledged; a failed send means reading again from the last commit."""
        await self.release_held(now=True)
        unacked, self.unacked = self.unacked, []
        self.last_commit = time.monotonic()
        results = await asyncio.gather(*(f for *_, f in unacked), return_exceptions=True)
        failed = [r for r in results if isinstance(r, BaseException)]
        if failed:
            for_good = [r for r in failed if refused_for_good(r)]
            if for_good:
                # sending them again would fail again: read again, each message on its own,
                # up to where this reader had read, to find the ones they were made from
                for tp, offset in self.positions.items():
                    self.isolate[tp] = max(offset, self.isolate.get(tp, 0))
                log.error("%d record batches were refused for good (%s); reading again from the last committed "
                          "offsets, one message at a time up to %s", len(for_good), for_good[0],
                          {f"{tp.topic}/{tp.partition}": off for tp, off in self.isolate.items()})
            else:
                log.error("%d record batches failed (%s); reading again from the last committed offsets",
                          len(failed), failed[0])
            self.stale = True
            return
        # as Faust's _on_changelog_sent: a RocksDB store remembers how far the changelog is in it
        persisted: dict[int, int] = {}
        for (topic, partition, count, _), meta in zip(unacked, results, strict=True):
            if topic == self.throttle.changelog_name:
                persisted[partition] = max(persisted.get(partition, -1), meta.offset + count - 1)  # type: ignore[union-attr]
        data = self.throttle.table.table.data
        for partition, offset in persisted.items():
            data.set_persisted_offset(TP(self.throttle.changelog_name, partition), offset)
        await self.commit_offsets(self.positions)


def bare(invalid: InvalidAlert) -> InvalidAlert:
    """A rejection without its raw bytes, for when the one with them was refused too."""
    return invalid.model_copy(update={
        "raw": "", "raw_encoding": "text", "raw_truncated": True,
        "errors": [*invalid.errors, "event: the raw bytes are not kept: the rejection with them was refused too"]})


def register(rt: Runtime) -> None:
    throttle_ = Throttle(rt)
    hot = (throttle_.alerts_name, throttle_.keyed_name)
    reader = HotReader(rt, throttle_, hot)
    register_flap_sweep(rt, reader)  # the flapping table's retention (agents/flapping.py)
    reader.follow({f"{rt.settings.topic_prefix}.throttle": hot})
