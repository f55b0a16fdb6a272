"""Real peers for the channel tests: a scripted aiohttp server and a scripted aiosmtpd
server, both on 127.0.0.1, plus a closed port. Imported by the channel tests (not a
conftest: fixtures are created with the factories below)."""

from __future__ import annotations

import asyncio
import datetime as dt
import email
import email.policy
import inspect
import json
import socket
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session
from multidict import CIMultiDict

from tocsin.schemas.alert import create_alert
from tocsin.schemas.messages import DeliveryCommand, delivery_id_for

#: loggers of the peers themselves (the receiving side may log what it received)
PEER_LOGGERS = ("mail.log", "aiohttp.access", "aiohttp.server", "aiohttp.web")


def free_port() -> int:
    """A port nothing listens on (bound, then closed: connecting to it is refused)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_command(severity: int = 1, summary: str = "Daily loss limit reached",
                 destination: str = "webhook:default", suppressed: int = 0,
                 fingerprint: str | None = None) -> DeliveryCommand:
    alert = create_alert(
        "daily_loss_limit", severity, summary, fingerprint=fingerprint,
        event_timestamp=dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC),
        account_id="acc-1", symbol="BTC-USD", strategy_id="s1",
        details={"loss": "1234.5", "limit": 1000, "note": "<b>&</b>"}, source="risk-engine",
    )
    dedupe = f"{alert.fingerprint}:{int(alert.epoch // 600)}"
    return DeliveryCommand(delivery_id=delivery_id_for(dedupe, destination, destination), alert=alert,
                           dedupe_key=dedupe, receiver=destination, destination=destination,
                           suppressed_count=suppressed)


def unbuildable(cmd: DeliveryCommand) -> DeliveryCommand:
    """``cmd`` with a summary and a detail no JSON can carry (a lone surrogate), as a command
    that skipped validation would hold: what the JSON channels (webhook, Slack, Telegram, file)
    cannot build. (Validation refuses it, so a test gets it only by copying without validating.)"""
    bad = "cut \ud800 here"
    return cmd.model_copy(update={"alert": cmd.alert.model_copy(update={"summary": bad, "details": {"note": bad}})})


# ------------------------------------------------------------------ HTTP


@dataclass
class Received:
    method: str
    path: str
    path_qs: str
    headers: Mapping[str, str]  # case-insensitive, as HTTP headers are
    body: bytes


@dataclass
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None  # None: a JSON body fitting every HTTP channel
    hang_s: float = 0.0  # wait this long (or until the server stops) before answering


Script = Callable[[Received], Reply | Awaitable[Reply]]


class HttpPeer:
    """A real aiohttp server on 127.0.0.1 answering every request as ``script`` says."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.script: Script = lambda r: Reply()
        self._runner: web.AppRunner | None = None
        self._released = asyncio.Event()
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def answer(self, status: int = 200, headers: dict[str, str] | None = None,
               body: bytes | None = None, hang_s: float = 0.0) -> None:
        reply = Reply(status, headers or {}, body, hang_s)
        self.script = lambda r: reply

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        rec = Received(request.method, request.path, request.path_qs, CIMultiDict(request.headers),
                       await request.read())
        self.received.append(rec)
        reply = self.script(rec)
        if inspect.isawaitable(reply):
            reply = await reply
        assert isinstance(reply, Reply)
        if reply.hang_s:
            try:
                await asyncio.wait_for(self._released.wait(), reply.hang_s)
            except TimeoutError:
                pass
        body = reply.body
        headers = dict(reply.headers)
        if body is None and reply.status not in (204, 304):
            ok = 200 <= reply.status < 300
            # echo the path like a careless server would: secrets in it must still not leak
            payload: dict[str, Any] = {"ok": True, "result": {"message_id": 1}} if ok else {
                "ok": False, "error_code": reply.status,
                "description": f"status {reply.status} for {request.path_qs}"}
            body = json.dumps(payload).encode()
            headers.setdefault("Content-Type", "application/json")
        return web.Response(status=reply.status, headers=headers, body=body)

    async def start(self) -> HttpPeer:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server  # the bound port of port 0
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        self._released.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


