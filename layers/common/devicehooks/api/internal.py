"""Internal API (Mender's ``/api/internal/v1/iot-manager``): device events in, tenant removal.

Called by Mender's workflows service (device lifecycle) and inventory service (inventory changes).
Deployed behind IAM authorization; the local stack serves it without authentication, as Mender
does. Mender's open-source deployments use an empty tenant
id (``/tenants//devices``), which every tenant route also accepts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from aws_lambda_powertools.event_handler import Response
from pydantic import TypeAdapter, ValidationError

from devicehooks import __version__
from devicehooks.api import http
from devicehooks.domain.events import (
    DEVICE_STATUSES,
    MAX_ATTRIBUTES,
    InventoryAttribute,
    InventoryChange,
    ProvisionedDevice,
)
from devicehooks.domain.validation import format_errors
from devicehooks.errors import InvalidRequest, ServiceUnavailable
from devicehooks.jsonenc import loads
from devicehooks.services.ingest import (
    MAX_DETAIL_BYTES,
    MAX_ID_LENGTH,
    IngestService,
    check_device_id,
    check_tenant_id,
)
from devicehooks.services.tenants import TenantService

BASE = "/api/internal/v1/iot-manager"
DOCS = f"{BASE}/docs"
OPENAPI = f"{BASE}/openapi.json"
MAX_BULK = 100

# Bodies are read by hand (Mender's messages differ per endpoint), so no request validation here.
api = http.HttpApi()
app = api.app


@dataclass(frozen=True)
class Services:
    """What the routes use, made by the function's composition root (``handlers/internal.py``)."""

    ingest: IngestService | None  # None: no bus configured (a 503 for the routes that publish)
    tenants: TenantService


_services: Callable[[], Services] | None = None


def wire(services: Callable[[], Services]) -> None:
    """Give the routes their services (the composition root does, once; tests may replace the
    providers below)."""
    global _services
    _services = services


def ingest_service() -> IngestService:
    if _services is None:
        raise ServiceUnavailable("the internal API's services are not wired")
    ingest = _services().ingest
    if ingest is None:
        raise ServiceUnavailable("DEVICEHOOKS_EVENT_BUS is not configured")
    return ingest


def tenant_service() -> TenantService:
    if _services is None:
        raise ServiceUnavailable("the internal API's services are not wired")
    return _services().tenants


def _json_body(prefix: str) -> Any:
    """The body, read by the service's strict reader (jsonenc.loads: no NaN, lone surrogates,
    numbers beyond int64/float or deep nesting, nothing raised but a 400)."""
    raw = app.current_event.decoded_body or ""
    try:
        return loads(raw)
    except ValueError as exc:
        raise InvalidRequest(f"{prefix}: {exc.args[0] if exc.args else 'invalid JSON'}") from None


def _tenant(raw: str) -> str:
    """The path's tenant id, percent-decoded; a 400 when no event could carry it (on every tenant
    route: the authorizer refuses such tenants too, so none has integrations or activity)."""
    return check_tenant_id(unquote(raw))


# ------------------------------------------------------------------ health


@api.get(f"{BASE}/alive", summary="Liveness", tags=["Internal"], responses={204: {"description": "Alive."}})
def alive() -> Response[str]:
    return http.empty_response(204)


@api.get(
    f"{BASE}/health",
    summary="Health: the tables answer",
    tags=["Internal"],
    responses=http.responses({204: {"description": "Healthy."}}, 503),
)
def health() -> Response[str]:
    try:
        tenant_service().integrations.get("#health", "#health")  # one read: the table answers
    except Exception as exc:  # noqa: BLE001 - any failure means unhealthy; Mender answers 503 with the cause
        return http.json_response(503, {"error": f"database unavailable: {type(exc).__name__}"})
    return http.empty_response(204)


# ------------------------------------------------------------------ device events


def _provision(tenant_id: str) -> Response[str]:
    data = _json_body("malformed request body")
    if not isinstance(data, dict):
        raise InvalidRequest("malformed request body: the body must be a JSON object")
    alias = data.get("device_id")
    if isinstance(alias, str) and alias:
        data["id"] = alias
    try:
        device = ProvisionedDevice.model_validate(data)
    except ValidationError as exc:
        raise InvalidRequest("malformed request body: " + format_errors(exc.errors())) from None
    if not device.id:
        raise InvalidRequest("missing device ID")
    ingest_service().provision(tenant_id, device)
    return http.empty_response(202)


