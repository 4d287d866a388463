"""Publishing device events to the bus (the internal API's work)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Protocol

from devicehooks import aws
from devicehooks.domain.events import Decommission, ProvisionedDevice, StatusChange
from devicehooks.errors import ServiceUnavailable
from devicehooks.timeutil import rfc3339, utcnow

BATCH = 10  # PutEvents takes at most 10 entries


class EventPublisher(Protocol):
    def publish(self, events: Sequence[tuple[str, dict[str, Any]]]) -> None:
        """Put ``(detail-type, detail)`` events on the bus; raise unless every one was accepted."""


class EventBridgePublisher:
    """PutEvents in batches of 10; entries the bus refuses are sent again, then the call fails."""

    def __init__(self, bus_name: str, source: str, client: Any = None, attempts: int = 5) -> None:
        self.bus_name = bus_name
        self.source = source
        self.attempts = attempts
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = aws.client("events")
        return self._client

    def publish(self, events: Sequence[tuple[str, dict[str, Any]]]) -> None:
        entries = [
            {
                "Source": self.source,
                "DetailType": detail_type,
                "Detail": json.dumps(detail, separators=(",", ":")),
                "EventBusName": self.bus_name,
            }
            for detail_type, detail in events
        ]
        for start in range(0, len(entries), BATCH):
            self._put(entries[start : start + BATCH])

    def _put(self, pending: list[dict[str, Any]]) -> None:
        for attempt in range(self.attempts):
            out = self.client.put_events(Entries=pending)
            if not out.get("FailedEntryCount"):
                return
            pending = [e for e, r in zip(pending, out["Entries"], strict=True) if r.get("ErrorCode")]
            time.sleep(min(0.05 * 2**attempt, 1.0))
        raise ServiceUnavailable(f"failed to publish {len(pending)} device event(s) to the bus; retry the request")


class IngestService:
    """Mender's internal endpoints as bus events: one event per device."""

    def __init__(self, publisher: EventPublisher, clock: Callable[[], datetime] = utcnow) -> None:
        self.publisher = publisher
        self.clock = clock

    def _detail(self, tenant_id: str, data: dict[str, Any]) -> dict[str, Any]:
        # the event time with sub-second precision (the envelope's time has whole seconds)
        return {"tenant_id": tenant_id, "data": data, "time": rfc3339(self.clock())}

    def provision(self, tenant_id: str, device: ProvisionedDevice) -> None:
        self.publisher.publish([("device-provisioned", self._detail(tenant_id, device.payload()))])

    def decommission(self, tenant_id: str, device_id: str) -> None:
        data = Decommission(id=device_id).payload()
        self.publisher.publish([("device-decommissioned", self._detail(tenant_id, data))])

    def change_status(self, tenant_id: str, status: str, device_ids: Sequence[str]) -> None:
        events = [
            (
                "device-status-changed",
                self._detail(tenant_id, StatusChange.model_validate({"id": d, "status": status}).payload()),
            )
            for d in device_ids
        ]
        if events:
            self.publisher.publish(events)
