"""The status table's contents and their index: what ``GET /api/alerts`` and the retention
sweep read.

Every worker holds every fingerprint's status (a GlobalTable). ``StatusIndex`` is the
mapping the table's store keeps them in (``tables.StatusStore``), so every change of the
table passes through it, whatever makes it: the lifecycle agent's writes, with the partition
of the event that made each (``put``), the changelog records of the partitions other workers
write (the GlobalTable's standby reads) and the recovery at start, tombstones included
(``StatusStore.apply_changelog_batch``). Per fingerprint it holds:

- one compact record: its values, msgpack-encoded in a fixed field order, alert ids as their
  16 bytes, times as 8, an entity's keys as numbers (100 to 250 bytes where the dict of 17
  keys was about 950); read back as the same dict, keys in the same order
  (``encode``/``decode``);
- the partition of the changelog record that wrote it last: the partition its tombstone goes
  to, and what says whether this worker owns it (the sweep deletes only its own);
- one row of numpy columns: listed (has an alert), the order key of ``last_seen``, status,
  severity, type, symbol, strategy (codes of their text), partition, when it was closed,
  occurrences.

A query (``list_alerts``) filters the columns in a few vectorised passes, counts, and
orders only what its page needs (``np.partition`` around the page, then the page and its
ties exactly; a first page among the ~20,000 most recent rows first); with many rows it runs
in a thread, numpy leaving the GIL to the event loop. The columns change only in ``apply``
(under ``lock``: at the start of every query and sweep, and once ``APPLY_AT`` writes are
queued while no query runs, a few ms): a write changes the record at once (the table reads
it) and queues its row, and the record as the columns last saw it is kept aside
(``_shadow``) until the next ``apply``. A query therefore answers from one state: the one at
its ``apply``.

Order: ``last_seen`` descending, then ``fingerprint`` descending, as the text compares, the
way ``api.list_alerts`` sorted the dicts; ``last_seen`` times written by the fold (``...Z``,
microseconds when not zero) have an integer key in that order (``order_key``); a time in any
other form is placed by its time.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import re
from collections.abc import Iterator, Mapping, MutableMapping
from typing import Any

import msgspec
import numpy as np

from ..decisions.retention import closed_at

#: every key of a status (agents/lifecycle.empty_status) but ``fingerprint``, in its order
FIELDS = ("alert_id", "type", "severity", "summary", "status", "occurrences", "suppressed_count",
          "first_seen", "last_seen", "requires_action", "entity", "source", "acknowledged_by", "note",
          "status_changed_at", "notified_alert_id")
_CANON = ["fingerprint", *FIELDS]
_NCANON = len(_CANON)
STATUS_CODES = {"active": 0, "acknowledged": 1, "resolved": 2, "dismissed": 3}
OTHER_STATUS = 4
#: the order key (and closing time) of none: below every time, and safe to negate
MISSING = -(1 << 62)
US = 1_000_000
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
#: rows from which a query runs in a thread rather than on the event loop
THREAD_ROWS = 20_000
#: a page whose candidates are fewer than this is ordered in Python outright
SMALL = 2_000
#: a page ending within a quarter of this is looked for among this many most recent rows first
RECENT = 20_000
#: queued rows applied at once when no query holds the lock (a few ms of the event loop)
APPLY_AT = 2_000

_enc = msgspec.msgpack.Encoder()
_dec = msgspec.msgpack.Decoder()


_ALERT, _FIRST, _LAST, _NOTIFIED, _ENTITY, _CHANGED = (
    FIELDS.index(k) for k in ("alert_id", "first_seen", "last_seen", "notified_alert_id", "entity",
                              "status_changed_at"))
#: a value the same as another field's (no status value is bytes: they come from JSON)
_SAME = b""
#: an entity's keys as numbers (JSON keys are text: a number is never one of its own)
ENTITY_KEYS = ("account_id", "symbol", "strategy_id", "run_id")
_ENTITY_CODES = {k: i for i, k in enumerate(ENTITY_KEYS)}


_FOLD_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{6})?Z")
_NAIVE_EPOCH = dt.datetime(1970, 1, 1)
_ONE_US = dt.timedelta(microseconds=1)


@functools.lru_cache(maxsize=1024)
def fold_time_us(v: str) -> int | None:
    """The epoch microseconds of a time as the fold writes it (``...Z``, microseconds when
    not zero: the text ``_time_text`` gives back); None for any other text. Remembered: a
    put reads its last time twice."""
    if not _FOLD_TIME.fullmatch(v) or v.endswith(".000000Z"):
        return None
    try:
        t = dt.datetime.fromisoformat(v[:-1])
    except ValueError:  # a day or an hour out of range
        return None
    return (t - _NAIVE_EPOCH) // _ONE_US


def _time_bytes(v: Any) -> Any:
    """A time as the fold writes it as its epoch microseconds in 8 bytes."""
    us = fold_time_us(v) if isinstance(v, str) else None
    return v if us is None else us.to_bytes(8, "big", signed=True)


def _time_text(us: int) -> str:
    """The fold's text of a time (agents/lifecycle._iso)."""
    return (_NAIVE_EPOCH + dt.timedelta(microseconds=us)).isoformat() + "Z"


