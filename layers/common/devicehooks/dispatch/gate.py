"""The flow gate: whether a delivery is attempted now, or held.

One place answers it, from what every dispatcher shares (the webhook's circuit, its turns while on
trial, its rate limit: in the integrations table) and what this execution environment knows (the
invocation's time left, the webhook's share of this environment's attempts at once). A held
delivery is not attempted: it is recorded as retrying and goes back to the retry queue, so no
Lambda waits for it. The pure part of each decision is :mod:`devicehooks.domain.decisions`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from devicehooks.dispatch.batch import Batch
from devicehooks.domain.decisions import DispatchPolicy, Gate, Hold, gate, held_back, on_trial, rate_limited
from devicehooks.domain.models import Integration
from devicehooks.store.integrations import IntegrationStore, Trial

PROBING = "held: another dispatcher is probing the webhook"
SHARE_IN_USE = "held: the webhook's share of concurrent deliveries is in use"


@dataclass(slots=True)
class Admitted:
    """A delivery that may be attempted now (as the circuit's one probe, or not); :meth:`release`
    gives its share back once the attempt is over (once, however often it is called)."""

    probe: bool
    give_back: Callable[[], None]
    released: bool = False

    def release(self) -> None:
        if not self.released:
            self.released = True
            self.give_back()


class Shares:
    """At most ``limit`` attempts at once to any one webhook in this execution environment (which
    runs one invocation at a time): a webhook proven but slow cannot take every thread."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._in_use: dict[str, int] = {}
        self._lock = threading.Lock()

    def take(self, integration_id: str) -> bool:
        with self._lock:
            used = self._in_use.get(integration_id, 0)
            if used >= self.limit:
                return False
            self._in_use[integration_id] = used + 1
            return True

    def give_back(self, integration_id: str) -> None:
        with self._lock:
            left = self._in_use.get(integration_id, 1) - 1
            if left:
                self._in_use[integration_id] = left
            else:
                self._in_use.pop(integration_id, None)


class FlowGate:
    """Admits a delivery to an attempt, or holds it (see the module), in this order: the
    invocation's time left and the webhook's circuit; for a webhook on trial, this invocation's turn
    at it (taken once per batch); the webhook's share of this environment's attempts; the circuit's
    one probe, when half-open; its rate limit."""

    def __init__(self, integrations: IntegrationStore, policy: DispatchPolicy, draw: Callable[[], float]) -> None:
        self.integrations = integrations
        self.policy = policy
        self.draw = draw
        self.shares = Shares(policy.webhook_concurrency)

    def precheck(self, batch: Batch, integration: Integration, now: datetime) -> Gate:
        """What holds a delivery before anything is recorded: the invocation's time, the circuit,
        this invocation's turn at a webhook on trial (``"probe"``: only as the circuit's probe)."""
        decided = gate(integration.circuit, batch.time_left(), now, self.policy, self.draw())
        if decided == "attempt" and not integration.circuit.proven and not self._trial(batch, integration, now).granted:
            return on_trial(now, self.policy, self.draw())
        return decided

    def admit(self, batch: Batch, integration: Integration, now: datetime) -> Admitted | Hold:
        """Every gate: :meth:`precheck`, then the share, the probe's claim and the rate limit."""
        decided = self.precheck(batch, integration, now)
        if isinstance(decided, Hold):
            return decided
        # the share first (in memory): a probe is not claimed for a delivery the share would hold
        if not self.shares.take(integration.id):
            return held_back(SHARE_IN_USE, now, self.policy, self.draw())
        admitted = Admitted(decided == "probe", lambda: self.shares.give_back(integration.id))
        if admitted.probe:
            until = now + timedelta(seconds=self.policy.attempt_budget)
            if not self.integrations.claim_probe(integration.tenant_id, integration.id, now, until):
                admitted.release()
                return held_back(PROBING, now, self.policy, self.draw())
        if integration.rate_limit and not self.integrations.take_rate_token(
            integration.tenant_id, integration.id, int(now.timestamp()), integration.rate_limit
        ):
            admitted.release()
            return rate_limited(now, self.draw())
        return admitted

    def _trial(self, batch: Batch, integration: Integration, now: datetime) -> Trial:
        """This invocation's turn at a webhook on trial, held until the invocation ends."""
        until = now + timedelta(seconds=min(batch.time_left(), float(self.policy.lease_seconds)))
        slots = self.policy.trial_invocations
        return batch.trial(
            integration,
            lambda: self.integrations.start_trial(integration.tenant_id, integration.id, slots, now, until),
        )
