"""Analyst SQL on the real engine (chdb): ClickHouse's parser and read-only mode decide
(infra/clickhouse/readonly.py). Each refused case is a way in that worked before."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tocsin.errors import ReadOnlyError, StoreError
from tocsin.infra.clickhouse.readonly import SqlLimits
from tocsin.infra.clickhouse.store import Store

pytestmark = pytest.mark.integration

REFUSED = [
    ("SELECT * FROM file('/proc/self/environ', 'RawBLOB')", "table function file()"),
    ("SELECT file('/proc/self/environ')", "function file()"),
    ("SELECT * FROM (SELECT file('/etc/hostname'))", "function file()"),
    ("SELECT * FROM url('http://127.0.0.1:9/', 'RawBLOB')", "table function url()"),
    ("SELECT * FROM remote('127.0.0.1:9', system.one)", "table function remote()"),
    ("SELECT * FROM s3('http://127.0.0.1:9/x', 'RawBLOB')", "table function s3()"),
    ("SELECT * FROM executable('id', 'TSV', 'x String')", "table function executable()"),
    ("SELECT * FROM merge('tocsin', '.*')", "table function merge()"),
    ("SELECT * FROM system.one INTO OUTFILE '{out}'", "INTO OUTFILE"),
    ("SELECT 1; SELECT * FROM file('/proc/self/environ', 'RawBLOB')", "one statement"),
    ("SELECT 1; DROP TABLE tocsin.alerts", "one statement"),
    ("DROP TABLE tocsin.alerts", "not Drop"),
    ("INSERT INTO tocsin.alerts (fingerprint) VALUES ('x')", "not Insert"),
    ("TRUNCATE TABLE tocsin.alerts", "not"),
    ("SET readonly = 0", "not Set"),
    ("SHOW GRANTS", "not ShowGrants"),
    ("SELECT * FROM system.processes", "system.processes"),
    ("SELECT dictGet('d', 'x', toUInt64(1))", "function dictget()"),
    ("SELECT 1 SETTINGS readonly = 0", "readonly"),
    ("SELECT 1 SETTINGS max_result_rows = 100000000", "readonly"),
    ("  ", "empty"),
]


@pytest.mark.parametrize(("sql", "reason"), REFUSED)
def test_refused_with_reason(store: Store, tmp_path: Path, sql: str, reason: str) -> None:
    out = tmp_path / "out.tsv"
    with pytest.raises(ReadOnlyError) as err:
        store.query_readonly(sql.format(out=out))
    assert reason in str(err.value)
    assert not out.exists()  # chdb writes INTO OUTFILE to the worker's disk even read-only


def test_secret_of_the_environment_never_returned(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOCSIN_SMTP_PASSWORD", "hunter2-environ")
    for sql in ("SELECT * FROM file('/proc/self/environ', 'RawBLOB')",
                "SELECT file('/proc/self/environ')",
                "WITH (SELECT 1) AS x SELECT file('/proc/self/environ')"):
        try:
            _, rows = store.query_readonly(sql)
        except ReadOnlyError as exc:
            assert "hunter2" not in str(exc)
        else:
            assert "hunter2" not in repr(rows)


def test_reads_what_analysts_read(store: Store) -> None:
    assert store.query_readonly("SELECT count() AS n FROM tocsin.alerts FINAL") == (["n"], [(0,)])
    assert store.query_readonly("-- a comment\nWITH 2 AS x SELECT x")[1] == [(2,)]
    assert store.query_readonly("SELECT 'a;b' AS s")[1] == [("a;b",)]
    assert store.query_readonly("SELECT 1;")[1] == [(1,)]
    assert ("alerts",) in store.query_readonly("SHOW TABLES FROM tocsin")[1]
    assert store.query_readonly("DESCRIBE TABLE tocsin.alert_lifecycle")[1]
    assert store.query_readonly("EXISTS TABLE tocsin.alerts")[1] == [(1,)]
    assert store.query_readonly("SELECT name FROM system.tables WHERE database = 'tocsin' LIMIT 1")[1]
    assert store.query_readonly("SELECT sum(number) FROM numbers(10)")[1] == [(45,)]
    assert store.query_readonly("EXPLAIN SELECT 1")[1]


def test_limits_hold_and_cannot_be_lifted(store: Store) -> None:
    limits = SqlLimits(max_execution_time_s=1, max_result_rows=1000)
    with pytest.raises(StoreError, match="code 396"):
        store.query_readonly("SELECT number FROM numbers(5000)", limits)
    started = time.monotonic()
    with pytest.raises(StoreError, match="timed out|code 159"):
        store.query_readonly("SELECT count() FROM numbers(100000000000)", limits)
    assert time.monotonic() - started < 15
    assert store.query_readonly("SELECT number FROM numbers(10)", limits)[1][-1] == (9,)


def test_refused_queries_leave_the_session_writable(store: Store) -> None:
    """The recorder shares the chdb session: nothing an analyst sends may leave it read-only."""
    for sql, _ in REFUSED:
        try:
            store.query_readonly(sql.format(out=os.devnull + ".never"))
        except StoreError:
            pass
    store.command("INSERT INTO tocsin.alert_lifecycle (event_id, fingerprint) "
                  "VALUES (generateUUIDv4(), 'still-writable')")
    _, rows = store.query("SELECT count() FROM tocsin.alert_lifecycle WHERE fingerprint = 'still-writable'")
    assert rows == [(1,)]
