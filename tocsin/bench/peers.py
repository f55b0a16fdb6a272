"""The peers the benchmarks and the integration tests run against, one harness for both: a
child process (``Process``), a ``tocsin worker`` (``WorkerProcess``) and its environment
(``base_env``), a webhook receiver (``HttpReceiver``). Everything on 127.0.0.1, bounded in
count and time. They live in the package because the bench runs from an installed ``tocsin``;
``tests/integration/harness.py`` adds what only the tests use (the SMTP server, ``Stack``, the
topic helpers)."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import aiohttp
import orjson
from aiohttp import web

from ..infra.broker import free_port


class Process:
    """A child process in its own session (a signal to it reaches its children too), its
    output appended to ``log_path``; ``env`` None: this process's environment."""

    def __init__(self, argv: Sequence[str], log_path: Path, env: dict[str, str] | None = None) -> None:
        self.argv = list(argv)
        self.log_path = log_path
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None
        self.started = time.monotonic()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> Self:
        with open(self.log_path, "ab") as log:  # the child holds its own copy of the descriptor
            self.proc = subprocess.Popen(self.argv, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        self.started = time.monotonic()
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    async def wait_http(self, url: str, timeout: float) -> bytes:
        """Poll ``url`` every 0.1 s until it answers 200; its body. Fails at once if the
        process exits, with the tail of its log."""
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as s:
            while time.monotonic() < deadline:
                if self.proc is not None and self.proc.poll() is not None:
                    raise RuntimeError(f"{self.argv[0]} exited ({self.proc.returncode}); "
                                       f"{self.log_path}:\n{self.log_tail()}")
                with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError):
                    async with s.get(url, timeout=aiohttp.ClientTimeout(total=2)) as r:
                        if r.status == 200:
                            return await r.read()
                await asyncio.sleep(0.1)
        raise TimeoutError(f"{url} not ready within {timeout:.0f}s; {self.log_path}:\n{self.log_tail()}")

    def log_tail(self, n: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text("utf-8", "replace").splitlines()[-n:])
        except OSError:
            return ""

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM, then SIGKILL if it has not exited within ``timeout``."""
        if not self.alive():
            return
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        if not self.alive():
            return
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)


class WorkerProcess(Process):
    """One ``tocsin worker`` (``python -m tocsin.cli.main worker --loglevel <loglevel>``) with
    ``env`` (``base_env``), its web server on ``TOCSIN_WEB_PORT``; ``command``: what to run
    after ``python -m`` instead (the bench's Faust pass-through)."""

    def __init__(self, env: dict[str, str], log_path: Path, *, loglevel: str = "info",
                 command: Sequence[str] = ()) -> None:
        argv = command or ("tocsin.cli.main", "worker", "--loglevel", loglevel)
        super().__init__([sys.executable, "-m", *argv], log_path, env)
        self.port = int(env["TOCSIN_WEB_PORT"])
        self.ready_s = math.nan  # until wait_ready

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def wait_ready(self, timeout: float = 120.0) -> dict[str, Any]:
        """Wait until ``/health`` answers 200; what it says. ``ready_s``: the seconds from the
        start to then."""
        health: dict[str, Any] = orjson.loads(await self.wait_http(self.url + "/health", timeout))
        self.ready_s = time.monotonic() - self.started
        return health


def base_env(bootstrap: str, prefix: str, tmp: Path, *, file_channel: bool = False, **extra: Any) -> dict[str, str]:
    """A worker's environment: this process's without any ``TOCSIN_`` setting, then the broker
    ``bootstrap``, topic prefix ``prefix``, 4 partitions, its data in ``tmp/data``, recording
    off, SMTP without TLS (the test server speaks plain), a free web port. ``file_channel``: the
    file channel on, writing ``tmp/notifications.jsonl`` (the tests read it; the bench leaves it
    off: under the shipped routing it is one more delivery an alert). ``extra``: more
    settings, each made a string."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOCSIN_")}
    env.update({"TOCSIN_KAFKA_BOOTSTRAP": bootstrap, "TOCSIN_TOPIC_PREFIX": prefix, "TOCSIN_PARTITIONS": "4",
                "TOCSIN_DATA_DIR": str(tmp / "data"), "TOCSIN_RECORD_ENABLED": "false", "TOCSIN_SMTP_TLS": "false",
                "TOCSIN_WEB_PORT": str(free_port()), "PYTHONUNBUFFERED": "1"})
    if file_channel:
        env["TOCSIN_FILE_CHANNEL_PATH"] = str(tmp / "notifications.jsonl")
    env.update({k: str(v) for k, v in extra.items()})
    return env


@dataclass(slots=True)
class Received:
    """One request an ``HttpReceiver`` kept: its body decoded as JSON (``{"_raw": text}`` when
    it is not JSON), ``at`` its arrival (``time.time()``)."""

    path: str
    headers: Mapping[str, str]  # case-insensitive
    body: Any
    at: float


class HttpReceiver:
    """A webhook endpoint on 127.0.0.1, ``url`` its ``/hook``.

    Every request is counted (``count``) and the arrival time (``time.time()``) of each marker
    kept: ``arrivals``, the ``X-Bench-Marker`` or else ``Idempotency-Key`` header of a request
    → its first arrival. That is all the bench measures with, for one header lookup a request
    (``keep=False``: ``POST /hook`` only, every answer 200). With ``keep=True`` (the tests')
    every request, on any path, is also kept whole (``requests``, each a ``Received``) and
    ``script(req, n)`` (n: its number, from 1) decides the answer: a status (answered with a
    small JSON body), a response, or an awaitable of either."""

    def __init__(self, *, keep: bool = True) -> None:
        self.keep = keep
        self.port = free_port()
        self.count = 0
        self.arrivals: dict[str, float] = {}
        self.requests: list[Received] = []
        self.script: Callable[[Received, int], Any] = lambda req, n: 200
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def _count(self, request: web.Request) -> web.Response:
        await request.read()
        self.count += 1
        marker = request.headers.get("X-Bench-Marker") or request.headers.get("Idempotency-Key")
        if marker:
            self.arrivals.setdefault(marker, time.time())
        return web.Response(status=200, text="ok")

    async def _keep(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        now = time.time()
        self.count += 1
        marker = request.headers.get("X-Bench-Marker") or request.headers.get("Idempotency-Key")
        if marker:
            self.arrivals.setdefault(marker, now)
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            body = {"_raw": raw.decode("utf-8", "replace")}
        rec = Received(request.path, request.headers.copy(), body, now)
        self.requests.append(rec)
        out = self.script(rec, len(self.requests))
        if inspect.isawaitable(out):  # a script that takes its time
            out = await out
        if isinstance(out, int):
            return web.json_response({"ok": 200 <= out < 300}, status=out)
        return out

    async def start(self) -> Self:
        app = web.Application()
        if self.keep:
            app.router.add_route("*", "/{tail:.*}", self._keep)
        else:
            app.router.add_post("/hook", self._count)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def stop(self) -> None:
        if self._runner:
            await self._runner.cleanup()

    async def wait_for(self, pred: Callable[[list[Received]], bool], timeout: float = 30.0) -> list[Received]:
        """Wait until ``pred(requests)`` holds (``keep=True``); the requests."""
        deadline = time.monotonic() + timeout
        while not pred(self.requests):
            if time.monotonic() > deadline:
                raise TimeoutError(f"receiver: condition not met; got {len(self.requests)} requests")
            await asyncio.sleep(0.05)
        return self.requests
