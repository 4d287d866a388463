"""The management and authorizer functions against moto's server, tables built from template.yaml."""

from __future__ import annotations

import copy
import json
import urllib.parse
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from devicehooks import aws
from devicehooks.domain.activity import ActivityEvent, DeliveryStatus
from devicehooks.domain.eventids import new_event_id
from devicehooks.domain.events import WebhookEvent
from devicehooks.store.activity import INDEX_KEYS, DynamoActivityStore
from devicehooks_dev import devkeys
from devicehooks_dev.local.stack import LocalStack
from tests.conftest import load_event

BASE = "/api/management/v1/iot-manager"


def _call(
    stack: LocalStack, method: str, path: str, body: Any = None, tenant: str = "tenant-1", query: str = ""
) -> dict[str, Any]:
    """Authorizer, then management function, as API Gateway chains them."""
    event = copy.deepcopy(load_event("management-list-integrations.json"))
    del event["requestContext"]["authorizer"]
    event["rawPath"] = path
    event["requestContext"]["http"].update(method=method, path=path)
    event["headers"] = {"authorization": f"Bearer {devkeys.mint_token(tenant)}"}
    if body is not None:
        event["body"] = json.dumps(body)
    if query:
        event["rawQueryString"] = query
        event["queryStringParameters"] = dict(urllib.parse.parse_qsl(query))  # decoded, as API Gateway does
    request = {k: v for k, v in event.items() if k != "body"}
    request.update(type="REQUEST", identitySource=[])
    verdict = stack.functions["AuthorizerFunction"].invoke(request)
    assert verdict["isAuthorized"] is True
    event["requestContext"]["authorizer"] = {"lambda": verdict["context"]}
    result: dict[str, Any] = stack.functions["ManagementFunction"].invoke(event)
    return result


def _webhook(url: str = "http://127.0.0.1:9999/hook", secret: str | None = "00ff10") -> dict[str, Any]:
    http: dict[str, Any] = {"url": url}
    if secret is not None:
        http["secret"] = secret
    return {"provider": "webhook", "credentials": {"type": "http", "http": http}}


def _raw_item(stack: LocalStack, tenant: str, integration_id: str) -> dict[str, Any]:
    table = stack.physical["IntegrationsTable"]["TableName"]
    item = aws.client("dynamodb").get_item(
        TableName=table, Key={"tenant_key": {"S": f"T#{tenant}"}, "integration_id": {"S": integration_id}}
    )
    return dict(item["Item"])


def test_tables_and_indexes_are_created_from_the_template(stack: LocalStack) -> None:
    ddb = aws.client("dynamodb")
    activity = ddb.describe_table(TableName=stack.physical["ActivityLogTable"]["TableName"])["Table"]
    assert [k["AttributeName"] for k in activity["KeySchema"]] == ["pk", "sk"]
    indexes = {i["IndexName"]: i for i in activity["GlobalSecondaryIndexes"]}
    assert sorted(indexes) == ["by_device", "by_state", "by_webhook"]  # by time: the table's own order
    assert {n: i["Projection"]["ProjectionType"] for n, i in indexes.items()} == {
        "by_webhook": "KEYS_ONLY",
        "by_device": "KEYS_ONLY",
        "by_state": "INCLUDE",  # the delivery's webhook (gsi2pk), for a webhook's deliveries by state
    }
    # the store queries each index by the key attributes it names: those the template gives it
    keys = {n: tuple(k["AttributeName"] for k in i["KeySchema"]) for n, i in indexes.items()}
    assert keys == INDEX_KEYS
    ttl = ddb.describe_time_to_live(TableName=stack.physical["ActivityLogTable"]["TableName"])
    assert ttl["TimeToLiveDescription"]["AttributeName"] == "expire_ts"
    attrs = aws.client("sqs").get_queue_attributes(
        QueueUrl=stack.physical["DispatchQueue"]["QueueUrl"],
        AttributeNames=["RedrivePolicy", "VisibilityTimeout"],
    )["Attributes"]
    assert json.loads(attrs["RedrivePolicy"])["deadLetterTargetArn"] == stack.physical["DispatchDeadLetterQueue"]["Arn"]
    assert attrs["VisibilityTimeout"] == "360"


def test_create_list_get_replace_delete_round_trip_on_dynamodb(stack: LocalStack) -> None:
    tenant = f"tenant-{uuid.uuid4()}"
    created = _call(stack, "POST", f"{BASE}/integrations", _webhook(), tenant)
    assert created["statusCode"] == 201, created
    integration_id = created["headers"]["Location"].rsplit("/", 1)[1]

    listed = _call(stack, "GET", f"{BASE}/integrations", tenant=tenant)
    assert json.loads(listed["body"]) == [
        {
            "id": integration_id,
            "provider": "webhook",
            "credentials": {
                "type": "http",
                "http": {"url": "http://127.0.0.1:9999/hook", "secret": "<omitted>"},
            },
            "enabled": True,
        }
    ]
    replaced = _call(
        stack,
        "PUT",
        f"{BASE}/integrations/{integration_id}/credentials",
        {"type": "http", "http": {"url": "http://127.0.0.1:9998/other", "secret": ""}},
        tenant,
    )
    assert replaced["statusCode"] == 204
    got = json.loads(_call(stack, "GET", f"{BASE}/integrations/{integration_id}", tenant=tenant)["body"])
    assert got["credentials"]["http"] == {"url": "http://127.0.0.1:9998/other", "secret": "<omitted>"}
    assert _call(stack, "DELETE", f"{BASE}/integrations/{integration_id}", tenant=tenant)["statusCode"] == 204
    assert _call(stack, "GET", f"{BASE}/integrations/{integration_id}", tenant=tenant)["statusCode"] == 404


