"""``tocsin route --dry-run`` and ``tocsin check-config``.

``route --dry-run`` shows what the worker would do with one alert, touching nothing (no broker,
no ClickHouse, no network): the event validated as the throttle agent validates it
(``schemas/validate.validate_raw``, this environment's limits), decided and routed for a first
sighting (``decisions/preview.py``), and for each destination the message its channel would
send, built by the channel's own builder (``message``) and never sent. Secrets (URL tokens,
routing keys, passwords, signing secrets) are masked wherever they would appear (``scrub``).
Silences cannot be read without the broker: ``--silences FILE.json`` takes them as
``GET /api/v2/silences`` lists them.

``check-config`` validates the routing file as the worker loads it, and says where each error
is: ``file:line: key.path: what is expected`` (``decisions/config_model.line_of``), a TOML
syntax error at tomllib's own line and column.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import tomllib
from collections.abc import Iterable, Mapping
from email.message import EmailMessage
from pathlib import Path
from typing import Any, NoReturn

import typer
from pydantic import SecretStr, ValidationError

from ..agents.channels import build_channels, console, email, file
from ..agents.channels.base import Channel, ChannelBase, mask
from ..agents.channels.http import HttpChannel
from ..agents.channels.text import terminal
from ..agents.channels.webhook import WebhookChannel
from ..core.settings import Settings
from ..decisions.config_model import line_of
from ..decisions.preview import ASSUMES, NOT_ENABLED, Preview, preview
from ..decisions.routing import (
    RoutingPolicy,
    default_policy_path,
    load_policy,
    parse_policy,
    problems,
)
from ..errors import TocsinError
from ..schemas.codec import dumps, loads
from ..schemas.messages import DeliveryCommand, InvalidAlert
from ..schemas.silence import Silence, iso_millis
from ..schemas.validate import InputLimits, format_errors, validate_raw
from .main import (
    AccountIdFlag,
    ActionFlag,
    DetailsFlag,
    EventTimestampFlag,
    FingerprintFlag,
    RequiresActionFlag,
    ResolvesFlag,
    RunIdFlag,
    SeverityFlag,
    SourceFlag,
    StrategyIdFlag,
    SummaryFlag,
    SymbolFlag,
    TypeFlag,
    alert_from_flags,
    cli,
    fail,
    settings_or_fail,
)

#: the webhook's headers made when it is sent (its signature and the time signed)
AT_SEND = ("X-Tocsin-Timestamp", "X-Tocsin-Signature")
#: the context the delivery agent reads a command with (its alert was sanitized already)
INTERNAL = {"internal": True}
#: where a dry-run event "comes from" (an event without alert_id gets one derived from it)
POSITION = ("dry-run", 0, 0)


# ------------------------------------------------------------------ the messages, not sent


def _email(msg: EmailMessage) -> dict[str, Any]:
    plain, html = msg.get_body(("plain",)), msg.get_body(("html",))
    skip = ("content-type", "mime-version", "content-transfer-encoding")
    return {"headers": {k: str(v) for k, v in msg.items() if k.lower() not in skip},
            "text": plain.get_content() if isinstance(plain, EmailMessage) else None,
            "html": html.get_content() if isinstance(html, EmailMessage) else None}


def message(ch: Channel, cmd: DeliveryCommand) -> dict[str, Any]:
    """What ``ch`` would send for ``cmd``, built by the channel's own builder (the one its
    ``send`` uses); nothing is sent. A message the channel cannot build is the error its send
    would give (``cannot_build``)."""
    try:
        if isinstance(ch, WebhookChannel):
            body = ch.body(cmd)
            headers = ch.headers(cmd, body)
            return {"headers": {k: "<made when sent>" if k in AT_SEND else v for k, v in headers.items()},
                    "body": loads(body)}
        if isinstance(ch, HttpChannel):  # Slack, Telegram, PagerDuty: a JSON body
            return {"body": loads(ch.body(cmd))}
        if isinstance(ch, email.EmailChannel):
            return _email(email.build(cmd, ch.sender, ch.to))
        if isinstance(ch, console.ConsoleChannel):
            return {"line": console.render(cmd)}
        if isinstance(ch, file.FileChannel):
            return {"line": file.line(cmd).decode("utf-8").rstrip("\n")}
    except Exception as exc:  # noqa: BLE001 - its send would fail the same way, for good
        if isinstance(ch, ChannelBase):
            return {"error": ch.cannot_build(cmd, exc).error}
        return {"error": f"cannot build the message: {type(exc).__name__}"}
    return {"error": f"no preview of the {ch.channel} channel"}


# ------------------------------------------------------------------ the document


def _json(value: Any) -> Any:
    """A model or record as its JSON value (as the codec writes it on the topics)."""
    return loads(dumps(value))


def _silence(s: Silence) -> dict[str, Any]:
    return {"kind": "silence", "id": s.id, "matchers": [str(m) for m in s.matchers],
            "starts_at": iso_millis(s.starts_at), "ends_at": iso_millis(s.ends_at),
            "created_by": s.created_by, "comment": s.comment, "mute_resolved": s.mute_resolved}


def document(p: Preview, channels: Mapping[str, Channel], routing: str,
             silences_given: int | None = None) -> dict[str, Any]:
    """The dry run as one JSON document (``--json``; the text is made from it). ``receivers``
    are what is sent when ``notifies``; when the alert is muted, what would be sent without
    its mute."""
    decision = _json(p.decision)
    decision.pop("alert", None)
    receivers = []
    for d in p.deliveries:
        cmd = DeliveryCommand.model_validate(_json(d.record), context=INTERNAL)  # as the delivery agent reads it
        ch = channels[d.route.destination]
        receivers.append({
            "receiver": d.route.receiver, "destination": d.route.destination, "channel": d.channel,
            "target": ch.target() if isinstance(ch, ChannelBase) else ch.destination,
            "delivery_id": d.delivery_id, "max_attempts": d.route.max_attempts,
            "backoff_s": list(d.route.backoff_s), "max_age_s": d.policy.max_age_s,
            "failover": list(d.route.failover), "failover_not_enabled": list(d.failover_skipped),
            "message": message(ch, cmd),
        })
    notes = []
    if p.muted_by or not p.verdict.notifies and p.verdict.outcome.value == "muted":
        notes.append("muted: nothing is sent; the receivers are what would be sent without the mute")
    if decision["outcome"] == "grouped":
        notes.append("grouped: its group's notification goes to the receivers below, listing it with the others")
    if p.event.is_recovery and any(not s.mute_resolved for s in p.muted_by):
        notes.append("a recovery: had the firing it resolves been notified, only a silence with "
                     "muteResolved would mute it")
    return {
        "dry_run": True,
        "assumes": ASSUMES,
        "routing_file": routing,
        "event": _json(p.event),
        "recovery": p.event.is_recovery,
        "decision": decision,
        "notifies": p.notifies,
        "silences_given": silences_given,
        "muted_by": [_silence(s) for s in p.muted_by],
        "notes": notes,
        "noise": list(p.noise),
        "receivers": receivers,
        "not_enabled": [{"destination": n, "why": NOT_ENABLED} for n in p.skipped],
    }


def secrets_of(settings: Settings, channels: Mapping[str, Channel]) -> list[str]:
    """Every secret this environment holds: the channels' (URLs, their tokens and passwords,
    routing keys, signing secrets) and the settings' own."""
    out = [s for ch in channels.values() if isinstance(ch, ChannelBase) for s in ch.secrets()]
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if isinstance(value, SecretStr):
            out.append(value.get_secret_value())
    return out


