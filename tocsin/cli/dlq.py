"""``tocsin dlq list|redrive``."""

from __future__ import annotations

import asyncio
import datetime as dt
import json

import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from ..errors import TocsinError
from ..infra.kafka import client_kwargs
from ..tools.dlq import latest_by_delivery, read_dlq, redrive
from .main import cli, fail, settings_or_fail

dlq_cli = typer.Typer(help="Inspect the dead-letter topic and send entries back for delivery.",
                      no_args_is_help=True)
cli.add_typer(dlq_cli, name="dlq")


def _load(progress_label: str):  # type: ignore[no-untyped-def]
    s = settings_or_fail()
    topic = f"{s.topic_prefix}.dlq"
    with Progress(transient=True, console=Console(stderr=True)) as bar:
        task = bar.add_task(progress_label, total=None)
        try:
            entries = asyncio.run(read_dlq(s.kafka_bootstrap, topic,
                                           progress=lambda n, t: bar.update(task, completed=n, total=t),
                                           security=client_kwargs(s)))
        except TocsinError as exc:
            fail(str(exc))
    return s, entries


@dlq_cli.command("list")
def dlq_list(
    as_json: bool = typer.Option(False, "--json", help="one JSON object per line"),
    limit: int = typer.Option(100, help="show at most this many (newest last)"),
) -> None:
    """List the dead-lettered deliveries (newest last)."""
    _, entries = _load("reading the DLQ")
    entries.sort(key=lambda e: e.timestamp_ms)
    shown = entries[-limit:] if limit > 0 else entries
    if as_json:
        for e in shown:
            typer.echo(json.dumps({"partition": e.partition, "offset": e.offset, "key": e.key,
                                   "error": e.error, "command": e.raw}, default=str))
        return
    table = Table(title=f"{len(entries)} dead-lettered deliveries" + (f" (last {len(shown)})" if len(shown) < len(entries) else ""))
    for col in ("when (UTC)", "delivery_id", "destination", "sev", "attempts", "summary", "last error"):
        table.add_column(col, overflow="fold")
    for e in shown:
        when = dt.datetime.fromtimestamp(e.timestamp_ms / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
        c = e.command
        if c is None:
            table.add_row(when, e.key or "-", "-", "-", "-", "(not a delivery command)", e.error or "")
        else:
            table.add_row(when, c.delivery_id, c.destination, f"SEV{c.alert.severity}", str(c.attempt),
                          c.alert.summary, (e.error or "")[:120])
    Console().print(table)


@dlq_cli.command("redrive")
def dlq_redrive(
    ids: list[str] = typer.Option(None, "--id", help="a delivery_id to send back (repeatable)"),
    all_: bool = typer.Option(False, "--all", help="send back every dead-lettered delivery"),
    dry_run: bool = typer.Option(False, "--dry-run", help="show what would be sent, send nothing"),
) -> None:
    """Send dead-lettered deliveries back to their channel with a fresh retry schedule."""
    if not ids and not all_:
        fail("choose --id DELIVERY_ID (repeatable) or --all")
    s, entries = _load("reading the DLQ")
    latest = latest_by_delivery(entries)
    if all_:
        chosen = list(latest.values())
    else:
        missing = [i for i in ids if i not in latest]
        if missing:
            fail(f"not on {s.topic_prefix}.dlq: {', '.join(missing)}")
        chosen = [latest[i] for i in ids]
    commands = [e.command for e in chosen if e.command is not None]
    for c in commands:
        typer.echo(f"{'would redrive' if dry_run else 'redrive'} {c.delivery_id} -> "
                   f"{s.topic_prefix}.deliveries.{c.channel} ({c.destination}, SEV{c.alert.severity}: {c.alert.summary})")
    if dry_run:
        typer.echo(f"dry run: {len(commands)} deliveries would be sent back")
        return
    with Progress(transient=True, console=Console(stderr=True)) as bar:
        task = bar.add_task("redriving", total=len(commands))
        try:
            n = asyncio.run(redrive(s.kafka_bootstrap, s.topic_prefix, commands,  # type: ignore[arg-type]
                                    progress=lambda i, t: bar.update(task, completed=i),
                                    security=client_kwargs(s)))
        except TocsinError as exc:
            fail(str(exc))
    typer.echo(f"sent back {n} deliveries; each is delivered once (the delivery table skips any already sent)")
