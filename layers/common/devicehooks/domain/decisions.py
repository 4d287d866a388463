"""What the dispatcher does with a delivery: attempt it or not, and what follows an attempt.

Pure functions of (the delivery's circumstances, the policy, the time, a random draw); the
dispatcher performs what they decide (schedule, dead-letter, record, open or close the circuit,
disable the webhook) and nothing else. Table-tested in tests/unit/test_decisions.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from devicehooks.config import DEFAULT_RETRY_SCHEDULE
from devicehooks.domain.activity import Attempt
from devicehooks.domain.models import Circuit

GONE_REASON = "the endpoint answered 410 Gone"


@dataclass(frozen=True, slots=True)
class DispatchPolicy:
    """The knobs of delivery (from settings)."""

    retention: int = 7 * 24 * 3600
    schedule: tuple[int, ...] = DEFAULT_RETRY_SCHEDULE
    disable_after: int = 5 * 24 * 3600
    delivery_timeout: float = 10.0
    retry_after_cap: int = 3600
    lease: int = 0
    jitter: float = 0.2  # retries and deferrals spread over +/- this fraction of their delay
    circuit_threshold: int = 5  # consecutive failed attempts (no answer, or not 2xx) that open a circuit
    circuit_cooldown: int = 30  # the first open period, doubled each time a probe fails ...
    circuit_max_cooldown: int = 3600  # ... up to this
    webhook_concurrency: int = 10  # attempts to one webhook at once, per execution environment
    # invocations (of every dispatcher instance) that may attempt a webhook on trial at once: one
    # never proven, failing since its last success, or slow to answer, cannot take more of the
    # dispatchers' time
    trial_invocations: int = 4

    @property
    def lease_seconds(self) -> int:
        """How long a delivery is reserved: by default longer than any POST can take (connect and
        read timeouts, per address) plus recording it."""
        return self.lease or int(4 * self.delivery_timeout) + 30

    @property
    def slow_seconds(self) -> float:
        """An attempt that succeeds after more than this is *slow*: it does not prove its webhook,
        and takes a proven one back on trial, so that a receiver that answers, but late, with a
        backlog takes a few invocations' time, not every one's (2 s, or half the delivery timeout)."""
        return min(2.0, self.delivery_timeout / 2)

    @property
    def attempt_budget(self) -> float:
        """Seconds an attempt needs from its start to its recorded outcome, at most: its deadline
        and a margin for signing and the writes around it. No attempt starts with less left."""
        return self.delivery_timeout + 5.0

    def retry_delay(self, series_attempt: int, retry_after: float | None, draw: float = 0.0) -> float | None:
        """Seconds until the next attempt after attempt ``series_attempt`` failed; ``None``: no more.

        ``draw`` (in [-1, 1]) spreads the schedule's delay by +/- ``jitter`` so that the retries of
        a bulk do not reach the receiver together; a ``Retry-After`` is honoured, and only ever
        lengthened by the spread."""
        if series_attempt > len(self.schedule):
            return None
        if retry_after is not None:
            delay = min(max(retry_after, 1.0), self.retry_after_cap)
            return delay * (1 + self.jitter * abs(draw))
        return self.schedule[series_attempt - 1] * (1 + self.jitter * draw)

    def disable_due(self, failing_since: datetime | None, now: datetime) -> bool:
        """Whether a webhook failing every delivery since ``failing_since`` has failed long enough."""
        return failing_since is not None and (now - failing_since).total_seconds() >= self.disable_after

    def reopened(self, circuit: Circuit, now: datetime) -> Circuit:
        """The circuit opened (again) at ``now``: for the first cooldown, or twice the last one."""
        cooldown = min(2 * circuit.cooldown, self.circuit_max_cooldown) if circuit.cooldown else self.circuit_cooldown
        return Circuit(
            failures=circuit.failures,
            opened_at=circuit.opened_at or now,
            open_until=now + timedelta(seconds=cooldown),
            cooldown=cooldown,
        )


@dataclass(frozen=True, slots=True)
class Decision:
    """The delivery's next state, and the side effects that go with it."""

    state: Literal["delivered", "retrying", "failed"]
    retry_in: float | None = None  # schedule the next attempt this many seconds from now
    dead_letter: bool = False  # every attempt is used: keep the task in the delivery DLQ
    disable_reason: str | None = None  # disable the webhook at once
    error: str | None = None  # what to record, when not the attempt's own
    failure: bool = False  # counts towards the webhook's circuit and its failing-since clock
    slow: bool = (
        False  # delivered, but late (``DispatchPolicy.slow_seconds``): proves nothing, the webhook stays on trial
    )


