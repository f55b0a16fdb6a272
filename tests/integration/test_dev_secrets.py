"""`tocsin dev` with a ClickHouse URL holding a password (in the userinfo and in the query):
neither the start-up line, nor the worker's log while it waits for that ClickHouse, nor its
stop shows either secret; the redacted URL is what it prints."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tocsin.infra.broker import free_port

from .harness import WorkerProcess
from .test_dev import _ctrl_c_as_at_a_terminal

pytestmark = pytest.mark.integration

SECRET, QUERY_SECRET = "s3cret-in-userinfo", "xq9-secret-in-query"


async def test_dev_never_prints_the_clickhouse_password(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOCSIN_")}
    kafka, web, ch = free_port(), free_port(), free_port()  # nothing listens on ch
    url = f"http://u:{SECRET}@127.0.0.1:{ch}/db?password={QUERY_SECRET}"
    env.update({"TOCSIN_KAFKA_BOOTSTRAP": f"127.0.0.1:{kafka}", "TOCSIN_WEB_PORT": str(web),
                "TOCSIN_CLICKHOUSE_URL": url, "PYTHONUNBUFFERED": "1"})
    out_path = tmp_path / "dev.out"
    out = open(out_path, "wb")  # noqa: SIM115
    dev = subprocess.Popen([sys.executable, "-m", "tocsin.cli.main", "dev", "--loglevel", "debug"], cwd=tmp_path,
                           env=env, stdout=out, stderr=subprocess.STDOUT, preexec_fn=_ctrl_c_as_at_a_terminal)
    try:
        probe = WorkerProcess({**env}, out_path)
        probe.proc = dev
        await probe.wait_ready()
        deadline = time.monotonic() + 30  # the record agent tries that ClickHouse and says so
        while "recording waits for ClickHouse" not in out_path.read_text() and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
    finally:
        dev.send_signal(signal.SIGINT)
        await asyncio.to_thread(dev.wait, 60)
        out.close()
    text = out_path.read_text()
    redacted = f"http://u:***@127.0.0.1:{ch}/db?password=***"
    assert f"ClickHouse {redacted}" in text  # the start-up line
    assert f"recording waits for ClickHouse (retrying): ClickHouse at {redacted}" in text  # the worker's log
    assert SECRET not in text and QUERY_SECRET not in text
