"""The ``tocsin`` command line. Every command has --help; errors are one line on stderr."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ..core.settings import Settings, load_settings
from ..errors import TocsinError

if TYPE_CHECKING:
    from ..schemas.alert import AlertEvent

# an alert's fields as flags: ``tocsin send`` and ``tocsin route --dry-run`` take the same ones
TypeFlag = Annotated[str | None, typer.Option("--type", help="alert type, e.g. order_rejected")]
SeverityFlag = Annotated[str | None, typer.Option("--severity", help="1, 2, 3 or SEV1..SEV3")]
SummaryFlag = Annotated[str | None, typer.Option("--summary")]
FingerprintFlag = Annotated[str | None, typer.Option("--fingerprint")]
AccountIdFlag = Annotated[str | None, typer.Option("--account-id")]
SymbolFlag = Annotated[str | None, typer.Option("--symbol")]
StrategyIdFlag = Annotated[str | None, typer.Option("--strategy-id")]
RunIdFlag = Annotated[str | None, typer.Option("--run-id")]
DetailsFlag = Annotated[str | None, typer.Option("--details", help="a JSON object")]
SourceFlag = Annotated[str, typer.Option("--source")]
ActionFlag = Annotated[str, typer.Option("--action", help="trigger or resolve")]
ResolvesFlag = Annotated[str | None, typer.Option("--resolves")]
RequiresActionFlag = Annotated[bool, typer.Option("--requires-action")]
EventTimestampFlag = Annotated[str | None, typer.Option("--event-timestamp",
                                                         help="RFC 3339 with offset; default now")]


def alert_from_flags(type_: str | None, severity: str | None, summary: str | None, otherwise: str,
                     details: str | None, **fields: Any) -> AlertEvent:
    """The alert the flags describe (``fields``: the other flags, by ``create_alert``'s names).
    Missing ``--type``, ``--severity`` or ``--summary`` fails naming them and ``otherwise`` (the
    other way to give the event); raises ``ValidationError`` (an invalid alert) and
    ``json.JSONDecodeError`` (``--details``) for the caller to report."""
    from ..schemas import create_alert

    missing = [n for n, v in (("--type", type_), ("--severity", severity), ("--summary", summary)) if not v]
    if missing:
        fail(f"missing {', '.join(missing)} (or give {otherwise})")
    assert type_ and severity and summary  # none missing
    return create_alert(type_, severity, summary, details=json.loads(details) if details else None, **fields)

cli = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Tocsin: alert events in, throttled notifications out.")
log = logging.getLogger("tocsin")


def fail(message: str, code: int = 1) -> None:
    typer.echo(f"tocsin: error: {message}", err=True)
    raise typer.Exit(code)


def settings_or_fail(**overrides: Any) -> Settings:
    try:
        return load_settings(**overrides)
    except TocsinError as exc:
        fail(str(exc))
        raise  # unreachable


def embedded_settings_or_fail() -> Settings:
    """The settings for the embedded broker, which speaks PLAINTEXT only (no TLS, no SASL)."""
    s = settings_or_fail()
    if s.kafka_security_protocol != "PLAINTEXT":
        fail(f"TOCSIN_KAFKA_SECURITY_PROTOCOL: the embedded broker speaks PLAINTEXT only, not "
             f"{s.kafka_security_protocol}; unset it here, or run `tocsin worker` against your Kafka")
    return s


def setup_logging(level: str) -> None:
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    for noisy in ("aiokafka", "faust", "mode", "kafka"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))


def use_event_loop(choice: str) -> str:
    """Make ``choice`` (TOCSIN_EVENT_LOOP) the event loop of what runs next in this process:
    uvloop ("uvloop", or "auto" where it is installed) or asyncio's own. Returns which."""
    if choice != "asyncio":
        try:
            import uvloop
        except ImportError:
            if choice == "uvloop":
                fail("TOCSIN_EVENT_LOOP=uvloop, but uvloop is not installed (pip install uvloop, "
                     "or TOCSIN_EVENT_LOOP=auto)")
        else:
            asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
            return "uvloop"
    asyncio.set_event_loop_policy(None)
    return "asyncio"


def run_worker(settings: Settings, loglevel: str = "info") -> None:
    """Run one Faust worker (blocks until stopped)."""
    from faust.worker import Worker

    from ..agents.recorder import SWITCH_INTERVAL_S
    from ..streams.app import build

    sys.setswitchinterval(SWITCH_INTERVAL_S)  # the record agent's insert threads (see there)
    loop = use_event_loop(settings.event_loop)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    try:
        rt = build(settings)
    except TocsinError as exc:
        fail(str(exc))
    setup_logging(loglevel)
    from ..infra.faust_compat import check_versions

    check_versions()  # a warning naming both versions when Faust or aiokafka is not the tested one
    from ..core.topics import ensure_topics
    from ..infra.kafka import client_kwargs
    from ..infra.redact import redact_url

    try:
        created = asyncio.run(ensure_topics(settings.kafka_bootstrap, settings.topic_prefix, settings.partitions,
                                            security=client_kwargs(settings)))
        if created:
            log.info("created %d topics with %d partitions", len(created), settings.partitions)
    except Exception as exc:  # the worker itself keeps trying to reach Kafka
        log.warning("could not create the topics up front (%s: %s); Faust declares them", type(exc).__name__, exc)
    if settings.effective_table_store() == "rocksdb":
        from ..core.store_check import remove_stale_stores

        try:  # a store left from a broker that started empty since (core/store_check.py)
            asyncio.run(remove_stale_stores(Path(rt.app.conf.tabledir), settings.app_id, settings.kafka_bootstrap,
                                            client_kwargs(settings)))
        except Exception as exc:  # the worker itself keeps trying to reach Kafka
            log.warning("could not check the table stores against their changelogs (%s: %s)",
                        type(exc).__name__, exc)
    enabled = ", ".join(rt.enabled)
    log.info("worker for %s on %s (%s), web on http://%s:%d, destinations: %s; event loop: %s", settings.topic_prefix,
             redact_url(settings.kafka_bootstrap), settings.kafka_security_protocol, settings.web_host,
             settings.web_port, enabled, loop)
    worker = Worker(rt.app, loglevel=loglevel, redirect_stdouts=False, quiet=True,
                    override_logging=False)
    worker.execute_from_commandline()


@cli.command()
def worker(loglevel: str = typer.Option("info", help="debug, info, warning, error")) -> None:
    """A worker against the configured Kafka (TOCSIN_KAFKA_BOOTSTRAP) and ClickHouse."""
    run_worker(settings_or_fail(), loglevel)


@cli.command()
def broker() -> None:
    """Only the embedded broker (Tansu, memory storage) on TOCSIN_KAFKA_BOOTSTRAP."""
    from ..infra.broker import EmbeddedBroker

    s = embedded_settings_or_fail()
    try:
        b = EmbeddedBroker(s.kafka_bootstrap).start()
    except TocsinError as exc:
        fail(str(exc))
    typer.echo(f"embedded broker listening on {b.bootstrap} (memory storage); Ctrl-C stops it")
    try:
        while b.proc and b.proc.poll() is None:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        b.stop()


@cli.command()
def dev(loglevel: str = typer.Option("info"),
        demo: bool = typer.Option(False, "--demo", help="feed a scripted minute of alerts (throttle, recovery, "
                                  "retries and failover, preferences, noise control) to webhook endpoints of its "
                                  "own, with a routing file of its own, to watch on the dashboard")) -> None:
    """Embedded broker + worker + web: what `make dev` runs. Ctrl-C stops all."""
    from ..infra.broker import EmbeddedBroker
    from ..infra.redact import redact_url

    os.environ.setdefault("TOCSIN_FILE_CHANNEL_PATH", str(Path(".tocsin/notifications.jsonl").resolve()))
    # Prometheus and Alertmanager can post to the loopback worker out of the box (ignored on any
    # other address: webauth.py)
    os.environ.setdefault("TOCSIN_INGEST_OPEN", "true")
    s = embedded_settings_or_fail()
    s.data_dir.mkdir(parents=True, exist_ok=True)
    try:
        b = EmbeddedBroker(s.kafka_bootstrap, log_path=s.data_dir / "broker.log").start()
    except TocsinError as exc:
        fail(str(exc))
    from ..core.store_check import remove_all_stores

    # the broker starts empty (memory storage): table stores on disk were built from the
    # changelogs of an earlier one and would outlive them (core/store_check.py)
    if remove_all_stores(s.data_dir):
        typer.echo("tocsin dev: removed the table stores of an earlier run (its broker kept them in memory)",
                   err=True)
    typer.echo(f"tocsin dev: broker {b.bootstrap}, dashboard http://{s.web_host}:{s.web_port}/, "
               f"ClickHouse {redact_url(s.clickhouse_dsn)}, file channel {s.file_path}", err=True)
    env = dict(os.environ)
    show = None
    if demo:
        from ..tools.demo import Demo

        show = Demo(s.data_dir)
        env.update(show.start(dt.datetime.now(dt.UTC)))
        typer.echo(f"tocsin dev --demo: routing {env['TOCSIN_ROUTING_FILE']}", err=True)
    proc = subprocess.Popen([sys.executable, "-m", "tocsin.cli.main", "worker", "--loglevel", loglevel],
                            env=env)
    if show is not None:
        show.feed_when_ready(f"http://{s.web_host}:{s.web_port}/health", b.bootstrap, f"{s.topic_prefix}.alerts",
                             lambda text: typer.echo(text, err=True))

    def _stop(*_: Any) -> None:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, _stop)
    try:
        proc.wait()
    except KeyboardInterrupt:
        _stop()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
    finally:
        if show is not None:
            show.stop()
        b.stop()


