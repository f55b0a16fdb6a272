"""HTTP for the channels that POST JSON (webhook, Slack, Telegram, PagerDuty).

``Transport`` POSTs over one aiohttp session: keep-alive connections (up to ``limit``, per
host too), no cookies, no redirects, no decompression by aiohttp. ``HttpChannel`` holds one
per channel and turns its answer, or its error, into a ``DeliveryResult``:

    2xx                          ok
    408, 429, 5xx, 1xx/3xx       retryable (429 and 503 carry Retry-After as retry_after_s)
    other 4xx                    permanent (client_error)
    timeout                      retryable (timeout)
    refused, reset, DNS,         retryable (connection)
      a malformed answer
    malformed URL                permanent (config)
    message cannot be built      permanent (invalid_message; breaker-neutral)

Each request waits ``timeout_s`` at most to connect, for each read and for a free connection,
and 1.5 x ``timeout_s`` in all: the channel is ``bounded`` (the delivery loop sets no timer of
its own around it).

A receiver's answer is read by chunks up to ``MAX_RESPONSE_BYTES`` (64 KiB) and no further:
a longer body is cut (the connection closed rather than drained), never an error. The
``Answer`` keeps the status, the headers and the body as received; the body is decoded only
when a channel asks for it to describe a failure (or to check a 2xx): a gzip or deflate
body inflated to the same bound, other codings not read. The URL's path, query and
credentials (Slack's and Telegram's tokens live there) never reach a result or a log line.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import zlib
from collections.abc import Mapping
from typing import Any, ClassVar

import aiohttp
import yarl

from ...decisions.retry import Reason, classify_http, parse_retry_after
from ...schemas.messages import DeliveryCommand
from .base import ChannelBase, DeliveryResult, redact

log = logging.getLogger(__name__)

USER_AGENT = "tocsin/0.1"
#: the most of a receiver's answer read (and, compressed, inflated): a delivery needs its
#: status and a short description, never more
MAX_RESPONSE_BYTES = 64 * 1024
#: characters no request URL may hold (aiohttp would drop them and reach another URL)
_CONTROLS = re.compile(r"[\x00-\x1f\x7f]")


# ------------------------------------------------------------------ logging


class _RedactUrls(logging.Filter):
    """Keep scheme and host of any URL in a record of the HTTP client's logger."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken record is not ours to fix
            return True
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, ()
        return True


_client_log = logging.getLogger("aiohttp.client")
if not any(isinstance(f, _RedactUrls) for f in _client_log.filters):
    _client_log.addFilter(_RedactUrls())


# ------------------------------------------------------------------ bounded answers