def _text_time(v: Any) -> Any:
    if isinstance(v, bytes) and len(v) == 8:
        return _time_text(int.from_bytes(v, "big", signed=True))
    return v


def _entity_codes(v: Any) -> Any:
    if isinstance(v, dict) and v and all(k in _ENTITY_CODES for k in v):
        return {_ENTITY_CODES[k]: x for k, x in v.items()}
    return v


def _entity_keys(v: Any) -> Any:
    if isinstance(v, dict) and v and isinstance(next(iter(v)), int):
        return {ENTITY_KEYS[k]: x for k, x in v.items()}
    return v


def _uuid_bytes(v: Any) -> Any:
    """A UUID's text as its 16 bytes when they give the same text back."""
    if isinstance(v, str) and len(v) == 36 and v[8] == v[13] == v[18] == v[23] == "-":
        h = v.replace("-", "")
        if h == h.lower():
            try:
                return bytes.fromhex(h)
            except ValueError:
                pass
    return v


def _uuid_text(v: Any) -> Any:
    if isinstance(v, bytes) and len(v) == 16:
        h = v.hex()
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
    return v


def encode(fp: str, status: Any) -> bytes:
    """A status as its compact record: the values of ``FIELDS`` (an alert id as its 16 bytes,
    a time as 8, an entity's keys as numbers; the notified alert id and the first time seen,
    when they are the alert id and the last time seen, as a reference) and a map of any other
    keys; anything else (keys missing or in another order, not a dict) as it is. Each is
    compacted only when it reads back as the same text."""
    if isinstance(status, dict):
        keys = list(status)
        if keys[:_NCANON] == _CANON and status["fingerprint"] == fp:
            extras = {k: status[k] for k in keys[_NCANON:]} if len(keys) > _NCANON else None
            values = [status[k] for k in FIELDS]
            if values[_NOTIFIED] == values[_ALERT]:
                values[_NOTIFIED] = _SAME
            else:
                values[_NOTIFIED] = _uuid_bytes(values[_NOTIFIED])
            values[_ALERT] = _uuid_bytes(values[_ALERT])
            values[_FIRST] = _SAME if values[_FIRST] == values[_LAST] else _time_bytes(values[_FIRST])
            values[_LAST] = _time_bytes(values[_LAST])
            values[_CHANGED] = _time_bytes(values[_CHANGED])
            values[_ENTITY] = _entity_codes(values[_ENTITY])
            values.append(extras)
            return _enc.encode(values)
    return _enc.encode([status])


