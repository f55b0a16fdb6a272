"""The delivery outbox: the records of the delivery commands handled in one turn of the event
loop, acknowledged by the broker before the commands' offsets are committed."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson

from ...core import metrics
from ...core.tables import note_persisted
from ...errors import OutboxStopped, RecordRefused
from ...schemas.codec import dumps
from ..batches import Outgoing
from ..outbox import record as outbox_record
from ..outbox import refusal
from ..runtime import Runtime
from .records import child

log = logging.getLogger(__name__)


class DeliveryOutbox:
    """The records of the commands handled in one turn of the event loop: their attempts,
    their delivery-table changelog records, and what ``publish`` adds (retries, DLQ entries,
    failovers, failure alerts), sent through the worker's ``Outbox`` (agents/outbox.py) as one
    record batch per partition: a sender queues its records and goes on to its next command
    without waiting.

    A command's event is acknowledged only once the broker acknowledged every record queued
    before it: a committed command always has its attempt, its table write and its retry or
    DLQ entry on the broker. While the broker does not acknowledge, the Outbox sends them
    again and the events wait unacknowledged (a stop leaves them so: read again). A record
    refused for good is kept as a note on ``P.dlq`` saying what was refused.
    """

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.records: Outgoing = []
        self.events: list[Any] = []
        self._flushing: asyncio.Task[None] | None = None
        self.attempts_topic = rt.topics.attempts.get_topic_name()
        self.dlq_topic = rt.topics.dlq.get_topic_name()
        self.dumps = dumps

    def attempt(self, att: dict[str, Any]) -> None:
        child(metrics.deliveries, att["channel"], att["status"].value).inc()
        self.records.append((self.attempts_topic, att["delivery_id"].encode(), self.dumps(att), None))

    def table_write(self, table: Any, key: str, value: str, partition: int) -> None:
        """``table[key] = value`` now (the store is read by the next duplicate check); its
        changelog record, the bytes Faust would send, to the partition of the command's event
        (the caller has set the current event: a RocksDB store picks its database by it)."""
        table.data[key] = value
        self.records.append((table.changelog_topic.get_topic_name(), orjson.dumps(key), self.dumps(value),
                             partition))

    def publish(self, topic: str, key: str, value: Any) -> None:
        """Another record of the command being handled, the bytes its topic's ``send`` writes."""
        self.records.append(outbox_record(topic, key, value))

    def ack_after(self, event: Any) -> None:
        """Acknowledge ``event`` once the broker acknowledged the records queued so far."""
        self.events.append(event)
        if self._flushing is None:
            self._flushing = asyncio.ensure_future(self._flush())

    async def _flush(self) -> None:
        try:
            await asyncio.sleep(0)  # the other senders finishing in this turn join the batch
            while self.events or self.records:
                records, events = self.records, self.events
                self.records, self.events = [], []
                if records:
                    await self._send(records)
                for event in events:
                    event.ack()
        except OutboxStopped as exc:
            log.warning("%s (%d handled commands)", exc, len(self.events))
        finally:
            self._flushing = None

    async def _send(self, records: Outgoing) -> None:
        """Send and wait for the broker; a record refused for good leaves a note on the DLQ."""
        try:
            acked: list[Any] = await self.rt.outbox.send_many(records)
        except RecordRefused as exc:
            acked = exc.acked
            notes: Outgoing = []
            for i, error in exc.refused.items():
                log.error("a delivery record for %s (%d bytes) was refused for good (%s); a note of it is kept on %s",
                          records[i][0], len(records[i][2]), error, self.dlq_topic)
                notes.append((self.dlq_topic, records[i][1], refusal(records[i], error, "a delivery record"), None))
            try:
                await self.rt.outbox.send_many(notes)
            except RecordRefused as again:
                log.error("the DLQ notes of refused delivery records were refused too: %s", again)
        note_persisted(self.rt.tables.deliveries, acked)
