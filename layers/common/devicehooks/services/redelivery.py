"""Sending again on request: redelivery of recorded events, and test deliveries."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

from devicehooks.delivery.tasks import DeliveryTask, TaskQueue
from devicehooks.domain.activity import ActivityEvent, Attempt, DeliveryStatus
from devicehooks.domain.events import WebhookEvent
from devicehooks.domain.models import TEST_EVENT_TYPE, new_id
from devicehooks.errors import Conflict, NotFound
from devicehooks.store.activity import ActivityStore
from devicehooks.store.integrations import IntegrationStore
from devicehooks.timeutil import utcnow

if TYPE_CHECKING:  # the delivery stack is imported only when a test delivery is sent
    from devicehooks.services.dispatch import Dispatcher


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
        """Queue the event for one webhook, or for every webhook it went to that still exists;
        returns the webhooks it was queued for."""
        event = self.activity.get(tenant_id, event_id)
        if event is None:
            raise NotFound("event not found")
        if event.type == TEST_EVENT_TYPE:
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
        if missing:
            self.activity.add_deliveries(tenant_id, event_id, missing)
        now = self.clock()
        # reopen() refuses, atomically, a delivery still pending or retrying
        reopened = [t for t in targets if t in missing or self.activity.reopen(tenant_id, event_id, t, now)]
        if not reopened:
            raise Conflict("the delivery is still in progress")
        for target in reopened:
            task = DeliveryTask(
                tenant_id=tenant_id, event_id=event_id, integration_id=target, series_attempt=1, reason="redeliver"
            )
            self.queue.schedule(task, 0)
        return reopened

    def send_test(self, tenant_id: str, integration_id: str) -> tuple[str, Attempt]:
        """POST a ``webhook-test`` event to the webhook now (one attempt); its id and the attempt."""
        integration = self.integrations.get(tenant_id, integration_id)
        if integration is None:
            raise NotFound("integration not found")
        now = self.clock()
        event = WebhookEvent(
            id=new_id(),
            tenant_id=tenant_id,
            type=TEST_EVENT_TYPE,
            data={"integration_id": integration_id, "message": "This is a test event sent by devicehooks."},
            time=now,
        )
        record = ActivityEvent.new(event, int(now.timestamp()) + self.retention, [DeliveryStatus(integration_id)])
        self.activity.create(record)
        attempt = self.dispatcher().deliver(record, integration, series_attempt=1, attempts_so_far=0, retry=False)
        assert attempt is not None  # a test delivery is never held
        return event.id, attempt
