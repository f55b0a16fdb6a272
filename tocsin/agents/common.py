"""What every agent shares: decoding a message's bytes, and keeping a bad one on the DLQ."""

from __future__ import annotations

import logging
from typing import Any

from ..schemas.codec import dumps, loads
from ..schemas.validate import raw_text

log = logging.getLogger(__name__)


def decode(value: Any) -> Any:
    """The JSON value of a message (bytes from a raw topic); ValueError when it is not JSON."""
    if isinstance(value, bytes | bytearray | memoryview | str):
        return loads(value)
    return value


def bad_message(ev: Any, error: str) -> bytes:
    """A DLQ entry for a message no agent could use: its bytes (text or base64), origin, error."""
    raw = ev.value
    if isinstance(raw, bytes | bytearray):
        text, enc = raw_text(bytes(raw))
        kept: Any = {"raw": text, "raw_encoding": enc}
    else:
        kept = {"raw": raw, "raw_encoding": "json"}
    return dumps({"error": error[:1000], **kept,
                  "source": {"topic": ev.message.topic, "partition": ev.message.partition,
                             "offset": ev.message.offset}})


async def keep_bad(rt: Any, ev: Any, error: str) -> None:
    """Log and keep a bad message on ``P.dlq``; never raises."""
    log.error("bad message at %s/%s@%s kept on the DLQ: %s", ev.message.topic, ev.message.partition,
              ev.message.offset, error[:300])
    try:
        key = ev.key if isinstance(ev.key, bytes) or ev.key is None else str(ev.key).encode()
        await rt.app.producer.send(rt.topics.dlq.get_topic_name(), key, bad_message(ev, error),
                                   None, None, None)
    except Exception:
        log.exception("could not keep the bad message on the DLQ")
