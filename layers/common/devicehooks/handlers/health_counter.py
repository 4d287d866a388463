"""The health counter function's composition root and handler: a batch of the activity table's
stream records (one shard's, in order) into each webhook's hourly counts
(:mod:`devicehooks.services.health_counter`).

Not powertools' ``BatchProcessor``: it handles each record on its own, and this function's work is
the batch's sum (one write per webhook and hour, not one per record). The partial batch response
is the same (``batchItemFailures``: for a stream, the first record to bring back).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from devicehooks import aws
from devicehooks.config import get_settings
from devicehooks.services.health_counter import HealthCounter
from devicehooks.store.activity import DynamoActivityStore

WRITES_AT_ONCE = 8  # a batch's writes (one per webhook and hour) side by side

_writes = ThreadPoolExecutor(max_workers=WRITES_AT_ONCE, thread_name_prefix="count")


@lru_cache(maxsize=1)
def counter() -> HealthCounter:
    """The counter wired from settings."""
    settings = get_settings()
    return HealthCounter(DynamoActivityStore(settings.activity_table), settings.event_retention, _writes.map)


counter()  # settings read and checked at cold start
aws.prepare("dynamodb")  # its client, made at cold start (not in the first invocation)


def handle(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Count one stream batch; the first record whose counts were not written comes back."""
    first = counter().count(event.get("Records") or [])
    return {"batchItemFailures": [] if first is None else [{"itemIdentifier": first}]}
