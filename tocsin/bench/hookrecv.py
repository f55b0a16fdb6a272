"""The webhook receiver of the side-by-side scenario (``bench/alertmanager.py``), in its own
process: the systems measured post to it while the bench's own loop sends their alerts, so
neither the sending nor the receiving stamps wait on the other's work, and its CPU is its own.

``python -m tocsin.bench.hookrecv PORT`` serves, on 127.0.0.1:

- ``POST /hook``: a webhook. Each alert it carries is named by its fingerprint: Alertmanager's
  payload (``alerts[].fingerprint``, one group's alerts) or Tocsin's (``alert.fingerprint``);
  the arrival time (``time.time()``, the bench's clock) is kept for each, repeats included;
- ``GET /stats``: ``{"posts", "alerts", "keys", "unmatched"}`` so far;
- ``GET /arrivals``: the same with ``"arrivals": {fingerprint: [times]}``;
- ``POST /reset``: forget everything (the next system's run).
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

import orjson
from aiohttp import web


def fingerprints(body: bytes) -> list[str]:
    """The fingerprints of the alerts a webhook body carries (none: not a payload we know)."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return []
    if not isinstance(doc, dict):
        return []
    if isinstance(doc.get("alerts"), list):  # Alertmanager's webhook: one group's alerts
        return [str(a["fingerprint"]) for a in doc["alerts"] if isinstance(a, dict) and "fingerprint" in a]
    alert = doc.get("alert")  # Tocsin's webhook: one alert
    if isinstance(alert, dict) and "fingerprint" in alert:
        return [str(alert["fingerprint"])]
    return []


class Hooks:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.posts = 0
        self.alerts = 0
        self.unmatched = 0
        self.arrivals: dict[str, list[float]] = {}

    def stats(self) -> dict[str, Any]:
        return {"posts": self.posts, "alerts": self.alerts, "keys": len(self.arrivals), "unmatched": self.unmatched}

    async def hook(self, request: web.Request) -> web.Response:
        body = await request.read()
        now = time.time()
        self.posts += 1
        fps = fingerprints(body)
        if not fps:
            self.unmatched += 1
        for fp in fps:
            self.alerts += 1
            self.arrivals.setdefault(fp, []).append(now)
        return web.Response(text="ok")

    async def get_stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.stats(), dumps=lambda o: orjson.dumps(o).decode())

    async def get_arrivals(self, request: web.Request) -> web.Response:
        return web.Response(body=orjson.dumps({**self.stats(), "arrivals": self.arrivals}),
                            content_type="application/json")

    async def post_reset(self, request: web.Request) -> web.Response:
        self.reset()
        return web.Response(text="ok")


async def serve(port: int) -> None:
    hooks = Hooks()
    app = web.Application(client_max_size=16 * 1024 * 1024)
    app.router.add_post("/hook", hooks.hook)
    app.router.add_get("/stats", hooks.get_stats)
    app.router.add_get("/arrivals", hooks.get_arrivals)
    app.router.add_post("/reset", hooks.post_reset)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, backlog=4096).start()
    await asyncio.Event().wait()


def main() -> None:
    try:
        asyncio.run(serve(int(sys.argv[1])))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
