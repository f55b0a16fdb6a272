"""File channel: one JSON line per notification appended to a file (JSONL).

orjson escapes the C0 controls in strings; ``text.json_line`` escapes the rest of what a
terminal or ``str.splitlines`` would act on (C1, DEL, U+2028/U+2029, bidi overrides), so each
notification is exactly one line, safe to ``cat`` or ``tail -f``, and decodes to the same value.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from ...decisions.retry import Reason
from ...schemas.codec import dumps
from ...schemas.messages import DeliveryCommand
from . import text
from .base import ChannelBase, DeliveryResult, payload_dict


def line(command: DeliveryCommand) -> bytes:
    """The line appended for a notification: its webhook payload as one safe JSON line."""
    return text.json_line(dumps(payload_dict(command))) + b"\n"


class FileChannel(ChannelBase):
    channel = "file"

    def __init__(self, destination: str, path: Path) -> None:
        super().__init__(destination)
        self.path = Path(path)
        self._lock = asyncio.Lock()

    def target(self) -> str:
        return f"append to {self.path}"

    def _append(self, line: bytes) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("ab") as fh:
            fh.write(line)

    async def send(self, command: DeliveryCommand) -> DeliveryResult:
        try:
            data = line(command)
        except Exception as exc:  # noqa: BLE001 - whatever fails here fails every time
            return self.cannot_build(command, exc)
        try:
            async with self._lock:
                await asyncio.to_thread(self._append, data)
        except OSError as exc:
            return DeliveryResult(False, True, Reason.UNKNOWN, None, self.redact(f"{type(exc).__name__}: {exc}"))
        return DeliveryResult.success()
