"""Webhook channel: JSON POST with the delivery id as ``Idempotency-Key``, optionally signed.

Also the shared HTTP machinery of every HTTP channel (webhook, Slack, Telegram):
``HttpChannel`` holds one pooled transport per channel (httpx's transport API over
aiohttp connections, ``httpx-aiohttp``, which measured about 8x plain httpx here) and turns
a response or a transport error into a ``DeliveryResult``. A delivery is one POST with no
redirects, cookies or auth flow, so it goes to the transport directly: httpx's
``AsyncClient`` layers above it cost about 70 µs a request here (a third of the send).
``PooledTransport`` (an httpx transport, also behind ``make_client``) does once what
httpx-aiohttp's did per request (timeouts, URL parsing, header conversion, a chunked read),
and its ``post`` takes the URL, body and headers as they are, without an ``httpx.Request``:
together about 50 µs of the worker's 270 a delivery (``tocsin bench --only delivery``). The
answer is an ``httpx.Response`` whose body is decoded only when a failure is described.

    2xx                      ok
    408, 429, 5xx, 1xx/3xx   retryable (429 and 503 carry Retry-After as retry_after_s)
    other 4xx                permanent (client_error)
    timeout                  retryable (timeout)
    refused, reset, DNS      retryable (connection)
    malformed URL            permanent (config)
    message cannot be built  permanent (invalid_message; breaker-neutral)

A receiver's answer is read by chunks up to ``MAX_RESPONSE_BYTES`` (64 KiB) and no further:
a longer body is cut (the connection closed rather than drained), never an error; a gzip or
deflate body is inflated to the same bound (other codings are not read). Headers built from
a command go through ``text.header`` (no line breaks, no controls).

Receivers verify signatures with the recipe in ``SIGNING.md`` (``verify`` below).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import logging
import math
import time
import zlib
from collections.abc import Mapping
from typing import Any, ClassVar
from urllib.parse import urlsplit

import aiohttp
import httpx
import yarl
from httpx_aiohttp import AiohttpTransport
from httpx_aiohttp.transport import map_aiohttp_exceptions

from ...decisions.retry import Reason, classify_http, parse_retry_after
from ...schemas.codec import dumps
from ...schemas.messages import DeliveryCommand
from . import text
from .base import ChannelBase, DeliveryResult, payload_dict, redact

log = logging.getLogger(__name__)

USER_AGENT = "tocsin/0.1"
SIGNATURE_TOLERANCE_S = 300
#: the most of a receiver's answer read (and, compressed, inflated): a delivery needs its
#: status and a short description, never more
MAX_RESPONSE_BYTES = 64 * 1024
#: headers that describe the body as received, dropped once the body is decoded or cut
_BODY_HEADERS = (b"content-encoding", b"content-length")


# ------------------------------------------------------------------ signing


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """``X-Tocsin-Signature``: ``v1=`` + hex HMAC-SHA256 of ``timestamp + "." + body``."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "v1=" + mac.hexdigest()


def verify(secret: str, timestamp: str, body: bytes | str, signature: str, now: float,
           tolerance_s: float = SIGNATURE_TOLERANCE_S) -> bool:
    """The receiver's check (SIGNING.md): the signature is ours and the timestamp fresh.

    ``timestamp`` and ``signature`` are the ``X-Tocsin-Timestamp`` and
    ``X-Tocsin-Signature`` headers as received, ``body`` the raw request body, ``now``
    the receiver's clock in epoch seconds. Constant-time comparison; never raises.
    """
    if not isinstance(timestamp, str) or not isinstance(signature, str):
        return False
    try:
        sent = int(timestamp)
    except ValueError:
        return False
    if not math.isfinite(now) or abs(now - sent) > tolerance_s:
        return False
    raw = body.encode() if isinstance(body, str) else bytes(body)
    expected = sign(secret, timestamp, raw)
    return hmac.compare_digest(expected.encode(), signature.encode("utf-8", "replace"))


# ------------------------------------------------------------------ logging

