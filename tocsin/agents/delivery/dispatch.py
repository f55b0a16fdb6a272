"""Each channel's queue of read delivery commands and its pool of senders.

``Room`` bounds the read-ahead, by count and by bytes; ``Dispatcher`` holds one channel's
read commands in priority order (SEV1 first, then arrival order) and its senders, each taking
the first command, handling it (handle.py), and acknowledging it once its records are on the
broker (outbox.py).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import heapq
import itertools
import logging
import time
from collections.abc import Callable, Collection
from typing import Any

from pydantic import ValidationError

from ...core import metrics
from ...schemas.alert import parse_severity
from ...schemas.messages import DeliveryCommand
from ..common import decode, keep_bad
from ..runtime import Runtime
from .handle import dead_letter, handle
from .limits import Limits

log = logging.getLogger(__name__)

#: validation context of Tocsin's own messages: details were made JSON-safe and cut to size
#: when the alert was validated, so they are not walked again (schemas/alert.py)
INTERNAL = {"internal": True}
#: the most commands read at once, and the backlog for which senders step aside for the reader
READ_BATCH = 500
#: TOCSIN_DELIVERY_READ_AHEAD_BYTES' default
READ_AHEAD_BYTES = 64 << 20
#: the longest a sender steps aside for the reader
MAX_YIELD_S = 0.5


class Room:
    """How many more commands may be read ahead: a counter the reader waits on when it is
    spent (an ``asyncio.Semaphore`` of 20,000 cost more per acquire than the rest of a read);
    and the bytes (keys and values) of the queued commands, never over ``max_bytes``: the
    reader queues a command only if it fits (``takes``), or the queue is empty (a command
    larger than the limit is read alone), and reads the rest again later."""

    def __init__(self, size: int, max_bytes: int = READ_AHEAD_BYTES) -> None:
        self.value = size
        self.bytes = 0
        self.max_bytes = max_bytes
        #: the size of the commands read lately (a moving average): what a fetch would bring
        self.record_bytes = 1024.0
        #: the size of the command that did not fit: no fetch before it would
        self.wanted = 0
        self._freed = asyncio.Event()
        #: called on every release (the reader waits for room to fetch again)
        self.on_release: Callable[[], None] | None = None

    def takes(self, size: int) -> bool:
        """Whether a command of ``size`` bytes may be queued now."""
        if self.bytes <= 0 or self.bytes + size <= self.max_bytes:
            self.wanted = 0
            return True
        self.wanted = size
        return False

    def hold(self, size: int) -> None:
        """A command of ``size`` bytes is queued."""
        self.bytes += size
        self.record_bytes += (size - self.record_bytes) / 64

    def free(self, size: int) -> None:
        """A queued command of ``size`` bytes left the queue (taken by a sender, or dropped)."""
        self.bytes -= size

    def short_of_bytes(self, least: int) -> bool:
        """Too few bytes free for a fetch of ``least`` commands (or a quarter of the limit, when
        less), or for the command that did not fit: the channel's partitions wait paused."""
        if self.bytes <= 0:
            return False
        free = self.max_bytes - self.bytes
        return free < max(self.wanted, min(least * self.record_bytes, self.max_bytes / 4))

    async def acquire(self) -> None:
        while self.value <= 0:
            self._freed.clear()
            await self._freed.wait()
        self.value -= 1

    def release(self) -> None:
        self.value += 1
        self._freed.set()
        if self.on_release is not None:
            self.on_release()


def priority(data: Any) -> int:
    """Where a read command queues: its severity (SEV1 first); a malformed one first of all,
    so that it is kept on the DLQ without waiting."""
    try:
        return parse_severity(data["alert"]["severity"])
    except (KeyError, TypeError, ValueError):
        return 0


