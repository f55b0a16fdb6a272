"""One conformance suite over every channel with a network peer (STYLE 5).

HTTP channels (webhook, Slack, Telegram, PagerDuty) against a real aiohttp server on 127.0.0.1,
scripted per test (PagerDuty's also as its Events API v2 documents its answers); the email channel against a real aiosmtpd server. Every case checks
ok / retryable / reason as DESIGN "Delivery" says, and that no secret (a URL path token,
the webhook secret, the SMTP password) reaches a result, a repr or a log line.

Over every channel (console and file too): a message it cannot build is a permanent
``invalid_message`` failure that sends nothing and leaves the circuit breaker alone, and
hostile alert text (line breaks, controls, escapes, bidi overrides, markup) is delivered, with
no header taking a line break.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import email.utils
import io
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tocsin.agents.channels.base import ChannelBase, DeliveryResult
from tocsin.agents.channels.console import ConsoleChannel
from tocsin.agents.channels.email import EmailChannel
from tocsin.agents.channels.file import FileChannel
from tocsin.agents.channels.http import HttpChannel, Transport, parse_url, transport_reason
from tocsin.agents.channels.pagerduty import PagerDutyChannel
from tocsin.agents.channels.signing import verify
from tocsin.agents.channels.slack import SlackChannel
from tocsin.agents.channels.telegram import TelegramChannel
from tocsin.agents.channels.webhook import WebhookChannel
from tocsin.decisions.limits import BreakerState, CircuitBreaker, breaker_outcome
from tocsin.decisions.retry import Reason
from tocsin.schemas.messages import DeliveryCommand

try:
    from .channel_peers import (
        PEER_LOGGERS,
        HttpPeer,
        Reply,
        SmtpPeer,
        free_port,
        make_command,
        pagerduty_events_v2,
        unbuildable,
    )
except ImportError:  # tests/ is not a package
    from channel_peers import (
        PEER_LOGGERS,
        HttpPeer,
        Reply,
        SmtpPeer,
        free_port,
        make_command,
        pagerduty_events_v2,
        unbuildable,
    )

pytestmark = pytest.mark.integration

TELEGRAM_TOKEN = "123456789:AAH-telegram-Secret_Token-xyz"
SLACK_TOKEN = "xoxSlackWebhookSecret42"
WEBHOOK_PATH_TOKEN = "hookPathToken9f8e7d"
WEBHOOK_QUERY_SECRET = "querySecret31337"
WEBHOOK_SECRET = "whsec_signing_Secret_abc123"
SMTP_USER = "tocsin-user"
SMTP_PASSWORD = "smtp-Passw0rd-very-secret"
PAGERDUTY_KEY = "pdR0utingKey0123456789abcdefABCD"  # 32 characters, as PagerDuty's are
SECRETS = (TELEGRAM_TOKEN, SLACK_TOKEN, WEBHOOK_PATH_TOKEN, WEBHOOK_QUERY_SECRET, WEBHOOK_SECRET,
           SMTP_PASSWORD, PAGERDUTY_KEY)

HTTP_CHANNELS = ("webhook", "slack", "telegram", "pagerduty")

OK, RETRY, PERMANENT = "ok", "retry", "permanent"
STATUS_TABLE: list[tuple[int, str, Reason]] = [
    (200, OK, Reason.OK),
    (201, OK, Reason.OK),
    (204, OK, Reason.OK),
    (400, PERMANENT, Reason.CLIENT_ERROR),
    (401, PERMANENT, Reason.CLIENT_ERROR),
    (403, PERMANENT, Reason.CLIENT_ERROR),
    (404, PERMANENT, Reason.CLIENT_ERROR),
    (408, RETRY, Reason.TIMEOUT),
    (409, PERMANENT, Reason.CLIENT_ERROR),
    (410, PERMANENT, Reason.CLIENT_ERROR),
    (422, PERMANENT, Reason.CLIENT_ERROR),
    (429, RETRY, Reason.RATE_LIMITED),
    (500, RETRY, Reason.SERVER_ERROR),
    (502, RETRY, Reason.SERVER_ERROR),
    (503, RETRY, Reason.SERVER_ERROR),
    (504, RETRY, Reason.SERVER_ERROR),
]


def build(kind: str, base_url: str, timeout_s: float = 5.0) -> HttpChannel:
    if kind == "webhook":
        url = f"{base_url}/hooks/{WEBHOOK_PATH_TOKEN}?key={WEBHOOK_QUERY_SECRET}"
        return WebhookChannel("webhook:default", url, WEBHOOK_SECRET, timeout_s)
    if kind == "slack":
        return SlackChannel("slack:default", f"{base_url}/services/T0001/B0001/{SLACK_TOKEN}", timeout_s)
    if kind == "telegram":
        return TelegramChannel("telegram:default", TELEGRAM_TOKEN, "-1001234567", base_url, timeout_s)
    if kind == "pagerduty":
        return PagerDutyChannel("pagerduty:default", PAGERDUTY_KEY, base_url, timeout_s)
    raise AssertionError(kind)


def assert_outcome(result: DeliveryResult, expect: str, reason: Reason) -> None:
    assert result.reason is reason, result
    assert result.ok is (expect == OK), result
    assert result.retryable is (expect == RETRY), result
    if expect != OK:
        assert result.error, "a failure carries an error"
        assert len(result.error) <= 500


def assert_no_secrets(caplog: pytest.LogCaptureFixture, *things: Any) -> None:
    texts = [repr(t) for t in things] + [str(t) for t in things]
    texts += [getattr(t, "error", None) or "" for t in things]
    for rec in caplog.records:
        if rec.name.startswith(PEER_LOGGERS):
            continue  # the receiving side may log what it received
        texts.append(rec.getMessage())
        texts.append(rec.exc_text or "")
    for text in texts:
        for secret in SECRETS:
            assert secret not in text, f"secret leaked: {text!r}"


@pytest.fixture
async def peer() -> AsyncIterator[HttpPeer]:
    p = await HttpPeer().start()
    yield p
    await p.stop()


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    caplog.set_level(logging.DEBUG)
    yield caplog


async def send_once(kind: str, base_url: str, timeout_s: float = 5.0, **command: Any) -> tuple[HttpChannel, DeliveryResult]:
    ch = build(kind, base_url, timeout_s)
    try:
        result = await ch.send(make_command(destination=f"{kind}:default", **command))
    finally:
        await ch.close()
    return ch, result


# ------------------------------------------------------------------ HTTP: status codes


@pytest.mark.parametrize("kind", HTTP_CHANNELS)
@pytest.mark.parametrize(("status", "expect", "reason"), STATUS_TABLE, ids=[str(s[0]) for s in STATUS_TABLE])
async def test_http_status_classification(kind: str, status: int, expect: str, reason: Reason,
                                          peer: HttpPeer, logs: pytest.LogCaptureFixture) -> None:
    peer.answer(status)
    ch, result = await send_once(kind, peer.base_url)
    assert_outcome(result, expect, reason)
    assert result.status_code == status
    assert len(peer.received) == 1, "one attempt is one request: no hidden retries"
    assert_no_secrets(logs, result, ch)
    if expect == OK:
        # the request was logged (so the log check above saw a URL), with the path cut
        lines = [r.getMessage() for r in logs.records
                 if r.name == "tocsin.agents.channels.http" and r.getMessage().startswith("HTTP POST")]
        assert lines and all("127.0.0.1" in line for line in lines)


@pytest.mark.parametrize("kind", HTTP_CHANNELS)
@pytest.mark.parametrize("status", [429, 503])
async def test_retry_after_seconds(kind: str, status: int, peer: HttpPeer, logs: pytest.LogCaptureFixture) -> None:
    peer.answer(status, {"Retry-After": "2"})
    ch, result = await send_once(kind, peer.base_url)
    assert result.retryable and not result.ok
    assert result.retry_after_s == 2
    assert_no_secrets(logs, result, ch)


@pytest.mark.parametrize("kind", HTTP_CHANNELS)
async def test_retry_after_http_date(kind: str, peer: HttpPeer) -> None:
    when = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=30)
    peer.answer(429, {"Retry-After": email.utils.format_datetime(when, usegmt=True)})
    _, result = await send_once(kind, peer.base_url)
    assert result.reason is Reason.RATE_LIMITED
    assert result.retry_after_s is not None and 25 <= result.retry_after_s <= 31


@pytest.mark.parametrize("kind", HTTP_CHANNELS)
async def test_retry_after_absent_or_garbage(kind: str, peer: HttpPeer) -> None:
    peer.answer(429, {"Retry-After": "soon, maybe"})
    _, result = await send_once(kind, peer.base_url)
    assert result.retryable and result.retry_after_s is None


async def test_telegram_retry_after_from_body(peer: HttpPeer) -> None:
    body = json.dumps({"ok": False, "error_code": 429, "description": "Too Many Requests: retry after 7",
                       "parameters": {"retry_after": 7}}).encode()
    peer.answer(429, {"Content-Type": "application/json"}, body)
    _, result = await send_once("telegram", peer.base_url)
    assert result.reason is Reason.RATE_LIMITED and result.retry_after_s == 7
    assert result.error and "Too Many Requests" in result.error


async def test_telegram_ok_false_is_a_failure(peer: HttpPeer) -> None:
    peer.answer(200, {"Content-Type": "application/json"},
                json.dumps({"ok": False, "description": "Bad Request: chat not found"}).encode())
    _, result = await send_once("telegram", peer.base_url)
    assert not result.ok and not result.retryable and result.reason is Reason.CLIENT_ERROR
    assert result.error and "chat not found" in result.error


# ------------------------------------------------------------------ HTTP: network failures


@pytest.mark.parametrize("kind", HTTP_CHANNELS)
async def test_connection_refused(kind: str, logs: pytest.LogCaptureFixture) -> None:
    ch, result = await send_once(kind, f"http://127.0.0.1:{free_port()}")
    assert_outcome(result, RETRY, Reason.CONNECTION)
    assert result.status_code is None
    assert_no_secrets(logs, result, ch)


@pytest.mark.parametrize("kind", HTTP_CHANNELS)
async def test_hanging_server_times_out(kind: str, peer: HttpPeer, logs: pytest.LogCaptureFixture) -> None:
    peer.answer(200, hang_s=30)
    started = time.monotonic()
    ch, result = await send_once(kind, peer.base_url, timeout_s=0.5)
    assert time.monotonic() - started < 5
    assert_outcome(result, RETRY, Reason.TIMEOUT)
    assert_no_secrets(logs, result, ch)


@pytest.mark.parametrize("kind", HTTP_CHANNELS)
async def test_server_closing_the_connection(kind: str, logs: pytest.LogCaptureFixture) -> None:
    """A peer that accepts and hangs up without answering: a retryable connection error."""

    async def slam(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(100)
        writer.close()

    server = await asyncio.start_server(slam, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        ch, result = await send_once(kind, f"http://127.0.0.1:{port}")
    finally:
        server.close()
        await server.wait_closed()
    assert_outcome(result, RETRY, Reason.CONNECTION)
    assert_no_secrets(logs, result, ch)


@pytest.mark.parametrize("kind", HTTP_CHANNELS)
async def test_a_dripping_answer_meets_the_whole_request_deadline(kind: str, logs: pytest.LogCaptureFixture) -> None:
    """A peer that answers a byte at a time, never idle for a read timeout: the request's own
    deadline (1.5 x the timeout, which the delivery loop relies on) ends it, retryable."""

    async def drip(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(65536)
        writer.write(b"HTTP/1.1 200 OK\r\n")
        try:
            while True:
                writer.write(b"X")
                await writer.drain()
                await asyncio.sleep(0.1)
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(drip, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    started = time.monotonic()
    try:
        ch, result = await send_once(kind, f"http://127.0.0.1:{port}", timeout_s=0.4)
    finally:
        server.close()
        await server.wait_closed()
    assert ch.bounded
    assert 0.5 < time.monotonic() - started < 3
    assert_outcome(result, RETRY, Reason.TIMEOUT)
    assert_no_secrets(logs, result, ch)


@pytest.mark.parametrize("url", ["not a url", "ftp://127.0.0.1/x", "http://"])
async def test_malformed_url_is_permanent_config(url: str, logs: pytest.LogCaptureFixture) -> None:
    ch = WebhookChannel("webhook:default", url, WEBHOOK_SECRET, 1.0)
    try:
        result = await ch.send(make_command())
    finally:
        await ch.close()
    assert_outcome(result, PERMANENT, Reason.CONFIG)
    assert_no_secrets(logs, result, ch)


async def test_the_transport_posts_what_it_is_given(peer: HttpPeer) -> None:
    """The transport alone: the request as given (path and query, body, headers), the answer's
    status, headers and body; a refused connection raises what ``transport_reason`` calls a
    connection failure."""
    peer.answer(503, headers={"Retry-After": "7"}, body=b"busy")
    transport = Transport()
    timeout = aiohttp.ClientTimeout(total=5.0)
    try:
        resp = await transport.post(parse_url(f"{peer.base_url}/x?q=1"), b'{"a": 1}',
                                    {"Content-Type": "application/json", "Idempotency-Key": "k1"}, timeout)
        with pytest.raises(aiohttp.ClientConnectionError) as refused:
            await transport.post(parse_url(f"http://127.0.0.1:{free_port()}/x"), b"{}", {}, timeout)
    finally:
        await transport.close()
    assert (resp.status, resp.headers["Retry-After"], resp.text) == (503, "7", "busy")
    (got,) = peer.received
    assert (got.method, got.path_qs, got.body) == ("POST", "/x?q=1", b'{"a": 1}')
    assert got.headers["Idempotency-Key"] == "k1" and got.headers["Content-Type"] == "application/json"
    assert transport_reason(refused.value) is Reason.CONNECTION


@pytest.mark.parametrize("kind", HTTP_CHANNELS)
async def test_no_redirect_is_followed_and_no_cookie_kept(kind: str, peer: HttpPeer) -> None:
    """A redirect is an answer like any 3xx (retryable, the Location never requested), and a
    cookie set by a receiver is not sent back."""
    peer.answer(302, {"Location": f"{peer.base_url}/elsewhere", "Set-Cookie": "session=abc; Path=/"})
    ch = build(kind, peer.base_url)
    try:
        redirected = await ch.send(make_command(destination=f"{kind}:default"))
        peer.answer(200)
        assert (await ch.send(make_command(destination=f"{kind}:default"))).ok
    finally:
        await ch.close()
    assert (redirected.ok, redirected.retryable, redirected.status_code) == (False, True, 302)
    assert len(peer.received) == 2 and all(r.path != "/elsewhere" for r in peer.received)
    assert "Cookie" not in peer.received[1].headers


@pytest.mark.parametrize("url", ["http://h\n.example/x", "http://127.0.0.1:99999/x", "http://[::1/x"],
                         ids=["control character", "port out of range", "broken IPv6"])
async def test_a_url_no_request_can_go_to_is_config(url: str, logs: pytest.LogCaptureFixture) -> None:
    """URLs aiohttp would reject, or quietly change into another one: refused before any request."""
    ch = WebhookChannel("webhook:default", url, WEBHOOK_SECRET, 1.0)
    try:
        result = await ch.send(make_command())
    finally:
        await ch.close()
    assert_outcome(result, PERMANENT, Reason.CONFIG)
    assert result.error and result.error.startswith("bad destination URL")
    assert_no_secrets(logs, result, ch)


# ------------------------------------------------------------------ HTTP: what each one sends


async def test_webhook_payload_and_idempotency_key(peer: HttpPeer) -> None:
    cmd = make_command(suppressed=3)
    ch = build("webhook", peer.base_url)
    try:
        assert (await ch.send(cmd)).ok
        assert (await ch.send(cmd)).ok  # a repeat carries the same key
    finally:
        await ch.close()
    first, second = peer.received
    assert first.method == "POST" and first.path == f"/hooks/{WEBHOOK_PATH_TOKEN}"
    assert first.headers["Idempotency-Key"] == cmd.delivery_id == second.headers["Idempotency-Key"]
    assert first.headers["Content-Type"] == "application/json"
    body = json.loads(first.body)
    assert body["delivery_id"] == cmd.delivery_id
    assert body["suppressed_count"] == 3
    assert body["text"].startswith("[SEV1] Daily loss limit reached")
    assert body["alert"]["fingerprint"] == cmd.alert.fingerprint
    assert body["alert"]["alert_id"] == str(cmd.alert.alert_id)
    assert verify(WEBHOOK_SECRET, first.headers["X-Tocsin-Timestamp"], first.body,
                  first.headers["X-Tocsin-Signature"], time.time())


async def test_webhook_without_secret_is_unsigned(peer: HttpPeer) -> None:
    ch = WebhookChannel("webhook:default", f"{peer.base_url}/hook")
    try:
        assert (await ch.send(make_command())).ok
    finally:
        await ch.close()
    headers = peer.received[0].headers
    assert "X-Tocsin-Signature" not in headers and "X-Tocsin-Timestamp" not in headers
    assert headers["Idempotency-Key"]


async def test_slack_payload(peer: HttpPeer) -> None:
    cmd = make_command(summary="Loss <limit> & more", destination="slack:default", suppressed=2)
    _, result = await send_once("slack", peer.base_url, summary="Loss <limit> & more", suppressed=2)
    assert result.ok
    (req,) = peer.received
    assert req.path == f"/services/T0001/B0001/{SLACK_TOKEN}"
    body = json.loads(req.body)
    assert body["text"] == "[SEV1] Loss &lt;limit&gt; &amp; more (2 similar suppressed)"
    assert isinstance(body["blocks"], list) and body["blocks"]
    assert all(b["type"] in ("section", "context", "header", "divider") for b in body["blocks"])
    fields = [f["text"] for b in body["blocks"] for f in b.get("fields", [])]
    assert len(fields) <= 10
    assert any(cmd.alert.fingerprint in f for f in fields)
    for b in body["blocks"]:
        if "text" in b:
            assert len(b["text"]["text"]) <= 3000


async def test_telegram_request(peer: HttpPeer) -> None:
    _, result = await send_once("telegram", peer.base_url)
    assert result.ok
    (req,) = peer.received
    assert req.method == "POST" and req.path == f"/bot{TELEGRAM_TOKEN}/sendMessage"
    body = json.loads(req.body)
    assert body["chat_id"] == "-1001234567"
    assert "[SEV1] Daily loss limit reached" in body["text"]
    assert len(body["text"]) <= 4096


async def test_pagerduty_trigger_resolve_and_acknowledge_as_pagerduty_takes_them(
        peer: HttpPeer, logs: pytest.LogCaptureFixture) -> None:
    """Against a peer answering as PagerDuty documents: one incident per fingerprint, triggered
    by a notification, acknowledged by an on-call, resolved by the recovery."""
    peer.script = pagerduty_events_v2(PAGERDUTY_KEY)
    firing = make_command(destination="pagerduty:default", suppressed=2)
    ack = firing.model_copy(update={"lifecycle": "acknowledge", "delivery_id": "ack-1"})
    recovery = make_command(destination="pagerduty:default")
    recovery = recovery.model_copy(update={"alert": recovery.alert.model_copy(update={"action": "resolve"})})
    ch = build("pagerduty", peer.base_url)
    try:
        results = [await ch.send(c) for c in (firing, ack, recovery)]
    finally:
        await ch.close()
    for result in results:
        assert_outcome(result, OK, Reason.OK)
        assert result.status_code == 202
    sent = [json.loads(r.body) for r in peer.received]
    assert [(e["event_action"], e["dedup_key"]) for e in sent] == [
        ("trigger", firing.alert.fingerprint), ("acknowledge", firing.alert.fingerprint),
        ("resolve", firing.alert.fingerprint)]
    assert all(r.path == "/v2/enqueue" and r.headers["Content-Type"] == "application/json" for r in peer.received)
    trigger = sent[0]["payload"]
    assert (trigger["severity"], trigger["source"]) == ("critical", "risk-engine")
    assert trigger["summary"] == "[SEV1] Daily loss limit reached (2 similar suppressed)"
    assert "payload" not in sent[1] and "payload" not in sent[2]
    assert_no_secrets(logs, *results, ch)


async def test_pagerduty_invalid_event_is_permanent_and_says_why(peer: HttpPeer, logs: pytest.LogCaptureFixture) -> None:
    """PagerDuty's 400 names what is wrong; its routing-key message (and an echo of the key) is
    shown without the key."""
    peer.script = pagerduty_events_v2("another-accounts-key-0123456789a")
    ch = build("pagerduty", peer.base_url)
    try:
        result = await ch.send(make_command(destination="pagerduty:default"))
    finally:
        await ch.close()
    assert_outcome(result, PERMANENT, Reason.CLIENT_ERROR)
    assert result.status_code == 400
    assert result.error and "Event object is invalid" in result.error and "routing_key" in result.error
    peer.answer(400, {"Content-Type": "application/json"},
                json.dumps({"status": "invalid event", "message": "Event object is invalid",
                            "errors": [f"unknown routing_key {PAGERDUTY_KEY}"]}).encode())
    ch = build("pagerduty", peer.base_url)
    try:
        echoed = await ch.send(make_command(destination="pagerduty:default"))
    finally:
        await ch.close()
    assert_outcome(echoed, PERMANENT, Reason.CLIENT_ERROR)
    assert echoed.error and "<redacted>" in echoed.error
    assert_no_secrets(logs, result, echoed, ch)


def test_rate_metadata() -> None:
    assert SlackChannel.default_rate_per_s == pytest.approx(1.0)
    assert TelegramChannel.default_rate_per_s == pytest.approx(1.0)
    assert PagerDutyChannel.default_rate_per_s == pytest.approx(2.0)  # 120 events a minute
    assert WebhookChannel.default_rate_per_s is None
    assert EmailChannel.default_rate_per_s is None


def test_reprs_hold_no_secret(caplog: pytest.LogCaptureFixture) -> None:
    chans = [build(k, "http://127.0.0.1:9") for k in HTTP_CHANNELS]
    chans.append(EmailChannel("email:default", ["a@example.com"], "127.0.0.1", 25, "t@localhost",
                              SMTP_USER, SMTP_PASSWORD, "false"))
    assert_no_secrets(caplog, *chans)


# ------------------------------------------------------------------ webhook signing (SIGNING.md)


def signing_recipe() -> Any:
    """The receiver's recipe, exactly as SIGNING.md shows it."""
    import tocsin.agents.channels as pkg

    text = (Path(pkg.__file__).parent / "SIGNING.md").read_text("utf-8")
    code = re.search(r"```python\n(.*?)```", text, re.S)
    assert code, "SIGNING.md shows the recipe as a python block"
    namespace: dict[str, Any] = {}
    exec(compile(code.group(1), "SIGNING.md", "exec"), namespace)  # noqa: S102 - our own doc
    return namespace["verify"]


