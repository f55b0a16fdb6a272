"""The channel protocol and the result every channel returns.

A channel is a small class behind one protocol: ``async send(command) -> DeliveryResult``.
It never raises for a delivery failure: the result says whether to retry and why, with a
redacted, cut error. Secrets (tokens, passwords, URLs with credentials) never appear in it.

A send is two steps: build the message (pure, from the command), then hand it to the
transport. A message that cannot be built fails the same way every time and never reached
the destination: ``cannot_build`` makes it a permanent ``invalid_message`` failure, which
the destination's circuit breaker ignores (``decisions.limits.breaker_outcome``). Alert text
reaches headers, bodies and terminals only through ``text`` (safe text).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, runtime_checkable
from urllib.parse import urlsplit

from ...decisions.retry import Reason
from ...decisions.windows import digest_text
from ...schemas.messages import DeliveryCommand

ERROR_MAX = 500


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    ok: bool
    retryable: bool
    reason: Reason
    status_code: int | None = None
    error: str | None = None
    retry_after_s: float | None = None

    @classmethod
    def success(cls, status_code: int | None = None) -> DeliveryResult:
        return cls(True, False, Reason.OK, status_code)


_URL_RE = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<rest>[^\s'\"<>]+)")


def redact_url(url: str) -> str:
    """Keep scheme, host and port; drop credentials, path, query (tokens live there)."""
    m = _URL_RE.match(url)
    if not m:
        return "<redacted>"
    rest = m.group("rest")
    host = rest.split("/", 1)[0].rsplit("@", 1)[-1]
    return f"{m.group('scheme')}{host}/…"


def mask(text: str, secrets: Iterable[str | None] = ()) -> str:
    """Every secret (of 4 characters or more) in ``text`` replaced by ``<redacted>``, the longest
    first; nothing else changed (a message's body, shown by ``tocsin route --dry-run``)."""
    out = text
    for s in sorted({s for s in secrets if s}, key=len, reverse=True):  # longest first
        if len(s) >= 4:
            out = out.replace(s, "<redacted>")
    return out


def redact(text: str, secrets: Iterable[str | None] = ()) -> str:
    """Remove every secret and every URL's path/credentials from a message, and cut it."""
    out = _URL_RE.sub(lambda m: redact_url(m.group(0)), mask(text, secrets))
    if len(out) > ERROR_MAX:
        out = out[: ERROR_MAX - 3] + "..."
    return out


def url_secrets(url: str | None) -> list[str]:
    """What of a URL must never be shown: all of it, its password and its path+query
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


@runtime_checkable
class Channel(Protocol):
    channel: ClassVar[str]
    destination: str

    async def send(self, command: DeliveryCommand) -> DeliveryResult: ...

    async def close(self) -> None: ...


class ChannelBase:
    """Shared behaviour; subclasses set ``channel`` and implement ``send``."""

    channel: ClassVar[str] = ""
    #: whether ``send`` keeps its own deadline (the delivery loop then sets no timer around it)
    bounded: bool = False
    #: sensible default rate limit (messages per second) from the service's published limits
    default_rate_per_s: ClassVar[float | None] = None
    #: whether an alert's mentions (Slack ``<!channel>``, Telegram ``@user``) stay live: the
    #: routing file's ``allow_mentions`` for this destination (``build_channels`` sets it)
    allow_mentions: bool = False

    def __init__(self, destination: str) -> None:
        self.destination = destination

    def secrets(self) -> list[str]:
        return []

    def target(self) -> str:
        """Where this destination's messages go, as it may be shown (no secret in it)."""
        return self.destination

    def redact(self, text: str) -> str:
        return redact(text, self.secrets())

    def cannot_build(self, command: DeliveryCommand, exc: BaseException) -> DeliveryResult:
        """The result of a message this channel cannot build from ``command``: permanent
        (retrying builds it the same way) and breaker-neutral (nothing was sent)."""
        return DeliveryResult(False, False, Reason.INVALID_MESSAGE, None,
                              self.redact(f"cannot build the message: {type(exc).__name__}: {exc}"))

    async def close(self) -> None:
        return None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.destination}>"


def env_lookup(dest_conf: Mapping[str, str], key: str, env: Mapping[str, str]) -> str | None:
    """A destination's setting from the environment variable the routing file names."""
    var = dest_conf.get(f"{key}_env")
    if not var:
        return None
    value = env.get(var)
    return value or None


def summary_line(command: DeliveryCommand) -> str:
    a = command.alert
    if command.digest is not None:  # every channel's headline (and an email's subject)
        what = digest_text(a.type, a.entity.model_dump(exclude_none=True), command.suppressed_count,
                           command.digest.window_s)
        return f"[SEV{a.severity}] DIGEST {what}: {a.summary}"
    return f"[SEV{a.severity}] {a.summary}"


def payload_dict(command: DeliveryCommand) -> dict[str, Any]:
    """The JSON body of a webhook: the alert, the delivery id, the suppressed count and text
    (and, for a digest of a throttle window, the window)."""
    a = command.alert
    text = summary_line(command)
    if command.suppressed_count and command.digest is None:
        text += f" ({command.suppressed_count} similar suppressed)"
    if a.is_recovery:
        text = "RESOLVED " + text
    body = {
        "text": text,
        "delivery_id": command.delivery_id,
        "dedupe_key": command.dedupe_key,
        "suppressed_count": command.suppressed_count,
        "attempt": command.attempt,
        "receiver": command.receiver,
        "alert": a.model_dump(mode="json"),
    }
    if command.digest is not None:
        body["digest"] = {"window_start": command.digest.window_start.isoformat().replace("+00:00", "Z"),
                          "window_s": command.digest.window_s, "count": command.suppressed_count}
    return body
