"""The dispatcher function's wiring: SQS batches in, records processed concurrently.

Records of a batch run side by side, each in a worker thread (powertools' ``BatchProcessor``
collects their outcomes: an asyncio loop per invocation to run threads would cost CPU for
nothing), and the webhooks of each event are POSTed side by side too, so one slow
endpoint delays neither the other webhooks nor the other events. A record that raises is
reported in ``batchItemFailures`` and comes back from SQS; its recorded successes are not sent
again.
"""

from __future__ import annotations

import time
from concurrent.futures import Future, wait
from functools import lru_cache
from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from devicehooks.aws.kms import KmsSecretCipher
from devicehooks.aws.sqs import SqsTaskQueue
from devicehooks.config import Settings, get_settings
from devicehooks.delivery.sender import HttpSender
from devicehooks.domain.events import build_bus_models
from devicehooks.errors import ConfigError
from devicehooks.security.ssrf import DestinationGuard
from devicehooks.services.dispatch import Batch, Dispatcher, DispatchPolicy, PoolRack
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

# Records run in threads, at most RECORDS_AT_ONCE of an invocation (a batch of the template's is
# 10), in a pool of its own while it runs (one pool on Lambda; one per invocation running at a
# time in the local stack, which runs them side by side in one process)
RECORDS_AT_ONCE = 64
_records = PoolRack(RECORDS_AT_ONCE, "record")


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


def handle(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Process one SQS batch (dispatch queue or retry queue) with partial batch failures.

    Everything the batch shares is made here, per invocation (the processor keeps the batch's
    records, the batch its reads), so that invocations may run side by side."""
    batch = Batch(deadline=time.monotonic() + context.get_remaining_time_in_millis() / 1000)
    handle_message = dispatcher().handle_message
    records = _records.take()
    running: dict[Any, Future[None]] = {}
    try:
        running = {
            record.get("messageId"): records.submit(handle_message, record.get("body"), batch)
            for record in event.get("Records") or []
        }

        def record_handler(record: SQSRecord) -> None:
            running[record.message_id].result()  # its outcome, as its thread left it

        response = dict(
            process_partial_response(
                event=event, record_handler=record_handler, processor=BatchProcessor(EventType.SQS), context=context
            )
        )
    finally:
        wait(running.values())  # every record's thread done before another invocation may take them
        _records.give_back(records)
    dispatcher().finish_batch(batch)  # tasks sent back in bulk: if this raises, SQS brings the batch back
    return response
