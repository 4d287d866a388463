"""An event's deliveries to its webhooks, side by side: each through the gate to an attempt (or
held), then recorded, counted and followed up.

The statuses of an event's webhooks that finish together are recorded in one write (each within
:data:`QUIET_SECONDS` of the last, :data:`COALESCE_SECONDS` at most), so a fan-out costs one status
write rather than one per webhook, and a slow webhook delays nobody's.
"""

from __future__ import annotations

import time
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass, replace

from devicehooks.delivery.tasks import DeliveryTask
from devicehooks.dispatch.attempt import Attempted, Held, Outcome, attempt, follow_up, held
from devicehooks.dispatch.batch import Batch
from devicehooks.dispatch.context import DispatchContext
from devicehooks.dispatch.gate import FlowGate
from devicehooks.domain.activity import ActivityEvent, DeliveryStatus
from devicehooks.domain.decisions import Hold
from devicehooks.domain.models import Integration

COALESCE_SECONDS = 0.05  # how long a finished delivery may wait for its siblings, to share their write
QUIET_SECONDS = 0.01  # ... as long as one more finishes within this of the last


@dataclass(frozen=True, slots=True)
class Job:
    """One delivery to attempt: attempt ``series_attempt`` of its retry schedule; ``retry=False``
    (a test delivery) is attempted whatever the gate says, and never retried."""

    integration: Integration
    series_attempt: int = 1
    retry: bool = True


def turn(ctx: DispatchContext, gate: FlowGate, batch: Batch, event: ActivityEvent, job: Job) -> Outcome:
    """One delivery's turn: through the gate to an attempt, or held (the caller records either)."""
    integration = job.integration
    current = event.deliveries.get(integration.id) or DeliveryStatus(integration.id)
    if not job.retry:
        return attempt(ctx, event, integration, current, job.series_attempt, retry=False)
    now = ctx.clock()
    admitted = gate.admit(batch, integration, now)
    if isinstance(admitted, Hold):
        task = DeliveryTask.first(event.tenant_id, event.id, integration.id, current.attempts)
        return held(batch, task.at_attempt(job.series_attempt), current, integration, admitted, now)
    try:
        outcome = attempt(ctx, event, integration, current, job.series_attempt, retry=True)
    finally:
        admitted.release()
    return replace(outcome, probe=admitted.probe)


def settle(ctx: DispatchContext, batch: Batch, event: ActivityEvent, outcomes: list[Outcome]) -> None:
    """Record outcomes of one event (one write; the activity table's stream counts their attempts
    for the webhooks' health), follow them up."""
    ctx.activity.record(
        event.tenant_id,
        event.id,
        [(o.status, o.attempt if isinstance(o, Attempted) else None) for o in outcomes],
        deliveries=len(event.deliveries),  # what each delivery keeps is bounded by how many there are
    )
    for outcome in outcomes:
        follow_up(ctx, batch, outcome)


def deliver(ctx: DispatchContext, gate: FlowGate, batch: Batch, event: ActivityEvent, jobs: list[Job]) -> list[Outcome]:
    """Deliver ``event`` for each job (the caller holds each delivery's lease), side by side; the
    outcomes, recorded. One job runs on the caller's thread (the record has one already)."""
    if len(jobs) == 1:
        outcome = turn(ctx, gate, batch, event, jobs[0])
        settle(ctx, batch, event, [outcome])
        return [outcome]
    pending: set[Future[Outcome]] = {ctx.threads.submit(turn, ctx, gate, batch, event, job) for job in jobs}
    done: list[Outcome] = []
    errors: list[BaseException] = []
    while pending:
        finished, pending = wait(pending, return_when=FIRST_COMPLETED)
        # siblings finishing close behind share the write: gather them while they keep coming (each
        # within QUIET_SECONDS of the last), for COALESCE_SECONDS at most
        until = time.monotonic() + COALESCE_SECONDS
        while pending and (left := until - time.monotonic()) > 0:
            more, pending = wait(pending, timeout=min(QUIET_SECONDS, left), return_when=FIRST_COMPLETED)
            if not more:
                break
            finished |= more
        outcomes = []
        for future in finished:
            error = future.exception()
            if error is None:
                outcomes.append(future.result())
            else:
                errors.append(error)
        if outcomes:
            settle(ctx, batch, event, outcomes)
            done += outcomes
    if errors:
        raise errors[0]
    return done


__all__ = ["COALESCE_SECONDS", "Held", "Job", "deliver", "settle", "turn"]
