"""People's preferences set through the API, read by every worker from ``P.preferences``.

Every change is a message on ``P.preferences`` (key: the person's name), a ``version``: the
person, from when it holds (``since``), who set it, and the preferences (``null``: the routing
file's again). Every worker reads the whole topic into its ``PreferenceView`` (a ``TopicView``),
and the throttle applies, at each alert's event time, the version then in force
(decisions/preferences.in_force), so a replay decides the same. The API is web/preferences.py.
"""

from __future__ import annotations

import datetime as dt
import logging

import orjson
from pydantic import ValidationError

from ..decisions.preferences import Version
from ..decisions.routing import PreferencesFile
from .follow import TopicView

log = logging.getLogger(__name__)


def version_message(name: str, since: dt.datetime, set_by: str, prefs: PreferencesFile | None) -> bytes:
    """The message of one version (the file's model, as the API took it, or None)."""
    return orjson.dumps({"name": name, "since": since.astimezone(dt.UTC).isoformat(), "set_by": set_by,
                         "preferences": prefs.model_dump(mode="json") if prefs is not None else None})


def parse_version(value: bytes) -> tuple[str, dt.datetime, str, PreferencesFile | None]:
    doc = orjson.loads(value)
    if not isinstance(doc, dict) or not isinstance(doc.get("name"), str) or not isinstance(doc.get("since"), str):
        raise ValueError("not a preferences version: name and since are required")
    since = dt.datetime.fromisoformat(doc["since"])
    if since.tzinfo is None:
        raise ValueError("since has no time zone")
    prefs = doc.get("preferences")
    return (doc["name"], since, str(doc.get("set_by", "")),
            PreferencesFile.model_validate(prefs) if prefs is not None else None)


class PreferenceView(TopicView):
    """Every version of every person's preferences, by name, in the topic's order."""

    what = "preferences"

    def __init__(self, topic: str) -> None:
        super().__init__(topic)
        #: by name: (since, set by, the file's model or None) as the API shows them
        self.shown: dict[str, list[tuple[dt.datetime, str, PreferencesFile | None]]] = {}
        #: by name: the same as the throttle applies them
        self.versions: dict[str, list[Version]] = {}
        self._bad: set[tuple[int, int]] = set()

    def take(self, partition: int, offset: int, value: bytes | None) -> None:
        try:
            if value is None:
                raise ValueError("no value (a tombstone)")
            name, since, by, prefs = parse_version(value)
            entry = (since, by, prefs)
            shown = self.shown.setdefault(name, [])
            if entry not in shown:  # the topic read again changes nothing
                shown.append(entry)
                self.versions.setdefault(name, []).append(
                    Version(since, prefs.preferences() if prefs is not None else None))
        except (ValidationError, ValueError, TypeError, orjson.JSONDecodeError) as exc:
            if (partition, offset) not in self._bad:
                self._bad.add((partition, offset))
                log.warning("%s/%d@%d is not a preferences version, ignored: %s", self.topic, partition, offset,
                            str(exc).replace("\n", " ")[:300])
        self.positions[partition] = offset + 1

    def count(self) -> int:
        return len(self.shown)

    def current(self, name: str) -> tuple[dt.datetime, str, PreferencesFile | None] | None:
        """The latest version set for ``name`` (by its ``since``), or None."""
        shown = self.shown.get(name)
        return max(shown, key=lambda e: e[0]) if shown else None
