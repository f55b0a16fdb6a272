"""Silences, compatible with Alertmanager's API v2 (and so with ``amtool``).

``GET    /api/v2/silences``            every silence (``filter=<matcher>``, ``active``, ``pending``, ``expired``)
``POST   /api/v2/silences``            set one: ``{"silenceID": ...}``; with an ``id``, updated in place when
                                       Alertmanager would, else the old one expires and a new one is made
``GET    /api/v2/silence/{id}``        one silence
``DELETE /api/v2/silence/{id}``        expire it

Reading is the read surface, writing needs the API token (webauth.py). Errors are a JSON
string, as Alertmanager answers them.

Every version of a silence is a message on ``P.silences`` (key: its id), read by every
worker into its ``SilenceView`` (core/silences.py), which the throttle asks and these views
answer from. A write answers once this worker's view has read it back, so a query that
follows sees it; other workers see it as soon as they have read it (about a fetch's wait).
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
from ..schemas.silence import Silence, iso_millis
from .answers import json_answer

log = logging.getLogger(__name__)

#: longest a request waits for the view to have read the topic (a worker just started)
LOADING_WAIT_S = 10.0


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


# ------------------------------------------------------------------ the API's JSON


class BadSilence(ValueError):
    pass


def gettable(s: Silence, now: dt.datetime) -> dict[str, Any]:
    """Alertmanager's ``gettableSilence`` (plus ``muteResolved``)."""
    return {
        "id": s.id,
        "status": {"state": rules.state_at(s, now).value},
        "updatedAt": iso_millis(s.updated),
        "matchers": [m.model_dump(by_alias=True) for m in s.matchers],
        "startsAt": iso_millis(s.starts_at),
        "endsAt": iso_millis(s.ends_at),
        "createdBy": s.created_by,
        "comment": s.comment,
        "muteResolved": s.mute_resolved,
    }


def postable(raw: bytes) -> tuple[str | None, Silence]:
    """A ``postableSilence`` body: its id (None for a new silence) and the silence it asks for."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadSilence(f"the body is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise BadSilence("the body must be a JSON object (a postableSilence)")
    missing = [k for k in ("matchers", "startsAt", "endsAt") if body.get(k) is None]
    if missing:
        raise BadSilence(f"{missing[0]} in body is required")
    sid = body.get("id")
    if sid is not None and not isinstance(sid, str):
        raise BadSilence("id in body must be a string")
    try:
        new = Silence.model_validate({**body, "id": sid or "new", "updatedAt": None})
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in err["loc"]) or "body"
        raise BadSilence(f"{where}: {err['msg']}") from None
    return sid or None, new


def parse_bool(value: str | None, name: str) -> bool:
    if value is None or value == "":
        return True
    if value.lower() in ("true", "1"):
        return True
    if value.lower() in ("false", "0"):
        return False
    raise BadSilence(f"{name}: expected true or false")


def query(silences: list[Silence], filters: list[str], states: dict[str, bool], now: dt.datetime) -> list[dict[str, Any]]:
    """``GET /api/v2/silences``: the silences matching every filter, in Alertmanager's order."""
    try:
        wanted = [rules.parse_matcher(f) for f in filters]
    except (ValueError, rules.InvalidSilence) as exc:
        raise BadSilence(str(exc)) from None
    hits = [s for s in silences if states[rules.state_at(s, now).value] and rules.filter_matches(s, wanted)]
    hits.sort(key=lambda s: rules.sort_key(s, now))
    return [gettable(s, now) for s in hits]


# ------------------------------------------------------------------ the views


def register(rt: Runtime) -> None:
    from faust import web as faust_web

    app = rt.app
    view = rt.silences = SilenceView(rt.topics.silences.get_topic_name())
    topic = view.topic
    lock = asyncio.Lock()  # this worker's writes, one at a time

    @app.task
    async def _read_silences() -> None:
        await follow(view, rt.settings, lambda: bool(app.should_stop))

    async def unavailable(web: Any) -> Any | None:
        """503 while the view has not read the topic yet (waiting a little for it first)."""
        if not view.loaded.is_set():
            try:
                await asyncio.wait_for(view.loaded.wait(), LOADING_WAIT_S)
            except TimeoutError:
                return json_answer(f"silences are still being read from {topic}", 503)
        return None

    async def publish(versions: list[Silence]) -> None:
        """Each version on the topic, then read back by this worker's view."""
        producer = app.producer
        last: tuple[int, int] | None = None
        for v in versions:
            fut = await producer.send(topic, v.id.encode(), orjson.dumps(v.wire()), None, None, None)
            meta = await fut
            last = (meta.partition, meta.offset)
            if not await view.read_back(*last):
                log.warning("silences: %s@%s not read back within %.0fs", topic, last, READ_BACK_TIMEOUT_S)

    class Silences(faust_web.View):
        async def get(self, request: Any, **kw: Any) -> Any:
            busy = await unavailable(self)
            if busy is not None:
                return busy
            q = request.query
            try:
                states = {name: parse_bool(q.get(name), name) for name in ("active", "pending", "expired")}
                body = query(view.shown(), list(q.getall("filter", [])), states, utcnow())
            except BadSilence as exc:
                return json_answer(str(exc), 400)
            return json_answer(body)

        async def post(self, request: Any, **kw: Any) -> Any:
            busy = await unavailable(self)
            if busy is not None:
                return busy
            try:
                sid, new = postable(await request.read())
            except BadSilence as exc:
                return json_answer(str(exc), 400)
            async with lock:
                prev = view.latest(sid) if sid else None
                if sid and prev is None:
                    return json_answer("silence not found", 404)
                try:
                    result, versions = rules.plan_set(prev, new, utcnow(), str(uuid.uuid4()))
                except rules.InvalidSilence as exc:
                    return json_answer(str(exc), 400)
                await publish(versions)
            log.info("silence %s %s by %s: %s", versions[-1].id, result.value, versions[-1].created_by or "?",
                     ", ".join(str(m) for m in versions[-1].matchers)[:300])
            return json_answer({"silenceID": versions[-1].id})

    class One(faust_web.View):
        async def get(self, request: Any, silence_id: str, **kw: Any) -> Any:
            busy = await unavailable(self)
            if busy is not None:
                return busy
            s = view.latest(silence_id)
            if s is None:
                return json_answer("silence not found", 404)
            return json_answer(gettable(s, utcnow()))

        async def delete(self, request: Any, silence_id: str, **kw: Any) -> Any:
            busy = await unavailable(self)
            if busy is not None:
                return busy
            async with lock:
                prev = view.latest(silence_id)
                if prev is None:
                    return json_answer("silence not found", 404)
                end = rules.expired(prev, utcnow())
                if end is not None:
                    await publish([end])
                    log.info("silence %s expired", prev.id)
            return self.bytes(b"", status=200)

    app.page("/api/v2/silences")(Silences)
    app.page("/api/v2/silence/{silence_id}")(One)
