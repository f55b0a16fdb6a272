"""``tocsin sql``, ``tocsin stats`` and ``tocsin rebuild``: the analyst surface on ClickHouse."""

from __future__ import annotations

import asyncio
import csv
import json
import sys
import urllib.error
import urllib.request
from typing import Any, NamedTuple

import orjson
import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from ..core.settings import Settings
from ..errors import StoreError, TocsinError
from ..infra.kafka import client_kwargs
from ..infra.redact import redact_url
from .main import cli, fail, settings_or_fail


def _held_by_worker(s: Settings) -> bool:
    from ..infra.clickhouse.engines import path_locked_elsewhere
    from ..infra.clickhouse.url import parse_dsn

    target = parse_dsn(s.clickhouse_dsn)
    return target.kind == "chdb" and bool(target.path) and path_locked_elsewhere(target.path or "")


class _Answer(NamedTuple):
    status: int
    text: str


def _worker_request(s: Settings, method: str, path: str, body: Any = None) -> _Answer:
    """Ask the local worker (the CLI's one request: the standard library's client is enough)."""
    url = f"http://{s.web_host}:{s.web_port}{path}"
    headers = {"Content-Type": "application/json"} if body is not None else {}
    token = s.api_token or s.read_token
    if token is not None:
        headers["Authorization"] = "Bearer " + token.get_secret_value()
    data = orjson.dumps(body) if body is not None else None
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=120) as resp:  # noqa: S310 (http on the worker's own address)
            return _Answer(resp.status, resp.read().decode("utf-8", "replace"))
    except urllib.error.HTTPError as exc:  # an answer, not a failure to reach it
        return _Answer(exc.code, exc.read().decode("utf-8", "replace"))
    except (urllib.error.URLError, OSError) as exc:
        raise TocsinError(
            f"the embedded store is held by another process, and no worker answers on "
            f"{s.web_host}:{s.web_port} ({type(exc).__name__}); start it, or stop what holds "
            f"{redact_url(s.clickhouse_dsn)}") from None


def _remote_error(resp: _Answer) -> str:
    try:
        return str(orjson.loads(resp.text).get("error", resp.text))
    except (ValueError, AttributeError):
        return resp.text[:300]


def run_sql(s: Settings, text: str | None, name: str | None = None,
            params: dict[str, str] | None = None) -> tuple[list[str], list[list[Any]]]:
    """A read-only statement, or one of the analyst queries by name with its parameters."""
    try:
        return _run_sql(s, text, name, params)
    except StoreError:
        if not _held_by_worker(s):  # the worker took the store between the check and the open
            raise
        return _run_sql(s, text, name, params)


def _run_sql(s: Settings, text: str | None, name: str | None,
             params: dict[str, str] | None) -> tuple[list[str], list[list[Any]]]:
    if _held_by_worker(s):
        body = {"name": name, "params": params or {}} if name else {"sql": text}
        resp = _worker_request(s, "POST", "/api/sql", body)
        if resp.status != 200:
            raise TocsinError(_remote_error(resp))
        data = orjson.loads(resp.text)
        return data["columns"], data["rows"]
    from ..infra.clickhouse.queries import run_query
    from ..infra.clickhouse.store import open_store

    with open_store(s.clickhouse_dsn) as store:
        store.migrate()
        if name:
            try:
                columns, rows = run_query(store, name, **(params or {}))  # type: ignore[arg-type]
            except (ValueError, KeyError, FileNotFoundError) as exc:
                raise TocsinError(str(exc)) from None
        else:
            columns, rows = store.query_readonly(text or "", s.sql_limits)
        return columns, [list(r) for r in rows]


