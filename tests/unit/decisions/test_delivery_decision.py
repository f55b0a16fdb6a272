"""The delivery decision (decisions.delivery.decide) with the real breaker and rate limiter
(decisions.limits.Gate): tables of cases (the command's state and destination, before a
contact, after one), properties, and whole outages simulated on a clock passed in (issue #15:
retries that outlast outages, rate limits that schedule)."""

from __future__ import annotations

import copy
import datetime as dt
import heapq
import random
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tocsin.decisions.delivery import (
    CONFIG,
    DEAD,
    DUPLICATE,
    EXHAUSTED,
    EXPIRED,
    PERMANENT,
    SENT,
    Action,
    Contact,
    Pending,
    decide,
)
from tocsin.decisions.limits import BreakerState, CircuitBreaker, Gate, RateLimiter
from tocsin.decisions.retry import (
    DEFAULT_MAX_AGE_S,
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_SCHEDULE_S,
    JITTER,
    MAX_RETRY_AFTER_S,
    Reason,
)

T0 = dt.datetime(2024, 5, 1, 12, 0, 0, tzinfo=dt.UTC)


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def pending(attempt: int = 1, *, max_attempts: int = DEFAULT_MAX_ATTEMPTS, created: float = 0.0,
            max_age_s: float | None = DEFAULT_MAX_AGE_S, urgent: bool = False, chain: bool = False,
            key: str = "d1", state: str | None = None, redriven: bool = False,
            configured: bool = True, schedule: tuple[float, ...] = DEFAULT_SCHEDULE_S) -> Pending:
    return Pending(key, attempt, max_attempts, schedule, at(created), max_age_s, urgent, chain,
                   state, redriven, "webhook:ops", configured)


def opened_gate(opened_at: float = 0.0, reset: float = 30.0, limiter: RateLimiter | None = None) -> Gate:
    br = CircuitBreaker(1, reset)
    br.record(False, at(opened_at).timestamp())
    return Gate(br, limiter)


def spent_limiter(now: float = 0.0) -> RateLimiter:
    lim = RateLimiter(1.0, 1)
    lim.admit("someone else", at(now).timestamp())
    return lim


class Mid(random.Random):
    """uniform() gives the middle of its range: the jitter's centre."""

    def uniform(self, a: float, b: float) -> float:
        return (a + b) / 2


def s_after(when: dt.datetime | None, base: float = 0.0) -> float:
    assert when is not None
    return (when - at(base)).total_seconds()


class Untouchable:
    """A gate that must not be asked: a skipped or unconfigured command takes no probe, no slot."""

    circuit_spread_s = rate_spread_s = 0.0

    def circuit_wait(self, now: float) -> float | None:
        raise AssertionError("the breaker was asked")

    def admit(self, key: str, urgent: bool, now: float) -> float:
        raise AssertionError("the rate limiter was asked")


# ---------------------------------------------------------------- the command's state and destination