async def test_signed_post_verifies_with_the_documented_recipe(peer: HttpPeer) -> None:
    recipe = signing_recipe()

    def receiver(req: Any) -> Reply:
        good = recipe(WEBHOOK_SECRET, req.headers.get("X-Tocsin-Timestamp", ""), req.body,
                      req.headers.get("X-Tocsin-Signature", ""))
        return Reply(200 if good else 401)

    peer.script = receiver
    cmd = make_command()
    ch = build("webhook", peer.base_url)
    try:
        assert (await ch.send(cmd)).ok
        # a sender with the wrong secret is refused: permanent, not retried
        wrong = WebhookChannel("webhook:default", ch.url, "not-the-secret", 5.0)
        try:
            refused = await wrong.send(cmd)
        finally:
            await wrong.close()
        assert refused.status_code == 401 and not refused.retryable
    finally:
        await ch.close()

    req = peer.received[0]
    ts, sig = req.headers["X-Tocsin-Timestamp"], req.headers["X-Tocsin-Signature"]
    assert sig.startswith("v1=") and len(sig) == 3 + 64
    now = float(ts)
    assert recipe(WEBHOOK_SECRET, ts, req.body, sig, now=now)
    # tampered: body, timestamp, signature, secret, staleness
    tampered = req.body.replace(b"Daily loss", b"Daily gain")
    assert tampered != req.body
    assert not recipe(WEBHOOK_SECRET, ts, tampered, sig, now=now)
    assert not recipe(WEBHOOK_SECRET, ts, req.body + b" ", sig, now=now)
    assert not recipe(WEBHOOK_SECRET, str(int(ts) + 1), req.body, sig, now=now)
    assert not recipe(WEBHOOK_SECRET, ts, req.body, sig[:-1] + ("0" if sig[-1] != "0" else "1"), now=now)
    assert not recipe("other-secret", ts, req.body, sig, now=now)
    assert not recipe(WEBHOOK_SECRET, ts, req.body, sig, now=now + 301)
    assert not recipe(WEBHOOK_SECRET, ts, req.body, sig, now=now - 301)
    assert recipe(WEBHOOK_SECRET, ts, req.body, sig, now=now + 300)
    # the library's verify agrees with the recipe on all of it
    assert verify(WEBHOOK_SECRET, ts, req.body, sig, now)
    assert not verify(WEBHOOK_SECRET, ts, tampered, sig, now)

    # and the tampered request, posted for real with the original headers, is refused
    async with aiohttp.ClientSession() as session, session.post(
            f"{peer.base_url}/hooks/x", data=tampered,
            headers={"X-Tocsin-Timestamp": ts, "X-Tocsin-Signature": sig}) as resp:
        assert resp.status == 401


