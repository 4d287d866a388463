"""The local stack's SQS fair queues (devicehooks_dev.local.fairqueue) and moto's turns by partition
(devicehooks_dev.local.motofixes.PartitionTurns), on moto's backends in this process.

A fair queue (AWS: "How Amazon SQS fair queues work") hands out a quiet tenant's messages before a
noisy one's: a tenant holding more than 10 % of the messages in flight and at least 30 of them, or
more than 10 % of the recent processing time; several noisy ones, the fewest in flight first. moto
hands a standard queue's messages out oldest first, whatever their group: the first test fails,
saying so, once moto does it itself.
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

from devicehooks_dev.local import fairqueue
from devicehooks_dev.local.motofixes import PartitionTurns
from tests.integration.mototools import still_needed
from tests.integration.test_moto_sqs import backend
from tests.receiver import eventually

WAIT = 10.0


def queue_with(in_flight: dict[str, int], visible: list[str]) -> Any:
    """A backend whose queue "q" has ``in_flight`` messages received per group, then ``visible``
    messages waiting, oldest first, each of the group named (its body: ``<group>-<n>``)."""
    fairqueue.apply()
    sqs = backend()
    sqs.create_queue("q", VisibilityTimeout="300")
    for group, count in in_flight.items():
        for n in range(count):
            sqs.send_message("q", f"{group}-busy-{n}", group_id=group)
    received = 0
    while received < sum(in_flight.values()):
        received += len(sqs.receive_message("q", 10, 0, 300))
    for n, group in enumerate(visible):
        sqs.send_message("q", f"{group}-{n}", group_id=group)
    return sqs


def groups_received(sqs: Any, count: int) -> list[str]:
    return [m.body.split("-", 1)[0] for m in sqs.receive_message("q", count, 0, 300)]


def test_moto_hands_a_standard_queues_messages_out_oldest_first_whatever_their_group() -> None:
    sqs = queue_with({"S": 40}, ["S"] * 5 + ["B"] * 3)
    with fairqueue.off():
        first = groups_received(sqs, 3)
    still_needed("fairqueue", first == ["S"] * 3, f"moto handed out {first} first")


def test_a_quiet_tenants_messages_come_before_a_noisy_tenants_older_ones() -> None:
    sqs = queue_with({"S": 40}, ["S"] * 5 + ["B"] * 3 + ["S"] * 2)
    assert groups_received(sqs, 4) == ["B", "B", "B", "S"]  # the quiet tenant's three, then S's oldest


def test_without_a_noisy_tenant_messages_go_oldest_first() -> None:
    sqs = queue_with({}, ["S"] * 5 + ["B"] * 3)
    assert groups_received(sqs, 8) == ["S"] * 5 + ["B"] * 3


def test_a_tenant_alone_gets_every_receive() -> None:
    sqs = queue_with({"S": 40}, ["S"] * 12)
    assert groups_received(sqs, 10) == ["S"] * 10  # noisy, but no one else waits: nothing held back


def test_of_two_noisy_tenants_the_one_with_fewer_in_flight_comes_first() -> None:
    sqs = queue_with({"S": 40, "T": 30}, ["S"] * 3 + ["T"] * 3)
    assert groups_received(sqs, 6) == ["T"] * 3 + ["S"] * 3


def test_few_messages_in_flight_make_no_one_noisy_by_count() -> None:
    usage = fairqueue.Usage()
    in_flight = Counter({"g:S": 29, "g:B": 1})
    assert fairqueue.noisy(in_flight, {}) == set()  # 29: under the 30 a noisy tenant holds at least
    assert fairqueue.noisy(Counter({"g:S": 30, "g:B": 1}), {}) == {"g:S"}
    # processing time: a tenant in flight for a while holds its share of it, decaying once it is not
    assert usage.shares(in_flight, 100.0) == {}
    shares = usage.shares(in_flight, 101.0)
    assert shares["g:S"] > 0.9 and shares["g:B"] < 0.1
    assert fairqueue.noisy(Counter(), shares) == {"g:S"}


def test_waiting_requests_take_turns_by_partition() -> None:
    """Requests to partition A queue up before one to B: B goes second, not last."""
    turns = PartitionTurns()
    order: list[str] = []
    turns.acquire("first")

    def request(partition: str, label: str) -> None:
        with turns.hold(partition):
            order.append(label)

    threads = []
    for waiting, (label, partition) in enumerate((("a1", "A"), ("a2", "A"), ("a3", "A"), ("b1", "B")), 1):
        thread = threading.Thread(target=request, args=(partition, label))
        threads.append(thread)
        thread.start()
        # each one waiting before the next comes: the arrival order is the one written here
        assert eventually(lambda n=waiting: len(_waiters(turns)) == n, timeout=WAIT)
    turns.release()
    for thread in threads:
        thread.join(WAIT)
    assert order == ["a1", "b1", "a2", "a3"]  # B's one request takes the second turn, A's the rest


def _waiters(turns: PartitionTurns) -> list[object]:
    return [waiter for queue in turns._waiting.values() for waiter in queue]  # noqa: SLF001


def test_a_dynamodb_request_is_in_the_turn_of_its_table_and_partition() -> None:
    from moto.dynamodb.models import DynamoDBBackend

    from devicehooks_dev.local.motofixes import partition_of

    dynamodb = DynamoDBBackend("us-east-1", "123456789012")
    dynamodb.create_table(
        "t",
        schema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        throughput=None,
        attr=[{"AttributeName": "pk", "AttributeType": "S"}, {"AttributeName": "sk", "AttributeType": "S"}],
        global_indexes=None,
        indexes=None,
        streams=None,
        billing_mode="PAY_PER_REQUEST",
        sse_specification=None,
        tags=[],
        deletion_protection_enabled=False,
        warm_throughput=None,
    )

    class Handler:
        def __init__(self, params: dict[str, Any]) -> None:
            self.params = params
            self.dynamodb_backend = dynamodb

    put = partition_of(Handler({"TableName": "t", "Item": {"pk": {"S": "T#a"}, "sk": {"S": "E#1"}}}))
    update = partition_of(Handler({"TableName": "t", "Key": {"sk": {"S": "E#2"}, "pk": {"S": "T#a"}}}))
    other = partition_of(Handler({"TableName": "t", "Key": {"pk": {"S": "T#b"}, "sk": {"S": "E#1"}}}))
    query = partition_of(
        Handler(
            {
                "TableName": "t",
                "KeyConditionExpression": "pk = :p AND begins_with(sk, :s)",
                "ExpressionAttributeValues": {":p": {"S": "T#a"}, ":s": {"S": "E#"}},
            }
        )
    )
    assert put == update != other  # one partition whatever the sort key
    assert query[0] == "t" and "T#a" in str(query)
    assert partition_of(Handler({})) == ()  # no table named: a turn of its own kind
