"""The health counter on moto's server: the activity store's real writes (create, claim, record,
reopen) read back from the table's stream as Lambda hands them (the local stack's record shape),
counted into the real hour items and read through the health view's query."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from devicehooks.domain.activity import ActivityEvent, Attempt, DeliveryStatus
from devicehooks.domain.eventids import new_event_id
from devicehooks.domain.events import WebhookEvent
from devicehooks.services.health_counter import HealthCounter
from devicehooks.store.activity import DynamoActivityStore
from devicehooks_dev.local.stack import REGION
from devicehooks_dev.local.streams import StreamSource, record

NOW = datetime.now(UTC).replace(microsecond=0)


class Stream:
    """The activity table's stream from where it stands now: each read returns what was written since."""

    def __init__(self, client: Any, arn: str) -> None:
        self.source = StreamSource(function="HealthCounterFunction", name="ActivityStream", stream_arn=arn)
        self.streams = boto3.client(
            "dynamodbstreams",
            endpoint_url=client.meta.endpoint_url,
            region_name=REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",  # noqa: S106 - moto's
        )
        shard = self.streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]["ShardId"]
        self.iterator = self.streams.get_shard_iterator(StreamArn=arn, ShardId=shard, ShardIteratorType="LATEST")[
            "ShardIterator"
        ]

    def read(self) -> list[dict[str, Any]]:
        out = self.streams.get_records(ShardIterator=self.iterator, Limit=1000)
        self.iterator = out["NextShardIterator"]
        return [record(r, self.source) for r in out["Records"]]


@pytest.fixture
def activity(moto_tables: tuple[Any, dict[str, dict[str, Any]]]) -> Iterator[tuple[DynamoActivityStore, Stream]]:
    client, physical = moto_tables
    table = physical["ActivityLogTable"]
    yield DynamoActivityStore(table["TableName"], client=client), Stream(client, table["StreamArn"])


def _event(tenant: str, hooks: list[str]) -> ActivityEvent:
    event = WebhookEvent(
        id=new_event_id(NOW, "device-decommissioned"),
        tenant_id=tenant,
        type="device-decommissioned",
        data={"id": "d"},
        time=NOW,
    )  # type: ignore[arg-type]
    return ActivityEvent.new(event, int(NOW.timestamp()) + 3600, [DeliveryStatus.leased(h, NOW) for h in hooks])


def _attempt(store: DynamoActivityStore, event: ActivityEvent, hook: str, number: int, code: int) -> None:
    at = NOW + timedelta(seconds=number)
    attempt = Attempt(number=number, at=at, status_code=code, error=None if code < 300 else f"HTTP {code}")
    status = DeliveryStatus(hook).after_attempt(attempt, "delivered" if code < 300 else "retrying", at)
    store.record(event.tenant_id, event.id, [(status, attempt)], deliveries=len(event.deliveries))


def test_the_stores_writes_counted_from_the_stream_once_each_and_markers_passed_over(
    activity: tuple[DynamoActivityStore, Stream],
) -> None:
    store, stream = activity
    tenant, a, b = f"t-{uuid.uuid4().hex[:8]}", str(uuid.uuid4()), str(uuid.uuid4())
    one = _event(tenant, [a])
    two = _event(tenant, [a, b])  # a marker item for b
    store.create(one)
    store.create(two)
    _attempt(store, one, a, 1, 503)
    _attempt(store, one, a, 2, 200)  # its retry
    _attempt(store, two, a, 1, 200)
    _attempt(store, two, b, 1, 500)
    # a redelivery: reopened (no attempt), then its attempt
    assert store.reopen(tenant, one.id, a, NOW + timedelta(seconds=5), seen_attempts=2)
    _attempt(store, one, a, 3, 204)
    records = stream.read()
    assert {r["dynamodb"]["Keys"]["sk"]["S"][:2] for r in records} == {"E#", "D#"}
    assert all(r["eventSourceARN"] == stream.source.stream_arn for r in records)
    assert HealthCounter(store, 3600).count(records) is None
    [of_a] = store.hour_counts(tenant, a, NOW, 24)
    assert (of_a.delivered, of_a.failed, of_a.last_status_code) == (3, 1, 204)
    [of_b] = store.hour_counts(tenant, b, NOW, 24)
    assert (of_b.delivered, of_b.failed, of_b.last_status_code, of_b.last_error) == (0, 1, 500, "HTTP 500")
    # the counter's own writes (H# items) come through the stream too: they count nothing
    assert HealthCounter(store, 3600).count(stream.read()) is None
    assert [(c.delivered, c.failed) for c in store.hour_counts(tenant, a, NOW, 24)] == [(3, 1)]
