"""What an error of clickhouse-connect (or of ClickHouse through it) says, read for Tocsin.

``describe_error`` makes it one short line with every secret as ``***`` (the text of a
``StoreError``); ``refused_as_data`` tells an insert whose data was refused, so that sending
the same rows again cannot work (a ``DataRefusedError``), from one that may succeed later.
The exceptions themselves are in ``tocsin/errors.py``.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterable
from urllib.parse import quote

_CODE_RE = re.compile(r"Code: (\d+)\. (?:DB::Exception: )?(.*)", re.S)
_ANY_CODE_RE = re.compile(r"Code: (\d+)\.")
_NOISE_RE = re.compile(r"\s*\((?:version [^)]*|[A-Z_]+)\)\s*$|\s*Stack trace:.*$", re.S)

#: ClickHouse error codes that blame the inserted data, not the server or the connection:
#: CANNOT_PARSE_TEXT, CANNOT_PARSE_ESCAPE_SEQUENCE, CANNOT_PARSE_QUOTED_STRING,
#: CANNOT_PARSE_INPUT_ASSERTION_FAILED, ATTEMPT_TO_READ_AFTER_EOF, CANNOT_READ_ALL_DATA,
#: CANNOT_PARSE_DATE, CANNOT_PARSE_DATETIME, TYPE_MISMATCH, CANNOT_CONVERT_TYPE,
#: CANNOT_PARSE_NUMBER, INCORRECT_DATA, TOO_LARGE_STRING_SIZE,
#: VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE, CANNOT_INSERT_NULL_IN_ORDINARY_COLUMN,
#: CANNOT_PARSE_UUID, CANNOT_PARSE_DOMAIN_VALUE_FROM_STRING, CANNOT_PARSE_BOOL,
#: FUNCTION_THROW_IF_VALUE_IS_NON_ZERO (the checks of 002_json_ingest.sql)
DATA_ERROR_CODES = frozenset({6, 25, 26, 27, 32, 33, 38, 41, 53, 70, 72, 117, 131, 321, 349, 376, 395, 441, 467})

#: what the driver raises when it cannot write a value into its column, before anything is
#: sent (a str in a UInt8 column, an int out of range, ...): the same rows fail again
_SERIALIZE_ERRORS = (TypeError, ValueError, AttributeError, OverflowError, struct.error)


def describe_error(exc: BaseException, secrets: Iterable[str] = ()) -> str:
    """One short line saying what went wrong, with every secret replaced by ``***``."""
    text = str(exc) or type(exc).__name__
    low = text.lower()
    code = _CODE_RE.search(text)
    if "connection refused" in low:
        line = "cannot connect (connection refused)"
    elif code and code.group(1) != "159":
        # ClickHouse said why (its message may echo the query, whose settings name timeouts)
        line = _NOISE_RE.sub("", f"code {code.group(1)}: {code.group(2)}".strip().splitlines()[0]).strip()
    elif "timed out" in low or "timeout" in low:
        line = "timed out"
    elif "name or service not known" in low or "failed to resolve" in low or "nodename nor servname" in low:
        line = "cannot resolve the host name"
    elif "authentication_failed" in low or "code: 516" in low:
        line = "authentication failed (check the user and password)"
    elif "cannot lock file" in low or "another server instance" in low:
        line = "the data directory is in use by another process"
    else:
        m = _CODE_RE.search(text)
        line = f"code {m.group(1)}: {m.group(2)}" if m else text
        line = _NOISE_RE.sub("", line.strip().splitlines()[0] if line.strip() else line)
        line = line.strip()
    for secret in secrets:
        if secret:
            line = line.replace(secret, "***").replace(quote(secret, safe=""), "***")
    return line[:300]


def refused_as_data(exc: BaseException) -> bool:
    """Did this insert fail on its data (the driver could not write a value, or ClickHouse
    could not take it), so that sending the same rows again cannot work?"""
    if isinstance(exc, _SERIALIZE_ERRORS):
        return True
    cls = type(exc)  # the driver's own DataError (its module is imported lazily)
    if cls.__name__ == "DataError" and cls.__module__.startswith("clickhouse_connect"):
        return True
    return error_code(exc) in DATA_ERROR_CODES


def error_code(exc: BaseException) -> int | None:
    """The ClickHouse error code in a driver error (the first one), or None."""
    code = getattr(exc, "code", None)
    if isinstance(code, int) and code > 0:
        return code
    m = _ANY_CODE_RE.search(str(exc))
    return int(m.group(1)) if m else None
