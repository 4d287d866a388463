"""The activity table's layout on DynamoDB, where the write budget comes from: the happy path writes
no ``by_state`` entry and keeps a single-webhook item under 1 KB; rare states get their entry and
lose it; the request headers that follow from the event and the attempt are kept as bits and come
back exactly; items written before (their own ``by_time`` partition, every state in ``by_state``,
their id, tenant, time and type as attributes: a layout never released) are read and recorded.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest

from bench.dynamometer import item_size
from devicehooks.aws.dynamo import to_item
from devicehooks.delivery.signing import webhook_headers
from devicehooks.domain.activity import ActivityEvent, Attempt, DeliveryStatus, EventFilter
from devicehooks.domain.events import WebhookEvent
from devicehooks.store.activity import DynamoActivityStore
from devicehooks.store.activity_items import marker_key, state_pk, tenant_pk, time_key, webhook_pk
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
    assert item["gsi1pk"]["S"] == f"T#{tenant}#Y#d"  # by_time: a partition per type, named by a letter
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
    plain = WebhookEvent(str(uuid.uuid4()), tenant, "device-status-changed", data, NOW)
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


def _legacy_item(tenant: str, event: ActivityEvent, state: str) -> dict[str, Any]:
    """An event item as the store wrote it before the write budget (one webhook, ``a``)."""
    return to_item(
        {
            "pk": tenant_pk(tenant),
            "sk": f"E#{event.id}",
            "gsi1pk": tenant_pk(tenant),
            "gsi1sk": time_key(event),
            "gsi2pk": webhook_pk(tenant, "a"),
            "gsi2sk": time_key(event),
            "gsi3pk": f"T#{tenant}#V#dev-1",
            "gsi4pk": state_pk(tenant, state, event.type),
            "event_id": event.id,
            "tenant_id": tenant,
            "event_type": event.type,
            "time": event.time.isoformat(),
            "body": event.body.decode(),
            "expire_ts": event.expire_ts,
            "deliveries": {"a": {"state": state, "attempts": 0}},
            "attempt_log": {},
        }
    )


def test_an_item_of_the_layout_before_is_read_and_recorded_never_an_error(store: DynamoActivityStore) -> None:
    """The layout before the write budget was never released (docs/operations.md: a table from
    before is emptied), so no list reads its partitions; but an item of it left in a table is read
    whole where a list meets it (a webhook's, a device's), and recorded, never a 500."""
    tenant = _tenant()
    old = _event(tenant, [DeliveryStatus("a")], NOW)
    store.client.put_item(TableName=store.table_name, Item=_legacy_item(tenant, old, "pending"))
    new = _event(tenant, [DeliveryStatus("a")], NOW + timedelta(seconds=10), "device-provisioned")
    store.create(new)
    assert [e.id for e in store.list_events(tenant, 1, 10, "a")] == [new.id, old.id]
    assert [e.id for e in store.list_events(tenant, 1, 10, only=EventFilter(device_id="dev-1"))] == [new.id, old.id]
    read = _elsewhere(Stores("dynamodb", None, store)).get(tenant, old.id)  # type: ignore[arg-type]
    assert read is not None
    assert (read.id, read.tenant_id, read.type, read.time) == (old.id, tenant, "device-decommissioned", old.time)
    fresh = _elsewhere(Stores("dynamodb", None, store))  # type: ignore[arg-type]
    fresh.record(tenant, old.id, [(_delivered("a"), None)])  # nothing remembered: its keys read first
    stored = store.get(tenant, old.id)
    assert stored is not None and stored.deliveries["a"].state == "delivered"
    assert "gsi4pk" not in _raw(store, store._key(tenant, old.id))  # its pending entry left with it
