"""``tocsin maintenance add|list|expire``: one-off maintenance windows, through the worker's API
(``/api/maintenance``, web/maintenance.py), with ``TOCSIN_API_TOKEN`` (or the read token to list)."""

from __future__ import annotations

import datetime as dt
import getpass
import json
import re
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import typer

from ..decisions.silence import parse_matcher
from ..schemas.alert import parse_timestamp
from ..schemas.silence import SilenceMatcher, iso_millis
from .main import cli, fail, settings_or_fail

maintenance_cli = typer.Typer(help="One-off maintenance windows: alerts they match are recorded as muted, "
                                   "not notified (recoveries of alerts notified before them still are).",
                              no_args_is_help=True)
cli.add_typer(maintenance_cli, name="maintenance")

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}

UrlFlag = typer.Option(None, "--url", help="the worker's address (default http://TOCSIN_WEB_HOST:TOCSIN_WEB_PORT)")


def parse_duration(text: str) -> dt.timedelta:
    """``90m``, ``2h``, ``1.5d``, ``30s``."""
    m = _DURATION.match(text)
    if not m or float(m.group(1)) <= 0:
        raise ValueError(f"not a duration: {text!r} (a number > 0 and s, m, h or d: 90m, 2h)")
    return dt.timedelta(seconds=float(m.group(1)) * _UNIT_S[m.group(2)])


def window_body(matchers: list[str], start: dt.datetime, end: dt.datetime, name: str, comment: str,
                created_by: str, window_id: str | None = None) -> dict[str, Any]:
    """The body ``POST /api/maintenance`` takes (``ValueError`` for a matcher that is not one)."""
    body: dict[str, Any] = {
        "name": name, "matchers": [parse_matcher(m).model_dump(by_alias=True) for m in matchers],
        "startsAt": iso_millis(start), "endsAt": iso_millis(end), "createdBy": created_by, "comment": comment}
    if window_id:
        body["id"] = window_id
    return body


def _request(url: str | None, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    s = settings_or_fail()
    base = (url or f"http://{s.web_host}:{s.web_port}").rstrip("/")
    headers = {"Content-Type": "application/json"} if body is not None else {}
    token = s.api_token or (s.read_token if method == "GET" else None)
    if token is not None:
        headers["Authorization"] = "Bearer " + token.get_secret_value()
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(base + path, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:  # noqa: S310 (the worker's address)
            status, text = resp.status, resp.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        status, text = exc.code, exc.read().decode("utf-8", "replace")
    except (urllib.error.URLError, OSError) as exc:
        fail(f"no worker answers on {base} ({type(exc).__name__}); start one, or give --url")
    try:
        answer = json.loads(text) if text else None
    except ValueError:
        answer = text
    if status >= 400:
        why = answer.get("error", answer) if isinstance(answer, dict) else answer
        fail(f"{method} {path}: {status}: {why}")
    return status, answer


@maintenance_cli.command("add")
def add(
    matcher: list[str] = typer.Option(..., "--matcher", "-m", help='which alerts: service="orders" (repeat: all must match)'),
    name: str = typer.Option("", "--name", help="what the window is for (shown in every muted alert's reason)"),
    start: str = typer.Option(None, "--start", help="RFC 3339 with an offset; default now"),
    end: str = typer.Option(None, "--end", help="RFC 3339 with an offset (or --duration)"),
    duration: str = typer.Option(None, "--duration", help="from the start: 90m, 2h, 1d"),
    comment: str = typer.Option("", "--comment"),
    created_by: str = typer.Option(None, "--created-by", help="default: the user name"),
    window_id: str = typer.Option(None, "--id", help="change this window (in place where that cannot change the past)"),
    url: str = UrlFlag,
) -> None:
    """Set a one-off maintenance window; prints its id."""
    if (end is None) == (duration is None):
        fail("give one of --end and --duration")
    try:
        begin = parse_timestamp(start) if start else dt.datetime.now(dt.UTC)
        finish = parse_timestamp(end) if end else begin + parse_duration(duration)
        body = window_body(matcher, begin, finish, name, comment, created_by or getpass.getuser(), window_id)
    except ValueError as exc:
        fail(str(exc).splitlines()[0])
    _, answer = _request(url, "POST", "/api/maintenance", body)
    typer.echo(answer["windowID"])


@maintenance_cli.command("list")
def list_(
    expired: bool = typer.Option(False, "--expired", help="the expired ones too"),
    as_json: bool = typer.Option(False, "--json", help="the API's JSON list"),
    url: str = UrlFlag,
) -> None:
    """The maintenance windows: active, then pending (and expired with --expired)."""
    _, answer = _request(url, "GET", f"/api/maintenance?expired={'true' if expired else 'false'}")
    if as_json:
        typer.echo(json.dumps(answer, indent=2))
        return
    if not answer:
        typer.echo("no maintenance windows")
        return
    for w in answer:
        matchers = ", ".join(str(SilenceMatcher.model_validate(m)) for m in w["matchers"])
        typer.echo(f'{w["id"]}  {w["status"]["state"]:<7}  {w["startsAt"]} .. {w["endsAt"]}  '
                   f'{w["name"] or "-"}  {matchers}  by {w["createdBy"] or "?"}')


@maintenance_cli.command("expire")
def expire(window_id: list[str] = typer.Argument(..., help="the windows' ids"), url: str = UrlFlag) -> None:
    """End maintenance windows now (a pending one never begins)."""
    for wid in window_id:
        _request(url, "DELETE", f"/api/maintenance/{urllib.parse.quote(wid, safe='')}")
        typer.echo(f"expired {wid}")
