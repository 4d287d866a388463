"""Fixtures shared by every test layer."""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
EVENTS = ROOT / "events"

# Settings the package reads; unit tests never reach AWS (stores are in-memory doubles).
os.environ.setdefault("DEVICEHOOKS_INTEGRATIONS_TABLE", "unit-integrations")
os.environ.setdefault("DEVICEHOOKS_ACTIVITY_TABLE", "unit-activity")
# the dispatcher's handler module checks at import that its queues and key are configured
os.environ.setdefault("DEVICEHOOKS_RETRY_QUEUE_URL", "https://sqs.us-east-1.amazonaws.com/123456789012/unit-retry")
os.environ.setdefault(
    "DEVICEHOOKS_DELIVERY_DLQ_URL", "https://sqs.us-east-1.amazonaws.com/123456789012/unit-delivery-dlq"
)
os.environ.setdefault(
    "DEVICEHOOKS_DISPATCH_DLQ_URL", "https://sqs.us-east-1.amazonaws.com/123456789012/unit-dispatch-dlq"
)
os.environ.setdefault("DEVICEHOOKS_SECRETS_KEY_ID", "arn:aws:kms:us-east-1:123456789012:key/unit")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "devicehooks-tests")
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "devicehooks-tests")
os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")


def moto_client(service: str, url: str, connections: int = 10) -> Any:
    """A client of moto's server at ``url`` that never retries, so that any error shows."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        service,
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",  # noqa: S106 - moto's dummy credentials
        config=Config(retries={"total_max_attempts": 1}, max_pool_connections=connections),
    )


def load_event(name: str) -> dict[str, Any]:
    """A sample event from events/ (the same files serve ``sam local invoke -e``)."""
    return json.loads((EVENTS / name).read_text())


@pytest.fixture
def event() -> Callable[[str], dict[str, Any]]:
    return lambda name: copy.deepcopy(load_event(name))


class FakeContext:
    function_name = "devicehooks-test"
    function_version = "$LATEST"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:devicehooks-test"
    memory_limit_in_mb = 512
    aws_request_id = "c6af9ac6-7b61-11e6-9a41-93e8deadbeef"
    log_group_name = "/aws/lambda/devicehooks-test"
    log_stream_name = "test"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


@pytest.fixture
def lambda_context() -> FakeContext:
    return FakeContext()
