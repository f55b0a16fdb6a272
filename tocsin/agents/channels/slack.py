"""Slack channel: an incoming webhook, JSON with ``text`` (the notification fallback) and
``blocks`` (the message). The whole webhook URL is the secret; it never leaves this class.

Slack answers 200 ``ok``, 400 ``invalid_payload``, 403 ``action_prohibited``, 404
``channel_not_found``/``no_service``, 410 ``channel_is_archived`` (all permanent), 429 with
Retry-After, 5xx: the shared HTTP classification of ``HttpChannel``.
Limit: about one message per second per webhook (``default_rate_per_s``).

Alert text is escaped as Slack documents (``&``, ``<``, ``>``), so a summary can neither
mention (``<!channel>``, ``<!here>``, ``<!everyone>``, ``<@U…>``, ``<!subteam^…>``) nor link
(``<http://evil|click>``); a bare ``@channel``/``@here``/``@everyone`` gets a word joiner
(U+2060) after its ``@``. A destination whose routing file says ``allow_mentions = true``
keeps the summary's mention tokens live (links, fields and details stay escaped). Controls
and bidi overrides are dropped.
"""

from __future__ import annotations

import re
from typing import Any

import aiohttp

from ...schemas.codec import dumps
from ...schemas.messages import DeliveryCommand
from . import text as safe
from .base import DeliveryResult, payload_dict, redact_url, url_secrets
from .http import HttpChannel

SECTION_MAX = 3000  # Slack's limit on a section's text
FIELD_MAX = 2000  # on one field's text
FIELDS_MAX = 10  # fields per section
SEVERITY_MARK = {1: ":red_circle:", 2: ":large_orange_circle:", 3: ":white_circle:"}
WORD_JOINER = "\u2060"
#: Slack's mention tokens, kept live where mentions are allowed
MENTION = re.compile(r"<(?:!(?:channel|here|everyone)|!subteam\^[A-Za-z0-9]+|@[UW][A-Za-z0-9]+)(?:\|[^<>]*)?>")
_BARE_MENTION = re.compile(r"(?<![\w@.])@(?=(?:channel|here|everyone)\b)", re.IGNORECASE)


def _markup(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def escape(text: str, allow_mentions: bool = False) -> str:
    """Producer text for Slack mrkdwn: its control characters (``&``, ``<``, ``>``) escaped,
    its bare special mentions broken; with ``allow_mentions`` its mention tokens kept."""
    text = safe.plain(text)
    if not allow_mentions:
        return _BARE_MENTION.sub("@" + WORD_JOINER, _markup(text))
    out: list[str] = []
    last = 0
    for m in MENTION.finditer(text):
        out += [_markup(text[last:m.start()]), m.group(0)]
        last = m.end()
    out.append(_markup(text[last:]))
    return "".join(out)


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def render(command: DeliveryCommand, allow_mentions: bool = False) -> dict[str, Any]:
    """The Slack message of a notification: ``text`` plus ``blocks``."""
    a = command.alert
    base = payload_dict(command)
    text = escape(base["text"], allow_mentions)
    fields = [("Type", a.type), ("Severity", f"SEV{a.severity}"),
              *((k.replace("_", " ").capitalize(), v) for k, v in a.entity.model_dump(exclude_none=True).items()),
              ("Fingerprint", a.fingerprint)]
    if a.source:
        fields.append(("Source", a.source))
    if command.suppressed_count:
        fields.append(("Suppressed", f"{command.suppressed_count} similar since the last notification"))
    blocks: list[dict[str, Any]] = [
        {"type": "section",
         "text": {"type": "mrkdwn", "text": _cut(f"{SEVERITY_MARK[a.severity]} *{text}*", SECTION_MAX)}},
        {"type": "section",
         "fields": [{"type": "mrkdwn", "text": _cut(f"*{k}*\n{escape(str(v))}", FIELD_MAX)}
                    for k, v in fields[:FIELDS_MAX]]},
    ]
    if a.details:
        details = _cut(escape(dumps(a.details).decode()), SECTION_MAX - 6)
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": f"```{details}```"}})
    blocks.append({"type": "context", "elements": [
        {"type": "mrkdwn",
         "text": escape(f"{a.event_timestamp.isoformat()} · alert {a.alert_id} · delivery {command.delivery_id}")},
    ]})
    return {"text": text, "blocks": blocks}


class SlackChannel(HttpChannel):
    channel = "slack"
    default_rate_per_s = 1.0  # Slack: about one message per second per incoming webhook

    def __init__(self, destination: str, webhook_url: str, timeout_s: float = 10.0,
                 session: aiohttp.ClientSession | None = None) -> None:
        super().__init__(destination, timeout_s, session)
        self._url = webhook_url

    def secrets(self) -> list[str]:
        return url_secrets(self._url)

    def target(self) -> str:
        return f"POST {redact_url(self._url)}"

    def body(self, command: DeliveryCommand) -> bytes:
        return dumps(render(command, self.allow_mentions))

    async def send(self, command: DeliveryCommand) -> DeliveryResult:
        return await self.send_body(command, self._url)


__all__ = ["SlackChannel", "render", "escape"]