# ------------------------------------------------------------------ email (aiosmtpd)


@pytest.fixture
def smtp() -> Iterator[SmtpPeer]:
    p = SmtpPeer(SMTP_USER, SMTP_PASSWORD).start()
    yield p
    p.stop()


def email_channel(port: int, password: str | None = SMTP_PASSWORD, timeout_s: float = 5.0) -> EmailChannel:
    return EmailChannel("email:default", ["oncall@example.com", "risk@example.com"], "127.0.0.1", port,
                        "tocsin@example.com", SMTP_USER if password else None, password, "false", timeout_s)


async def test_email_plain_and_html(smtp: SmtpPeer, logs: pytest.LogCaptureFixture) -> None:
    cmd = make_command(destination="email:default", suppressed=4)
    ch = email_channel(smtp.port)
    result = await ch.send(cmd)
    assert_outcome(result, OK, Reason.OK)
    (msg,) = smtp.handler.messages
    assert msg["Subject"] == "[SEV1] Daily loss limit reached"
    assert msg["From"] == "tocsin@example.com"
    assert sorted(smtp.handler.envelopes[0].rcpt_tos) == ["oncall@example.com", "risk@example.com"]
    assert msg.get_content_type() == "multipart/alternative"
    plain = msg.get_body(("plain",))
    html = msg.get_body(("html",))
    assert plain is not None and html is not None
    plain_text, html_text = plain.get_content(), html.get_content()
    assert "[SEV1] Daily loss limit reached" in plain_text and cmd.delivery_id in plain_text
    assert "4 similar" in plain_text
    assert "<html>" in html_text and "&lt;b&gt;&amp;&lt;/b&gt;" in html_text  # details escaped
    assert_no_secrets(logs, result, ch)


