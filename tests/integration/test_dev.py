"""`tocsin dev` (what `make dev` runs) then `tocsin send`: the notification shows on the
console and in the file channel; Ctrl-C stops everything."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tocsin.infra.broker import free_port, port_open

from .harness import WorkerProcess

pytestmark = pytest.mark.integration


def _ctrl_c_as_at_a_terminal() -> None:
    """Run in the child before exec: Ctrl-C's default action, whatever the test runner's. A
    shell starting a job in the background (``cmd &``) has its children ignore SIGINT, and
    Python then installs no KeyboardInterrupt handler: ``tocsin dev`` would never see it."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


async def test_dev_then_send_shows_console_and_file(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOCSIN_")}
    kafka, web = free_port(), free_port()
    env.update({"TOCSIN_KAFKA_BOOTSTRAP": f"127.0.0.1:{kafka}", "TOCSIN_WEB_PORT": str(web),
                "PYTHONUNBUFFERED": "1"})
    out = open(tmp_path / "dev.out", "wb")  # noqa: SIM115
    dev = subprocess.Popen([sys.executable, "-m", "tocsin.cli.main", "dev"], cwd=tmp_path, env=env,
                           stdout=out, stderr=subprocess.STDOUT, preexec_fn=_ctrl_c_as_at_a_terminal)
    try:
        probe = WorkerProcess({**env}, tmp_path / "dev.out")
        probe.proc = dev
        health = await probe.wait_ready()
        assert "file:default" in health["destinations"]
        sent = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "tocsin.cli.main", "send", "--type", "order_rejected", "--severity", "1",
             "--summary", "Order 42 rejected by venue", "--account-id", "ACC1"],
            env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
        assert sent.returncode == 0, sent.stderr
        alert_id = json.loads(sent.stdout)["alert_id"]
        jsonl = tmp_path / ".tocsin" / "notifications.jsonl"
        deadline = time.monotonic() + 30
        while not (jsonl.exists() and alert_id in jsonl.read_text()) and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        line = json.loads(jsonl.read_text().splitlines()[0])
        assert line["alert"]["alert_id"] == alert_id and line["text"] == "[SEV1] Order 42 rejected by venue"
        console = (tmp_path / "dev.out").read_text()
        assert f"[SEV1] Order 42 rejected by venue fingerprint=order_rejected:ACC1:: alert_id={alert_id}" in console
        # Prometheus can post to `make dev` out of the box: ingest is open on its loopback worker
        import aiohttp

        async with aiohttp.ClientSession() as s, s.post(f"http://127.0.0.1:{web}/api/v2/alerts", json=[
                {"labels": {"alertname": "DevCheck", "severity": "info"}}]) as r:
            assert r.status == 200, await r.text()
    finally:
        dev.send_signal(signal.SIGINT)  # Ctrl-C
        rc = await asyncio.to_thread(dev.wait, 60)
        out.close()
    assert rc in (0, 130, -signal.SIGINT)
    assert not port_open("127.0.0.1", kafka) and not port_open("127.0.0.1", web)


@pytest.mark.timeout(300)
async def test_dev_demo_shows_every_step_of_noise_control(tmp_path: Path) -> None:
    """`tocsin dev --demo`: its endpoints, routing and minute of alerts, decided by the worker as
    the demo promises (read back from the topics): throttle and digest, recovery, retries and the
    DLQ, preferences, grouping, inhibition and its release, flapping, maintenance, escalation;
    then Ctrl-C stops it all."""
    from .harness import read_topic

    env = {k: v for k, v in os.environ.items() if not k.startswith("TOCSIN_")}
    kafka, web = free_port(), free_port()
    bootstrap = f"127.0.0.1:{kafka}"
    env.update({"TOCSIN_KAFKA_BOOTSTRAP": bootstrap, "TOCSIN_WEB_PORT": str(web), "PYTHONUNBUFFERED": "1"})
    log = tmp_path / "dev.out"
    out = open(log, "wb")  # noqa: SIM115
    dev = subprocess.Popen([sys.executable, "-m", "tocsin.cli.main", "dev", "--demo"], cwd=tmp_path, env=env,
                           stdout=out, stderr=subprocess.STDOUT, preexec_fn=_ctrl_c_as_at_a_terminal)
    try:
        deadline = time.monotonic() + 150
        while "tocsin dev --demo: all" not in log.read_text() and time.monotonic() < deadline:
            assert dev.poll() is None, log.read_text()[-3000:]
            await asyncio.sleep(0.5)
        assert "tocsin dev --demo: all" in log.read_text(), log.read_text()[-3000:]
        wanted = {"notify", "suppress", "bypass", "grouped", "inhibited", "flapping", "muted", "escalated", "digest"}
        decisions = [d["value"] for d in await read_topic(
            bootstrap, "tocsin.decisions", timeout=120,
            until=lambda ds: wanted <= {d["value"]["outcome"] for d in ds}
            and any(d["value"]["reason"].startswith("released:") for d in ds))]
        outcomes = {(d["alert"]["type"], d["outcome"]) for d in decisions}
        assert {("order_rejected", "notify"), ("order_rejected", "suppress"), ("order_rejected", "digest"),
                ("position_limit_hit", "bypass"), ("fill_rejected", "grouped"), ("stale_quotes", "inhibited"),
                ("component_unhealthy", "flapping"), ("batch_job_failed", "muted"),
                ("kill_switch_activated", "escalated")} <= outcomes, outcomes
        assert any("dana's quiet hours" in d["reason"] for d in decisions if d["alert"]["type"] == "daily_loss_limit")
        assert any(d["reason"].startswith("released: venue down mutes its stale quotes") for d in decisions)
        dead = await read_topic(bootstrap, "tocsin.dlq", min_count=1, timeout=60)
        assert dead[0]["value"]["destination"] == "webhook:failing"
    finally:
        dev.send_signal(signal.SIGINT)
        rc = await asyncio.to_thread(dev.wait, 60)
        out.close()
    assert rc in (0, 130, -signal.SIGINT)
    assert not port_open("127.0.0.1", kafka) and not port_open("127.0.0.1", web)
