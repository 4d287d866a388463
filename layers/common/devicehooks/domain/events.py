"""Device events: the bus contract, Mender's payload shapes, and the exact webhook body."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictStr,
    ValidationInfo,
    field_validator,
)
from pydantic_core import PydanticCustomError

from devicehooks.domain.eventids import TYPE_CODES, event_id
from devicehooks.domain.models import ActivityType, EventType
from devicehooks.jsonenc import dumpb
from devicehooks.timeutil import parse_time, rfc3339

DeviceStatus = Literal["accepted", "noauth", "pending", "preauthorized", "rejected", "decommissioned"]
DEVICE_STATUSES: tuple[str, ...] = get_args(DeviceStatus)


def _rfc3339(value: str) -> str:
    parse_time(value)  # raises ValueError with a message pydantic reports
    return value


Timestamp = Annotated[str, AfterValidator(_rfc3339)]


def sort_keys(value: Any) -> Any:
    """Recursively sort object keys, as Go writes ``map[string]interface{}``."""
    if isinstance(value, dict):
        return {k: sort_keys(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [sort_keys(v) for v in value]
    return value


class AuthSet(BaseModel):
    """Mender's ``AuthSet``. Unknown fields are dropped; times keep their original spelling."""

    model_config = ConfigDict(extra="ignore", defer_build=True)

    id: str = ""
    device_id: str = ""
    identity_data: dict[str, Any] | None = None
    pubkey: str = ""
    status: str = ""
    ts: Timestamp | None = None

    def payload(self) -> dict[str, Any]:
        """Go's field order; only ``ts`` is left out when empty (BEHAVIOUR.md §5.3)."""
        out: dict[str, Any] = {
            "id": self.id,
            "device_id": self.device_id,
            "identity_data": sort_keys(self.identity_data) if self.identity_data is not None else None,
            "pubkey": self.pubkey,
            "status": self.status,
        }
        if self.ts:
            out["ts"] = self.ts
        return out


class ProvisionedDevice(BaseModel):
    """``device-provisioned`` data (and the internal API's provision body)."""

    model_config = ConfigDict(extra="ignore", defer_build=True)

    id: str = Field(default="", max_length=256)
    status: str = Field(default="", max_length=64)
    auth_sets: list[AuthSet] = Field(default_factory=list, max_length=100)
    created_ts: Timestamp | None = None

    def payload(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id}
        if self.status:
            out["status"] = self.status
        if self.auth_sets:
            out["auth_sets"] = [a.payload() for a in self.auth_sets]
        if self.created_ts is not None:
            out["created_ts"] = self.created_ts
        return out


class StatusChange(BaseModel):
    """``device-status-changed`` data."""

    model_config = ConfigDict(extra="ignore", defer_build=True)

    id: str = Field(max_length=256)
    status: DeviceStatus

    def payload(self) -> dict[str, Any]:
        return {"id": self.id, "status": self.status}


class Decommission(BaseModel):
    """``device-decommissioned`` data."""

    model_config = ConfigDict(extra="ignore", defer_build=True)

    id: str = Field(max_length=256)

    def payload(self) -> dict[str, Any]:
        return {"id": self.id}


MAX_ATTRIBUTE_NAME = 1024
MAX_ATTRIBUTES = 10_000  # the event's size (MAX_DETAIL_BYTES in services/ingest.py) is the real limit


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_value(value: Any) -> Any:
    # Mender's documented body shows strings and lists of strings; its inventory also keeps
    # numbers and lists of numbers, which are passed on as they are. Nothing is converted.
    if isinstance(value, str) or _number(value):
        return value
    if isinstance(value, list) and (all(isinstance(v, str) for v in value) or all(_number(v) for v in value)):
        return value
    raise PydanticCustomError("devicehooks", "must be a string, a number, or a list of strings or of numbers")


def _check_name(value: str) -> str:
    if not value:
        raise PydanticCustomError("devicehooks", "cannot be blank")
    return value


class InventoryAttribute(BaseModel):
    """One attribute of ``device-inventory-changed`` data: ``{"name","value","scope"}``."""

    model_config = ConfigDict(extra="ignore", defer_build=True)

    name: Annotated[StrictStr, Field(max_length=MAX_ATTRIBUTE_NAME), AfterValidator(_check_name)]
    value: Annotated[Any, AfterValidator(_check_value)]
    scope: StrictStr = Field(default="inventory", max_length=64)

    def payload(self) -> dict[str, Any]:
        return {"name": self.name, "value": self.value, "scope": self.scope}


class InventoryChange(BaseModel):
    """``device-inventory-changed`` data, Mender's documented shape: ``{"device_id","tenant_id","inventory"}``.

    ``tenant_id`` is the event's tenant: it may be left out (it is filled in) but never differ,
    so an event can only show a tenant's webhooks that tenant's devices.
    """

    model_config = ConfigDict(extra="ignore", defer_build=True)

    device_id: StrictStr = Field(min_length=1, max_length=256)
    tenant_id: StrictStr | None = Field(default=None, max_length=256, validate_default=True)
    inventory: list[InventoryAttribute] = Field(max_length=MAX_ATTRIBUTES)

    @field_validator("tenant_id", mode="after")
    @classmethod
    def _the_events_tenant(cls, value: str | None, info: ValidationInfo) -> str | None:
        expected = (info.context or {}).get("tenant_id")
        if expected is None:
            return value
        if value is not None and value != expected:
            raise ValueError("must be the event's tenant")
        return str(expected)

    def payload(self) -> dict[str, Any]:
        return {
            "device_id": self.device_id,
            "tenant_id": self.tenant_id or "",
            "inventory": [a.payload() for a in self.inventory],
        }