@cli.command()
def schema() -> None:
    """Print the JSON Schema of the alert event."""
    from ..schemas import json_schema

    typer.echo(json.dumps(json_schema(), indent=2))


@cli.command()
def send(
    type_: TypeFlag = None,
    severity: SeverityFlag = None,
    summary: SummaryFlag = None,
    fingerprint: FingerprintFlag = None,
    account_id: AccountIdFlag = None,
    symbol: SymbolFlag = None,
    strategy_id: StrategyIdFlag = None,
    run_id: RunIdFlag = None,
    details: DetailsFlag = None,
    source: SourceFlag = "tocsin-cli",
    action: ActionFlag = "trigger",
    resolves: ResolvesFlag = None,
    requires_action: RequiresActionFlag = False,
    event_timestamp: EventTimestampFlag = None,
    raw_json: str = typer.Option(None, "--json", help="the whole event as JSON ('-' reads stdin)"),
) -> None:
    """Produce one alert event to P.alerts (keyed by its fingerprint)."""
    from pydantic import ValidationError

    from ..schemas import dumps
    from ..schemas.alert import AlertEvent

    s = settings_or_fail()
    try:
        if raw_json is not None:
            text = sys.stdin.read() if raw_json == "-" else raw_json
            event = AlertEvent.model_validate_json(text)
        else:
            event = alert_from_flags(type_, severity, summary, "the whole event with --json", details,
                                     fingerprint=fingerprint, account_id=account_id, symbol=symbol,
                                     strategy_id=strategy_id, run_id=run_id, source=source, action=action,
                                     resolves=resolves, requires_action=requires_action,
                                     event_timestamp=event_timestamp)
    except ValidationError as exc:
        from ..schemas.validate import format_errors

        fail(f"invalid alert: {'; '.join(format_errors(exc))}")
    except json.JSONDecodeError as exc:
        fail(f"--details is not JSON: {exc}")

    async def produce() -> tuple[int, int]:
        from aiokafka import AIOKafkaProducer

        from ..infra.kafka import client_kwargs, started

        p = AIOKafkaProducer(bootstrap_servers=s.kafka_bootstrap, acks="all", request_timeout_ms=10000,
                             **client_kwargs(s))
        await started(p, s.kafka_bootstrap)
        try:
            md = await p.send_and_wait(f"{s.topic_prefix}.alerts", dumps(event), key=event.fingerprint.encode())
            return md.partition, md.offset
        finally:
            await p.stop()

    try:
        partition, offset = asyncio.run(produce())
    except TocsinError as exc:
        fail(str(exc))
    typer.echo(json.dumps({"alert_id": str(event.alert_id), "fingerprint": event.fingerprint,
                           "topic": f"{s.topic_prefix}.alerts", "partition": partition, "offset": offset}))


def _register_optional() -> None:
    """Commands built in their own modules (ClickHouse, replay, DLQ, bench, route and check-config)."""
    for mod in ("tocsin.cli.replay", "tocsin.cli.dlq", "tocsin.cli.store",
                "tocsin.cli.bench", "tocsin.cli.route", "tocsin.cli.maintenance"):
        try:
            __import__(mod)
        except ImportError as exc:
            if exc.name != mod:
                raise


def main() -> None:
    # client commands print one clear line on failure; the Kafka client's own retries stay quiet
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    _register_optional()
    try:
        cli()
    except TocsinError as exc:
        typer.echo(f"tocsin: error: {exc}", err=True)
        sys.exit(1)


if __name__ == "__main__":
    # run through the package module, so commands registered on it by other modules are seen
    from tocsin.cli.main import main as _main

    _main()
