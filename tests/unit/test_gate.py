"""The flow gate (dispatch/gate.py) as a table: what it answers for a delivery in each circumstance
(the webhook's circuit, its trial, its share of this environment's attempts, its rate limit, the
invocation's time left), and what it leaves taken. In-memory stores, a fixed clock and no spread.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import pytest

from devicehooks.dispatch.batch import Batch
from devicehooks.dispatch.gate import Admitted, FlowGate, Shares
from devicehooks.domain.decisions import DispatchPolicy, Hold
from devicehooks.domain.models import Circuit, Integration
from devicehooks_dev.doubles import MemoryIntegrationStore

NOW = datetime(2026, 1, 1, 12, tzinfo=UTC)
POLICY = DispatchPolicy(delivery_timeout=2.0, webhook_concurrency=1, trial_invocations=1)
BUDGET = POLICY.attempt_budget
OPENED = NOW - timedelta(seconds=10)
OPEN_UNTIL = NOW + timedelta(seconds=20)
PROBE_UNTIL = NOW + timedelta(seconds=5)  # another dispatcher's probe, in flight

CIRCUITS = {
    "closed": Circuit(),
    "open": Circuit(failures=3, opened_at=OPENED, open_until=OPEN_UNTIL, cooldown=30),
    "half-open": Circuit(failures=3, opened_at=OPENED, open_until=NOW - timedelta(seconds=1), cooldown=30),
    "probing": Circuit(
        failures=3, opened_at=OPENED, open_until=NOW - timedelta(seconds=1), cooldown=30, probe_until=PROBE_UNTIL
    ),  # half-open, its probe in flight
}


def _hold(after: float, reason: str, trial: bool = False) -> Hold:
    return Hold(NOW + timedelta(seconds=after), reason, trial)


HANDED_BACK = _hold(1, "handed back: the invocation had no time left for it")
CIRCUIT_OPEN = _hold(
    20 + BUDGET,  # the cooldown's end and one attempt's budget: the probe has told by then
    f"circuit open since {OPENED.isoformat()} (3 failures in a row): next probe at {OPEN_UNTIL.isoformat()}",
)
ON_TRIAL = _hold(
    1,
    "held: the webhook is on trial (no delivery to it has succeeded yet, or one failed or was slow since): "
    "1 dispatchers at a time attempt it",
    trial=True,
)
PROBING = _hold(BUDGET, "held: another dispatcher is probing the webhook")
SHARE_IN_USE = _hold(BUDGET, "held: the webhook's share of concurrent deliveries is in use")
RATE_LIMITED = _hold(1, "held: the webhook's rate limit is reached")


@dataclass(frozen=True)
class Admit:
    """An expected :class:`Admitted` (its ``release`` is a function: not compared)."""

    probe: bool


ATTEMPT, PROBE = Admit(probe=False), Admit(probe=True)

# circuit | trial: proven, on trial with a turn free, or with none | the webhook's share of this
# environment's attempts: free or full | rate limit: none, room, full | the invocation's time:
# no limit, enough, short (less than an attempt's budget) -> precheck, admit
ROWS = [
    ("closed", "proven", "free", "none", "no limit", "attempt", ATTEMPT),
    ("closed", "proven", "free", "none", "enough", "attempt", ATTEMPT),
    ("closed", "proven", "free", "room", "enough", "attempt", ATTEMPT),
    ("closed", "proven", "free", "full", "enough", "attempt", RATE_LIMITED),
    ("closed", "proven", "full", "none", "enough", "attempt", SHARE_IN_USE),
    ("closed", "proven", "full", "full", "enough", "attempt", SHARE_IN_USE),  # the share before the rate limit
    ("closed", "proven", "free", "none", "short", HANDED_BACK, HANDED_BACK),
    ("closed", "turn free", "free", "none", "enough", "attempt", ATTEMPT),
    ("closed", "turn free", "free", "room", "no limit", "attempt", ATTEMPT),
    ("closed", "turn free", "full", "none", "enough", "attempt", SHARE_IN_USE),
    ("closed", "turn free", "free", "full", "enough", "attempt", RATE_LIMITED),
    ("closed", "no turn", "free", "none", "enough", ON_TRIAL, ON_TRIAL),
    ("closed", "no turn", "full", "full", "enough", ON_TRIAL, ON_TRIAL),  # the trial before the share and rate
    ("closed", "no turn", "free", "none", "short", HANDED_BACK, HANDED_BACK),  # the time before everything
    ("open", "proven", "free", "none", "enough", CIRCUIT_OPEN, CIRCUIT_OPEN),
    ("open", "turn free", "free", "room", "no limit", CIRCUIT_OPEN, CIRCUIT_OPEN),
    ("open", "no turn", "full", "full", "enough", CIRCUIT_OPEN, CIRCUIT_OPEN),  # the circuit before the rest
    ("open", "proven", "free", "none", "short", HANDED_BACK, HANDED_BACK),
    ("half-open", "proven", "free", "none", "enough", "probe", PROBE),
    ("half-open", "turn free", "free", "room", "enough", "probe", PROBE),
    ("half-open", "no turn", "free", "none", "enough", "probe", PROBE),  # the probe needs no trial turn
    ("half-open", "proven", "full", "none", "enough", "probe", SHARE_IN_USE),
    ("half-open", "proven", "free", "full", "no limit", "probe", RATE_LIMITED),
    ("half-open", "proven", "free", "none", "short", HANDED_BACK, HANDED_BACK),
    ("probing", "proven", "free", "none", "enough", "probe", PROBING),
    ("probing", "no turn", "free", "full", "enough", "probe", PROBING),  # the probe's claim before the rate
    ("probing", "no turn", "full", "full", "enough", "probe", SHARE_IN_USE),  # the share before the probe
    ("probing", "proven", "free", "none", "short", HANDED_BACK, HANDED_BACK),
]
TABLE = [pytest.param(*row, id="/".join(row[:5])) for row in ROWS]


@dataclass
class Setting:
    store: MemoryIntegrationStore
    gate: FlowGate
    batch: Batch
    integration: Integration


def _setting(circuit: str, trial: str, share: str, rate: str, time_left: str) -> Setting:
    """A webhook in the row's circumstances, a gate of this environment and a batch."""
    store = MemoryIntegrationStore()
    integration = Integration(
        id="w",
        tenant_id="t",
        url="https://hooks.example.com/",
        created_at=NOW - timedelta(days=1),
        updated_at=NOW - timedelta(days=1),
        rate_limit=None if rate == "none" else 1,
        circuit=replace(CIRCUITS[circuit], proven=trial == "proven"),
    )
    store.add(integration, limit=9)
    if trial == "no turn":  # another dispatcher's invocation has the only turn
        taken = store.start_trial("t", "w", POLICY.trial_invocations, NOW, NOW + timedelta(seconds=60))
        assert taken.granted
    gate = FlowGate(store, POLICY, lambda: 0.0)
    if share == "full":  # an attempt of this environment in flight
        assert gate.shares.take("w")
    if rate == "full":  # another delivery had this second's token
        assert store.take_rate_token("t", "w", int(NOW.timestamp()), 1)
    deadline = {
        "no limit": None,
        "enough": time.monotonic() + BUDGET + 60,
        "short": time.monotonic() + BUDGET - 1,
    }[time_left]
    return Setting(store, gate, Batch(deadline), integration)


