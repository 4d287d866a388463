"""Sending again on request: redelivery of recorded events, and test deliveries."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Literal

from devicehooks.delivery.tasks import DeliveryTask, TaskQueue
from devicehooks.domain.activity import (
    DELIVERED_ALREADY,
    RETRYABLE,
    ActivityEvent,
    Attempt,
    DeliveryState,
    DeliveryStatus,
    RecoverSkip,
)
from devicehooks.domain.eventids import new_event_id
from devicehooks.domain.events import WebhookEvent, sample_data
from devicehooks.domain.models import TEST_EVENT_TYPE, ActivityType, Circuit, EventType, Integration
from devicehooks.errors import Conflict, InvalidRequest, NotFound
from devicehooks.store.activity import ActivityStore
from devicehooks.store.bounds import ItemTooLarge
from devicehooks.store.integrations import IntegrationStore
from devicehooks.timeutil import utcnow

if TYPE_CHECKING:  # the delivery pipeline is imported only when a test delivery is sent
    from devicehooks.dispatch import Dispatcher

RECOVER_PAGE = 1000  # events examined per recover call (10 reads of the index and the items)
# a redelivery refused because the event's record could not take it (an item from before the bounds)
TOO_LARGE = "the event's activity record is full and cannot record another attempt; it cannot be redelivered"
RECOVER_DELAY = 1.0  # a resend waits this long, so that its delivery is reopened (and counted) first
# what recover reopens: every delivery whose last attempt failed (retrying, or failed: out of tries)
# and every one held by the webhook's circuit, trial or limits (retrying with no attempt counted)
RECOVERABLE: tuple[DeliveryState, ...] = ("retrying", "failed")
# why a retry (POST /events/{id}/retry) attempts nothing; the delivery's own reasons are in domain/activity.py
RETRY_TOO_LARGE = "the event's activity record is full and cannot record another attempt; it cannot be retried"
RETRY_TEST = "test events are not retried; send a new test instead"
RETRY_DISABLED = "the webhook is disabled; enable it before retrying"
RETRY_REMOVED = "the webhook no longer exists"
RETRY_NOT_SENT = "the event did not go to this webhook; redeliver it to send it"
RETRY_CHANGED = "the delivery made another attempt meanwhile; look at it again before retrying"
RETRY_ALL_DELIVERED = "every delivery of this event was delivered; redeliver it to send it again"


@dataclass(frozen=True, slots=True)
class Recovery:
    """What a recover call did: the deliveries it queued (``count``), those already queued or being
    attempted that it left alone, those it did not send and why, the webhook's circuit when it is
    not closed (the queued deliveries go through it), and where to go on when it stopped early."""

    count: int
    next_since: datetime | None = None
    already_queued: int = 0
    skipped: Mapping[RecoverSkip, int] = field(default_factory=dict)
    circuit: Circuit | None = None
    at: datetime | None = None  # when the circuit was read

    @property
    def found(self) -> int:
        """The deliveries of the window that were not delivered when it was read."""
        return self.count + self.already_queued + sum(self.skipped.values())


class DeliveryService:
    """Redeliver an event (through the retry queue, as new attempts) or send a test event now."""

    def __init__(
        self,
        integrations: IntegrationStore,
        activity: ActivityStore,
        queue: TaskQueue,
        dispatcher: Callable[[], Dispatcher],
        retention: int,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.integrations = integrations
        self.activity = activity
        self.queue = queue
        self.dispatcher = dispatcher
        self.retention = retention
        self.clock = clock

    def redeliver(self, tenant_id: str, event_id: str, integration_id: str | None) -> list[str]:
        """Send the event again now to one webhook, or to every webhook it went to that still exists
        and is enabled, whatever their deliveries' state (a delivery waiting for its next retry is
        attempted now, and that retry is then dropped); returns the webhooks it was queued for.

        A delivery being attempted right now (its lease held) is not queued again."""
        event = self.activity.get(tenant_id, event_id)
        if event is None:
            raise NotFound("event not found")
        if event.is_test:
            raise Conflict("test events are not redelivered; send a new test instead")
        if integration_id is not None:
            integration = self.integrations.get(tenant_id, integration_id)
            if integration is None:
                raise NotFound("integration not found")
            if not integration.enabled:
                raise Conflict("the webhook is disabled; enable it before redelivering")
            targets = [integration_id]
        else:
            live = {i.id: i for i in self.integrations.list_tenant(tenant_id)}
            targets = [i for i in event.deliveries if i in live and live[i].enabled]
            if not targets:
                raise Conflict("no enabled webhook of this event to redeliver to")
        missing = [i for i in targets if i not in event.deliveries]
        now = self.clock()
        queued: list[str] = []
        full = False
        try:
            if missing:
                self.activity.add_deliveries(tenant_id, event_id, missing)
            for target in targets:
                status = event.deliveries.get(target)
                seen = 0 if status is None else status.attempts
                # One conditional write, whatever the state: pending again, due now, if no attempt is
                # in flight and none was recorded since the read. The task carries the attempts seen:
                # the retry that was waiting saw the same, so whichever of the two comes first makes
                # the attempt and the other finds it superseded (dispatch/messages.py), never a second.
                try:
                    reopened = self.activity.reopen(tenant_id, event_id, target, now, seen)
                except ItemTooLarge:
                    # the event's record has no room (an item from before store/bounds.py): nothing
                    # queued, so nothing is sent that could not be recorded
                    full = True
                    continue
                if reopened:
                    self.queue.schedule(self._task(tenant_id, event_id, target, seen), 0)
                    queued.append(target)
        except ItemTooLarge:
            full = True
        if not queued and full:
            raise Conflict(TOO_LARGE)
        if not queued:
            raise Conflict("the delivery is being attempted now; try again once the attempt is over")
        return queued

    def retry(self, tenant_id: str, event_id: str, integration_id: str | None) -> list[str]:
        """Attempt again now the deliveries of the event that were not delivered: to one webhook, or
        to every webhook it went to that still exists and is enabled; returns the webhooks it was
        queued for. Unlike :meth:`redeliver` ("send it again"), a delivered delivery is never sent
        again, however stale the caller's view: each delivery is reopened by one conditional write
        that holds only while it is still in a :data:`RETRYABLE` state, with the attempts read and
        no attempt in flight. When none is queued, :class:`Conflict` says why."""
        event = self.activity.get(tenant_id, event_id)
        if event is None:
            raise NotFound("event not found")
        if event.is_test:
            raise Conflict(RETRY_TEST)
        candidates: list[tuple[Integration | None, DeliveryStatus]]
        if integration_id is not None:
            integration = self.integrations.get(tenant_id, integration_id)
            if integration is None:
                raise NotFound("integration not found")
            status = event.deliveries.get(integration_id)
            if status is None:
                raise Conflict(RETRY_NOT_SENT)
            candidates = [(integration, status)]
        else:
            live = {i.id: i for i in self.integrations.list_tenant(tenant_id)}
            candidates = [(live.get(i), s) for i, s in event.deliveries.items()]
        now = self.clock()
        queued: list[str] = []
        refusals: list[str] = []
        for integration, status in candidates:
            refusal = self._retry_one(tenant_id, event_id, integration, status, now)
            if refusal is None:
                queued.append(status.integration_id)
            elif refusal not in refusals:
                refusals.append(refusal)
        if not queued:
            raise Conflict(_retry_refused(refusals, len(candidates)))
        return queued

    def _retry_one(
        self, tenant_id: str, event_id: str, integration: Integration | None, status: DeliveryStatus, now: datetime
    ) -> str | None:
        """Reopen one delivery and queue its attempt; ``None`` when queued, else why not."""
        refusal = status.retry_refusal(now)
        if refusal == DELIVERED_ALREADY:  # first: a delivered delivery reads as delivered, wherever it went
            return refusal
        # then the webhook: a disabled one's refusal says so, even while an attempt started before
        # it was disabled is in flight or a task is still queued (that one is skipped, not sent)
        if integration is None:
            return RETRY_REMOVED
        if not integration.enabled:
            return RETRY_DISABLED
        if refusal is not None:
            return refusal
        try:
            # the state checked again in the write itself: what was read above may be stale already
            reopened = self.activity.reopen(tenant_id, event_id, status.integration_id, now, status.attempts, RETRYABLE)
        except ItemTooLarge:
            return RETRY_TOO_LARGE
        if not reopened:
            # changed since the read (delivered, taken by a dispatcher, attempted): say how, from a fresh read
            fresh = self.activity.get(tenant_id, event_id)
            current = fresh.deliveries.get(status.integration_id) if fresh is not None else None
            if current is None:
                return RETRY_NOT_SENT
            return current.retry_refusal(self.clock()) or RETRY_CHANGED
        # after the reopen, as redeliver: a task whose reopen was refused would be harmless (it saw the
        # same attempts as the waiting retry), but a refused retry queues nothing at all
        self.queue.schedule(self._task(tenant_id, event_id, status.integration_id, status.attempts), 0)
        return None

    def recover(self, tenant_id: str, integration_id: str, since: datetime, until: datetime | None) -> Recovery:
        """Send again, now, every delivery to the webhook that is failing, of the events with
        ``since <= time < until`` (until: now; the window starts at most the retention ago): those
        whose last attempt failed (``retrying``, and ``failed``: out of tries) and those held by the
        webhook's circuit, trial or limits (``retrying``, no attempt counted), as Svix's recover.

        Each is reopened with one conditional write from a :data:`RECOVERABLE` state, with the
        attempts read and no attempt in flight, so a delivery delivered (or attempted) since the read
        is never sent again, and a second call (or two at once) finds it pending and counts it as
        already queued: no delivery is sent twice. A retry that was waiting saw the same attempts as
        the recover's task: whichever comes first attempts, the other is dropped. The tasks go
        through the flow gate like any other: with the circuit open they are held until its probe.
        At most :data:`RECOVER_PAGE` events are examined per call; ``next_since`` says where to go on.
        """
        integration = self.integrations.get(tenant_id, integration_id)
        if integration is None:
            raise NotFound("integration not found")
        now = self.clock()
        end = now if until is None else until
        if end <= since:
            raise InvalidRequest("malformed request body: until: must be later than since.")
        if not integration.enabled:
            raise Conflict("the webhook is disabled; enable it before recovering its deliveries")
        start = max(since, now - timedelta(seconds=self.retention))
        events = self.activity.webhook_events(tenant_id, integration_id, start, end, RECOVER_PAGE + 1)
        next_since = events[RECOVER_PAGE].time if len(events) > RECOVER_PAGE else None
        failing: list[tuple[str, int]] = []
        already_queued = 0
        skipped: dict[RecoverSkip, int] = {}
        for event in events[:RECOVER_PAGE]:
            status = event.deliveries.get(integration_id)
            if event.is_test or status is None:  # test deliveries are never sent again
                continue
            if status.state == "delivered":
                continue
            if status.state == "pending" or (status.lease_until is not None and status.lease_until >= now):
                already_queued += 1
            elif status.state in RECOVERABLE:
                failing.append((event.id, status.attempts))
            else:  # skipped: never attempted, while the webhook was disabled
                skipped["disabled"] = skipped.get("disabled", 0) + 1
        count = 0
        for chunk in range(0, len(failing), 10):
            batch = failing[chunk : chunk + 10]
            # queued before the delivery is reopened: a task whose reopen did not happen (a crash, a
            # concurrent call that reopened it, a delivery delivered or attempted since the read) is
            # harmless, it saw the same attempts as the task of whoever reopened it (or fewer than
            # the delivery has made) and at most one of them attempts; a reopened delivery without
            # its task would be stuck pending
            self.queue.schedule_many(
                [(self._task(tenant_id, e, integration_id, seen), RECOVER_DELAY) for e, seen in batch]
            )
            for event_id, seen in batch:
                refused = self._reopen_failing(tenant_id, event_id, integration_id, now, seen)
                if refused is None:
                    count += 1
                elif refused == "queued":
                    already_queued += 1
                else:
                    skipped[refused] = skipped.get(refused, 0) + 1
        circuit = integration.circuit if integration.circuit.state(now) != "closed" else None
        return Recovery(count, next_since, already_queued, skipped, circuit, now)

    def _reopen_failing(
        self, tenant_id: str, event_id: str, integration_id: str, now: datetime, seen: int
    ) -> RecoverSkip | Literal["queued"] | None:
        """Reopen a failing delivery for recover: ``None`` when reopened, else why not, from a fresh
        read (the write was refused: the delivery changed since the window was read). Its task,
        queued already, is then as one whose reopen did not happen: its claim is refused (nothing is
        sent), or it makes the one attempt of the tasks that saw those attempts."""
        try:
            if self.activity.reopen(tenant_id, event_id, integration_id, now, seen, RECOVERABLE):
                return None
        except ItemTooLarge:
            return "record_full"
        fresh = self.activity.get(tenant_id, event_id)
        current = fresh.deliveries.get(integration_id) if fresh is not None else None
        if current is None:
            return "gone"
        if current.state == "delivered":
            return "delivered"
        if current.state == "pending" or (current.lease_until is not None and current.lease_until >= now):
            return "queued"
        if current.state == "skipped":
            return "disabled"
        return "attempted"

    @staticmethod
    def _task(tenant_id: str, event_id: str, integration_id: str, seen_attempts: int) -> DeliveryTask:
        return DeliveryTask(
            tenant_id=tenant_id,
            event_id=event_id,
            integration_id=integration_id,
            series_attempt=1,
            reason="redeliver",
            seen_attempts=seen_attempts,
        )

    def send_test(
        self, tenant_id: str, integration_id: str, event_type: EventType | None = None
    ) -> tuple[str, Attempt]:
        """POST a test event to the webhook now (one attempt); its id and the attempt.

        Without ``event_type``, a ``webhook-test`` event; with one, a realistic sample of that type
        (a made-up device), so that a receiver can be tried on the bodies it will get."""
        integration = self.integrations.get(tenant_id, integration_id)
        if integration is None:
            raise NotFound("integration not found")
        now = self.clock()
        kind: ActivityType = TEST_EVENT_TYPE if event_type is None else event_type
        event = WebhookEvent(
            id=new_event_id(now, kind),
            tenant_id=tenant_id,
            type=kind,
            data=(
                {"integration_id": integration_id, "message": "This is a test event sent by devicehooks."}
                if event_type is None
                else sample_data(event_type, tenant_id, now)
            ),
            time=now,
        )
        expire_ts = int(now.timestamp()) + self.retention
        record = ActivityEvent.new(event, expire_ts, [DeliveryStatus(integration_id)], test=event_type is not None)
        self.activity.create(record)
        return event.id, self.dispatcher().send_test(record, integration)


def _retry_refused(refusals: list[str], deliveries: int) -> str:
    """One reason for a retry that queued nothing, of ``deliveries``: why the ones not delivered were
    not retried, each reason once, or that every one was delivered."""
    if not refusals:  # an event without deliveries
        return "the event went to no webhook; there is nothing to retry"
    others = [r for r in refusals if r != DELIVERED_ALREADY]  # what stopped the ones not delivered
    if others:
        return "; ".join(others)
    return DELIVERED_ALREADY if deliveries == 1 else RETRY_ALL_DELIVERED
