"""Console channel: one line per notification on stdout. Always on.

The line is shown through ``text.terminal``: an alert's ANSI escapes, BEL, C1 controls, bidi
overrides and line breaks appear as visible escapes (``\\x1b[31m``, ``\\u202e``), so a
producer can neither drive the terminal nor split or reorder the line.
"""

from __future__ import annotations

import sys
from typing import TextIO

from ...schemas.messages import DeliveryCommand
from . import text
from .base import ChannelBase, DeliveryResult, payload_dict


def render(command: DeliveryCommand) -> str:
    a = command.alert
    when = a.event_timestamp.isoformat()
    body = payload_dict(command)
    return text.terminal(
        f"TOCSIN {when} {body['text']} "
        f"fingerprint={a.fingerprint} alert_id={a.alert_id} delivery_id={command.delivery_id}"
    )


class ConsoleChannel(ChannelBase):
    channel = "console"

    def __init__(self, destination: str = "console:default", stream: TextIO | None = None) -> None:
        super().__init__(destination)
        self._stream = stream

    def target(self) -> str:
        return "stdout"

    async def send(self, command: DeliveryCommand) -> DeliveryResult:
        try:
            line = render(command)
        except Exception as exc:  # noqa: BLE001 - whatever fails here fails every time
            return self.cannot_build(command, exc)
        print(line, file=self._stream or sys.stdout, flush=True)
        return DeliveryResult.success()