def scrub(value: Any, secrets: Iterable[str]) -> Any:
    """``value`` (a JSON value) with every secret in its strings masked."""
    found = [s for s in secrets if s]

    def walk(v: Any) -> Any:
        if isinstance(v, str):
            return mask(v, found)
        if isinstance(v, dict):
            return {walk(k): walk(x) for k, x in v.items()}
        if isinstance(v, list):
            return [walk(x) for x in v]
        return v

    return walk(value)


def _seconds(values: Iterable[float]) -> str:
    return ", ".join(f"{v:g}" for v in values)


def text(doc: Mapping[str, Any]) -> list[str]:
    """The document as lines for a terminal (what an alert wrote shown through ``terminal``)."""
    e, d = doc["event"], doc["decision"]
    out = ["dry run: nothing is sent, produced or recorded",
           f"event      {e['type']} SEV{e['severity']} {json.dumps(e['summary'], ensure_ascii=False)}"
           + (" (a recovery)" if doc["recovery"] else ""),
           f"           fingerprint {e['fingerprint']}, at {e['event_timestamp']}, alert_id {e['alert_id']}"]
    reason = f"silence {d['reason']}" if d["outcome"] == "silenced" else d["reason"]
    if d["outcome"] == "muted":
        reason = f"maintenance {d['reason']}"
    out += [f"decision   {d['outcome']}: {reason}",
            f"           dedupe key {d['dedupe_key']}, window from {d['window_start']}",
            f"           assumes {doc['assumes']}"]
    if not doc["muted_by"]:
        given = doc["silences_given"]
        out.append("muted by   nothing" + (" (no silences given: --silences FILE.json)" if given is None
                                           else f" ({given} silences given, none mutes it at the event's time)"))
    for i, s in enumerate(doc["muted_by"]):
        by = f", by {s['created_by']}" if s["created_by"] else ""
        comment = f": {json.dumps(s['comment'], ensure_ascii=False)}" if s["comment"] else ""
        out.append(f"{'muted by' if i == 0 else '':<11}{s['kind']} {s['id']} {' '.join(s['matchers'])}, "
                   f"{s['starts_at']} to {s['ends_at']}{by}{comment}")
    out += [f"           {note}" for note in doc["notes"]]
    for i, note in enumerate(doc["noise"]):
        out.append(f"{'noise' if i == 0 else '':<11}{note}")
    out.append(f"routing    {doc['routing_file']}")
    for n in doc["not_enabled"]:
        out.append(f"skipped    {n['destination']} ({n['why']})")
    out.append(f"receivers  {len(doc['receivers'])}: {', '.join(r['destination'] for r in doc['receivers'])}")
    for r in doc["receivers"]:
        who = r["destination"] if r["receiver"] == r["destination"] else f"{r['destination']} (receiver {r['receiver']})"
        out += ["", f"{who} -> {r['target']}",
                f"  delivery_id  {r['delivery_id']}",
                f"  schedule     at most {r['max_attempts']} attempts, retried after {_seconds(r['backoff_s'])} s, "
                f"within {r['max_age_s']:g} s",
                f"  failover     {', '.join(r['failover']) or 'none'}"
                + (f" ({', '.join(r['failover_not_enabled'])}: not enabled here)" if r["failover_not_enabled"] else "")]
        m = r["message"]
        if "error" in m:
            out.append(f"  error        {m['error']}")
        for i, (k, v) in enumerate(m.get("headers", {}).items()):
            out.append(f"  {'headers' if i == 0 else '':<13}{k}: {v}")
        if "body" in m:
            out.append("  body")
            out += ["    " + line for line in json.dumps(m["body"], indent=2, ensure_ascii=False).splitlines()]
        for part in ("text", "html", "line"):
            if m.get(part) is not None:
                out.append(f"  {part}")
                out += ["    " + line for line in str(m[part]).splitlines()]
    return [terminal(line) for line in out]


