"""The bench's CPU sampler (the broker's CPU each second of a latency run)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time

import pytest

from tocsin.bench.scenarios import cpu_seconds, sample_cpu

pytestmark = pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="needs /proc")


def test_cpu_seconds_counts_the_work_done() -> None:
    before = cpu_seconds(os.getpid())
    assert before is not None
    end = time.process_time() + 0.2
    while time.process_time() < end:
        pass
    after = cpu_seconds(os.getpid())
    assert after is not None and after - before >= 0.15


def test_cpu_seconds_of_no_process_is_none() -> None:
    assert cpu_seconds(2**22 + 12345) is None  # above the kernel's pid limit


async def test_sample_cpu_tells_a_busy_process_from_an_idle_one() -> None:
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    idle = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        hot: list[float] = []
        cold: list[float] = []
        tasks = [asyncio.ensure_future(sample_cpu(busy.pid, hot)), asyncio.ensure_future(sample_cpu(idle.pid, cold))]
        await asyncio.sleep(2.5)
        for t in tasks:
            t.cancel()
        assert len(hot) >= 2 and len(cold) >= 2  # one sample a second
        # a spinning process gets what the shared cores give it (under a load of 16 on 2 cores, about
        # 10 %), a sleeping one nothing: told apart by their ratio, not by a share of a core
        assert min(hot) > max(1.0, 3 * max(cold)) and max(cold) < 10
    finally:
        busy.kill()
        idle.kill()
        busy.wait()
        idle.wait()


async def test_sample_cpu_stops_when_the_process_is_gone() -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    pid = gone.pid
    task = asyncio.ensure_future(sample_cpu(pid, []))
    gone.wait()
    await asyncio.wait_for(task, 3)  # it returns (no endless loop) once the process is reaped
