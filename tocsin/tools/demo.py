"""``tocsin dev --demo``: a realistic minute of alerts for a newcomer to watch on the dashboard.

The demo runs beside ``tocsin dev``'s worker, on 127.0.0.1 only: two webhook endpoints of its
own (``/ok`` answers 200, ``/failing`` 503 for ever), a routing file that uses them
(``routing(...)``), and a scripted stream (``script(...)``) fed to ``P.alerts`` at its pace,
each event stamped when it is sent. What it shows, each within the minute:

- a noisy fingerprint: one notification, the repeats suppressed and counted;
- a recovery: notified through the throttle (``bypass``);
- a failing endpoint: its retries, then the dead-letter topic and its failover;
- a quiet-hours preference of a person (its decision says why the route changed);
- noise control: a digest of the noisy fingerprint's repeats at its (one-minute) window's end,
  a group of rejected fills notified as one, an inhibition released when its source resolves,
  a flapping component, a maintenance window, an escalation to a second person.

``script`` is pure (the clock a parameter), so what the demo promises is tested without it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from ..schemas.alert import AlertEvent, create_alert
from ..schemas.codec import dumps

log = logging.getLogger(__name__)

#: the demo's routing, with the URLs of its endpoints filled in (``routing``)
ROUTING = """\
# tocsin dev --demo: the demo's routing (written to {path}; the dashboard shows what it does)
always = ["console:default", "file:default"]

[severity]
1 = ["webhook:ok", "webhook:oncall"]
2 = ["webhook:ok", "webhook:oncall"]
3 = ["webhook:ok"]

[types]
venue_disconnected = ["webhook:failing"]

[destinations."webhook:ok"]
url_env = "TOCSIN_DEMO_OK_URL"
[destinations."webhook:oncall"]
url_env = "TOCSIN_DEMO_ONCALL_URL"
[destinations."webhook:failing"]
url_env = "TOCSIN_DEMO_FAILING_URL"
[destinations."webhook:lead"]
url_env = "TOCSIN_DEMO_LEAD_URL"

[receivers."webhook:failing"]        # a broken endpoint: three quick tries, then the DLQ and failover
backoff_s = [1, 2]
slow_backoff_s = []
failover = ["webhook:ok"]

[recipients.dana]                    # the on-call person: asleep for SEV2 and SEV3 (her quiet hours)
destinations = ["webhook:oncall"]
time_zone = "UTC"
quiet_hours = {{ start = "{quiet_start}", end = "{quiet_end}" }}

[throttle.types]                     # rejected orders: one notification a minute, then a digest of the rest
order_rejected = 60
[digests]
types = ["order_rejected"]

[[groups]]                           # rejected fills of an account: one notification listing them
name = "fills"
types = ["fill_rejected"]
group_by = ["type", "account_id"]
group_wait_s = 5
group_interval_s = 20
list_max = 3

[[inhibit_rules]]                    # a venue that is down mutes its accounts' quote alerts
name = "venue down mutes its stale quotes"
source_matchers = ['type="venue_down"']
target_matchers = ['type="stale_quotes"']
equal = ["account_id"]

[flapping]                           # the pricer: more than 3 changes in 5 minutes is flapping, quiet until
enabled = false                      # stable for 30 s (the other types: no flap detection)
[flapping.types.component_unhealthy]
changes = 3
window_s = 300
hold_s = 30

[[time_intervals]]                   # the demo's maintenance window: this hour and the next (its batch failures)
name = "demo-maintenance"
[[time_intervals.time_intervals]]
times = [{maint_times}]

[[maintenance]]
time_intervals = ["demo-maintenance"]
matchers = ['type="batch_job_failed"']

