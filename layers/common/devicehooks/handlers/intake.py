"""The intake function's wiring: bus events (the intake queue) onto the fair dispatch queue.

Imports neither pydantic nor the dispatcher: an intake environment starts in the time botocore
takes, and forwards a batch with one ``SendMessageBatch``.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from devicehooks import aws
from devicehooks.aws.sqs import SqsFairQueue
from devicehooks.config import get_settings
from devicehooks.errors import ConfigError
from devicehooks.services.intake import forward


@lru_cache(maxsize=1)
def fair_queue() -> SqsFairQueue:
    settings = get_settings()
    if not settings.dispatch_queue_url:
        raise ConfigError("invalid configuration: DEVICEHOOKS_DISPATCH_QUEUE_URL not set")
    return SqsFairQueue(settings.dispatch_queue_url)


fair_queue()  # checked at cold start: a missing setting fails here, not at a batch
aws.prepare("sqs")  # its client, made at cold start (not in the first invocation)


def handle(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Forward one SQS batch; the records that could not be sent come back (partial batch response)."""
    records = event.get("Records") or []
    refused = forward(fair_queue(), [str(r.get("body", "")) for r in records])
    return {"batchItemFailures": [{"itemIdentifier": records[n]["messageId"]} for n in refused]}