async def read_bounded(resp: aiohttp.ClientResponse, limit: int = MAX_RESPONSE_BYTES) -> tuple[bytes, bool]:
    """At most ``limit`` bytes of a response's body, read by chunks as they come: the bytes,
    and whether more was left unread."""
    content = resp.content
    chunks: list[bytes] = []
    size = 0
    while size < limit:
        chunk = await content.read(limit - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
        if content.at_eof():
            break
    return b"".join(chunks), size >= limit and not content.at_eof()


def decode_body(raw: bytes, coding: str | None, limit: int = MAX_RESPONSE_BYTES) -> bytes:
    """A body as received decoded to at most ``limit`` bytes: identity as it is, gzip and
    deflate by a bounded inflate (a 64 KiB gzip bomb stays 64 KiB); a coding that cannot be
    bounded here (br, zstd, a chain of codings) or a corrupt body gives no body."""
    c = (coding or "identity").strip().lower()
    if c == "identity":
        return raw[:limit]
    if c in ("gzip", "x-gzip"):
        wbits: tuple[int, ...] = (16 + zlib.MAX_WBITS,)
    elif c == "deflate":  # zlib-wrapped as the RFC says, or raw as some servers send it
        wbits = (zlib.MAX_WBITS, -zlib.MAX_WBITS)
    else:
        return b""
    for w in wbits:
        try:
            return zlib.decompressobj(w).decompress(raw, limit)
        except zlib.error:
            continue
    return b""


def _charset(content_type: str | None) -> str | None:
    for param in (content_type or "").split(";")[1:]:
        key, _, value = param.partition("=")
        if key.strip().lower() == "charset":
            return value.strip().strip("\"'") or None
    return None


class Answer:
    """A receiver's answer: its status, its headers as received (aiohttp's, case-insensitive)
    and its body as received (at most ``MAX_RESPONSE_BYTES``), decoded only when ``body``,
    ``text`` or ``json`` asks."""

    __slots__ = ("status", "headers", "raw", "_body")

    def __init__(self, status: int, headers: Mapping[str, str], raw: bytes) -> None:
        self.status = status
        self.headers = headers
        self.raw = raw
        self._body: bytes | None = None

    @property
    def body(self) -> bytes:
        """The body decoded (``Content-Encoding``), at most ``MAX_RESPONSE_BYTES``."""
        if self._body is None:
            self._body = decode_body(self.raw, self.headers.get("Content-Encoding"))
        return self._body

    @property
    def text(self) -> str:
        """The body as text: the ``Content-Type`` charset, else UTF-8; bad bytes replaced."""
        body = self.body
        try:
            return body.decode(_charset(self.headers.get("Content-Type")) or "utf-8", "replace")
        except LookupError:  # a charset Python does not know
            return body.decode("utf-8", "replace")

    def json(self) -> Any:
        """The body parsed as JSON, or None when it is empty, not said to be JSON, or not JSON."""
        body = self.body
        if not body or "json" not in self.headers.get("Content-Type", ""):
            return None
        try:
            return json.loads(body)
        except ValueError:
            return None


# ------------------------------------------------------------------ the transport


def parse_url(url: str) -> yarl.URL:
    """``url`` as a request goes to it; ``aiohttp.InvalidURL`` (its ``description`` saying
    why, without the URL) when none can: not http(s), no host, not a URL."""
    if _CONTROLS.search(url):
        raise aiohttp.InvalidURL(url, "the URL holds a control character")
    try:
        parsed = yarl.URL(url)
    except (TypeError, ValueError) as exc:
        raise aiohttp.InvalidURL(url, str(exc) or "not a URL") from None
    if parsed.scheme not in ("http", "https"):
        raise aiohttp.InvalidURL(url, f"unsupported protocol '{parsed.scheme}://'")
    if not parsed.host:
        raise aiohttp.InvalidURL(url, "the URL has no host")
    return parsed


class Transport:
    """POSTs over one aiohttp session: keep-alive connections (up to ``limit``, per host too),
    DNS answers kept 5 minutes, no cookies, no redirects. The session is opened at the first
    POST (inside the running loop); one given is used instead, and closed by ``close``."""

    def __init__(self, limit: int = 200, session: aiohttp.ClientSession | None = None) -> None:
        self.limit = limit
        self._session = session

    def _open(self) -> aiohttp.ClientSession:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self.limit, limit_per_host=self.limit, ttl_dns_cache=300),
            cookie_jar=aiohttp.DummyCookieJar(), auto_decompress=False,
        )
        return self._session

    async def post(self, url: yarl.URL, content: bytes, headers: Mapping[str, str],
                   timeout: aiohttp.ClientTimeout) -> Answer:
        """One POST of ``content`` with ``headers`` (aiohttp adds Host, Content-Length and
        its Accept headers). The answer is read up to ``MAX_RESPONSE_BYTES``; the connection
        goes back to the pool, or is closed when the body was cut. Raises what aiohttp
        raises: ``aiohttp.ClientError`` (``InvalidURL`` for a URL it cannot request),
        ``TimeoutError``, ``OSError``."""
        session = self._session
        if session is None or session.closed:
            session = self._open()
        async with session.post(url, data=content or None, headers=headers, allow_redirects=False,
                                auto_decompress=False, timeout=timeout) as resp:
            raw, cut = await read_bounded(resp)
            if cut:  # the rest is never read: the connection goes, not back to the pool
                resp.close()
        return Answer(resp.status, resp.headers, raw)

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()


def transport_reason(exc: BaseException) -> Reason:
    """Why a request got no answer: a timeout (aiohttp's timeouts are ``TimeoutError``s)
    or a connection failure (refused, reset, DNS, a malformed answer)."""
    return Reason.TIMEOUT if isinstance(exc, TimeoutError) else Reason.CONNECTION


# ------------------------------------------------------------------ the channels' base


