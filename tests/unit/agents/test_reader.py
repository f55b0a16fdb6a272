"""A reader's per-partition acknowledgments (``Track``): offsets are done in any order, and
only what lies below the first one not done is ever committed."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tocsin.agents.reader import Track


@st.composite
def reads_and_acks(draw: st.DrawFn) -> tuple[list[int], list[int], int]:
    """Increasing offsets (with gaps, as compaction leaves), some of them acknowledged in any
    order, and how many of the others were dropped."""
    start = draw(st.integers(0, 1000))
    gaps = draw(st.lists(st.integers(1, 3), max_size=60))
    offsets = [start]
    for g in gaps:
        offsets.append(offsets[-1] + g)
    acked = draw(st.permutations(offsets))[: draw(st.integers(0, len(offsets)))]
    dropped = draw(st.integers(0, len(offsets) - len(acked)))
    return offsets, acked, dropped


@given(reads_and_acks())
def test_commits_up_to_the_first_offset_not_done(case: tuple[list[int], list[int], int]) -> None:
    offsets, acked, dropped = case
    t = Track()
    committed: list[int] = []
    for off in offsets:
        t.add(off)
    for off in acked:
        t.ack(off)
        committed.append(t.committable())
    pending = [o for o in offsets if o not in set(acked)]
    assert t.committable() == (pending[0] if pending else offsets[-1] + 1)
    assert committed == sorted(committed)  # never moves back
    assert all(c <= (pending[0] if pending else offsets[-1] + 1) for c in committed)  # never past one not done
    t.dropped = dropped
    assert t.in_flight() == len(pending) - dropped


def test_an_acknowledgment_repeated_or_from_before_changes_nothing() -> None:
    t = Track()
    for off in (5, 6, 7):
        t.add(off)
    t.ack(6)
    t.ack(6)
    t.ack(3)  # read before this track: not one of its offsets
    assert t.committable() == 5 and t.in_flight() == 2
    t.ack(5)
    assert t.committable() == 7 and t.in_flight() == 1
    t.ack(7)
    assert t.committable() == 8 and t.in_flight() == 0


def test_nothing_read_commits_nothing() -> None:
    t = Track()
    assert t.committable() == -1 and t.in_flight() == 0