def pagerduty_events_v2(routing_key: str) -> Script:
    """A script answering as PagerDuty's Events API v2 documents it (``POST /v2/enqueue``):
    202 ``{"status": "success", "message": "Event processed", "dedup_key": ...}`` for a valid
    event, 400 ``{"status": "invalid event", "message": "Event object is invalid", "errors":
    [...]}`` for one that breaks its rules: a 32-character routing key (this one), an
    ``event_action`` of trigger, acknowledge or resolve, a ``dedup_key`` of at most 255
    characters (required to acknowledge or resolve), and for a trigger a ``payload`` with a
    ``summary`` (at most 1024 characters), a ``source`` and a ``severity`` (critical, error,
    warning or info)."""

    def answer(req: Received) -> Reply:
        if req.method != "POST" or req.path != "/v2/enqueue":
            return Reply(404, {"Content-Type": "application/json"}, b'{"status": "not found"}')
        errors: list[str] = []
        try:
            event = json.loads(req.body)
        except ValueError:
            event = None
        if not isinstance(event, dict):
            errors.append("Event object is not JSON")
            event = {}
        key = event.get("routing_key")
        if not isinstance(key, str) or len(key) != 32:
            errors.append("Length of 'routing_key' is incorrect (should be 32 characters)")
        elif key != routing_key:
            errors.append("'routing_key' is not an integration key of this account")
        action = event.get("event_action")
        if action not in ("trigger", "acknowledge", "resolve"):
            errors.append("'event_action' is invalid (must be one of trigger, acknowledge, resolve)")
        dedup = event.get("dedup_key")
        if dedup is not None and (not isinstance(dedup, str) or len(dedup) > 255):
            errors.append("'dedup_key' is invalid (a string of at most 255 characters)")
        if action in ("acknowledge", "resolve") and not dedup:
            errors.append("'dedup_key' is required for acknowledge and resolve")
        if action == "trigger":
            payload = event.get("payload")
            if not isinstance(payload, dict):
                errors.append("'payload' is missing or not an object")
            else:
                summary = payload.get("summary")
                if not isinstance(summary, str) or not summary or len(summary) > 1024:
                    errors.append("'payload.summary' is missing or longer than 1024 characters")
                if not isinstance(payload.get("source"), str) or not payload["source"]:
                    errors.append("'payload.source' is missing")
                if payload.get("severity") not in ("critical", "error", "warning", "info"):
                    errors.append("'payload.severity' is invalid (critical, error, warning or info)")
        if errors:
            body = {"status": "invalid event", "message": "Event object is invalid", "errors": errors}
            return Reply(400, {"Content-Type": "application/json"}, json.dumps(body).encode())
        body = {"status": "success", "message": "Event processed", "dedup_key": dedup or "generated-dedup-key"}
        return Reply(202, {"Content-Type": "application/json"}, json.dumps(body).encode())

    return answer


class StreamingPeer:
    """A raw HTTP/1.1 server on 127.0.0.1 answering every request with ``status`` and a body of
    ``size`` bytes streamed in 64 KiB chunks (chunked, or with a Content-Length), as fast as
    the client reads; ``body`` replaces the generated bytes (a gzip bomb, say). ``written``
    counts the body bytes the client took before it hung up."""

    def __init__(self, status: int = 200, size: int = 50 * 1024 * 1024, chunked: bool = True,
                 headers: Mapping[str, str] | None = None, body: bytes | None = None) -> None:
        self.status, self.size, self.chunked = status, size, chunked
        self.headers = dict(headers or {})
        self.body = body
        self.written = 0
        self.requests = 0
        self.finished = asyncio.Event()  # a response ended (sent whole, or the client hung up)
        self._server: asyncio.Server | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                           if line.lower().startswith(b"content-length:")), 0)
            await reader.readexactly(length)
            self.requests += 1
            size = len(self.body) if self.body is not None else self.size
            framing = "Transfer-Encoding: chunked" if self.chunked else f"Content-Length: {size}"
            extra = "".join(f"{k}: {v}\r\n" for k, v in self.headers.items())
            writer.write(f"HTTP/1.1 {self.status} X\r\n{framing}\r\nConnection: close\r\n{extra}\r\n".encode())
            block = b"x" * 65536
            sent = 0
            while sent < size:
                piece = self.body[sent:sent + 65536] if self.body is not None else block[: size - sent]
                writer.write(b"%x\r\n%s\r\n" % (len(piece), piece) if self.chunked else piece)
                await writer.drain()
                sent += len(piece)
                self.written = max(self.written, sent)
            if self.chunked:
                writer.write(b"0\r\n\r\n")
            await writer.drain()
        except (ConnectionError, OSError, asyncio.IncompleteReadError):
            pass  # the client hung up: what it did not read is never produced
        finally:
            self.finished.set()
            writer.close()

    async def start(self) -> StreamingPeer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


# ------------------------------------------------------------------ SMTP


class SmtpHandler:
    """Keeps every message; ``rcpt_reply`` / ``data_reply`` script refusals (e.g. "550 ...")."""

    def __init__(self) -> None:
        self.messages: list[email.message.EmailMessage] = []
        self.envelopes: list[Envelope] = []
        self.rcpt_reply: str | None = None
        self.data_reply: str | None = None

    async def handle_RCPT(self, server: Any, session: Session, envelope: Envelope, address: str,
                          rcpt_options: list[str]) -> str:
        if self.rcpt_reply:
            return self.rcpt_reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:
        if self.data_reply:
            return self.data_reply
        self.envelopes.append(envelope)
        raw = envelope.original_content or envelope.content
        assert isinstance(raw, bytes)
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        self.messages.append(msg)  # type: ignore[arg-type]
        return "250 Message accepted for delivery"


class SmtpPeer:
    """A real aiosmtpd server on 127.0.0.1 (plain SMTP, AUTH allowed without TLS)."""

    def __init__(self, user: str | None = None, password: str | None = None, auth: bool = True) -> None:
        self.handler = SmtpHandler()
        self.user, self.password = user, password
        self.port = free_port()
        # without auth: no AUTH advertised (aiosmtpd wants TLS for it by default)
        kwargs: dict[str, Any] = {"authenticator": self._authenticate, "auth_require_tls": False} if auth else {}
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port, **kwargs)

    def _authenticate(self, server: Any, session: Session, envelope: Envelope, mechanism: str,
                      auth_data: Any) -> AuthResult:
        ok = (isinstance(auth_data, LoginPassword) and self.password is not None
              and auth_data.login.decode() == self.user and auth_data.password.decode() == self.password)
        return AuthResult(success=ok, handled=False)  # handled=False: the server answers 535

    def start(self) -> SmtpPeer:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()
