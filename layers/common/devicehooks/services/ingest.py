"""Publishing device events to the bus (the internal API's work).

Nothing is published that the dispatcher could not deliver: the tenant and device ids fit the bus
contract (``domain/events.py``: at most 256 characters), the data can be written as the webhook
body (:func:`devicehooks.jsonenc.check`), and the event fits one PutEvents entry.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

from devicehooks.domain.eventids import event_id
from devicehooks.domain.events import Decommission, InventoryChange, ProvisionedDevice, StatusChange
from devicehooks.errors import InvalidRequest
from devicehooks.jsonenc import JSONInputError, check, dumpb
from devicehooks.observability import logger, trace_events
from devicehooks.timeutil import parse_time, rfc3339, utcnow

BATCH = 10  # PutEvents takes at most 10 entries
# EventBridge refuses a PutEvents request whose entries add up to 256 KB or more, counted as
# entry_size() counts them (the "Calculating PutEvents event entry size" page of its guide).
EVENTBRIDGE_MAX_ENTRY_BYTES = 256 * 1024
# The Detail of one event, in UTF-8 bytes. The 16 KiB left of the entry limit hold the Source
# (at most 256 characters) and the DetailType (ours have at most 21), with room to spare for the
# envelope EventBridge wraps around the Detail on the dispatch queue (SQS's long-standing limit is
# 256 KiB a message) and for the delivery statuses next to the body in the activity log's item
# (DynamoDB: 400 KB).
MAX_DETAIL_BYTES = 240 * 1024
MAX_ID_LENGTH = 256  # the bus contract's tenant and device ids (BusDetail, StatusChange, Decommission)


def check_id(value: str, what: str) -> str:
    """``value`` (``what``: "tenant ID", a query parameter...) if events can carry it, else
    :class:`InvalidRequest` (a 400)."""
    if len(value) > MAX_ID_LENGTH:
        raise InvalidRequest(f"invalid {what}: the length must be no more than {MAX_ID_LENGTH}")
    if not value.isascii():
        try:
            check(value)
        except JSONInputError as exc:
            raise InvalidRequest(f"invalid {what}: {exc.reason}") from None
    return value


def check_tenant_id(tenant_id: str) -> str:
    """``tenant_id`` if events can carry it, else :class:`InvalidRequest` (a 400)."""
    return check_id(tenant_id, "tenant ID")


def check_device_id(device_id: str) -> str:
    """``device_id`` if events can carry it, else :class:`InvalidRequest` (a 400)."""
    return check_id(device_id, "device ID")


def detail_json(detail: Mapping[str, Any]) -> str:
    """An event's ``Detail`` as it is put on the bus: compact JSON, non-ASCII left as UTF-8
    (EventBridge counts UTF-8 bytes; ``\\uXXXX`` escapes would count up to six per character)."""
    return json.dumps(detail, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def entry_size(entry: Mapping[str, Any]) -> int:
    """The size EventBridge counts for a PutEvents entry: ``Time`` 14 bytes when given, and the
    UTF-8 bytes of ``Source``, ``DetailType``, ``Detail`` and each of ``Resources``."""
    size = 14 if entry.get("Time") is not None else 0
    for name in ("Source", "DetailType", "Detail"):
        size += len(str(entry.get(name) or "").encode())
    size += sum(len(str(r).encode()) for r in entry.get("Resources") or ())
    return size


class EventPublisher(Protocol):
    def publish(self, events: Sequence[tuple[str, dict[str, Any]]]) -> list[str]:
        """Put ``(detail-type, detail)`` events on the bus; raise unless every one was accepted.
        Returns the ids the bus gave them, in order."""


class IngestService:
    """Mender's internal endpoints as bus events: one event per device."""

    def __init__(self, publisher: EventPublisher, clock: Callable[[], datetime] = utcnow) -> None:
        self.publisher = publisher
        self.clock = clock

    def _publish(self, events: Sequence[tuple[str, dict[str, Any]]]) -> None:
        """Publish; the events' ids are the request's trace annotations and, for a single event, its
        log lines' correlation id (the id its deliveries log and trace with, up to each POST)."""
        bus_ids = self.publisher.publish(events)
        # the ids its webhook events get, which the dispatcher's traces and logs carry
        ids = [event_id(parse_time(d["time"]), t, b) for (t, d), b in zip(events, bus_ids, strict=True)]
        trace_events(ids)
        if len(ids) == 1:
            logger.set_correlation_id(ids[0])

    def _detail(self, tenant_id: str, data: dict[str, Any]) -> dict[str, Any]:
        # the event time with sub-second precision (the envelope's time has whole seconds)
        return {"tenant_id": check_tenant_id(tenant_id), "data": data, "time": rfc3339(self.clock())}

    def _sized(self, tenant_id: str, data: dict[str, Any]) -> dict[str, Any]:
        """The event's detail; :class:`InvalidRequest` when the data cannot be written as a webhook
        body or the event would be larger than :data:`MAX_DETAIL_BYTES` on the bus or as the body
        (Go's escapes of ``<``, ``>``, ``&`` make the body longer than the detail)."""
        try:
            check(data)  # the API's reader refused these already; other callers get the same rules
        except JSONInputError as exc:
            raise InvalidRequest(f"malformed request body: {exc.msg}") from None
        detail = self._detail(tenant_id, data)
        size = max(len(detail_json(detail).encode()), len(dumpb(data)))
        if size > MAX_DETAIL_BYTES:
            raise InvalidRequest(
                f"malformed request body: the device event would be {size} bytes, "
                f"more than the {MAX_DETAIL_BYTES} an event may carry"
            )
        return detail

    def provision(self, tenant_id: str, device: ProvisionedDevice) -> None:
        """Publish ``device-provisioned``; :class:`InvalidRequest` if the dispatcher could not send it."""
        check_device_id(device.id)
        self._publish([("device-provisioned", self._sized(tenant_id, device.payload()))])

    def inventory_changed(self, tenant_id: str, change: InventoryChange) -> None:
        """Publish ``device-inventory-changed`` (Mender's documented data, the tenant filled in);
        :class:`InvalidRequest` if it is larger than an event may carry."""
        check_device_id(change.device_id)
        data = {**change.payload(), "tenant_id": check_tenant_id(tenant_id)}
        self._publish([("device-inventory-changed", self._sized(tenant_id, data))])

    def decommission(self, tenant_id: str, device_id: str) -> None:
        """Publish ``device-decommissioned``."""
        data = Decommission(id=check_device_id(device_id)).payload()
        self._publish([("device-decommissioned", self._detail(tenant_id, data))])

    def change_status(self, tenant_id: str, status: str, device_ids: Sequence[str]) -> None:
        """Publish one ``device-status-changed`` per device."""
        events = [
            (
                "device-status-changed",
                self._detail(
                    tenant_id, StatusChange.model_validate({"id": check_device_id(d), "status": status}).payload()
                ),
            )
            for d in device_ids
        ]
        if events:
            self._publish(events)