@pytest.mark.parametrize("severity", [1, 2, 3])
async def test_email_subject_per_severity(severity: int, smtp: SmtpPeer) -> None:
    result = await email_channel(smtp.port).send(make_command(severity=severity, destination="email:default"))
    assert result.ok
    assert smtp.handler.messages[0]["Subject"] == f"[SEV{severity}] Daily loss limit reached"


@pytest.mark.parametrize(
    ("stage", "reply", "expect", "reason", "code"),
    [
        ("rcpt", "550 5.1.1 No such user", PERMANENT, Reason.CLIENT_ERROR, 550),
        ("rcpt", "553 5.1.3 Bad address", PERMANENT, Reason.CLIENT_ERROR, 553),
        ("rcpt", "450 4.2.1 Mailbox busy", RETRY, Reason.SERVER_ERROR, 450),
        ("rcpt", "452 4.3.1 Insufficient storage", RETRY, Reason.SERVER_ERROR, 452),
        ("data", "554 5.7.1 Message rejected", PERMANENT, Reason.CLIENT_ERROR, 554),
        ("data", "552 5.3.4 Message too big", PERMANENT, Reason.CLIENT_ERROR, 552),
        ("data", "451 4.3.0 Try again later", RETRY, Reason.SERVER_ERROR, 451),
        ("data", "421 4.4.2 Closing connection", RETRY, Reason.SERVER_ERROR, 421),
    ],
)
async def test_email_smtp_refusals(stage: str, reply: str, expect: str, reason: Reason, code: int,
                                   smtp: SmtpPeer, logs: pytest.LogCaptureFixture) -> None:
    setattr(smtp.handler, f"{stage}_reply", reply)
    ch = email_channel(smtp.port)
    result = await ch.send(make_command(destination="email:default"))
    assert_outcome(result, expect, reason)
    assert result.status_code == code
    assert not smtp.handler.messages
    assert_no_secrets(logs, result, ch)