@pytest.mark.parametrize(
    ("name", "cmd", "now", "gate", "action", "reason", "detail", "failover"),
    [
        ("never handled: sent", pending(), 0.0, None, Action.SEND, "", "", False),
        ("already sent: a duplicate", pending(state=SENT), 0.0, None, Action.SKIP, DUPLICATE, "already sent",
         False),
        ("already sent, redriven: still a duplicate", pending(state=SENT, redriven=True), 0.0, None,
         Action.SKIP, DUPLICATE, "already sent", False),
        ("already sent, a SEV1 with a chain at an open circuit: skipped, no failover",
         pending(state=SENT, urgent=True, chain=True), 10.0, opened_gate(), Action.SKIP, DUPLICATE,
         "already sent", False),
        ("dead: a duplicate", pending(state=DEAD), 0.0, None, Action.SKIP, DUPLICATE, "already dead", False),
        ("dead, redriven: sent again", pending(state=DEAD, redriven=True), 0.0, None, Action.SEND, "", "",
         False),
        ("dead, redriven long after its deadline: sent (no deadline)", pending(state=DEAD, redriven=True),
         10 * DEFAULT_MAX_AGE_S, None, Action.SEND, "", "", False),
        ("dead, redriven, open circuit: waits for the probe", pending(state=DEAD, redriven=True), 10.0,
         opened_gate(), Action.DEFER, "circuit_open", "", False),
        ("a state it does not know is no duplicate", pending(state="later"), 0.0, None, Action.SEND, "", "",
         False),
        ("destination not configured", pending(configured=False), 0.0, None, Action.DEAD, CONFIG,
         "destination webhook:ops is not configured on this worker", False),
        ("not configured, with a chain: fails over", pending(configured=False, chain=True), 0.0, None,
         Action.DEAD, CONFIG, "destination webhook:ops is not configured on this worker", True),
        ("not configured and already sent: the duplicate first", pending(state=SENT, configured=False), 0.0,
         None, Action.SKIP, DUPLICATE, "already sent", False),
        ("not configured and past its deadline: the configuration first", pending(configured=False),
         DEFAULT_MAX_AGE_S + 1, None, Action.DEAD, CONFIG,
         "destination webhook:ops is not configured on this worker", False),
        ("not configured, redriven from dead", pending(state=DEAD, redriven=True, configured=False), 0.0, None,
         Action.DEAD, CONFIG, "destination webhook:ops is not configured on this worker", False),
    ],
)
def test_the_command_s_state_and_destination(name: str, cmd: Pending, now: float, gate: Gate | None,
                                             action: Action, reason: str, detail: str, failover: bool) -> None:
    d = decide(cmd, at(now), gate, rng=Mid())
    assert (d.action, d.reason, d.detail, d.failover) == (action, reason, detail, failover), name
    assert (d.at is None) == (action is not Action.DEFER), name


@pytest.mark.parametrize("cmd", [pending(state=SENT), pending(state=DEAD), pending(configured=False),
                                 pending(state=SENT, redriven=True), pending(configured=False, redriven=True)],
                         ids=["sent", "dead", "not configured", "sent, redriven", "not configured, redriven"])
def test_a_skipped_or_unconfigured_command_asks_no_gate(cmd: Pending) -> None:
    assert decide(cmd, T0, Untouchable()).action in (Action.SKIP, Action.DEAD)


def test_a_redriven_command_has_no_deadline_after_a_contact_either() -> None:
    d = decide(pending(6, state=DEAD, redriven=True), at(10 * DEFAULT_MAX_AGE_S), contact=contact("503"),
               rng=Mid())
    assert (d.action, d.reason) == (Action.RETRY, "server_error")


# ---------------------------------------------------------------- before a contact


@pytest.mark.parametrize(
    ("name", "cmd", "now", "gate", "action", "reason", "wait", "failover"),
    [
        ("fresh, nothing in the way", pending(), 0.0, None, Action.SEND, "", None, False),
        ("closed breaker, room in the bucket", pending(), 0.0, Gate(CircuitBreaker(), RateLimiter(1.0)),
         Action.SEND, "", None, False),
        ("past its deadline", pending(3), DEFAULT_MAX_AGE_S, None, Action.DEAD, EXPIRED, None, False),
        ("past its deadline, with a chain", pending(3, chain=True), DEFAULT_MAX_AGE_S + 1, None,
         Action.DEAD, EXPIRED, None, True),
        ("a redriven command has no deadline", pending(max_age_s=None), 10 * DEFAULT_MAX_AGE_S, None,
         Action.SEND, "", None, False),
        ("open circuit: to the next probe (+ up to 2 s)", pending(), 10.0, opened_gate(), Action.DEFER,
         "circuit_open", 21.0, False),
        ("open circuit, SEV1 with a chain: fails over now", pending(urgent=True, chain=True), 10.0, opened_gate(),
         Action.DEFER, "circuit_open", 21.0, True),
        ("open circuit, SEV1 without a chain", pending(urgent=True), 10.0, opened_gate(), Action.DEFER,
         "circuit_open", 21.0, False),
        ("open circuit, SEV3 with a chain: waits", pending(chain=True), 10.0, opened_gate(), Action.DEFER,
         "circuit_open", 21.0, False),
        ("open circuit, but never past the deadline", pending(max_age_s=15.0), 10.0, opened_gate(),
         Action.DEFER, "circuit_open", 5.0, False),
        ("rate limited: to its slot (+ up to a fifth of an interval)", pending(), 0.0,
         Gate(CircuitBreaker(), spent_limiter()), Action.DEFER, "rate_limited", 1.1, False),
        ("open circuit and rate limited: the circuit first", pending(), 10.0,
         opened_gate(limiter=spent_limiter(10.0)), Action.DEFER, "circuit_open", 21.0, False),
    ],
)
def test_before_a_contact(name: str, cmd: Pending, now: float, gate: Gate | None, action: Action, reason: str,
                          wait: float | None, failover: bool) -> None:
    d = decide(cmd, at(now), gate, rng=Mid())
    assert (d.action, d.reason, d.failover) == (action, reason, failover), name
    if wait is None:
        assert d.at is None
    else:
        assert s_after(d.at, now) == pytest.approx(wait), name


