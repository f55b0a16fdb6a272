"""Email channel: plain text and HTML through aiosmtplib, subject ``[SEV1] summary``.

Alert text is producer text: headers get it folded to one line (``text.header``: a summary
``"first\nsecond"`` is the subject ``[SEV1] first second``), the plain body keeps its line
breaks as ``\n`` with continuation lines indented under their field (``text.plain``), the
HTML body escapes every value. A message that still cannot be built (a sender or recipient
address the email library refuses, say) is a permanent ``invalid_message`` failure.
"""

from __future__ import annotations

import email.policy
import html
from email.message import EmailMessage

import aiosmtplib

from ...decisions.retry import Reason, classify_smtp
from ...schemas.messages import DeliveryCommand
from . import text
from .base import ChannelBase, DeliveryResult, payload_dict, summary_line

LABEL_WIDTH = 14


def _indented(value: object, indent: int) -> str:
    """Producer text as body lines: its line breaks kept, each further line indented, so it
    cannot pass for a line of ours (``fingerprint: ...``)."""
    return text.plain(str(value)).replace("\n", "\n" + " " * indent)


def _field(label: str, value: object, width: int = LABEL_WIDTH) -> str:
    """``label: value`` with the value's further lines indented under its first."""
    return f"{label:<{width}}{_indented(value, width)}"


def render(command: DeliveryCommand, sender: str, to: list[str]) -> EmailMessage:
    a = command.alert
    body = payload_dict(command)
    msg = EmailMessage()
    msg["Subject"] = text.header(summary_line(command))
    msg["From"] = sender
    msg["To"] = ", ".join(to)
    msg["X-Tocsin-Delivery-Id"] = text.header(command.delivery_id)
    msg["Message-ID"] = f"<{text.header(command.delivery_id)}@tocsin>"
    lines = [
        _indented(body["text"], 2),
        "",
        _field("type:", a.type),
        f"severity:     SEV{a.severity}",
        f"time (UTC):   {a.event_timestamp.isoformat()}",
        _field("fingerprint:", a.fingerprint),
        f"alert_id:     {a.alert_id}",
    ]
    for k, v in a.entity.model_dump(exclude_none=True).items():
        lines.append(_field(k + ":", v))
    if a.source:
        lines.append(_field("source:", a.source))
    if command.suppressed_count:
        lines.append(f"suppressed:   {command.suppressed_count} similar events since the last notification")
    if a.details:
        lines.append("")
        lines.append("details:")
        for k, v in a.details.items():
            key = f"  {text.header(str(k))}: "
            lines.append(_field(key, v, len(key)))
    lines += ["", f"delivery_id: {text.header(command.delivery_id)}"]
    msg.set_content("\n".join(lines))

    def cell(value: object) -> str:
        return html.escape(text.plain(str(value)))

    rows = "".join(
        f"<tr><th align='left'>{cell(k)}</th><td>{cell(v)}</td></tr>"
        for k, v in [("type", a.type), ("severity", f"SEV{a.severity}"),
                     ("time (UTC)", a.event_timestamp.isoformat()), ("fingerprint", a.fingerprint),
                     ("alert_id", a.alert_id), *a.entity.model_dump(exclude_none=True).items(),
                     *a.details.items()]
    )
    colour = {1: "#b00020", 2: "#e65100", 3: "#455a64"}[a.severity]
    msg.add_alternative(
        f"<html><body><h2 style='color:{colour}'>{cell(body['text'])}</h2>"
        f"<table>{rows}</table><p style='color:#888'>delivery_id {cell(command.delivery_id)}</p>"
        "</body></html>",
        subtype="html",
    )
    return msg


def build(command: DeliveryCommand, sender: str, to: list[str]) -> EmailMessage:
    """The message, checked to flatten as aiosmtplib will (headers and body encodable):
    raises what the email library raises for a message it cannot write."""
    msg = render(command, sender, to)
    msg.as_bytes(policy=email.policy.SMTPUTF8)
    return msg


class EmailChannel(ChannelBase):
    channel = "email"

    def __init__(self, destination: str, to: list[str], host: str, port: int | None,
                 sender: str, user: str | None = None, password: str | None = None,
                 tls: str = "starttls", timeout_s: float = 10.0) -> None:
        super().__init__(destination)
        self.to = to
        self.host = host
        self.port = port
        self.sender = sender
        self.user = user
        self.password = password
        self.tls = tls
        self.timeout_s = timeout_s

    def secrets(self) -> list[str]:
        return [self.password] if self.password else []

    def target(self) -> str:
        port = self.port or {"tls": 465, "starttls": 587}.get(self.tls, 25)  # aiosmtplib's defaults
        return f"SMTP {self.host}:{port} to {', '.join(self.to)}"

    async def send(self, command: DeliveryCommand) -> DeliveryResult:
        try:
            msg = build(command, self.sender, self.to)
        except Exception as exc:  # noqa: BLE001 - whatever fails here fails every time
            return self.cannot_build(command, exc)
        try:
            errors, _ = await aiosmtplib.send(
                msg,
                hostname=self.host,
                port=self.port,
                username=self.user,
                password=self.password,
                use_tls=self.tls == "tls",
                start_tls=True if self.tls == "starttls" else False,
                timeout=self.timeout_s,
            )
        except aiosmtplib.SMTPResponseException as exc:
            ok, retryable, reason = classify_smtp(exc.code)
            return DeliveryResult(False, retryable, reason, exc.code, self.redact(f"SMTP {exc.code}: {exc.message}"))
        except aiosmtplib.SMTPRecipientsRefused as exc:
            code = min((r.code for r in exc.recipients), default=550)
            ok, retryable, reason = classify_smtp(code)
            return DeliveryResult(False, retryable, reason, code, self.redact(f"recipients refused: {exc}"))
        except (aiosmtplib.SMTPTimeoutError, TimeoutError) as exc:
            return DeliveryResult(False, True, Reason.TIMEOUT, None, self.redact(f"timeout: {exc}"))
        except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPConnectError, OSError) as exc:
            return DeliveryResult(False, True, Reason.CONNECTION, None,
                                  self.redact(f"{type(exc).__name__}: {exc}"))
        except aiosmtplib.SMTPException as exc:
            # what is left is the server and our settings disagreeing (no STARTTLS, no AUTH,
            # no SMTPUTF8): retrying cannot help, the configuration must change
            return DeliveryResult(False, False, Reason.CONFIG, None,
                                  self.redact(f"{type(exc).__name__}: {exc}"))
        if errors:
            return DeliveryResult(False, True, Reason.SERVER_ERROR, None,
                                  self.redact(f"some recipients refused: {sorted(errors)}"))
        return DeliveryResult.success(250)