[escalations.kill]                   # a kill switch: the on-call person now, the lead 15 s later unless acknowledged
types = ["kill_switch_activated"]
[[escalations.kill.steps]]
after_s = 0
to = ["webhook:oncall"]
[[escalations.kill.steps]]
after_s = 15
to = ["webhook:lead"]
"""


def routing(path: str, now: dt.datetime) -> str:
    """The demo's routing file, with Dana's quiet hours around ``now`` (so the demo shows them)."""
    start = (now - dt.timedelta(hours=1)).astimezone(dt.UTC)
    end = (now + dt.timedelta(hours=2)).astimezone(dt.UTC)
    hour = now.astimezone(dt.UTC).hour
    # this hour and the next; a range may not wrap past midnight: what falls after it, a second range
    ranges = [(hour, min(hour + 2, 24))] + ([(0, hour + 2 - 24)] if hour + 2 > 24 else [])
    maint_times = ", ".join(f'{{ start_time = "{a:02d}:00", end_time = "{b:02d}:00" }}' for a, b in ranges)
    return ROUTING.format(path=path, quiet_start=f"{start:%H}:00", quiet_end=f"{end:%H}:00",
                          maint_times=maint_times)


@dataclass(frozen=True, slots=True)
class Step:
    """Send ``event`` ``at_s`` seconds into the demo; ``shows`` what a newcomer should see."""

    at_s: float
    event: AlertEvent
    shows: str


def script(start: dt.datetime) -> list[Step]:
    """The demo's stream, in the order it is sent; event times ``start`` plus each step's time."""
    steps: list[Step] = []

    def add(at_s: float, shows: str, type_: str, severity: int, summary: str, **kw: object) -> None:
        ev = create_alert(type_, severity, summary, event_timestamp=start + dt.timedelta(seconds=at_s),
                          source="tocsin-demo", **kw)  # type: ignore[arg-type]
        steps.append(Step(at_s, ev, shows))

    # a noisy fingerprint: one notification, then its repeats suppressed and counted
    for i in range(25):
        add(2 + i * 0.8, "throttle: the first notified, the repeats suppressed", "order_rejected", 2,
            f"Order {1000 + i} rejected by venue: price out of band", account_id="ACC1", symbol="BTC-USD")
    # a recovery, through the throttle
    add(4, "a firing", "position_limit_hit", 1, "Position limit hit on ETH-USD", account_id="ACC2", symbol="ETH-USD")
    add(20, "its recovery (bypass)", "position_limit_hit", 1, "Position back under its limit on ETH-USD",
        account_id="ACC2", symbol="ETH-USD", action="resolve")
    # a failing endpoint: retries, then the DLQ and the failover to webhook:ok
    add(6, "retries, DLQ and failover", "venue_disconnected", 2, "Venue FIX session down", account_id="ACC3")
    # a SEV2 the on-call person's quiet hours keep from her (a SEV1 above reached her)
    add(8, "preferences: quiet hours", "daily_loss_limit", 2, "Daily loss at 80 % of limit", account_id="ACC4")
    # grouping: six rejected fills of one account, one notification listing them
    for i in range(6):
        add(3 + i, "grouping: one notification for the group", "fill_rejected", 2,
            f"Fill {i} rejected", account_id="ACC5", symbol=f"SYM{i}")
    # inhibition: a venue down mutes its account's stale quotes, released when it recovers
    add(10, "an inhibition's source", "venue_down", 1, "Venue XNAS down", account_id="ACC6")
    add(12, "inhibited by the venue", "stale_quotes", 2, "Quotes stale on AAPL", account_id="ACC6", symbol="AAPL")
    add(30, "the source resolves: the target is released", "venue_down", 1, "Venue XNAS back",
        account_id="ACC6", action="resolve")
    # flapping: a component up and down, one flapping notification, then its settled state
    for i in range(6):
        add(14 + i * 2, "flapping", "component_unhealthy", 2, "Pricer unhealthy" if i % 2 == 0 else "Pricer back",
            account_id="ACC7", action="trigger" if i % 2 == 0 else "resolve")
    # a maintenance window mutes the nightly batch's failures
    add(16, "maintenance window: muted", "batch_job_failed", 2, "Batch job 7 failed", account_id="ACC8")
    # escalation: a kill switch reaches the on-call now and the lead 15 s later
    add(18, "escalation", "kill_switch_activated", 1, "Kill switch activated on strategy S9", account_id="ACC9",
        strategy_id="S9")
    steps.sort(key=lambda s: s.at_s)
    return steps


class Endpoints:
    """The demo's webhook endpoints on 127.0.0.1: ``/ok``, ``/oncall`` and ``/lead`` answer 200,
    ``/failing`` 503."""

    def __init__(self) -> None:
        self.received: dict[str, int] = {"ok": 0, "oncall": 0, "lead": 0, "failing": 0}
        self.runner: web.AppRunner | None = None
        self.port = 0

    async def start(self) -> Endpoints:
        app = web.Application()
        for name in self.received:
            app.router.add_post(f"/{name}", self._answer(name))
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"

    def _answer(self, name: str) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def answer(request: web.Request) -> web.Response:
            await request.read()
            self.received[name] += 1
            return web.Response(status=503 if name == "failing" else 200)
        return answer

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


async def feed(bootstrap: str, topic: str, steps: list[Step], *, pace: float = 1.0,
               sleep: Callable[[float], object] = asyncio.sleep) -> int:
    """Send ``steps`` to ``topic`` at their times (``pace``: seconds of the script per second);
    the number sent."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        elapsed = 0.0
        for step in steps:
            wait = (step.at_s - elapsed) / pace
            if wait > 0:
                await sleep(wait)  # type: ignore[misc]
            elapsed = step.at_s
            await producer.send_and_wait(topic, dumps(step.event), key=step.event.fingerprint.encode())
        return len(steps)
    finally:
        await producer.stop()