def test_a_command_deferred_by_the_circuit_takes_no_rate_slot() -> None:
    lim = RateLimiter(1.0, 1)
    gate = opened_gate(limiter=lim)
    assert decide(pending(), at(10), gate).action is Action.DEFER
    assert not lim.reserved and lim.tat is None  # nothing claimed


def test_the_probe_goes_when_due_and_the_others_wait_for_it() -> None:
    gate = opened_gate(reset=30)
    assert decide(pending(key="probe"), at(30), gate).action is Action.SEND
    assert gate.breaker.state is BreakerState.HALF_OPEN
    d = decide(pending(key="other"), at(30.5), gate, rng=Mid())
    assert (d.action, d.reason) == (Action.DEFER, "circuit_open")
    assert s_after(d.at, 30.5) == pytest.approx(1.0 + 1.0)  # a second (and the jitter): its answer is likely in
    d = decide(pending(key="other"), at(38.0), gate, rng=Mid())  # a slow probe: wait as long as it has been out
    assert s_after(d.at, 38.0) == pytest.approx(8.0 + 1.0)
    d = decide(pending(key="other"), at(50.0), gate, rng=Mid())
    assert s_after(d.at, 50.0) == pytest.approx(10.0 + 1.0)  # never past the probe's replacement at 60


# ---------------------------------------------------------------- after a contact


def contact(status: str, retry_after: float | None = None, breaker_open: bool = False) -> Contact:
    reason = {"ok": Reason.OK, "503": Reason.SERVER_ERROR, "400": Reason.CLIENT_ERROR,
              "429": Reason.RATE_LIMITED, "timeout": Reason.TIMEOUT}[status]
    return Contact(status == "ok", status not in ("ok", "400"), reason, retry_after, breaker_open)


