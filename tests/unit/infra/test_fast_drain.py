"""Faust's consumer loop awaits ``wait_first(callback(message), suspend_flow.wait())`` per
record; Tocsin runs the callback directly until it suspends (infra/faust_compat.py). The semantics
must stay those of ``wait_first``."""

from __future__ import annotations

import asyncio
from typing import Any

from faust.transport.consumer import Consumer
from mode import Service
from mode.utils.locks import Event

from tocsin.infra.faust_compat import fast_drain

fast_drain()


class Svc(Service):
    pass


async def test_a_callback_that_does_not_block_runs_inline() -> None:
    svc, flow = Svc(), Event()
    ran: list[int] = []

    async def callback() -> int:
        ran.append(1)
        return 7

    tasks_before = len(asyncio.all_tasks())
    res = await Consumer.wait_first(svc, callback(), flow.wait())
    assert ran == [1] and res.results == [7] and not res.stopped
    assert len(asyncio.all_tasks()) == tasks_before  # no task made for it


async def test_a_callback_that_blocks_is_awaited_to_its_end() -> None:
    svc, flow, gate = Svc(), Event(), asyncio.Event()
    steps: list[str] = []

    async def callback() -> str:
        steps.append("start")
        await gate.wait()
        steps.append("end")
        return "done"

    asyncio.get_running_loop().call_later(0.05, gate.set)
    res = await Consumer.wait_first(svc, callback(), flow.wait())
    assert steps == ["start", "end"] and res.results == ["done"]


async def test_a_blocked_callback_is_interrupted_when_flow_is_suspended() -> None:
    svc, flow, gate = Svc(), Event(), asyncio.Event()
    cancelled: list[bool] = []

    async def callback() -> None:
        try:
            await gate.wait()  # a full buffer, say
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    asyncio.get_running_loop().call_later(0.05, flow.set)
    res: Any = await asyncio.wait_for(Consumer.wait_first(svc, callback(), flow.wait()), 2)
    assert res.results == [True] or res.results == [None]  # the flow event won
    await asyncio.sleep(0)
    assert cancelled == [True]


async def test_an_error_in_the_callback_propagates() -> None:
    svc, flow = Svc(), Event()

    async def callback() -> None:
        raise KeyError("bad")

    try:
        await Consumer.wait_first(svc, callback(), flow.wait())
    except KeyError:
        pass
    else:
        raise AssertionError("the error was swallowed")
