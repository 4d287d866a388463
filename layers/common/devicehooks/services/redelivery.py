"""Sending again on request: redelivery of recorded events, and test deliveries."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from devicehooks.delivery.tasks import DeliveryTask, TaskQueue
from devicehooks.domain.activity import ActivityEvent
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

    def redeliver(self, tenant_id: str, event_id: str, integration_id: str | None) -> dict[str, Any]:
        """Queue the event for one webhook, or for every webhook it went to that still exists."""
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
        return {"event_id": event_id, "integration_ids": reopened}

    def send_test(self, tenant_id: str, integration_id: str) -> dict[str, Any]:
        """POST a ``webhook-test`` event to the webhook now (one attempt) and report the outcome."""
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
        record = ActivityEvent.new(event, [integration_id], int(now.timestamp()) + self.retention)
        self.activity.create(record)
        result = self.dispatcher().deliver(record, integration, series_attempt=1, attempts_so_far=0, retry=False)
        outcome: dict[str, Any] = {"event_id": event.id, "success": result.ok}
        if result.status_code is not None:
            outcome["status_code"] = result.status_code
        if result.error:
            outcome["error"] = result.error
        outcome["duration_ms"] = result.duration_ms
        if result.response_body is not None:
            outcome["response_body"] = result.response_body
        return outcome