@pytest.mark.parametrize(
    ("name", "cmd", "now", "result", "action", "reason", "delay", "failover"),
    [
        ("delivered", pending(), 0.0, contact("ok"), Action.DONE, "", None, False),
        ("delivered after the deadline still counts", pending(), DEFAULT_MAX_AGE_S + 5, contact("ok"),
         Action.DONE, "", None, False),
        ("4xx: permanent", pending(chain=True), 0.0, contact("400"), Action.DEAD, PERMANENT, None, True),
        ("fast tier: 1 s", pending(1), 0.0, contact("503"), Action.RETRY, "server_error", 1.0, False),
        ("fast tier: 8 s", pending(4), 0.0, contact("timeout"), Action.RETRY, "timeout", 8.0, False),
        ("slow tier: 5 min", pending(5), 0.0, contact("503"), Action.RETRY, "server_error", 300.0, False),
        ("slow tier: 24 h", pending(9), 0.0, contact("503"), Action.RETRY, "server_error", 86400.0, False),
        ("past the end of its schedule: the last step", pending(9, max_attempts=20, schedule=(1.0, 2.0)), 0.0,
         contact("503"), Action.RETRY, "server_error", 2.0, False),
        ("no schedule: the default one", pending(3, schedule=()), 0.0, contact("503"), Action.RETRY,
         "server_error", 4.0, False),
        ("schedule spent", pending(10, chain=True), 0.0, contact("503"), Action.DEAD, EXHAUSTED, None, True),
        ("past the deadline", pending(6), DEFAULT_MAX_AGE_S, contact("503"), Action.DEAD, EXPIRED, None, False),
        ("a retry never past the deadline", pending(9, created=-DEFAULT_MAX_AGE_S + 100), 0.0, contact("503"),
         Action.RETRY, "server_error", 100.0, False),
        ("Retry-After when longer", pending(1), 0.0, contact("429", 30.0), Action.RETRY, "rate_limited", 30.0,
         False),
        ("Retry-After capped", pending(1), 0.0, contact("429", 10 * MAX_RETRY_AFTER_S), Action.RETRY,
         "rate_limited", MAX_RETRY_AFTER_S, False),
        ("SEV1 whose failure opened the breaker: fails over now", pending(2, urgent=True, chain=True), 0.0,
         contact("503", breaker_open=True), Action.RETRY, "server_error", 2.0, True),
        ("SEV1, breaker still closed: no failover yet", pending(2, urgent=True, chain=True), 0.0,
         contact("503"), Action.RETRY, "server_error", 2.0, False),
        ("SEV1 that already failed over", pending(2, urgent=True, chain=False), 0.0,
         contact("503", breaker_open=True), Action.RETRY, "server_error", 2.0, False),
        ("SEV3, breaker open: no failover until dead", pending(2, chain=True), 0.0,
         contact("503", breaker_open=True), Action.RETRY, "server_error", 2.0, False),
    ],
)
def test_after_a_contact(name: str, cmd: Pending, now: float, result: Contact, action: Action, reason: str,
                         delay: float | None, failover: bool) -> None:
    d = decide(cmd, at(now), contact=result, rng=Mid())
    assert (d.action, d.reason, d.failover) == (action, reason, failover), name
    if delay is None:
        assert d.at is None
    else:
        assert s_after(d.at, now) == pytest.approx(delay), name


def test_dead_reasons_say_why() -> None:
    assert decide(pending(10), T0, contact=contact("503")).detail == "server_error: exhausted after 10 attempts"
    assert decide(pending(1), T0, contact=contact("400")).detail == "client_error: permanent failure"
    assert decide(pending(), at(DEFAULT_MAX_AGE_S)).detail == "not delivered within max_age_s=172800"


# ---------------------------------------------------------------- properties

#: fresh commands (never handled) to a configured destination
commands = st.builds(
    Pending,
    key=st.sampled_from(["a", "b", "c"]),
    attempt=st.integers(1, 15),
    max_attempts=st.integers(1, 12),
    schedule=st.lists(st.floats(0, 86400, allow_nan=False), max_size=10).map(tuple),
    created_at=st.just(T0),
    max_age_s=st.one_of(st.none(), st.floats(1, 10 * 86400, allow_nan=False)),
    urgent=st.booleans(),
    can_fail_over=st.booleans(),
    state=st.none(),
    redriven=st.just(False),
    destination=st.just("webhook:ops"),
    configured=st.just(True),
)
#: commands in any state, for any destination
any_commands = st.builds(
    Pending,
    key=st.sampled_from(["a", "b", "c"]),
    attempt=st.integers(1, 15),
    max_attempts=st.integers(1, 12),
    schedule=st.lists(st.floats(0, 86400, allow_nan=False), max_size=10).map(tuple),
    created_at=st.just(T0),
    max_age_s=st.one_of(st.none(), st.floats(1, 10 * 86400, allow_nan=False)),
    urgent=st.booleans(),
    can_fail_over=st.booleans(),
    state=st.sampled_from([None, SENT, DEAD]),
    redriven=st.booleans(),
    destination=st.just("webhook:ops"),
    configured=st.booleans(),
)
contacts = st.builds(Contact, ok=st.booleans(), retryable=st.booleans(),
                     reason=st.sampled_from(list(Reason)),
                     retry_after_s=st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True)),
                     breaker_open=st.booleans())
