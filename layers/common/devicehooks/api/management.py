"""Management API (Mender's ``/api/management/v1/iot-manager``): integrations and activity."""

from __future__ import annotations

import contextvars
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.depends import Depends
from aws_lambda_powertools.event_handler.openapi.params import Body, Query

from devicehooks import __version__
from devicehooks.api import http
from devicehooks.api.schemas import (
    EgressOut,
    EventDetailOut,
    EventOut,
    HealthOut,
    IntegrationOut,
    RecoverIn,
    RecoverOut,
    RedeliverIn,
    RedeliverOut,
    RetryIn,
    SendTestIn,
    TestOutcomeOut,
)
from devicehooks.domain.activity import DELIVERY_STATES, EventFilter
from devicehooks.domain.inputs import CredentialsIn, IntegrationIn, IntegrationUpdate
from devicehooks.domain.models import ACTIVITY_TYPES, go_uuid_error
from devicehooks.errors import DevicehooksError, InvalidRequest
from devicehooks.security.identity import Identity, identity_from_request
from devicehooks.services.events import EventService
from devicehooks.services.health import HealthService
from devicehooks.services.ingest import check_id
from devicehooks.services.integrations import IntegrationService
from devicehooks.services.redelivery import DeliveryService
from devicehooks.timeutil import parse_time

BASE = "/api/management/v1/iot-manager"
DOCS = f"{BASE}/docs"
OPENAPI = f"{BASE}/openapi.json"
PUBLIC_PATHS = frozenset({DOCS, OPENAPI})
MAX_PER_PAGE = 500

_identity: contextvars.ContextVar[Identity | None] = contextvars.ContextVar("identity", default=None)


@dataclass(frozen=True)
class Services:
    """What the routes use, made by the function's composition root (``handlers/management.py``)."""

    integrations: IntegrationService
    events: EventService
    deliveries: DeliveryService
    health: HealthService
    egress_ips: tuple[str, ...] = ()  # where webhook requests come from (StaticEgressIps)


_services: Callable[[], Services] | None = None


def wire(services: Callable[[], Services]) -> None:
    """Give the routes their services (the composition root does, once; tests may override each
    provider below through ``app.dependency_overrides``)."""
    global _services
    _services = services


def _wired() -> Services:
    if _services is None:
        raise DevicehooksError("the management API's services are not wired")
    return _services()


def integration_service() -> IntegrationService:
    return _wired().integrations


def event_service() -> EventService:
    return _wired().events


def delivery_service() -> DeliveryService:
    return _wired().deliveries


def egress_ips() -> tuple[str, ...]:
    return _wired().egress_ips


def health_service() -> HealthService:
    return _wired().health


def current_identity() -> Identity:
    """The caller, as verified by the authorizer before any route ran."""
    identity = _identity.get()
    if identity is None:
        raise DevicehooksError("identity missing")  # unreachable: serve() authenticates first
    return identity


def _uuid(value: str, what: str) -> str:
    """A path id in canonical form, or Mender's 400 naming what it should have been."""
    problem = go_uuid_error(value)
    if problem is not None:
        raise InvalidRequest(f"{what} ID must be a valid UUID: {problem}")
    return str(uuid.UUID(value))


def _integration_id(value: str) -> str:
    return _uuid(value, "integration")


def _event_id(value: str) -> str:
    return _uuid(value, "event")


def _check_path_ids(args: Mapping[str, str]) -> None:
    """The path's ids are checked before the body, as Mender does (``uuid.Parse`` first)."""
    if "integration_id" in args:
        _integration_id(args["integration_id"])
    if "event_id" in args:
        _event_id(args["event_id"])


api = http.HttpApi(enable_validation=True, path_check=_check_path_ids)
app = api.app


Caller = Annotated[Identity, Depends(current_identity)]
Integrations = Annotated[IntegrationService, Depends(integration_service)]
Events = Annotated[EventService, Depends(event_service)]
Deliveries = Annotated[DeliveryService, Depends(delivery_service)]
Healths = Annotated[HealthService, Depends(health_service)]
EgressIps = Annotated[tuple[str, ...], Depends(egress_ips)]
_JSON_LIST_OF_INTEGRATIONS = {"application/json": {"model": list[IntegrationOut]}}

