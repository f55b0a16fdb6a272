"""The delivery agents: one per channel, consuming ``P.deliveries.<channel>``.

One reader (``DeliveryReader``, a plain aiokafka consumer in step with Faust's group) reads
every channel's commands into that channel's priority queue (SEV1 first, then arrival order),
served by a pool of senders; a command is acknowledged (its offset committable) only once it
was handled: delivered, scheduled for retry, or dead-lettered, and its records acknowledged
by the broker. So a crash re-reads what was in flight, and the delivery table (keyed by
delivery_id) recognises what was already sent; two copies of one command are never sent at
once. Per command, the delivery decision (``decisions.delivery.decide``) says what to do:
skip a duplicate, dead-letter, defer, send, then done, retry or dead-letter, with a failover
when it says so; the agent only carries it out. The modules, each importing the ones below::

    __init__.py   register(rt): the outbox, the gates, a dispatcher per channel, the reader
    reader.py     DeliveryReader: the partitions of every delivery topic into the queues
    dispatch.py   Room (the read-ahead's bound), Dispatcher (a channel's queue and senders)
    handle.py     handle (decide, send, decide) and follow (carry the decision out)
    limits.py     Limits: each destination's breaker and rate limiter, on /metrics
    outbox.py     DeliveryOutbox: a command's records, acknowledged before the command is
    records.py    the attempt record, the failover command, the failure alert
"""

from __future__ import annotations

import logging
from typing import Any

from ...core.tables import sweep_deliveries, sweep_interval
from ..runtime import Runtime
from .dispatch import Dispatcher
from .limits import Limits
from .outbox import DeliveryOutbox
from .reader import DeliveryReader

log = logging.getLogger(__name__)


def register(rt: Runtime) -> None:
    """Set up the delivery agents on ``rt``: its delivery outbox, the destinations' gates, the
    delivery states' retention sweep, one dispatcher per channel, the reader of their topics,
    and their stop at shutdown."""
    rt.delivery_outbox = DeliveryOutbox(rt)
    limits = Limits(rt)
    app = rt.app
    # the delivery table's retention: states past it deleted, with tombstones (core/tables.py)
    retention = rt.tables.deliveries.states.retention_s = rt.settings.delivery_state_retention

    @app.timer(sweep_interval(retention), name=f"{rt.settings.topic_prefix}.delivery_retention")
    async def _sweep_delivery_states() -> None:
        if rt.ready():
            try:
                await sweep_deliveries(app, rt.tables.deliveries)
            except Exception:  # the next sweep tries again; a timer that raised would stop
                log.exception("deliveries: the retention sweep failed")
    dispatchers: dict[str, Dispatcher] = {}
    by_topic: dict[str, Dispatcher] = {}
    for channel, channel_topic in rt.topics.deliveries.items():
        name = channel_topic.get_topic_name()
        dispatchers[channel] = by_topic[name] = Dispatcher(rt, channel, limits)
    reader = DeliveryReader(rt, by_topic)
    reader.follow({f"{rt.settings.topic_prefix}.deliver.{channel}": (name,)
                   for channel, name in zip(dispatchers, by_topic, strict=True)})

    @app.on_before_shutdown.connect  # type: ignore[arg-type]
    async def _close(sender: Any, **kw: Any) -> None:  # pragma: no cover - shutdown path
        # the commands being sent are finished and committed; the queued ones are read again
        await reader.close()
        for d in dispatchers.values():
            await d.stop()
        for ch in rt.channels.values():
            try:
                await ch.close()
            except Exception:
                log.debug("closing %r failed", ch, exc_info=True)