class _RedactUrls(logging.Filter):
    """httpx logs every request with its full URL (``HTTP Request: POST https://...``):
    Telegram's token and Slack's webhook secret live in URL paths. Keep scheme and host."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken record is not ours to fix
            return True
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, ()
        return True


_FILTER = _RedactUrls()
for _name in ("httpx", "aiohttp.client"):
    if not any(isinstance(f, _RedactUrls) for f in logging.getLogger(_name).filters):
        logging.getLogger(_name).addFilter(_FILTER)


# ------------------------------------------------------------------ bounded bodies


async def read_bounded(resp: aiohttp.ClientResponse, limit: int = MAX_RESPONSE_BYTES) -> tuple[bytes, bool]:
    """At most ``limit`` bytes of a response's body, read by chunks as they come: the bytes,
    and whether more was left unread."""
    chunks: list[bytes] = []
    size = 0
    while size < limit:
        chunk = await resp.content.read(limit - size)
        if not chunk:
            return b"".join(chunks), False
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks), not resp.content.at_eof()


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


def _without_body_headers(headers: Any) -> list[tuple[bytes, bytes]]:
    return [(k, v) for k, v in headers if k.lower() not in _BODY_HEADERS]


# ------------------------------------------------------------------ the shared HTTP client


class PooledTransport(AiohttpTransport):
    """httpx-aiohttp's transport with its per-request work done once: one aiohttp session
    (keep-alive, ``limit`` connections per host), the timeouts and each URL converted once,
    the body read in one call. Same exception mapping (aiohttp errors become httpx's, the
    aiohttp error kept as ``__cause__``), same ``httpx.Request`` in, ``httpx.Response`` out."""

    def __init__(self, limit: int = 200) -> None:
        def session() -> aiohttp.ClientSession:
            return aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=limit, limit_per_host=limit, ttl_dns_cache=300),
            )

        super().__init__(client=session)
        self._timeouts: dict[tuple[Any, ...], aiohttp.ClientTimeout] = {}
        self._urls: dict[httpx.URL, yarl.URL] = {}

    def timeout(self, connect: float | None, read: float | None, pool: float | None) -> aiohttp.ClientTimeout:
        """httpx's timeouts as aiohttp's (as httpx-aiohttp maps them), made once."""
        key = (connect, read, pool)
        timeout = self._timeouts.get(key)
        if timeout is None:
            timeout = self._timeouts[key] = aiohttp.ClientTimeout(sock_connect=connect, sock_read=read,
                                                                  connect=pool)
        return timeout

    def _url(self, url: httpx.URL) -> yarl.URL:
        parsed = self._urls.get(url)
        if parsed is None:
            parsed = yarl.URL(str(url), encoded=True)
            if len(self._urls) < 1024:
                self._urls[url] = parsed
        return parsed

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        t = request.extensions.get("timeout") or {}
        return await self._send(request.method, self._url(request.url), request.content,
                                request.headers.multi_items(), self.timeout(t.get("connect"), t.get("read"),
                                                                            t.get("pool")), request)

    async def post(self, url: yarl.URL, content: bytes, headers: Mapping[str, str],
                   timeout: aiohttp.ClientTimeout) -> httpx.Response:
        """One POST without an ``httpx.Request``: building one, and handing its normalized
        headers back to aiohttp, cost about 20 µs a delivery in the delivery loop, a tenth of
        the worker's time per delivery (``tocsin bench``). Same exceptions, same response."""
        return await self._send("POST", url, content, headers, timeout, None)

    async def _send(self, method: str, url: yarl.URL, content: bytes, headers: Any,
                    timeout: aiohttp.ClientTimeout, request: httpx.Request | None) -> httpx.Response:
        if not isinstance(self.client, aiohttp.ClientSession):
            self.client = self.get_client()
        with map_aiohttp_exceptions():
            async with self.client.request(
                method, url, headers=headers, data=content or None, allow_redirects=False,
                auto_decompress=False, compress=False, timeout=timeout,
            ) as resp:
                body, cut = await read_bounded(resp)
                if cut:  # the rest is never read: the connection goes, not back to the pool
                    resp.close()
        answer: Any = resp.raw_headers
        coding = resp.headers.get("Content-Encoding")
        if cut or coding is not None:
            body = decode_body(body, coding)
            answer = _without_body_headers(answer)
        # the connection is back in the pool (or closed); the body is in memory, at most 64 KiB
        return httpx.Response(resp.status, headers=answer, stream=httpx.ByteStream(body),
                              request=request, extensions={"http_version": b"HTTP/1.1"})


def make_transport(limit: int = 200) -> PooledTransport:
    """A pooled httpx transport over aiohttp connections (keep-alive, ``limit`` per host)."""
    return PooledTransport(limit)