ages = st.floats(0, 20 * 86400, allow_nan=False)


@given(commands, ages, st.integers(1, 6), st.floats(0, 100, allow_nan=False), st.booleans())
def test_an_open_breaker_never_spends_an_attempt(cmd: Pending, age: float, threshold: int, since: float,
                                                 limited: bool) -> None:
    """Before the next probe, whatever the command: deferred to it (or dead if past its deadline),
    never sent, so no attempt is spent; and the deferral is to the probe, not sooner."""
    br = CircuitBreaker(threshold, 30.0, 300.0)
    opened = age - since
    for _ in range(threshold):
        br.record(False, at(opened).timestamp())
    gate = Gate(br, spent_limiter(age) if limited else None)
    if br.would_allow(at(age).timestamp()):
        return  # the probe is due: another test
    d = decide(cmd, at(age), gate)
    assert d.action in (Action.DEFER, Action.DEAD)
    if d.action is Action.DEAD:
        assert d.reason == EXPIRED and cmd.deadline is not None and at(age) >= cmd.deadline
    else:
        assert d.reason == "circuit_open"
        probe = at(opened + 30.0)
        assert d.at is not None and d.at >= min(probe, cmd.deadline or probe)
        assert d.failover == (cmd.urgent and cmd.can_fail_over)


@given(any_commands, ages, st.one_of(st.none(), contacts), st.integers(0, 2**32))
def test_never_dead_before_max_age_unless_permanent_or_exhausted(cmd: Pending, age: float, result: Contact | None,
                                                                  seed: int) -> None:
    now = at(age)
    d = decide(cmd, now, contact=result, rng=random.Random(seed))
    deadline = cmd.deadline
    if d.action is Action.DEAD:
        if d.reason == PERMANENT:
            assert result is not None and not result.ok and not result.retryable
        elif d.reason == EXHAUSTED:
            assert result is not None and cmd.attempt >= cmd.max_attempts
        elif d.reason == CONFIG:
            assert result is None and not cmd.configured
        else:
            assert d.reason == EXPIRED and deadline is not None and now >= deadline
        assert d.failover == cmd.can_fail_over  # a dead command goes down its chain, if it has one left
    if d.action in (Action.RETRY, Action.DEFER):
        assert d.at is not None and d.at >= now
        assert deadline is None or d.at <= deadline  # nothing is scheduled past the deadline
    if result is not None and result.ok:
        assert d.action is Action.DONE
    if result is None:
        assert d.action in (Action.SKIP, Action.SEND, Action.DEAD)  # no gate: nothing defers
        assert (d.action is Action.SKIP) == (cmd.state == SENT or (cmd.state == DEAD and not cmd.redriven))
    # the same randomness decides the same
    assert d == decide(cmd, now, contact=result, rng=random.Random(seed))


def breaker(opened: bool, since: float, now: float, threshold: int = 1) -> CircuitBreaker:
    br = CircuitBreaker(threshold, 30.0, 300.0)
    if opened:
        for _ in range(threshold):
            br.record(False, at(now - since).timestamp())
    return br


def slots(obj: object) -> dict[str, object]:
    """Everything a breaker or a rate limiter holds, copied."""
    return {k: copy.deepcopy(getattr(obj, k, None)) for k in type(obj).__slots__}  # type: ignore[attr-defined]


@given(any_commands, ages, st.booleans(), st.floats(0, 100, allow_nan=False), st.booleans(),
       st.one_of(st.none(), contacts))
