"""Processes and servers the benchmarks run against: the embedded broker, worker processes,
a local HTTP receiver. Everything on 127.0.0.1, bounded in count and time."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from ..infra.broker import free_port


class Worker:
    def __init__(self, env: dict[str, str], log: Path, module: str = "tocsin.cli.main", args: tuple[str, ...] = ("worker", "--loglevel", "warning")) -> None:
        self.env = env
        self.log = log
        self.cmd = [sys.executable, "-m", module, *args]
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = int(env.get("TOCSIN_WEB_PORT", "0"))

    def start(self) -> Worker:
        self.proc = subprocess.Popen(self.cmd, env=self.env, stdout=open(self.log, "ab"),  # noqa: SIM115
                                     stderr=subprocess.STDOUT, start_new_session=True)
        return self

    async def ready(self, timeout: float = 120.0) -> float:
        t0 = time.monotonic()
        async with aiohttp.ClientSession() as s:
            while time.monotonic() - t0 < timeout:
                if self.proc and self.proc.poll() is not None:
                    raise RuntimeError(f"worker exited; see {self.log}")
                with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError):
                    async with s.get(f"http://127.0.0.1:{self.port}/health",
                                     timeout=aiohttp.ClientTimeout(total=2)) as r:
                        if r.status == 200:
                            return time.monotonic() - t0
                await asyncio.sleep(0.1)
        raise TimeoutError(f"worker not ready in {timeout}s; see {self.log}")

    def rss_mb(self) -> float:
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)


class Receiver:
    """Counts POSTs; records the arrival time of each body's marker."""

    def __init__(self) -> None:
        self.port = free_port()
        self.count = 0
        self.arrivals: dict[str, float] = {}
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def _handle(self, request: web.Request) -> web.Response:
        await request.read()
        self.count += 1
        marker = request.headers.get("X-Bench-Marker") or request.headers.get("Idempotency-Key")
        if marker:
            self.arrivals.setdefault(marker, time.time())
        return web.Response(status=200, text="ok")

    async def start(self) -> Receiver:
        app = web.Application()
        app.router.add_post("/hook", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def stop(self) -> None:
        if self._runner:
            await self._runner.cleanup()


def base_env(bootstrap: str, prefix: str, data: Path, **extra: Any) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOCSIN_")}
    env.update({"TOCSIN_KAFKA_BOOTSTRAP": bootstrap, "TOCSIN_TOPIC_PREFIX": prefix, "TOCSIN_PARTITIONS": "4",
                "TOCSIN_DATA_DIR": str(data), "TOCSIN_RECORD_ENABLED": "false", "TOCSIN_WEB_PORT": str(free_port()),
                "TOCSIN_CONSOLE_ENABLED": "true", "PYTHONUNBUFFERED": "1"})
    env.update({k: str(v) for k, v in extra.items()})
    return env
