"""moto's DynamoDB and the local stack's fixes to it (devicehooks_dev.local.motofixes).

``dynamodb-lock``: moto answers DynamoDB requests on several threads with no lock, so a write made
while moto is inside another request breaks it; the tests hold moto's thread at the racy point
while the other request runs. ``dynamodb-item-size``: moto sums an item's size at every
attribute; counted, and the 400 KB limit checked on moto's server in its child process, as
``devicehooks local`` starts it. ``dynamodbstreams-records``: moto answers ``GetRecords`` through
its model-driven serializer, value by value; counted, and the fixed answer compared byte for byte
(as JSON) with moto's own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from devicehooks_dev.local import motofixes, motoserver
from tests.conftest import moto_client
from tests.integration.mototools import (
    HELD_BACK,
    RUNS_AT_ONCE,
    Pause,
    counting,
    moto_in_process,
    paused,
    pinned,
    still_needed,
)

TABLE = "items"


def create_table(client: Any) -> None:
    client.create_table(
        TableName=TABLE,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )


def read(client: Any, key: str) -> dict[str, Any] | None:
    item: dict[str, Any] | None = client.get_item(TableName=TABLE, Key={"pk": {"S": key}}, ConsistentRead=True).get(
        "Item"
    )
    return item


# --- dynamodb-lock --------------------------------------------------------------------------


def conditional_puts(url: str, wait: float) -> tuple[dict[str, str], str]:
    """Two puts of one item, each on condition that it does not exist, the second made while moto
    holds the first between reading the item and checking the condition: how each was answered,
    and whose item is stored."""
    from moto.dynamodb.models.dynamo_type import Item

    first, second = moto_client("dynamodb", url), moto_client("dynamodb", url)
    create_table(first)
    outcomes: dict[str, str] = {}

    def put(client: Any, who: str) -> None:
        try:
            client.put_item(
                TableName=TABLE,
                Item={"pk": {"S": "event-1"}, "by": {"S": who}},
                ConditionExpression="attribute_not_exists(pk)",
            )
            outcomes[who] = "stored"
        except ClientError as error:
            outcomes[who] = error.response["Error"]["Code"]

    pause = Pause(lambda: put(second, "second"), wait)
    with paused(Item, "__init__", pause):  # Table.put_item builds the item after reading the current one
        put(first, "first")
    pause.join()
    stored = read(first, "event-1")
    assert stored is not None
    return outcomes, stored["by"]["S"]


def test_moto_lets_two_conditional_puts_of_one_item_both_succeed() -> None:
    with motofixes.using(), moto_in_process() as url:
        outcomes, _ = conditional_puts(url, RUNS_AT_ONCE)
    still_needed("dynamodb-lock", outcomes == {"first": "stored", "second": "stored"}, f"answers: {outcomes}")


@pinned
def test_with_the_lock_the_second_conditional_put_of_an_item_fails() -> None:
    with motofixes.using("dynamodb-lock"), moto_in_process() as url:
        outcomes, writer = conditional_puts(url, HELD_BACK)
    assert outcomes == {"first": "stored", "second": "ConditionalCheckFailedException"}
    assert writer == "first"


def put_during_a_cancelled_transaction(url: str, wait: float) -> tuple[bool, bool]:
    """A put of another item made while moto runs a transaction, after it copied the table for a
    rollback; the transaction is then cancelled (a condition check fails): whether the put was
    answered, and whether its item is stored."""
    from moto.dynamodb.models import DynamoDBBackend

    first, second = moto_client("dynamodb", url), moto_client("dynamodb", url)
    create_table(first)
    answered: list[bool] = []

    def put() -> None:
        second.put_item(TableName=TABLE, Item={"pk": {"S": "other"}})
        answered.append(True)

    pause = Pause(put, wait)
    # transact_write_items copies each table it writes to, then reads each item it writes
    with paused(DynamoDBBackend, "get_item", pause), pytest.raises(ClientError) as cancelled:
        first.transact_write_items(
            TransactItems=[
                {"Put": {"TableName": TABLE, "Item": {"pk": {"S": "new"}}}},
                {
                    "ConditionCheck": {
                        "TableName": TABLE,
                        "Key": {"pk": {"S": "absent"}},
                        "ConditionExpression": "attribute_exists(pk)",
                    }
                },
            ]
        )
    assert cancelled.value.response["Error"]["Code"] == "TransactionCanceledException"
    pause.join()
    assert read(first, "new") is None  # the transaction wrote nothing
    return answered == [True], read(first, "other") is not None


def test_moto_loses_a_write_made_during_a_transaction_it_cancels() -> None:
    with motofixes.using(), moto_in_process() as url:
        answered, stored = put_during_a_cancelled_transaction(url, RUNS_AT_ONCE)
    assert answered
    still_needed("dynamodb-lock", not stored, "a put answered during a cancelled transaction was kept")


@pinned
def test_with_the_lock_a_write_made_during_a_cancelled_transaction_is_kept() -> None:
    with motofixes.using("dynamodb-lock"), moto_in_process() as url:
        answered, stored = put_during_a_cancelled_transaction(url, HELD_BACK)
    assert answered and stored


# --- dynamodb-item-size ---------------------------------------------------------------------


def size_sums_per_attribute(attributes: int) -> float:
    """Attribute sizes moto computes to build an item of ``attributes`` attributes, per attribute."""
    from moto.dynamodb.models.dynamo_type import DynamoType, Item

    attrs = {"pk": {"S": "event-1"}} | {f"a{n}": {"S": "x"} for n in range(attributes - 1)}
    with counting(DynamoType, "size") as sizes:
        Item(DynamoType(attrs["pk"]), None, attrs)
    return sizes.calls / attributes


def test_moto_sums_an_items_size_at_every_attribute() -> None:
    with motofixes.using():
        per_attribute = [size_sums_per_attribute(n) for n in (20, 40)]
    still_needed(
        "dynamodb-item-size",
        per_attribute[1] > per_attribute[0],
        f"sizes computed per attribute for 20 and 40 attributes: {per_attribute}",
    )


@pinned
def test_with_the_fix_an_items_size_is_summed_once() -> None:
    with motofixes.using("dynamodb-item-size"):
        assert [size_sums_per_attribute(n) for n in (20, 40)] == [1, 1]


def built(attrs: dict[str, Any]) -> object:
    """The item moto builds of ``attrs`` (as JSON), or the error it raises."""
    from moto.dynamodb.exceptions import ItemSizeTooLarge
    from moto.dynamodb.models.dynamo_type import DynamoType, Item

    try:
        return Item(DynamoType(attrs["pk"]), None, attrs).to_json()
    except ItemSizeTooLarge as error:
        return f"{type(error).__name__}: {error}"


@pinned
def test_with_the_fix_items_are_built_or_refused_as_moto_does() -> None:
    limit = motofixes.ITEM_SIZE_LIMIT
    deliveries = {f"webhook-{n}": {"M": {"state": {"S": "pending"}, "attempts": {"N": str(n)}}} for n in range(20)}
    items = [
        {"pk": {"S": "event-1"}, "deliveries": {"M": deliveries}, "tags": {"SS": ["a", "b"]}, "n": {"N": "1.5"}},
        {"pk": {"S": "x" * (limit - len("pk"))}},  # exactly at moto's limit
        {"pk": {"S": "x" * (limit - len("pk") + 1)}},  # one byte over
        {"pk": {"S": "event-2"}} | {f"a{n}": {"S": "x" * 100_000} for n in range(5)},
    ]
    with motofixes.using():
        as_moto = [built(item) for item in items]
    with motofixes.using("dynamodb-item-size"):
        assert [built(item) for item in items] == as_moto
    assert [isinstance(answer, str) for answer in as_moto] == [False, False, True, True]


@pytest.fixture
def table() -> Iterator[tuple[Any, str]]:
    process, url = motoserver.start()
    client = moto_client("dynamodb", url)
    create_table(client)
    try:
        yield client, TABLE
    finally:
        motoserver.stop(process)


def test_an_item_of_many_attributes_within_the_limit_is_stored_whole(table: tuple[Any, str]) -> None:
    client, name = table
    deliveries = {f"webhook-{n}": {"M": {"state": {"S": "pending"}, "attempts": {"N": str(n)}}} for n in range(50)}
    item = {"pk": {"S": "event-1"}, "deliveries": {"M": deliveries}} | {f"a{n}": {"S": "x" * 1000} for n in range(300)}
    client.put_item(TableName=name, Item=item)
    assert client.get_item(TableName=name, Key={"pk": {"S": "event-1"}}, ConsistentRead=True)["Item"] == item


def test_an_item_over_400_kb_is_refused(table: tuple[Any, str]) -> None:
    client, name = table
    item = {"pk": {"S": "event-2"}} | {f"a{n}": {"S": "x" * 100_000} for n in range(5)}
    with pytest.raises(ClientError) as refused:
        client.put_item(TableName=name, Item=item)
    assert refused.value.response["Error"]["Code"] == "ValidationException"
    assert "Item size has exceeded the maximum allowed size" in refused.value.response["Error"]["Message"]
    assert "Item" not in client.get_item(TableName=name, Key={"pk": {"S": "event-2"}}, ConsistentRead=True)


# --- dynamodbstreams-records ----------------------------------------------------------------

STREAM_ITEM = {
    "pk": {"S": "event-1"},
    "n": {"N": "1.5"},
    "b": {"B": b"\x00\x01"},
    "m": {"M": {"x": {"L": [{"S": "y"}, {"NULL": True}, {"BOOL": False}, {"B": b"zz"}]}}},
    "ss": {"SS": ["a", "b"]},
    "ns": {"NS": ["1", "2"]},
    "bs": {"BS": [b"1"]},
}


def streamed(url: str, attributes: int = 0) -> Callable[[], tuple[dict[str, Any], int]]:
    """A table whose stream holds a put, an update and a delete of an item of every type (and
    ``attributes`` more); reading it returns ``GetRecords``' answer (its JSON, less the iterator) and
    how many values moto's serializer wrote for it."""
    import json
    import urllib.request

    from moto.core.serialize import ResponseSerializer

    dynamodb, streams = moto_client("dynamodb", url), moto_client("dynamodbstreams", url)
    table = f"streamed-{attributes}"
    arn = dynamodb.create_table(
        TableName=table,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    )["TableDescription"]["LatestStreamArn"]
    dynamodb.put_item(TableName=table, Item=STREAM_ITEM | {f"a{n}": {"S": "x"} for n in range(attributes)})
    dynamodb.update_item(
        TableName=table,
        Key={"pk": STREAM_ITEM["pk"]},
        UpdateExpression="SET n = n + :one",
        ExpressionAttributeValues={":one": {"N": "1"}},
    )
    dynamodb.delete_item(TableName=table, Key={"pk": STREAM_ITEM["pk"]})
    (shard,) = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]

    def read() -> tuple[dict[str, Any], int]:
        iterator = streams.get_shard_iterator(
            StreamArn=arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        request = urllib.request.Request(  # the raw answer: botocore would parse differences away
            url,
            data=json.dumps({"ShardIterator": iterator}).encode(),
            headers={
                "X-Amz-Target": "DynamoDBStreams_20120810.GetRecords",
                "Content-Type": "application/x-amz-json-1.0",
                "Authorization": "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/dynamodb/aws4_request, "
                "SignedHeaders=host, Signature=x",
            },
        )
        with counting(ResponseSerializer, "_serialize") as serialized:
            with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310 - moto's, on loopback
                body = json.loads(answer.read())
        body.pop("NextShardIterator")
        return body, serialized.calls

    return read


def test_moto_serializes_a_streams_records_value_by_value() -> None:
    with motofixes.using(), moto_in_process() as url:
        per_record = [streamed(url, n)()[1] / 3 for n in (0, 40)]
    still_needed(
        "dynamodbstreams-records",
        per_record[1] > per_record[0] + 40,
        f"values serialized per record for 0 and 40 more attributes: {per_record}",
    )


@pinned
def test_with_the_fix_a_streams_records_are_answered_as_moto_answers_them_without_the_serializer() -> None:
    with moto_in_process() as url:
        read = streamed(url)
        with motofixes.using():
            as_moto, _ = read()
        with motofixes.using("dynamodbstreams-records"):
            fixed, serialized = read()
    assert [r["eventName"] for r in fixed["Records"]] == ["INSERT", "MODIFY", "REMOVE"]
    assert fixed == as_moto  # the binary values in base64, the time in epoch seconds, as moto's
    assert serialized == 0
