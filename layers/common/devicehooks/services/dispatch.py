"""Dispatching device events: fan out to the tenant's webhooks, sign, POST, record, retry.

At least once, without duplicates: the activity record is written before any POST, each
delivery is leased before it is POSTed, and a delivery recorded as delivered is never POSTed
again, whatever redelivers the message (SQS, a crash, a retry task that is late).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError

from devicehooks.config import DEFAULT_RETRY_SCHEDULE
from devicehooks.delivery.sender import DeliveryResult, Sender, WebhookRequest
from devicehooks.delivery.signing import webhook_headers
from devicehooks.delivery.tasks import DeliveryTask, TaskQueue, parse_message
from devicehooks.domain.activity import ActivityEvent, Attempt, DeliveryStatus
from devicehooks.domain.events import BusEvent, WebhookEvent
from devicehooks.domain.models import Integration
from devicehooks.domain.validation import format_errors
from devicehooks.observability import logger, record_delivery
from devicehooks.security.secretbox import SecretCipher
from devicehooks.store.activity import ActivityStore, Claim
from devicehooks.store.integrations import IntegrationStore
from devicehooks.timeutil import utcnow

GONE_REASON = "the endpoint answered 410 Gone"


class Busy(Exception):
    """Another worker holds a delivery of this message: SQS must bring it back later."""


@dataclass(frozen=True)
class DispatchPolicy:
    """The knobs of delivery (from settings)."""

    retention: int = 7 * 24 * 3600
    schedule: tuple[int, ...] = DEFAULT_RETRY_SCHEDULE
    disable_after: int = 5 * 24 * 3600
    delivery_timeout: float = 10.0
    retry_after_cap: int = 3600
    lease: int = 0

    @property
    def lease_seconds(self) -> int:
        """How long a delivery is reserved: by default longer than any POST can take (connect and
        read timeouts, per address) plus recording it."""
        return self.lease or int(4 * self.delivery_timeout) + 30

    def retry_delay(self, series_attempt: int, retry_after: float | None) -> float | None:
        """Seconds until the next attempt after attempt ``series_attempt`` failed; ``None``: no more."""
        if series_attempt > len(self.schedule):
            return None
        if retry_after is not None:
            return float(min(max(retry_after, 1.0), self.retry_after_cap))
        return float(self.schedule[series_attempt - 1])


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
        self._tenants: dict[str, list[Integration]] = {}
        self._tenants_lock = threading.Lock()

    # ------------------------------------------------------------------ entry points
    def begin_batch(self) -> None:
        """Forget what the previous batch read (integrations are read once per tenant per batch)."""
        with self._tenants_lock:
            self._tenants.clear()

    def handle_message(self, body: str) -> None:
        """Process one queue message; raises when SQS must deliver it again."""
        try:
            self._handle_message(body)
        finally:
            logger.thread_safe_remove_keys(["correlation_id"])

    def _handle_message(self, body: str) -> None:
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
            self.handle_task(task)
            return
        self.handle_bus_event(data, body)

    def handle_bus_event(self, data: dict[str, Any], body: str) -> None:
        """First delivery of a device event to every webhook of its tenant that wants it."""
        try:
            event = WebhookEvent.from_bus(BusEvent.model_validate(data))
        except ValidationError as exc:
            self._reject(body, "malformed device event: " + format_errors(exc.errors()), data.get("id"))
            return
        logger.thread_safe_append_keys(correlation_id=event.id)
        integrations = self._integrations_of(event.tenant_id)
        if not integrations:
            return  # as Mender: no integration, nothing to record
        now = self.clock()
        targets = [i for i in integrations if i.wants(event.type)]
        lease = now + timedelta(seconds=self.policy.lease_seconds)
        statuses = [
            DeliveryStatus(integration_id=i.id, lease_until=lease)
            if i.enabled
            else DeliveryStatus(integration_id=i.id, state="skipped", error="webhook is disabled", updated_at=now)
            for i in targets
        ]
        expire_ts = int(now.timestamp()) + self.policy.retention
        record = ActivityEvent.new(event, [], expire_ts, statuses)
        jobs: list[tuple[ActivityEvent, Integration, int]] = []
        busy = False
        if self.activity.create(record):
            jobs = [(record, i, 0) for i in targets if i.enabled]  # every lease is this worker's
        elif (existing := self.activity.get(event.tenant_id, event.id)) is not None:
            for integration in targets:  # a copy of a message already (partly) handled
                status = existing.deliveries.get(integration.id)
                if status is None or status.state != "pending" or not integration.enabled:
                    continue  # delivered, waiting for a retry, failed or skipped: not this message's job
                claim = self.activity.claim(event.tenant_id, event.id, integration.id, now, self.policy.lease_seconds)
                if claim is Claim.BUSY:
                    busy = True
                elif claim is Claim.TAKEN:
                    jobs.append((existing, integration, status.attempts))
        self._run(jobs)
        if busy:
            raise Busy(f"event {event.id}: a delivery is leased by another worker")

    def handle_task(self, task: DeliveryTask) -> None:
        """A retry (or redelivery) of one delivery, when it is due."""
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
            state, error = (
                ("failed", "webhook was removed") if integration is None else ("skipped", "webhook is disabled")
            )
            self.activity.record(
                task.tenant_id,
                task.event_id,
                status.model_copy(update={"state": state, "error": error, "updated_at": now, "next_attempt_at": None}),
                None,
            )
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
    ) -> DeliveryResult:
        """POST ``event`` to ``integration`` once, record the attempt, schedule what comes next."""
        started = self.clock()
        try:
            keys = self._keys(integration, started)
            headers = webhook_headers(event.id, event.body, keys, int(started.timestamp()))
            result = self.sender.send(WebhookRequest(integration.url, event.body, headers))
        except Exception:
            # nothing was sent: give the delivery back at once, rather than when the lease expires
            current = event.deliveries.get(integration.id)
            if current is not None and retry:
                self.activity.record(event.tenant_id, event.id, current.model_copy(update={"lease_until": None}), None)
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
        base = DeliveryStatus(
            integration_id=integration.id,
            attempts=attempts_so_far + 1,
            status_code=result.status_code,
            error=result.error,
            updated_at=done,
        )
        log = {"correlation_id": event.id, "integration_id": integration.id, "status_code": result.status_code}
        if result.ok:
            self.activity.record(event.tenant_id, event.id, base.model_copy(update={"state": "delivered"}), attempt)
            if integration.failing_since is not None:
                self.integrations.note_success(integration.tenant_id, integration.id)
            logger.debug("webhook delivered", extra=log)
            return result
        logger.warning("webhook delivery failed", extra={**log, "error": result.error, "attempt": attempt.number})
        if result.status_code == 410:
            self._disable(integration, GONE_REASON, done)
            status = base.model_copy(update={"state": "failed", "error": f"{result.error}; webhook disabled"})
            self.activity.record(event.tenant_id, event.id, status, attempt)
            return result
        delay = self.policy.retry_delay(series_attempt, result.retry_after) if retry else None
        task = DeliveryTask(
            tenant_id=event.tenant_id,
            event_id=event.id,
            integration_id=integration.id,
            series_attempt=series_attempt + 1,
        )
        if delay is not None:
            self.queue.schedule(task, delay)  # before recording: a lost record costs a retry, a lost task a delivery
            status = base.model_copy(update={"state": "retrying", "next_attempt_at": done + timedelta(seconds=delay)})
        else:
            if retry:
                self.queue.dead_letter(
                    task.model_copy(update={"series_attempt": series_attempt}), result.error or "failed"
                )
            status = base.model_copy(update={"state": "failed"})
        self.activity.record(event.tenant_id, event.id, status, attempt)
        since = self.integrations.note_failure(integration.tenant_id, integration.id, done)
        if since is not None and (done - since).total_seconds() >= self.policy.disable_after:
            self._disable(integration, f"every delivery failed since {since.isoformat()}", done)
        return result

    def _disable(self, integration: Integration, reason: str, now: datetime) -> None:
        self.integrations.update(
            integration.tenant_id,
            integration.id,
            {"enabled": False, "disabled_reason": reason, "failing_since": None, "updated_at": now},
        )
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

    def _run(self, jobs: list[tuple[ActivityEvent, Integration, int]]) -> None:
        if len(jobs) == 1:  # one webhook: no hand-off to the pool (the record already has a thread)
            event, integration, attempts_so_far = jobs[0]
            self.deliver(event, integration, 1, attempts_so_far)
            return
        futures: list[Future[DeliveryResult]] = [
            self._pool.submit(self.deliver, event, integration, 1, attempts_so_far)
            for event, integration, attempts_so_far in jobs
        ]
        errors = [exc for f in futures if (exc := f.exception()) is not None]
        if errors:
            raise errors[0]

    # ------------------------------------------------------------------ helpers
    def _integrations_of(self, tenant_id: str) -> list[Integration]:
        with self._tenants_lock:
            cached = self._tenants.get(tenant_id)
        if cached is None:
            cached = self.integrations.list_tenant(tenant_id)
            with self._tenants_lock:
                self._tenants[tenant_id] = cached
        return cached

    def _reject(self, body: str, reason: str, event_id: Any) -> None:
        logger.warning("message sent to the dead-letter queue", extra={"reason": reason, "event_id": event_id})
        self.queue.reject_event(body, reason)
