"""Real peers for integration tests: the Tansu broker, Tocsin worker processes, a scripted
HTTP receiver (aiohttp) and an SMTP server (aiosmtpd), all on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import inspect
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiohttp import web
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from multidict import CIMultiDict

from tocsin.infra.broker import free_port


class WorkerProcess:
    """One ``tocsin worker`` subprocess."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.env = env
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = int(env["TOCSIN_WEB_PORT"])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> WorkerProcess:
        log = open(self.log_path, "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tocsin.cli.main", "worker", "--loglevel", "info"],
            env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        return self

    async def wait_ready(self, timeout: float = 90.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as s:
            while time.monotonic() < deadline:
                if self.proc is not None and self.proc.poll() is not None:
                    raise RuntimeError(f"worker exited ({self.proc.returncode}):\n{self.log_tail()}")
                with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError):
                    async with s.get(self.url + "/health", timeout=aiohttp.ClientTimeout(total=2)) as r:
                        if r.status == 200:
                            return await r.json()
                await asyncio.sleep(0.25)
        raise TimeoutError(f"worker not ready within {timeout}s:\n{self.log_tail()}")

    def log_tail(self, n: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text("utf-8", "replace").splitlines()[-n:])
        except OSError:
            return ""

    def stop(self, timeout: float = 30.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    at: float


class HttpReceiver:
    """A webhook endpoint on 127.0.0.1 that records every request; ``script`` decides the reply."""

    def __init__(self) -> None:
        self.requests: list[Received] = []
        self.script: Callable[[Received, int], Any] = lambda req, n: 200  # a status, a response, or an awaitable of one
        self.port = free_port()
        self._runner: web.AppRunner | None = None
        self.event = asyncio.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            body = {"_raw": raw.decode("utf-8", "replace")}
        rec = Received(request.path, CIMultiDict(request.headers), body, time.time())  # type: ignore[arg-type]
        self.requests.append(rec)
        self.event.set()
        out = self.script(rec, len(self.requests))
        if inspect.isawaitable(out):  # a script that takes its time
            out = await out
        if isinstance(out, int):
            return web.json_response({"ok": 200 <= out < 300}, status=out)
        return out

    async def start(self) -> HttpReceiver:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def stop(self) -> None:
        if self._runner:
            await self._runner.cleanup()

    async def wait_for(self, pred: Callable[[list[Received]], bool], timeout: float = 30.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while not pred(self.requests):
            if time.monotonic() > deadline:
                raise TimeoutError(f"receiver: condition not met; got {len(self.requests)} requests")
            await asyncio.sleep(0.05)
        return self.requests


class SmtpReceiver:
    """aiosmtpd on 127.0.0.1 collecting parsed messages; ``reply`` may script an SMTP error."""

    def __init__(self) -> None:
        from aiosmtpd.controller import Controller

        self.messages: list[email.message.EmailMessage] = []
        self.reply: Callable[[int], str | None] = lambda n: None
        outer = self

        class Handler:
            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
                n = len(outer.messages) + 1
                scripted = outer.reply(n)
                if scripted:
                    return scripted
                outer.messages.append(email.message_from_bytes(envelope.content, policy=email.policy.default))  # type: ignore[arg-type]
                return "250 OK"

        self.port = free_port()
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)

    def start(self) -> SmtpReceiver:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()

    async def wait_for(self, n: int, timeout: float = 30.0) -> list[email.message.EmailMessage]:
        deadline = time.monotonic() + timeout
        while len(self.messages) < n:
            if time.monotonic() > deadline:
                raise TimeoutError(f"smtp: wanted {n} messages, got {len(self.messages)}")
            await asyncio.sleep(0.05)
        return self.messages


@dataclass
class Stack:
    """A broker and the environment of the workers that run against it."""

    bootstrap: str
    prefix: str
    tmp: Path
    env: dict[str, str] = field(default_factory=dict)
    workers: list[WorkerProcess] = field(default_factory=list)

    def topic(self, name: str) -> str:
        return f"{self.prefix}.{name}"

    def worker(self, **extra_env: str) -> WorkerProcess:
        env = dict(self.env)
        env.update(extra_env)
        env.setdefault("TOCSIN_WEB_PORT", str(free_port()))
        env["TOCSIN_WEB_PORT"] = extra_env.get("TOCSIN_WEB_PORT", str(free_port()))
        w = WorkerProcess(env, self.tmp / f"worker-{len(self.workers)}.log")
        self.workers.append(w)
        return w

    async def start_worker(self, **extra_env: str) -> WorkerProcess:
        w = self.worker(**extra_env).start()
        await w.wait_ready()
        return w


async def produce(bootstrap: str, topic: str, items: list[tuple[bytes | None, bytes | None]],
                  **producer_kw: Any) -> None:
    p = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, **producer_kw)
    await p.start()
    try:
        futs = [await p.send(topic, value=v, key=k) for k, v in items]
        await asyncio.gather(*futs)
    finally:
        await p.stop()


async def read_topic(bootstrap: str, topic: str, *, min_count: int = 0, timeout: float = 30.0,
                     until: Callable[[list[dict[str, Any]]], bool] | None = None,
                     settle: float = 0.0) -> list[dict[str, Any]]:
    """Every message of a topic from the beginning: dicts with key, value (decoded JSON), offset."""
    c = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                         auto_offset_reset="earliest")
    await c.start()
    out: list[dict[str, Any]] = []
    try:
        deadline = time.monotonic() + timeout
        parts: set[int] | None = None
        while parts is None:
            parts = c.partitions_for_topic(topic)
            if not parts:
                parts = None
                await c._client.force_metadata_update()  # noqa: SLF001
                if time.monotonic() > deadline:
                    return out
                await asyncio.sleep(0.2)
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        c.assign(tps)
        await c.seek_to_beginning(*tps)
        done_at: float | None = None
        while time.monotonic() < deadline:
            batch = await c.getmany(timeout_ms=200, max_records=10000)
            for tp, msgs in batch.items():
                for m in msgs:
                    try:
                        value = orjson.loads(m.value) if m.value is not None else None
                    except orjson.JSONDecodeError:
                        value = m.value
                    out.append({"key": m.key.decode() if m.key else None, "value": value,
                                "partition": tp.partition, "offset": m.offset, "timestamp": m.timestamp})
            ok = len(out) >= min_count and (until is None or until(out))
            if ok:
                if done_at is None:
                    done_at = time.monotonic()
                if time.monotonic() - done_at >= settle:
                    break
        return out
    finally:
        await c.stop()