def decode(fp: str, record: bytes | memoryview) -> Any:
    """The status ``encode`` was given (a new dict each time)."""
    values = _dec.decode(record)
    if len(values) == 1:
        return values[0]
    values[_ALERT] = _uuid_text(values[_ALERT])
    values[_NOTIFIED] = values[_ALERT] if values[_NOTIFIED] == _SAME else _uuid_text(values[_NOTIFIED])
    values[_LAST] = _text_time(values[_LAST])
    values[_FIRST] = values[_LAST] if values[_FIRST] == _SAME else _text_time(values[_FIRST])
    values[_CHANGED] = _text_time(values[_CHANGED])
    values[_ENTITY] = _entity_keys(values[_ENTITY])
    status = {"fingerprint": fp}
    status.update(zip(FIELDS, values, strict=False))
    if values[-1]:
        status.update(values[-1])
    return status


def order_key(last_seen: Any) -> int:
    """An integer in the order of the ``last_seen`` text as the fold writes it: seconds and
    microseconds, a whole second placed after its fractions (``...:00Z`` > ``...:00.5Z`` as
    text); ``MISSING`` for none. Any other form of time: by its time."""
    if not isinstance(last_seen, str) or not last_seen:
        return MISSING
    us = fold_time_us(last_seen)
    if us is not None:
        return us if us % US else us + US
    try:
        t = dt.datetime.fromisoformat(last_seen.replace("Z", "+00:00"))
    except ValueError:
        return MISSING
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.UTC)
    us = (t - EPOCH) // dt.timedelta(microseconds=1)
    return us if us % US else us + US


def key_time_us(key: np.ndarray) -> np.ndarray:
    """The time (epoch microseconds) of order keys: ``order_key`` undone."""
    return key - (key % US == 0) * US


def time_us(t: dt.datetime) -> int:
    return (t - EPOCH) // dt.timedelta(microseconds=1)


def _row(status: Any, partition: int) -> tuple[Any, ...]:
    """The columns of one status: listed, order key, status, severity, type, symbol,
    strategy, partition, closed at (µs), occurrences."""
    if not isinstance(status, dict):
        return (False, MISSING, OTHER_STATUS, 0, None, None, None, partition, MISSING, 0)
    sev = status.get("severity")
    entity = status.get("entity")
    if not isinstance(entity, dict):
        entity = {}
    closed = closed_at(status)
    occ = status.get("occurrences")
    return (bool(status.get("alert_id")), order_key(status.get("last_seen")),
            STATUS_CODES.get(status.get("status"), OTHER_STATUS),  # type: ignore[arg-type]
            int(sev) if sev in (1, 2, 3) else 0,
            _text(status.get("type")), _text(entity.get("symbol")), _text(entity.get("strategy_id")),
            partition, MISSING if closed is None else time_us(closed),
            occ if type(occ) is int else 0)


def _text(v: Any) -> str | None:
    return v if isinstance(v, str) else None


_EMPTY_ROW = (False, MISSING, OTHER_STATUS, 0, None, None, None, -1, MISSING, 0)
_COLUMNS = (("listed", np.bool_, False), ("key", np.int64, MISSING), ("status", np.int8, OTHER_STATUS),
            ("severity", np.int8, 0), ("type", np.int32, -1), ("symbol", np.int32, -1),
            ("strategy", np.int32, -1), ("partition", np.int16, -1), ("closed", np.int64, MISSING),
            ("occurrences", np.int64, 0))
_TEXT = (4, 5, 6)  # the row's text values (type, symbol, strategy), kept as codes


