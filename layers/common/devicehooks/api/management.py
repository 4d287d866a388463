"""Management API (Mender's ``/api/management/v1/iot-manager``): integrations here, activity in
:mod:`devicehooks.api.management_events`, the resolver and dependencies in
:mod:`devicehooks.api.management_app`."""

from __future__ import annotations

from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Body

from devicehooks import __version__
from devicehooks.api import (
    http,
    management_events,  # noqa: F401 - registers the activity routes
)
from devicehooks.api.management_app import (
    _JSON_LIST_OF_INTEGRATIONS,
    BASE,
    DOCS,
    OPENAPI,
    PUBLIC_PATHS,
    Caller,
    Deliveries,
    EgressIps,
    Healths,
    Integrations,
    Services,
    _identity,
    _integration_id,
    api,
    app,
    delivery_service,
    egress_ips,
    event_service,
    health_service,
    integration_service,
    wire,
)
from devicehooks.api.schemas import (
    EgressOut,
    HealthOut,
    IntegrationOut,
    RecoverIn,
    RecoverOut,
    SendTestIn,
    TestOutcomeOut,
)
from devicehooks.domain.inputs import CredentialsIn, IntegrationIn, IntegrationUpdate
from devicehooks.errors import DevicehooksError
from devicehooks.security.identity import identity_from_request
from devicehooks.timeutil import parse_time

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


# what the composition root (handlers/management.py) and the tests use, with the routes registered
__all__ = [
    "Services",
    "app",
    "authenticate",
    "delivery_service",
    "egress_ips",
    "event_service",
    "health_service",
    "integration_service",
    "wire",
]
