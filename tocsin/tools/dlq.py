"""The dead-letter topic for SREs: list what could not be delivered, send it back for delivery."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from pydantic import ValidationError

from ..infra.kafka import end_offsets, started, topic_partitions
from ..schemas.codec import dumps, loads
from ..schemas.messages import DeliveryCommand


@dataclass
class DlqEntry:
    partition: int
    offset: int
    timestamp_ms: int
    key: str | None
    command: DeliveryCommand | None
    raw: Any
    error: str | None


async def read_dlq(bootstrap: str, topic: str, timeout_s: float = 10.0,
                   progress: Callable[[int, int], None] | None = None,
                   *, security: Mapping[str, Any] | None = None) -> list[DlqEntry]:
    """Every entry of the DLQ up to its end at the time of the call. ``security``:
    ``infra.kafka.client_kwargs(settings)`` (TLS, SASL)."""
    c = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, request_timeout_ms=10000,
                         **(security or {}))
    await started(c, bootstrap, timeout_s)
    try:
        tps = await topic_partitions(c, topic)
        if not tps:
            return []
        ends = await end_offsets(c, tps)
        begins = await c.beginning_offsets(tps)
        await c.seek_to_beginning(*tps)
        total = sum(ends[tp] - begins[tp] for tp in tps)
        out: list[DlqEntry] = []
        remaining = {tp for tp in tps if ends[tp] > begins[tp]}
        deadline = time.monotonic() + max(timeout_s, 30.0)
        while remaining and time.monotonic() < deadline:
            batch = await c.getmany(*remaining, timeout_ms=500, max_records=5000)
            for tp, msgs in batch.items():
                for m in msgs:
                    if m.offset >= ends[tp]:
                        continue
                    out.append(parse_entry(tp.partition, m.offset, m.timestamp, m.key, m.value))
                if msgs and msgs[-1].offset >= ends[tp] - 1:
                    remaining.discard(tp)
            if progress:
                progress(len(out), total)
        return out
    finally:
        await c.stop()


def parse_entry(partition: int, offset: int, ts: int, key: bytes | None, value: bytes | None) -> DlqEntry:
    k = key.decode("utf-8", "replace") if key else None
    try:
        raw = loads(value) if value is not None else None
    except ValueError:
        return DlqEntry(partition, offset, ts, k, None, value, "not JSON")
    try:
        cmd = DeliveryCommand.model_validate(raw)
    except (ValidationError, TypeError):
        err = raw.get("error") if isinstance(raw, dict) else None
        return DlqEntry(partition, offset, ts, k, None, raw, err or "not a delivery command")
    return DlqEntry(partition, offset, ts, k, cmd, raw, cmd.last_error)


def latest_by_delivery(entries: Iterable[DlqEntry]) -> dict[str, DlqEntry]:
    out: dict[str, DlqEntry] = {}
    for e in entries:
        if e.command is not None:
            prev = out.get(e.command.delivery_id)
            if prev is None or e.timestamp_ms >= prev.timestamp_ms:
                out[e.command.delivery_id] = e
    return out


def redrive_command(cmd: DeliveryCommand) -> DeliveryCommand:
    """A fresh schedule for a dead command: attempt 1, no failover (it already had its turn)."""
    return cmd.model_copy(update={"attempt": 1, "not_before": None, "redriven": True, "failover": []})


async def redrive(bootstrap: str, prefix: str, commands: list[DeliveryCommand],
                  progress: Callable[[int, int], None] | None = None,
                  *, security: Mapping[str, Any] | None = None) -> int:
    p = await started(AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5, **(security or {})),
                      bootstrap)
    try:
        futs = []
        for i, cmd in enumerate(commands, 1):
            fresh = redrive_command(cmd)
            futs.append(await p.send(f"{prefix}.deliveries.{fresh.channel}", dumps(fresh),
                                     key=fresh.delivery_id.encode()))
            if progress:
                progress(i, len(commands))
        await asyncio.gather(*futs)
        return len(futs)
    finally:
        await p.stop()
