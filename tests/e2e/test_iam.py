"""IAM proven: every AWS call each function makes is allowed by the role ``sam deploy`` gives it,
and every action its role grants is used (or listed below, with its reason).

A local stack runs with ``DEVICEHOOKS_LOCAL_RECORD_CALLS`` (its execution environments record
each botocore call: :mod:`devicehooks_dev.local.callrecorder`) through a representative flow:
webhooks created, changed and tested through the management API, device events through the
internal API (so the intake, the dispatcher and the health counter run), a failing receiver (retries, a failed
delivery), retry now, recover, health, the activity log, deletion of a webhook and of a tenant.
The calls are then checked against the roles the SAM translator generates from template.yaml
(tests/iam.py), resources resolved against the stack's physical names.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests

from devicehooks.timeutil import rfc3339
from devicehooks_dev.local import callrecorder
from devicehooks_dev.local.process import RunningStack, start_stack, stop_stack
from devicehooks_dev.local.stack import STACK
from tests import iam
from tests.e2e.tenant import INTERNAL, Tenant
from tests.receiver import Answer, Receiver, eventually

pytestmark = pytest.mark.e2e
RETRY_AFTER = 2  # the stack's one retry step: a failing delivery is retried once, soon, then fails

# Managed policies SAM attaches by itself, allowed by design: none is for a call of the code.
MANAGED = {
    # CloudWatch Logs (the runtime writes the functions' output; the code calls no logs API)
    "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole",
    # Tracing: Active, the default (the runtime and the functions' tracers send the traces)
    "arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess",
}
# the SQS event source mapping's own sqs:ReceiveMessage/DeleteMessage/GetQueueAttributes (the
# mapping polls and deletes; the code never does)
SQS_SOURCE = "arn:aws:iam::aws:policy/service-role/AWSLambdaSQSQueueExecutionRole"
# the DynamoDB stream event source mapping's own dynamodb:DescribeStream/GetShardIterator/
# GetRecords/ListStreams (the mapping reads the stream; the code never does)
STREAM_SOURCE = "arn:aws:iam::aws:policy/service-role/AWSLambdaDynamoDBExecutionRole"
# The functions that POST to receivers (the dispatcher; the management API's test deliveries) run in
# the egress VPC when StaticEgressIps is true: Lambda then manages their network interfaces with the
# role (ec2:CreateNetworkInterface, DescribeNetworkInterfaces, DeleteNetworkInterface, Assign/
# UnassignPrivateIpAddresses; the code calls no EC2 API). SAM attaches the policy whenever a
# function has a VpcConfig, and cannot tell that !If [StaticEgress, ..., AWS::NoValue] may be
# nothing (aws/serverless-application-model#3502, closed as a backward-incompatible change), so the
# roles hold it whatever the parameter says: docs/operations.md, "Static egress addresses".
VPC_ACCESS = "arn:aws:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole"
MANAGED_OF = {
    "AuthorizerFunction": MANAGED,
    "ManagementFunction": MANAGED | {VPC_ACCESS},
    "InternalFunction": MANAGED,
    "IntakeFunction": MANAGED | {SQS_SOURCE},
    "DispatcherFunction": MANAGED | {SQS_SOURCE, VPC_ACCESS},
    "HealthCounterFunction": MANAGED | {STREAM_SOURCE},
}

# Granted, not used by this flow, and why ((function, action glob, resource glob) -> reason).
ALLOWANCES: dict[tuple[str, str, str], str] = {}


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningStack, Path]]:
    calls = tmp_path_factory.mktemp("calls")
    stack = start_stack(
        tmp_path_factory.mktemp("iam"),
        # the health counter's batches gathered for a second (not the template's 10): it counts
        # within the flow
        {
            callrecorder.VARIABLE: str(calls),
            "DEVICEHOOKS_RETRY_SCHEDULE": str(RETRY_AFTER),
            "DEVICEHOOKS_LOCAL_STREAM_WINDOW": "1",
        },
    )
    try:
        yield stack, calls
    finally:
        stop_stack(stack)


def _state(tenant: Tenant, event_id: str, integration_id: str) -> str:
    detail = tenant.get(f"/events/{event_id}").json()
    states = [s["state"] for s in detail.get("delivery_statuses", []) if s["integration_id"] == integration_id]
    return states[0] if states else ""


def _drive(stack: RunningStack, receiver: Receiver, info: dict[str, Any]) -> None:
    """The flow (see the module): every function's every kind of call."""
    tenant = Tenant(stack)
    ok = tenant.webhook(receiver.url("/ok"), secret="deadbeef")
    failing = tenant.webhook(receiver.url("/fail"), secret="beefdead")
    # the first delivery proves the webhook (so its failing retries are never held on trial turns),
    # then it fails: the other event's attempt and its one retry, then the redelivery below
    receiver.script("/fail", Answer(status=200), *[Answer(status=500)] * 3)
    start = datetime.now(UTC) - timedelta(seconds=1)

    # device events through the internal API: the bus, the intake, the dispatcher
    tenant.internal("DELETE", "/devices/dev-1")
    response = requests.put(
        f"{stack.url}{INTERNAL}/tenants/{tenant.id}/bulk/devices/status/rejected", json=[{"id": "dev-2"}], timeout=10
    )
    assert response.status_code == 202, response.text
    receiver.wait_for(2, "/ok")
    failed = receiver.wait_for(2, "/fail", timeout=60)[1]
    event_id = json.loads(failed.body)["id"]
    assert eventually(lambda: _state(tenant, event_id, failing) == "failed", timeout=60)

    # the management API: read, change, test, retry now, recover, health
    assert tenant.get("/integrations").status_code == 200
    assert tenant.get(f"/integrations/{ok}").status_code == 200
    assert tenant.get("/events", integration_id=failing).status_code == 200
    assert tenant.get("/events").status_code == 200
    assert tenant.get(f"/integrations/{failing}/health").status_code == 200
    assert tenant.post(f"/events/{event_id}/redeliver").status_code == 202
    receiver.wait_for(4, "/fail")
    # to a webhook made after the event: the event gains a delivery (and its marker item)
    late = tenant.webhook(receiver.url("/late"), secret="feedface")
    again = tenant.post(f"/events/{event_id}/redeliver", {"integration_id": late})
    assert again.status_code == 202, again.text
    receiver.wait_for(1, "/late")
    recover = tenant.post(f"/integrations/{failing}/recover", {"since": rfc3339(start)})
    assert recover.status_code == 202, recover.text
    assert tenant.post(f"/integrations/{ok}/test").status_code == 200
    webhook = {"type": "http", "http": {"url": receiver.url("/ok"), "secret": "cafe"}}
    changed = requests.put(
        f"{stack.url}/api/management/v1/iot-manager/integrations/{ok}/credentials",
        json=webhook,
        headers=tenant.headers,
        timeout=10,
    )
    assert changed.status_code == 204, changed.text
    assert requests.get(f"{stack.url}{INTERNAL}/health", timeout=10).status_code in (200, 204)

    # a malformed message on the dispatch queue: the dispatcher rejects it to its dead-letter queue
    sqs = boto3.client(
        "sqs",
        endpoint_url=info["moto_endpoint"],
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",  # noqa: S106 - moto's
    )
    dispatch_dlq = info["resources"]["DispatchDeadLetterQueue"]["QueueUrl"]
    sqs.send_message(QueueUrl=info["resources"]["DispatchQueue"]["QueueUrl"], MessageBody="not an event")
    assert eventually(lambda: sqs.receive_message(QueueUrl=dispatch_dlq, WaitTimeSeconds=1).get("Messages"))

    # deletion: a webhook, then the whole tenant
    deleted = requests.delete(
        f"{stack.url}/api/management/v1/iot-manager/integrations/{ok}", headers=tenant.headers, timeout=10
    )
    assert deleted.status_code == 204, deleted.text
    gone = requests.delete(f"{stack.url}{INTERNAL}/tenants/{tenant.id}", timeout=10)
    assert gone.status_code in (202, 204), gone.text
    time.sleep(RETRY_AFTER + 3)  # the retries queued by retry now and recover run


def test_every_call_is_allowed_and_every_grant_is_used(recorded: tuple[RunningStack, Path], receiver: Receiver) -> None:
    stack, directory = recorded
    info = requests.get(f"{stack.url}/local/info", timeout=10).json()
    physical = info["resources"]
    _drive(stack, receiver, info)
    calls = callrecorder.read(directory)
    roles = iam.roles()
    resolve = iam.resolver(physical)
    grants = {name: iam.grants(role, resolve) for name, role in roles.items()}
    names = {f"{STACK}-{name}": name for name in roles}
    assert {c["function"] for c in calls} >= {f"{STACK}-{n}" for n in roles if n != "AuthorizerFunction"}

    verdict = iam.check(grants, calls, physical, names, ALLOWANCES)
    used = sorted({f"{names.get(c['function'])}: {iam.action_of(c)}" for c in calls})
    assert not verdict.missing, "\n".join(["calls no role allows:", *verdict.missing, "calls made:", *used])
    assert not verdict.unused, "\n".join(["grants never used:", *verdict.unused, "calls made:", *used])
    assert {name: set(role.managed) for name, role in roles.items()} == MANAGED_OF
