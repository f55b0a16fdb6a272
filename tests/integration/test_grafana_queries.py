"""Every panel of the analysts' Grafana dashboard (docker/grafana/dashboards/tocsin.json) run on
chdb over the analyst-query data set, its macros expanded as the ClickHouse data source plugin
expands them (grafana/clickhouse-datasource pkg/macros/macros.go): each table panel answers
exactly what its named query answers, and the time series add up to the same totals."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tocsin.infra import grafana
from tocsin.infra.clickhouse.queries import run_query
from tocsin.infra.clickhouse.store import Store, open_store

from .test_clickhouse_queries import NOW, _record, dataset

pytestmark = pytest.mark.integration
BOARD = Path(__file__).resolve().parents[2] / "docker/grafana/dashboards/tocsin.json"
FROM, TO = NOW - dt.timedelta(hours=24), NOW
INTERVAL_S = 3600


def expand(sql: str, start: dt.datetime, end: dt.datetime, interval_s: int) -> str:
    """The plugin's macros: ``$__fromTime_ms`` → ``fromUnixTimestamp64Milli(ms)``,
    ``$__timeFilter_ms(c)`` → ``c >= ... AND c <= ...``, ``$__timeInterval_ms(c)`` →
    ``toStartOfInterval(toDateTime64(c, 3), INTERVAL n millisecond)``."""
    f = f"fromUnixTimestamp64Milli({int(start.timestamp() * 1000)})"
    t = f"fromUnixTimestamp64Milli({int(end.timestamp() * 1000)})"
    sql = re.sub(r"\$__timeFilter_ms\(([^)]+)\)", lambda m: f"{m[1]} >= {f} AND {m[1]} <= {t}", sql)
    sql = re.sub(r"\$__timeInterval_ms\(([^)]+)\)",
                 lambda m: f"toStartOfInterval(toDateTime64({m[1]}, 3), INTERVAL {interval_s * 1000} millisecond)", sql)
    sql = sql.replace("$__fromTime_ms", f).replace("$__toTime_ms", t)
    assert "$__" not in sql, sql
    return sql


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    store = open_store(f"chdb://{tmp_path_factory.mktemp('grafana')}")
    store.migrate()
    msgs, _ = dataset()
    asyncio.run(_record(store, msgs))
    yield store
    store.close()


def panels() -> list[dict[str, Any]]:
    return list(json.loads(BOARD.read_text())["panels"])


def test_every_table_panel_answers_as_its_named_query(loaded: Store) -> None:
    names = {grafana.panel_sql(name): name for _, name, _ in grafana.TABLES}
    tables = [p for p in panels() if p["type"] == "table"]
    assert len(tables) == len(grafana.TABLES)
    for panel in tables:
        sql = panel["targets"][0]["rawSql"]
        name = names[sql]
        cols, rows = loaded.query(expand(sql, FROM, TO, INTERVAL_S))
        want_cols, want_rows = run_query(loaded, name, NOW)  # its defaults: the 24 hours before NOW, limit 20
        assert cols == want_cols, name
        assert rows == want_rows, name
        assert rows, f"{name}: the data set should give the panel rows"


def test_the_time_series_add_up_to_the_totals(loaded: Store) -> None:
    series = {p["title"]: p["targets"][0]["rawSql"] for p in panels() if p["type"] == "timeseries"}
    assert len(series) == len(grafana.SERIES)
    _, by_sev = run_query(loaded, "totals_24h_by_severity", NOW)
    totals = {f"SEV{r[0]}": r[1] for r in by_sev}

    cols, rows = loaded.query(expand(series["Alerts by severity over time"], FROM, TO, INTERVAL_S))
    assert cols == ["time", "severity", "alerts"]
    summed: dict[str, int] = {}
    for t, sev, n in rows:
        assert t.minute == 0 and t.second == 0  # one point per interval
        summed[sev] = summed.get(sev, 0) + n
    # the filter includes `to` itself (the plugin's <=); nothing of the data set is at that instant
    assert summed == totals

    cols, rows = loaded.query(expand(series["Notified and suppressed over time"], FROM, TO, INTERVAL_S))
    assert cols == ["time", "notified", "suppressed"]
    assert sum(r[1] for r in by_sev) == sum(r[1] + r[2] for r in rows)
    assert sum(r[2] for r in rows) == sum(r[3] for r in by_sev)

    cols, rows = loaded.query(expand(series["Delivery attempts over time"], FROM, TO, INTERVAL_S))
    assert cols == ["time", "channel", "sent", "failed"]
    _, latency = run_query(loaded, "latency_by_channel", NOW)  # attempts sent, failed or dead
    by_channel: dict[str, int] = {}
    for _, channel, sent, failed in rows:
        by_channel[channel] = by_channel.get(channel, 0) + sent + failed
    assert by_channel == {r[0]: r[1] for r in latency}