@cli.command()
def sql(
    query: str = typer.Argument(None, help="one SELECT/WITH/SHOW/DESCRIBE/EXPLAIN statement ('-' reads stdin)"),
    name: str = typer.Option(None, "--query", "-q", help="run an analyst query of infra/clickhouse/queries by name"),
    param: list[str] = typer.Option(None, "--param", "-p", help="a query parameter, name=value (repeatable)"),
    fmt: str = typer.Option("table", "--format", help="table, json (one object per row) or csv"),
    list_queries: bool = typer.Option(False, "--list", help="list the analyst queries and their parameters"),
) -> None:
    """Run a read-only query, or a named analyst query, against the configured ClickHouse."""
    from ..infra.clickhouse.queries import query_doc, query_names, query_params

    if list_queries:
        for n in query_names():
            ps = ", ".join(f"{k}:{v}" for k, v in query_params(n).items())
            typer.echo(f"{n}({ps})\n    {query_doc(n).splitlines()[0] if query_doc(n) else ''}")
        return
    if (query is None) == (name is None):
        fail("give either a SQL statement or --query NAME (see --list)")
    params: dict[str, str] = {}
    for p in param or []:
        k, sep, v = p.partition("=")
        if not sep:
            fail(f"--param {p!r}: expected name=value")
        params[k] = v
    s = settings_or_fail()
    text = sys.stdin.read() if query == "-" else query
    try:
        columns, rows = run_sql(s, text, name, params)
    except TocsinError as exc:
        fail(str(exc))
    if fmt == "json":
        for r in rows:
            typer.echo(json.dumps(dict(zip(columns, r, strict=False)), default=str))
    elif fmt == "csv":
        w = csv.writer(sys.stdout)
        w.writerow(columns)
        w.writerows(rows)
    else:
        from ..infra.clickhouse.ops import format_table

        typer.echo(format_table(columns, rows))
        typer.echo(f"({len(rows)} row{'s' if len(rows) != 1 else ''})", err=True)


@cli.command()
def stats() -> None:
    """The 24-hour statistics from ClickHouse: totals by severity and type, delivery success,
    latency per channel, the noisiest fingerprints, failing destinations."""
    s = settings_or_fail()
    try:
        try:
            text = _stats(s)
        except StoreError:
            if not _held_by_worker(s):  # the worker took the store between the check and the open
                raise
            text = _stats(s)
    except TocsinError as exc:
        fail(str(exc))
    typer.echo(text)


def _stats(s: Settings) -> str:
    if _held_by_worker(s):
        resp = _worker_request(s, "GET", "/api/sql/stats")
        if resp.status != 200:
            raise TocsinError(_remote_error(resp))
        return resp.text
    from ..infra.clickhouse.ops import stats_text
    from ..infra.clickhouse.store import open_store

    with open_store(s.clickhouse_dsn) as store:
        store.migrate()
        return stats_text(store)


@cli.command()
def rebuild(yes: bool = typer.Option(False, "--yes", help="do not ask before emptying the tables")) -> None:
    """Rebuild the ClickHouse tables from P.decisions, P.attempts and P.lifecycle (progress)."""
    s = settings_or_fail()
    if _held_by_worker(s):
        fail(f"the embedded store {redact_url(s.clickhouse_dsn)} is held by a running worker; stop it, then rebuild")
    if not yes and sys.stdin.isatty():
        typer.confirm("Empty tocsin.alerts, delivery_attempts and alert_lifecycle and rebuild them?", abort=True)
    from ..infra.clickhouse.store import open_store
    from ..tools.rebuild import rebuild as do_rebuild

    try:
        with open_store(s.clickhouse_dsn) as store, Progress(
            TextColumn("rebuilding"), BarColumn(), TextColumn("{task.completed}/{task.total} messages"),
            TimeRemainingColumn(), console=Console(stderr=True),
        ) as bar:
            store.migrate()
            task = bar.add_task("rebuild", total=None)
            counts = asyncio.run(do_rebuild(store, s.kafka_bootstrap, s.topic_prefix,
                                            lambda done, total: bar.update(task, completed=done, total=total),
                                            security=client_kwargs(s)))
    except (TocsinError, StoreError) as exc:
        fail(str(exc))
    typer.echo(json.dumps(counts))
