"""The dispatcher function's wiring: SQS batches in, records processed concurrently.

Records of a batch run side by side (``async_process_partial_response`` gathers them, each in a
worker thread), and the webhooks of each event are POSTed side by side too, so one slow
endpoint delays neither the other webhooks nor the other events. A record that raises is
reported in ``batchItemFailures`` and comes back from SQS; its recorded successes are not sent
again.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from typing import Any

from aws_lambda_powertools.utilities.batch import AsyncBatchProcessor, EventType, async_process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from devicehooks.config import Settings, get_settings
from devicehooks.delivery.sender import HttpSender
from devicehooks.delivery.tasks import SqsTaskQueue
from devicehooks.domain.events import build_bus_models
from devicehooks.errors import ConfigError
from devicehooks.security.secretbox import KmsSecretCipher
from devicehooks.security.ssrf import DestinationGuard
from devicehooks.services.dispatch import Dispatcher, DispatchPolicy
from devicehooks.store.activity import DynamoActivityStore
from devicehooks.store.integrations import DynamoIntegrationStore


def _checked(settings: Settings) -> Settings:
    """``settings``, unless a queue or the key the dispatcher needs is not configured."""
    missing = [
        name
        for name, val in (
            ("DEVICEHOOKS_RETRY_QUEUE_URL", settings.retry_queue_url),
            ("DEVICEHOOKS_DELIVERY_DLQ_URL", settings.delivery_dlq_url),
            ("DEVICEHOOKS_DISPATCH_DLQ_URL", settings.dispatch_dlq_url),
            ("DEVICEHOOKS_SECRETS_KEY_ID", settings.secrets_key_id),
        )
        if not val
    ]
    if missing:
        raise ConfigError("invalid configuration: " + ", ".join(missing) + " not set")
    return settings


_checked(get_settings())  # read and checked at cold start: a missing or bad setting fails here, not at a batch
build_bus_models()  # every invocation validates bus events: build their models now, not in the first one

processor = AsyncBatchProcessor(event_type=EventType.SQS)
_records = ThreadPoolExecutor(max_workers=10, thread_name_prefix="record")


def policy() -> DispatchPolicy:
    settings = get_settings()
    return DispatchPolicy(
        retention=settings.event_retention,
        schedule=settings.retry_schedule,
        disable_after=settings.disable_after,
        delivery_timeout=settings.delivery_timeout,
        lease=settings.delivery_lease,
    )


@lru_cache(maxsize=1)
def dispatcher() -> Dispatcher:
    """The dispatcher wired from settings (clients and connections are made on first use)."""
    settings = _checked(get_settings())
    return Dispatcher(
        integrations=DynamoIntegrationStore(settings.integrations_table),
        activity=DynamoActivityStore(settings.activity_table),
        cipher=KmsSecretCipher(settings.secrets_key_id),
        sender=HttpSender(DestinationGuard(allowed_cidrs=settings.allowed_cidrs), timeout=settings.delivery_timeout),
        queue=SqsTaskQueue(settings.retry_queue_url, settings.delivery_dlq_url, settings.dispatch_dlq_url),
        policy=policy(),
    )


async def _record(record: SQSRecord) -> None:
    await asyncio.get_running_loop().run_in_executor(_records, dispatcher().handle_message, record.body)


def handle(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Process one SQS batch (dispatch queue or retry queue) with partial batch failures."""
    dispatcher().begin_batch()
    return dict(
        async_process_partial_response(event=event, record_handler=_record, processor=processor, context=context)
    )
