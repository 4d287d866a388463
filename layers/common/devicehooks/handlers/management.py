"""The management function's composition root and handler: the API's routes behind the request
rules and the identity check.

A test delivery (``POST /integrations/{id}/test``) is sent here, synchronously, with the same
delivery pipeline the dispatcher runs (:mod:`devicehooks.dispatch`), composed here from the same
parts: this function opens a webhook's secret (``kms:Decrypt``) to sign a test, and nothing else
it does needs it. The pipeline's modules are imported only when a test is sent.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from devicehooks import aws
from devicehooks.api import http, management
from devicehooks.aws.kms import KmsSecretCipher
from devicehooks.aws.sqs import SqsTaskQueue
from devicehooks.config import get_settings
from devicehooks.security.ssrf import DestinationGuard
from devicehooks.services.events import EventService
from devicehooks.services.health import HealthService
from devicehooks.services.integrations import IntegrationService
from devicehooks.services.redelivery import DeliveryService
from devicehooks.store.activity import DynamoActivityStore
from devicehooks.store.integrations import DynamoIntegrationStore

if TYPE_CHECKING:
    from devicehooks.dispatch import Dispatcher


@lru_cache(maxsize=1)
def services() -> management.Services:
    """The routes' services, wired from settings (clients are made on first use)."""
    settings = get_settings()
    integrations = DynamoIntegrationStore(settings.integrations_table)
    activity = DynamoActivityStore(settings.activity_table)
    return management.Services(
        integrations=IntegrationService(
            store=integrations,
            cipher=cipher(),
            guard=DestinationGuard(allowed_cidrs=settings.allowed_cidrs),
            max_integrations=settings.max_integrations,
            secret_overlap=settings.secret_overlap,
        ),
        events=EventService(activity),
        deliveries=DeliveryService(
            integrations=integrations,
            activity=activity,
            queue=queue(),
            dispatcher=test_sender,
            retention=settings.event_retention,
        ),
        health=HealthService(integrations, activity, settings.disable_after),
        egress_ips=settings.egress_ips,
    )


@lru_cache(maxsize=1)
def cipher() -> KmsSecretCipher:
    return KmsSecretCipher(get_settings().secrets_key_id)


@lru_cache(maxsize=1)
def queue() -> SqsTaskQueue:
    settings = get_settings()
    return SqsTaskQueue(settings.retry_queue_url, settings.delivery_dlq_url, settings.dispatch_dlq_url)


@lru_cache(maxsize=1)
def test_sender() -> Dispatcher:
    """The delivery pipeline, for test deliveries: made at the first test."""
    from devicehooks.dispatch import Dispatcher
    from devicehooks.dispatch.context import from_settings

    return Dispatcher(from_settings(get_settings()))


get_settings()  # read and checked at cold start: a missing or bad setting fails here, not at a request
management.wire(services)
aws.prepare("dynamodb", "kms", "sqs")  # the clients its requests use, made at cold start (not in the first)


def handle(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Serve one API Gateway event: size limit, request id, then the caller's verified identity."""
    return http.serve(management.app, event, context, get_settings().request_size_limit, before=management.authenticate)