# ---------------------------------------------------------------- integrations


@api.get(
    f"{BASE}/integrations",
    summary="List the tenant's integrations",
    tags=["Integrations"],
    responses=http.responses(
        {200: {"description": "The tenant's integrations.", "content": _JSON_LIST_OF_INTEGRATIONS}}, 401, 403
    ),
)
def list_integrations(caller: Caller, service: Integrations) -> Response[str]:
    return http.model_response(200, [IntegrationOut.of(i) for i in service.list_integrations(caller.tenant_id)])


@api.post(
    f"{BASE}/integrations",
    summary="Register a webhook integration",
    description="Creates a webhook. The URL's host must resolve to public addresses only. "
    "Answers 201 with an empty body and a Location header.",
    tags=["Integrations"],
    responses=http.responses(
        {
            201: {
                "description": "Created.",
                "headers": {"Location": {"description": "Path of the new integration.", "schema": {"type": "string"}}},
            }
        },
        400,
        401,
        403,
        409,
        413,
        503,
    ),
)
def create_integration(
    integration: Annotated[IntegrationIn, Body()], caller: Caller, service: Integrations
) -> Response[str]:
    created = service.create(caller.tenant_id, integration)
    return http.empty_response(201, {"Location": f"{BASE}/integrations/{created.id}"})


@api.get(
    f"{BASE}/integrations/<integration_id>",
    summary="Get one integration",
    tags=["Integrations"],
    responses=http.responses(
        {
            200: {
                "description": "The integration.",
                "content": {"application/json": {"model": IntegrationOut}},
            }
        },
        400,
        401,
        403,
        404,
    ),
)
def get_integration(integration_id: str, caller: Caller, service: Integrations) -> Response[str]:
    return http.model_response(200, IntegrationOut.of(service.get(caller.tenant_id, _integration_id(integration_id))))


@api.delete(
    f"{BASE}/integrations/<integration_id>",
    summary="Remove an integration",
    tags=["Integrations"],
    responses=http.responses({204: {"description": "Removed."}}, 400, 401, 403, 404, 503),
)
def delete_integration(integration_id: str, caller: Caller, service: Integrations) -> Response[str]:
    service.delete(caller.tenant_id, _integration_id(integration_id))
    return http.empty_response(204)


@api.put(
    f"{BASE}/integrations/<integration_id>/credentials",
    summary="Replace an integration's credentials",
    description="Replaces URL and secret. Leaving the secret out removes it.",
    tags=["Integrations"],
    responses=http.responses({204: {"description": "Replaced."}}, 400, 401, 403, 404, 413, 503),
)
def set_credentials(
    integration_id: str, credentials: Annotated[CredentialsIn, Body()], caller: Caller, service: Integrations
) -> Response[str]:
    service.set_credentials(caller.tenant_id, _integration_id(integration_id), credentials)
    return http.empty_response(204)


@api.put(
    f"{BASE}/integrations/<integration_id>",
    summary="Change an integration (devicehooks)",
    description="Changes the fields given (url, description, scopes, event_types, enabled) and keeps the others. "
    "enabled=true re-enables a webhook that was disabled; event_types=null sends every type of its scopes.",
    tags=["Integrations"],
    responses=http.responses(
        {200: {"description": "The changed integration.", "content": {"application/json": {"model": IntegrationOut}}}},
        400,
        401,
        403,
        404,
        413,
        503,
    ),
)
def update_integration(
    integration_id: str, changes: Annotated[IntegrationUpdate, Body()], caller: Caller, service: Integrations
) -> Response[str]:
    updated = service.update(caller.tenant_id, _integration_id(integration_id), changes)
    return http.model_response(200, IntegrationOut.of(updated))


