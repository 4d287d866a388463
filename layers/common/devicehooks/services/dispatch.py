"""Dispatching device events: fan out to the tenant's webhooks, sign, POST, record, retry.

At least once, without duplicates: the activity record is written before any POST, each
delivery is leased before it is POSTed, and a delivery recorded as delivered is never POSTed
again, whatever redelivers the message (SQS, a crash, a retry task that is late).

What comes after an attempt is decided by :func:`devicehooks.domain.decisions.decide`; this
module performs it. The statuses of an event's webhooks that finish together are recorded in one
write (each within :data:`QUIET_SECONDS` of the last, :data:`COALESCE_SECONDS` at most), so a
fan-out costs one status write rather than one per webhook, and a slow webhook delays nobody's.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError

from devicehooks.delivery.sender import DeliveryResult, Sender, WebhookRequest
from devicehooks.delivery.signing import webhook_headers
from devicehooks.delivery.tasks import DeliveryTask, TaskQueue, parse_message
from devicehooks.domain.activity import ActivityEvent, Attempt, DeliveryStatus
from devicehooks.domain.decisions import Decision, DispatchPolicy, decide
from devicehooks.domain.events import BusEvent, WebhookEvent
from devicehooks.domain.models import Integration, IntegrationChanges
from devicehooks.domain.validation import format_errors
from devicehooks.observability import logger, record_delivery
from devicehooks.security.secretbox import SecretCipher
from devicehooks.store.activity import ActivityStore, Claim
from devicehooks.store.integrations import IntegrationStore
from devicehooks.timeutil import utcnow

COALESCE_SECONDS = 0.05  # how long a finished delivery may wait for its siblings, to share their write
QUIET_SECONDS = 0.01  # ... as long as one more finishes within this of the last

__all__ = ["Batch", "Busy", "COALESCE_SECONDS", "Dispatcher", "DispatchPolicy", "Outcome"]


class Busy(Exception):
    """Another worker holds a delivery of this message: SQS must bring it back later."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """One attempt, decided: what to record and what it means for the webhook."""

    integration: Integration
    result: DeliveryResult
    attempt: Attempt
    status: DeliveryStatus
    decision: Decision


class Batch:
    """What the records of one SQS batch share: each tenant's webhooks, read once however many
    records ask at the same time, and when the invocation must stop starting attempts.

    One per invocation, so concurrent invocations in one process (the local stack runs them as
    Lambda runs execution environments side by side) never see each other's reads."""

    def __init__(self, deadline: float | None = None) -> None:
        self.deadline = deadline  # time.monotonic() after which no attempt may start; None: no limit
        self._tenants: dict[str, Future[list[Integration]]] = {}
        self._lock = threading.Lock()

    def time_left(self) -> float:
        """Seconds until the deadline (infinite without one)."""
        return float("inf") if self.deadline is None else self.deadline - time.monotonic()

    def integrations_of(self, tenant_id: str, load: Callable[[str], list[Integration]]) -> list[Integration]:
        """The tenant's integrations, loaded once for this batch."""
        with self._lock:
            entry = self._tenants.get(tenant_id)
            owner = entry is None
            if entry is None:
                entry = self._tenants[tenant_id] = Future()
        if owner:
            try:
                entry.set_result(load(tenant_id))
            except BaseException as exc:
                entry.set_exception(exc)
                with self._lock:
                    self._tenants.pop(tenant_id, None)  # the next record tries again
                raise
        return entry.result()