async def test_email_bad_password_is_permanent_and_not_shown(smtp: SmtpPeer, logs: pytest.LogCaptureFixture) -> None:
    smtp.password = "the-real-one"
    ch = email_channel(smtp.port)
    result = await ch.send(make_command(destination="email:default"))
    assert not result.ok and not result.retryable  # 535: fix the configuration
    assert result.status_code == 535
    assert_no_secrets(logs, result, ch)


@pytest.mark.parametrize("mismatch", ["no AUTH on the server", "no STARTTLS on the server"])
async def test_email_settings_the_server_cannot_meet_are_permanent(mismatch: str,
                                                                  logs: pytest.LogCaptureFixture) -> None:
    peer = SmtpPeer(auth=False).start()
    try:
        ch = email_channel(peer.port)
        if mismatch.endswith("STARTTLS on the server"):
            ch.user, ch.password, ch.tls = None, None, "starttls"
        result = await ch.send(make_command(destination="email:default"))
    finally:
        peer.stop()
    assert_outcome(result, PERMANENT, Reason.CONFIG)
    assert not peer.handler.messages
    assert_no_secrets(logs, result, ch)


async def test_email_without_credentials(smtp: SmtpPeer) -> None:
    result = await email_channel(smtp.port, password=None).send(make_command(destination="email:default"))
    assert result.ok and len(smtp.handler.messages) == 1


