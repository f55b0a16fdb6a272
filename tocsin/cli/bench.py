"""``tocsin bench``: every scenario against a baseline measured in the same run."""

from __future__ import annotations

import asyncio
import json
import platform
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from .main import cli

SCENARIOS = ("pipeline", "latency", "delivery", "recording", "memory", "recovery", "api_alerts", "alertmanager",
             "soak")


@cli.command()
def bench(
    quick: bool = typer.Option(False, "--quick", help="smaller runs (under 10 minutes)"),
    json_path: Path = typer.Option(None, "--json", help="write the results as JSON here"),
    only: list[str] = typer.Option(None, "--only", help=f"run only these scenarios: {', '.join(SCENARIOS)} "
                                                        "(soak runs only when named)"),
    keys: int = typer.Option(None, "--keys", min=1, help="throttle keys of the recovery scenario "
                                                         "(default 100,000 with --quick, else 1,000,000)"),
    rocksdb_only: bool = typer.Option(False, "--recovery-rocksdb-only",
                                      help="recovery: time the RocksDB store's restart only, against an empty "
                                           "start (no replay of the changelog into the memory store)"),
    latency_seconds: float = typer.Option(None, "--latency-seconds", min=1.0,
                                          help="each latency run's measured seconds (default 5 with --quick, "
                                               "else 60)"),
    soak_minutes: float = typer.Option(30.0, "--soak-minutes", min=0.05, help="how long the soak runs"),
    soak_rate: int = typer.Option(100, "--soak-rate", min=1, help="alerts a second during the soak"),
    store_rounds: int = typer.Option(0, "--store-rounds", min=0,
                                     help="pipeline: also run it with the memory and the RocksDB table store, "
                                          "alternated, this many times each (the RocksDB store's cost)"),
    table_store: str = typer.Option(None, "--table-store",
                                    help="pipeline: the worker's TOCSIN_TABLE_STORE (memory or rocksdb; "
                                         "default: the worker's default)"),
) -> None:
    """Measure throughput, latency, delivery, recording, memory, recovery and the alert
    list's answers, each as a ratio against a baseline measured in the same run."""
    from ..bench.scenarios import run_all

    bad = [o for o in only or [] if o not in SCENARIOS]
    if bad:
        typer.echo(f"tocsin: error: --only {bad[0]!r}: choose from {', '.join(SCENARIOS)}", err=True)
        raise typer.Exit(1)
    if table_store not in (None, "memory", "rocksdb"):
        typer.echo(f"tocsin: error: --table-store {table_store!r}: choose from memory, rocksdb", err=True)
        raise typer.Exit(1)
    err = Console(stderr=True)
    results = asyncio.run(run_all(quick, lambda m: err.print(f"[dim]{m}[/dim]"), set(only) if only else None,
                                  keys=keys, recovery_memory=not rocksdb_only, soak_minutes=soak_minutes,
                                  soak_rate=soak_rate, latency_seconds=latency_seconds,
                                  store_rounds=store_rounds, table_store=table_store))
    table = Table(title=f"tocsin bench{' --quick' if quick else ''} on {platform.machine()}, "
                        f"{__import__('os').cpu_count()} cores, Python {sys.version.split()[0]}")
    for col in ("scenario", "value", "baseline", "ratio", "unit"):
        table.add_column(col, justify="left" if col == "scenario" else "right")
    for name, r in results.items():
        table.add_row(name, str(r["value"]), str(r["baseline"]), str(r["ratio"]), r["unit"])
    Console().print(table)
    if json_path:
        json_path.write_text(json.dumps(results, indent=2))
        err.print(f"wrote {json_path}")
