"""Operations on the recorded data: the ``tocsin stats`` text (``tocsin rebuild`` is
streams/rebuild.py)."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from typing import Any

from .queries import as_dicts, run_query, stats_24h
from .store import Store

TABLES = ("alerts", "delivery_attempts", "alert_lifecycle", "delivery_stats_1m")


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


__all__ = ["TABLES", "format_table", "stats_text"]
