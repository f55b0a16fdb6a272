"""The Recorder and the Store on the real embedded engine: driver faults, idempotency,
the per-minute materialized view, unreachable servers and the one-engine rule of chdb."""

from __future__ import annotations

import datetime as dt
import socket
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from clickhouse_connect.driver.exceptions import OperationalError

from tocsin.agents.recorder import Pipeline, Recorder
from tocsin.errors import ConfigError, StoreError
from tocsin.infra.clickhouse.engines import path_locked_elsewhere
from tocsin.infra.clickhouse.store import Store, open_store
from tocsin.infra.clickhouse.url import parse_dsn, redact_dsn
from tocsin.schemas.messages import AttemptStatus, Outcome

from ..support.samples import attempt, decision, synthetic_messages, wire

pytestmark = pytest.mark.integration

NOW = dt.datetime(2025, 6, 1, 12, 0, tzinfo=dt.UTC)
PASSWORD = "pa55-w0rd!"


class FaultyClient:
    """The real clickhouse-connect client, whose next ``fail`` inserts raise the driver's own
    OperationalError: before reaching ClickHouse, or (``applied``) after it wrote the rows,
    as when a response times out."""

    def __init__(self, real: Any, fail: int, applied: bool = False) -> None:
        self.real, self.fail, self.applied, self.inserts = real, fail, applied, 0

    def insert(self, *args: Any, **kwargs: Any) -> Any:
        return self._call(self.real.insert, *args, **kwargs)

    def raw_insert(self, *args: Any, **kwargs: Any) -> Any:  # the Recorder's JSON inserts
        return self._call(self.real.raw_insert, *args, **kwargs)

    def _call(self, insert: Any, *args: Any, **kwargs: Any) -> Any:
        self.inserts += 1
        if self.fail > 0:
            self.fail -= 1
            if self.applied:
                insert(*args, **kwargs)
            raise OperationalError("Error HTTPSConnectionPool(host='ch', port=8443): Read timed out. (read timeout=300)")
        return insert(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


def faulty(store: Store, fail: int, applied: bool = False) -> tuple[Store, FaultyClient]:
    client = FaultyClient(store._client, fail, applied)
    return Store(store.target, client), client


def count(store: Store, sql: str) -> int:
    return int(store.query(sql)[1][0][0])


async def no_sleep(_: float) -> None:
    return None


async def test_driver_faults_lose_no_rows(store: Store) -> None:
    flaky, client = faulty(store, fail=4)
    rec = Recorder(flaky, sleep=no_sleep)
    msgs = synthetic_messages(500, NOW)
    assert await rec.record_batch(msgs) == []
    assert rec.failures == 4 and rec.rows_inserted == 1000 and rec.pending == 0
    assert client.inserts == 6  # 4 failures, then one insert per table
    assert count(store, "SELECT count() FROM tocsin.alerts FINAL") == 500
    assert count(store, "SELECT count() FROM tocsin.delivery_attempts FINAL") == 500


async def test_a_fault_after_the_write_is_deduplicated_by_the_token(store: Store) -> None:
    flaky, _ = faulty(store, fail=2, applied=True)
    rec = Recorder(flaky, sleep=no_sleep)
    assert await rec.record_batch(synthetic_messages(200, NOW)) == []
    assert rec.failures == 2
    # the rows were written three times, but the same token dropped the repeats: even the
    # raw count (no FINAL) and the materialized view are exact
    assert count(store, "SELECT count() FROM tocsin.alerts") == 200
    assert count(store, "SELECT count() FROM tocsin.delivery_attempts") == 200
    assert count(store, "SELECT sum(attempts) FROM tocsin.delivery_stats_1m") == 200


async def test_the_same_batch_twice_and_a_replay_count_once(store: Store) -> None:
    msgs = synthetic_messages(300, NOW)
    rec = Recorder(store)
    await rec.record_batch(msgs)
    await rec.record_batch(msgs)  # the same batch: the same token, dropped on insert
    assert count(store, "SELECT count() FROM tocsin.alerts") == 300
    await rec.record_batch(msgs[:100])  # a replay in other batches: other tokens
    await rec.record_batch(msgs[100:])
    assert count(store, "SELECT count() FROM tocsin.alerts") >= 300
    assert count(store, "SELECT count() FROM tocsin.alerts FINAL") == 300
    assert count(store, "SELECT count() FROM tocsin.delivery_attempts FINAL") == 300
    store.command("OPTIMIZE TABLE tocsin.alerts FINAL")
    assert count(store, "SELECT count() FROM tocsin.alerts") == 300


async def test_delivery_stats_view_per_minute(store: Store) -> None:
    d = decision(type="x", severity=1, at=NOW, n=0, outcome=Outcome.NOTIFY)
    statuses = [AttemptStatus.SENT] * 6 + [AttemptStatus.FAILED] * 2 + [AttemptStatus.DEAD, AttemptStatus.RATE_LIMITED]
    msgs = [("attempts", wire(attempt(d, "webhook:default", i + 1, s, NOW + dt.timedelta(seconds=i), 10.0 * (i + 1))))
            for i, s in enumerate(statuses)]
    msgs.append(("attempts", wire(attempt(d, "email:risk", 1, AttemptStatus.SENT, NOW + dt.timedelta(minutes=1), 7.0))))
    await Recorder(store).record_batch(msgs)
    cols, rows = store.query(
        "SELECT minute, destination, sum(attempts), sum(sent), sum(failed), sum(dead), sum(rate_limited), "
        "quantilesMerge(0.5, 0.95, 0.99)(latency_ms) FROM tocsin.delivery_stats_1m "
        "GROUP BY minute, destination ORDER BY minute, destination")
    assert [r[:7] for r in rows] == [
        (NOW, "webhook:default", 10, 6, 2, 1, 1),
        (NOW + dt.timedelta(minutes=1), "email:risk", 1, 1, 0, 0, 0),
    ]
    # latency of the 9 attempts that reached out (rate_limited excluded): 10..90 ms
    assert rows[0][7][0] == pytest.approx(50.0)
    # approximate under replay (documented): a replay in other batches is counted again
    await Recorder(store).record_batch(msgs[:3])
    assert count(store, "SELECT sum(attempts) FROM tocsin.delivery_stats_1m") == 14
    assert count(store, "SELECT count() FROM tocsin.delivery_attempts FINAL") == 11


# --------------------------------------------------------------------------- unreachable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_refused_server_is_one_clear_line_without_the_password() -> None:
    port = free_port()
    with pytest.raises(StoreError) as info:
        open_store(f"http://analyst:{PASSWORD}@127.0.0.1:{port}/tocsin", connect_timeout=2)
    message = str(info.value)
    assert message == f"ClickHouse at http://analyst:***@127.0.0.1:{port}/tocsin: cannot connect (connection refused)"
    assert PASSWORD not in message and "\n" not in message
    assert info.value.__cause__ is None and info.value.__suppress_context__


async def test_recorder_against_a_server_that_goes_away(store: Store) -> None:
    """A Store whose server stopped answering: the Recorder backs off, keeps its rows and
    raises only when told to give up; the caller then simply does not commit."""
    port = free_port()

    class Refusing:
        def insert(self, *a: Any, **k: Any) -> Any:
            import clickhouse_connect

            clickhouse_connect.get_client(host="127.0.0.1", port=port, username="u", password=PASSWORD)

        raw_insert = insert

    gone = Store(parse_dsn(f"http://u:{PASSWORD}@127.0.0.1:{port}"), Refusing())
    rec = Recorder(gone, max_retries=2, sleep=no_sleep)
    rec.add("decisions", wire(decision(type="x", severity=1, at=NOW, n=0, outcome=Outcome.NOTIFY)))
    with pytest.raises(StoreError) as info:
        await rec.flush()
    assert "connection refused" in str(info.value) and PASSWORD not in str(info.value)
    assert rec.pending == 1 and rec.failures == 3


def test_dsn_parsing_and_redaction() -> None:
    t = parse_dsn(f"https://bob:{PASSWORD}@ch.example:8443/analytics?verify=false")
    assert (t.kind, t.host, t.port, t.username, t.password, t.secure, t.database) == (
        "http", "ch.example", 8443, "bob", PASSWORD, True, "analytics")
    assert PASSWORD not in t.redacted and "bob:***@" in t.redacted
    assert parse_dsn("http://localhost").port == 8123 and parse_dsn("http://localhost").database == "tocsin"
    assert redact_dsn("chdb:///data/ch") == "chdb:///data/ch"
    for bad in ("chdb://relative", "ftp://x", "chdb://", "http://"):
        with pytest.raises(ConfigError) as info:
            parse_dsn(bad)
        assert str(info.value).startswith("TOCSIN_CLICKHOUSE_URL:")


# --------------------------------------------------------------------------- one engine


def test_one_chdb_engine_per_process(shared_store: Store, chdb_path: Path, tmp_path: Path) -> None:
    again = open_store(f"chdb://{chdb_path}/")  # the same directory: the shared client
    assert again._client is shared_store._client
    again.close()
    assert shared_store.ping()  # still open: reference counted
    with pytest.raises(StoreError) as info:
        open_store(f"chdb://{tmp_path / 'other'}")
    assert "one embedded engine per process" in str(info.value)


def test_a_directory_held_by_another_process_is_a_clear_error(tmp_path: Path, shared_store: Store) -> None:
    held = tmp_path / "held"
    code = textwrap.dedent(f"""
        import sys, clickhouse_connect
        c = clickhouse_connect.get_client(dsn="chdb://{held}")
        print("ready", flush=True)
        sys.stdin.read()
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        # this process already hosts an engine, so a fresh one asks for the held directory
        probe = textwrap.dedent(f"""
            from tocsin.errors import StoreError
            from tocsin.infra.clickhouse.store import open_store
            try:
                open_store("chdb://{held}")
            except StoreError as exc:
                print(exc)
        """)
        out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
        assert out.stdout.strip() == (
            f"ClickHouse at chdb://{held}: the embedded data directory is in use by another process "
            "(a running worker?); query through the worker or stop it first"
        )
        assert path_locked_elsewhere(str(held))
        assert not path_locked_elsewhere(str(tmp_path))
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(30)
        if proc.stdout is not None:
            proc.stdout.close()
    assert not path_locked_elsewhere(str(held))


async def test_a_row_the_driver_cannot_write_is_rejected_alone(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """A row builder's bug (here: text in the UInt8 severity column of one row) costs that
    message, kept as a reject with the reason, not the batch: the refused batch is halved
    until the row is alone, never retried, and every other row is inserted."""
    from tocsin.agents import record_rows

    d = decision(type="x", severity=1, at=NOW, n=0, outcome=Outcome.NOTIFY)
    msgs = [("attempts", wire(attempt(d, "webhook:default", i + 1, AttemptStatus.SENT, NOW, 2.0)))
            for i in range(100)]
    poison = msgs[37][1]["attempt_id"]
    build = record_rows.ROWS["attempts"]

    def buggy(m: Any) -> dict[str, Any]:
        row = build(m)
        if m.attempt_id == poison:
            row["severity"] = "two"
        return row

    monkeypatch.setitem(record_rows.ROWS, "attempts", buggy)

    async def no_retry(_: float) -> None:
        raise AssertionError("a refused row must not be retried")

    rec = Recorder(store, sleep=no_retry)
    rec.parses_json = False  # the Python row path, as for a store without insert_json
    rejects = await rec.record_batch(msgs)
    assert [r.value["attempt_id"] for r in rejects] == [poison]
    assert "refused its row" in rejects[0].error and PASSWORD not in rejects[0].error
    assert rec.pending == 0 and rec.failures == 0 and rec.rows_rejected == 1
    assert count(store, "SELECT count() FROM tocsin.delivery_attempts") == 99
    assert count(store, f"SELECT count() FROM tocsin.delivery_attempts WHERE attempt_id = '{poison}'") == 0


async def test_the_pipeline_reports_batches_in_order_once_inserted(store: Store) -> None:
    """The record agent's Pipeline: a batch's ``done`` (where the agent commits) runs in
    batch order and only once its rows are in ClickHouse; the next batch is queued while the
    one before inserts; a reject is reported once."""
    reported: list[tuple[int, int, int]] = []

    async def done(rejects: list[Any], token: int) -> None:
        reported.append((token, count(store, "SELECT count() FROM tocsin.alerts"), len(rejects)))

    rec = Recorder(store)
    pipeline = Pipeline(rec, done)
    for b in range(5):
        batch = [("decisions", wire(decision(type="x", severity=1, at=NOW, n=b * 100 + j, outcome=Outcome.NOTIFY)))
                 for j in range(100)]
        if b == 2:
            batch.append(("decisions", b"not json"))
        await pipeline.put(batch, b)
    await pipeline.drain()
    assert [t for t, _, _ in reported] == [0, 1, 2, 3, 4]
    assert all(rows >= 100 * (t + 1) for t, rows, _ in reported), reported
    assert sum(r for _, _, r in reported) == 1
    assert count(store, "SELECT count() FROM tocsin.alerts") == 500


async def test_a_failed_pipeline_insert_is_raised_and_never_reported(store: Store) -> None:
    flaky, _ = faulty(store, fail=1)
    reported: list[int] = []

    async def done(rejects: list[Any], token: int) -> None:
        reported.append(token)

    rec = Recorder(flaky, max_retries=0, sleep=no_sleep)
    pipeline = Pipeline(rec, done)
    first = [("decisions", wire(decision(type="x", severity=1, at=NOW, n=j, outcome=Outcome.NOTIFY))) for j in range(10)]
    await pipeline.put(first, 0)
    with pytest.raises(StoreError):
        await pipeline.put([("decisions", wire(decision(type="x", severity=1, at=NOW, n=10, outcome=Outcome.NOTIFY)))], 1)
    await pipeline.drain()
    assert reported == []  # the failed batch is never reported (its offsets stay uncommitted)
    assert rec.pending == 11  # its rows wait for the next insert, the later batch's too
    await rec.flush()
    assert count(store, "SELECT count() FROM tocsin.alerts") == 11
