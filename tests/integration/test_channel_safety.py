"""Safe text in every channel (issue #14), one test per finding, against real peers: aiosmtpd,
aiohttp and raw HTTP servers on 127.0.0.1, the console on a stream, the file channel on disk.

- a summary with a line break is emailed with a clean subject, and seven of them leave the
  email destination's circuit breaker closed (the delivery agent's own ``handle``);
- a message that cannot be built is dead at once, never retried, and breaker-neutral;
- the console shows an alert's escapes instead of obeying them; the file stays one line each;
- Slack and Telegram messages cannot mention or link unless the routing file allows it;
- a receiver streaming 50 MB (or a gzip bomb) is read up to 64 KiB and no further.
"""

from __future__ import annotations

import asyncio
import gzip
import io
import json
import tracemalloc
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tocsin.agents.channels import build_channels
from tocsin.agents.channels.console import ConsoleChannel
from tocsin.agents.channels.email import EmailChannel
from tocsin.agents.channels.file import FileChannel
from tocsin.agents.channels.http import MAX_RESPONSE_BYTES, HttpChannel
from tocsin.agents.channels.slack import SlackChannel
from tocsin.agents.channels.telegram import TelegramChannel
from tocsin.agents.channels.webhook import WebhookChannel
from tocsin.agents.delivery.handle import handle
from tocsin.agents.delivery.limits import Limits
from tocsin.core.settings import Settings
from tocsin.core.tables import DeliveryStates
from tocsin.decisions.limits import BreakerState
from tocsin.decisions.retry import Reason
from tocsin.decisions.routing import parse_policy
from tocsin.schemas.messages import DeliveryCommand

from .channel_peers import HttpPeer, SmtpPeer, StreamingPeer, make_command, unbuildable
from .harness import SmtpReceiver, Stack, produce, read_topic
from .test_pipeline import alert_bytes, bucket_time

pytestmark = pytest.mark.integration

