"""The local stack's moto server keeps DynamoDB's item size limit with its faster item building
(devicehooks_dev.local.motofixes sums an item's size once, where moto 5.2.5 summed it again at
every attribute): an item within 400 KB is stored whole, one over it is refused as DynamoDB does.

moto's server in its child process, as ``devicehooks local`` starts it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from devicehooks_dev.local import motoserver
from tests.conftest import moto_client


@pytest.fixture
def table() -> Iterator[tuple[Any, str]]:
    process, url = motoserver.start()
    client = moto_client("dynamodb", url)
    client.create_table(
        TableName="items",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    try:
        yield client, "items"
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
