"""The dashboard at ``/`` in headless Chromium against a real ``tocsin worker`` and broker.

Debian's chromium is the browser (``make browser`` installs it); Playwright drives it and never
downloads one. Without a chromium binary the test is skipped.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from playwright.async_api import Page, Request, async_playwright, expect

from tocsin.schemas import create_alert, dumps

from .harness import Stack, WorkerProcess, produce
from .test_pipeline import bucket_time

pytestmark = [pytest.mark.integration, pytest.mark.browser]

TOKEN = "t0ken"
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
#: the worker folds lifecycle events and deliveries asynchronously; the page polls every 5 s
SLOW = 30_000


def chromium_path() -> str | None:
    if os.access("/usr/bin/chromium", os.X_OK):
        return "/usr/bin/chromium"
    return shutil.which("chromium")


CHROMIUM = chromium_path()
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium binary (run `make browser` or `apt-get install chromium`)")


def event_time(offset_s: float = 0.0) -> dt.datetime:
    """Well inside the 600 s throttle bucket the test started in, so every fingerprint is
    notified (``bucket_time``: one bucket for the whole test)."""
    return bucket_time(offset_s)


ALERTS: list[dict[str, Any]] = [
    dict(type="kill_switch_activated", severity=1, summary="Kill switch activated on A1",
         fingerprint="kill_switch_activated:A1", account_id="A1", requires_action=True),
    dict(type="order_rejected", severity=1, summary="Order rejected: insufficient margin",
         fingerprint="order_rejected:A1:BTC-USD:s1", account_id="A1", symbol="BTC-USD", strategy_id="s1"),
    dict(type="db_write_fail", severity=2, summary="Database write failed: orders",
         fingerprint="db_write_fail:orders"),
    dict(type="storage_threshold", severity=3, summary="Disk 91% on db1", fingerprint="storage_threshold:db1"),
]


async def get_json(url: str, token: str | None = None) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with aiohttp.ClientSession(headers=headers) as s, s.get(url, timeout=aiohttp.ClientTimeout(total=5)) as r:
        try:
            return r.status, await r.json(content_type=None)
        except ValueError:
            return r.status, None


async def wait_for_api(w: WorkerProcess, n: int, timeout: float = 60.0) -> None:
    """Until the API lists ``n`` alerts (the pipeline is asynchronous)."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        status, last = await get_json(w.url + "/api/alerts?limit=50", TOKEN)
        if status == 200 and isinstance(last, dict) and last.get("total", 0) >= n:
            return
        await asyncio.sleep(0.5)
    raise TimeoutError(f"/api/alerts did not list {n} alerts: {last!r}\n{w.log_tail()}")


async def check_static_files(w: WorkerProcess) -> None:
    async with aiohttp.ClientSession() as s:
        for path, ctype in [("/", "text/html"), ("/static/app.js", "text/javascript"),
                            ("/static/style.css", "text/css")]:
            async with s.get(w.url + path) as r:
                assert r.status == 200, path
                assert r.content_type == ctype, (path, r.content_type)
                assert "default-src 'self'" in r.headers["Content-Security-Policy"]
        for path in ["/static/nope.js", "/static/..%2Fdashboard.py", "/static/__init__.py"]:
            async with s.get(w.url + path) as r:
                assert r.status == 404, path


def row(page: Page, fingerprint: str) -> Any:
    return page.locator(f'[data-testid="alert-row"][data-fingerprint="{fingerprint}"]')


