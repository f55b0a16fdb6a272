"""The delivery agent's queue: SEV1 first, then arrival order; no wake-up lost."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from tocsin.agents.deliver import Dispatcher, priority


def dispatcher(read_ahead: int = 100) -> Dispatcher:
    rt: Any = SimpleNamespace(settings=SimpleNamespace(delivery_read_ahead=read_ahead, delivery_concurrency=1))
    return Dispatcher(rt, "webhook", limits=None)  # type: ignore[arg-type]


@pytest.mark.parametrize(("data", "expected"), [
    ({"alert": {"severity": 1}}, 1),
    ({"alert": {"severity": 3}}, 3),
    ({"alert": {"severity": "SEV2"}}, 2),
    ({"alert": {"severity": 7}}, 0),
    ({"alert": {}}, 0),
    ({}, 0),
    ([1, 2], 0),
    ("text", 0),
    (None, 0),
])
def test_priority(data: Any, expected: int) -> None:
    assert priority(data) == expected


async def test_sev1_first_then_arrival_order() -> None:
    d = dispatcher()
    for prio, name in [(3, "a"), (2, "b"), (3, "c"), (1, "d"), (0, "bad"), (1, "e")]:
        await d.submit(prio, name)
    assert [await d.take() for _ in range(6)] == ["bad", "d", "e", "b", "a", "c"]
    assert d.space.value == 100 - 6  # released by the sender once handled, not by take


async def test_waiting_senders_are_woken_one_per_command() -> None:
    d = dispatcher()
    takers = [asyncio.ensure_future(d.take()) for _ in range(3)]
    await asyncio.sleep(0)
    await d.submit(2, "x")
    await d.submit(2, "y")
    done, pending = await asyncio.wait(takers, timeout=0.2)
    assert sorted(t.result() for t in done) == ["x", "y"] and len(pending) == 1
    await d.submit(3, "z")
    assert await asyncio.wait_for(pending.pop(), 1) == "z"


async def test_a_cancelled_sender_hands_its_wake_up_on() -> None:
    d = dispatcher()
    first, second = asyncio.ensure_future(d.take()), asyncio.ensure_future(d.take())
    await asyncio.sleep(0)
    await d.submit(2, "x")  # wakes the first ...
    first.cancel()  # ... which is cancelled before it runs
    assert await asyncio.wait_for(second, 1) == "x"
    with pytest.raises(asyncio.CancelledError):
        await first
