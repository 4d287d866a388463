"""The activity log's records: an event, its delivery status per webhook, and each attempt."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from devicehooks.domain.events import WebhookEvent, sort_keys
from devicehooks.domain.models import ActivityType
from devicehooks.timeutil import rfc3339_millis

DeliveryState = Literal["pending", "retrying", "delivered", "failed", "skipped"]
RESPONSE_SNIPPET_BYTES = 256


class Attempt(BaseModel):
    """One POST (or a refusal to POST) to one webhook."""

    model_config = ConfigDict(frozen=True)

    number: int = Field(ge=1)
    at: datetime
    duration_ms: int = 0
    status_code: int | None = None
    error: str | None = None
    response_body: str | None = None

    def to_api(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "attempt": self.number,
            "time": rfc3339_millis(self.at),
            "duration_ms": self.duration_ms,
        }
        if self.status_code is not None:
            out["status_code"] = self.status_code
        if self.error:
            out["error"] = self.error
        if self.response_body is not None:
            out["response_body"] = self.response_body
        return out


class DeliveryStatus(BaseModel):
    """Where delivery of one event to one webhook stands."""

    model_config = ConfigDict(frozen=True)

    integration_id: str
    state: DeliveryState = "pending"
    attempts: int = 0
    status_code: int | None = None
    error: str | None = None
    updated_at: datetime | None = None
    next_attempt_at: datetime | None = None
    lease_until: datetime | None = Field(default=None, description="internal: a dispatcher is POSTing it")

    @property
    def success(self) -> bool:
        return self.state == "delivered"

    def to_api(self) -> dict[str, Any]:
        """Mender's delivery status (``integration_id, success, error, status_code``) plus ours."""
        out: dict[str, Any] = {"integration_id": self.integration_id, "success": self.success}
        if self.error:
            out["error"] = self.error
        if self.status_code is not None:
            out["status_code"] = self.status_code
        out["state"] = self.state
        out["attempts"] = self.attempts
        if self.next_attempt_at is not None and self.state in ("pending", "retrying"):
            out["next_attempt"] = rfc3339_millis(self.next_attempt_at)
        return out


class ActivityEvent(BaseModel):
    """An event as the activity log keeps it: the exact body sent, and every delivery."""

    model_config = ConfigDict(frozen=True)

    id: str
    tenant_id: str
    type: ActivityType
    time: datetime
    body: bytes = Field(repr=False)
    expire_ts: int
    deliveries: dict[str, DeliveryStatus] = Field(default_factory=dict)
    attempts: dict[str, list[Attempt]] = Field(default_factory=dict)

    @classmethod
    def new(
        cls,
        event: WebhookEvent,
        integration_ids: list[str],
        expire_ts: int,
        statuses: list[DeliveryStatus] | None = None,
    ) -> ActivityEvent:
        deliveries = {i: DeliveryStatus(integration_id=i) for i in integration_ids}
        deliveries.update({s.integration_id: s for s in statuses or []})
        return cls(
            id=event.id,
            tenant_id=event.tenant_id,
            type=event.type,
            time=event.time,
            body=event.body(),
            expire_ts=expire_ts,
            deliveries=deliveries,
        )

    def data(self) -> dict[str, Any]:
        return dict(json.loads(self.body)["data"])

    def to_api(self, with_attempts: bool = False) -> dict[str, Any]:
        """Mender's Event JSON (``id, type, data, time, delivery_statuses``); ``data`` keys sorted."""
        out: dict[str, Any] = {
            "id": self.id,
            "type": self.type,
            "data": sort_keys(self.data()),
            "time": rfc3339_millis(self.time),
        }
        if self.deliveries:
            statuses = []
            for status in sorted(self.deliveries.values(), key=lambda s: s.integration_id):
                entry = status.to_api()
                if with_attempts:
                    entry["attempt_log"] = [a.to_api() for a in self.attempts.get(status.integration_id, [])]
                statuses.append(entry)
            out["delivery_statuses"] = statuses
        return out
