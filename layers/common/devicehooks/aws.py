"""AWS clients (botocore), created on first use and cached per process (never at import time).

botocore rather than boto3: boto3 adds resources and S3 transfers, which devicehooks does not
use, and importing it costs every cold start about 15 ms more (it imports s3transfer, which
imports multiprocessing); the clients are the same botocore clients either way.
"""

from __future__ import annotations

import threading
from functools import cache
from typing import Any

import botocore.session
from botocore.config import Config

_lock = threading.Lock()

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


@cache
def _client(service: str) -> Any:
    return botocore.session.get_session().create_client(service, config=_CONFIG)


def client(service: str) -> Any:
    """A shared, thread-safe client for ``service`` (region and credentials from the environment)."""
    with _lock:  # client creation itself is not thread-safe
        return _client(service)


def reset_clients() -> None:
    """Forget cached clients (tests that point the SDK at another endpoint)."""
    with _lock:
        _client.cache_clear()
