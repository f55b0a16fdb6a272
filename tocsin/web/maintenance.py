"""One-off maintenance windows: set, listed and expired as silences are (web/silences.py).

``GET    /api/maintenance``        every window (``filter=<matcher>``, ``active``, ``pending``, ``expired``)
``POST   /api/maintenance``        set one: ``{"windowID": ...}``; with an ``id``, updated in place where
                                   that cannot rewrite the past, else the old one expires and a new one is made
``GET    /api/maintenance/{id}``   one window
``DELETE /api/maintenance/{id}``   expire it

Reading is the read surface, writing needs the API token (web/auth.py). Every version of a
window is a message on ``P.maintenance`` (key: its id), read by every worker into a
``SilenceView`` of ``MaintenanceWindow`` (``rt.maintenance``), which the throttle asks at each
alert's event time (agents/maintenance.py). A write answers once this worker has read it back.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import uuid
from typing import Any

import orjson
from pydantic import ValidationError

from ..agents.runtime import Runtime
from ..core.follow import follow
from ..core.silences import READ_BACK_TIMEOUT_S, SilenceView
from ..decisions import silence as rules
from ..schemas.maintenance import MaintenanceWindow
from ..schemas.silence import iso_millis
from .answers import json_answer
from .silences import LOADING_WAIT_S, BadSilence, parse_bool

log = logging.getLogger(__name__)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def gettable(w: MaintenanceWindow, now: dt.datetime) -> dict[str, Any]:
    return {
        "id": w.id,
        "name": w.name,
        "status": {"state": rules.state_at(w, now).value},
        "updatedAt": iso_millis(w.updated),
        "matchers": [m.model_dump(by_alias=True) for m in w.matchers],
        "startsAt": iso_millis(w.starts_at),
        "endsAt": iso_millis(w.ends_at),
        "createdBy": w.created_by,
        "comment": w.comment,
    }


def postable(raw: bytes) -> tuple[str | None, MaintenanceWindow]:
    """A posted window: its id (None for a new one) and the window it asks for."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadSilence(f"the body is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise BadSilence("the body must be a JSON object (a maintenance window)")
    missing = [k for k in ("matchers", "startsAt", "endsAt") if body.get(k) is None]
    if missing:
        raise BadSilence(f"{missing[0]} in body is required")
    wid = body.get("id")
    if wid is not None and not isinstance(wid, str):
        raise BadSilence("id in body must be a string")
    if "muteResolved" in body:
        raise BadSilence("muteResolved: a maintenance window never mutes the recovery of a notified alert")
    try:
        new = MaintenanceWindow.model_validate({**body, "id": wid or "new", "updatedAt": None})
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in err["loc"]) or "body"
        raise BadSilence(f"{where}: {err['msg']}") from None
    return wid or None, new


def query(windows: list[MaintenanceWindow], filters: list[str], states: dict[str, bool],
          now: dt.datetime) -> list[dict[str, Any]]:
    """The windows matching every filter (a filter is one of a window's matchers), active
    first, then pending, then expired."""
    try:
        wanted = [rules.parse_matcher(f) for f in filters]
    except (ValueError, rules.InvalidSilence) as exc:
        raise BadSilence(str(exc)) from None
    hits = [w for w in windows if states[rules.state_at(w, now).value] and rules.filter_matches(w, wanted)]
    hits.sort(key=lambda w: rules.sort_key(w, now))
    return [gettable(w, now) for w in hits]


def register(rt: Runtime) -> None:
    from faust import web as faust_web

    app = rt.app
    view = rt.maintenance = SilenceView(rt.topics.maintenance.get_topic_name(), MaintenanceWindow)
    topic = view.topic
    lock = asyncio.Lock()

    @app.task
    async def _read_maintenance() -> None:
        await follow(view, rt.settings, lambda: bool(app.should_stop))

    async def unavailable() -> Any | None:
        if not view.loaded.is_set():
            try:
                await asyncio.wait_for(view.loaded.wait(), LOADING_WAIT_S)
            except TimeoutError:
                return json_answer(f"maintenance windows are still being read from {topic}", 503)
        return None

    async def publish(versions: list[Any]) -> None:
        for v in versions:
            fut = await app.producer.send(topic, v.id.encode(), orjson.dumps(v.wire()), None, None, None)
            meta = await fut
            if not await view.read_back(meta.partition, meta.offset):
                log.warning("maintenance: %s@%s not read back within %.0fs", topic, (meta.partition, meta.offset),
                            READ_BACK_TIMEOUT_S)

    def shown() -> list[MaintenanceWindow]:
        return [w for w in view.shown() if isinstance(w, MaintenanceWindow)]

    def latest(wid: str) -> MaintenanceWindow | None:
        w = view.latest(wid)
        return w if isinstance(w, MaintenanceWindow) else None

    class Windows(faust_web.View):
        async def get(self, request: Any, **kw: Any) -> Any:
            busy = await unavailable()
            if busy is not None:
                return busy
            q = request.query
            try:
                states = {name: parse_bool(q.get(name), name) for name in ("active", "pending", "expired")}
                body = query(shown(), list(q.getall("filter", [])), states, utcnow())
            except BadSilence as exc:
                return json_answer(str(exc), 400)
            return json_answer(body)

        async def post(self, request: Any, **kw: Any) -> Any:
            busy = await unavailable()
            if busy is not None:
                return busy
            try:
                wid, new = postable(await request.read())
            except BadSilence as exc:
                return json_answer(str(exc), 400)
            async with lock:
                prev = latest(wid) if wid else None
                if wid and prev is None:
                    return json_answer("maintenance window not found", 404)
                try:
                    result, versions = rules.plan_set(prev, new, utcnow(), str(uuid.uuid4()))
                except rules.InvalidSilence as exc:
                    return json_answer(str(exc).replace("silence", "maintenance window"), 400)
                await publish(versions)
            last = versions[-1]
            log.info("maintenance window %s %s by %s: %s", last.id, result.value, last.created_by or "?",
                     ", ".join(str(m) for m in last.matchers)[:300])
            return json_answer({"windowID": last.id})

    class One(faust_web.View):
        async def get(self, request: Any, window_id: str, **kw: Any) -> Any:
            busy = await unavailable()
            if busy is not None:
                return busy
            w = latest(window_id)
            if w is None:
                return json_answer("maintenance window not found", 404)
            return json_answer(gettable(w, utcnow()))

        async def delete(self, request: Any, window_id: str, **kw: Any) -> Any:
            busy = await unavailable()
            if busy is not None:
                return busy
            async with lock:
                prev = latest(window_id)
                if prev is None:
                    return json_answer("maintenance window not found", 404)
                end = rules.expired(prev, utcnow())
                if end is not None:
                    await publish([end])
                    log.info("maintenance window %s expired", prev.id)
            return self.bytes(b"", status=200)

    app.page("/api/maintenance")(Windows)
    app.page("/api/maintenance/{window_id}")(One)
