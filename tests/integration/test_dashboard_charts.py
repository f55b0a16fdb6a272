"""The dashboard's charts and its "why" column in headless Chromium, against a real worker.

Alerts at fixed event times (a day in 2025) go through the real pipeline and recording; the
page, opened with that day's window in its address (``?since=...&until=...``, never the wall
clock), must draw one stack of bars per minute that had alerts and one bar per (minute,
severity) and (minute, outcome). Deliveries happen when the test runs: their window and the
points expected are taken from the attempts the worker recorded (``/api/alerts/{id}/deliveries``).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from typing import Any

import pytest
from playwright.async_api import async_playwright, expect

from tocsin.schemas import create_alert, dumps

from .harness import Stack, WorkerProcess, produce
from .test_dashboard_browser import (
    ARTIFACTS,
    CHROMIUM,
    CHROMIUM_ARGS,
    SLOW,
    get_json,
    needs_chromium,
)

pytestmark = [pytest.mark.integration, pytest.mark.browser]

T0 = dt.datetime(2025, 6, 1, 12, 0, tzinfo=dt.UTC)
H = dt.timedelta(hours=1)
M = dt.timedelta(minutes=1)
S = dt.timedelta(seconds=1)
FP_A = "position_limit_hit:A1"

#: (event time, fingerprint, severity, action, resolves) → the throttle's outcome
EVENTS: list[tuple[dt.datetime, str, int, str, str | None, str]] = [
    (T0 - 5 * H, FP_A, 1, "trigger", None, "notify"),
    (T0 - 5 * H + 10 * S, FP_A, 1, "trigger", None, "suppress"),
    (T0 - 5 * H + 20 * S, FP_A, 1, "trigger", None, "suppress"),
    (T0 - 5 * H + 30 * S, "order_rejected:A1", 2, "trigger", None, "notify"),
    (T0 - 2 * H, "storage_threshold:db1", 3, "trigger", None, "notify"),
    (T0 - H + 5 * S, "position_limit_ok:A1", 3, "resolve", FP_A, "bypass"),
    (T0 - 30 * M, "kill_switch_activated:A1", 1, "trigger", None, "notify"),
]
#: the page's window: the 24 hours before T0
WINDOW = "?since=2025-05-31T12:00:00Z&until=2025-06-01T12:00:00Z"


def minute(t: dt.datetime) -> dt.datetime:
    return t.replace(second=0, microsecond=0)


def hour(t: dt.datetime) -> dt.datetime:
    return t.replace(minute=0, second=0, microsecond=0)


def expected_bars(key: int) -> tuple[int, int, dict[str, int]]:
    """(stacks, bars, total per series) of the severity (key 2) or outcome (key 5) chart."""
    pairs: dict[tuple[dt.datetime, str], int] = {}
    for e in EVENTS:
        series = f"SEV{e[2]}" if key == 2 else str(e[5])
        pairs[(minute(e[0]), series)] = pairs.get((minute(e[0]), series), 0) + 1
    totals: dict[str, int] = {}
    for (_, series), n in pairs.items():
        totals[series] = totals.get(series, 0) + n
    return len({m for m, _ in pairs}), len(pairs), totals


async def recorded_attempts(w: WorkerProcess, notified: int, timeout: float = 60.0) -> list[dict[str, Any]]:
    """Every attempt of the notified alerts, once each has a sent attempt on every channel it went to
    and the list stays the same for two polls."""
    deadline = time.monotonic() + timeout
    last: list[dict[str, Any]] = []
    stable = 0
    while time.monotonic() < deadline:
        _, alerts = await get_json(w.url + "/api/alerts?limit=50")
        ids = [a["notified_alert_id"] for a in (alerts or {}).get("items", []) if a.get("notified_alert_id")]
        attempts: list[dict[str, Any]] = []
        attempted = 0
        for aid in ids:
            status, body = await get_json(w.url + f"/api/alerts/{aid}/deliveries")
            items = body.get("items", []) if status == 200 else []
            attempts += items
            attempted += bool(items)
        done = len(ids) == attempted == notified and all(
            any(x["status"] == "sent" for x in attempts if x["delivery_id"] == d)
            for d in {x["delivery_id"] for x in attempts})
        stable = stable + 1 if done and attempts == last else 0
        if stable >= 2:
            return attempts
        last = attempts
        await asyncio.sleep(0.5)
    raise TimeoutError(f"attempts of {notified} alerts not recorded: {last!r}\n{w.log_tail()}")


@needs_chromium
async def test_charts_and_why_in_chromium(stack: Stack) -> None:
    w = await stack.start_worker(TOCSIN_RECORD_ENABLED="true", TOCSIN_RECORD_BATCH_S="0.2")
    for at, fp, sev, action, resolves, _ in EVENTS:  # one at a time: the throttle sees them in this order
        ev = create_alert(fp.split(":")[0], sev, f"{fp} at {at:%H:%M:%S}", fingerprint=fp, event_timestamp=at,
                          action=action, resolves=resolves, account_id="A1")
        await produce(stack.bootstrap, stack.topic("alerts"), [(ev.fingerprint.encode(), dumps(ev))])
    notified = sum(e[5] in ("notify", "bypass") for e in EVENTS)
    attempts = await recorded_attempts(w, notified)

    # what the delivery charts must draw, from the recorded attempts
    def at(x: dict[str, Any]) -> dt.datetime:
        return dt.datetime.fromisoformat(x["started_at"])

    first: dict[str, tuple[dt.datetime, str]] = {}
    for x in attempts:
        if x["status"] != "skipped_duplicate" and (x["delivery_id"] not in first or at(x) < first[x["delivery_id"]][0]):
            first[x["delivery_id"]] = (at(x), x["channel"])
    delivery_points = len({(hour(t), ch) for t, ch in first.values()})
    latency_points = 2 * len({(hour(at(x)), x["channel"]) for x in attempts if x["status"] in ("sent", "failed", "dead")})
    channels = sorted({ch for _, ch in first.values()})
    d_until = hour(max(at(x) for x in attempts)) + H
    d_window = f"?since={(d_until - 24 * H).isoformat()}&until={d_until.isoformat()}".replace("+00:00", "Z")

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    errors: list[str] = []
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1400, "height": 1000})
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            await page.goto(w.url + "/" + WINDOW)
            await expect(page.get_by_test_id("charts")).to_have_attribute("data-loaded", "true", timeout=SLOW)

            for chart, key in (("chart-severity", 2), ("chart-outcome", 5)):
                stacks, bars, totals = expected_bars(key)
                box = page.get_by_test_id(chart)
                await expect(box).to_have_attribute("data-bars", str(stacks))
                await expect(box.locator("g.stack")).to_have_count(stacks)
                await expect(box.locator("g.stack rect")).to_have_count(bars)
                legend = box.locator("ul.legend li")
                await expect(legend).to_have_count(len(totals))
                for series, n in totals.items():
                    await expect(box.locator(f'ul.legend li[data-series="{series}"]')).to_contain_text(f"{series} {n}")
                    counted = await box.locator(f'rect[data-series="{series}"]').evaluate_all(
                        "rs => rs.reduce((n, r) => n + Number(r.dataset.count), 0)")
                    assert counted == n, (chart, series)
            # the minute of the three alerts of FP_A and one of order_rejected: one stack of 4
            five = page.get_by_test_id("chart-severity").locator(
                f'g.stack[data-bucket="{(T0 - 5 * H).isoformat().replace("+00:00", ".000Z")}"]')
            await expect(five).to_have_attribute("data-total", "4")
            # known outcomes have their colour, and they differ
            fills = await page.get_by_test_id("chart-outcome").locator("ul.legend li rect").evaluate_all(
                "rs => rs.map(r => r.getAttribute('fill'))")
            assert len(set(fills)) == len(fills)
            # nothing was delivered on that day: the delivery charts say so
            await expect(page.get_by_test_id("chart-delivery")).to_have_attribute("data-points", "0")
            await expect(page.get_by_test_id("chart-delivery").locator(".chart-empty")).to_be_visible()

            # why each alert was or was not notified: its latest decision, outcome and reason
            row_a = page.locator(f'[data-testid="alert-row"][data-fingerprint="{FP_A}"]')
            await expect(row_a).to_have_attribute("data-outcome", "suppress", timeout=SLOW)
            await expect(row_a.get_by_test_id("alert-outcome")).to_have_text("suppress")
            await expect(row_a.get_by_test_id("alert-reason")).to_have_text("duplicate in window")
            row_r = page.locator('[data-testid="alert-row"][data-fingerprint="position_limit_ok:A1"]')
            await expect(row_r.get_by_test_id("alert-outcome")).to_have_text("bypass")
            await expect(row_r.get_by_test_id("alert-reason")).to_have_text("recovery bypasses the throttle")
            await row_a.get_by_test_id("alert-summary").click()
            await expect(page.get_by_test_id("deliveries-decision")).to_contain_text("suppress duplicate in window")
            await page.screenshot(path=str(ARTIFACTS / "dashboard-charts.png"), full_page=True)

            # the delivery charts, over the window of the recorded attempts
            await page.goto(w.url + "/" + d_window)
            await expect(page.get_by_test_id("charts")).to_have_attribute("data-loaded", "true", timeout=SLOW)
            delivery = page.get_by_test_id("chart-delivery")
            await expect(delivery).to_have_attribute("data-points", str(delivery_points))
            await expect(delivery.locator("circle.point")).to_have_count(delivery_points)
            await expect(delivery.locator("g.series")).to_have_count(len(channels))
            assert await delivery.locator("ul.legend li").evaluate_all("ls => ls.map(l => l.dataset.series)") == channels
            latency = page.get_by_test_id("chart-latency")
            await expect(latency).to_have_attribute("data-points", str(latency_points))
            await expect(latency.locator("circle.point")).to_have_count(latency_points)
            # every delivery was sent: every success point is at 100 %
            values = await delivery.locator("circle.point").evaluate_all("cs => cs.map(c => Number(c.dataset.value))")
            assert values == [100.0] * delivery_points
            await page.get_by_test_id("charts").screenshot(path=str(ARTIFACTS / "dashboard-delivery-charts.png"))
            # and no alert in that window
            await expect(page.get_by_test_id("chart-severity")).to_have_attribute("data-bars", "0")
        finally:
            await browser.close()
    assert errors == []
