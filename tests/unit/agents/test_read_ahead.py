"""The delivery read-ahead's room by bytes (``delivery.dispatch.Room``): the queued commands' bytes never
pass TOCSIN_DELIVERY_READ_AHEAD_BYTES, except one command larger than it read alone, and an
empty queue always has room (a large command never stops the reader)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tocsin.agents.delivery.dispatch import READ_BATCH, Room


@given(st.integers(1024, 1 << 20),
       st.lists(st.tuples(st.booleans(), st.integers(1, 1 << 21)), max_size=300))
def test_queued_bytes_never_pass_the_limit(limit: int, steps: list[tuple[bool, int]]) -> None:
    room = Room(10**9, limit)
    queue: list[int] = []
    for read, size in steps:
        if read:
            if room.takes(size):
                room.hold(size)
                queue.append(size)
            else:
                assert queue and sum(queue) + size > limit  # refused only when it would not fit
        elif queue:
            room.free(queue.pop(0))
        assert room.bytes == sum(queue)
        assert room.bytes <= limit or len(queue) == 1  # one larger than the limit, alone
        if not queue:
            assert not room.short_of_bytes(READ_BATCH)  # an empty queue is always read into


def test_a_channel_short_of_bytes_waits_for_a_quarter_of_them_or_the_command_that_did_not_fit() -> None:
    room = Room(10**9, 100_000)
    for _ in range(99):
        assert room.takes(1000)
        room.hold(1000)
    assert room.short_of_bytes(READ_BATCH)  # 1,000 bytes free: less than a fetch would need
    for _ in range(23):
        room.free(1000)
    assert room.short_of_bytes(READ_BATCH)  # 24,000 free: not yet a quarter
    room.free(1000)
    assert not room.short_of_bytes(READ_BATCH)  # 25,000
    assert not room.takes(80_000)  # a large one: waits for its own size
    assert room.short_of_bytes(READ_BATCH)
    room.free(74 * 1000)
    assert not room.short_of_bytes(READ_BATCH) and room.takes(80_000)
