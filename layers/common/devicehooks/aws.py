"""boto3 clients, created on first use and cached per process (never at import time)."""

from __future__ import annotations

import threading
from functools import cache
from typing import Any

import boto3
from botocore.config import Config

_lock = threading.Lock()

# Lambda retries the whole batch on failure, so SDK calls fail fast rather than stall the batch.
_CONFIG = Config(
    retries={"max_attempts": 4, "mode": "standard"},
    connect_timeout=5,
    read_timeout=10,
    max_pool_connections=64,
)


@cache
def _client(service: str) -> Any:
    return boto3.session.Session().client(service, config=_CONFIG)  # type: ignore[call-overload]


def client(service: str) -> Any:
    """A shared, thread-safe boto3 client for ``service``."""
    with _lock:  # boto3 client creation itself is not thread-safe
        return _client(service)


def reset_clients() -> None:
    """Forget cached clients (tests that point boto3 at another endpoint)."""
    with _lock:
        _client.cache_clear()
