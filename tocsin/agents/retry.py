"""The retry agent: holds commands from ``P.deliveries.retry`` until their ``not_before``,
then sends them back to ``P.deliveries.<channel>`` (a throttle step's timer, a ``Wake``, to
``P.alerts.keyed``); those waiting after failed contacts or an
open circuit sooner, once their destination's breaker closes on this worker.

No consuming loop sleeps: the agent reads every waiting command into a heap ordered by due
time and a timer releases the due ones, all at once; each event is acknowledged only after
the broker acknowledged its re-published command (agents/outbox.py), so a crash, or a broker
that refuses or stalls, re-reads what was waiting (the delivery table drops repeats).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import heapq
import itertools
import logging
import random
from typing import Any

from pydantic import ValidationError

from ..core import metrics
from ..errors import OutboxStopped, RecordRefused
from ..schemas.messages import DeliveryCommand, Wake
from .common import decode, keep_bad
from .digest import Digests
from .escalation import release_to
from .outbox import Record, record
from .runtime import Runtime

log = logging.getLogger(__name__)
TICK_S = 0.05
#: the waits a destination's recovery ends (a rate slot is kept: it is the rate)
RELEASED_ON_CLOSE = frozenset({"retry", "circuit_open"})
#: released commands are spread at about this many a second, over at most this long
RELEASE_PER_S = 100.0
RELEASE_SPREAD_MAX_S = 10.0
_RNG = random.Random()


def register(rt: Runtime) -> None:
    app = rt.app
    heap: list[tuple[float, int, DeliveryCommand | Wake, Any]] = []
    seq = itertools.count()
    wake = asyncio.Event()
    digests = Digests(rt)

    async def release_due() -> None:
        """Re-publish every due command at once, then acknowledge their events: only once the
        broker acknowledged the commands (the Outbox sends again until it does). A command
        the broker refuses for good is kept on the DLQ instead."""
        now = dt.datetime.now(dt.UTC).timestamp()
        due: list[tuple[DeliveryCommand | Wake, Any]] = []
        extra: list[Record] = []
        while heap and heap[0][0] <= now:
            _, _, cmd, event = heapq.heappop(heap)
            due.append((cmd, event))
        if due:
            records = []
            for cmd, _ in due:
                if isinstance(cmd, DeliveryCommand) and cmd.digest is not None:  # a window's digest: its
                    cmd, decided = digests.fire(cmd, dt.datetime.now(dt.UTC))  # count read now, its decision
                    extra.extend(decided)
                records.append(released(cmd))
            records += extra
            refused: dict[int, BaseException] = {}
            try:
                await rt.outbox.send_many(records)
            except RecordRefused as exc:
                refused = exc.refused
            for i, (cmd, event) in enumerate(due):
                if i in refused:
                    await keep_bad(rt, event, f"retry: re-publishing {ident(cmd)} was refused for good: "
                                              f"{type(refused[i]).__name__}: {refused[i]}")
                event.ack()
        metrics.retries_pending.set(len(heap))

    def ident(cmd: DeliveryCommand | Wake) -> str:
        return cmd.timer_id if isinstance(cmd, Wake) else cmd.delivery_id

    def released(cmd: DeliveryCommand | Wake) -> Any:
        if isinstance(cmd, Wake):  # a throttle step's timer: back to it, on its key's partition
            return record(rt.topics.alerts_keyed.get_topic_name(), cmd.key, cmd)
        return record(*release_to(rt, cmd), cmd.model_copy(update={"not_before": None, "waiting_for": None}))

    def release_waiting(destination: str) -> None:
        """``destination`` answers again (its breaker closed): the commands here waiting for it
        after failed contacts or an open circuit are due now, spread over up to a second per
        hundred of them so that they do not hit it at once; a rate slot is kept. Without this a
        command on the slow tier would wait up to a day for an endpoint that is back."""
        now = dt.datetime.now(dt.UTC).timestamp()
        waiting = [i for i, (due, _, cmd, _) in enumerate(heap)
                   if due > now and isinstance(cmd, DeliveryCommand) and cmd.destination == destination
                   and cmd.waiting_for in RELEASED_ON_CLOSE]
        if not waiting:
            return
        spread = min(RELEASE_SPREAD_MAX_S, len(waiting) / RELEASE_PER_S)
        for i in waiting:
            _, n, cmd, event = heap[i]
            heap[i] = (now + _RNG.uniform(0.0, spread), n, cmd, event)
        heapq.heapify(heap)
        log.info("retry: %s answers again: %d waiting commands released", destination, len(waiting))
        wake.set()

    rt.on_breaker_closed.append(release_waiting)

    source = app.topic(rt.topics.retry.get_topic_name(), key_serializer="raw", value_serializer="raw",
                       partitions=rt.settings.partitions)

    @app.agent(source, name=f"{rt.settings.topic_prefix}.retry", concurrency=1)
    async def retry(stream: Any) -> None:
        async for event in stream.noack().events():
            try:
                value = decode(event.value)
                cmd: DeliveryCommand | Wake
                if isinstance(value, dict) and "timer" in value:
                    cmd = Wake.model_validate(value)
                else:
                    cmd = DeliveryCommand.model_validate(value)
                if isinstance(cmd, DeliveryCommand) and cmd.escalation is None and cmd.channel not in rt.topics.deliveries:
                    raise ValueError(f"no channel {cmd.channel!r} (destination {cmd.destination!r})")
            except (ValidationError, TypeError, ValueError) as exc:
                try:
                    await keep_bad(rt, event, f"invalid delivery command: {exc}")
                except OutboxStopped:  # not kept: unacknowledged, read again
                    return
                event.ack()
                continue
            due = cmd.not_before.timestamp() if cmd.not_before else 0.0
            heapq.heappush(heap, (due, next(seq), cmd, event))
            metrics.retries_pending.set(len(heap))
            if due <= dt.datetime.now(dt.UTC).timestamp():
                wake.set()

    @app.task
    async def release_loop() -> None:
        while not app.should_stop:
            try:
                await asyncio.wait_for(wake.wait(), TICK_S)
            except TimeoutError:
                pass
            wake.clear()
            try:
                await release_due()
            except OutboxStopped as exc:  # the worker stops: what was due is read again
                log.warning("retry: %s", exc)
                return
