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
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import orjson
from pydantic import ValidationError

from ..agents.runtime import Runtime
from ..core.follow import follow
from ..core.silences import SilenceView
from ..decisions import silence as rules
from ..schemas.silence import Silence, iso_millis
from . import versions as versions_
from .answers import json_answer

log = logging.getLogger(__name__)

S = TypeVar("S", bound=Silence)


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


def postable(raw: bytes, model: type[S] = Silence, kind: str = "a postableSilence",  # type: ignore[assignment]
             refused: Mapping[str, str] | None = None) -> tuple[str | None, S]:
    """A ``postableSilence`` body (or one of ``model``, named ``kind`` in errors): its id (None for a
    new one) and what it asks for. A key of ``refused`` in the body is refused with its reason."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadSilence(f"the body is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise BadSilence(f"the body must be a JSON object ({kind})")
    missing = [k for k in ("matchers", "startsAt", "endsAt") if body.get(k) is None]
    if missing:
        raise BadSilence(f"{missing[0]} in body is required")
    sid = body.get("id")
    if sid is not None and not isinstance(sid, str):
        raise BadSilence("id in body must be a string")
    for key, why in (refused or {}).items():
        if key in body:
            raise BadSilence(f"{key}: {why}")
    try:
        new = model.model_validate({**body, "id": sid or "new", "updatedAt": None})
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


def query(silences: Sequence[S], filters: list[str], states: dict[str, bool], now: dt.datetime,
          show: Callable[[S, dt.datetime], dict[str, Any]] = gettable) -> list[dict[str, Any]]:
    """``GET /api/v2/silences``: the silences matching every filter, in Alertmanager's order
    (active, then pending, then expired), each as ``show`` answers it."""
    try:
        wanted = [rules.parse_matcher(f) for f in filters]
    except (ValueError, rules.InvalidSilence) as exc:
        raise BadSilence(str(exc)) from None
    hits = [s for s in silences if states[rules.state_at(s, now).value] and rules.filter_matches(s, wanted)]
    hits.sort(key=lambda s: rules.sort_key(s, now))
    return [show(s, now) for s in hits]


# ------------------------------------------------------------------ the views


def register(rt: Runtime) -> None:
    app = rt.app
    view = rt.silences = SilenceView(rt.topics.silences.get_topic_name())

    @app.task
    async def _read_silences() -> None:
        await follow(view, rt.settings, lambda: bool(app.should_stop))

    pages(rt, view, "/api/v2/silences", "/api/v2/silence/{silence_id}", id_key="silenceID",
          noun="silence", nouns="silences", show=gettable, read=postable)


def pages(rt: Runtime, view: SilenceView, path: str, one_path: str, *, id_key: str, noun: str, nouns: str,
          show: Callable[[Any, dt.datetime], dict[str, Any]],
          read: Callable[[bytes], tuple[str | None, Silence]]) -> None:
    """``path`` (list, set) and ``one_path`` (get, expire) over ``view``, a silence (or a model
    of it such as a maintenance window) called ``noun`` in answers; a set answers its id as ``id_key``."""
    from faust import web as faust_web

    app = rt.app
    topic = view.topic
    lock = asyncio.Lock()  # this worker's writes, one at a time
    param = one_path.rsplit("{", 1)[1].rstrip("}")
    loading = f"{nouns} are still being read from {topic}"
    not_found = f"{noun} not found"

    async def publish(versions: list[Silence]) -> None:
        for v in versions:
            await versions_.publish(app.producer, view, v.id.encode(), orjson.dumps(v.wire()))

    def latest(sid: str) -> Silence | None:
        s = view.latest(sid)
        return s if isinstance(s, view.model) else None

    class Many(faust_web.View):
        async def get(self, request: Any, **kw: Any) -> Any:
            busy = await versions_.unavailable(view, loading)
            if busy is not None:
                return busy
            q = request.query
            try:
                states = {name: parse_bool(q.get(name), name) for name in ("active", "pending", "expired")}
                shown = [s for s in view.shown() if isinstance(s, view.model)]
                body = query(shown, list(q.getall("filter", [])), states, utcnow(), show)
            except BadSilence as exc:
                return json_answer(str(exc), 400)
            return json_answer(body)

        async def post(self, request: Any, **kw: Any) -> Any:
            busy = await versions_.unavailable(view, loading)
            if busy is not None:
                return busy
            try:
                sid, new = read(await request.read())
            except BadSilence as exc:
                return json_answer(str(exc), 400)
            async with lock:
                prev = latest(sid) if sid else None
                if sid and prev is None:
                    return json_answer(not_found, 404)
                try:
                    result, versions = rules.plan_set(prev, new, utcnow(), str(uuid.uuid4()))
                except rules.InvalidSilence as exc:
                    return json_answer(str(exc).replace("silence", noun), 400)
                await publish(versions)
            last = versions[-1]
            log.info("%s %s %s by %s: %s", noun, last.id, result.value, last.created_by or "?",
                     ", ".join(str(m) for m in last.matchers)[:300])
            return json_answer({id_key: last.id})

    class One(faust_web.View):
        async def get(self, request: Any, **kw: Any) -> Any:
            busy = await versions_.unavailable(view, loading)
            if busy is not None:
                return busy
            s = latest(kw[param])
            if s is None:
                return json_answer(not_found, 404)
            return json_answer(show(s, utcnow()))

        async def delete(self, request: Any, **kw: Any) -> Any:
            busy = await versions_.unavailable(view, loading)
            if busy is not None:
                return busy
            async with lock:
                prev = latest(kw[param])
                if prev is None:
                    return json_answer(not_found, 404)
                end = rules.expired(prev, utcnow())
                if end is not None:
                    await publish([end])
                    log.info("%s %s expired", noun, prev.id)
            return self.bytes(b"", status=200)

    app.page(path)(Many)
    app.page(one_path)(One)
