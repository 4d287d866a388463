"""The stores under contract: the in-memory doubles and the DynamoDB stores on moto's server.

The DynamoDB tables are created from template.yaml (devicehooks_dev.local.stack.create_resources)
on a moto server of this module's own; the process environment is restored and moto reset
afterwards, so the other test layers never see them.
"""

from __future__ import annotations

import os
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest

from devicehooks import aws
from devicehooks.store.activity import ActivityStore, DynamoActivityStore
from devicehooks.store.integrations import DynamoIntegrationStore, IntegrationStore
from devicehooks_dev.doubles import MemoryActivityStore, MemoryIntegrationStore
from devicehooks_dev.local import motofixes
from devicehooks_dev.local.stack import REGION, create_resources
from devicehooks_dev.local.template import load_template
from tests.conftest import ROOT

AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_EC2_METADATA_DISABLED": "true",
}


@dataclass
class Stores:
    kind: str
    integrations: IntegrationStore
    activity: ActivityStore


@pytest.fixture(scope="module")
def moto_tables() -> Iterator[tuple[Any, dict[str, dict[str, Any]]]]:
    """A moto server with the template's tables; a DynamoDB client for it, and the tables' names."""
    from moto.server import ThreadedMotoServer

    if motofixes.enabled():
        motofixes.apply()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    saved = {k: os.environ.get(k) for k in [*AWS_ENV, "AWS_ENDPOINT_URL"]}
    os.environ.update({**AWS_ENV, "AWS_ENDPOINT_URL": endpoint})
    aws.reset_clients()
    try:
        _, physical = create_resources(load_template(ROOT / "template.yaml"), {"JwtPublicKeys": "unused"})
    finally:
        for key, val in saved.items():
            if val is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = val
        aws.reset_clients()
    client = boto3.session.Session().client(
        "dynamodb",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    yield client, physical
    # moto's backends are one per process, whatever the server: forget these resources, or the
    # integration tests' local stack (same process, same template) finds its tables already there
    urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST"), timeout=30).close()
    server.stop()


@pytest.fixture(params=["memory", "dynamodb"])
def stores(request: pytest.FixtureRequest) -> Stores:
    if request.param == "memory":
        return Stores("memory", MemoryIntegrationStore(), MemoryActivityStore())
    client, physical = request.getfixturevalue("moto_tables")
    return Stores(
        "dynamodb",
        DynamoIntegrationStore(physical["IntegrationsTable"]["TableName"], client=client),
        DynamoActivityStore(physical["ActivityLogTable"]["TableName"], client=client),
    )