def _decommission(tenant_id: str, device_id: str) -> Response[str]:
    # Mender answers 202 whatever the id; one the bus contract refuses could never be delivered
    # (it was a 500): a 400 that says why
    device = check_device_id(unquote(device_id))
    ingest_service().decommission(tenant_id, device)
    return http.empty_response(202)


_BULK = TypeAdapter(list[dict[str, Any]])


def _bulk_status(tenant_id: str, status: str) -> Response[str]:
    status = unquote(status)
    if status not in DEVICE_STATUSES:
        raise InvalidRequest(f"invalid status '{status[:64]}'")
    data = _json_body("invalid request body")
    try:
        items = _BULK.validate_python(data)
    except ValidationError as exc:
        raise InvalidRequest("invalid request body: " + format_errors(exc.errors())) from None
    if len(items) > MAX_BULK:
        raise InvalidRequest(f"too many bulk items: max {MAX_BULK} items per request")
    ids: list[str] = []
    for n, item in enumerate(items):
        alias = item.get("device_id")
        device_id = alias if isinstance(alias, str) and alias else item.get("id", "")
        if not isinstance(device_id, str) or len(device_id) > 256:
            raise InvalidRequest(f"invalid request body: {n}: (id: must be a string of at most 256 characters.).")
        ids.append(device_id)
    ingest_service().change_status(tenant_id, status, ids)
    return http.empty_response(202)


_INVENTORY = TypeAdapter(list[InventoryAttribute])


def _inventory(tenant_id: str, device_id: str) -> Response[str]:
    device = check_device_id(unquote(device_id))
    data = _json_body("malformed request body")
    try:  # the change too: whatever else it checks as it is built is a 400 as well
        attributes = _INVENTORY.validate_python(data)
        if len(attributes) > MAX_ATTRIBUTES:
            raise InvalidRequest(
                f"malformed request body: {len(attributes)} attributes, more than the {MAX_ATTRIBUTES} "
                "an inventory change may carry"
            )
        change = InventoryChange(device_id=device, tenant_id=tenant_id, inventory=attributes)
    except ValidationError as exc:
        raise InvalidRequest("malformed request body: " + format_errors(exc.errors())) from None
    ingest_service().inventory_changed(tenant_id, change)
    return http.empty_response(202)


def _remove_tenant(tenant_id: str) -> Response[str]:
    tenant_service().remove(tenant_id)
    return http.empty_response(204)


_ACCEPTED = http.responses({202: {"description": "Accepted: the events are on the bus."}}, 400, 503)

# Each tenant route is served twice: with a tenant id, and with Mender's empty open-source one.
_T = f"{BASE}/tenants/<tenant_id>"
_OPEN = f"{BASE}/tenants/"


@api.post(f"{_T}/devices", summary="Provision a device", tags=["Internal"], responses=_ACCEPTED)
def provision(tenant_id: str) -> Response[str]:
    return _provision(_tenant(tenant_id))


@api.post(f"{_OPEN}/devices", include_in_schema=False)
def provision_open_source() -> Response[str]:
    return _provision("")


@api.delete(f"{_T}/devices/<device_id>", summary="Decommission a device", tags=["Internal"], responses=_ACCEPTED)
def decommission(tenant_id: str, device_id: str) -> Response[str]:
    return _decommission(_tenant(tenant_id), device_id)


@api.delete(f"{_OPEN}/devices/<device_id>", include_in_schema=False)
def decommission_open_source(device_id: str) -> Response[str]:
    return _decommission("", device_id)


@api.post(
    f"{_T}/devices/<device_id>/inventory",
    summary="A device's inventory changed",
    description="Publishes one device-inventory-changed event with Mender's documented data "
    '({"device_id","tenant_id","inventory"}) for the webhooks in the inventory scope. '
    f"The event may carry at most {MAX_ATTRIBUTES} attributes and {MAX_DETAIL_BYTES} bytes (EventBridge "
    "takes 256 KB an entry): a larger inventory is refused with 400.",
    tags=["Internal"],
    responses=_ACCEPTED,
)
def inventory(tenant_id: str, device_id: str) -> Response[str]:
    return _inventory(_tenant(tenant_id), device_id)


@api.post(f"{_OPEN}/devices/<device_id>/inventory", include_in_schema=False)
def inventory_open_source(device_id: str) -> Response[str]:
    return _inventory("", device_id)


@api.put(
    f"{_T}/bulk/devices/status/<status>",
    summary="Change the status of up to 100 devices",
    tags=["Internal"],
    responses=_ACCEPTED,
)
def bulk_status(tenant_id: str, status: str) -> Response[str]:
    return _bulk_status(_tenant(tenant_id), status)