@api.post(
    f"{BASE}/integrations/<integration_id>/test",
    summary="Send a test event now (devicehooks)",
    description='POSTs an event of type "webhook-test" (data: integration_id, message), signed like any other, '
    'once, and answers with the outcome. With a body {"type": <event type>}, a realistic sample of that type '
    "(a made-up device: device-provisioned with an auth set, device-decommissioned, device-status-changed, "
    "device-inventory-changed) instead. It is recorded in the activity log; it is never retried.",
    tags=["Integrations"],
    responses=http.responses(
        {200: {"description": "The outcome.", "content": {"application/json": {"model": TestOutcomeOut}}}},
        400,
        401,
        403,
        404,
        503,
    ),
)
def test_integration(
    integration_id: str,
    caller: Caller,
    service: Deliveries,
    request: Annotated[SendTestIn | None, Body()] = None,
) -> Response[str]:
    event_type = request.type if request is not None else None
    event_id, attempt = service.send_test(caller.tenant_id, _integration_id(integration_id), event_type)
    return http.model_response(200, TestOutcomeOut.of(event_id, attempt))


@api.get(
    f"{BASE}/integrations/<integration_id>/health",
    summary="A webhook's health (devicehooks)",
    description="Its attempts of the last 24 hours (delivered: 2xx; failed: any failed attempt; held deliveries "
    "are not attempts), hour by hour, its last attempt, its circuit breaker, when it is disabled if it keeps "
    "failing, and how many of its deliveries wait for a try (retrying or held; counted up to 1000) since when.",
    tags=["Integrations"],
    responses=http.responses(
        {200: {"description": "The webhook's health.", "content": {"application/json": {"model": HealthOut}}}},
        400,
        401,
        403,
        404,
    ),
)
def integration_health(integration_id: str, caller: Caller, service: Healths) -> Response[str]:
    return http.model_response(200, HealthOut.of(service.health(caller.tenant_id, _integration_id(integration_id))))


@api.post(
    f"{BASE}/integrations/<integration_id>/recover",
    summary="Send again now every failing delivery of a time window (devicehooks)",
    description="Queues, to be sent now, every delivery to this webhook that is failing, of the events with "
    "since <= time < until (until: now; since: at most the event retention ago): those whose last attempt failed "
    "(retrying or failed) and those held by the webhook's circuit, trial or limits. Each is sent once however often "
    "this is called: a delivery delivered since it was read is never sent again, and one queued by a call is "
    "pending, then delivered or retrying, and the next call counts it as already queued. The answer says how many "
    "were queued, left alone and not sent (and why), and the circuit when it is open: the queued deliveries go "
    "through it as any other. At most 1,000 events are examined per call; next_since then says where to go on.",
    tags=["Integrations"],
    responses=http.responses(
        {202: {"description": "Queued.", "content": {"application/json": {"model": RecoverOut}}}},
        400,
        401,
        403,
        404,
        409,
        413,
        503,
    ),
)
def recover_integration(
    integration_id: str, request: Annotated[RecoverIn, Body()], caller: Caller, service: Deliveries
) -> Response[str]:
    recovery = service.recover(
        caller.tenant_id,
        _integration_id(integration_id),
        parse_time(request.since),
        parse_time(request.until) if request.until is not None else None,
    )
    return http.model_response(202, RecoverOut.of(recovery))


# ---------------------------------------------------------------- activity


