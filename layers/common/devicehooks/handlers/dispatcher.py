"""The dispatcher function's composition root and handler: SQS batches in, records side by side.

Records of a batch run side by side, each in a thread of the environment's record pool
(powertools' ``BatchProcessor`` collects their outcomes), and the webhooks of each event are POSTed
side by side too, so one slow endpoint delays neither the other webhooks nor the other events. A
record that raises is reported in ``batchItemFailures`` and comes back from SQS; its recorded
successes are not sent again. An execution environment runs one invocation at a time: the pools
are the process's.
"""

from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor, wait
from functools import lru_cache
from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from devicehooks import aws
from devicehooks.config import Settings, get_settings
from devicehooks.dispatch import Batch, Dispatcher
from devicehooks.dispatch.context import from_settings
from devicehooks.domain.events import build_bus_models
from devicehooks.errors import ConfigError

RECORDS_AT_ONCE = 64  # an invocation's records in threads at once (a batch of the template's is 10)


def checked(settings: Settings) -> Settings:
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


@lru_cache(maxsize=1)
def dispatcher() -> Dispatcher:
    """The dispatcher wired from settings (clients and connections are made on first use)."""
    return Dispatcher(from_settings(checked(get_settings())))


dispatcher()  # settings read and checked at cold start: a missing or bad setting fails here, not at a batch
aws.prepare("dynamodb", "sqs", "kms")  # the clients every invocation uses, made at cold start (not in the first)
build_bus_models()  # every invocation validates bus events: build their models now, not in the first one
_records = ThreadPoolExecutor(max_workers=RECORDS_AT_ONCE, thread_name_prefix="record")


def handle(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Process one SQS batch (dispatch queue or retry queue) with partial batch failures."""
    batch = Batch(deadline=time.monotonic() + context.get_remaining_time_in_millis() / 1000)
    handle_message = dispatcher().handle_message
    running: dict[Any, Future[None]] = {}
    try:
        running = {
            record.get("messageId"): _records.submit(handle_message, record.get("body"), batch)
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
        wait(running.values())  # every record done before the batch is finished
    dispatcher().finish_batch(batch)  # tasks sent back in bulk: if this raises, SQS brings the batch back
    return response