def test_a_sent_command_is_never_sent_again(cmd: Pending, age: float, opened: bool, since: float, limited: bool,
                                            result: Contact | None) -> None:
    """Whatever else holds (redriven, configured or not, SEV1 with a chain, any gate): a command
    whose delivery is in state sent is a duplicate; it asks no gate (takes no probe nor slot)
    and fails over nowhere."""
    sent = Pending(cmd.key, cmd.attempt, cmd.max_attempts, cmd.schedule, cmd.created_at, cmd.max_age_s,
                   cmd.urgent, cmd.can_fail_over, SENT, cmd.redriven, cmd.destination, cmd.configured)
    br = breaker(opened, since, age)
    lim = spent_limiter(age) if limited else RateLimiter(1.0, 1)
    before = slots(br), slots(lim)
    d = decide(sent, at(age), Gate(br, lim))
    assert (d.action, d.reason, d.failover, d.at) == (Action.SKIP, DUPLICATE, False, None)
    assert (slots(br), slots(lim)) == before


@given(any_commands, ages, st.floats(0, 29.9, allow_nan=False), st.integers(1, 6), st.booleans())
def test_a_sev1_meeting_an_open_breaker_fails_over(cmd: Pending, age: float, since: float, threshold: int,
                                                   limited: bool) -> None:
    """A SEV1 with a failover chain left, not a duplicate, to a configured destination whose
    breaker is open (its probe not due): sent down its chain now, whether it waits for the probe
    or is past its deadline; a lower severity, or one with no chain left, is not."""
    if cmd.state == SENT or (cmd.state == DEAD and not cmd.redriven) or not cmd.configured:
        return  # skipped, or dead for its configuration: the table above
    gate = Gate(breaker(True, since, age, threshold), spent_limiter(age) if limited else None)
    d = decide(cmd, at(age), gate)
    assert d.action in (Action.DEFER, Action.DEAD) and d.reason in ("circuit_open", EXPIRED)
    assert d.failover == (cmd.can_fail_over and (cmd.urgent or d.action is Action.DEAD))


@given(any_commands, ages, st.booleans(), st.floats(0, 100, allow_nan=False), st.booleans(),
       st.one_of(st.none(), contacts), st.integers(0, 2**32))
def test_the_same_inputs_decide_the_same(cmd: Pending, age: float, opened: bool, since: float, limited: bool,
                                         result: Contact | None, seed: int) -> None:
    """A replay decides as the first run did: the same command, state, gate and clock (and the
    same draws of the jitter) give the same decision."""
    def once() -> object:
        gate = Gate(breaker(opened, since, age), spent_limiter(age) if limited else RateLimiter(1.0, 1))
        return decide(cmd, at(age), gate, result, rng=random.Random(seed))
    assert once() == once()


@given(commands, st.integers(0, 2**32))
def test_retries_follow_the_two_tiers_with_jitter(cmd: Pending, seed: int) -> None:
    d = decide(cmd, T0, contact=contact("503"), rng=random.Random(seed))
    if d.action is not Action.RETRY:
        return
    steps = list(cmd.schedule) or list(DEFAULT_SCHEDULE_S)
    base = steps[min(cmd.attempt, len(steps)) - 1]
    delay = s_after(d.at)
    deadline_s = None if cmd.max_age_s is None else cmd.max_age_s
    high = base * (1 + JITTER) + 1e-6
    assert delay <= (high if deadline_s is None else min(high, deadline_s + 1e-6))
    assert delay >= min(base * (1 - JITTER), deadline_s if deadline_s is not None else base) - 1e-6


# ---------------------------------------------------------------- whole outages, simulated