def make_client(timeout_s: float, limit: int = 200) -> httpx.AsyncClient:
    """A pooled client: httpx's API over aiohttp connections (keep-alive, ``limit`` per host)."""
    return httpx.AsyncClient(transport=make_transport(limit), timeout=httpx.Timeout(timeout_s))


def url_secrets(url: str | None) -> list[str]:
    """What of a URL must never be shown: all of it, its credentials and its path+query
    (Slack's and Telegram's tokens live in the path)."""
    if not url:
        return []
    out = [url]
    try:
        parts = urlsplit(url)
    except ValueError:
        return out
    if parts.password:
        out.append(parts.password)
    tail = parts.path + ("?" + parts.query if parts.query else "")
    if len(tail) >= 8:
        out.append(tail)
    return out


def transport_reason(exc: BaseException) -> Reason:
    """Timeout or connection failure. httpx-aiohttp maps every aiohttp connection error
    (refused included) to ``httpx.ConnectTimeout``, so look at the aiohttp cause."""
    seen: set[int] = set()
    cur: BaseException | None = exc.__cause__
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, TimeoutError):
            return Reason.TIMEOUT
        if isinstance(cur, OSError | ConnectionError) or type(cur).__module__.startswith("aiohttp"):
            return Reason.CONNECTION
        cur = cur.__cause__ or cur.__context__
    if isinstance(exc, httpx.TimeoutException | TimeoutError):
        return Reason.TIMEOUT
    return Reason.CONNECTION


class HttpChannel(ChannelBase):
    """Shared behaviour of the HTTP channels: a pooled client and one classification."""

    #: whether this channel's receivers expect the Idempotency-Key header
    idempotency_header: ClassVar[bool] = False

    def __init__(self, destination: str, timeout_s: float = 10.0,
                 client: httpx.AsyncClient | None = None) -> None:
        super().__init__(destination)
        self.timeout_s = timeout_s
        self._client = client  # given: requests go through it; else through the transport
        self._transport: PooledTransport | None = None
        #: httpx.Timeout(timeout_s) as the transport maps it, and a deadline for the whole
        #: request (the delivery loop's own, 1.5 x the channel's timeout, without a timer of its
        #: own per send: about 7 µs a delivery); a caller's client keeps the loop's deadline
        self._aio_timeout = aiohttp.ClientTimeout(total=timeout_s * 1.5, sock_connect=timeout_s,
                                                  sock_read=timeout_s, connect=timeout_s)
        self.bounded = client is None
        self._urls: dict[str, yarl.URL] = {}
        #: a channel whose 2xx can still say no (``rejected_2xx``); others stop at the status
        self._checks_2xx = type(self).rejected_2xx is not HttpChannel.rejected_2xx

    async def _post(self, url: str, content: bytes, headers: dict[str, str]) -> httpx.Response:
        if self._client is not None:
            return await self._post_through_client(self._client, url, content, headers)
        parsed = self._urls.get(url)
        if parsed is None:
            u = httpx.URL(url)  # as httpx would parse and check it
            if u.scheme not in ("http", "https"):
                raise httpx.UnsupportedProtocol(f"Request URL has an unsupported protocol '{u.scheme}://'.")
            if not u.host:
                raise httpx.InvalidURL("Request URL is missing a host.")
            parsed = yarl.URL(str(u), encoded=True)
            if len(self._urls) < 1024:
                self._urls[url] = parsed
        if self._transport is None:
            self._transport = make_transport()
        return await self._transport.post(parsed, content, headers, self._aio_timeout)

    @staticmethod
    async def _post_through_client(client: httpx.AsyncClient, url: str, content: bytes,
                                   headers: dict[str, str]) -> httpx.Response:
        """A caller's client, its answer read as the transport reads one (bounded)."""
        async with client.stream("POST", url, content=content, headers=headers) as resp:
            raw = b""
            async for chunk in resp.aiter_raw():
                raw += chunk[: MAX_RESPONSE_BYTES - len(raw)]
                if len(raw) >= MAX_RESPONSE_BYTES:
                    break
        body = decode_body(raw, resp.headers.get("Content-Encoding"))
        return httpx.Response(resp.status_code, headers=_without_body_headers(resp.headers.raw),
                              content=body, request=resp.request)

    def retry_after(self, resp: httpx.Response, body: Any) -> float | None:
        """Seconds the receiver asked us to wait (the Retry-After header by default)."""
        return parse_retry_after(resp.headers.get("Retry-After"), dt.datetime.now(dt.UTC))

    def failure_text(self, resp: httpx.Response, body: Any) -> str:
        text = resp.text[:200] if resp.content else ""
        return f"HTTP {resp.status_code}: {text}".strip()

    def rejected_2xx(self, resp: httpx.Response, body: Any) -> str | None:
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

    async def post_json(self, url: str, content: bytes, headers: dict[str, str],
                        command: DeliveryCommand) -> DeliveryResult:
        try:
            resp = await self._post(url, content, headers)
        except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
            return self._failed(command, DeliveryResult(
                False, False, Reason.CONFIG, None, self.redact(f"bad destination URL: {exc}")))
        except (httpx.TransportError, OSError) as exc:
            reason = transport_reason(exc)
            what = "timeout" if reason is Reason.TIMEOUT else "connection error"
            detail = str(exc) or type(exc).__name__
            return self._failed(command, DeliveryResult(
                False, True, reason, None, self.redact(f"{what}: {detail}")))
        if log.isEnabledFor(logging.DEBUG):  # the URL path may hold a token: scheme and host only
            log.debug("HTTP POST %s: %d", redact(url), resp.status_code)
        ok, retryable, reason = classify_http(resp.status_code)
        if ok and not self._checks_2xx:
            return DeliveryResult.success(resp.status_code)
        await resp.aread()  # only now: decoding a body costs about 6 µs
        body = _json_or_none(resp)
        if ok:
            refused = self.rejected_2xx(resp, body)
            if refused is None:
                return DeliveryResult.success(resp.status_code)
            return self._failed(command, DeliveryResult(
                False, False, Reason.CLIENT_ERROR, resp.status_code, self.redact(refused)))
        return self._failed(command, DeliveryResult(
            False, retryable, reason, resp.status_code,
            self.redact(self.failure_text(resp, body)), self.retry_after(resp, body)))

    def _failed(self, command: DeliveryCommand, result: DeliveryResult) -> DeliveryResult:
        log.debug("delivery failed destination=%s delivery_id=%s attempt=%s reason=%s "
                  "retryable=%s error=%s", self.destination, command.delivery_id, command.attempt,
                  result.reason.value, result.retryable, result.error)
        return result

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
        if self._transport is not None:
            await self._transport.aclose()
            self._transport = None