class Dispatcher:
    """Turns queue messages (bus events, delivery tasks) into signed POSTs and activity records."""

    def __init__(
        self,
        integrations: IntegrationStore,
        activity: ActivityStore,
        cipher: SecretCipher,
        sender: Sender,
        queue: TaskQueue,
        policy: DispatchPolicy,
        clock: Callable[[], datetime] = utcnow,
        workers: int = 64,
    ) -> None:
        self.integrations = integrations
        self.activity = activity
        self.cipher = cipher
        self.sender = sender
        self.queue = queue
        self.policy = policy
        self.clock = clock
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="deliver")
        self._batch = Batch()

    # ------------------------------------------------------------------ entry points
    def begin_batch(self, deadline: float | None = None) -> Batch:
        """A new batch, also the one ``handle_message`` uses when it is given none (tests, benchmarks)."""
        self._batch = Batch(deadline)
        return self._batch

    def handle_message(self, body: str, batch: Batch | None = None) -> None:
        """Process one queue message of ``batch``; raises when SQS must deliver it again."""
        try:
            self._handle_message(body, batch or self._batch)
        finally:
            logger.thread_safe_remove_keys(["correlation_id"])

    def _handle_message(self, body: str, batch: Batch) -> None:
        data = parse_message(body)
        if data is None:
            self._reject(body, "malformed message: not a JSON object", None)
            return
        if data.get("kind") == "delivery":
            try:
                task = DeliveryTask.model_validate(data)
            except ValidationError as exc:
                self._reject(body, "malformed delivery task: " + format_errors(exc.errors()), None)
                return
            self.handle_task(task, batch)
            return
        self.handle_bus_event(data, body, batch)

    def handle_bus_event(self, data: dict[str, Any], body: str, batch: Batch | None = None) -> None:
        """First delivery of a device event to every webhook of its tenant that wants it."""
        batch = batch or self._batch
        try:
            event = WebhookEvent.from_bus(BusEvent.model_validate(data))
        except ValidationError as exc:
            self._reject(body, "malformed device event: " + format_errors(exc.errors()), data.get("id"))
            return
        logger.thread_safe_append_keys(correlation_id=event.id)
        integrations = batch.integrations_of(event.tenant_id, self.integrations.list_tenant)
        if not integrations:
            return  # as Mender: no integration, nothing to record
        now = self.clock()
        targets = [i for i in integrations if i.wants(event.type)]
        lease = now + timedelta(seconds=self.policy.lease_seconds)
        statuses = [
            DeliveryStatus.leased(i.id, lease)
            if i.enabled
            else DeliveryStatus.skipped_new(i.id, "webhook is disabled", now)
            for i in targets
        ]
        record = ActivityEvent.new(event, int(now.timestamp()) + self.policy.retention, statuses)
        existing = self.activity.create(record)
        if existing is None:
            self._run(record, [(i, 0) for i in targets if i.enabled])  # every lease is this worker's
            return
        jobs: list[tuple[Integration, int]] = []
        busy = False
        for integration in targets:  # a copy of a message already (partly) handled
            status = existing.deliveries.get(integration.id)
            if status is None or status.state != "pending" or not integration.enabled:
                continue  # delivered, waiting for a retry, failed or skipped: not this message's job
            claim = self.activity.claim(event.tenant_id, event.id, integration.id, now, self.policy.lease_seconds)
            if claim is Claim.BUSY:
                busy = True
            elif claim is Claim.TAKEN:
                jobs.append((integration, status.attempts))
        self._run(existing, jobs)
        if busy:
            raise Busy(f"event {event.id}: a delivery is leased by another worker")

    def handle_task(self, task: DeliveryTask, batch: Batch | None = None) -> None:
        """A retry (or redelivery) of one delivery, when it is due."""
        batch = batch or self._batch
        now = self.clock()
        remaining = task.due_at - now.timestamp()
        if remaining > 1:
            self.queue.schedule(task, remaining)
            return
        logger.thread_safe_append_keys(correlation_id=task.event_id)
        event = self.activity.get(task.tenant_id, task.event_id)
        if event is None:
            logger.warning("retry of an event no longer in the activity log", extra={"event_id": task.event_id})
            return
        status = event.deliveries.get(task.integration_id)
        if status is None or status.state == "delivered":
            return
        integration = self.integrations.get(task.tenant_id, task.integration_id)
        if integration is None or not integration.enabled:
            closed = (
                status.closed("failed", "webhook was removed", now)
                if integration is None
                else status.closed("skipped", "webhook is disabled", now)
            )
            self.activity.record(task.tenant_id, task.event_id, [(closed, None)])
            return
        claim = self.activity.claim(task.tenant_id, task.event_id, task.integration_id, now, self.policy.lease_seconds)
        if claim is Claim.BUSY:
            raise Busy(f"event {task.event_id}: delivery to {task.integration_id} is leased by another worker")
        if claim is Claim.TAKEN:
            self.deliver(event, integration, task.series_attempt, status.attempts)

    # ------------------------------------------------------------------ delivery
    def deliver(
        self,
        event: ActivityEvent,
        integration: Integration,
        series_attempt: int,
        attempts_so_far: int,
        retry: bool = True,
    ) -> Attempt:
        """POST ``event`` to ``integration`` once, record the attempt, do what comes next."""
        outcome = self._attempt(event, integration, series_attempt, attempts_so_far, retry)
        self.activity.record(event.tenant_id, event.id, [(outcome.status, outcome.attempt)])
        self._follow_up(outcome)
        return outcome.attempt

    def _attempt(
        self, event: ActivityEvent, integration: Integration, series_attempt: int, attempts_so_far: int, retry: bool
    ) -> Outcome:
        """Sign and POST, decide, and queue what must be queued before the status is recorded."""
        current = event.deliveries.get(integration.id) or DeliveryStatus(integration.id)
        started = self.clock()
        try:
            keys = self._keys(integration, started)
            headers = webhook_headers(event.id, event.body, keys, int(started.timestamp()))
            result = self.sender.send(WebhookRequest(integration.url, event.body, headers))
        except Exception:
            # nothing was sent: give the delivery back at once, rather than when the lease expires
            if retry:
                self.activity.record(event.tenant_id, event.id, [(current.with_lease(None), None)])
            raise
        done = self.clock()
        record_delivery(result.ok, result.duration_ms)
        attempt = Attempt(
            number=attempts_so_far + 1,
            at=started,
            duration_ms=result.duration_ms,
            status_code=result.status_code,
            error=result.error,
            response_body=result.response_body,
        )
        decision = decide(attempt, result.retry_after, series_attempt, self.policy, retry)
        task = DeliveryTask(
            tenant_id=event.tenant_id,
            event_id=event.id,
            integration_id=integration.id,
            series_attempt=series_attempt + 1,
        )
        next_at = None
        if decision.retry_in is not None:
            self.queue.schedule(
                task, decision.retry_in
            )  # before recording: a lost record costs a retry, a lost task a delivery
            next_at = done + timedelta(seconds=decision.retry_in)
        if decision.dead_letter:
            self.queue.dead_letter(task.at_attempt(series_attempt), result.error or "failed")
        status = current.after_attempt(attempt, decision.state, done, next_at, decision.error)
        log = {"correlation_id": event.id, "integration_id": integration.id, "status_code": result.status_code}
        if result.ok:
            logger.debug("webhook delivered", extra=log)
        else:
            logger.warning("webhook delivery failed", extra={**log, "error": result.error, "attempt": attempt.number})
        return Outcome(integration, result, attempt, status, decision)

    def _follow_up(self, outcome: Outcome) -> None:
        """What an attempt means for its webhook: disabled at once, failing since when, or working again."""
        integration, decision = outcome.integration, outcome.decision
        now = outcome.status.updated_at or self.clock()
        if decision.disable_reason is not None:
            self._disable(integration, decision.disable_reason, now)
        elif decision.failure:
            since = self.integrations.note_failure(integration.tenant_id, integration.id, now)
            if self.policy.disable_due(since, now):
                assert since is not None
                self._disable(integration, f"every delivery failed since {since.isoformat()}", now)
        elif decision.state == "delivered" and integration.failing_since is not None:
            self.integrations.note_success(integration.tenant_id, integration.id)

    def _disable(self, integration: Integration, reason: str, now: datetime) -> None:
        self.integrations.update(integration.tenant_id, integration.id, IntegrationChanges.disabled(reason, now))
        logger.warning("webhook disabled", extra={"integration_id": integration.id, "reason": reason})

    def _keys(self, integration: Integration, now: datetime) -> list[bytes] | None:
        if integration.secret is None:
            return None
        keys = [self.cipher.open(integration.secret, integration.tenant_id, integration.id)]
        previous = integration.previous_secret
        until = integration.previous_secret_until
        if previous is not None and until is not None and until > now:
            keys.append(self.cipher.open(previous, integration.tenant_id, integration.id))
        return keys

    def _run(self, event: ActivityEvent, jobs: list[tuple[Integration, int]]) -> None:
        """Deliver ``event`` to each webhook of ``jobs`` (with its attempts so far), side by side."""
        if len(jobs) == 1:  # one webhook: no hand-off to the pool (the record already has a thread)
            integration, attempts_so_far = jobs[0]
            self.deliver(event, integration, 1, attempts_so_far)
            return
        pending = {self._pool.submit(self._attempt, event, i, 1, attempts, True) for i, attempts in jobs}
        errors: list[BaseException] = []
        while pending:
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            # siblings finishing close behind share the write: gather them while they keep coming
            # (each within QUIET_SECONDS of the last), for COALESCE_SECONDS at most
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
            self.activity.record(event.tenant_id, event.id, [(o.status, o.attempt) for o in outcomes])
            for outcome in outcomes:
                self._follow_up(outcome)
        if errors:
            raise errors[0]

    # ------------------------------------------------------------------ helpers
    def _reject(self, body: str, reason: str, event_id: Any) -> None:
        logger.warning("message sent to the dead-letter queue", extra={"reason": reason, "event_id": event_id})
        self.queue.reject_event(body, reason)
