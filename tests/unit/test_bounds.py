"""The event item's bounds (store/bounds.py): its worst case, worked out from what is really stored.

Each figure of the module's arithmetic is checked against the items the DynamoDB store writes,
sized by DynamoDB's rules (bench/dynamometer.py), with every field at its largest.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bench.dynamometer import attribute_size, item_size
from devicehooks.aws.dynamo import value
from devicehooks.domain.activity import ActivityEvent, Attempt, DeliveryStatus
from devicehooks.domain.eventids import new_event_id
from devicehooks.domain.events import WebhookEvent
from devicehooks.services.ingest import MAX_DETAIL_BYTES
from devicehooks.store import bounds
from devicehooks.store.activity import DynamoActivityStore, _attempt_map, _status_map
from devicehooks.store.bounds import Bound, bound_for, bounded_attempt, bounded_status, kept, slot, worst_case_bytes

NOW = datetime(2026, 3, 1, 12, 0, 0, 123000, tzinfo=UTC)
FAR = NOW + timedelta(days=3650)


def _worst_attempt(number: int = 999) -> Attempt:
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "devicehooks/1.0",
        "webhook-id": str(uuid.uuid4()),
        "webhook-timestamp": "1764410000",
        "X-Men-Signature": "ab" * 32,
        "X-Men-Algorithm": "MEN-HMAC-SHA256-Payload",
        "webhook-signature": "v1," + "K" * 44 + " v1," + "Z" * 44,
        **{f"X{n}": "v" for n in range(200)},  # as many tiny headers as fit: each costs a byte more
    }
    return Attempt(number, FAR, 600_000, 599, "\u20ac" * 1000, "\ufffd" * 256, headers)


def test_the_body_bound_is_the_largest_event_an_event_may_carry() -> None:
    assert bounds.BODY_BYTES == MAX_DETAIL_BYTES


def test_a_stored_attempt_at_its_largest_is_within_its_figure() -> None:
    full = bounded_attempt(_worst_attempt(), Bound())
    assert attribute_size(value(_attempt_map(full))) <= bounds.ATTEMPT_BYTES
    bare = bounded_attempt(_worst_attempt(), Bound(1, 0))
    assert bare.headers is None
    assert attribute_size(value(_attempt_map(bare))) <= bounds.BARE_ATTEMPT_BYTES
    assert len((full.response_body or "").encode()) <= bounds.SNIPPET_BYTES  # 768 bytes as received
    assert len(full.headers or {}) <= bounds.HEADER_COUNT


def test_a_stored_status_at_its_largest_is_within_its_figure() -> None:
    status = DeliveryStatus(
        str(uuid.uuid4()), "retrying", 999, 599, "\u20ac" * 1000, FAR, FAR, FAR
    )  # every field, the longest numbers
    assert attribute_size(value(_status_map(bounded_status(status)))) <= bounds.STATUS_BYTES


class _Capture:
    """A DynamoDB client that keeps the item put (create's one write, for one webhook)."""

    def __init__(self) -> None:
        self.item: dict[str, Any] = {}

    def put_item(self, **kwargs: Any) -> None:
        self.item = kwargs["Item"]


def test_the_items_fixed_attributes_are_within_their_figure() -> None:
    tenant, device = "t" * 256, "d" * 256  # the longest ids events may carry (services/ingest.py)
    event = WebhookEvent(
        id=new_event_id(NOW, "device-inventory-changed"),
        tenant_id=tenant,
        type="device-inventory-changed",
        data={"device_id": device, "inventory": []},
        time=NOW,
    )
    client = _Capture()
    DynamoActivityStore("activity", client).create(
        ActivityEvent.new(event, int(FAR.timestamp()), [DeliveryStatus(str(uuid.uuid4()))], test=True)
    )
    item = dict(client.item)
    rest = {k: v for k, v in item.items() if k not in ("body", "deliveries", "attempt_log")}
    fixed = item_size(rest) + len("body") + len("deliveries") + 3 + len("attempt_log") + 3
    assert fixed <= bounds.FIXED_BYTES


@pytest.mark.parametrize("webhooks", range(1, 100))  # DEVICEHOOKS_MAX_INTEGRATIONS may be 1 to 99
def test_no_event_item_can_approach_400_kb(webhooks: int) -> None:
    assert worst_case_bytes(webhooks) <= bounds.TARGET_BYTES < 0.86 * bounds.ITEM_LIMIT
    assert bound_for(webhooks).keep >= 1


def test_the_bound_by_webhooks_and_the_figures_of_the_docs() -> None:
    assert bound_for(20) == Bound(4, bounds.HEADER_BYTES)  # the default limit keeps 4
    assert [bound_for(w).keep for w in (22, 23, 29, 30, 40, 41, 68, 69, 99)] == [4, 3, 3, 2, 2, 1, 1, 1, 1]
    assert bound_for(68).header_bytes and not bound_for(69).header_bytes
    figures = {w: worst_case_bytes(w) for w in (20, 29, 40, 68, 99)}
    assert figures == {20: 338_452, 29: 349_752, 40: 347_992, 68: 349_336, 99: 345_654}


def test_a_full_log_keeps_its_first_and_latest_in_rotating_slots() -> None:
    log: list[int] = []
    for number in range(1, 30):
        at = slot(number, 4)
        if at is None:
            log.append(number)
        else:
            log[at] = number
        assert sorted(log) == [a for a in kept(list(range(1, number + 1)), 4)]  # type: ignore[misc]
    assert [slot(n, 1) for n in (1, 2, 3)] == [None, 0, 0]
