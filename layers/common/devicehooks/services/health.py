"""A webhook's health: its attempts of the last 24 hours, hour by hour, its last attempt, its
deliveries waiting, and where its circuit and auto-disable stand.

Read from the hourly counts the dispatcher writes (one Query of at most 24 items), the
integration (one Query of its configuration and state items) and the ``retrying`` entries of the
``by_state`` index (a Query per event type); see docs/architecture.md, "Webhook health".
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from devicehooks.domain.activity import HourCount, Waiting, hour_of
from devicehooks.domain.models import Integration
from devicehooks.errors import NotFound
from devicehooks.services.integrations import NOT_FOUND
from devicehooks.store.activity import ActivityStore
from devicehooks.store.integrations import IntegrationStore
from devicehooks.timeutil import utcnow

WINDOW_HOURS = 24


@dataclass(frozen=True, slots=True)
class Health:
    """What ``GET /integrations/{id}/health`` shows."""

    integration: Integration
    now: datetime
    last: HourCount | None  # the latest counted hour: its last attempt is the webhook's last
    hourly: list[HourCount]  # WINDOW_HOURS of them, oldest first, hours without attempts zero
    disable_after: int
    waiting: Waiting = Waiting()  # its deliveries that wait (retrying, held ones included)

    @property
    def delivered(self) -> int:
        return sum(h.delivered for h in self.hourly)

    @property
    def failed(self) -> int:
        return sum(h.failed for h in self.hourly)

    @property
    def success_rate(self) -> float | None:
        attempts = self.delivered + self.failed
        return self.delivered / attempts if attempts else None

    @property
    def disable_at(self) -> datetime | None:
        """When the webhook is disabled if every delivery keeps failing (its next failure after it)."""
        since = self.integration.failing_since
        if since is None or not self.integration.enabled:
            return None
        return since + timedelta(seconds=self.disable_after)


class HealthService:
    def __init__(
        self,
        integrations: IntegrationStore,
        activity: ActivityStore,
        disable_after: int,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.integrations = integrations
        self.activity = activity
        self.disable_after = disable_after
        self.clock = clock

    def health(self, tenant_id: str, integration_id: str) -> Health:
        integration = self.integrations.get(tenant_id, integration_id)
        if integration is None:
            raise NotFound(NOT_FOUND)
        now = self.clock()
        current = hour_of(now)
        counted = self.activity.hour_counts(tenant_id, integration_id, current, WINDOW_HOURS)
        by_hour = {c.hour: c for c in counted}
        hours = [current - timedelta(hours=n) for n in range(WINDOW_HOURS - 1, -1, -1)]
        return Health(
            integration=integration,
            now=now,
            last=counted[0] if counted and counted[0].last_at is not None else None,
            hourly=[by_hour.get(h) or HourCount(hour=h) for h in hours],
            disable_after=self.disable_after,
            waiting=self.activity.waiting(tenant_id, integration_id),
        )