class Dispatcher:
    """Priority queue + sender pool for one channel's commands.

    The queue holds the read events themselves, ordered by (priority, arrival): their bytes are
    decoded again when a sender takes them. A read-ahead of 20,000 parsed commands was over
    200,000 more objects for every full collection to walk: the collector took a tenth of the
    worker's CPU in the delivery bench, half as much since.
    """

    def __init__(self, rt: Runtime, channel: str, limits: Limits) -> None:
        self.rt = rt
        self.channel = channel
        self.limits = limits
        #: (priority, arrival, event, its bytes)
        self.heap: list[tuple[int, int, Any, int]] = []
        self.seq = itertools.count()
        #: senders waiting for a command, woken one per command pushed
        self.waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self.space = Room(rt.settings.delivery_read_ahead,
                          getattr(rt.settings, "delivery_read_ahead_bytes", READ_AHEAD_BYTES))
        self.outbox = rt.delivery_outbox
        self.queue_gauge = metrics.delivery_queue.labels(channel)
        self.workers: list[asyncio.Task[None]] = []
        #: the delivery_ids being handled, each with the event set when it is done
        self.busy: dict[str, asyncio.Event] = {}
        self.read = 0
        #: last offset read per partition, against the consumer's highwater: the read lag
        self.read_offsets: dict[Any, int] = {}
        self._lag = 0
        self._lag_at = 0.0
        #: set by the reader when it has read everything fetched so far
        self.caught_up = asyncio.Event()
        #: a partition's end, as the reader's consumer last saw it (None: not known yet)
        self.highwater: Callable[[Any], int | None] = lambda tp: None

    def note_read(self, event: Any) -> None:
        self.read += 1
        self.read_offsets[event.message.tp] = event.message.offset

    def lag(self) -> int:
        """Commands on the broker not yet read (cached for a few ms)."""
        now = time.monotonic()
        if now - self._lag_at > 0.005:
            total = 0
            for tp, offset in self.read_offsets.items():
                try:
                    hw = self.highwater(tp)
                except Exception:  # not known yet
                    hw = None
                if hw:
                    total += max(0, hw - offset - 1)
            self._lag, self._lag_at = total, now
        return self._lag

    def start(self) -> None:
        if not self.workers:
            for _ in range(self.rt.settings.delivery_concurrency):
                self.workers.append(asyncio.ensure_future(self._work()))

    async def stop(self) -> None:
        for w in self.workers:
            w.cancel()
        self.workers.clear()

    def drop(self, tps: Collection[Any] | None = None) -> list[Any]:
        """Take the queued (not yet started) commands of partitions ``tps`` (default: all) out
        of the queue: they stay unacknowledged, and the partitions' next owner reads them again."""
        kept: list[tuple[int, int, Any, int]] = []
        dropped: list[tuple[int, int, Any, int]] = []
        for entry in self.heap:
            (dropped if tps is None or entry[2].tp in tps else kept).append(entry)
        if dropped:
            heapq.heapify(kept)
            self.heap = kept
            for entry in dropped:
                self.space.free(entry[3])
                self.space.release()
            self.queue_gauge.set(len(self.heap))
        for tp in list(self.read_offsets) if tps is None else tps:
            self.read_offsets.pop(tp, None)
        return [entry[2] for entry in dropped]

    async def submit(self, prio: int, event: Any, size: int = 0) -> None:
        """Queue a read command of ``size`` bytes (its key and value)."""
        await self.space.acquire()
        self.space.hold(size)
        heapq.heappush(self.heap, (prio, next(self.seq), event, size))
        self.queue_gauge.set(len(self.heap))
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                break

    async def take(self) -> Any:
        """The first event by (priority, arrival), waiting for one."""
        while not self.heap:
            waiter = asyncio.get_running_loop().create_future()
            self.waiters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                # woken and cancelled at once: hand the wake-up on, so no command waits
                if waiter.done() and not waiter.cancelled() and self.heap and self.waiters:
                    self.waiters.popleft().set_result(None)
                raise
        _, _, event, size = heapq.heappop(self.heap)
        self.space.free(size)
        self.queue_gauge.set(len(self.heap))
        return event

    async def _work(self) -> None:
        while True:
            # reading first: while a backlog (more than one read batch) waits to be read, and
            # there is room to read it, senders step aside, so a SEV1 behind it is read, and
            # overtakes, soon; after MAX_YIELD_S a sender goes on anyway, so a steady stream
            # cannot starve delivery. A steady stream's few unread commands are read within a
            # batch anyway: stepping aside for them (lag > 0) tripled the latency bench's p99.
            yielded = 0.0
            while (yielded < MAX_YIELD_S and self.lag() > READ_BATCH and self.space.value > READ_BATCH
                   and not self.space.short_of_bytes(READ_BATCH)):  # by bytes too, or the reader waits
                self.caught_up.clear()
                t0 = time.monotonic()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.caught_up.wait(), 0.05)
                yielded += time.monotonic() - t0
            event = await self.take()
            try:
                await self.process(event)
            except BaseException:  # cancelled (a stop): unacknowledged, so it is read again
                self.space.release()
                raise
            self.space.release()
            self.outbox.ack_after(event)

    async def process(self, event: Any) -> None:
        """Decode and handle one command; a malformed one is kept on the DLQ, and no error
        escapes (a failing command is dead-lettered with the reason)."""
        try:
            raw = event.value
            cmd = (DeliveryCommand.model_validate_json(raw, context=INTERNAL) if isinstance(raw, bytes | bytearray)
                   else DeliveryCommand.model_validate(decode(raw), context=INTERNAL))  # JSON parsed in pydantic's core
        except (ValidationError, TypeError, ValueError) as exc:
            await keep_bad(self.rt, event, f"invalid delivery command: {exc}")
            return
        # two copies of one command (a replay, or alerts read again after a crash, emit the
        # same delivery_id) are handled one after the other: the second one sees the first
        # one's table write and is skipped, never sent alongside it
        while (other := self.busy.get(cmd.delivery_id)) is not None:
            await other.wait()
        done = self.busy[cmd.delivery_id] = asyncio.Event()
        try:
            await handle(self.rt, self.limits, cmd, event)
        except Exception:
            log.exception("delivery of %s to %s failed unexpectedly", cmd.delivery_id, cmd.destination)
            try:
                dead_letter(self.rt, cmd, "internal error while delivering")
            except Exception:
                log.exception("could not dead-letter %s", cmd.delivery_id)
        finally:
            del self.busy[cmd.delivery_id]
            done.set()
