"""File channel: one JSON line per notification appended to a file (JSONL)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from ...decisions.retry import Reason
from ...schemas.codec import dumps
from ...schemas.messages import DeliveryCommand
from .base import ChannelBase, DeliveryResult, payload_dict


class FileChannel(ChannelBase):
    channel = "file"

    def __init__(self, destination: str, path: Path) -> None:
        super().__init__(destination)
        self.path = Path(path)
        self._lock = asyncio.Lock()

    def _append(self, line: bytes) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("ab") as fh:
            fh.write(line)

    async def send(self, command: DeliveryCommand) -> DeliveryResult:
        line = dumps(payload_dict(command)) + b"\n"
        try:
            async with self._lock:
                await asyncio.to_thread(self._append, line)
        except OSError as exc:
            return DeliveryResult(False, True, Reason.UNKNOWN, None, self.redact(f"{type(exc).__name__}: {exc}"))
        return DeliveryResult.success()
