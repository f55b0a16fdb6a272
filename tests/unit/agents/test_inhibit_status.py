"""What the status table (so the dashboard) shows of inhibition: the rule holding the latest
alert, gone once a later decision of the fingerprint is not inhibited; an inhibited alert is
not the one whose deliveries are shown, and an inhibited recovery still ends its problem."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest

from tocsin.agents.lifecycle import fold, recovery_resolve
from tocsin.core.status_index import StatusIndex
from tocsin.schemas import Decision, Outcome, create_alert

T0 = dt.datetime(2026, 5, 1, 12, 0, tzinfo=dt.UTC)
RULE = "component down mutes its order rejections"


def decision(outcome: Outcome, minutes: float, action: str = "trigger", type_: str = "order_rejected") -> Decision:
    a = create_alert(type_, 2, "x", event_timestamp=T0 + dt.timedelta(minutes=minutes), account_id="A1",
                     action=action)
    reason = RULE if outcome is Outcome.INHIBITED else "first in window"
    return Decision(decision_id=uuid.uuid4(), alert=a, dedupe_key="k", outcome=outcome, reason=reason,
                    window_start=T0)


CASES = [
    # decisions in order -> inhibited_by shown, notified alert is the first decision's
    ([Outcome.INHIBITED], RULE, False),
    ([Outcome.NOTIFY, Outcome.INHIBITED], RULE, True),
    ([Outcome.INHIBITED, Outcome.NOTIFY], None, False),  # released (or fired again, notified)
]


@pytest.mark.parametrize(("outcomes", "shown", "first_notified"), CASES)
def test_inhibited_by_shown(outcomes: list[Outcome], shown: str | None, first_notified: bool) -> None:
    status = None
    ds = [decision(o, i) for i, o in enumerate(outcomes)]
    for d in ds:
        status = fold(status, d)
    assert status is not None and status.get("inhibited_by") == shown
    if first_notified:
        assert status["notified_alert_id"] == str(ds[0].alert.alert_id)
    index = StatusIndex()  # the extra key survives the table's compact records
    index.put(status["fingerprint"], status, 0)
    assert index.get(status["fingerprint"]).get("inhibited_by") == shown


def test_an_inhibited_recovery_ends_its_problem() -> None:
    d = decision(Outcome.INHIBITED, 3, type_="component_recovered")
    assert fold(None, d)["status"] == "resolved"
    assert recovery_resolve(d) is not None