@dataclass
class World:
    """The deliver agent's loop over the decision, on a simulated clock: commands come back
    when their deferral or retry says; a contact's outcome is ``up(t, key, contact_no)``."""

    up: Callable[[float, str, int], bool]
    reset: float = 30.0
    max_reset: float = 300.0
    threshold: int = 5
    max_age_s: float = DEFAULT_MAX_AGE_S
    rate: float | None = None
    seed: int = 0
    gate: Gate = field(init=False)
    contacts: dict[str, list[float]] = field(default_factory=dict)
    delivered: dict[str, tuple[float, int]] = field(default_factory=dict)  # key -> (time, attempt)
    dead: dict[str, str] = field(default_factory=dict)
    deferrals: dict[str, int] = field(default_factory=dict)
    failovers: dict[str, float] = field(default_factory=dict)
    open_contacts: int = 0  # contacts made while the breaker was not closed (probes)

    def __post_init__(self) -> None:
        self.gate = Gate(CircuitBreaker(self.threshold, self.reset, self.max_reset),
                         RateLimiter(self.rate, 1) if self.rate else None)

    def run(self, arrivals: list[tuple[float, str, bool]], until: float = 4 * 86400.0) -> World:
        rng = random.Random(self.seed)
        queue: list[tuple[float, int, str, int, bool]] = []
        for i, (t, key, urgent) in enumerate(arrivals):
            heapq.heappush(queue, (t, i, key, 1, urgent))
        seq = len(queue)
        created = {key: t for t, key, _ in arrivals}
        while queue:
            t, _, key, attempt, urgent = heapq.heappop(queue)
            assert t <= until, "a command was still waiting at the end"
            cmd = Pending(key, attempt, DEFAULT_MAX_ATTEMPTS, DEFAULT_SCHEDULE_S, at(created[key]), self.max_age_s,
                          urgent, key not in self.failovers)
            d = decide(cmd, at(t), self.gate, rng=rng)
            if d.action is Action.SEND:
                if self.gate.breaker.state is not BreakerState.CLOSED:
                    self.open_contacts += 1
                made = self.contacts.setdefault(key, [])
                made.append(t)
                ok = self.up(t, key, len(made))
                self.gate.breaker.record(ok, at(t).timestamp())
                d = decide(cmd, at(t), contact=Contact(ok, True, Reason.OK if ok else Reason.SERVER_ERROR, None,
                                                       self.gate.breaker.state is BreakerState.OPEN), rng=rng)
            if d.failover:
                assert key not in self.failovers  # once per command
                self.failovers[key] = t
            if d.action is Action.DONE:
                assert key not in self.delivered
                self.delivered[key] = (t, attempt)
            elif d.action is Action.DEAD:
                self.dead[key] = d.reason
            else:
                assert d.at is not None
                nxt = attempt + 1 if d.action is Action.RETRY else attempt
                if d.action is Action.DEFER:
                    self.deferrals[key] = self.deferrals.get(key, 0) + 1
                heapq.heappush(queue, (s_after(d.at), seq, key, nxt, urgent))
                seq += 1
        return self


def outage(start: float, end: float) -> Callable[[float, str, int], bool]:
    return lambda t, key, n: not (start <= t < end)


def test_the_issue_s_20_s_outage() -> None:
    """The finding: 503 for 20 s, 40 alerts sent meanwhile, 0 delivered in the next 150 s. Now
    all 40 go once the endpoint answers (at the breaker's first probe, 30 s after it opened)."""
    w = World(outage(0, 20)).run([(i * 0.5, f"a{i}", False) for i in range(40)])
    assert not w.dead and len(w.delivered) == 40
    assert max(t for t, _ in w.delivered.values()) <= 0.5 + 30 + 2 + 1
    assert sum(len(c) for c in w.contacts.values()) <= 40 + 5 + 5  # the five that opened it, their retries
    for key, (_, attempt) in w.delivered.items():
        assert attempt == len(w.contacts[key])  # an attempt is a contact


def test_the_issue_s_first_post_fails_for_each_of_300() -> None:
    """The finding: the first POST of each of 300 alerts failed; 0 of 300 delivered. Now all."""
    w = World(lambda t, key, n: n > 1).run([(i * 0.01, f"a{i}", False) for i in range(300)])
    assert not w.dead and len(w.delivered) == 300
    assert all(attempt == len(w.contacts[k]) for k, (_, attempt) in w.delivered.items())


