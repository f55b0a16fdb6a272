"""``tocsin route --dry-run``: the decision and routes of a preview (decisions.preview), the same
records the throttle agent makes, the message of each channel built as its send builds it
(cli.route.message), secrets masked, and the real command run with no broker."""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import typer.main

from tocsin.agents.channels import REGISTRY, build_channels
from tocsin.agents.channels.base import Channel, ChannelBase, DeliveryResult
from tocsin.agents.channels.console import ConsoleChannel
from tocsin.agents.channels.email import EmailChannel
from tocsin.agents.channels.file import FileChannel
from tocsin.agents.channels.pagerduty import PagerDutyChannel
from tocsin.agents.channels.slack import SlackChannel
from tocsin.agents.channels.telegram import TelegramChannel
from tocsin.agents.channels.webhook import WebhookChannel
from tocsin.agents.escalation import Escalation
from tocsin.agents.grouping import Grouper
from tocsin.agents.maintenance import Maintenance
from tocsin.agents.throttle import Throttle
from tocsin.cli.main import cli
from tocsin.cli.route import AT_SEND, INTERNAL, _email, document, message, scrub, secrets_of
from tocsin.core.settings import Settings
from tocsin.decisions.preview import preview
from tocsin.decisions.routing import CHANNELS, parse_policy
from tocsin.decisions.silence import SilenceIndex, parse_matcher
from tocsin.schemas.alert import AlertEvent, create_alert
from tocsin.schemas.codec import dumps, loads
from tocsin.schemas.messages import DeliveryCommand, Outcome
from tocsin.schemas.silence import Silence

AT = dt.datetime(2026, 5, 1, 12, 0, tzinfo=dt.UTC)
NOW = AT + dt.timedelta(seconds=30)
HOUR = dt.timedelta(hours=1)
POLICY = parse_policy({
    "always": ["console:default", "file:default"],
    "severity": {"1": ["email:default", "webhook:default"], "2": ["webhook:default"], "3": []},
    "types": {"daily_loss_limit": ["email:risk"]},
    "receivers": {"webhook:default": {"failover": ["email:default", "console:default"]}},
})
ALL = ("console:default", "file:default", "email:default", "email:risk", "webhook:default")


def alert(type_: str = "order_rejected", severity: int = 1, **kw: Any) -> AlertEvent:
    return create_alert(type_, severity, "Order 42 rejected by venue", event_timestamp=AT, account_id="ACC1", **kw)


def silence(sid: str, *matchers: str, start: dt.datetime = AT - HOUR, end: dt.datetime = AT + HOUR,
            mute_resolved: bool = False) -> dict[str, list[Silence]]:
    s = Silence(id=sid, matchers=tuple(parse_matcher(m) for m in matchers), starts_at=start, ends_at=end,
                mute_resolved=mute_resolved)
    return {sid: [s]}


RECOVERY = {"type_": "component_recovered", "severity": 2, "fingerprint": "component_recovered:redis"}

# name, event, enabled, silences -> outcome, reason, destinations, not enabled, muted by
CASES: list[tuple[str, dict[str, Any], tuple[str, ...], dict[str, list[Silence]],
                  str, str, list[str], list[str], list[str]]] = [
    ("SEV1 with the webhook enabled", {}, ("webhook:default",), {},
     "notify", "first in window", ["webhook:default", "console:default"], ["email:default", "file:default"], []),
    ("everything enabled", {}, ALL, {},
     "notify", "first in window", ["email:default", "webhook:default", "console:default", "file:default"], [], []),
    ("a type adds its recipients", {"type_": "daily_loss_limit", "severity": 2}, ("webhook:default", "email:risk"), {},
     "notify", "first in window", ["webhook:default", "email:risk", "console:default"], ["file:default"], []),
    ("SEV3: the console only", {"severity": 3}, ALL, {},
     "notify", "first in window", ["console:default", "file:default"], [], []),
    ("nothing enabled: the console", {"severity": 2}, (), {},
     "notify", "first in window", ["console:default"], ["webhook:default", "file:default"], []),
    ("a recovery bypasses the throttle", RECOVERY, ("webhook:default",), {},
     "bypass", "recovery bypasses the throttle", ["webhook:default", "console:default"], ["file:default"], []),
    ("a matching silence mutes it; the routes stay", {}, ("webhook:default",), silence("s1", 'type="order_rejected"'),
     "silenced", "s1", ["webhook:default", "console:default"], ["email:default", "file:default"], ["s1"]),
    ("two silences: the smallest id decides", {}, (),
     {**silence("s2", "account_id=~\"ACC.*\""), **silence("s1", "severity=1")},
     "silenced", "s1", ["console:default"], ["email:default", "webhook:default", "file:default"], ["s1", "s2"]),
    ("a silence not begun at the event's time", {}, (), silence("s1", 'type="order_rejected"', start=AT + HOUR),
     "notify", "first in window", ["console:default"], ["email:default", "webhook:default", "file:default"], []),
    ("a silence ended at the event's time", {}, (), silence("s1", 'type="order_rejected"', end=AT),
     "notify", "first in window", ["console:default"], ["email:default", "webhook:default", "file:default"], []),
    ("a silence of another account", {}, (), silence("s1", 'account_id="ACC2"'),
     "notify", "first in window", ["console:default"], ["email:default", "webhook:default", "file:default"], []),
    ("a recovery muted (its firing taken as not notified)", RECOVERY, (), silence("s1", 'type=~"component_.*"'),
     "silenced", "s1", ["console:default"], ["webhook:default", "file:default"], ["s1"]),
]