def _free(shares: Shares, integration_id: str) -> int:
    """How many attempts at once the webhook's share still allows (taken, then given back)."""
    taken = 0
    while shares.take(integration_id):
        taken += 1
    for _ in range(taken):
        shares.give_back(integration_id)
    return taken


def _token_left(store: MemoryIntegrationStore) -> bool:
    """Whether this second's token is still there (taking it, if so)."""
    return store.take_rate_token("t", "w", int(NOW.timestamp()), 1)


@pytest.mark.parametrize(("circuit", "trial", "share", "rate", "time_left", "prechecked", "admitted"), TABLE)
def test_precheck_holds_for_the_time_the_circuit_and_the_trial_and_takes_nothing_else(
    circuit: str, trial: str, share: str, rate: str, time_left: str, prechecked: str | Hold, admitted: Admit | Hold
) -> None:
    s = _setting(circuit, trial, share, rate, time_left)
    free = _free(s.gate.shares, "w")
    assert s.gate.precheck(s.batch, s.integration, NOW) == prechecked
    assert _free(s.gate.shares, "w") == free  # no share taken
    stored = s.store.get("t", "w")
    assert stored is not None and stored.circuit == s.integration.circuit  # no probe claimed
    if rate == "room":
        assert _token_left(s.store)  # no rate token spent