#: the line breaks the email library refused in a header (each one its own finding)
BREAKS = ["\n", "\r\n", "\r", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029"]
BREAK_IDS = [repr(b) for b in BREAKS]


@pytest.fixture
def smtp_peer() -> Iterator[SmtpPeer]:
    p = SmtpPeer(auth=False).start()
    yield p
    p.stop()


@pytest.fixture
async def http_peer() -> AsyncIterator[HttpPeer]:
    p = await HttpPeer().start()
    yield p
    await p.stop()


def email_channel(port: int) -> EmailChannel:
    return EmailChannel("email:default", ["oncall@example.com"], "127.0.0.1", port, "tocsin@example.com",
                        tls="false", timeout_s=5.0)


# ------------------------------------------------------------------ the delivery agent's handle


class Topic:
    """Where ``handle`` sends: what was sent, in order (the topics are not under test here)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.sent: list[Any] = []

    def get_topic_name(self) -> str:
        return self.name


class Outbox:
    """The delivery outbox's part ``handle`` uses: attempts, table writes, published records."""

    def __init__(self, topics: list[Topic]) -> None:
        self.attempts: list[dict[str, Any]] = []
        self.topics = {t.name: t for t in topics}

    def attempt(self, att: dict[str, Any]) -> None:
        self.attempts.append(att)

    def table_write(self, table: dict[str, str], key: str, value: str, partition: int) -> None:
        table[key] = value

    def publish(self, topic: str, key: str, value: Any) -> None:
        self.topics[topic].sent.append(value)


class Event:
    """A read command as ``handle`` sees it (weakly referenced as Faust's current event)."""

    def __init__(self) -> None:
        self.message = self
        self.partition = 0


class Agent:
    """The real ``delivery.handle`` with the real ``Limits`` (token buckets, circuit breakers)
    and real channels; the topics and the delivery table are in memory."""

    def __init__(self, channels: dict[str, Any]) -> None:
        self.retry, self.dlq, self.alerts = Topic("retry"), Topic("dlq"), Topic("alerts")
        self.outbox = Outbox([self.retry, self.dlq, self.alerts])
        self.table: dict[str, str] = {}
        self.rt: Any = type("Rt", (), {})()
        self.rt.settings = Settings(_env_file=None)  # type: ignore[call-arg]
        self.rt.policy = parse_policy({})
        self.rt.channels = channels
        # the delivery table: a dict store, with the real states' expiry bookkeeping beside it
        deliveries = type("Deliveries", (dict,), {})()
        deliveries.states = DeliveryStates(3600)
        self.table = deliveries
        self.rt.tables = type("Tables", (), {"deliveries": self.table})()
        self.rt.topics = type("Topics", (), {"retry": self.retry, "dlq": self.dlq, "alerts": self.alerts,
                                             "deliveries": {}})()
        self.rt.delivery_outbox = self.outbox
        self.limits = Limits(self.rt)
        self._events: list[Event] = []

    async def handle(self, cmd: DeliveryCommand) -> dict[str, Any]:
        event = Event()
        self._events.append(event)  # alive while Faust's context var points at it
        await handle(self.rt, self.limits, cmd, event)
        return self.outbox.attempts[-1]

    def breaker(self, destination: str) -> Any:
        return self.limits.breaker(destination)

    async def close(self) -> None:
        for ch in self.rt.channels.values():
            await ch.close()


def multiline(i: int, brk: str) -> DeliveryCommand:
    return make_command(summary=f"first line {i}{brk}second line", destination="email:default",
                        fingerprint=f"multi:{i}")


# ------------------------------------------------------------------ email: line breaks


@pytest.mark.parametrize("brk", BREAKS, ids=BREAK_IDS)
async def test_a_summary_with_a_line_break_is_emailed_with_a_clean_subject(brk: str, smtp_peer: SmtpPeer) -> None:
    cmd = make_command(summary=f"first line{brk}second line <b>&", destination="email:default")
    result = await email_channel(smtp_peer.port).send(cmd)
    assert result.ok, result
    (msg,) = smtp_peer.handler.messages
    assert msg["Subject"] == "[SEV1] first line second line <b>&"
    raw_head = bytes(smtp_peer.handler.envelopes[0].original_content or b"").split(b"\r\n\r\n")[0]
    assert b"second line" not in raw_head.split(b"Subject:")[0]  # no header was injected before it
    plain = msg.get_body(("plain",))
    html = msg.get_body(("html",))
    assert plain is not None and html is not None
    # the plain body keeps the break as a line of its own (CRLF on the wire), indented under the summary
    assert "[SEV1] first line\r\n  second line <b>&\r\n" in plain.get_content()
    assert "first line\r\nsecond line &lt;b&gt;&amp;</h2>" in html.get_content()  # HTML escaped


async def test_alert_text_cannot_add_lines_of_its_own_to_the_plain_body(smtp_peer: SmtpPeer) -> None:
    cmd = make_command(summary="ok\ndelivery_id: forged", destination="email:default")
    cmd = cmd.model_copy(update={"alert": cmd.alert.model_copy(update={
        "details": {"note\nfingerprint: forged": "a\nsource: forged"}})})
    assert (await email_channel(smtp_peer.port).send(cmd)).ok
    plain = smtp_peer.handler.messages[0].get_body(("plain",))
    assert plain is not None
    lines = plain.get_content().splitlines()
    assert not any(line.startswith(("delivery_id: forged", "fingerprint: forged", "source: forged"))
                   for line in lines)
    assert "  note fingerprint: forged: a" in lines  # the key folded, the value's lines indented


async def test_seven_multiline_sev1_emails_leave_the_breaker_closed(smtp_peer: SmtpPeer) -> None:
    """The finding: 0 of 7 emailed (each a retryable failure), the breaker open after five, and
    a plain SEV1 after them dead as ``circuit_open``."""
    agent = Agent({"email:default": email_channel(smtp_peer.port)})
    try:
        for i, brk in enumerate(["\n", "\x0b", "\x85", "\u2028", "\r\n", "\x0c", "\u2029"]):
            att = await agent.handle(multiline(i, brk))
            assert att["status"].value == "sent", att
        assert agent.breaker("email:default").state is BreakerState.CLOSED
        assert agent.breaker("email:default").failures == 0
        att = await agent.handle(make_command(summary="plain SEV1 after them", destination="email:default",
                                              fingerprint="plain"))
        assert att["status"].value == "sent", att
    finally:
        await agent.close()
    subjects = [m["Subject"] for m in smtp_peer.handler.messages]
    assert len(subjects) == 8 and subjects[-1] == "[SEV1] plain SEV1 after them"
    assert all("\n" not in s and "\r" not in s for s in subjects)
    assert subjects[0] == "[SEV1] first line 0 second line"
    assert not agent.retry.sent and not agent.dlq.sent


# ------------------------------------------------------------------ messages that cannot be built


async def test_unbuildable_messages_are_dead_at_once_and_leave_the_breaker_alone(http_peer: HttpPeer) -> None:
    agent = Agent({"webhook:default": WebhookChannel("webhook:default", f"{http_peer.base_url}/hook")})
    try:
        for i in range(7):
            # SEV2: a SEV1's failure alert would quote the summary, and no alert holds a surrogate
            att = await agent.handle(unbuildable(make_command(severity=2, fingerprint=f"bad:{i}")))
            assert att["status"].value == "dead"
            assert att["reason"] == "invalid_message: permanent failure"
            assert att["error"].startswith("cannot build the message: ")
        breaker = agent.breaker("webhook:default")
        assert (breaker.state, breaker.failures) == (BreakerState.CLOSED, 0)
        assert not http_peer.received, "nothing unbuildable is sent"
        assert not agent.retry.sent, "nor retried"
        assert len(agent.dlq.sent) == 7  # kept with their reason, for a redrive once fixed
        assert all(c.last_error.startswith("cannot build the message") for c in agent.dlq.sent)
        att = await agent.handle(make_command(summary="a plain SEV1 after them", fingerprint="plain"))
        assert att["status"].value == "sent"
    finally:
        await agent.close()
    assert len(http_peer.received) == 1


async def test_a_sender_address_with_a_line_break_cannot_inject_a_header(smtp_peer: SmtpPeer) -> None:
    ch = EmailChannel("email:default", ["oncall@example.com"], "127.0.0.1", smtp_peer.port,
                      "tocsin@example.com\r\nBcc: victim@example.com", tls="false")
    result = await ch.send(make_command(destination="email:default"))
    assert (result.ok, result.retryable, result.reason) == (False, False, Reason.INVALID_MESSAGE)
    assert not smtp_peer.handler.messages and not smtp_peer.handler.envelopes


# ------------------------------------------------------------------ console and file


async def test_the_console_shows_escapes_instead_of_obeying_them() -> None:
    out = io.StringIO()
    cmd = make_command(summary="\x1b[31mred\x1b[0m \x07bell \u202eevil\x1b]0;title\x07\nnext",
                       destination="console:default", fingerprint="fp\x1b[2J")
    assert (await ConsoleChannel(stream=out).send(cmd)).ok
    written = out.getvalue()
    assert written.count("\n") == 1 and written.endswith("\n")  # one line, ours
    line = written[:-1]
    assert "\\x1b[31mred\\x1b[0m \\x07bell \\u202eevil\\x1b]0;title\\x07\\nnext" in line
    assert "fingerprint=fp\\x1b[2J" in line
    assert not {"\x1b", "\x07", "\u202e", "\r"} & set(line)


async def test_the_file_channel_writes_one_safe_json_line_per_notification(tmp_path: Path) -> None:
    path = tmp_path / "n.jsonl"
    ch = FileChannel("file:default", path)
    summaries = ["a\u2028b\u2029c\x85d\x1b[31m\x07\u202e\x9b\x7f", "second\nline\r\n", "plain"]
    for i, s in enumerate(summaries):
        assert (await ch.send(make_command(summary=s, destination="file:default", fingerprint=f"f{i}"))).ok
    data = path.read_bytes()
    text = data.decode("utf-8")
    assert len(text.splitlines()) == 3  # str.splitlines breaks on U+2028 and \x85 too
    assert [json.loads(line)["alert"]["summary"] for line in text.splitlines()] == [
        s.strip() for s in summaries]
    for bad in ("\x1b", "\x07", "\u202e", "\u2028", "\u2029", "\x85", "\x9b", "\x7f", "\r"):
        assert bad not in text


# ------------------------------------------------------------------ Slack and Telegram markup


HOSTILE = "<!channel> @here <!everyone> <@U024BE7LH> see <http://evil.example|click> [x](http://evil)"


def routed_channels(base_url: str) -> dict[str, Any]:
    """Two Slack and two Telegram destinations from a routing file: one of each allows mentions."""
    policy = parse_policy({
        "receivers": {"slack:loud": {"allow_mentions": True}, "telegram:loud": {"allow_mentions": True}},
        "destinations": {
            "slack:loud": {"webhook_env": "SLACK_LOUD"}, "slack:quiet": {"webhook_env": "SLACK_QUIET"},
            "telegram:loud": {"token_env": "TG_TOKEN", "chat_id_env": "TG_LOUD", "api_base_env": "TG_BASE"},
            "telegram:quiet": {"token_env": "TG_TOKEN", "chat_id_env": "TG_QUIET", "api_base_env": "TG_BASE"},
        },
    })
    env = {"SLACK_LOUD": f"{base_url}/slack/loud", "SLACK_QUIET": f"{base_url}/slack/quiet",
           "TG_TOKEN": "123:tok", "TG_LOUD": "1", "TG_QUIET": "2", "TG_BASE": base_url}
    chans = build_channels(Settings(_env_file=None), policy, env=env)  # type: ignore[call-arg]
    return {name: chans[name] for name in ("slack:loud", "slack:quiet", "telegram:loud", "telegram:quiet")}


async def test_slack_and_telegram_cannot_mention_or_link_unless_routing_allows(http_peer: HttpPeer) -> None:
    chans = routed_channels(http_peer.base_url)
    try:
        for name, ch in chans.items():
            result = await ch.send(make_command(summary=HOSTILE, destination=name))
            assert result.ok, (name, result)
    finally:
        for ch in chans.values():
            await ch.close()
    got = {req.path: json.loads(req.body) for req in http_peer.received if req.path.startswith("/slack/")}
    quiet, loud = got["/slack/quiet"], got["/slack/loud"]
    assert quiet["text"] == ("[SEV1] &lt;!channel&gt; @\u2060here &lt;!everyone&gt; &lt;@U024BE7LH&gt; see "
                             "&lt;http://evil.example|click&gt; [x](http://evil)")
    assert "<" not in json.dumps(quiet)  # no token anywhere in the message, blocks included
    assert loud["text"] == ("[SEV1] <!channel> @here <!everyone> <@U024BE7LH> see "
                            "&lt;http://evil.example|click&gt; [x](http://evil)")  # mentions live, link not
    tg = {body["chat_id"]: body for body in (json.loads(req.body) for req in http_peer.received
                                             if req.path.endswith("/sendMessage"))}
    assert set(tg) == {"1", "2"}
    assert all("parse_mode" not in body for body in tg.values())  # plain text: no markup at all
    assert "@\u2060here" in tg["2"]["text"] and "@here" not in tg["2"]["text"]
    assert "@here" in tg["1"]["text"]


# ------------------------------------------------------------------ bounded response bodies


HTTP_KINDS = ("webhook", "slack", "telegram")
FIFTY_MB = 50 * 1024 * 1024


def http_channel(kind: str, base_url: str, session: aiohttp.ClientSession | None = None) -> HttpChannel:
    if kind == "webhook":
        return WebhookChannel("webhook:default", f"{base_url}/hook", timeout_s=5.0, session=session)
    if kind == "slack":
        return SlackChannel("slack:default", f"{base_url}/services/T/B/X", 5.0, session)
    return TelegramChannel("telegram:default", "123:tok", "42", base_url, 5.0, session)


async def send_measured(ch: HttpChannel, cmd: DeliveryCommand) -> tuple[Any, int]:
    """The result of one send and the most memory it held at once (tracemalloc)."""
    tracemalloc.start()
    try:
        result = await ch.send(cmd)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        await ch.close()
    return result, peak


@pytest.mark.parametrize("chunked", [True, False], ids=["chunked", "content-length"])
@pytest.mark.parametrize(("status", "ok", "reason"), [(200, True, Reason.OK), (500, False, Reason.SERVER_ERROR),
                                                      (400, False, Reason.CLIENT_ERROR)])
@pytest.mark.parametrize("kind", HTTP_KINDS)
async def test_a_receiver_streaming_50_mb_is_read_only_up_to_the_bound(
        kind: str, status: int, ok: bool, reason: Reason, chunked: bool) -> None:
    peer = await StreamingPeer(status, FIFTY_MB, chunked).start()
    try:
        result, peak = await send_measured(http_channel(kind, peer.base_url),
                                           make_command(destination=f"{kind}:default"))
        await asyncio.wait_for(peer.finished.wait(), 10)
    finally:
        await peer.stop()
    assert (result.ok, result.reason, result.status_code) == (ok, reason, status)
    assert result.retryable is (status == 500)
    if not ok:
        assert result.error and len(result.error) <= 500 and result.error.startswith(f"HTTP {status}: xxx")
    assert peer.written < FIFTY_MB / 4, "the worker hung up instead of reading it all"
    assert peak < 4 * 1024 * 1024, f"held {peak} bytes"


@pytest.mark.parametrize("kind", HTTP_KINDS)
async def test_a_gzip_bomb_is_inflated_only_up_to_the_bound(kind: str) -> None:
    bomb = gzip.compress(b'{"ok": false, "description": "' + b"0" * FIFTY_MB + b'"}')
    assert len(bomb) < MAX_RESPONSE_BYTES  # read whole: the inflating is what must stop
    peer = await StreamingPeer(500, chunked=False, body=bomb,
                               headers={"Content-Type": "application/json", "Content-Encoding": "gzip"}).start()
    try:
        result, peak = await send_measured(http_channel(kind, peer.base_url),
                                           make_command(destination=f"{kind}:default"))
    finally:
        await peer.stop()
    assert (result.ok, result.retryable, result.reason) == (False, True, Reason.SERVER_ERROR)
    assert result.error and len(result.error) <= 500
    assert peak < 4 * 1024 * 1024, f"held {peak} bytes"


async def test_a_callers_session_is_read_up_to_the_bound_too() -> None:
    peer = await StreamingPeer(500, FIFTY_MB).start()
    try:
        ch = http_channel("webhook", peer.base_url, session=aiohttp.ClientSession())
        result, peak = await send_measured(ch, make_command())
        await asyncio.wait_for(peer.finished.wait(), 10)
    finally:
        await peer.stop()
    assert (result.reason, result.status_code) == (Reason.SERVER_ERROR, 500)
    assert peer.written < FIFTY_MB / 4 and peak < 4 * 1024 * 1024


async def test_a_cut_answer_leaves_the_channel_working(http_peer: HttpPeer) -> None:
    """The connection of a cut body is closed, not pooled: the next send gets a fresh one."""
    streaming = await StreamingPeer(200, FIFTY_MB).start()
    ch = WebhookChannel("webhook:default", f"{streaming.base_url}/hook", timeout_s=5.0)
    try:
        assert (await ch.send(make_command())).ok
        assert (await ch.send(make_command(fingerprint="again"))).ok
        assert streaming.requests == 2
        ch.url = f"{http_peer.base_url}/hook"
        assert (await ch.send(make_command(fingerprint="elsewhere"))).ok
    finally:
        await ch.close()
        await streaming.stop()
    assert len(http_peer.received) == 1


# ------------------------------------------------------------------ the whole worker


async def test_the_worker_emails_multiline_sev1s_and_the_plain_one_after_them(
        stack: Stack, smtp: SmtpReceiver) -> None:
    """The finding as seen: seven SEV1s with line breaks, then a plain SEV1, through Kafka and a
    worker to a real SMTP server: all eight emailed, no email attempt failed or met an open
    circuit."""
    routing = stack.tmp / "routing.toml"
    routing.write_text('[severity]\n1 = ["email:default"]\n2 = []\n3 = []\n')
    await stack.start_worker(TOCSIN_EMAIL_DEFAULT_TO="oncall@example.test", TOCSIN_SMTP_HOST="127.0.0.1",
                             TOCSIN_SMTP_PORT=str(smtp.port), TOCSIN_ROUTING_FILE=str(routing))
    breaks = ["\n", "\x0b", "\x85", "\u2028", "\r\n", "\x0c", "\u2029"]
    items = [alert_bytes(type="daily_loss_limit", severity=1, summary=f"loss {i}{brk}on account {i}",
                         fingerprint=f"multi:{i}", event_timestamp=bucket_time(i)) for i, brk in enumerate(breaks)]
    await produce(stack.bootstrap, stack.topic("alerts"), items)
    await smtp.wait_for(7, timeout=60)
    await produce(stack.bootstrap, stack.topic("alerts"),
                  [alert_bytes(type="kill_switch_activated", severity=1, summary="plain SEV1 after them",
                               fingerprint="plain", event_timestamp=bucket_time(8))])
    mails = await smtp.wait_for(8, timeout=60)
    subjects = sorted(m["Subject"] for m in mails)
    assert subjects == sorted([f"[SEV1] loss {i} on account {i}" for i in range(7)] + ["[SEV1] plain SEV1 after them"])
    attempts = await read_topic(stack.bootstrap, stack.topic("attempts"),
                                until=lambda a: sum(x["value"]["status"] == "sent" for x in a) >= 8)
    email = [a["value"]["status"] for a in attempts if a["value"]["channel"] == "email"]
    assert email.count("sent") == 8 and not {"failed", "circuit_open", "dead"} & set(email), email
