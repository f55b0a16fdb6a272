"""The HTTP surfaces of a real worker as an attacker would try them (issue #14's findings):
Faust's own views, analyst SQL reading files and the environment, cross-site requests, a worker
exposed without a token, and fingerprints that look URL-encoded."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest

from tocsin.infra.broker import free_port

from .harness import Stack, produce
from .test_api import get, until
from .test_pipeline import alert_bytes, bucket_time

pytestmark = pytest.mark.integration
API, READ = "api-token-for-tests", "read-token-for-tests"
SECRET = "smtp-password-never-shown"


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def call(s: aiohttp.ClientSession, method: str, url: str, **kw: Any) -> tuple[int, Any]:
    async with s.request(method, url, **kw) as r:
        return r.status, await r.json(content_type=None) if r.content_type == "application/json" else await r.text()


async def test_with_tokens_every_surface_but_health_and_metrics_needs_one(stack: Stack) -> None:
    w = await stack.start_worker(TOCSIN_API_TOKEN=API, TOCSIN_READ_TOKEN=READ, TOCSIN_RECORD_ENABLED="true",
                                 TOCSIN_SMTP_PASSWORD=SECRET)
    async with aiohttp.ClientSession() as s:
        for path in ("/health", "/metrics", "/", "/static/app.js"):
            assert (await call(s, "GET", w.url + path))[0] == 200, path
        # Faust's own views: open before, now the API token's
        for path in ("/router/", "/table/", "/stats/"):
            status, body = await call(s, "GET", w.url + path)
            assert status == 401 and "token" in body["error"], path
            assert (await call(s, "GET", w.url + path, headers=auth(READ)))[0] == 403, path
        status, _ = await call(s, "GET", w.url + "/router/", headers=auth(API))
        assert status == 200
        # reads: either token
        assert (await call(s, "GET", w.url + "/api/alerts"))[0] == 401
        assert (await call(s, "GET", w.url + "/api/alerts", headers=auth(READ)))[0] == 200
        # writes: the API token only
        status, _ = await call(s, "POST", w.url + "/api/alerts/x:1/resolve", headers=auth(READ), json={})
        assert status == 403

        # SQL reads no file, no environment, no address of the caller's choosing
        sql = w.url + "/api/sql"
        status, body = await until_store(s, sql)
        for text in ("SELECT * FROM file('/proc/self/environ', 'RawBLOB')",
                     "SELECT file('/proc/self/environ')",
                     "SELECT 1; SELECT * FROM file('/proc/self/environ', 'RawBLOB')"):
            status, body = await call(s, "POST", sql, headers=auth(READ), json={"sql": text})
            assert status == 400 and SECRET not in str(body) and API not in str(body), text
        started = time.monotonic()
        status, body = await call(s, "POST", sql, headers=auth(READ),
                                  json={"sql": f"SELECT * FROM url('http://127.0.0.1:{free_port()}/', 'RawBLOB')"})
        assert status == 400 and "url()" in body["error"]
        assert time.monotonic() - started < 5  # refused before anything is fetched
        status, body = await call(s, "POST", sql, headers=auth(READ), json={"sql": "SELECT count() AS n FROM tocsin.alerts"})
        assert status == 200 and body["columns"] == ["n"]
        # cross-site: another origin, a form post
        status, _ = await call(s, "POST", sql, headers={**auth(READ), "Origin": "http://evil.example"},
                               json={"sql": "SELECT 1"})
        assert status == 403
        status, _ = await call(s, "POST", sql, headers={**auth(READ), "Content-Type": "text/plain"},
                               data=b'{"sql": "SELECT 1"}')
        assert status == 415
    log = w.log_tail(100_000)
    assert API not in log and READ not in log and SECRET not in log


async def until_store(s: aiohttp.ClientSession, url: str, timeout: float = 40) -> tuple[int, Any]:
    """The record agent opens the store shortly after the worker is ready."""
    deadline = time.monotonic() + timeout
    while True:
        status, body = await call(s, "POST", url, headers=auth(READ), json={"sql": "SELECT 1"})
        if status == 200 or time.monotonic() > deadline:
            return status, body
        await asyncio.sleep(0.3)


async def test_without_a_token_reads_are_open_and_sql_writes_views_refused(stack: Stack) -> None:
    w = await stack.start_worker()
    async with aiohttp.ClientSession() as s:
        assert (await call(s, "GET", w.url + "/api/alerts"))[0] == 200
        status, body = await call(s, "POST", w.url + "/api/sql", json={"sql": "SELECT 1"})
        assert status == 403 and "TOCSIN_READ_TOKEN" in body["error"]
        assert (await call(s, "GET", w.url + "/api/sql/stats"))[0] == 403
        assert (await call(s, "GET", w.url + "/router/"))[0] == 403
        assert (await call(s, "GET", w.url + "/table/"))[0] == 403
        # DNS rebinding: a page on evil.example resolving to 127.0.0.1
        assert (await call(s, "GET", w.url + "/api/alerts", headers={"Host": "evil.example"}))[0] == 403


def test_a_worker_bound_beyond_loopback_refuses_to_start_without_a_token(stack: Stack) -> None:
    env = {**stack.worker().env, "TOCSIN_WEB_HOST": "0.0.0.0"}
    env.pop("TOCSIN_API_TOKEN", None)
    r = subprocess.run([sys.executable, "-m", "tocsin.cli.main", "worker"], env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0
    assert "TOCSIN_API_TOKEN" in r.stderr and "0.0.0.0" in r.stderr


FINGERPRINTS = ["custom%3AX%3Ay", "custom:X:y", "a/b", "with space", "snow☃:ü", "100%", "x%2Fy"]


async def test_a_fingerprint_in_a_path_is_decoded_exactly_once(stack: Stack) -> None:
    w = await stack.start_worker(TOCSIN_API_TOKEN=API)
    items = [alert_bytes(type="db_write_fail", severity=3, summary=f"fp {fp}", fingerprint=fp,
                         event_timestamp=bucket_time(i)) for i, fp in enumerate(FINGERPRINTS)]
    await produce(stack.bootstrap, stack.topic("alerts"), items)
    async with aiohttp.ClientSession(headers=auth(API)) as s:
        await until(s, f"{w.url}/api/alerts", lambda b: b["total"] == len(FINGERPRINTS))
        for resolved, fp in enumerate(FINGERPRINTS, 1):
            # as the dashboard sends it: encodeURIComponent
            url = f"{w.url}/api/alerts/{quote(fp, safe='')}/resolve"
            async with s.post(url, json={"by": "t"}) as r:
                assert r.status == 202, await r.text()
                assert (await r.json())["fingerprint"] == fp
            body = await until(s, f"{w.url}/api/alerts?status=resolved&limit=50",
                               lambda b, n=resolved: b["total"] == n)
            assert {i["fingerprint"] for i in body["items"]} == set(FINGERPRINTS[:resolved])
        status, body = await get(s, f"{w.url}/api/alerts?status=active")
        assert status == 200 and body["total"] == 0