class StatusIndex(MutableMapping[str, Any]):
    """fingerprint → status (a dict, decoded from its record on every read), with the
    columns of the module docstring."""

    def __init__(self) -> None:
        #: fingerprint → its slot (4 bytes, little-endian) and its record
        self._data: dict[str, bytes] = {}
        self._fps: list[str | None] = []
        self._parts: list[int] = []
        self._free: list[int] = []
        #: slots freed since the last ``apply``: still rows of the columns until it
        self._freeing: list[int] = []
        #: slot → its row, or None: changes the columns have not seen yet
        self._pending: dict[int, tuple[Any, ...] | None] = {}
        #: slot → (fingerprint, record) as the columns last saw it, while it is pending
        self._shadow: dict[int, tuple[str | None, bytes | None]] = {}
        self._n = 0
        self._cols: dict[str, np.ndarray] = {name: np.full(0, fill, dtype) for name, dtype, fill in _COLUMNS}
        #: text (type, symbol, strategy id) → code, with the rows using each
        self._codes: dict[str, int] = {}
        self._names: list[str | None] = []
        self._refs: list[int] = []
        self._code_free: list[int] = []
        self.lock = asyncio.Lock()
        self._cut: int | None = None

    # -- the mapping (the table's store) ---------------------------------------------------

    def __getitem__(self, fp: str) -> Any:
        return decode(fp, memoryview(self._data[fp])[4:])

    def __setitem__(self, fp: str, status: Any) -> None:
        from faust.streams import current_event

        event = current_event()
        self.put(fp, status, event.message.partition if event is not None else -1)

    def __delitem__(self, fp: str) -> None:
        if self.discard(fp) is None:
            raise KeyError(fp)

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._data))

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, fp: object) -> bool:
        return fp in self._data

    def clear(self) -> None:
        for fp in list(self._data):
            self.discard(fp)

    def put(self, fp: str, status: Any, partition: int) -> None:
        """The table's ``fp`` is ``status`` now, written to the changelog's ``partition``
        (None as a status deletes it, as a changelog tombstone does)."""
        if status is None:
            self.discard(fp)
            return
        old = self._data.get(fp)
        if old is None:
            slot = self._free.pop() if self._free else len(self._fps)
            if slot == len(self._fps):
                self._fps.append(fp)
                self._parts.append(partition)
            else:
                self._fps[slot] = fp
        else:
            slot = int.from_bytes(old[:4], "little")
            if slot not in self._pending:
                self._shadow[slot] = (fp, old)
        self._data[fp] = slot.to_bytes(4, "little") + encode(fp, status)
        self._parts[slot] = partition
        self._pending[slot] = _row(status, partition)
        if len(self._pending) >= APPLY_AT and not self.lock.locked():
            self.apply()

    def discard(self, fp: str) -> int | None:
        """Forget ``fp``; the partition its last changelog record went to (None: it was not
        held)."""
        old = self._data.pop(fp, None)
        if old is None:
            return None
        slot = int.from_bytes(old[:4], "little")
        if slot not in self._pending:
            self._shadow[slot] = (fp, old)
        partition = self._parts[slot]
        self._fps[slot] = None
        self._pending[slot] = None
        self._freeing.append(slot)
        return partition

    def partition_of(self, fp: str) -> int | None:
        old = self._data.get(fp)
        return None if old is None else self._parts[int.from_bytes(old[:4], "little")]

    # -- the columns ----------------------------------------------------------------------

    def apply(self) -> None:
        """Bring the columns up to the records (the caller holds ``lock``, or no query runs)."""
        if not self._pending and not self._freeing:
            return
        size = len(self._fps)
        cols = self._cols
        if size > len(cols["key"]):
            grown = max(size, len(cols["key"]) * 3 // 2, 1024)
            for name, dtype, fill in _COLUMNS:
                col = np.full(grown, fill, dtype)
                col[:self._n] = cols[name][:self._n]
                cols[name] = col
        slots = list(self._pending)
        rows = [_EMPTY_ROW if row is None else row for row in self._pending.values()]
        idx = np.fromiter(slots, np.int64, len(slots))
        names, ref, unref = self._names, self._ref, self._unref
        for i, ((name, _, _), values) in enumerate(zip(_COLUMNS, zip(*rows, strict=True), strict=True)):
            col = cols[name]
            if i in _TEXT:  # a text as its code: the same one when it did not change
                codes = []
                for old, v in zip(col[idx].tolist(), values, strict=True):
                    if old >= 0:
                        if names[old] == v:
                            codes.append(old)
                            continue
                        unref(old)
                    codes.append(-1 if v is None else ref(v))
                col[idx] = codes
            else:
                col[idx] = values
        self._pending.clear()
        self._shadow.clear()
        self._free.extend(self._freeing)
        self._freeing.clear()
        self._n = size

    def _ref(self, text: str) -> int:
        code = self._codes.get(text)
        if code is None:
            if self._code_free:
                code = self._code_free.pop()
                self._names[code] = text
                self._refs[code] = 0
            else:
                code = len(self._names)
                self._names.append(text)
                self._refs.append(0)
            self._codes[text] = code
        self._refs[code] += 1
        return code

    def _unref(self, code: int) -> None:
        self._refs[code] -= 1
        if self._refs[code] == 0:
            name = self._names[code]
            if name is not None:
                del self._codes[name]
            self._names[code] = None
            self._code_free.append(code)

    def _seen(self, slot: int) -> tuple[str | None, bytes | None]:
        """(fingerprint, slot and record) of ``slot`` as the columns hold it."""
        shadow = self._shadow.get(slot)
        if shadow is not None:
            return shadow
        fp = self._fps[slot]
        return fp, None if fp is None else self._data.get(fp)

    # -- the list -------------------------------------------------------------------------

    def _mask(self, f: Mapping[str, Any]) -> np.ndarray | None:
        """The rows ``api.matches`` would keep (None: none can match)."""
        n = self._n
        cols = self._cols
        mask = cols["listed"][:n].copy()
        if "severity" in f:
            mask &= cols["severity"][:n] == f["severity"]
        if "status" in f:
            status = cols["status"][:n]
            any_of = np.zeros(n, np.bool_)
            for name in f["status"]:
                code = STATUS_CODES.get(name)
                if code is not None:
                    any_of |= status == code
            mask &= any_of
        for name, col in (("type", "type"), ("symbol", "symbol"), ("strategy_id", "strategy")):
            if name in f:
                code = self._codes.get(f[name])
                if code is None:
                    return None
                mask &= cols[col][:n] == code
        if "since" in f or "until" in f:
            key = cols["key"][:n]
            mask &= key != MISSING
            t = key_time_us(key)
            if "since" in f:
                mask &= t >= time_us(f["since"])
            if "until" in f:
                mask &= t < time_us(f["until"])
        return mask

    def select(self, f: Mapping[str, Any]) -> tuple[int, list[int]]:
        """(total, the page's slots in order) for the filters of ``api.parse_filters``.

        A page near the start is looked for first among the most recent rows (``_cutoff``):
        when at least ``offset + limit`` of them match, the page and the rows before it are
        all among them (any row before it is at least as recent as the page's last)."""
        mask = self._mask(f)
        if mask is None:
            return 0, []
        total = int(np.count_nonzero(mask))
        lo, hi = f["offset"], min(f["offset"] + f["limit"], total)
        if lo >= hi:
            return total, []
        if total > SMALL and hi <= RECENT // 4:
            cut = self._cutoff()
            if cut is not None:
                recent = mask & (self._cols["key"][:self._n] >= cut)
                if np.count_nonzero(recent) >= hi:
                    mask = recent
        cand = np.flatnonzero(mask)
        keys = self._cols["key"][cand]
        if total <= SMALL:
            return total, self._ordered(cand.tolist(), keys.tolist())[lo:hi]
        neg = -keys
        part = np.partition(neg, [lo, hi - 1])
        first, last = part[lo], part[hi - 1]
        before = int(np.count_nonzero(neg < first))
        near = (neg >= first) & (neg <= last)
        return total, self._ordered(cand[near].tolist(), keys[near].tolist())[lo - before:hi - before]

    def _cutoff(self) -> int | None:
        """An order key about ``RECENT`` rows are at or above (found again when that is no
        longer about true); None for a small index."""
        n = self._n
        if n <= RECENT:
            return None
        key = self._cols["key"][:n]
        cut = self._cut
        if cut is not None:
            above = int(np.count_nonzero(key >= cut))
            if RECENT // 2 <= above <= RECENT * 4:
                return cut
        self._cut = cut = int(np.partition(key, n - RECENT)[n - RECENT])
        return cut

    def _ordered(self, slots: list[int], keys: list[int]) -> list[int]:
        """``slots`` by (last_seen, fingerprint) descending."""
        fps = [self._seen(s)[0] or "" for s in slots]
        order = sorted(range(len(slots)), key=lambda i: (keys[i], fps[i]), reverse=True)
        return [slots[i] for i in order]

    def page(self, slots: list[int]) -> list[Any]:
        out = []
        for slot in slots:
            fp, rec = self._seen(slot)
            if fp is not None and rec is not None:
                out.append(decode(fp, memoryview(rec)[4:]))
        return out

    async def list_alerts(self, f: Mapping[str, Any]) -> dict[str, Any]:
        """``api.list_alerts`` over the whole table: the same answer."""
        async with self.lock:
            self.apply()
            if self._n >= THREAD_ROWS:
                total, slots = await asyncio.to_thread(self.select, f)
            else:
                total, slots = self.select(f)
            items = self.page(slots)
        return {"total": total, "offset": f["offset"], "limit": f["limit"], "items": items}

    # -- the stats fallback and the sweep --------------------------------------------------

    def stats_since(self, since: str) -> tuple[dict[str, int], dict[str, int]]:
        """Occurrences by severity and by type of the listed statuses whose ``last_seen`` (as
        text) is ``since`` or later: ``api.stats_from_statuses``'s sums. The caller applied."""
        n = self._n
        cols = self._cols
        mask = cols["listed"][:n] & (cols["key"][:n] >= order_key(since))
        by_sev: dict[str, int] = {"1": 0, "2": 0, "3": 0}
        by_type: dict[str, int] = {}
        occ = cols["occurrences"][:n]
        sev, typ = cols["severity"][:n], cols["type"][:n]
        plain = mask & (sev > 0) & (typ >= 0)
        for code in (1, 2, 3):
            by_sev[str(code)] += int(occ[plain & (sev == code)].sum())
        codes = typ[plain]
        sums = np.bincount(codes, weights=occ[plain]) if len(codes) else np.zeros(0)
        for code in np.flatnonzero(np.bincount(codes)).tolist() if len(codes) else ():  # present, even at 0
            name = self._names[code]
            if name is not None:
                by_type[name] = int(sums[code])
        for slot in np.flatnonzero(mask & ~plain).tolist():  # a severity or type of another form
            fp, rec = self._seen(slot)
            if fp is None or rec is None:
                continue
            s = decode(fp, memoryview(rec)[4:])
            by_sev[str(s["severity"])] = by_sev.get(str(s["severity"]), 0) + s["occurrences"]
            by_type[s["type"]] = by_type.get(s["type"], 0) + s["occurrences"]
        return by_sev, by_type

    def closed_before(self, before_us: int, partitions: set[int], limit: int) -> list[str]:
        """Fingerprints of ``partitions`` closed at or before ``before_us`` (the caller
        applied), at most ``limit``: the sweep's candidates, each decided again on its
        status."""
        n = self._n
        if not partitions or n == 0:
            return []
        cols = self._cols
        owned = np.zeros(max(max(partitions), 0) + 2, np.bool_)
        for p in partitions:
            if p >= 0:
                owned[p + 1] = True
        part = cols["partition"][:n].astype(np.int64) + 1
        part[part >= len(owned)] = 0
        closed = cols["closed"][:n]
        slots = np.flatnonzero((closed != MISSING) & (closed <= before_us) & owned[part])[:limit]
        fps = [self._fps[s] for s in slots.tolist()]
        return [fp for fp in fps if fp is not None]

    def memory_bytes(self) -> int:
        """About what the index holds (the bench's breakdown)."""
        import sys

        n = sum(col.nbytes for col in self._cols.values())
        n += sys.getsizeof(self._data) + sys.getsizeof(self._fps) + sys.getsizeof(self._parts)
        n += sum(sys.getsizeof(r) for r in self._data.values())
        return n
