"""Telegram channel: the Bot API's ``sendMessage`` (``{api_base}/bot{token}/sendMessage``,
JSON ``chat_id`` and ``text``). The API base is configurable (``TOCSIN_TELEGRAM_API_BASE``)
so tests and self-hosted Bot API servers can stand in for api.telegram.org.

The bot token sits in the URL path: it is kept in this class only and never appears in a
result's error, a log line or a repr (``HttpChannel`` redacts what it reports and logs).

Telegram answers ``{"ok": false, "error_code": ..., "description": ...}`` with 400 (bad
chat, too long), 401 (bad token), 403 (bot blocked) — permanent — and 429 with
``parameters.retry_after``, used when no Retry-After header came.
Limit: about one message per second per chat (``default_rate_per_s``).

The message is plain text (no ``parse_mode``): HTML (``<a href=...>``) and Markdown
(``[click](http://evil)``) in an alert are shown as typed, never as links, so there is no
markup to escape. What Telegram still finds in plain text is mentions: an ``@name`` of the
alert gets a word joiner (U+2060) after its ``@``, unless the routing file says
``allow_mentions = true`` for the destination (then the summary's mentions stay live). Controls and bidi overrides are dropped.
"""

from __future__ import annotations

import re
from typing import Any

import aiohttp

from ...schemas.codec import dumps
from ...schemas.messages import DeliveryCommand
from . import text as safe
from .base import DeliveryResult, payload_dict, redact_url
from .http import Answer, HttpChannel

TEXT_MAX = 4096  # Telegram's limit on a message's text
SEVERITY_MARK = {1: "\U0001F534", 2: "\U0001F7E0", 3: "\u26AA"}
WORD_JOINER = "\u2060"
_MENTION = re.compile(r"(?<![\w@])@(?=\w)")


def escape(text: str, allow_mentions: bool = False) -> str:
    """Producer text for a plain-text message: controls dropped, mentions broken unless allowed."""
    text = safe.plain(text)
    return text if allow_mentions else _MENTION.sub("@" + WORD_JOINER, text)


def render_text(command: DeliveryCommand, allow_mentions: bool = False) -> str:
    """Plain text (no parse mode, so nothing in an alert can break the markup)."""
    a = command.alert
    first = f"{SEVERITY_MARK[a.severity]} {escape(payload_dict(command)['text'], allow_mentions)}"
    lines = ["", f"type: {a.type}", f"fingerprint: {a.fingerprint}"]
    lines += [f"{k}: {v}" for k, v in a.entity.model_dump(exclude_none=True).items()]
    if a.source:
        lines.append(f"source: {a.source}")
    if command.suppressed_count:
        lines.append(f"suppressed: {command.suppressed_count} similar since the last notification")
    lines += [f"time (UTC): {a.event_timestamp.isoformat()}", f"alert_id: {a.alert_id}"]
    if a.details:
        lines += ["", dumps(a.details).decode()]
    text = first + "\n" + escape("\n".join(lines))
    return text if len(text) <= TEXT_MAX else text[: TEXT_MAX - 1] + "…"


class TelegramChannel(HttpChannel):
    channel = "telegram"
    default_rate_per_s = 1.0  # Telegram: about one message per second per chat

    def __init__(self, destination: str, bot_token: str, chat_id: str,
                 api_base: str = "https://api.telegram.org", timeout_s: float = 10.0,
                 session: aiohttp.ClientSession | None = None) -> None:
        super().__init__(destination, timeout_s, session)
        self._token = bot_token
        self.chat_id = chat_id
        self.api_base = api_base.rstrip("/")

    def secrets(self) -> list[str]:
        return [self._url, self._token] if self._token else []

    def target(self) -> str:
        return f"POST {redact_url(self._url)} (chat {self.chat_id})"

    @property
    def _url(self) -> str:
        return f"{self.api_base}/bot{self._token}/sendMessage"

    def body(self, command: DeliveryCommand) -> bytes:
        return dumps({
            "chat_id": self.chat_id,
            "text": render_text(command, self.allow_mentions),
            "link_preview_options": {"is_disabled": True},
        })

    def retry_after(self, resp: Answer, body: Any) -> float | None:
        header = super().retry_after(resp, body)
        if header is not None:
            return header
        params = body.get("parameters") if isinstance(body, dict) else None
        value = params.get("retry_after") if isinstance(params, dict) else None
        if isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value <= 3600:
            return float(value)
        return None

    def failure_text(self, resp: Answer, body: Any) -> str:
        if isinstance(body, dict) and isinstance(body.get("description"), str):
            text = f"HTTP {resp.status}: {body['description'][:200]}"
            params = body.get("parameters")
            if isinstance(params, dict) and "migrate_to_chat_id" in params:
                text += f" (chat migrated to {params['migrate_to_chat_id']})"
            return text
        return super().failure_text(resp, body)

    def rejected_2xx(self, resp: Answer, body: Any) -> str | None:
        if isinstance(body, dict) and body.get("ok") is False:
            return f"HTTP {resp.status}: {str(body.get('description', 'ok: false'))[:200]}"
        return None

    async def send(self, command: DeliveryCommand) -> DeliveryResult:
        return await self.send_body(command, self._url)


__all__ = ["TelegramChannel", "escape", "render_text"]
