"""Operations on the recorded data: ``tocsin stats`` text and ``tocsin rebuild``.

``rebuild`` empties the tables and re-reads ``P.decisions``, ``P.attempts`` and
``P.lifecycle`` from their beginning up to the end offsets seen when it started, inserting
through the ``Recorder``. Rows that workers record meanwhile are harmless: the tables
collapse rows by id, and every analyst query reads with FINAL.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ...agents.recorder import KINDS, Recorder
from ...errors import BrokerError
from .client import Store
from .queries import as_dicts, run_query, stats_24h

log = logging.getLogger(__name__)

TABLES = ("alerts", "delivery_attempts", "alert_lifecycle", "delivery_stats_1m")
ProgressCb = Callable[[int, int], None]


# --------------------------------------------------------------------------- stats


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain text table: text left-aligned, numbers right-aligned."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    numeric = [bool(rows) and all(_is_number(row[i]) for row in rows) for i in range(len(headers))]

    def line(values: Sequence[str]) -> str:
        out = [v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric, strict=True)]
        return "  ".join(out).rstrip()

    return "\n".join([line(list(headers)), line(["-" * w for w in widths]), *(line(r) for r in cells)])


def _is_number(value: Any) -> bool:
    if isinstance(value, str):
        return value == "-" or bool(re.fullmatch(r"-?\d+(\.\d+)?%", value))
    return value is None or (isinstance(value, int | float) and not isinstance(value, bool))


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.1f}"
    if isinstance(value, dt.datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return str(value)


def _pct(rate: float | None) -> str:
    return "-" if rate is None else f"{100 * rate:.1f}%"


def stats_text(store: Store, now: dt.datetime | None = None) -> str:
    """The 24-hour statistics of ``tocsin stats``, as readable text."""
    now = now or dt.datetime.now(dt.UTC)
    s = stats_24h(store, now)
    sev = as_dicts(*run_query(store, "totals_24h_by_severity", now))
    types = as_dicts(*run_query(store, "totals_24h_by_type", now))
    channels = {r["channel"]: r for r in as_dicts(*run_query(store, "delivery_success_rate", now))}
    latency = as_dicts(*run_query(store, "latency_by_channel", now))
    noisy = as_dicts(*run_query(store, "noisiest_fingerprints", now, limit=5))
    failing = as_dicts(*run_query(store, "failing_destinations", now))
    deliveries = sum(r["deliveries"] for r in channels.values())
    delivered = sum(r["delivered"] for r in channels.values())

    parts = [
        f"Tocsin: the 24 hours to {now.astimezone(dt.UTC):%Y-%m-%d %H:%M} UTC",
        f"alerts {s['total_24h']}   delivery success {_pct(s['delivery_success_rate'])} "
        f"({delivered} of {deliveries} deliveries)",
        "",
        format_table(["severity", "alerts", "notified", "suppressed"],
                     [[f"SEV{r['severity']}", r["alerts"], r["notified"], r["suppressed"]] for r in sev]
                     or [["-", 0, 0, 0]]),
    ]
    if types:
        parts += ["", format_table(
            ["type", "alerts", "suppressed", "deliveries", "success"],
            [[r["type"], r["alerts"], r["suppressed"], r["deliveries"], _pct(r["delivery_success_rate"])]
             for r in types])]
    if latency or channels:
        lat = {r["channel"]: r for r in latency}
        names = sorted(set(lat) | set(channels))
        parts += ["", format_table(
            ["channel", "deliveries", "success", "p50 ms", "p95 ms", "p99 ms"],
            [[c, channels.get(c, {}).get("deliveries", 0), _pct(channels.get(c, {}).get("success_rate")),
              lat.get(c, {}).get("p50_ms"), lat.get(c, {}).get("p95_ms"), lat.get(c, {}).get("p99_ms")]
             for c in names])]
    if noisy:
        parts += ["", "noisiest fingerprints", format_table(
            ["fingerprint", "alerts", "suppressed"], [[r["fingerprint"], r["alerts"], r["suppressed"]] for r in noisy])]
    if failing:
        parts += ["", "failing destinations", format_table(
            ["destination", "attempts", "failed", "dead", "last error"],
            [[r["destination"], r["attempts"], r["failed"], r["dead"], (r["last_error"] or "")[:60]] for r in failing])]
    return "\n".join(parts)


# --------------------------------------------------------------------------- rebuild


def topic_kinds(prefix: str) -> dict[str, str]:
    """``{topic: kind}`` of the recorded topics."""
    return {f"{prefix}.{kind}": kind for kind in KINDS}


async def rebuild(
    store: Store,
    bootstrap: str,
    prefix: str,
    progress_cb: ProgressCb | None = None,
    *,
    batch_rows: int = 10_000,
    idle_timeout_s: float = 30.0,
    recorder: Recorder | None = None,
    security: Mapping[str, Any] | None = None,
) -> dict[str, int]:
    """Empty the tables and record the three topics again, from the beginning to the end
    offsets captured at the start. ``progress_cb(done, total)`` is called after each batch.

    Returns ``{"decisions": n, "attempts": n, "lifecycle": n, "rejected": n}`` (messages
    read per topic; ``rejected`` of them were malformed and not recorded). ``security``:
    ``infra.kafka.client_kwargs(settings)`` (TLS, SASL).
    """
    from aiokafka import AIOKafkaConsumer, TopicPartition

    rec = recorder or Recorder(store, batch_rows=batch_rows)
    kinds = topic_kinds(prefix)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        client_id=f"{prefix}-rebuild",
        **(security or {}),
    )
    try:
        await consumer.start()
    except Exception as exc:
        raise BrokerError(f"rebuild: cannot reach Kafka at {bootstrap}: {type(exc).__name__}") from None
    counts = {kind: 0 for kind in KINDS} | {"rejected": 0}
    try:
        existing = await consumer.topics()
        tps = [TopicPartition(topic, p)
               for topic in kinds if topic in existing
               for p in sorted(consumer.partitions_for_topic(topic) or ())]
        for topic in kinds:
            if topic not in existing:
                log.warning("rebuild: topic %s does not exist; nothing to read from it", topic)
        end = await consumer.end_offsets(tps) if tps else {}
        begin = await consumer.beginning_offsets(tps) if tps else {}
        total = sum(max(0, end[tp] - begin[tp]) for tp in tps)
        log.info("rebuild: %d messages on %d partitions; emptying %s", total, len(tps), ", ".join(TABLES))
        for table in TABLES:
            store.truncate(table)
        if progress_cb:
            progress_cb(0, total)
        remaining = {tp for tp in tps if end[tp] > begin[tp]}
        if not remaining:
            return counts
        consumer.assign(list(remaining))
        await consumer.seek_to_beginning(*remaining)
        done = 0
        fixed: set[Any] = set()
        last_progress = time.monotonic()
        while remaining:
            batches = await consumer.getmany(*remaining, timeout_ms=500, max_records=batch_rows)
            for tp in remaining - fixed:
                # Some brokers (the embedded Tansu) answer ListOffsets with the end of the last
                # record batch's first record; the first fetch's high watermark is the truth.
                high = consumer.highwater(tp)
                if high is not None:
                    total += max(0, high - end[tp])
                    end[tp] = max(end[tp], high)
                    fixed.add(tp)
            events: list[tuple[str, Any]] = []
            for tp, messages in batches.items():
                kind = kinds[tp.topic]
                for m in messages:
                    if m.offset < end[tp]:
                        events.append((kind, m.value))
                        counts[kind] += 1
            if events:
                counts["rejected"] += len(await rec.record_batch(events))
                done += len(events)
                last_progress = time.monotonic()
                if progress_cb:
                    progress_cb(done, total)
            for tp in list(remaining):
                if tp in fixed and await consumer.position(tp) >= end[tp]:
                    remaining.discard(tp)
                    consumer.pause(tp)
            if remaining and time.monotonic() - last_progress > idle_timeout_s:
                raise BrokerError(f"rebuild: no message for {idle_timeout_s:.0f}s with {total - done} "
                                  f"still to read from {bootstrap}")
        log.info("rebuild: done, %s", counts)
        return counts
    finally:
        await consumer.stop()


__all__ = ["TABLES", "format_table", "rebuild", "stats_text", "topic_kinds"]