@pytest.mark.parametrize(("event", "enabled", "silences", "outcome", "reason", "destinations", "skipped", "muted"),
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_preview(event: dict[str, Any], enabled: tuple[str, ...], silences: dict[str, list[Silence]],
                 outcome: str, reason: str, destinations: list[str], skipped: list[str], muted: list[str]) -> None:
    p = preview(alert(**event), POLICY, enabled, 600, NOW, silences)
    assert (p.verdict.outcome.value, p.verdict.reason) == (outcome, reason)
    assert [d.route.destination for d in p.deliveries] == destinations
    assert list(p.skipped) == skipped
    assert [s.id for s in p.muted_by] == muted
    assert p.notifies is (outcome != "silenced")
    assert p.decision["destinations"] == (destinations if p.notifies else [])
    assert p.decision["outcome"] == outcome and p.decision["reason"] == reason
    for d in p.deliveries:  # each as the delivery agent reads it
        cmd = DeliveryCommand.model_validate(loads(dumps(d.record)), context=INTERNAL)
        assert (cmd.destination, cmd.delivery_id, cmd.attempt) == (d.route.destination, d.delivery_id, 1)


def test_failover_not_enabled_is_said() -> None:
    p = preview(alert(), POLICY, ("webhook:default",), 600, NOW)
    hook = p.deliveries[0]
    assert hook.route.failover == ("console:default",) and hook.failover_skipped == ("email:default",)


def throttle_records(event: AlertEvent, enabled: tuple[str, ...], silences: dict[str, list[Silence]]) -> list[Any]:
    """What the throttle agent sends for ``event`` seen first in its window (agents/throttle.py)."""
    t: Any = object.__new__(Throttle)
    t.rt = SimpleNamespace(policy=POLICY, silences=SimpleNamespace(index=SilenceIndex(silences)),
                           settings=SimpleNamespace(throttle_expires_s=7200), maintenance=None)
    t.maintenance = Maintenance(t.rt, t.notified_before)
    t.table = SimpleNamespace(get=lambda fp, ts, w=None, p=None: None, previous=lambda fp, ts, w=None, p=None: None,
                              store=lambda *a: [])
    t.window, t.changelog_name, t.decisions_name = 600, "p.throttle-changelog", "p.decisions"
    t.outcomes, t._routes = {o: 0 for o in Outcome}, {}
    t.enabled = {"console:default", *enabled}
    t.deliveries = {ch: f"p.deliveries.{ch}" for ch in CHANNELS}
    t.escalation = object.__new__(Escalation)  # POLICY has no escalation policies: it starts none
    t.escalation.rt = t.rt
    t.grouper = Grouper(SimpleNamespace(policy=POLICY, topics=SimpleNamespace(groups=None)))
    out: list[Any] = []
    t.decide(event, out, NOW, 0)
    return [(topic, loads(value)) for topic, _, value, _ in out]


@pytest.mark.parametrize(("event", "silences"), [
    ({}, {}), (RECOVERY, {}), ({"type_": "daily_loss_limit", "severity": 2}, {}),
    ({}, silence("s1", 'type="order_rejected"')),
], ids=["trigger", "recovery", "type route", "silenced"])
def test_the_records_are_the_throttle_agents(event: dict[str, Any], silences: dict[str, list[Silence]]) -> None:
    e = alert(**event)
    p = preview(e, POLICY, ALL, 600, NOW, silences)
    sent = [("p.decisions", loads(dumps(p.decision)))]
    if p.notifies:
        sent += [(f"p.deliveries.{d.channel}", loads(dumps(d.record))) for d in p.deliveries]
    assert sent == throttle_records(e, ALL, silences)


# ---------------------------------------------------------------- each channel's message, as sent


def command(destination: str) -> DeliveryCommand:
    e = alert(details={"venue": "X", "note": "<!channel> @here"}, alert_id="6c1e7d1e-0000-4000-8000-000000000042")
    p = preview(e, POLICY, ALL, 600, NOW)
    record = dict(p.deliveries[0].record, destination=destination, receiver=destination)
    return DeliveryCommand.model_validate(loads(dumps(record)), context=INTERNAL)


async def sent_over_http(ch: Any, cmd: DeliveryCommand) -> tuple[bytes, dict[str, str]]:
    seen: dict[str, Any] = {}

    async def post_json(url: str, content: bytes, headers: dict[str, str], command: Any) -> DeliveryResult:
        seen.update(content=content, headers=headers)
        return DeliveryResult.success(200)

    ch.post_json = post_json
    assert (await ch.send(cmd)).ok
    return seen["content"], seen["headers"]


@pytest.mark.parametrize("ch", [
    SlackChannel("slack:x", "https://hooks.slack.com/services/T0/B0/SLACKSECRET"),
    TelegramChannel("telegram:x", "123:TGTOKEN", "42"),
    PagerDutyChannel("pagerduty:x", "R0UTINGKEY0123"),
], ids=["slack", "telegram", "pagerduty"])
async def test_http_bodies_are_what_is_sent(ch: Any) -> None:
    cmd = command(ch.destination)
    body, _ = await sent_over_http(ch, cmd)
    assert message(ch, cmd) == {"body": loads(body)}


async def test_webhook_body_and_headers_are_what_is_sent() -> None:
    ch = WebhookChannel("webhook:x", "https://hooks.example.com/in/T0K3N", secret="signing-secret")
    cmd = command("webhook:x")
    body, headers = await sent_over_http(ch, cmd)
    shown = message(ch, cmd)
    assert shown["body"] == loads(body)
    assert shown["headers"] == {k: "<made when sent>" if k in AT_SEND else v for k, v in headers.items()}
    assert set(AT_SEND) <= set(headers) and shown["headers"]["Idempotency-Key"] == cmd.delivery_id


async def test_email_is_what_is_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    import aiosmtplib

    seen: list[Any] = []

    async def send(msg: Any, **kw: Any) -> tuple[dict[str, Any], str]:
        seen.append(msg)
        return {}, "ok"

    monkeypatch.setattr(aiosmtplib, "send", send)
    ch = EmailChannel("email:x", ["oncall@example.com"], "smtp.example.com", None, "tocsin@example.com",
                      "user", "hunter22-password")
    cmd = command("email:x")
    assert (await ch.send(cmd)).ok
    shown = message(ch, cmd)
    assert shown == _email(seen[0])
    assert shown["headers"]["Subject"] == "[SEV1] Order 42 rejected by venue"
    assert "venue:" in shown["text"] and "<table>" in shown["html"]


async def test_console_and_file_lines_are_what_is_written(tmp_path: Path) -> None:
    stream = io.StringIO()
    console, file = ConsoleChannel(stream=stream), FileChannel("file:default", tmp_path / "n.jsonl")
    for ch in (console, file):
        assert (await ch.send(command(ch.destination))).ok
    assert message(console, command("console:default")) == {"line": stream.getvalue().rstrip("\n")}
    assert message(file, command("file:default")) == {"line": (tmp_path / "n.jsonl").read_text().rstrip("\n")}


def test_every_channel_has_a_preview(tmp_path: Path) -> None:
    s = Settings(_env_file=None, file_channel_path=tmp_path / "n.jsonl", telegram_bot_token="123:TGTOKEN",  # type: ignore[call-arg]
                 telegram_chat_id="42", email_default_to="oncall@example.com", smtp_host="smtp.example.com",
                 **{k: v for k, v in SECRETS.items() if k != "smtp_password"})
    channels = build_channels(s, parse_policy({}), env={})
    assert {ch.channel for ch in channels.values()} == set(REGISTRY)
    for name, ch in channels.items():
        shown = message(ch, command(name))
        assert "error" not in shown and shown, name
        assert isinstance(ch, ChannelBase) and ch.target() not in ("", name)


def test_a_message_that_cannot_be_built_is_the_sends_error() -> None:
    ch = EmailChannel("email:x", ["not an address\n"], "smtp.example.com", None, "tocsin@example.com")
    shown = message(ch, command("email:x"))
    assert list(shown) == ["error"] and shown["error"].startswith("cannot build the message:")


# ---------------------------------------------------------------- secrets


SECRETS = {"webhook_default_url": "https://hooks.example.com/in/T0K3N-s3cr3t?key=abc123def",
           "webhook_default_secret": "signing-s3cr3t-xyz",
           "slack_default_webhook": "https://hooks.slack.com/services/T000/B000/XXXXSLACKSECRET",
           "pagerduty_routing_key": "R0UTINGKEY0123456789",
           "smtp_password": "hunter22-password"}


def test_no_secret_in_the_document() -> None:
    s = Settings(_env_file=None, email_default_to="oncall@example.com", smtp_host="smtp.example.com",  # type: ignore[call-arg]
                 **SECRETS)
    policy = parse_policy({"severity": {"1": ["webhook:default", "slack:default", "pagerduty:default",
                                              "email:default"]}})
    channels: dict[str, Channel] = build_channels(s, policy, env={})
    p = preview(alert(), policy, channels, 600, NOW)
    raw = document(p, channels, "r.toml")
    assert loads(dumps(raw))["receivers"][2]["message"]["body"]["routing_key"] == SECRETS["pagerduty_routing_key"]
    doc = scrub(raw, secrets_of(s, channels))
    shown = json.dumps(doc)
    for secret in (*SECRETS.values(), "T0K3N-s3cr3t", "XXXXSLACKSECRET"):
        assert secret not in shown
    targets = {r["destination"]: r["target"] for r in doc["receivers"]}
    assert targets["webhook:default"] == "POST https://hooks.example.com/…"
    assert targets["slack:default"] == "POST https://hooks.slack.com/…"
    assert doc["receivers"][2]["message"]["body"]["routing_key"] == "<redacted>"


def test_route_takes_every_event_flag_of_send() -> None:
    group: Any = typer.main.get_command(cli)
    opts = {name: {o for p in group.commands[name].params for o in p.opts} for name in ("send", "route")}
    assert opts["send"] - {"--json"} <= opts["route"]  # route's --json is its output's form


# ---------------------------------------------------------------- the command


ROUTING = '''\
always = ["console:default"]

[severity]
1 = ["webhook:ops", "slack:oncall", "email:default"]

[destinations."webhook:ops"]
url_env = "OPS_HOOK_URL"
secret_env = "OPS_HOOK_SECRET"

[destinations."slack:oncall"]
webhook_env = "ONCALL_SLACK"
'''
ENV = {"OPS_HOOK_URL": "https://hooks.example.com/in/T0K3N-s3cr3t?key=abc123def",
       "OPS_HOOK_SECRET": "signing-s3cr3t-xyz",
       "ONCALL_SLACK": "https://hooks.slack.com/services/T000/B000/XXXXSLACKSECRET",
       "TOCSIN_KAFKA_BOOTSTRAP": "127.0.0.1:9"}  # no broker there
LEAKS = ("T0K3N", "abc123def", "signing-s3cr3t", "XXXXSLACKSECRET", "T000/B000")
EVENT = {"alert_id": "6c1e7d1e-0000-4000-8000-000000000042", "type": "order_rejected", "severity": "SEV1",
         "summary": "Order 42 rejected by venue", "event_timestamp": "2026-05-01T12:00:00+00:00",
         "entity": {"account_id": "ACC1", "symbol": "BTC-USD"}}


def route(tmp_path: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    (tmp_path / "routing.toml").write_text(ROUTING)
    base = {k: v for k, v in os.environ.items() if not k.startswith("TOCSIN_")}
    env = {**base, **ENV, "TOCSIN_ROUTING_FILE": str(tmp_path / "routing.toml"),
           "TOCSIN_DATA_DIR": str(tmp_path / "data")}
    done = subprocess.run([sys.executable, "-m", "tocsin.cli", "route", *args], capture_output=True, text=True,
                          timeout=60, env=env, input=stdin, cwd=tmp_path)
    for leak in LEAKS:
        assert leak not in done.stdout + done.stderr
    assert not (tmp_path / "data").exists()  # no store, no broker log, nothing written
    return done


def test_route_dry_run_json(tmp_path: Path) -> None:
    (tmp_path / "event.json").write_text(json.dumps(EVENT))
    done = route(tmp_path, "--dry-run", "event.json", "--json")
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    d = doc["decision"]
    assert (d["outcome"], d["reason"], d["dedupe_key"]) == (
        "notify", "first in window", f"order_rejected:ACC1:BTC-USD::{int(AT.timestamp()) // 600}")
    assert d["destinations"] == ["webhook:ops", "slack:oncall", "console:default"]
    assert [r["destination"] for r in doc["receivers"]] == d["destinations"]
    assert doc["not_enabled"] == [{"destination": "email:default",
                                   "why": "not enabled here: its settings are absent from this environment"}]
    hook, slack, console = doc["receivers"]
    assert hook["target"] == "POST https://hooks.example.com/…"
    assert hook["message"]["headers"]["Idempotency-Key"] == hook["delivery_id"]
    assert hook["message"]["headers"]["X-Tocsin-Signature"] == "<made when sent>"  # it has a secret: signed
    body = hook["message"]["body"]
    assert (body["text"], body["delivery_id"], body["receiver"], body["suppressed_count"]) == (
        "[SEV1] Order 42 rejected by venue", hook["delivery_id"], "webhook:ops", 0)
    assert body["alert"]["alert_id"] == EVENT["alert_id"] and body["alert"]["severity"] == 1
    assert slack["target"] == "POST https://hooks.slack.com/…"
    assert slack["message"]["body"]["text"] == "[SEV1] Order 42 rejected by venue"
    assert slack["message"]["body"]["blocks"][0]["text"]["text"] == ":red_circle: *[SEV1] Order 42 rejected by venue*"
    assert console["message"]["line"].startswith("TOCSIN 2026-05-01T12:00:00+00:00 [SEV1] Order 42 rejected by venue")
    assert hook["failover"] == ["console:default"] and hook["failover_not_enabled"] == ["email:default"]
    assert doc["muted_by"] == [] and doc["notifies"] is True


def test_route_dry_run_text_from_flags_and_silences(tmp_path: Path) -> None:
    (tmp_path / "silences.json").write_text(json.dumps([{
        "id": "s-1", "status": {"state": "active"}, "createdBy": "alice", "comment": "venue maintenance",
        "matchers": [{"name": "account_id", "value": "ACC1", "isRegex": False, "isEqual": True}],
        "startsAt": "2026-05-01T11:00:00Z", "endsAt": "2026-05-01T13:00:00Z", "updatedAt": "2026-05-01T12:30:00Z"}]))
    flags = ("--type", "order_rejected", "--severity", "1", "--summary", "Order 42 rejected by venue",
             "--account-id", "ACC1", "--event-timestamp", "2026-05-01T12:00:00Z")
    done = route(tmp_path, "--dry-run", *flags)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "decision   notify: first in window" in lines
    assert "muted by   nothing (no silences given: --silences FILE.json)" in lines
    assert "skipped    email:default (not enabled here: its settings are absent from this environment)" in lines
    assert "receivers  3: webhook:ops, slack:oncall, console:default" in lines
    assert "webhook:ops -> POST https://hooks.example.com/…" in lines
    assert '      "text": "[SEV1] Order 42 rejected by venue",' in lines

    muted = route(tmp_path, "--dry-run", *flags, "--silences", "silences.json")
    assert muted.returncode == 0, muted.stderr
    lines = muted.stdout.splitlines()
    assert "decision   silenced: silence s-1" in lines
    assert ('muted by   silence s-1 account_id="ACC1", 2026-05-01T11:00:00.000Z to 2026-05-01T13:00:00.000Z, '
            'by alice: "venue maintenance"') in lines
    assert "webhook:ops -> POST https://hooks.example.com/…" in lines  # what the mute holds back


def test_route_refuses_what_the_worker_refuses(tmp_path: Path) -> None:
    bad = route(tmp_path, "--dry-run", "-", stdin=json.dumps({**EVENT, "severity": 7, "type": "Bad Type"}))
    assert bad.returncode == 1
    assert bad.stderr.startswith("tocsin: error: invalid alert (the worker would keep it on P.alerts.invalid):")
    assert any(line.strip().startswith("severity:") for line in bad.stderr.splitlines())
    future = route(tmp_path, "--dry-run", "-", "--json",
                   stdin=json.dumps({**EVENT, "event_timestamp": "2999-01-01T00:00:00Z"}))
    assert future.returncode == 1
    assert json.loads(future.stdout)["errors"][0].startswith("event_timestamp: 2999-01-01T00:00:00+00:00 is ")
    assert route(tmp_path, "event.json").returncode == 1  # without --dry-run: nothing to do
