"""Recipients' preferences over HTTP (decisions/preferences.py).

``GET    /api/preferences``         every recipient of the routing file: its destinations and the
                                    preferences in force now (``source``: ``file`` or ``api``)
``GET    /api/preferences/{name}``  one
``PUT    /api/preferences/{name}``  a person's new preferences (the routing file's
                                    ``[recipients.<name>]`` keys but ``kind`` and ``destinations``),
                                    in force from now on
``DELETE /api/preferences/{name}``  a person's preferences: the routing file's again, from now on

Reading is the read surface, writing needs the API token (auth.py). Only a person's
preferences change here, never a team's (the routing file's owners decide those) and never
its destinations: an API caller can keep alerts from a person's destinations or add more of
them, never send one anywhere the routing file does not say.

Each change is a version on ``P.preferences`` (core/preferences.py), read back by this
worker's view before the answer, so a query that follows sees it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from typing import Any

import orjson
from pydantic import ValidationError

from ..agents.runtime import Runtime
from ..core.follow import follow
from ..core.preferences import PreferenceView, version_message
from ..decisions.config_model import describe
from ..decisions.preferences import Preferences, Recipient, Rule
from ..decisions.routing import PreferencesFile, check_preferences
from . import versions
from .answers import json_answer

log = logging.getLogger(__name__)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def as_json(p: Preferences) -> dict[str, Any]:
    """Preferences in the routing file's (and a PUT body's) keys."""
    def rule(r: Rule) -> dict[str, Any]:
        return {"severities": sorted(r.severities), "types": sorted(r.types), "channels": sorted(r.channels),
                "destinations": list(r.destinations)}

    q = p.quiet_hours
    return {"time_zone": p.time_zone,
            "quiet_hours": {"start": f"{q.start:%H:%M}", "end": f"{q.end:%H:%M}"} if q else None,
            "opt_in": [rule(r) for r in p.opt_in], "opt_out": [rule(r) for r in p.opt_out]}


def shown(r: Recipient, current: tuple[dt.datetime, str, PreferencesFile | None] | None) -> dict[str, Any]:
    """A recipient as the API shows it: the preferences in force now, and where they come from."""
    api = current is not None and current[2] is not None
    prefs = current[2].preferences() if current is not None and current[2] is not None else r.preferences
    return {"name": r.name, "kind": r.kind, "destinations": list(r.destinations),
            "preferences": as_json(prefs), "source": "api" if api else "file",
            "since": current[0].isoformat() if current is not None else None,
            "set_by": current[1] if current is not None else None}


def parse_body(raw: bytes, r: Recipient) -> PreferencesFile:
    """A PUT body as the routing file's keys; ValueError with ``path: what is expected``."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"the body is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ValueError("the body must be a JSON object of preferences (time_zone, quiet_hours, opt_in, opt_out)")
    try:
        prefs = PreferencesFile.model_validate(body)
    except ValidationError as exc:
        raise ValueError(describe(exc, PreferencesFile)) from None
    err = check_preferences(prefs, r.destinations, ())
    if err is not None:
        raise ValueError(str(err).removeprefix(f"{err.setting}: "))
    return prefs


def register(rt: Runtime) -> None:
    from faust import web as faust_web

    app = rt.app
    view = rt.preferences = PreferenceView(rt.topics.preferences.get_topic_name())
    topic = view.topic
    lock = asyncio.Lock()  # this worker's writes, one at a time
    recipients = {r.name: r for r in rt.policy.recipients}

    @app.task
    async def _read_preferences() -> None:
        await follow(view, rt.settings, lambda: bool(app.should_stop))

    async def unavailable() -> Any | None:
        return await versions.unavailable(view, {"error": f"preferences are still being read from {topic}"})

    async def publish(name: str, prefs: PreferencesFile | None) -> None:
        await versions.publish(app.producer, view, name.encode(), version_message(name, utcnow(), "api", prefs))

    def one(name: str) -> dict[str, Any]:
        return shown(recipients[name], view.current(name))

    class All(faust_web.View):
        async def get(self, request: Any, **kw: Any) -> Any:
            busy = await unavailable()
            if busy is not None:
                return busy
            return json_answer({"recipients": [one(n) for n in sorted(recipients)]})

    class One(faust_web.View):
        async def get(self, request: Any, name: str, **kw: Any) -> Any:
            busy = await unavailable()
            if busy is not None:
                return busy
            if name not in recipients:
                return json_answer({"error": f"no recipient {name!r} in the routing file"}, 404)
            return json_answer(one(name))

        async def put(self, request: Any, name: str, **kw: Any) -> Any:
            return await change(name, await request.read())

        async def delete(self, request: Any, name: str, **kw: Any) -> Any:
            return await change(name, None)

    async def change(name: str, raw: bytes | None) -> Any:
        busy = await unavailable()
        if busy is not None:
            return busy
        r = recipients.get(name)
        if r is None:
            return json_answer({"error": f"no recipient {name!r} in the routing file"}, 404)
        if r.kind != "person":
            return json_answer({"error": f"{name} is a team: its preferences are set in the routing file"}, 403)
        prefs = None
        if raw is not None:
            try:
                prefs = parse_body(raw, r)
            except ValueError as exc:
                return json_answer({"error": str(exc)}, 400)
        async with lock:
            await publish(name, prefs)
        log.info("preferences of %s %s through the API", name, "set" if prefs is not None else "reset to the file's")
        return json_answer(one(name))

    app.page("/api/preferences")(All)
    app.page("/api/preferences/{name}")(One)
