"""The one place bytes become objects: an orjson codec registered with Faust as ``tocsin``."""

from __future__ import annotations

import enum
from typing import Any

import orjson
from faust.serializers import codecs
from pydantic import BaseModel


def _default(obj: Any) -> Any:
    if isinstance(obj, BaseModel):
        return obj.model_dump(mode="python")
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, set | frozenset):
        return list(obj)
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")


_OPTS = orjson.OPT_UTC_Z | orjson.OPT_NON_STR_KEYS


def dumps(obj: Any) -> bytes:
    """Encode a model or plain value as UTF-8 JSON (datetimes as RFC 3339, UTC as Z)."""
    return orjson.dumps(obj, default=_default, option=_OPTS)


def loads(data: bytes | bytearray | memoryview | str) -> Any:
    return orjson.loads(data)


class OrjsonCodec(codecs.Codec):
    def _dumps(self, obj: Any) -> bytes:
        return dumps(obj)

    def _loads(self, s: bytes) -> Any:
        return loads(s)


CODEC_NAME = "tocsin"
codecs.register(CODEC_NAME, OrjsonCodec())