@pytest.mark.parametrize(("circuit", "trial", "share", "rate", "time_left", "prechecked", "admitted"), TABLE)
def test_admit_answers_admitted_or_a_hold_with_its_reason_and_a_hold_keeps_no_share(
    circuit: str, trial: str, share: str, rate: str, time_left: str, prechecked: str | Hold, admitted: Admit | Hold
) -> None:
    s = _setting(circuit, trial, share, rate, time_left)
    free = _free(s.gate.shares, "w")
    decided = s.gate.admit(s.batch, s.integration, NOW)
    stored = s.store.get("t", "w")
    assert stored is not None
    if isinstance(admitted, Hold):
        assert decided == admitted
        assert _free(s.gate.shares, "w") == free  # a held delivery gives no share away
        if rate == "room":
            assert _token_left(s.store)  # nor spends the second's token
        if circuit == "probing":
            assert stored.circuit.probe_until == PROBE_UNTIL  # the other dispatcher's probe, untouched
        if circuit == "half-open" and admitted in (SHARE_IN_USE,):
            assert stored.circuit.probe_until is None  # no probe claimed for a delivery the share holds
        return
    assert isinstance(decided, Admitted) and decided.probe is admitted.probe
    assert _free(s.gate.shares, "w") == free - 1  # its share taken for the attempt...
    decided.release()
    assert _free(s.gate.shares, "w") == free  # ...and given back by release
    if rate == "room":
        assert not _token_left(s.store)  # the second's token spent
    if admitted.probe:
        assert stored.circuit.probe_until == NOW + timedelta(seconds=BUDGET)  # the probe claimed, for a budget
    else:
        assert stored.circuit.probe_until is None


def test_the_table_covers_every_circumstance() -> None:
    seen = {column: {row[n] for row in ROWS} for n, column in enumerate(("circuit", "trial", "share", "rate", "time"))}
    assert seen == {
        "circuit": set(CIRCUITS),
        "trial": {"proven", "turn free", "no turn"},
        "share": {"free", "full"},
        "rate": {"none", "room", "full"},
        "time": {"no limit", "enough", "short"},
    }
    outcomes = {row[6] for row in ROWS}
    assert outcomes == {ATTEMPT, PROBE, HANDED_BACK, CIRCUIT_OPEN, ON_TRIAL, PROBING, SHARE_IN_USE, RATE_LIMITED}


def test_the_share_is_the_environments_two_batches_share_one_limit_another_gate_has_its_own() -> None:
    """``FlowGate.shares`` belongs to the gate (one per dispatcher, i.e. per execution environment,
    which runs one invocation at a time), not to a batch: two batches, side by side or one after
    the other, share one limit; another environment's gate has a share of its own."""
    policy = replace(POLICY, webhook_concurrency=2)
    s = _setting("closed", "proven", "free", "none", "no limit")
    gate = FlowGate(s.store, policy, lambda: 0.0)
    first, second = Batch(deadline=None), Batch(deadline=None)
    a = gate.admit(first, s.integration, NOW)
    b = gate.admit(second, s.integration, NOW)
    assert isinstance(a, Admitted) and isinstance(b, Admitted)
    assert gate.admit(first, s.integration, NOW) == SHARE_IN_USE
    assert gate.admit(second, s.integration, NOW) == SHARE_IN_USE
    elsewhere = FlowGate(s.store, policy, lambda: 0.0).admit(Batch(deadline=None), s.integration, NOW)
    assert isinstance(elsewhere, Admitted)  # another environment: its own share
    a.release()  # the first batch's attempt is over: its share is free for the second batch
    c = gate.admit(second, s.integration, NOW)
    assert isinstance(c, Admitted)
    b.release()
    c.release()
    later = Batch(deadline=None)  # one after the other: the next batch finds the whole share free
    assert all(isinstance(gate.admit(later, s.integration, NOW), Admitted) for _ in range(2))
    assert gate.admit(later, s.integration, NOW) == SHARE_IN_USE


def test_a_batch_takes_one_turn_at_a_webhook_on_trial_for_all_its_deliveries() -> None:
    s = _setting("closed", "turn free", "free", "none", "no limit")
    first = s.gate.admit(s.batch, s.integration, NOW)
    assert isinstance(first, Admitted)
    first.release()
    again = s.gate.admit(s.batch, s.integration, NOW)  # the batch's turn, not another one
    assert isinstance(again, Admitted)
    again.release()
    assert s.gate.precheck(Batch(deadline=None), s.integration, NOW) == ON_TRIAL  # the only turn is taken
    ((key, turn),) = s.batch.take_trials()  # to give back when the batch is finished
    assert key == ("t", "w") and turn.slot == 0
    s.store.end_trial("t", "w", turn)
    assert s.gate.precheck(Batch(deadline=None), s.integration, NOW) == "attempt"  # given back: another batch's
