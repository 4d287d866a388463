"""Management API, the activity routes: the event list and its filters, an event, redeliver and
retry (registered on :data:`devicehooks.api.management_app.api`)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Annotated

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Body, Query

from devicehooks.api import http
from devicehooks.api.management_app import (  # noqa: F401 - some are this module's API (tests, the composition root)
    _JSON_LIST_OF_INTEGRATIONS,
    BASE,
    DOCS,
    MAX_PER_PAGE,
    OPENAPI,
    PUBLIC_PATHS,
    Caller,
    Deliveries,
    EgressIps,
    Events,
    Healths,
    Integrations,
    Services,
    _event_id,
    _identity,
    _integration_id,
    _uuid,
    api,
    app,
    current_identity,
    delivery_service,
    egress_ips,
    event_service,
    health_service,
    integration_service,
    wire,
)
from devicehooks.api.schemas import (
    EventDetailOut,
    EventOut,
    RedeliverIn,
    RedeliverOut,
    RetryIn,
)
from devicehooks.domain.activity import DELIVERY_STATES, EventFilter
from devicehooks.domain.models import ACTIVITY_TYPES, go_uuid_error
from devicehooks.errors import InvalidRequest
from devicehooks.services.ingest import check_id
from devicehooks.timeutil import parse_time


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


# what redeliver and retry answer (one description: both queue deliveries and say which)
_QUEUED_RESPONSES = http.responses(
    {202: {"description": "Queued.", "content": {"application/json": {"model": RedeliverOut}}}},
    400,
    401,
    403,
    404,
    409,
    503,
)


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
    responses=_QUEUED_RESPONSES,
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
    responses=_QUEUED_RESPONSES,
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