@api.put(f"{_OPEN}/bulk/devices/status/<status>", include_in_schema=False)
def bulk_status_open_source(status: str) -> Response[str]:
    return _bulk_status("", status)


@api.delete(
    _T,
    summary="Delete a tenant's integrations and activity",
    tags=["Internal"],
    responses=http.responses({204: {"description": "Deleted."}}, 400),
)
def remove_tenant(tenant_id: str) -> Response[str]:
    return _remove_tenant(_tenant(tenant_id))


@api.delete(_OPEN, include_in_schema=False)
def remove_open_source_tenant() -> Response[str]:
    return _remove_tenant("")


# ------------------------------------------------------------------ OpenAPI

_DEVICE_ID = {"type": "string", "maxLength": 256}
_AUTH_SET = {
    "type": "object",
    "properties": {
        "id": {"type": "string"},
        "device_id": {"type": "string"},
        "identity_data": {"type": "object", "additionalProperties": True},
        "pubkey": {"type": "string"},
        "status": {"type": "string"},
        "ts": {"type": "string", "format": "date-time"},
    },
}
_BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("/tenants/{tenant_id}/devices", "post"): {
        "type": "object",
        "description": "The device (Mender's NewDeviceInternalProvision); device_id is accepted for id.",
        "properties": {
            "id": _DEVICE_ID,
            "device_id": _DEVICE_ID,
            "status": {"type": "string", "maxLength": 64},
            "auth_sets": {"type": "array", "items": _AUTH_SET, "maxItems": 100},
            "created_ts": {"type": "string", "format": "date-time"},
        },
        "required": ["id"],
    },
    ("/tenants/{tenant_id}/devices/{device_id}/inventory", "post"): {
        "type": "array",
        "description": "The device's inventory attributes, as the webhook's data.inventory shows them.",
        "items": {
            "type": "object",
            "properties": {
                "name": {"type": "string", "minLength": 1, "maxLength": 1024},
                "value": {
                    "description": "A string or a list of strings (Mender's inventory also keeps numbers "
                    "and lists of numbers, passed on as they are).",
                    "oneOf": [
                        {"type": "string"},
                        {"type": "number"},
                        {"type": "array", "items": {"type": "string"}},
                        {"type": "array", "items": {"type": "number"}},
                    ],
                },
                "scope": {"type": "string", "maxLength": 64, "default": "inventory"},
            },
            "required": ["name", "value"],
        },
    },
    ("/tenants/{tenant_id}/bulk/devices/status/{status}", "put"): {
        "type": "array",
        "maxItems": MAX_BULK,
        "items": {"type": "object", "properties": {"id": _DEVICE_ID}, "required": ["id"]},
    },
}


def _document_info() -> dict[str, Any]:
    return {
        "title": "devicehooks internal API",
        "version": __version__,
        "description": "Mender iot-manager compatible internal API: device lifecycle and inventory events in, "
        "tenant removal. "
        "IAM-authorized when deployed; open on the local stack.",
    }


def _with_bodies(document: dict[str, Any]) -> None:
    paths = document.get("paths", {})
    for (path, method), schema in _BODIES.items():
        operation = paths.get(BASE + path, {}).get(method)
        if operation is not None:
            operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": schema}}}
    status = paths.get(f"{BASE}/tenants/{{tenant_id}}/bulk/devices/status/{{status}}", {}).get("put", {})
    for parameter in status.get("parameters", []):
        if parameter.get("name") == "status":
            parameter["schema"] = {"type": "string", "enum": list(DEVICE_STATUSES)}
    # An empty device id is another path (``.../devices/``), which no route serves: 404, as in Mender.
    decommission = paths.get(f"{BASE}/tenants/{{tenant_id}}/devices/{{device_id}}", {}).get("delete", {})
    inventory = paths.get(f"{BASE}/tenants/{{tenant_id}}/devices/{{device_id}}/inventory", {}).get("post", {})
    for parameter in [*decommission.get("parameters", []), *inventory.get("parameters", [])]:
        if parameter.get("name") == "device_id":
            parameter["schema"] = {"type": "string", "minLength": 1, "maxLength": MAX_ID_LENGTH}
    for operations in paths.values():
        for operation in operations.values():
            for parameter in operation.get("parameters", []):
                if parameter.get("name") == "tenant_id":
                    parameter["schema"] = {"type": "string", "maxLength": MAX_ID_LENGTH}


http.docs_routes(api, DOCS, OPENAPI, _document_info, patch=_with_bodies)
