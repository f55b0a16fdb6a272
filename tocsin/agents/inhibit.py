"""Inhibition in the throttle's path, and the release of what it held (decisions/inhibit.py).

``Inhibitor.apply`` is the throttle's inhibition step (after silences, before the throttle
window): it asks the worker's ``InhibitView`` (core/inhibitions.py) whether the event is
inhibited at its event time, turns the verdict into ``inhibited`` (reason: the rule's name,
the throttle window untouched), and sends the facts the event makes to ``P.inhibitions``
with the batch's other records (committed with it).

Release: a timer of this module looks, on every worker, at the inhibited targets of the
partitions this worker's throttle reads; one whose inhibition has ended (its sources resolved,
decisions.inhibit.InhibitIndex.release_at) and that did not resolve is re-injected into
``P.alerts.keyed`` (``release_event``: its last inhibited event at the time the inhibition
ended, a new alert id derived from both) and decided by the throttle as any alert, its
decision's reason ``released: <rule>``. Nothing is held only in memory: the targets and
their sources are facts on ``P.inhibitions``, read again at a start; a target re-injected
twice (a restart, a rebalance) has the same alert id, so the same delivery ids, and is
delivered once. The timer's interval is when it looks, never what it decides: every time it
decides with is an event time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from ..core.follow import follow
from ..core.inhibitions import InhibitView
from ..core.silences import wait_loaded
from ..decisions.inhibit import release_event, step
from ..decisions.throttle import Verdict
from ..schemas.alert import AlertEvent
from ..schemas.codec import dumps
from ..schemas.messages import Outcome
from .batches import Outgoing
from .batches import partition_for_text as partition_for
from .outbox import record
from .runtime import Runtime

log = logging.getLogger(__name__)

#: how often the release timer looks for targets whose inhibition ended
RELEASE_INTERVAL_S = 1.0


class Inhibitor:
    """The throttle's inhibition step and the release timer; inert without ``[[inhibit_rules]]``."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        rules = rt.policy.inhibit_rules
        topic = rt.topics.inhibitions
        self.view = InhibitView(topic.get_topic_name(), rules) if rules and topic is not None else None
        self.topic_name = topic.get_topic_name() if topic is not None else ""
        self.keyed_name = rt.topics.alerts_keyed.get_topic_name()
        #: per target, the id of the release event sent last (not sent again while it waits to be read)
        self.sent: dict[str, str] = {}
        self._looked: tuple[int, frozenset[int]] | None = None
        if self.view is not None:
            self._register()

    async def loaded(self) -> None:
        """For the throttle: wait until the view has read the topic (as for silences)."""
        await wait_loaded(self.view)

    def apply(self, event: AlertEvent, verdict: Verdict, out: Outgoing, notified: Callable[[], bool]) -> Verdict:
        """The verdict after inhibition, the facts it makes appended to ``out``."""
        view = self.view
        if view is None:
            return verdict
        s = step(view.index, event, muted=verdict.outcome in (Outcome.SILENCED, Outcome.MUTED), notified_firing=notified)
        for fact in s.facts:
            view.apply(fact)  # the next event of the batch sees it
            out.append((self.topic_name, fact.key.encode(), dumps(fact), None))
        if s.inhibition is not None:
            kept = verdict.suppressed_count - (verdict.outcome is Outcome.SUPPRESS)
            return verdict._replace(outcome=Outcome.INHIBITED, reason=s.inhibition.rule,
                                       suppressed_count=kept, new_state=None)
        if s.released_by is not None and verdict.notifies:
            return verdict._replace(reason=f"released: {s.released_by}")
        return verdict

    # ---------------------------------------------------------------- release

    def owned(self) -> frozenset[int]:
        """The partitions of ``P.alerts.keyed`` this worker's throttle reads."""
        return frozenset(tp.partition for tp in self.rt.app.consumer.assignment() if tp.topic == self.keyed_name)

    def due(self, owned: frozenset[int]) -> list[AlertEvent]:
        """The release events of this worker's targets whose inhibition ended (not sent yet)."""
        assert self.view is not None
        index, partitions = self.view.index, self.rt.settings.partitions
        out: list[AlertEvent] = []
        pending = set()
        for fp, target in list(index.pending()):
            pending.add(fp)
            if partition_for(fp, partitions) not in owned:
                continue
            at = index.release_at(fp)
            if at is None or target.alert is None:
                continue
            event = release_event(target.alert, at, target.rule)
            if self.sent.get(fp) != str(event.alert_id):
                out.append(event)
        for fp in [fp for fp in self.sent if fp not in pending]:  # read back: released
            del self.sent[fp]
        return out

    async def release(self) -> int:
        """Re-inject the targets due; how many."""
        if self.view is None or not self.rt.ready() or not self.view.loaded.is_set():
            return 0
        owned = self.owned()
        looked = (self.view.index.version, owned)
        if looked == self._looked:
            return 0  # nothing changed since the last look
        events = self.due(owned)
        if events:
            await self.rt.outbox.send_many([record(self.keyed_name, e.fingerprint, dumps(e)) for e in events])
            for e in events:
                self.sent[e.fingerprint] = str(e.alert_id)
                log.info("inhibition of %s ended at %s (%s): released as %s", e.fingerprint,
                         e.event_timestamp.isoformat(), e.details.get("inhibit_released", {}).get("rule"), e.alert_id)
        self._looked = looked
        return len(events)

    def _register(self) -> None:
        app, view = self.rt.app, self.view
        assert view is not None

        @app.task
        async def _read_inhibitions() -> None:
            await follow(view, self.rt.settings, lambda: bool(app.should_stop))

        @app.timer(RELEASE_INTERVAL_S, name=f"{self.rt.settings.topic_prefix}.inhibit_release")
        async def _release() -> None:
            try:
                await self.release()
            except Exception:  # the next look tries again; a timer that raised would stop
                log.exception("inhibitions: the release failed; trying again")
