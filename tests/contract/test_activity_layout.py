"""The activity table's layout on DynamoDB, where the write budget comes from: the happy path writes
no ``by_state`` entry and keeps a single-webhook item under 1 KB; rare states get their entry and
lose it; the request headers that follow from the event and the attempt are kept as bits and come
back exactly; an event item is in its type's partition, sorted by its id, which says its time.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest

from bench.dynamometer import item_size
from devicehooks.delivery.signing import webhook_headers
from devicehooks.domain.activity import ActivityEvent, Attempt, DeliveryStatus, EventFilter
from devicehooks.domain.eventids import new_event_id, shard_of_id
from devicehooks.domain.events import WebhookEvent
from devicehooks.store.activity import DynamoActivityStore
from devicehooks.store.activity_items import marker_key, state_pk
from tests.contract.conftest import Stores
from tests.contract.test_store_contract import NOW, _elsewhere, _event, _tenant


@pytest.fixture
def store(stores: Stores) -> DynamoActivityStore:
    if not isinstance(stores.activity, DynamoActivityStore):
        pytest.skip("DynamoDB only: the layout of the items")
    return stores.activity


def _raw(store: DynamoActivityStore, key: dict[str, Any]) -> dict[str, Any]:
    return dict(store.client.get_item(TableName=store.table_name, Key=key, ConsistentRead=True)["Item"])


def _delivered(integration_id: str, number: int = 1) -> DeliveryStatus:
    attempt = Attempt(number, NOW, 5, 200)
    return DeliveryStatus(integration_id).after_attempt(attempt, "delivered", NOW)


def _failed(integration_id: str, state: str = "failed") -> DeliveryStatus:
    attempt = Attempt(1, NOW, 5, 500)
    return DeliveryStatus(integration_id).after_attempt(attempt, state, NOW, NOW if state == "retrying" else None)  # type: ignore[arg-type]


def test_the_happy_path_writes_no_state_entry_and_rare_states_come_and_go(store: DynamoActivityStore) -> None:
    tenant = _tenant()
    event = _event(tenant, [DeliveryStatus("a"), DeliveryStatus("b")])
    assert store.create(event) is None
    item, marker = _raw(store, store._key(tenant, event.id)), _raw(store, marker_key(tenant, event.id, "b"))
    assert "gsi4pk" not in item and "gsi4pk" not in marker  # pending: read on, never indexed
    assert item["pk"]["S"] == f"T#{tenant}#Y#d#{shard_of_id(event.id)}"  # its type's partition, its shard
    assert item["sk"]["S"] == f"E#{event.id}" and marker["pk"] == item["pk"]  # the marker beside it
    assert not {"gsi1pk", "event_type", "time", "tenant_id", "event_id"} & set(item)  # its keys say them
    store.record(tenant, event.id, [(_delivered("a"), None), (_failed("b", "retrying"), None)])
    item, marker = _raw(store, store._key(tenant, event.id)), _raw(store, marker_key(tenant, event.id, "b"))
    assert "gsi4pk" not in item  # delivered: no entry
    assert marker["gsi4pk"]["S"] == state_pk(tenant, "retrying", "device-decommissioned")
    other = _elsewhere(Stores("dynamodb", None, store))  # type: ignore[arg-type]
    other.record(tenant, event.id, [(_failed("b").after_attempt(Attempt(2, NOW, 5, 500), "failed", NOW), None)])
    assert _raw(store, marker_key(tenant, event.id, "b"))["gsi4pk"]["S"] == state_pk(tenant, "failed", event.type)
    assert store.reopen(tenant, event.id, "b", NOW + timedelta(hours=1), seen_attempts=2)
    assert "gsi4pk" not in _raw(store, marker_key(tenant, event.id, "b"))  # pending again: out of by_state
    store.record(tenant, event.id, [(_failed("a", "skipped"), None)])  # a delivered one is never overwritten
    assert "gsi4pk" not in _raw(store, store._key(tenant, event.id))
    # and the lists still find each delivery in its state
    assert [e.id for e in store.list_events(tenant, 1, 10, only=EventFilter(state="pending"))] == [event.id]
    assert [e.id for e in store.list_events(tenant, 1, 10, "a", EventFilter(state="delivered"))] == [event.id]
    assert store.list_events(tenant, 1, 10, only=EventFilter(state="failed")) == []


def test_a_delivered_single_webhook_event_with_menders_ids_stays_under_one_kilobyte(
    store: DynamoActivityStore,
) -> None:
    """Mender's ids: a 24-hex tenant (an ObjectId), UUIDs for the device, the event and the
    webhook; the attempt as the dispatcher records it (signed, answered ``{"ok":true}``)."""
    tenant, device, hook = uuid.uuid4().hex[:24], str(uuid.uuid4()), str(uuid.uuid4())
    data = {"id": device, "status": "accepted"}
    plain = WebhookEvent(new_event_id(NOW, "device-status-changed"), tenant, "device-status-changed", data, NOW)
    event = ActivityEvent.new(plain, int(NOW.timestamp()) + 3600, [DeliveryStatus(hook)])
    store.create(event)
    headers = webhook_headers(event.id, event.body, [b"k" * 32], int(NOW.timestamp()))
    attempt = Attempt(1, NOW, 120, 200, None, '{"ok":true}', headers)
    store.record(tenant, event.id, [(DeliveryStatus(hook).after_attempt(attempt, "delivered", NOW), attempt)], 1)
    raw = _raw(store, store._key(tenant, event.id))
    assert item_size(raw) <= 1024, item_size(raw)  # each write of it: one write unit
    stored = store.get(tenant, event.id)
    assert stored is not None and stored.attempts[hook] == (attempt,)  # every header back, exactly
    kept = raw["attempt_log"]["M"][hook]["L"][0]["M"]
    assert set(kept["headers"]["M"]) == {"User-Agent", "X-Men-Signature", "webhook-signature"}


def test_headers_that_differ_from_what_the_event_says_are_kept_as_sent(store: DynamoActivityStore) -> None:
    tenant = _tenant()
    event = _event(tenant, [DeliveryStatus("a")])
    store.create(event)
    headers = {"Content-Type": "text/plain", "webhook-id": "another", "webhook-timestamp": "1", "X-Men-Algorithm": "x"}
    attempt = Attempt(1, NOW, 5, 200, None, None, headers)
    store.record(tenant, event.id, [(_delivered("a"), attempt)])
    stored = store.get(tenant, event.id)
    assert stored is not None and dict(stored.attempts["a"][0].headers or {}) == headers


def test_a_type_partition_sorts_by_time_and_its_bounds_are_exact(store: DynamoActivityStore) -> None:
    """Events a microsecond apart, each side of a filter's bounds, listed by the table's partitions
    alone (no index: the ids sort by time), newest first, across pages and types."""
    tenant = _tenant()
    times = [NOW + timedelta(microseconds=n) for n in (0, 1, 2, 3)] + [NOW - timedelta(days=400)]
    kinds = ["device-decommissioned", "device-provisioned", "device-decommissioned", "device-status-changed"]
    events = [
        _event(tenant, [DeliveryStatus("a")], at, kind) for at, kind in zip(times, [*kinds, kinds[0]], strict=True)
    ]
    for event in events:
        assert store.create(event) is None
    newest_first = [e.id for e in sorted(events, key=lambda e: e.time, reverse=True)]
    pages = [e.id for n in (1, 2, 3) for e in store.list_events(tenant, n, 2)]
    assert pages == newest_first
    window = EventFilter(since=times[1], until=times[3])  # since <= time < until
    assert [e.id for e in store.list_events(tenant, 1, 10, only=window)] == [events[2].id, events[1].id]
    kind = EventFilter(type="device-decommissioned", since=times[0])
    assert [e.id for e in store.list_events(tenant, 1, 10, only=kind)] == [events[2].id, events[0].id]


def test_an_id_devicehooks_did_not_make_finds_nothing(store: DynamoActivityStore) -> None:
    tenant = _tenant()
    event = _event(tenant, [DeliveryStatus("a")])
    store.create(event)
    assert store.get(tenant, str(uuid.uuid4())) is None  # a UUIDv4 says no type: no partition
    assert store.get(tenant, event.id.replace(event.id[-1], "0" if event.id[-1] != "0" else "1")) is None