async def test_email_closed_port_is_retryable(logs: pytest.LogCaptureFixture) -> None:
    ch = email_channel(free_port())
    result = await ch.send(make_command(destination="email:default"))
    assert_outcome(result, RETRY, Reason.CONNECTION)
    assert_no_secrets(logs, result, ch)


async def test_email_hanging_server_times_out(logs: pytest.LogCaptureFixture) -> None:
    """A peer that accepts and never greets: a retryable timeout."""
    release = asyncio.Event()

    async def mute(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await release.wait()
        writer.close()

    server = await asyncio.start_server(mute, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        started = time.monotonic()
        ch = email_channel(port, timeout_s=0.5)
        result = await ch.send(make_command(destination="email:default"))
        assert time.monotonic() - started < 5
    finally:
        release.set()
        server.close()
        await server.wait_closed()
    assert_outcome(result, RETRY, Reason.TIMEOUT)
    assert_no_secrets(logs, result, ch)


# ------------------------------------------------------------------ every channel: building


ALL_CHANNELS = ("webhook", "slack", "telegram", "pagerduty", "email", "console", "file")


class Site:
    """One channel and what its peer got: HTTP requests, SMTP messages, console lines, file lines."""

    def __init__(self, kind: str, peer: HttpPeer, smtp: SmtpPeer, tmp: Path, sender: str = "tocsin@example.com") -> None:
        self.kind = kind
        self.peer, self.smtp, self.path, self.stream = peer, smtp, tmp / "out.jsonl", io.StringIO()
        self.channel: ChannelBase
        if kind in HTTP_CHANNELS:
            self.channel = build(kind, peer.base_url)
        elif kind == "email":
            self.channel = EmailChannel("email:default", ["oncall@example.com"], "127.0.0.1", smtp.port, sender,
                                        SMTP_USER, SMTP_PASSWORD, "false", 5.0)
        elif kind == "console":
            self.channel = ConsoleChannel(stream=self.stream)
        else:
            self.channel = FileChannel("file:default", self.path)

    def got(self) -> list[Any]:
        if self.kind in HTTP_CHANNELS:
            return list(self.peer.received)
        if self.kind == "email":
            return list(self.smtp.handler.messages) + list(self.smtp.handler.envelopes)
        if self.kind == "console":
            return self.stream.getvalue().splitlines()
        return self.path.read_text("utf-8").splitlines() if self.path.exists() else []


def cannot_build(site: Site, cmd: DeliveryCommand) -> tuple[Site, DeliveryCommand]:
    """A channel and a command it cannot build, as each channel can meet one: JSON channels a
    summary no JSON carries; email a sender address with a line break (a header injection
    through the setting); the console an alert with no event time (both skipped validation)."""
    if site.kind == "email":
        return Site("email", site.peer, site.smtp, site.path.parent, "tocsin@example.com\r\nBcc: x@evil.example"), cmd
    if site.kind == "console":
        return site, cmd.model_copy(update={"alert": cmd.alert.model_copy(update={"event_timestamp": None})})
    return site, unbuildable(cmd)


@pytest.fixture
def smtp_site() -> Iterator[SmtpPeer]:
    p = SmtpPeer(SMTP_USER, SMTP_PASSWORD).start()
    yield p
    p.stop()


@pytest.mark.parametrize("kind", ALL_CHANNELS)
async def test_a_message_a_channel_cannot_build_is_permanent_and_breaker_neutral(
        kind: str, peer: HttpPeer, smtp_site: SmtpPeer, tmp_path: Path, logs: pytest.LogCaptureFixture) -> None:
    site, cmd = cannot_build(Site(kind, peer, smtp_site, tmp_path), make_command(destination=f"{kind}:default"))
    breaker = CircuitBreaker(failure_threshold=5)
    try:
        results = []
        for _ in range(7):  # more than the threshold: none of them may open it
            result = await site.channel.send(cmd)
            results.append(result)
            assert breaker.allow(0.0)
            breaker.record(breaker_outcome(result.ok, result.retryable, result.reason), 0.0)
    finally:
        await site.channel.close()
    for result in results:
        assert_outcome(result, PERMANENT, Reason.INVALID_MESSAGE)
        assert result.error and result.error.startswith("cannot build the message: ")
        assert result.status_code is None
    assert (breaker.state, breaker.failures) == (BreakerState.CLOSED, 0)
    assert site.got() == [], "nothing that could not be built was sent"
    assert_no_secrets(logs, *results, site.channel)


HOSTILE_SUMMARY = ("line\none\r\ntwo\rthree\x0bfour\x0cfive\x1c\x1d\x1e\x85six\u2028seven\u2029eight "
                   "\x1b[31mred\x07\x00\x7f\x9b \u202eevil\u2066 <!channel> @here <http://evil|click> "
                   "<a href='http://evil'>x</a> & \U000e0041")


@pytest.mark.parametrize("kind", ALL_CHANNELS)
async def test_hostile_alert_text_is_delivered_by_every_channel(
        kind: str, peer: HttpPeer, smtp_site: SmtpPeer, tmp_path: Path, logs: pytest.LogCaptureFixture) -> None:
    site = Site(kind, peer, smtp_site, tmp_path)
    cmd = make_command(summary=HOSTILE_SUMMARY, destination=f"{kind}:default")
    cmd = cmd.model_copy(update={"delivery_id": "d1\r\nX-Injected: 1"})  # a hand-made command, say
    try:
        result = await site.channel.send(cmd)
    finally:
        await site.channel.close()
    assert_outcome(result, OK, Reason.OK)
    got = site.got()
    if kind in HTTP_CHANNELS:
        (req,) = got
        json.loads(req.body)
        assert "X-Injected" not in req.headers
        assert all(not set(v) & set("\r\n\x00") for v in req.headers.values())
        if kind == "webhook":
            assert req.headers["Idempotency-Key"] == "d1 X-Injected: 1"
    elif kind == "email":
        msg = got[0]
        assert msg["X-Injected"] is None
        assert msg["Subject"].startswith("[SEV1] line one two three four five six seven eight [31mred")
        assert len(msg["Subject"].splitlines()) == 1
    else:
        (line,) = got  # one line, whatever the summary held
        assert "\x1b" not in line and "\u202e" not in line
    assert_no_secrets(logs, result, site.channel)