_DATA_MODELS: dict[str, type[ProvisionedDevice] | type[StatusChange] | type[Decommission] | type[InventoryChange]] = {
    "device-provisioned": ProvisionedDevice,
    "device-status-changed": StatusChange,
    "device-decommissioned": Decommission,
    "device-inventory-changed": InventoryChange,
}


def build_bus_models() -> None:
    """Build the models every bus event is validated with (they are deferred for the functions that
    only sometimes need them; the dispatcher needs them on every invocation, so it builds them at
    its cold start rather than in its first invocation)."""
    for model in (BusEvent, InventoryAttribute, *_DATA_MODELS.values()):
        model.model_rebuild(force=True)


def normalize_data(event_type: str, data: Any, tenant_id: str | None = None) -> dict[str, Any]:
    """Validate ``data`` for ``event_type`` (of ``tenant_id``'s, when known) and return it in
    Mender's exact shape and order."""
    context = None if tenant_id is None else {"tenant_id": tenant_id}
    return _DATA_MODELS[event_type].model_validate(data, context=context).payload()


class BusDetail(BaseModel):
    """``detail`` of a device event on the bus."""

    model_config = ConfigDict(extra="ignore", defer_build=True)

    tenant_id: str = Field(max_length=256)
    data: dict[str, Any]
    time: Timestamp | None = None


class BusEvent(BaseModel):
    """An EventBridge event as the rule delivers it to the dispatch queue."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True, defer_build=True)

    id: str = Field(min_length=1, max_length=128)
    detail_type: EventType = Field(alias="detail-type")
    source: str
    time: Timestamp
    detail: BusDetail

    def event_time(self) -> datetime:
        """The detail's time when given (sub-second precision), else the envelope's."""
        return parse_time(self.detail.time or self.time)


def bus_time(raw: Mapping[str, Any]) -> datetime | None:
    """A bus event's time as :meth:`BusEvent.event_time` reads it, from an event not validated yet;
    ``None`` when it has none to read."""
    detail = raw.get("detail")
    given = detail.get("time") if isinstance(detail, dict) else None
    at = given or raw.get("time")
    if not isinstance(at, str):
        return None
    try:
        return parse_time(at)
    except ValueError:
        return None


def id_of_bus_event(raw: Any) -> str | None:
    """The id :meth:`WebhookEvent.from_bus` gives the event of a bus event not validated yet (a
    trace annotation where the event is only passed on): ``None`` when it has no valid id, type or
    time to make it from."""
    if not isinstance(raw, dict) or not isinstance(raw.get("id"), str):
        return None
    kind, at = raw.get("detail-type"), bus_time(raw)
    if kind not in TYPE_CODES or at is None:
        return None
    return event_id(at, str(kind), raw["id"])


@dataclass(frozen=True, slots=True)
class WebhookEvent:
    """One event as webhooks receive it: ``{"id","type","data","time"}`` in that order."""

    id: str
    tenant_id: str
    type: ActivityType
    data: dict[str, Any]
    time: datetime

    @classmethod
    def from_bus(cls, event: BusEvent) -> WebhookEvent:
        """Validate a bus event's data for its type; raises ``pydantic.ValidationError``."""
        at = event.event_time()
        return cls(
            id=event_id(at, event.detail_type, event.id),  # the same bus event: the same id
            tenant_id=event.detail.tenant_id,
            type=event.detail_type,
            data=normalize_data(event.detail_type, event.detail.data, event.detail.tenant_id),
            time=at,
        )

    def body(self) -> bytes:
        """The exact bytes POSTed (and signed): compact, Go-escaped, Mender's key order."""
        return dumpb({"id": self.id, "type": self.type, "data": self.data, "time": rfc3339(self.time)})


def sample_data(event_type: EventType, tenant_id: str, at: datetime) -> dict[str, Any]:
    """Realistic ``data`` of ``event_type`` for a test delivery: a made-up device, in the exact shape
    and order a real event of that type has (it goes through the same models)."""
    device_id = str(uuid.uuid4())
    stamp = rfc3339(at)
    samples: dict[str, dict[str, Any]] = {
        "device-provisioned": {
            "id": device_id,
            "status": "accepted",
            "created_ts": stamp,
            "auth_sets": [
                {
                    "id": str(uuid.uuid4()),
                    "device_id": device_id,
                    "identity_data": {"mac": "02:42:ac:11:00:02", "serial": "SN-0001"},
                    "pubkey": "-----BEGIN PUBLIC KEY-----\n"
                    "MCowBQYDK2VwAyEA7C5Vm5e0J0vJb6ePq0p5uG4Q9cN0ZsRt1oXg8bHh2fY=\n"
                    "-----END PUBLIC KEY-----\n",
                    "status": "accepted",
                    "ts": stamp,
                }
            ],
        },
        "device-decommissioned": {"id": device_id},
        "device-status-changed": {"id": device_id, "status": "accepted"},
        "device-inventory-changed": {
            "device_id": device_id,
            "inventory": [
                {"name": "device_type", "value": "raspberrypi4", "scope": "inventory"},
                {"name": "os", "value": "Debian GNU/Linux 12 (bookworm)", "scope": "inventory"},
                {"name": "ipv4_eth0", "value": ["192.0.2.10/24"], "scope": "inventory"},
                {"name": "mem_total_kB", "value": 3884096, "scope": "inventory"},
            ],
        },
    }
    return normalize_data(event_type, samples[event_type], tenant_id)
