"""The IAM check of tests/e2e/test_iam.py, on its own: the SAM expansion of template.yaml, the
mapping of recorded calls to IAM actions and resources, and that the check fails on a permission
missing from a copy of the template and on one granted and never used."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from devicehooks_dev.local import callrecorder
from devicehooks_dev.local.stack import STACK
from devicehooks_dev.local.template import load_template
from tests import iam

KEY = "arn:aws:kms:us-east-1:123456789012:key/k-1"
PHYSICAL: dict[str, dict[str, Any]] = {
    "IntegrationsTable": {
        "TableName": f"{STACK}-IntegrationsTable",
        "Arn": "arn:aws:dynamodb:us-east-1:123456789012:table/i",
    },
    "ActivityLogTable": {
        "TableName": f"{STACK}-ActivityLogTable",
        "Arn": "arn:aws:dynamodb:us-east-1:123456789012:table/a",
    },
    "RetryQueue": {
        "QueueUrl": "http://moto/123456789012/retry",
        "QueueName": "retry",
        "Arn": "arn:aws:sqs:us-east-1:123456789012:retry",
    },
    "SecretsKey": {"KeyId": "k-1", "Arn": KEY},
}
PHYSICAL["IntegrationsTable"]["Arn"] = (
    "arn:aws:dynamodb:us-east-1:123456789012:table/" + PHYSICAL["IntegrationsTable"]["TableName"]
)
PHYSICAL["ActivityLogTable"]["Arn"] = (
    "arn:aws:dynamodb:us-east-1:123456789012:table/" + PHYSICAL["ActivityLogTable"]["TableName"]
)


def call(operation: str, service: str, **params: Any) -> dict[str, Any]:
    return {
        "function": "ManagementFunction",
        "service": service,
        "operation": operation,
        "resources": callrecorder.resources(service, params),
    }


TABLE = PHYSICAL["IntegrationsTable"]["TableName"]
ACTIVITY = PHYSICAL["ActivityLogTable"]["TableName"]
# every (action, resource) the management role grants, used once
MANAGEMENT_CALLS = [
    call("SendMessageBatch", "sqs", QueueUrl=PHYSICAL["RetryQueue"]["QueueUrl"], Entries=[]),
    call(
        "TransactWriteItems",
        "dynamodb",
        TransactItems=[
            {"Put": {"TableName": TABLE}},
            {"Update": {"TableName": TABLE}},
            {"Delete": {"TableName": TABLE}},
        ],
    ),
    *[call(op, "dynamodb", TableName=TABLE) for op in ("GetItem", "Query")],
    *[call(op, "dynamodb", TableName=ACTIVITY) for op in ("GetItem", "PutItem", "UpdateItem", "Query")],
    call("BatchGetItem", "dynamodb", RequestItems={ACTIVITY: {}}),
    call("BatchWriteItem", "dynamodb", RequestItems={ACTIVITY: []}),  # a redelivery's added marker
    call("Query", "dynamodb", TableName=ACTIVITY, IndexName="by_time"),
    call("Encrypt", "kms", KeyId=KEY),
    call("Decrypt", "kms", KeyId="k-1"),
]


def _management(template: dict[str, Any]) -> iam.Verdict:
    role = iam.roles(template)["ManagementFunction"]
    grants = {"ManagementFunction": iam.grants(role, iam.resolver(PHYSICAL, template))}
    return iam.check(grants, MANAGEMENT_CALLS, PHYSICAL, {})


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template(iam.ROOT / "template.yaml")


def test_the_template_as_is_allows_exactly_these_calls(template: dict[str, Any]) -> None:
    verdict = _management(template)
    assert verdict.ok, verdict


def _statements(template: dict[str, Any]) -> list[dict[str, Any]]:
    policies = template["Resources"]["ManagementFunction"]["Properties"]["Policies"]
    return [s for p in policies if "Statement" in p for s in p["Statement"]]


def test_a_permission_removed_from_a_copy_of_the_template_is_missing(template: dict[str, Any]) -> None:
    broken = copy.deepcopy(template)
    statements = _statements(broken)
    seal = next(s for s in statements if s.get("Sid") == "SealWebhookSecrets")
    statements.remove(seal)
    broken["Resources"]["ManagementFunction"]["Properties"]["Policies"] = [{"Statement": statements}] + [
        p for p in broken["Resources"]["ManagementFunction"]["Properties"]["Policies"] if "Statement" not in p
    ]
    verdict = _management(broken)
    assert verdict.missing == [f"ManagementFunction: kms:Encrypt on {KEY} is not allowed"]
    assert not verdict.unused


def test_a_permission_added_to_a_copy_of_the_template_is_unused(template: dict[str, Any]) -> None:
    extra = copy.deepcopy(template)
    extra["Resources"]["ManagementFunction"]["Properties"]["Policies"].append(
        {"DynamoDBCrudPolicy": {"TableName": {"Ref": "IntegrationsTable"}}}
    )
    verdict = _management(extra)
    assert not verdict.missing
    assert (
        f"ManagementFunction: dynamodb:Scan on {PHYSICAL['IntegrationsTable']['Arn']} is granted but never used"
        in verdict.unused
    )
    allowed = iam.check(
        {"ManagementFunction": iam.grants(iam.roles(extra)["ManagementFunction"], iam.resolver(PHYSICAL, extra))},
        MANAGEMENT_CALLS,
        PHYSICAL,
        {},
        {("ManagementFunction", "dynamodb:*", f"{PHYSICAL['IntegrationsTable']['Arn']}*"): "a reason"},
    )
    assert allowed.ok


def test_calls_map_to_iam_actions_and_arns() -> None:
    batch = call("DeleteMessageBatch", "sqs", QueueUrl="http://moto/123456789012/q")
    assert iam.needs(batch, {}) == [("sqs:DeleteMessage", "arn:aws:sqs:us-east-1:123456789012:q")]
    put = call("PutEvents", "events", Entries=[{"EventBusName": "bus"}, {"EventBusName": "bus"}])
    assert iam.needs(put, {}) == [("events:PutEvents", "arn:aws:events:us-east-1:123456789012:event-bus/bus")]
    query = call("Query", "dynamodb", TableName="t", IndexName="by_state")
    assert iam.needs(query, {}) == [
        ("dynamodb:Query", "arn:aws:dynamodb:us-east-1:123456789012:table/t/index/by_state")
    ]
    assert iam.needs(call("Decrypt", "kms", KeyId="k-1"), PHYSICAL) == [("kms:Decrypt", KEY)]


def test_the_recorder_appends_each_call_of_a_new_botocore_session(tmp_path: Any) -> None:
    import botocore.handlers
    import botocore.session
    from botocore.stub import Stubber

    before = list(botocore.handlers.BUILTIN_HANDLERS)
    try:
        callrecorder.install(tmp_path, "f")
        client = botocore.session.get_session().create_client(
            "sqs",
            region_name="us-east-1",
            aws_access_key_id="x",
            aws_secret_access_key="y",  # noqa: S106
        )
        with Stubber(client) as stub:
            stub.add_response("send_message", {"MessageId": "1"}, {"QueueUrl": "http://q/1/a", "MessageBody": "b"})
            client.send_message(QueueUrl="http://q/1/a", MessageBody="b")
    finally:
        botocore.handlers.BUILTIN_HANDLERS[:] = before
    assert callrecorder.read(tmp_path) == [
        {"function": "f", "service": "sqs", "operation": "SendMessage", "resources": [{"QueueUrl": "http://q/1/a"}]}
    ]
