"""Silences, compatible with Alertmanager's API v2 (and so with ``amtool``).

``GET    /api/v2/silences``            every silence (``filter=<matcher>``, ``active``, ``pending``, ``expired``)
``POST   /api/v2/silences``            set one: ``{"silenceID": ...}``; with an ``id``, updated in place when
                                       Alertmanager would, else the old one expires and a new one is made
``GET    /api/v2/silence/{id}``        one silence
``DELETE /api/v2/silence/{id}``        expire it

Reading is the read surface, writing needs the API token (webauth.py). Errors are a JSON
string, as Alertmanager answers them.

Every version of a silence is a message on ``P.silences`` (key: its id). Every worker reads
the whole topic from its beginning into a ``SilenceView`` (a plain consumer of its own, no
group), and the throttle asks it at each alert's event time (decisions/silence.py); the
throttle starts deciding once the view has read what the topic held when the worker started.
A write answers once this worker's view has read it back, so a query that follows sees it;
other workers see it as soon as they have read it (about a fetch's wait).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import uuid
from collections.abc import Callable
from typing import Any

import orjson
from pydantic import ValidationError

from ..decisions import silence as rules
from ..schemas.codec import loads
from ..schemas.silence import Silence, iso_millis

log = logging.getLogger(__name__)

#: longest the throttle waits, at start, for the view to read the topic before it decides
#: without it (a worker that cannot read P.silences still notifies)
LOAD_TIMEOUT_S = 60.0
#: longest a write waits for this worker's view to read it back
READ_BACK_TIMEOUT_S = 10.0
#: longest a request waits for the view to have read the topic (a worker just started)
LOADING_WAIT_S = 10.0


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class SilenceView:
    """Every version of every silence, by id, in the topic's order (``versions``), and the same
    compiled for the throttle (``index``)."""

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self.versions: dict[str, list[Silence]] = {}
        self.index = rules.SilenceIndex()
        self.positions: dict[int, int] = {}  # partition -> next offset to read
        self.loaded = asyncio.Event()
        self._moved = asyncio.Event()
        self._bad: set[tuple[int, int]] = set()

    def apply(self, version: Silence) -> None:
        versions = self.versions.setdefault(version.id, [])
        if version not in versions:  # the same version read again (the topic read again) changes nothing
            versions.append(version)
            self.index.set(version.id, versions)

    def take(self, partition: int, offset: int, value: bytes | None) -> None:
        """One message of the topic."""
        try:
            if value is None:
                raise ValueError("no value (a tombstone)")
            self.apply(Silence.model_validate(loads(value)))
        except (ValidationError, ValueError, TypeError) as exc:
            if (partition, offset) not in self._bad:
                self._bad.add((partition, offset))
                log.warning("%s/%d@%d is not a silence, ignored: %s", self.topic, partition, offset,
                            str(exc).replace("\n", " ")[:300])
        self.positions[partition] = offset + 1

    def latest(self, silence_id: str) -> Silence | None:
        versions = self.versions.get(silence_id)
        return rules.latest(versions) if versions else None

    def shown(self) -> list[Silence]:
        return [rules.latest(v) for v in self.versions.values() if v]

    async def read_back(self, partition: int, offset: int, timeout_s: float = READ_BACK_TIMEOUT_S) -> bool:
        """Wait until the view has read ``offset`` of ``partition``."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while self.positions.get(partition, 0) <= offset:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                return False
            self._moved.clear()
            try:
                await asyncio.wait_for(self._moved.wait(), min(left, 0.5))
            except TimeoutError:
                pass
        return True

    async def run(self, settings: Any, should_stop: Callable[[], bool]) -> None:
        """Read the topic from its beginning, for ever (until ``should_stop``)."""
        from aiokafka import AIOKafkaConsumer, TopicPartition

        from ..infra.kafka import client_kwargs, end_offsets

        consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False,
                                    auto_offset_reset="earliest", fetch_max_wait_ms=settings.fetch_max_wait_ms * 10,
                                    client_id=f"{settings.app_id}-silences", **client_kwargs(settings))
        await consumer.start()
        try:
            parts: set[int] = set()
            while not parts and not should_stop():
                parts = consumer.partitions_for_topic(self.topic) or set()
                if not parts:
                    await consumer.topics()  # refreshes the metadata
                    await asyncio.sleep(0.2)
            tps = [TopicPartition(self.topic, p) for p in sorted(parts)]
            ends = await end_offsets(consumer, tps)  # leaves the consumer assigned to tps
            await consumer.seek_to_beginning(*tps)
            begins = await consumer.beginning_offsets(tps)
            todo = {tp.partition: ends[tp] for tp in tps if ends[tp] > begins[tp]}
            for tp in tps:
                self.positions.setdefault(tp.partition, begins[tp])
            log.info("silences: reading %s (%d messages)", self.topic, sum(ends[tp] - begins[tp] for tp in tps))
            while not should_stop():
                if not self.loaded.is_set() and all(self.positions.get(p, 0) >= end for p, end in todo.items()):
                    self.loaded.set()
                    log.info("silences: %d read from %s", len(self.versions), self.topic)
                batch = await consumer.getmany(timeout_ms=200, max_records=1000)
                for tp, msgs in batch.items():
                    for msg in msgs:
                        self.take(tp.partition, msg.offset, msg.value)
                if batch:
                    self._moved.set()
        finally:
            await consumer.stop()


