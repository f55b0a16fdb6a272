"""``tocsin replay``."""

from __future__ import annotations

import asyncio

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from ..errors import TocsinError
from ..infra.kafka import client_kwargs
from ..tools.replay import Bound, replay
from .main import cli, fail, settings_or_fail


@cli.command("replay")
def replay_cmd(
    topic: str = typer.Option(..., "--topic", help="the topic to replay, e.g. tocsin.alerts"),
    from_: str = typer.Option(None, "--from", help="first offset (every partition) or RFC 3339 time; default: the beginning"),
    to: str = typer.Option(None, "--to", help="end offset (exclusive) or RFC 3339 time; default: the current end"),
    to_topic: str = typer.Option(None, "--to-topic", help="publish there instead of back onto --topic"),
    dry_run: bool = typer.Option(False, "--dry-run", help="count what would be replayed, publish nothing"),
) -> None:
    """Re-publish a time or offset range of a topic (keys, values, headers intact)."""
    s = settings_or_fail()
    try:
        start, end = Bound.parse(from_, "--from"), Bound.parse(to, "--to")
        with Progress(TextColumn("replaying"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                      console=Console(stderr=True), transient=True) as bar:
            task = bar.add_task("replay", total=None)
            summary = asyncio.run(replay(s.kafka_bootstrap, topic, start, end, to_topic, dry_run,
                                         lambda done, total: bar.update(task, completed=done, total=total),
                                         security=client_kwargs(s)))
    except TocsinError as exc:
        fail(str(exc))
    verb = "would replay" if summary.dry_run else "replayed"
    typer.echo(f"{verb} {summary.messages} messages from {summary.topic} to {summary.to_topic}"
               + ("" if summary.dry_run else f" ({summary.bytes} bytes)"))
    for part, (lo, hi) in sorted(summary.ranges.items()):
        typer.echo(f"  partition {part}: offsets [{lo}, {hi}) -> {summary.per_partition.get(part, 0)} messages")