def test_secrets_are_stored_encrypted_with_kms_bound_to_their_integration(stack: LocalStack) -> None:
    tenant = f"tenant-{uuid.uuid4()}"
    secret = "c0ffee" * 4
    created = _call(stack, "POST", f"{BASE}/integrations", _webhook(secret=secret), tenant)
    integration_id = created["headers"]["Location"].rsplit("/", 1)[1]
    item = _raw_item(stack, tenant, integration_id)
    stored = json.dumps(item, default=str)
    assert secret not in stored and bytes.fromhex(secret).hex() not in stored
    ciphertext = item["secret_ct"]["B"]
    assert bytes.fromhex(secret) not in ciphertext
    kms = aws.client("kms")
    context = {"service": "devicehooks", "tenant_id": tenant, "integration_id": integration_id}
    assert kms.decrypt(CiphertextBlob=ciphertext, EncryptionContext=context)["Plaintext"] == bytes.fromhex(secret)
    with pytest.raises(kms.exceptions.InvalidCiphertextException):
        kms.decrypt(CiphertextBlob=ciphertext, EncryptionContext={**context, "tenant_id": "someone-else"})


def test_the_webhook_limit_holds_on_dynamodb(stack: LocalStack) -> None:
    tenant = f"tenant-{uuid.uuid4()}"
    statuses = [_call(stack, "POST", f"{BASE}/integrations", _webhook(), tenant)["statusCode"] for _ in range(21)]
    assert statuses == [201] * 20 + [409]
    listed = json.loads(_call(stack, "GET", f"{BASE}/integrations", tenant=tenant)["body"])
    assert len(listed) == 20
    first = listed[0]["id"]
    assert _call(stack, "DELETE", f"{BASE}/integrations/{first}", tenant=tenant)["statusCode"] == 204
    assert _call(stack, "POST", f"{BASE}/integrations", _webhook(), tenant)["statusCode"] == 201


def test_tenants_are_isolated_on_dynamodb(stack: LocalStack) -> None:
    mine, theirs = f"tenant-{uuid.uuid4()}", f"tenant-{uuid.uuid4()}"
    created = _call(stack, "POST", f"{BASE}/integrations", _webhook(), theirs)
    their_id = created["headers"]["Location"].rsplit("/", 1)[1]
    assert json.loads(_call(stack, "GET", f"{BASE}/integrations", tenant=mine)["body"]) == []
    for method in ("GET", "DELETE"):
        assert _call(stack, method, f"{BASE}/integrations/{their_id}", tenant=mine)["statusCode"] == 404
    assert _call(stack, "GET", f"{BASE}/integrations/{their_id}", tenant=theirs)["statusCode"] == 200


def test_events_list_reads_the_activity_table(stack: LocalStack) -> None:
    response = _call(stack, "GET", f"{BASE}/events", tenant=f"tenant-{uuid.uuid4()}", query="page=1")
    assert (response["statusCode"], response["body"]) == (200, "[]")


def test_a_device_filter_lists_its_tenants_events_whatever_the_ids_hold(stack: LocalStack) -> None:
    # unescaped, tenant <t> with device d#V#e and tenant <t>#V#d with device e shared one partition
    # of the by_device index: the first page answered [] and the next one the event
    acme = f"acme-{uuid.uuid4().hex[:8]}"
    store = DynamoActivityStore(stack.physical["ActivityLogTable"]["TableName"], aws.client("dynamodb"))
    now = datetime.now(UTC)
    ids: dict[str, list[str]] = {acme: [], f"{acme}#V#d": []}
    for n in range(3):
        for k, (tenant, device) in enumerate(zip(ids, ["d#V#e", "e"], strict=True)):
            sent = WebhookEvent(
                id=new_event_id(now - timedelta(minutes=10 - 2 * n - k), "device-provisioned"),
                tenant_id=tenant,
                type="device-provisioned",
                data={"id": device},  # type: ignore[arg-type]
                time=now - timedelta(minutes=10 - 2 * n - k),
            )
            assert store.create(ActivityEvent.new(sent, int(now.timestamp()) + 3600, [DeliveryStatus("h#1")])) is None
            ids[tenant].insert(0, sent.id)  # newest first
    for tenant, device in zip(ids, ["d%23V%23e", "e"], strict=True):
        pages = [
            _call(stack, "GET", f"{BASE}/events", tenant=tenant, query=f"device_id={device}&page={p}&per_page=1")
            for p in (1, 2, 3, 4)
        ]
        assert [r["statusCode"] for r in pages] == [200] * 4
        assert [[e["id"] for e in json.loads(r["body"])] for r in pages] == [[i] for i in ids[tenant]] + [[]]


def test_a_token_from_another_key_is_refused_by_the_real_authorizer(stack: LocalStack) -> None:
    import jwt
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    forged = jwt.encode(
        {"sub": "u", "exp": 9999999999, "mender.user": True, "mender.tenant": "t"},
        Ed25519PrivateKey.generate(),
        algorithm="EdDSA",
    )
    request = copy.deepcopy(load_event("authorizer-request.json"))
    request["headers"]["authorization"] = f"Bearer {forged}"
    verdict = stack.functions["AuthorizerFunction"].invoke(request)
    assert verdict["context"] == {
        "verified": False,
        "status": 401,
        "error": "identity: invalid token signature",
    }
    sample = stack.functions["AuthorizerFunction"].invoke(load_event("authorizer-request.json"))
    assert sample["context"]["verified"] is False
