"""Digests of throttle windows (decisions/windows.py), carried out: the throttle plans one at
a window's first suppressed repeat, the retry agent releases it at the window's end.

The timer is the retry topic: a digest is a ``DeliveryCommand`` (its ``digest`` set) sent to
``P.deliveries.retry`` with ``not_before`` the window's end, to the partition of the
fingerprint's events, so the retry agent holding it runs on the worker that holds the
fingerprint's throttle table partition (Faust assigns topics of one partition count
together). It survives a restart as every waiting retry does (the retry agent acknowledges
it only once released). Its delivery id is ``delivery_id_for(fingerprint:bucket:digest,
receiver, destination)``: a replay or a re-consumption makes the same command, and delivery
sends it once.

When it is released (``Digests.fire``) its count is re-read from the table (the carried
count when the table no longer has the window) and the ``digest`` decision is recorded on
``P.decisions`` with its reason, by the command of the first receiver only (one decision per
window; its id is deterministic too, and the record agent inserts idempotently).
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from ..core import metrics
from ..decisions.throttle import Verdict
from ..decisions.windows import digest_count, digest_reason, digest_receiver, plan_digest
from ..schemas.alert import AlertEvent
from ..schemas.codec import dumps
from ..schemas.messages import Decision, DeliveryCommand, DigestInfo, Outcome, delivery_id_for
from .batches import Outgoing
from .outbox import Record, record
from .runtime import Runtime

log = logging.getLogger(__name__)


class Digests:
    """The digests of one worker: ``schedule`` on the throttle's path, ``fire`` on the retry
    agent's."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.policy = rt.policy.windows
        self.retry_name = rt.topics.retry.get_topic_name()
        self.decisions_name = rt.topics.decisions.get_topic_name()

    def schedule(self, event: AlertEvent, verdict: Verdict, window_s: int, routes: list[Any],
                 out: Outgoing, now: dt.datetime, partition: int) -> None:
        """The window's digest, one command per receiver, if ``verdict`` starts one."""
        if not self.policy.digest_types:
            return
        plan = plan_digest(self.policy, event.type, event.is_recovery, verdict.outcome,
                           verdict.suppressed_count, verdict.dedupe_key, verdict.bucket, window_s)
        if plan is None:
            return
        chosen = [r for r in routes if digest_receiver(self.policy, r.receiver)]
        if not chosen:
            return
        info = DigestInfo(window_start=plan.window_start, window_s=window_s, decision_id=plan.decision_id,
                          destinations=[r.destination for r in chosen])
        for r in chosen:
            did = delivery_id_for(plan.dedupe_key, r.receiver, r.destination)
            cmd = DeliveryCommand(delivery_id=did, alert=event, dedupe_key=plan.dedupe_key, receiver=r.receiver,
                                  destination=r.destination, max_attempts=r.max_attempts,
                                  backoff_s=list(r.backoff_s), not_before=plan.due,
                                  suppressed_count=verdict.suppressed_count, failover=list(r.failover),
                                  created_at=now, digest=info)
            out.append((self.retry_name, did.encode(), dumps(cmd), partition))

    def fire(self, cmd: DeliveryCommand, now: dt.datetime) -> tuple[DeliveryCommand, list[Record]]:
        """A digest released at its window's end: its count read again from the table, and
        (by the first receiver's command) the ``digest`` decision. A command released again
        (a retry, a rate slot's wait, a failover) is sent as it is."""
        d = cmd.digest
        if d is None or cmd.attempt != 1 or cmd.failover_of is not None or cmd.waiting_for is not None:
            return cmd, []
        a = cmd.alert
        state = self.rt.tables.throttle.get(a.fingerprint, d.window_start.timestamp(), d.window_s)
        count = digest_count(cmd.suppressed_count, state.suppressed if state is not None else None)
        cmd = cmd.model_copy(update={"suppressed_count": count})
        if d.destinations and cmd.destination != d.destinations[0]:
            return cmd, []
        decision = Decision(decision_id=d.decision_id, alert=a, dedupe_key=cmd.dedupe_key, outcome=Outcome.DIGEST,
                            reason=digest_reason(count, d.window_s, d.window_start), window_start=d.window_start,
                            suppressed_count=count, destinations=list(d.destinations), decided_at=now)
        metrics.decisions.labels(Outcome.DIGEST.value).inc()
        return cmd, [record(self.decisions_name, a.fingerprint, decision)]
