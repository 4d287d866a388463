"""The management API's resolver, the dependencies its routes take and the path ids they check
(the routes: :mod:`devicehooks.api.management`, integrations, and
:mod:`devicehooks.api.management_events`, activity)."""

from __future__ import annotations

import contextvars
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated

from aws_lambda_powertools.event_handler.depends import Depends

from devicehooks.api import http
from devicehooks.api.schemas import (
    IntegrationOut,
)
from devicehooks.domain.models import go_uuid_error
from devicehooks.errors import DevicehooksError, InvalidRequest
from devicehooks.security.identity import Identity
from devicehooks.services.events import EventService
from devicehooks.services.health import HealthService
from devicehooks.services.integrations import IntegrationService
from devicehooks.services.redelivery import DeliveryService

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
