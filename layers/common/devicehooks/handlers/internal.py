"""The internal function's composition root and handler: Mender's internal routes behind the
request rules."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from devicehooks import aws
from devicehooks.api import http, internal
from devicehooks.aws.eventbridge import EventBridgePublisher
from devicehooks.config import get_settings
from devicehooks.services.ingest import IngestService
from devicehooks.services.tenants import TenantService
from devicehooks.store.activity import DynamoActivityStore
from devicehooks.store.integrations import DynamoIntegrationStore


@lru_cache(maxsize=1)
def services() -> internal.Services:
    """The routes' services, wired from settings (clients are made on first use)."""
    settings = get_settings()
    publisher = EventBridgePublisher(settings.event_bus, settings.event_source) if settings.event_bus else None
    return internal.Services(
        ingest=IngestService(publisher) if publisher is not None else None,
        tenants=TenantService(
            DynamoIntegrationStore(settings.integrations_table), DynamoActivityStore(settings.activity_table)
        ),
    )


get_settings()  # read and checked at cold start: a missing or bad setting fails here, not at a request
internal.wire(services)
aws.prepare("dynamodb", "events")  # the clients its requests use, made at cold start (not in the first)


def handle(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Serve one API Gateway event (size limit, request id, Mender's error bodies)."""
    return http.serve(internal.app, event, context, get_settings().request_size_limit)
