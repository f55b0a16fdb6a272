"""What the views over a topic of versions share (silences.py, maintenance.py, preferences.py):
a 503 while this worker's view has not read its topic yet, and a write that answers once
this worker's view has read it back, so a query that follows sees it (core/follow.py).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from ..core.follow import READ_BACK_TIMEOUT_S, TopicView
from .answers import json_answer

log = logging.getLogger(__name__)

#: longest a request waits for the view to have read the topic (a worker just started)
LOADING_WAIT_S = 10.0


async def unavailable(view: TopicView, error: Any) -> Any | None:
    """A 503 answering ``error`` if ``view`` has still not read its topic after waiting
    ``LOADING_WAIT_S`` for it; None once it has."""
    if not view.loaded.is_set():
        try:
            await asyncio.wait_for(view.loaded.wait(), LOADING_WAIT_S)
        except TimeoutError:
            return json_answer(error, 503)
    return None


async def publish(producer: Any, view: TopicView, key: bytes, value: bytes) -> None:
    """``value`` on the view's topic, then read back by this worker's view (a warning if it is
    not within ``READ_BACK_TIMEOUT_S``)."""
    fut = await producer.send(view.topic, key, value, None, None, None)
    meta = await fut
    if not await view.read_back(meta.partition, meta.offset):
        log.warning("%s: %s@%s/%s not read back within %.0fs", view.what, view.topic, meta.partition, meta.offset,
                    READ_BACK_TIMEOUT_S)
