"""Webhook channel: the alert as JSON (``payload_dict``) POSTed to one URL, with the delivery
id as ``Idempotency-Key`` and, when the destination has a secret, signed (``signing.py``;
receivers verify with the recipe in ``SIGNING.md``). The POST and the classification of its
answer are ``HttpChannel``'s (``http.py``). Headers built from a command go through
``text.header`` (no line breaks, no controls).
"""

from __future__ import annotations

import time

import aiohttp

from ...schemas.codec import dumps
from ...schemas.messages import DeliveryCommand
from . import text
from .base import DeliveryResult, payload_dict, redact_url, url_secrets
from .http import USER_AGENT, HttpChannel
from .signing import sign


class WebhookChannel(HttpChannel):
    channel = "webhook"
    idempotency_header = True

    def __init__(self, destination: str, url: str, secret: str | None = None,
                 timeout_s: float = 10.0, session: aiohttp.ClientSession | None = None) -> None:
        super().__init__(destination, timeout_s, session)
        self.url = url
        self.secret = secret

    def secrets(self) -> list[str]:
        return [*url_secrets(self.url), *([self.secret] if self.secret else [])]

    def target(self) -> str:
        return f"POST {redact_url(self.url)}"

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


__all__ = ["WebhookChannel"]