def _json_or_none(resp: httpx.Response) -> Any:
    if not resp.content or "json" not in resp.headers.get("Content-Type", ""):
        return None
    try:
        return resp.json()
    except ValueError:
        return None


# ------------------------------------------------------------------ the webhook


class WebhookChannel(HttpChannel):
    channel = "webhook"
    idempotency_header = True

    def __init__(self, destination: str, url: str, secret: str | None = None,
                 timeout_s: float = 10.0, client: httpx.AsyncClient | None = None) -> None:
        super().__init__(destination, timeout_s, client)
        self.url = url
        self.secret = secret

    def secrets(self) -> list[str]:
        return [*url_secrets(self.url), *([self.secret] if self.secret else [])]

    def body(self, command: DeliveryCommand) -> bytes:
        return dumps(payload_dict(command))

    def headers(self, command: DeliveryCommand, body: bytes, now: float | None = None) -> dict[str, str]:
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "Idempotency-Key": text.header(command.delivery_id),
        }
        if self.secret:
            ts = str(int(time.time() if now is None else now))
            headers["X-Tocsin-Timestamp"] = ts
            headers["X-Tocsin-Signature"] = sign(self.secret, ts, body)
        return headers

    async def post(self, command: DeliveryCommand, body: bytes, headers: dict[str, str]) -> DeliveryResult:
        return await self.post_json(self.url, body, headers, command)

    async def send(self, command: DeliveryCommand) -> DeliveryResult:
        try:
            body = self.body(command)
            headers = self.headers(command, body)
        except Exception as exc:  # noqa: BLE001 - whatever fails here fails every time
            return self.cannot_build(command, exc)
        return await self.post(command, body, headers)


__all__ = ["HttpChannel", "MAX_RESPONSE_BYTES", "PooledTransport", "WebhookChannel", "decode_body", "make_client",
           "make_transport", "read_bounded", "sign", "verify", "transport_reason", "url_secrets", "USER_AGENT"]
