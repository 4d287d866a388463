"""Dispatching device events: fan out to the tenant's webhooks, sign, POST, record, retry.

The pipeline, in the order a delivery goes through it:

* :mod:`~devicehooks.dispatch.messages`: a queue message becomes deliveries (a device event's
  first ones, recorded and leased before any POST; a retry, a held delivery, a group of them);
* :mod:`~devicehooks.dispatch.gate`: the flow gate admits each delivery to an attempt, or holds it;
* :mod:`~devicehooks.dispatch.attempt`: prepare → send → conclude, then follow up;
* :mod:`~devicehooks.dispatch.deliver`: an event's deliveries side by side, recorded together;
* :mod:`~devicehooks.dispatch.batch`: what an invocation's records share.

:class:`Dispatcher` is what a composition root makes and a handler calls.
"""

from __future__ import annotations

from devicehooks.delivery.tasks import DeliveryTask
from devicehooks.dispatch import messages
from devicehooks.dispatch.attempt import Attempted
from devicehooks.dispatch.batch import Batch
from devicehooks.dispatch.context import DispatchContext
from devicehooks.dispatch.deliver import Job, deliver
from devicehooks.dispatch.gate import FlowGate
from devicehooks.dispatch.messages import Busy
from devicehooks.domain.activity import ActivityEvent, Attempt
from devicehooks.domain.models import Integration
from devicehooks.observability import logger, traced

__all__ = ["Batch", "Busy", "DispatchContext", "Dispatcher", "FlowGate"]


class Dispatcher:
    """Queue messages (bus events, delivery tasks) into signed POSTs and activity records."""

    def __init__(self, ctx: DispatchContext) -> None:
        self.ctx = ctx
        self.gate = FlowGate(ctx.integrations, ctx.policy, ctx.draw)

    def handle_message(self, body: str, batch: Batch) -> None:
        """Process one queue message of ``batch``; raises when SQS must deliver it again (the tasks
        it leaves for the retry queue go when the batch is finished: :meth:`finish_batch`)."""
        try:
            with traced("device event"):  # annotated with the event's id once it is read
                messages.handle_message(self.ctx, self.gate, batch, body)
        finally:
            logger.thread_safe_remove_keys(["correlation_id"])

    def handle_task(self, task: DeliveryTask, batch: Batch) -> None:
        """One delivery task of ``batch`` (as :meth:`handle_message` with its message)."""
        try:
            with traced("device event", event_id=task.event_id):
                messages.handle_task(self.ctx, self.gate, batch, task)
        finally:
            logger.thread_safe_remove_keys(["correlation_id"])

    def finish_batch(self, batch: Batch) -> None:
        """Send what the batch's records left for the retry queue (raises if it cannot: SQS must then
        bring the whole batch back); give back its turns at webhooks on trial. Its attempts are
        counted for the webhooks' health from the activity table's stream, not here
        (:mod:`devicehooks.services.health_counter`)."""
        try:
            waiting = batch.take_outbox()
            if waiting:
                self.ctx.queue.schedule_many(waiting)
        finally:
            self._end_trials(batch)

    def send_test(self, event: ActivityEvent, integration: Integration) -> Attempt:
        """POST ``event`` (recorded already) to ``integration`` once, now, whatever its circuit, share
        or rate limit; recorded like any attempt, never retried."""
        batch = Batch(deadline=None)
        try:
            (outcome,) = deliver(self.ctx, self.gate, batch, event, [Job(integration, retry=False)])
        finally:
            self.finish_batch(batch)
        assert isinstance(outcome, Attempted)  # a test delivery is never held
        return outcome.attempt

    def _end_trials(self, batch: Batch) -> None:
        for (tenant_id, integration_id), trial in batch.take_trials():
            if trial.slot is None:
                continue
            try:
                self.ctx.integrations.end_trial(tenant_id, integration_id, trial)
            except Exception as exc:  # noqa: BLE001 - a turn not given back frees itself when its time is up
                logger.warning(
                    "could not end a webhook's trial turn",
                    extra={"integration_id": integration_id, "error": f"{type(exc).__name__}: {exc}"},
                )
