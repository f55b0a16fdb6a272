"""Email channel: plain text and HTML through aiosmtplib, subject ``[SEV1] summary``."""

from __future__ import annotations

import html
from email.message import EmailMessage

import aiosmtplib

from ...decisions.retry import Reason, classify_smtp
from ...schemas.messages import DeliveryCommand
from .base import ChannelBase, DeliveryResult, payload_dict, summary_line


def render(command: DeliveryCommand, sender: str, to: list[str]) -> EmailMessage:
    a = command.alert
    body = payload_dict(command)
    msg = EmailMessage()
    msg["Subject"] = summary_line(command)
    msg["From"] = sender
    msg["To"] = ", ".join(to)
    msg["X-Tocsin-Delivery-Id"] = command.delivery_id
    msg["Message-ID"] = f"<{command.delivery_id}@tocsin>"
    lines = [
        body["text"],
        "",
        f"type:         {a.type}",
        f"severity:     SEV{a.severity}",
        f"time (UTC):   {a.event_timestamp.isoformat()}",
        f"fingerprint:  {a.fingerprint}",
        f"alert_id:     {a.alert_id}",
    ]
    for k, v in a.entity.model_dump(exclude_none=True).items():
        lines.append(f"{k + ':':<14}{v}")
    if a.source:
        lines.append(f"source:       {a.source}")
    if command.suppressed_count:
        lines.append(f"suppressed:   {command.suppressed_count} similar events since the last notification")
    if a.details:
        lines.append("")
        lines.append("details:")
        for k, v in a.details.items():
            lines.append(f"  {k}: {v}")
    lines += ["", f"delivery_id: {command.delivery_id}"]
    msg.set_content("\n".join(lines))
    rows = "".join(
        f"<tr><th align='left'>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>"
        for k, v in [("type", a.type), ("severity", f"SEV{a.severity}"),
                     ("time (UTC)", a.event_timestamp.isoformat()), ("fingerprint", a.fingerprint),
                     ("alert_id", a.alert_id), *a.entity.model_dump(exclude_none=True).items(),
                     *a.details.items()]
    )
    colour = {1: "#b00020", 2: "#e65100", 3: "#455a64"}[a.severity]
    msg.add_alternative(
        f"<html><body><h2 style='color:{colour}'>{html.escape(body['text'])}</h2>"
        f"<table>{rows}</table><p style='color:#888'>delivery_id {command.delivery_id}</p>"
        "</body></html>",
        subtype="html",
    )
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

    async def send(self, command: DeliveryCommand) -> DeliveryResult:
        msg = render(command, self.sender, self.to)
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
