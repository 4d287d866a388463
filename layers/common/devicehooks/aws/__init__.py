"""Every AWS adapter of the runtime: this module's clients and batch retries; ``dynamo`` (attribute
values, paging and batches for the stores), ``sqs`` (the retry queue, the dead-letter queues, the
fair dispatch queue), ``eventbridge`` (the bus), ``kms`` (webhook secrets). The rest of the package
sees them through the protocols they implement (``TaskQueue``, ``EventPublisher``, ``SecretCipher``,
the stores'), never a botocore error or a request shape.

Clients (botocore), cached per process: made when first used, or at a function's cold start by
its composition root (:func:`prepare`), never by importing this package. With tracing on, every
call is an X-Ray subsegment (botocore patched here, where the clients are made).

botocore rather than boto3: boto3 adds resources and S3 transfers, which devicehooks does not
use, and importing it costs every cold start about 15 ms more (it imports s3transfer, which
imports multiprocessing); the clients are the same botocore clients either way.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Sequence
from functools import cache
from typing import Any, TypeVar

import botocore.session
from botocore.config import Config

from devicehooks.observability import tracer

_lock = threading.Lock()
T = TypeVar("T")
ATTEMPTS = 6  # calls of a batch request before what it still has not done is given up
FIRST_PAUSE = 0.05  # seconds before the first retry of a batch's leftovers, doubled after each ...
MAX_PAUSE = 1.0  # ... up to this (each pause drawn between 0 and it: "full jitter")

# Lambda retries the whole batch on failure, so SDK calls fail fast rather than stall the batch.
# No client-side parameter validation: the service validates every request anyway, and walking
# the nested attribute values of an activity item cost ~20 % of a DynamoDB call's CPU (make bench,
# P1); the stores' requests are typed and pinned by the contract suite.
_CONFIG = Config(
    retries={"max_attempts": 4, "mode": "standard"},
    connect_timeout=5,
    read_timeout=10,
    max_pool_connections=64,
    parameter_validation=False,
)


# every AWS call a subsegment of its own when tracing is on (devicehooks.observability); a no-op otherwise
tracer.patch(("botocore",))


@cache
def _client(service: str) -> Any:
    return botocore.session.get_session().create_client(service, config=_CONFIG)


def client(service: str) -> Any:
    """A shared, thread-safe client for ``service`` (region and credentials from the environment)."""
    with _lock:  # client creation itself is not thread-safe
        return _client(service)


def prepare(*services: str) -> None:
    """Make the clients of ``services`` now: at cold start, so that a function's first invocation
    does not pay for them (AWS's advice: initialise SDK clients outside the handler). Making a
    client reads its service's model; it sends no request."""
    for service in services:
        client(service)


def reset_clients() -> None:
    """Forget cached clients (tests that point the SDK at another endpoint)."""
    with _lock:
        _client.cache_clear()


def retried(
    call: Callable[[list[T]], Sequence[T]],
    items: Sequence[T],
    attempts: int = ATTEMPTS,
    sleep: Callable[[float], None] = time.sleep,
) -> list[T]:
    """Run a batch request until it has done every item; what it still has not done after
    ``attempts`` calls (the caller decides what that means: an error, an item failed).

    ``call(pending)`` makes the request and returns the items it did not do: the entries SQS's
    ``SendMessageBatch`` and EventBridge's ``PutEvents`` report failed, the keys or writes DynamoDB
    leaves unprocessed. Between calls it waits an exponential backoff with full jitter, as AWS
    advises for throttled batches (the SDK's own retries cover only a request that fails whole)."""
    pending = list(items)
    for attempt in range(attempts):
        if not pending:
            break
        if attempt:
            sleep(random.uniform(0.0, min(MAX_PAUSE, FIRST_PAUSE * 2 ** (attempt - 1))))
        pending = list(call(pending))
    return pending