@given(st.floats(0, 30 * 3600, allow_nan=False), st.integers(1, 12), st.integers(0, 2**32))
@settings(max_examples=30, deadline=None)
def test_any_outage_up_to_30_h_loses_nothing(length: float, n: int, seed: int) -> None:
    """However long the outage (up to 30 h: less than the fastest the schedule can be spent),
    every command made during it is delivered once, none dead; its attempts are its contacts;
    while the breaker is open only its probes reach the endpoint; a command that never failed a
    contact goes within a probe period of the end."""
    rng = random.Random(seed)
    arrivals = sorted((rng.uniform(0, length), f"a{i}", rng.random() < 0.3) for i in range(n))
    w = World(outage(0, length), seed=seed).run(arrivals)
    assert not w.dead
    assert sorted(w.delivered) == sorted(k for _, k, _ in arrivals)
    for key, (when, attempt) in w.delivered.items():
        assert attempt == len(w.contacts[key])
        if len(w.contacts[key]) == 1:  # deferred only: at the first probe after the end
            assert when <= length + 300 + 2 + 1e-6
    probes_max = 2 + length / 30.0
    assert w.open_contacts <= probes_max


@given(st.floats(1, 3600, allow_nan=False), st.integers(0, 2**32))
@settings(max_examples=25, deadline=None)
def test_a_sev1_fails_over_at_once_and_is_still_delivered(length: float, seed: int) -> None:
    """SEV1s meeting an open breaker are failed over at once (once each), and the originals are
    still delivered when it closes; lower severities are not failed over while they wait."""
    rng = random.Random(seed)
    arrivals = sorted((rng.uniform(0, length), f"a{i}", i % 2 == 0) for i in range(10))
    w = World(outage(0, length), seed=seed).run(arrivals)
    urgent = {k for _, k, u in arrivals if u}
    assert set(w.failovers) <= urgent
    assert sorted(w.delivered) == sorted(k for _, k, _ in arrivals) and not w.dead
    for key in w.failovers:
        assert w.failovers[key] <= w.delivered[key][0]  # the page went first, the original later
    # every SEV1 that came while the breaker was open or opened it failed over within its first deferral
    for key in urgent:
        if w.deferrals.get(key) and w.contacts.get(key, [0.0])[0] >= length:
            assert key in w.failovers


def test_past_max_age_a_command_expires() -> None:
    """An endpoint down for good: the commands are dead at their deadline (expired), no later,
    or when their schedule is spent, whichever comes first."""
    w = World(lambda t, key, n: False, max_age_s=3600.0).run([(0.0, "a", False), (10.0, "b", False)])
    assert w.dead == {"a": EXPIRED, "b": EXPIRED}
    w = World(lambda t, key, n: False).run([(0.0, "a", False)])
    assert w.dead == {"a": EXHAUSTED} and len(w.contacts["a"]) == DEFAULT_MAX_ATTEMPTS


def test_a_rate_limited_burst_through_the_decision() -> None:
    """1,000 at once to a 50/s destination, SEV1s among them first (as the queue hands them
    over): 1,000 sends, 999 deferrals, no attempt spent by any, drained at 50/s."""
    urgent = [i % 20 == 0 for i in range(1000)]
    order = sorted(range(1000), key=lambda i: not urgent[i])
    w = World(lambda t, key, n: True, rate=50.0).run([(0.0, f"a{i}", urgent[i]) for i in order])
    assert len(w.delivered) == 1000 and sum(w.deferrals.values()) == 999
    assert all(attempt == 1 for _, attempt in w.delivered.values())
    last = max(t for t, _ in w.delivered.values())
    assert 999 / 50 - 0.1 <= last <= 999 / 50 + 0.5
    sev1_last = max(w.delivered[f"a{i}"][0] for i in range(1000) if urgent[i])
    assert sev1_last <= 50 / 50 + 0.1  # the 50 SEV1s in the first second