@needs_chromium
async def test_dashboard_in_chromium(stack: Stack) -> None:
    # the API answers from the recorded store: record, in small batches
    w = await stack.start_worker(TOCSIN_API_TOKEN=TOKEN, TOCSIN_RECORD_ENABLED="true",
                                 TOCSIN_RECORD_BATCH_S="0.2")
    await produce(stack.bootstrap, stack.topic("alerts"),
                  [(ev.fingerprint.encode(), dumps(ev)) for ev in
                   (create_alert(**a, event_timestamp=event_time(i)) for i, a in enumerate(ALERTS))])
    await check_static_files(w)
    await wait_for_api(w, len(ALERTS))

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    requests: list[Request] = []
    failures: list[str] = []
    errors: list[str] = []
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1400, "height": 800})
            page.on("request", lambda r: requests.append(r))
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on("response", lambda r: failures.append(f"{r.status} {r.request.method} {r.url}")
                    if r.status >= 400 else None)
            await page.goto(w.url + "/")
            rows = page.get_by_test_id("alert-row")

            # the worker has a token: its alerts are not shown without it, the page asks for it
            await expect(page.get_by_test_id("error-banner")).to_contain_text("401", timeout=SLOW)
            await expect(page.get_by_test_id("token-form")).to_be_visible()
            await expect(rows).to_have_count(0)
            # a wrong token is a 401 shown as such
            await page.get_by_test_id("token-input").fill("wrong")
            await page.get_by_test_id("token-save").click()
            await expect(page.get_by_test_id("error-banner")).to_contain_text("rejected", timeout=SLOW)
            await expect(page.get_by_test_id("token-form")).to_be_visible()
            await expect(rows).to_have_count(0)
            # the right token, kept in localStorage, shows them
            await page.get_by_test_id("token-input").fill(TOKEN)
            await page.get_by_test_id("by-input").fill("pytest")
            await page.get_by_test_id("token-save").click()
            await expect(page.get_by_test_id("token-set")).to_be_visible()
            assert await page.evaluate("localStorage.getItem('tocsin.apiToken')") == TOKEN

            # stat cards, rows, badge
            await expect(rows).to_have_count(4, timeout=SLOW)
            await expect(page.get_by_test_id("stat-total")).to_have_text("4", timeout=SLOW)
            await expect(page.get_by_test_id("stat-sev1")).to_have_text("2", timeout=SLOW)
            await expect(page.get_by_test_id("stat-sev2")).to_have_text("1", timeout=SLOW)
            await expect(page.get_by_test_id("stat-delivery")).to_have_text(re.compile(r"^\d+(\.\d)?%$"),
                                                                             timeout=SLOW)
            await expect(page.get_by_test_id("unresolved-badge")).to_have_text("4 unresolved")
            await expect(page.get_by_test_id("connection")).to_have_attribute("data-state", "live")
            await expect(page.get_by_test_id("error-banner")).to_be_hidden()

            # the severity filter narrows the rows
            await page.get_by_test_id("filter-severity").select_option("1")
            await expect(rows).to_have_count(2)
            assert set(await rows.evaluate_all("rs => rs.map(r => r.dataset.severity)")) == {"1"}
            await page.get_by_test_id("filter-severity").select_option("3")
            await expect(rows).to_have_count(1)
            await expect(rows.first).to_have_attribute("data-fingerprint", "storage_threshold:db1")
            await page.get_by_test_id("filter-severity").select_option("")
            await expect(rows).to_have_count(4)

            # SEV1 rows stand out
            sev1 = row(page, "kill_switch_activated:A1")
            sev3 = row(page, "storage_threshold:db1")
            await expect(sev1).to_have_class(re.compile(r"\bsev-1\b"))
            bg = "r => getComputedStyle(r).backgroundColor"
            assert await sev1.evaluate(bg) != await sev3.evaluate(bg)
            await expect(sev1.get_by_test_id("alert-severity")).to_have_text("SEV1")

            # the token acknowledges
            ack_row = row(page, "db_write_fail:orders")
            await ack_row.get_by_test_id("ack-button").click()
            await expect(ack_row).to_have_attribute("data-status", "acknowledged", timeout=SLOW)
            await expect(ack_row.get_by_test_id("alert-status")).to_have_text("acknowledged")
            await expect(page.get_by_test_id("unresolved-badge")).to_have_text("4 unresolved")

            # resolve takes it out of the unresolved count
            await sev3.get_by_test_id("resolve-button").click()
            await expect(sev3).to_have_attribute("data-status", "resolved", timeout=SLOW)
            await expect(page.get_by_test_id("unresolved-badge")).to_have_text("3 unresolved", timeout=SLOW)
            await page.get_by_test_id("filter-status").select_option("acknowledged")
            await expect(rows).to_have_count(1)
            await page.get_by_test_id("filter-status").select_option("")

            # a row shows its delivery attempts: the console channel got every notified alert
            await sev1.get_by_test_id("alert-summary").click()
            await expect(sev1).to_have_attribute("data-selected", "true")
            console = page.locator('[data-testid="delivery-row"][data-channel="console"]')
            await expect(console.first).to_be_visible(timeout=SLOW)
            await expect(console.first).to_have_attribute("data-status", "sent")
            await expect(page.get_by_test_id("deliveries-for")).to_contain_text("Kill switch activated on A1")

            await page.mouse.move(0, 0)
            await expect(page.get_by_test_id("notice")).to_be_hidden(timeout=10_000)
            await page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)

            # the worker gone: the page says so and keeps retrying
            await asyncio.to_thread(w.stop)
            await expect(page.get_by_test_id("error-banner")).to_contain_text("unreachable", timeout=SLOW)
            await expect(page.get_by_test_id("connection")).to_have_attribute("data-state", "down")
        finally:
            await browser.close()

    posts = [r for r in requests if r.method == "POST"]
    assert {r.url.removeprefix(w.url) for r in posts} >= {
        "/api/alerts/db_write_fail%3Aorders/acknowledge", "/api/alerts/storage_threshold%3Adb1/resolve"}
    assert any(r.headers.get("authorization") == f"Bearer {TOKEN}" for r in posts)
    assert not [r.url for r in requests if TOKEN in r.url or "wrong" in r.url]
    assert errors == []
    # the refusals are the reads without the token and with the wrong one
    assert failures and all(f.startswith("401 GET ") for f in failures), failures
