"""Webhook channel: JSON POST with the delivery id as ``Idempotency-Key``.

httpx's API over the ``httpx-aiohttp`` transport (pooled aiohttp connections), which
measured about 8x plain httpx here.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import time

import httpx
from httpx_aiohttp import AiohttpTransport

from ...decisions.retry import Reason, classify_http, parse_retry_after
from ...schemas.codec import dumps
from ...schemas.messages import DeliveryCommand
from .base import ChannelBase, DeliveryResult, payload_dict

USER_AGENT = "tocsin/0.1"


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """``X-Tocsin-Signature``: ``v1=`` + hex HMAC-SHA256 of ``timestamp + "." + body``."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "v1=" + mac.hexdigest()


def make_client(timeout_s: float, limit: int = 200) -> httpx.AsyncClient:
    import aiohttp

    def _session() -> aiohttp.ClientSession:
        return aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=limit, limit_per_host=limit, ttl_dns_cache=300),
        )

    transport = AiohttpTransport(client=_session)
    return httpx.AsyncClient(transport=transport, timeout=httpx.Timeout(timeout_s))


class WebhookChannel(ChannelBase):
    channel = "webhook"

    def __init__(self, destination: str, url: str, secret: str | None = None,
                 timeout_s: float = 10.0, client: httpx.AsyncClient | None = None) -> None:
        super().__init__(destination)
        self.url = url
        self.secret = secret
        self.timeout_s = timeout_s
        self._client = client

    def secrets(self) -> list[str]:
        return [s for s in (self.url, self.secret) if s]

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = make_client(self.timeout_s)
        return self._client

    def body(self, command: DeliveryCommand) -> bytes:
        return dumps(payload_dict(command))

    def headers(self, command: DeliveryCommand, body: bytes) -> dict[str, str]:
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "Idempotency-Key": command.delivery_id,
        }
        if self.secret:
            ts = str(int(time.time()))
            headers["X-Tocsin-Timestamp"] = ts
            headers["X-Tocsin-Signature"] = sign(self.secret, ts, body)
        return headers

    async def post(self, command: DeliveryCommand, body: bytes, headers: dict[str, str]) -> DeliveryResult:
        try:
            resp = await self.client.post(self.url, content=body, headers=headers)
        except httpx.TimeoutException as exc:
            return DeliveryResult(False, True, Reason.TIMEOUT, None, self.redact(f"timeout: {type(exc).__name__}"))
        except (httpx.TransportError, OSError) as exc:
            return DeliveryResult(False, True, Reason.CONNECTION, None,
                                  self.redact(f"connection error: {type(exc).__name__}: {exc}"))
        ok, retryable, reason = classify_http(resp.status_code)
        if ok:
            return DeliveryResult.success(resp.status_code)
        retry_after = parse_retry_after(resp.headers.get("Retry-After"), dt.datetime.now(dt.UTC))
        text = resp.text[:200] if resp.content else ""
        return DeliveryResult(False, retryable, reason, resp.status_code,
                              self.redact(f"HTTP {resp.status_code}: {text}".strip()), retry_after)

    async def send(self, command: DeliveryCommand) -> DeliveryResult:
        body = self.body(command)
        return await self.post(command, body, self.headers(command, body))

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