def view_of(rt: Any) -> SilenceView | None:
    return rt.extras.get("silences")


async def wait_loaded(rt: Any, timeout_s: float = LOAD_TIMEOUT_S) -> None:
    """For the throttle: wait until the view has read the topic (or ``timeout_s``)."""
    view = view_of(rt)
    if view is None:
        return
    try:
        await asyncio.wait_for(view.loaded.wait(), timeout_s)
    except TimeoutError:
        log.error("silences: %s not read within %.0fs; deciding without silences until it is", view.topic,
                  timeout_s)


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


def register(rt: Any) -> None:
    from faust import web as faust_web

    app = rt.app
    view = SilenceView(rt.topics.silences.get_topic_name())
    rt.extras["silences"] = view
    topic = view.topic
    lock = asyncio.Lock()  # this worker's writes, one at a time

    @app.task
    async def _read_silences() -> None:
        while not app.should_stop:
            try:
                await view.run(rt.settings, lambda: bool(app.should_stop))
            except asyncio.CancelledError:
                raise
            except Exception:  # the view must go on: read again from the beginning
                log.exception("silences: reading %s failed; reading it again", topic)
                await asyncio.sleep(1.0)

    def answer(web: Any, body: Any, status: int = 200) -> Any:
        return web.bytes(orjson.dumps(body), content_type="application/json", status=status)

    async def unavailable(web: Any) -> Any | None:
        """503 while the view has not read the topic yet (waiting a little for it first)."""
        if not view.loaded.is_set():
            try:
                await asyncio.wait_for(view.loaded.wait(), LOADING_WAIT_S)
            except TimeoutError:
                return answer(web, f"silences are still being read from {topic}", 503)
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
                return answer(self, str(exc), 400)
            return answer(self, body)

        async def post(self, request: Any, **kw: Any) -> Any:
            busy = await unavailable(self)
            if busy is not None:
                return busy
            try:
                sid, new = postable(await request.read())
            except BadSilence as exc:
                return answer(self, str(exc), 400)
            async with lock:
                prev = view.latest(sid) if sid else None
                if sid and prev is None:
                    return answer(self, "silence not found", 404)
                try:
                    result, versions = rules.plan_set(prev, new, utcnow(), str(uuid.uuid4()))
                except rules.InvalidSilence as exc:
                    return answer(self, str(exc), 400)
                await publish(versions)
            log.info("silence %s %s by %s: %s", versions[-1].id, result.value, versions[-1].created_by or "?",
                     ", ".join(str(m) for m in versions[-1].matchers)[:300])
            return answer(self, {"silenceID": versions[-1].id})

    class One(faust_web.View):
        async def get(self, request: Any, silence_id: str, **kw: Any) -> Any:
            busy = await unavailable(self)
            if busy is not None:
                return busy
            s = view.latest(silence_id)
            if s is None:
                return answer(self, "silence not found", 404)
            return answer(self, gettable(s, utcnow()))

        async def delete(self, request: Any, silence_id: str, **kw: Any) -> Any:
            busy = await unavailable(self)
            if busy is not None:
                return busy
            async with lock:
                prev = view.latest(silence_id)
                if prev is None:
                    return answer(self, "silence not found", 404)
                end = rules.expired(prev, utcnow())
                if end is not None:
                    await publish([end])
                    log.info("silence %s expired", prev.id)
            return self.bytes(b"", status=200)

    app.page("/api/v2/silences")(Silences)
    app.page("/api/v2/silence/{silence_id}")(One)