# ------------------------------------------------------------------ the event and the silences


def read_silences(path: Path) -> dict[str, list[Silence]]:
    """Silences as ``GET /api/v2/silences`` lists them (a JSON list; ``status`` ignored), by id.
    Each is the silence's latest version; the API shows no earlier one, so it is taken to
    decide from its start (an update in place keeps its matchers and an active one's start).
    ``ValueError`` says what is wrong."""
    try:
        data = json.loads(path.read_bytes())
    except OSError as exc:
        raise ValueError(f"cannot read it: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise ValueError(f"not JSON: {exc}") from None
    if not isinstance(data, list):
        raise ValueError("expected a JSON list of silences, as GET /api/v2/silences returns")
    out: dict[str, list[Silence]] = {}
    for i, item in enumerate(data):
        if not isinstance(item, dict):
            raise ValueError(f"[{i}]: expected a silence (a JSON object)")
        try:
            s = Silence.model_validate({k: v for k, v in item.items() if k not in ("updatedAt", "updated_at")})
        except ValidationError as exc:
            raise ValueError(f"[{i}]: {'; '.join(format_errors(exc))}") from None
        out.setdefault(s.id, []).append(s)
    return out


def _invalid(errors: list[str], as_json: bool) -> NoReturn:
    if as_json:
        typer.echo(json.dumps({"dry_run": True, "valid": False, "errors": errors}, indent=2))
    else:
        typer.echo("tocsin: error: invalid alert (the worker would keep it on P.alerts.invalid):", err=True)
        for e in errors:
            typer.echo(f"  {terminal(e)}", err=True)
    raise typer.Exit(1)


@cli.command("route")
def route_cmd(
    event_file: str = typer.Argument(None, metavar="EVENT.json",
                                     help="the event as JSON: a file, or '-' to read stdin (or the flags below)"),
    dry_run: bool = typer.Option(False, "--dry-run", help="preview only; required (this command never sends)"),
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
    silences_file: Path = typer.Option(None, "--silences", metavar="FILE.json",
                                       help="silences as GET /api/v2/silences returns them (a JSON list)"),
    routing_file: Path = typer.Option(None, "--routing-file",
                                      help="the routing file; default TOCSIN_ROUTING_FILE, else the built-in one"),
    as_json: bool = typer.Option(False, "--json", help="one JSON document instead of text"),
) -> None:
    """What the worker would do with one alert, touching nothing: its decision and reason, its
    receivers with their schedules, the exact message each channel would send, and what would
    mute it. No broker, no ClickHouse, no network."""
    if not dry_run:
        fail("route only previews: give --dry-run (it never sends)")
    s = settings_or_fail()
    now = dt.datetime.now(dt.UTC)
    flags = (type_, severity, summary, fingerprint, account_id, symbol, strategy_id, run_id, details, resolves,
             event_timestamp)
    if event_file is not None:
        if any(f is not None for f in flags) or (source, action, requires_action) != ("tocsin-cli", "trigger", False):
            fail("give the event as EVENT.json or by its flags, not both")
        try:
            raw = typer.get_binary_stream("stdin").read() if event_file == "-" else Path(event_file).read_bytes()
        except OSError as exc:
            fail(f"{event_file}: cannot read it: {exc.strerror or exc}")
    else:
        try:
            event = alert_from_flags(type_, severity, summary, "the event as EVENT.json", details,
                                     fingerprint=fingerprint, account_id=account_id, symbol=symbol,
                                     strategy_id=strategy_id, run_id=run_id, source=source, action=action,
                                     resolves=resolves, requires_action=requires_action,
                                     event_timestamp=event_timestamp)
        except ValidationError as exc:
            _invalid(format_errors(exc), as_json)
        except json.JSONDecodeError as exc:
            fail(f"--details is not JSON: {exc}")
        raw = dumps(event)  # what `tocsin send` would produce
    result = validate_raw(raw, None, POSITION, now=now,
                          limits=InputLimits(max_message_bytes=s.max_message_bytes,
                                             max_future_skew_s=s.max_future_skew_s))
    if isinstance(result, InvalidAlert):
        _invalid(result.errors, as_json)
    path = routing_file or s.routing_file
    try:
        policy = load_policy(path)
        channels = build_channels(s, policy)
    except TocsinError as exc:
        fail(str(exc))
    silences: dict[str, list[Silence]] | None = None
    if silences_file is not None:
        try:
            silences = read_silences(silences_file)
        except ValueError as exc:
            fail(f"--silences {silences_file}: {exc}")
    p = preview(result, policy, channels, s.throttle_window_s, now, silences)
    doc = document(p, channels, str(path or default_policy_path()), None if silences is None else len(silences))
    doc = scrub(doc, secrets_of(s, channels))
    typer.echo(json.dumps(doc, indent=2) if as_json else "\n".join(text(doc)))


# ------------------------------------------------------------------ check-config

_AT = re.compile(r"^(?P<message>.*) \(at line (?P<line>\d+), column (?P<column>\d+)\)$", re.DOTALL)
_AT_END = " (at end of document)"


def toml_error(name: str, source: str, exc: tomllib.TOMLDecodeError) -> str:
    """A TOML syntax error as ``file:line:column: message``, at tomllib's own position."""
    said = str(exc)
    m = _AT.match(said)
    if m:
        return f"{name}:{m['line']}:{m['column']}: {m['message']}"
    if said.endswith(_AT_END):  # just after the last character written
        lines = source.rstrip().split("\n")
        return f"{name}:{len(lines)}:{len(lines[-1]) + 1}: {said.removesuffix(_AT_END)} (at the end of the file)"
    return f"{name}: {said}"


def check_routing(name: str, source: str) -> tuple[RoutingPolicy | None, list[str]]:
    """The routing file ``source`` (named ``name``) as the worker loads it: its policy, or its
    errors as ``name:line: key.path: what is expected`` (``name: ...`` where no line names it)."""
    try:
        doc = tomllib.loads(source)
    except tomllib.TOMLDecodeError as exc:
        return None, [toml_error(name, source, exc)]
    except RecursionError:  # tomllib recurses once per nested array or inline table
        return None, [f"{name}: arrays or tables nested too deeply"]
    found = problems(doc)
    if found:
        placed = sorted(((line_of(source, loc) or 0, what) for loc, what in found), key=lambda e: e[0])
        return None, [f"{name}:{line}: {what}" if line else f"{name}: {what}" for line, what in placed]
    return parse_policy(doc), []


def summary_of(name: str, policy: RoutingPolicy) -> str:
    """One line: the receivers the file names and its routes."""
    names: set[str] = {*policy.always, *policy.receivers, *policy.destinations}
    for group in (*policy.by_severity.values(), *policy.by_type.values(),
                  *(rp.failover or () for rp in policy.receivers.values())):
        names.update(group)
    if policy.default_receiver.failover:
        names.update(policy.default_receiver.failover)
    parts = [f"{len(policy.by_severity)} by severity", f"{len(policy.by_type)} by type"]
    routes = len(policy.by_severity) + len(policy.by_type)
    if policy.always:
        parts.append("always")
        routes += 1
    return (f"{name}: ok: {len(names)} receivers ({', '.join(sorted(names))}), "
            f"{routes} routes ({', '.join(parts)})")


@cli.command("check-config")
def check_config_cmd(
    path: Path = typer.Argument(None, metavar="ROUTING.toml",
                                help="the routing file; default TOCSIN_ROUTING_FILE, else the built-in one"),
) -> None:
    """Validate the routing file as the worker loads it: a one-line summary, or each error as
    file:line: key.path: what is expected (exit 1)."""
    if path is None:
        path = settings_or_fail().routing_file or default_policy_path()
    name = str(path)
    try:
        source = path.read_text("utf-8")
    except FileNotFoundError:
        policy, errors = None, [f"{name}: no such file"]
    except OSError as exc:  # a directory, no permission
        policy, errors = None, [f"{name}: cannot read it: {exc.strerror or exc}"]
    except UnicodeDecodeError as exc:
        policy, errors = None, [f"{name}: not UTF-8 text ({exc.reason} at byte {exc.start})"]
    else:
        policy, errors = check_routing(name, source)
    if policy is None:
        for line in errors:
            typer.echo(terminal(line), err=True)
        raise typer.Exit(1)
    typer.echo(summary_of(name, policy))