def decide(
    attempt: Attempt,
    retry_after: float | None,
    series_attempt: int,
    policy: DispatchPolicy,
    retry: bool,
    draw: float = 0.0,
) -> Decision:
    """What comes after ``attempt``, attempt ``series_attempt`` of its retry schedule.

    ``retry`` is false for attempts that are never retried (test deliveries); ``draw`` in [-1, 1]
    spreads the retry delay (see :meth:`DispatchPolicy.retry_delay`).
    """
    status = attempt.status_code
    if status is not None and status < 300:
        return Decision("delivered", slow=attempt.duration_ms > policy.slow_seconds * 1000)
    if status == 410:
        return Decision("failed", disable_reason=GONE_REASON, error=f"{attempt.error}; webhook disabled")
    delay = policy.retry_delay(series_attempt, retry_after, draw) if retry else None
    if delay is not None:
        return Decision("retrying", retry_in=delay, failure=True)
    return Decision("failed", dead_letter=retry, failure=True)


@dataclass(frozen=True, slots=True)
class Hold:
    """A delivery not attempted now: it waits on the retry queue until ``until`` (not an attempt)."""

    until: datetime
    reason: str
    trial: bool = False  # held only because every turn at a webhook on trial is taken (see on_trial)


Gate = Literal["attempt", "probe"] | Hold


def gate(circuit: Circuit, time_left: float, now: datetime, policy: DispatchPolicy, draw: float = 0.0) -> Gate:
    """Whether a delivery to a webhook with ``circuit`` may be attempted now, with ``time_left``
    seconds of the invocation; ``"probe"``: only as the circuit's one probe (claim it first).

    A delivery held for an open circuit comes back after the next probe has had time to decide
    (the cooldown's end, one attempt budget, and a spread of up to ``jitter`` of the wait)."""
    if time_left < policy.attempt_budget:
        return Hold(now + timedelta(seconds=1 + abs(draw)), "handed back: the invocation had no time left for it")
    state = circuit.state(now)
    if state == "closed":
        return "attempt"
    if state == "half-open":
        return "probe"
    assert circuit.open_until is not None
    wait = (circuit.open_until - now).total_seconds() + policy.attempt_budget
    since = circuit.opened_at.isoformat() if circuit.opened_at else "?"
    return Hold(
        now + timedelta(seconds=wait * (1 + policy.jitter * abs(draw))),
        f"circuit open since {since} ({circuit.failures} failures in a row): next probe at "
        f"{circuit.open_until.isoformat()}",
    )


def held_back(reason: str, now: datetime, policy: DispatchPolicy, draw: float = 0.0) -> Hold:
    """A delivery that may not be attempted right now for ``reason`` (a probe in flight, the
    webhook's share of concurrent attempts in use): it comes back after one attempt's budget."""
    return Hold(now + timedelta(seconds=policy.attempt_budget * (1 + policy.jitter * abs(draw))), reason)


def on_trial(now: datetime, policy: DispatchPolicy, draw: float = 0.0) -> Hold:
    """A delivery to a webhook on trial while its every turn is taken: it comes back within a few
    seconds, by when the turns have told (it is proven, or its circuit open)."""
    wait = 1 + abs(draw) * 2
    return Hold(
        now + timedelta(seconds=wait),
        f"held: the webhook is on trial (no delivery to it has succeeded yet, or one failed or was slow since): "
        f"{policy.trial_invocations} dispatchers at a time attempt it",
        trial=True,
    )


def rate_limited(now: datetime, draw: float = 0.0) -> Hold:
    """A delivery beyond its webhook's rate limit: it comes back within the next few seconds."""
    wait = 1 - now.microsecond / 1e6 + abs(draw) * 2
    return Hold(now + timedelta(seconds=wait), "held: the webhook's rate limit is reached")