@api.get(
    f"{BASE}/events",
    summary="List events (activity), newest first",
    tags=["Activity"],
    responses=http.responses(
        {
            200: {
                "description": "A page of events.",
                "content": {"application/json": {"model": list[EventOut]}},
            }
        },
        400,
        401,
        403,
    ),
)
def list_events(
    caller: Caller,
    service: Events,
    page: Annotated[int, Query(ge=1, description="Page number.")] = 1,
    per_page: Annotated[int, Query(ge=1, le=MAX_PER_PAGE, description="Events per page.")] = 20,
    integration_id: Annotated[str | None, Query(description="Only events delivered to this integration.")] = None,
    device_id: Annotated[
        str | None,
        Query(description="devicehooks: only events about this device (data.id, or data.device_id)."),
    ] = None,
    device_prefix: Annotated[
        str | None,
        Query(
            description="devicehooks: only events about devices whose id starts with this (case as stored; "
            "not with device_id)."
        ),
    ] = None,
    status: Annotated[
        str | None,
        Query(
            description="devicehooks: only events with a delivery in this state (pending, retrying, delivered, "
            "failed, skipped); with integration_id, that integration's delivery."
        ),
    ] = None,
    type: Annotated[  # noqa: A002 - the query parameter's name
        str | None, Query(description="devicehooks: only events of this type (a device event type, webhook-test).")
    ] = None,
    since: Annotated[
        str | None, Query(alias="from", description="devicehooks: only events at or after this time (RFC 3339).")
    ] = None,
    until: Annotated[
        str | None, Query(alias="to", description="devicehooks: only events before this time (RFC 3339).")
    ] = None,
) -> Response[str]:
    only: str | None = None
    if integration_id:
        if go_uuid_error(integration_id) is not None:
            raise InvalidRequest("integration ID is not a valid UUID")
        only = str(uuid.UUID(integration_id))
    narrowed = event_filter(device_id, status, type, since, until, device_prefix)
    events = service.list_events(caller.tenant_id, page, per_page, only, narrowed)
    return http.model_response(200, [EventOut.of(e) for e in events])


def _query_time(name: str, text: str) -> datetime:
    try:
        return parse_time(text)
    except ValueError:
        raise InvalidRequest(f'invalid {name} query: "{text}" is not an RFC 3339 time') from None


def event_filter(
    device_id: str | None,
    status: str | None,
    kind: str | None,
    since: str | None,
    until: str | None,
    device_prefix: str | None = None,
) -> EventFilter | None:
    """The events' filters from their query parameters (empty ones are absent), or a 400."""
    if device_id:
        check_id(device_id, "device_id query")  # what no event can carry, no event is about
    if device_prefix:
        check_id(device_prefix, "device_prefix query")
        if device_id:
            raise InvalidRequest("invalid device query: give device_id or device_prefix, not both")
    if status and status not in DELIVERY_STATES:
        raise InvalidRequest(f'invalid status query: "{status}" (one of {", ".join(DELIVERY_STATES)})')
    if kind and kind not in ACTIVITY_TYPES:
        raise InvalidRequest(f'invalid type query: "{kind}" (one of {", ".join(ACTIVITY_TYPES)})')
    start = _query_time("from", since) if since else None
    end = _query_time("to", until) if until else None
    if start is not None and end is not None and end <= start:
        raise InvalidRequest("invalid time range: to must be after from")
    found = EventFilter(
        device_id=device_id or None,
        state=next((s for s in DELIVERY_STATES if s == status), None),
        type=kind or None,
        since=start,
        until=end,
        device_prefix=device_prefix or None,
    )
    return found if found != EventFilter() else None


@api.get(
    f"{BASE}/egress",
    summary="The addresses webhook requests come from (devicehooks)",
    description="The public IP addresses of every webhook request, for receivers that allow-list "
    "their callers; empty unless the service was deployed with static egress addresses.",
    tags=["Integrations"],
    responses=http.responses(
        {200: {"description": "The addresses.", "content": {"application/json": {"model": EgressOut}}}}, 401, 403
    ),
)
def get_egress(caller: Caller, addresses: EgressIps) -> Response[str]:
    return http.model_response(200, EgressOut(addresses=list(addresses)))


@api.get(
    f"{BASE}/events/<event_id>",
    summary="One event with per-attempt detail (devicehooks)",
    tags=["Activity"],
    responses=http.responses(
        {200: {"description": "The event.", "content": {"application/json": {"model": EventDetailOut}}}},
        400,
        401,
        403,
        404,
    ),
)
def get_event(event_id: str, caller: Caller, service: Events) -> Response[str]:
    return http.model_response(200, EventDetailOut.of(service.get(caller.tenant_id, _event_id(event_id))))


