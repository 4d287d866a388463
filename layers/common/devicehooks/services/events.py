"""Reading the activity log."""

from __future__ import annotations

from devicehooks.domain.activity import ActivityEvent, EventFilter
from devicehooks.errors import NotFound
from devicehooks.store.activity import ActivityStore


class EventService:
    """The tenant's events, newest first, and one event with its attempts."""

    def __init__(self, store: ActivityStore) -> None:
        self.store = store

    def list_events(
        self,
        tenant_id: str,
        page: int,
        per_page: int,
        integration_id: str | None,
        only: EventFilter | None = None,
    ) -> list[ActivityEvent]:
        return self.store.list_events(tenant_id, page, per_page, integration_id, only)

    def get(self, tenant_id: str, event_id: str) -> ActivityEvent:
        event = self.store.get(tenant_id, event_id)
        if event is None:
            raise NotFound("event not found")
        return event