class HttpChannel(ChannelBase):
    """Shared behaviour of the HTTP channels: a pooled transport and one classification.

    ``session``, when given, carries the requests instead of a session of the channel's own
    (the same timeouts and bounded reads apply); it is the channel's to close from then on."""

    #: whether this channel's receivers expect the Idempotency-Key header
    idempotency_header: ClassVar[bool] = False
    bounded = True

    def __init__(self, destination: str, timeout_s: float = 10.0,
                 session: aiohttp.ClientSession | None = None) -> None:
        super().__init__(destination)
        self.timeout_s = timeout_s
        self._transport = Transport(session=session)
        #: ``timeout_s`` to connect, for each read and for a free connection; 1.5 x
        #: ``timeout_s`` for the whole request (the delivery loop's deadline, kept by
        #: aiohttp's timer instead of one more of the loop's per send)
        self._timeout = aiohttp.ClientTimeout(total=timeout_s * 1.5, sock_connect=timeout_s,
                                              sock_read=timeout_s, connect=timeout_s)
        self._urls: dict[str, yarl.URL] = {}
        #: a channel whose 2xx can still say no (``rejected_2xx``); others stop at the status
        self._checks_2xx = type(self).rejected_2xx is not HttpChannel.rejected_2xx

    async def _post(self, url: str, content: bytes, headers: Mapping[str, str]) -> Answer:
        parsed = self._urls.get(url)
        if parsed is None:
            parsed = parse_url(url)
            if len(self._urls) < 1024:
                self._urls[url] = parsed
        return await self._transport.post(parsed, content, headers, self._timeout)

    def retry_after(self, resp: Answer, body: Any) -> float | None:
        """Seconds the receiver asked us to wait (the Retry-After header by default)."""
        return parse_retry_after(resp.headers.get("Retry-After"), dt.datetime.now(dt.UTC))

    def failure_text(self, resp: Answer, body: Any) -> str:
        return f"HTTP {resp.status}: {resp.text[:200]}".strip()

    def rejected_2xx(self, resp: Answer, body: Any) -> str | None:
        """A 2xx that still says no (Telegram's ``{"ok": false}``): the error, else None."""
        return None

    def body(self, command: DeliveryCommand) -> bytes:
        """The JSON body of ``command`` (each JSON channel renders its own)."""
        raise NotImplementedError

    async def send_body(self, command: DeliveryCommand, url: str) -> DeliveryResult:
        """POST ``self.body(command)`` to ``url``; a body that cannot be built fails for good."""
        try:
            body = self.body(command)
        except Exception as exc:  # noqa: BLE001 - whatever fails here fails every time
            return self.cannot_build(command, exc)
        headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT}
        return await self.post_json(url, body, headers, command)

    async def post_json(self, url: str, content: bytes, headers: Mapping[str, str],
                        command: DeliveryCommand) -> DeliveryResult:
        """POST ``content`` to ``url`` and classify the answer or the error (module docstring)."""
        try:
            resp = await self._post(url, content, headers)
        except aiohttp.InvalidURL as exc:
            why = f": {exc.description}" if exc.description else ""
            return self._failed(command, DeliveryResult(
                False, False, Reason.CONFIG, None, self.redact(f"bad destination URL{why}")))
        except (aiohttp.ClientError, OSError) as exc:  # TimeoutError is an OSError
            reason = transport_reason(exc)
            what = "timeout" if reason is Reason.TIMEOUT else "connection error"
            detail = str(exc) or type(exc).__name__
            return self._failed(command, DeliveryResult(
                False, True, reason, None, self.redact(f"{what}: {detail}")))
        if log.isEnabledFor(logging.DEBUG):  # the URL path may hold a token: scheme and host only
            log.debug("HTTP POST %s: %d", redact(url), resp.status)
        ok, retryable, reason = classify_http(resp.status)
        if ok and not self._checks_2xx:
            return DeliveryResult.success(resp.status)
        body = resp.json()
        if ok:
            refused = self.rejected_2xx(resp, body)
            if refused is None:
                return DeliveryResult.success(resp.status)
            return self._failed(command, DeliveryResult(
                False, False, Reason.CLIENT_ERROR, resp.status, self.redact(refused)))
        return self._failed(command, DeliveryResult(
            False, retryable, reason, resp.status,
            self.redact(self.failure_text(resp, body)), self.retry_after(resp, body)))

    def _failed(self, command: DeliveryCommand, result: DeliveryResult) -> DeliveryResult:
        log.debug("delivery failed destination=%s delivery_id=%s attempt=%s reason=%s "
                  "retryable=%s error=%s", self.destination, command.delivery_id, command.attempt,
                  result.reason.value, result.retryable, result.error)
        return result

    async def close(self) -> None:
        await self._transport.close()


__all__ = ["MAX_RESPONSE_BYTES", "USER_AGENT", "Answer", "HttpChannel", "Transport", "decode_body",
           "parse_url", "read_bounded", "transport_reason"]
