"""The analyst queries (``queries/*.sql``) by name, with their parameters and defaults.

Each file is one ClickHouse query with ``{name:Type}`` parameters and a header comment
saying what it answers. ``run_query`` fills the usual defaults: ``since``/``until`` = the
24 hours before ``now``, empty filters, ``limit`` 20 (100 for alerts_filtered), ``offset`` 0,
``bucket_s`` 60 (the time slot of the ``*_over_time`` queries: at least 1).
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from functools import cache
from pathlib import Path
from typing import Any

from .store import Rows, Store

QUERIES_DIR = Path(__file__).parent / "queries"
PARAM_RE = re.compile(r"\{(\w+):([^}]+)\}")
WINDOW = dt.timedelta(hours=24)
SEVERITIES = (1, 2, 3)

#: defaults of parameters other than since/until (a query uses the ones it names)
DEFAULTS: dict[str, Any] = {
    "limit": 20,
    "offset": 0,
    "symbol": "",
    "strategy_id": "",
    "outcome": "",
    "status": "",
    "type": "",
    "severity": 0,
    "bucket_s": 60,
}
#: the least value of integer parameters that have one
MINIMUM: dict[str, int] = {"bucket_s": 1}
QUERY_DEFAULTS: dict[str, dict[str, Any]] = {"alerts_filtered": {"limit": 100}}


def query_names() -> list[str]:
    return sorted(p.stem for p in QUERIES_DIR.glob("*.sql"))


@cache
def load_query(name: str) -> str:
    """The SQL text of the analyst query ``name`` (file name without ``.sql``)."""
    path = QUERIES_DIR / f"{name}.sql"
    if not re.fullmatch(r"[a-z0-9_]+", name) or not path.is_file():
        raise ValueError(f"no analyst query {name!r}; known: {', '.join(query_names())}")
    return path.read_text(encoding="utf-8")


def query_doc(name: str) -> str:
    """The header comment of a query, as text."""
    lines = []
    for line in load_query(name).splitlines():
        if not line.startswith("--"):
            break
        lines.append(line[2:].strip())
    return "\n".join(lines)


def query_params(name: str) -> dict[str, str]:
    """``{parameter: ClickHouse type}`` of a query, in order of first use."""
    params: dict[str, str] = {}
    sql = "\n".join(line for line in load_query(name).splitlines() if not line.lstrip().startswith("--"))
    for pname, ptype in PARAM_RE.findall(sql):
        params.setdefault(pname, ptype.strip())
    return params


def _utc(value: Any, name: str) -> dt.datetime:
    if isinstance(value, str):
        text = value.strip()
        try:
            value = dt.datetime.fromisoformat(text[:-1] + "+00:00" if text[-1:] in "zZ" else text)
        except (ValueError, OverflowError):
            raise ValueError(f"{name}: not an ISO 8601 time: {value!r}") from None
    if not isinstance(value, dt.datetime):
        raise ValueError(f"{name}: expected a datetime, got {type(value).__name__}")
    try:
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)
    except OverflowError:  # 9999-12-31T23:59:59-01:00 is past the last representable UTC time
        raise ValueError(f"{name}: out of range: {value.isoformat()}") from None


def _coerce(name: str, ctype: str, value: Any) -> Any:
    if ctype.startswith("DateTime"):
        return _utc(value, name)
    if ctype == "UUID":
        try:
            return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))
        except ValueError:
            raise ValueError(f"{name}: not a UUID: {value!r}") from None
    if ctype.startswith(("UInt", "Int")):
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise ValueError(f"{name}: not an integer: {value!r}") from None
        if ctype.startswith("UInt") and number < 0:
            raise ValueError(f"{name}: must not be negative")
        if number < MINIMUM.get(name, number):
            raise ValueError(f"{name}: must be at least {MINIMUM[name]}")
        return number
    if ctype == "String":
        return "" if value is None else str(value)
    return value


def bind_params(name: str, now: dt.datetime | None = None, /, **params: Any) -> dict[str, Any]:
    """The full, typed parameters of query ``name``: ``params`` over the defaults."""
    wanted = query_params(name)
    unknown = set(params) - set(wanted)
    if unknown:
        raise ValueError(f"{name}: unknown parameter(s) {', '.join(sorted(unknown))}; "
                         f"it takes {', '.join(wanted) or 'none'}")
    end = _utc(now, "now") if now is not None else dt.datetime.now(dt.UTC)
    defaults = {**DEFAULTS, "since": end - WINDOW, "until": end, **QUERY_DEFAULTS.get(name, {})}
    out: dict[str, Any] = {}
    for pname, ctype in wanted.items():
        if pname in params and params[pname] is not None:
            value = params[pname]
        elif pname in defaults:
            value = defaults[pname]
        else:
            raise ValueError(f"{name}: parameter {pname} ({ctype}) is required")
        out[pname] = _coerce(pname, ctype, value)
    return out


def run_query(store: Store, name: str, now: dt.datetime | None = None, /, **params: Any) -> tuple[list[str], Rows]:
    """Run analyst query ``name``; returns (column names, rows)."""
    return store.query(load_query(name), bind_params(name, now, **params))


def as_dicts(columns: list[str], rows: Rows) -> list[dict[str, Any]]:
    return [dict(zip(columns, row, strict=True)) for row in rows]


def stats_24h(store: Store, now: dt.datetime | None = None) -> dict[str, Any]:
    """The 24 hours before ``now`` (event time for alerts, first attempt for deliveries).

    ``{"total_24h": int, "by_severity": {"SEV1": n, "SEV2": n, "SEV3": n},
    "by_type": {type: n, ...} (most first), "delivery_success_rate": float | None}``.
    The success rate is deliveries (delivery_ids) with a ``sent`` attempt over deliveries
    with any attempt other than ``skipped_duplicate``; None when there was no delivery.
    """
    sev = as_dicts(*run_query(store, "totals_24h_by_severity", now))
    by_severity = {f"SEV{s}": 0 for s in SEVERITIES}
    for r in sev:
        by_severity[f"SEV{r['severity']}"] = int(r["alerts"])
    types = as_dicts(*run_query(store, "totals_24h_by_type", now))
    by_type = {str(r["type"]): int(r["alerts"]) for r in types}
    rates = as_dicts(*run_query(store, "delivery_success_rate", now))
    deliveries = sum(int(r["deliveries"]) for r in rates)
    delivered = sum(int(r["delivered"]) for r in rates)
    return {
        "total_24h": sum(by_severity.values()),
        "by_severity": by_severity,
        "by_type": by_type,
        "delivery_success_rate": round(delivered / deliveries, 4) if deliveries else None,
    }


_OUTCOMES_24H = """
SELECT outcome, count() AS decisions
FROM tocsin.alerts FINAL
WHERE event_timestamp >= {since:DateTime64(3, 'UTC')} AND event_timestamp < {until:DateTime64(3, 'UTC')}
GROUP BY outcome
ORDER BY decisions DESC, outcome
"""


def outcomes_24h(store: Store, now: dt.datetime | None = None) -> dict[str, int]:
    """Decisions per outcome in the 24 hours before ``now`` (event time): ``notify``,
    ``suppress``, ``bypass`` and the noise controls' (``silenced``, ``flapping``, ...), most first."""
    end = now or dt.datetime.now(dt.UTC)
    _, rows = store.query(_OUTCOMES_24H, {"since": end - WINDOW, "until": end})
    return {str(outcome): int(n) for outcome, n in rows}


__all__ = [
    "as_dicts",
    "bind_params",
    "load_query",
    "outcomes_24h",
    "query_doc",
    "query_names",
    "query_params",
    "run_query",
    "stats_24h",
]
