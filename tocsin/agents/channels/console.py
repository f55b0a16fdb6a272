"""Console channel: one line per notification on stdout. Always on."""

from __future__ import annotations

import sys
from typing import TextIO

from ...schemas.messages import DeliveryCommand
from .base import ChannelBase, DeliveryResult, payload_dict


class ConsoleChannel(ChannelBase):
    channel = "console"

    def __init__(self, destination: str = "console:default", stream: TextIO | None = None) -> None:
        super().__init__(destination)
        self._stream = stream

    async def send(self, command: DeliveryCommand) -> DeliveryResult:
        a = command.alert
        body = payload_dict(command)
        stream = self._stream or sys.stdout
        print(
            f"TOCSIN {a.event_timestamp.isoformat()} {body['text']} "
            f"fingerprint={a.fingerprint} alert_id={a.alert_id} delivery_id={command.delivery_id}",
            file=stream,
            flush=True,
        )
        return DeliveryResult.success()
