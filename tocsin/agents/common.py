"""What every agent shares: decoding a message's bytes, and keeping a bad one on the DLQ."""

from __future__ import annotations

import logging
from typing import Any

from ..errors import RecordRefused
from ..schemas.codec import dumps, loads
from ..schemas.validate import raw_text

log = logging.getLogger(__name__)


def decode(value: Any) -> Any:
    """The JSON value of a message (bytes from a raw topic); ValueError when it is not JSON."""
    if isinstance(value, bytes | bytearray | memoryview | str):
        return loads(value)
    return value


def bad_message(ev: Any, error: str, keep_raw: bool = True) -> bytes:
    """A DLQ entry for a message no agent could use: its bytes (text or base64), origin, error;
    without ``keep_raw``, only the bytes' size (for when the entry with them was refused)."""
    raw = ev.value
    kept: Any
    if not keep_raw:
        size = len(raw) if isinstance(raw, bytes | bytearray) else None
        kept = {"raw": "", "raw_encoding": "text", "raw_truncated": True, "raw_size": size}
    elif isinstance(raw, bytes | bytearray):
        text, enc = raw_text(bytes(raw))
        kept = {"raw": text, "raw_encoding": enc}
    else:
        kept = {"raw": raw, "raw_encoding": "json"}
    return dumps({"error": error[:1000], **kept,
                  "source": {"topic": ev.message.topic, "partition": ev.message.partition,
                             "offset": ev.message.offset}})


async def keep_bad(rt: Any, ev: Any, error: str) -> None:
    """Log and keep a bad message on ``P.dlq``, acknowledged by the broker before this returns
    (the caller acknowledges the message only then: agents/outbox.py). An entry refused for
    good (too large) is kept without the message's bytes. Raises only ``OutboxStopped``: the
    worker stopped first, and the message stays unacknowledged, to be read again."""
    log.error("bad message at %s/%s@%s kept on the DLQ: %s", ev.message.topic, ev.message.partition,
              ev.message.offset, error[:300])
    key = ev.key if isinstance(ev.key, bytes) or ev.key is None else str(ev.key).encode()
    dlq = rt.topics.dlq.get_topic_name()
    try:
        await rt.outbox.send(dlq, key, bad_message(ev, error))
        return
    except RecordRefused as exc:
        log.error("the DLQ entry of %s/%s@%s was refused for good (%s); kept without the message's bytes",
                  ev.message.topic, ev.message.partition, ev.message.offset, exc)
    try:
        await rt.outbox.send(dlq, key[:1024] if key else key, bad_message(ev, error, keep_raw=False))
    except RecordRefused:
        log.exception("the bad message at %s/%s@%s could not be kept on the DLQ at all", ev.message.topic,
                      ev.message.partition, ev.message.offset)
