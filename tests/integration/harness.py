"""Real peers for integration tests, all on 127.0.0.1. The worker process, its environment
and the webhook receiver are the bench's (``tocsin.bench.peers``: one harness for both); here
only what the tests alone use: an SMTP server (aiosmtpd), the ``Stack`` of a broker and its
workers, and producing to and reading whole topics."""

from __future__ import annotations

import asyncio
import email
import email.policy
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from tocsin.bench.peers import HttpReceiver, Received, WorkerProcess
from tocsin.infra.broker import free_port

__all__ = ["HttpReceiver", "Received", "SmtpReceiver", "Stack", "WorkerProcess", "produce", "read_topic"]


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
        env = {**self.env, "TOCSIN_WEB_PORT": str(free_port()), **extra_env}  # a port of its own
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
