"""The delivery agent's queue: SEV1 first, then arrival order; no wake-up lost."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from tocsin.agents.delivery.dispatch import Dispatcher, priority

from ..producers import FakeProducer


def dispatcher(read_ahead: int = 100) -> Dispatcher:
    rt: Any = SimpleNamespace(settings=SimpleNamespace(delivery_read_ahead=read_ahead, delivery_concurrency=1),
                              delivery_outbox=None)
    return Dispatcher(rt, "webhook", limits=None)  # type: ignore[arg-type]


@pytest.mark.parametrize(("data", "expected"), [
    ({"alert": {"severity": 1}}, 1),
    ({"alert": {"severity": 3}}, 3),
    ({"alert": {"severity": "SEV2"}}, 2),
    ({"alert": {"severity": 7}}, 0),
    ({"alert": {}}, 0),
    ({}, 0),
    ([1, 2], 0),
    ("text", 0),
    (None, 0),
])
def test_priority(data: Any, expected: int) -> None:
    assert priority(data) == expected


async def test_sev1_first_then_arrival_order() -> None:
    d = dispatcher()
    for prio, name in [(3, "a"), (2, "b"), (3, "c"), (1, "d"), (0, "bad"), (1, "e")]:
        await d.submit(prio, name)
    assert [await d.take() for _ in range(6)] == ["bad", "d", "e", "b", "a", "c"]
    assert d.space.value == 100 - 6  # released by the sender once handled, not by take


async def test_waiting_senders_are_woken_one_per_command() -> None:
    d = dispatcher()
    takers = [asyncio.ensure_future(d.take()) for _ in range(3)]
    await asyncio.sleep(0)
    await d.submit(2, "x")
    await d.submit(2, "y")
    done, pending = await asyncio.wait(takers, timeout=0.2)
    assert sorted(t.result() for t in done) == ["x", "y"] and len(pending) == 1
    await d.submit(3, "z")
    assert await asyncio.wait_for(pending.pop(), 1) == "z"


async def test_a_cancelled_sender_hands_its_wake_up_on() -> None:
    d = dispatcher()
    first, second = asyncio.ensure_future(d.take()), asyncio.ensure_future(d.take())
    await asyncio.sleep(0)
    await d.submit(2, "x")  # wakes the first ...
    first.cancel()  # ... which is cancelled before it runs
    assert await asyncio.wait_for(second, 1) == "x"
    with pytest.raises(asyncio.CancelledError):
        await first


# ---------------------------------------------------------------- the outbox


class FakeEvent:
    def __init__(self) -> None:
        self.acked = 0

    def ack(self) -> None:
        self.acked += 1


def outbox(producer: FakeProducer, store: Any = None) -> Any:
    from faust.stores.memory import Store as MemoryStore

    from tocsin.agents.delivery.outbox import DeliveryOutbox
    from tocsin.agents.outbox import Outbox

    class Memory(MemoryStore):
        def __init__(self) -> None:  # the in-memory store's dict, without an app
            self.data: dict[Any, Any] = {}

    table = SimpleNamespace(data=Memory() if store is None else store,
                            changelog_topic=SimpleNamespace(get_topic_name=lambda: "p-deliveries-changelog"))
    rt: Any = SimpleNamespace(
        topics=SimpleNamespace(attempts=SimpleNamespace(get_topic_name=lambda: "p.attempts"),
                               dlq=SimpleNamespace(get_topic_name=lambda: "p.dlq")),
        tables=SimpleNamespace(deliveries=table),
        outbox=Outbox(lambda: producer))
    return DeliveryOutbox(rt), table


def attempt(delivery_id: str) -> dict[str, Any]:
    from tocsin.schemas.messages import AttemptStatus

    return {"delivery_id": delivery_id, "channel": "webhook", "status": AttemptStatus.SENT}


async def test_outbox_acks_once_the_broker_acknowledged_the_records() -> None:
    producer = FakeProducer("hold", "hold", "hold")
    box, table = outbox(producer)
    events = [FakeEvent() for _ in range(3)]
    for i, ev in enumerate(events):
        box.attempt(attempt(f"d{i}"))
        box.table_write(table, f"d{i}", "sent", 2)
        box.publish("p.deliveries.retry", f"d{i}", {"delivery_id": f"d{i}"})
        box.ack_after(ev)
    assert dict(table.data.data) == {"d0": "sent", "d1": "sent", "d2": "sent"}  # the store at once
    assert not any(ev.acked for ev in events) and not producer.sent  # the records not yet
    await asyncio.sleep(0.05)
    assert producer.sent and not any(ev.acked for ev in events)  # handed over, not acknowledged
    producer.release()
    await asyncio.sleep(0.01)
    assert all(ev.acked == 1 for ev in events)
    changelog = [b for b in producer.sent if b[0] == "p-deliveries-changelog"]
    assert changelog == [("p-deliveries-changelog", 2, [(b'"d0"', b'"sent"'), (b'"d1"', b'"sent"'),
                                                         (b'"d2"', b'"sent"')])]
    assert sum(len(r) for t, _, r in producer.sent if t == "p.attempts") == 3
    assert sum(len(r) for t, _, r in producer.sent if t == "p.deliveries.retry") == 3


async def test_outbox_retries_and_acks_nothing_before_the_records_are_queued() -> None:
    producer = FakeProducer("raise", "raise")
    box, table = outbox(producer)
    ev = FakeEvent()
    box.attempt(attempt("d0"))
    box.ack_after(ev)
    await asyncio.sleep(0.15)
    assert ev.acked == 0 and not producer.sent  # first retry after 0.1 s failed too
    await asyncio.sleep(0.3)
    assert ev.acked == 1 and len(producer.sent) == 1


async def test_outbox_sends_again_what_the_broker_did_not_acknowledge() -> None:
    from aiokafka.errors import KafkaTimeoutError

    producer = FakeProducer(KafkaTimeoutError())
    box, _ = outbox(producer)
    ev = FakeEvent()
    box.publish("p.dlq", "d0", {"delivery_id": "d0"})
    box.ack_after(ev)
    await asyncio.sleep(0.05)
    assert ev.acked == 0 and len(producer.sent) == 1  # failed: waits for the resend
    await asyncio.sleep(0.15)
    assert ev.acked == 1 and len(producer.sent) == 2


async def test_outbox_keeps_a_note_of_a_record_refused_for_good() -> None:
    from tocsin.schemas.codec import loads

    producer = FakeProducer(max_request_size=4096)
    box, _ = outbox(producer)
    ev = FakeEvent()
    box.publish("p.dlq", "d0", {"delivery_id": "d0", "last_error": "x" * 10_000})
    box.ack_after(ev)
    await asyncio.sleep(0.05)
    assert ev.acked == 1  # not retried for ever: acknowledged with the note on the broker
    ((topic, _, [(key, value)]),) = producer.sent
    assert topic == "p.dlq" and key == b"d0"
    note = loads(value)
    assert "refused for good" in note["error"] and note["refused"]["topic"] == "p.dlq"


async def test_outbox_tells_a_persistent_store_how_far_its_changelog_is() -> None:
    class Store(dict[str, Any]):
        persisted: dict[Any, int] = {}

        def set_persisted_offset(self, tp: Any, offset: int) -> None:
            self.persisted[tp] = offset

    store = Store()
    box, table = outbox(FakeProducer(), store)
    for i in range(3):
        box.table_write(table, f"d{i}", "sent", 1)
    box.ack_after(FakeEvent())
    await asyncio.sleep(0.01)
    ((tp, offset),) = store.persisted.items()
    assert (tp.topic, tp.partition, offset) == ("p-deliveries-changelog", 1, 102)  # 100 + 3 - 1


# ---------------------------------------------------------------- revocation, copies, stops


def queued(tp: str, n: int) -> SimpleNamespace:
    return SimpleNamespace(tp=tp, name=f"{tp}{n}")


async def test_drop_takes_the_queued_commands_of_revoked_partitions_out() -> None:
    d = dispatcher()
    for i, (tp, prio) in enumerate([("a", 3), ("b", 2), ("a", 1), ("c", 3), ("b", 3)]):
        ev = queued(tp, i)
        d.note_read(SimpleNamespace(message=SimpleNamespace(tp=tp, offset=i)))
        await d.submit(prio, ev)
    dropped = d.drop({"a", "b"})
    assert sorted(ev.name for ev in dropped) == ["a0", "a2", "b1", "b4"]
    assert d.space.value == 100 - 1  # their room is free again
    assert set(d.read_offsets) == {"c"}  # no lag counted for partitions no longer read
    assert (await d.take()).name == "c3"
    await d.submit(1, queued("d", 5))
    assert [ev.name for ev in d.drop()] == ["d5"] and not d.heap


def command_bytes(delivery_id: str) -> bytes:
    from tocsin.schemas import DeliveryCommand, create_alert, dumps

    alert = create_alert("db_write_fail", 2, "x", fingerprint="db:1")
    return dumps(DeliveryCommand(delivery_id=delivery_id, alert=alert, dedupe_key="db:1:5",
                                 receiver="webhook:default", destination="webhook:default"))


async def test_two_copies_of_one_command_are_handled_one_after_the_other(monkeypatch: pytest.MonkeyPatch) -> None:
    from tocsin.agents.delivery import dispatch

    log: list[tuple[str, str]] = []

    async def handle(rt: Any, limits: Any, cmd: Any, event: Any) -> None:
        log.append(("start", event.name))
        await asyncio.sleep(0.02)
        log.append(("end", event.name))

    monkeypatch.setattr(dispatch, "handle", handle)
    d = dispatcher()
    first, copy, other = (SimpleNamespace(value=command_bytes(i), name=n)
                          for i, n in (("d1", "first"), ("d1", "copy"), ("d2", "other")))
    await asyncio.gather(d.process(first), d.process(copy), d.process(other))
    assert log.index(("end", "first")) < log.index(("start", "copy"))  # the copy waited
    assert log.index(("start", "other")) < log.index(("end", "first"))  # another command did not
    assert not d.busy


async def test_a_sender_stopped_mid_command_leaves_it_unacknowledged(monkeypatch: pytest.MonkeyPatch) -> None:
    acked: list[Any] = []
    d = dispatcher()
    d.outbox = SimpleNamespace(ack_after=acked.append)  # type: ignore[assignment]
    started = asyncio.Event()

    async def process(event: Any) -> None:
        started.set()
        await asyncio.sleep(10)

    monkeypatch.setattr(d, "process", process)
    d.start()
    await d.submit(2, "x")
    await asyncio.wait_for(started.wait(), 1)
    await d.stop()
    await asyncio.sleep(0)
    assert acked == []  # read again by the partition's next owner, not committed as done
    assert d.space.value == 100


@pytest.mark.parametrize("value", [b"not json", b"\xff\xfe", b"[1, 2]", b'{"delivery_id": 1}', b"",
                                   {"delivery_id": "d1"}])
async def test_a_malformed_command_is_kept_with_the_reason_and_not_handled(
        monkeypatch: pytest.MonkeyPatch, value: Any) -> None:
    from tocsin.agents.delivery import dispatch

    kept: list[tuple[Any, str]] = []
    handled: list[Any] = []

    async def keep_bad(rt: Any, event: Any, error: str) -> None:
        kept.append((event.value, error))

    async def handle(rt: Any, limits: Any, cmd: Any, event: Any) -> None:
        handled.append(cmd)

    monkeypatch.setattr(dispatch, "keep_bad", keep_bad)
    monkeypatch.setattr(dispatch, "handle", handle)
    await dispatcher().process(SimpleNamespace(value=value))
    assert handled == [] and len(kept) == 1
    assert kept[0][0] == value and kept[0][1].startswith("invalid delivery command: ")


@pytest.mark.parametrize("as_dict", [False, True])
async def test_a_command_is_the_same_from_its_bytes_or_its_decoded_value(
        monkeypatch: pytest.MonkeyPatch, as_dict: bool) -> None:
    from tocsin.agents.delivery import dispatch
    from tocsin.schemas import loads

    handled: list[Any] = []

    async def handle(rt: Any, limits: Any, cmd: Any, event: Any) -> None:
        handled.append(cmd)

    monkeypatch.setattr(dispatch, "handle", handle)
    raw = command_bytes("d1")
    await dispatcher().process(SimpleNamespace(value=loads(raw) if as_dict else raw))
    assert [c.delivery_id for c in handled] == ["d1"]
    assert handled[0].alert.fingerprint == "db:1" and handled[0].destination == "webhook:default"