@api.post(
    f"{BASE}/events/<event_id>/redeliver",
    summary="Send an event again (devicehooks)",
    description="Queues the event, to be sent now, for one webhook (integration_id) or for every enabled webhook "
    "it went to, whatever their deliveries' state: a delivered event is sent again (the receiver gets it once "
    "more; to attempt only what was not delivered, use retry), and a delivery waiting for its next retry is "
    "attempted now, that retry then dropped. The same bytes and webhook-id are sent; the attempts are recorded "
    "as new attempts. 409 while an attempt of the delivery is in flight, and when the event's activity record "
    "has no room to record another attempt (then nothing is sent).",
    tags=["Activity"],
    responses=http.responses(
        {202: {"description": "Queued.", "content": {"application/json": {"model": RedeliverOut}}}},
        400,
        401,
        403,
        404,
        409,
        503,
    ),
)
def redeliver_event(
    event_id: str,
    caller: Caller,
    service: Deliveries,
    request: Annotated[RedeliverIn | None, Body()] = None,
) -> Response[str]:
    return _queued(service.redeliver, caller, event_id, request)


@api.post(
    f"{BASE}/events/<event_id>/retry",
    summary="Retry an event's deliveries that were not delivered (devicehooks)",
    description="Queues, to be attempted now, the event's delivery to one webhook (integration_id), or each of "
    "its deliveries to an enabled webhook, that was not delivered: waiting for its next retry or held, "
    "failed, or skipped. A delivered delivery is never sent again, however stale the caller's view (the "
    "store reopens a delivery only while it is in one of these states); redeliver sends an event again. "
    "A retry that was waiting is then dropped. 409, with the reason, when there is nothing to retry: every "
    "delivery was delivered, an attempt is in flight or queued, the webhook is disabled, a test event.",
    tags=["Activity"],
    responses=http.responses(
        {202: {"description": "Queued.", "content": {"application/json": {"model": RedeliverOut}}}},
        400,
        401,
        403,
        404,
        409,
        503,
    ),
)
def retry_event(
    event_id: str,
    caller: Caller,
    service: Deliveries,
    request: Annotated[RetryIn | None, Body()] = None,
) -> Response[str]:
    return _queued(service.retry, caller, event_id, request)


def _queued(
    queue: Callable[[str, str, str | None], list[str]],
    caller: Caller,
    event_id: str,
    request: RedeliverIn | RetryIn | None,
) -> Response[str]:
    """Redeliver or retry (``queue``): the ids checked, then 202 with what was queued."""
    target = request.integration_id if request is not None else None
    canonical = _event_id(event_id)
    queued = queue(caller.tenant_id, canonical, _integration_id(target) if target else None)
    return http.model_response(202, RedeliverOut(event_id=canonical, integration_ids=queued))


# ---------------------------------------------------------------- OpenAPI


def _document_info() -> dict[str, Any]:
    from aws_lambda_powertools.event_handler.openapi.models import HTTPBearer  # heavy: only for the docs

    return {
        "title": "devicehooks management API",
        "version": __version__,
        "description": "Mender iot-manager compatible management API for webhook integrations, "
        "with devicehooks' additions (several webhooks per tenant, event filters, retries, activity detail).",
        "security_schemes": {"ManagementJWT": HTTPBearer(bearerFormat="JWT", description="Mender user JWT.")},
        "security": [{"ManagementJWT": []}],
    }


http.docs_routes(api, DOCS, OPENAPI, _document_info)


# ---------------------------------------------------------------- identity


def authenticate(event: dict[str, Any]) -> Response[str] | None:
    """Read the authorizer's verdict before any route runs: Mender's 401/403 when it refused."""
    path = event.get("rawPath") or ""
    _identity.set(None)
    if path in PUBLIC_PATHS or not api.serves(path):
        return None
    try:
        _identity.set(identity_from_request(event.get("requestContext") or {}))
    except DevicehooksError as exc:
        return http.error_response(exc.status_code, exc.message)
    return None
