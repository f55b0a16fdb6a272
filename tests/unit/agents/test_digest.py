"""Digests carried out (agents/digest.py): what the throttle schedules, what the retry agent
releases, and the message every channel builds from a digest command."""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson

from tocsin.agents.channels import REGISTRY, build_channels
from tocsin.agents.digest import Digests
from tocsin.cli.route import message
from tocsin.core.settings import Settings
from tocsin.decisions.routing import Route, parse_policy
from tocsin.decisions.throttle import WindowState, decide
from tocsin.schemas.alert import AlertEvent
from tocsin.schemas.messages import DeliveryCommand, DigestInfo, Outcome, delivery_id_for

T0 = 1_714_521_600  # 2024-05-01T00:00:00Z, a multiple of 86400 (and 600)
NOW = dt.datetime.fromtimestamp(T0 + 30, dt.UTC)
POLICY = parse_policy({"throttle": {"types": {"order_rejected": 86400}},
                       "digests": {"types": ["order_rejected"], "receivers": ["webhook:default", "email:risk"]}})


def event(t: float) -> AlertEvent:
    return AlertEvent.model_validate({
        "alert_id": uuid.uuid4(), "type": "order_rejected", "severity": 2, "summary": "rejected: margin",
        "entity": {"account_id": "ACC1"}, "event_timestamp": dt.datetime.fromtimestamp(t, dt.UTC).isoformat(),
    })


class FakeThrottleTable:
    def __init__(self, count: int | None) -> None:
        self.count = count
        self.asked: list[tuple[str, float, int | None]] = []

    def get(self, fp: str, ts: float, window_s: int | None = None) -> WindowState | None:
        self.asked.append((fp, ts, window_s))
        return None if self.count is None else WindowState(1, self.count)


def digests(count: int | None = None) -> Digests:
    topics = SimpleNamespace(retry=SimpleNamespace(get_topic_name=lambda: "p.deliveries.retry"),
                             decisions=SimpleNamespace(get_topic_name=lambda: "p.decisions"))
    rt: Any = SimpleNamespace(policy=POLICY, topics=topics, tables=SimpleNamespace(throttle=FakeThrottleTable(count)))
    return Digests(rt)


ROUTES = [Route("webhook:default", "webhook:default", 5, (1.0,), ("email:default",)),
          Route("console:default", "console:default", 5, (1.0,), ())]


def scheduled(d: Digests, t: float = T0 + 60) -> list[DeliveryCommand]:
    e = event(t)
    v = decide(WindowState(7, 0), e, 86400, window_tag="/86400s")
    assert v.outcome is Outcome.SUPPRESS and v.suppressed_count == 1
    out: list[Any] = []
    d.schedule(e, v, 86400, ROUTES, out, NOW, 3)
    assert all(topic == "p.deliveries.retry" and partition == 3 for topic, _, _, partition in out)
    return [DeliveryCommand.model_validate(orjson.loads(value)) for _, _, value, _ in out]


def test_the_first_repeat_schedules_one_digest_per_chosen_receiver_at_the_windows_end() -> None:
    cmds = scheduled(digests())
    assert [c.destination for c in cmds] == ["webhook:default"]  # console:default is not a digest receiver
    c = cmds[0]
    assert c.not_before == dt.datetime.fromtimestamp(T0 + 86400, dt.UTC)
    assert c.dedupe_key == f"order_rejected:ACC1:::{T0 // 86400}/86400s:digest"
    assert c.delivery_id == delivery_id_for(c.dedupe_key, "webhook:default", "webhook:default")
    assert c.digest is not None and c.digest.window_s == 86400 and c.suppressed_count == 1
    # deterministic: the same window schedules the same ids
    again = scheduled(digests(), T0 + 3600)[0]
    assert (again.delivery_id, again.digest and again.digest.decision_id) == (c.delivery_id, c.digest.decision_id)


def test_released_digest_reads_the_count_and_records_the_decision() -> None:
    d = digests(count=37)
    cmd = scheduled(d)[0]
    fired, records = d.fire(cmd, NOW)
    assert fired.suppressed_count == 37
    assert d.rt.tables.throttle.asked == [(cmd.alert.fingerprint, float(T0), 86400)]
    [(topic, key, value, _)] = records
    decision = orjson.loads(value)
    assert topic == "p.decisions" and key == cmd.alert.fingerprint.encode()
    assert decision["outcome"] == "digest" and decision["suppressed_count"] == 37
    assert decision["reason"] == "digest: 37 suppressed in the 24 h window from 2024-05-01T00:00:00Z"
    # released again (a retry): sent as it is, no second decision
    retried = fired.model_copy(update={"attempt": 2})
    assert d.fire(retried, NOW) == (retried, [])
    # the table no longer has the window: the carried count
    assert digests(None).fire(cmd, NOW)[0].suppressed_count == 1


def test_every_channel_renders_a_digest(tmp_path: Path) -> None:
    s = Settings(_env_file=None, file_channel_path=tmp_path / "n.jsonl", telegram_bot_token="123:TG",  # type: ignore[call-arg]
                 telegram_chat_id="42", email_default_to="oncall@example.com", smtp_host="smtp.example.com",
                 webhook_default_url="https://hooks.example.com/in", slack_default_webhook="https://hooks.slack.com/x",
                 pagerduty_routing_key="R0UTINGKEY0123456789")
    channels = build_channels(s, parse_policy({}), env={})
    assert {ch.channel for ch in channels.values()} == set(REGISTRY)
    base = scheduled(digests())[0]
    info = DigestInfo(window_start=dt.datetime.fromtimestamp(T0, dt.UTC), window_s=600,
                      decision_id=uuid.uuid4(), destinations=[])
    for name, ch in channels.items():
        cmd = base.model_copy(update={"destination": name, "receiver": name, "suppressed_count": 37, "digest": info})
        shown = orjson.dumps(message(ch, cmd)).decode()
        assert "error" not in message(ch, cmd), name
        assert "order_rejected ACC1 fired 37 more times in the last 10 min" in shown, name
        assert "similar suppressed" not in shown, name