async def until_healthy(url: str, timeout_s: float = 120.0) -> bool:
    """Wait until ``url`` (the worker's ``/health``) answers 200."""
    import aiohttp

    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            try:
                async with session.get(url) as r:
                    if r.status == 200:
                        return True
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.5)
    return False


class Demo:
    """What ``tocsin dev --demo`` runs beside the worker, on an event loop of its own (a thread):
    ``start`` the endpoints and write the routing file (the worker's environment to add), then
    ``feed_when_ready`` once the worker is started, ``stop`` at the end."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.endpoints = Endpoints()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="tocsin-demo", daemon=True)
        self.fed: Future[int] | None = None

    def start(self, now: dt.datetime) -> dict[str, str]:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.endpoints.start(), self.loop).result(30)
        path = self.data_dir / "demo-routing.toml"
        path.write_text(routing(str(path), now), "utf-8")
        return {"TOCSIN_ROUTING_FILE": str(path), "TOCSIN_DEMO_OK_URL": self.endpoints.url("ok"),
                "TOCSIN_DEMO_ONCALL_URL": self.endpoints.url("oncall"), "TOCSIN_DEMO_LEAD_URL": self.endpoints.url("lead"),
                "TOCSIN_DEMO_FAILING_URL": self.endpoints.url("failing")}

    def feed_when_ready(self, health_url: str, bootstrap: str, topic: str, say: Callable[[str], None]) -> None:
        async def go() -> int:
            if not await until_healthy(health_url):
                say("tocsin dev --demo: the worker did not start within 2 minutes; no demo alerts sent")
                return 0
            steps = script(dt.datetime.now(dt.UTC))
            say(f"tocsin dev --demo: sending {len(steps)} alerts over {steps[-1].at_s:.0f} s; watch the dashboard")
            sent = await feed(bootstrap, topic, steps)
            say(f"tocsin dev --demo: all {sent} sent; endpoints received {self.endpoints.received}")
            return sent

        self.fed = asyncio.run_coroutine_threadsafe(go(), self.loop)

    def stop(self) -> None:
        if self.fed is not None:
            self.fed.cancel()
        if self.thread.is_alive():
            asyncio.run_coroutine_threadsafe(self.endpoints.stop(), self.loop).result(10)
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
