"""The health counter: the attempts each stream record's write added (store/activity_stream.py),
summed per webhook and hour over a batch (services/health_counter.py), and what a batch that
comes back counts. Records are built as the store writes items (activity_items), shaped as
Lambda gives them; the store is the in-memory double (the contract tests run the real one)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from devicehooks.aws.dynamo import to_item
from devicehooks.domain.activity import Attempt, DeliveryStatus, HourCount
from devicehooks.services.health_counter import HealthCounter
from devicehooks.store.activity_items import attempt_map, status_map
from devicehooks.store.activity_stream import added_attempts
from devicehooks.store.keys import join
from devicehooks_dev.doubles import MemoryActivityStore

HOUR = datetime(2026, 3, 4, 10, tzinfo=UTC)
A, B = str(uuid.uuid4()), str(uuid.uuid4())
EVENT = str(uuid.uuid4())


def attempt(number: int, minute: int, code: int | None = 200, hour: datetime = HOUR) -> Attempt:
    error = None if code is not None and code < 300 else f"HTTP {code}"
    return Attempt(number=number, at=hour + timedelta(minutes=minute), status_code=code, error=error)


def image(deliveries: Mapping[str, tuple[DeliveryStatus, Sequence[Attempt]]]) -> dict[str, Any]:
    """An event item as stored: its statuses and attempt logs (and a body, which is not read)."""
    return to_item(
        {
            "pk": join("T", "tenant-1"),
            "sk": join("E", EVENT),
            "body": '{"data": {}}',
            "deliveries": {i: status_map(s) for i, (s, _) in deliveries.items()},
            "attempt_log": {i: [attempt_map(a, EVENT) for a in log] for i, (_, log) in deliveries.items()},
        }
    )


def after(integration_id: str, last: Attempt, delivered: bool = True) -> DeliveryStatus:
    state = "delivered" if delivered else "retrying"
    return DeliveryStatus(integration_id).after_attempt(last, state, last.at)


SEQ = iter(range(100, 10_000))


def record(
    new: Mapping[str, Any] | None,
    old: Mapping[str, Any] | None = None,
    sk: str | None = None,
    pk: str = join("T", "tenant-1"),
) -> dict[str, Any]:
    keys = {"pk": {"S": pk}, "sk": {"S": sk or join("E", EVENT)}}
    dynamodb: dict[str, Any] = {"Keys": keys, "SequenceNumber": str(next(SEQ)), "StreamViewType": "NEW_AND_OLD_IMAGES"}
    if new is not None:
        dynamodb["NewImage"] = new
    if old is not None:
        dynamodb["OldImage"] = old
    name = "REMOVE" if new is None else "INSERT" if old is None else "MODIFY"
    return {"eventName": name, "eventSource": "aws:dynamodb", "dynamodb": dynamodb}


pending = DeliveryStatus.leased(A, HOUR)


# ---------------------------------------------------------------------------- derivation
def test_a_new_event_item_adds_no_attempt_and_its_first_attempt_is_counted_once() -> None:
    created = image({A: (pending, [])})
    first = attempt(1, 5)
    recorded = image({A: (after(A, first), [first])})
    assert added_attempts(record(created)) == []
    [counted] = added_attempts(record(recorded, created))
    assert (counted.tenant_id, counted.integration_id, counted.event_id) == ("tenant-1", A, EVENT)
    assert (counted.attempt.number, counted.attempt.status_code, counted.delivered) == (1, 200, True)
    assert counted.attempt.at == first.at
    # the same write seen again as a later one (nothing added): nothing
    assert added_attempts(record(recorded, recorded)) == []


def test_retries_each_count_once_a_failure_then_the_delivery() -> None:
    one, two, three = attempt(1, 1, 503), attempt(2, 3, 500), attempt(3, 9, 200)
    failed_once = image({A: (after(A, one, False), [one])})
    failed_twice = image({A: (after(A, two, False), [one, two])})
    delivered = image({A: (after(A, three), [one, two, three])})
    counted = added_attempts(record(failed_twice, failed_once)) + added_attempts(record(delivered, failed_twice))
    assert [(c.attempt.number, c.attempt.status_code, c.delivered) for c in counted] == [
        (2, 500, False),
        (3, 200, True),
    ]


def test_a_held_delivery_and_a_reopened_one_add_nothing_and_a_redelivery_counts_its_new_attempt() -> None:
    first = attempt(1, 1)
    delivered = image({A: (after(A, first), [first])})
    reopened = image({A: (after(A, first).reopened(HOUR + timedelta(minutes=2)), [first])})
    held = image({A: (after(A, first).held(HOUR, "rate limited", HOUR), [first])})
    again = attempt(2, 4, 200)
    redelivered = image({A: (after(A, again), [first, again])})
    assert added_attempts(record(reopened, delivered)) == []
    assert added_attempts(record(held, reopened)) == []
    [counted] = added_attempts(record(redelivered, reopened))
    assert (counted.attempt.number, counted.delivered) == (2, True)


def test_an_item_to_several_webhooks_counts_each_webhooks_attempt_in_one_write() -> None:
    created = image({A: (pending, []), B: (DeliveryStatus.leased(B, HOUR), [])})
    ok, bad = attempt(1, 2, 200), attempt(1, 2, 502)
    both = image({A: (after(A, ok), [ok]), B: (after(B, bad, False), [bad])})
    counted = added_attempts(record(both, created))
    assert sorted((c.integration_id, c.attempt.status_code, c.delivered) for c in counted) == sorted(
        [(A, 200, True), (B, 502, False)]
    )


def test_a_full_log_rotating_its_slots_and_an_attempt_the_log_does_not_keep_are_counted() -> None:
    log = [attempt(n, n, 500) for n in (1, 3, 4, 5)]  # the first and the latest three
    before = image({A: (after(A, log[-1], False), log)})
    six = attempt(6, 6, 500)
    rotated = image({A: (after(A, six, False), [log[0], six, log[2], log[3]])})  # 6 over 3's slot
    [counted] = added_attempts(record(rotated, before))
    assert (counted.attempt.number, counted.attempt.status_code) == (6, 500)
    seven = attempt(7, 8, 200)
    status_alone = image({A: (after(A, seven), [log[0], six, log[2], log[3]])})  # a full item: no log entry
    [counted] = added_attempts(record(status_alone, rotated))
    assert (counted.attempt.number, counted.attempt.status_code, counted.delivered) == (7, 200, True)
    assert counted.attempt.at == seven.at


def test_markers_health_items_removals_and_the_new_partition_key() -> None:
    first = attempt(1, 1)
    item = image({A: (after(A, first), [first])})
    assert added_attempts(record(item, None, sk=join("D", EVENT, B))) == []
    assert added_attempts(record(item, None, sk=join("H", A, "2026-03-04T10"))) == []
    assert added_attempts(record(None, item)) == []  # the TTL's removal
    # the event item's partition may be T#<tenant>#Y#<type letter>: the tenant is the same
    [counted] = added_attempts(record(item, None, pk=join("T", "tenant-1", "Y", "s")))
    assert counted.tenant_id == "tenant-1"


# ---------------------------------------------------------------------------- the counter
class Store(MemoryActivityStore):
    """The in-memory store, counting writes and failing the writes of chosen webhooks."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[tuple[str, HourCount]] = []
        self.failing: set[str] = set()

    def count_attempts(self, tenant_id: str, integration_id: str, counts: HourCount, expire_ts: int) -> None:
        if integration_id in self.failing:
            raise RuntimeError("throttled")
        self.writes.append((integration_id, counts))
        super().count_attempts(tenant_id, integration_id, counts, expire_ts)


def history(integration_id: str, outcomes: Sequence[int], hour: datetime = HOUR) -> list[dict[str, Any]]:
    """The records of one event's deliveries to one webhook, an attempt per outcome (an event each)."""
    global EVENT
    records = []
    for code in outcomes:
        EVENT = str(uuid.uuid4())
        created = image({integration_id: (DeliveryStatus.leased(integration_id, hour), [])})
        tried = attempt(1, len(records), code, hour)
        done = image({integration_id: (after(integration_id, tried, code < 300), [tried])})
        records += [record(created), record(done, created)]
    return records


def counts(store: Store, integration_id: str) -> list[tuple[int, int, int | None]]:
    found = store.hour_counts("tenant-1", integration_id, HOUR + timedelta(hours=5), 24)
    return [(c.delivered, c.failed, c.last_status_code) for c in found]


def test_a_batch_is_one_write_per_webhook_and_hour_with_its_last_attempt() -> None:
    store = Store()
    records = history(A, [200, 500, 200]) + history(B, [502]) + history(A, [503], HOUR + timedelta(hours=1))
    assert HealthCounter(store, 3600).count(records) is None
    assert len(store.writes) == 3  # A's two hours, B's one
    assert counts(store, A) == [(0, 1, 503), (2, 1, 200)]
    assert counts(store, B) == [(0, 1, 502)]


def test_a_failed_write_brings_back_its_first_record_and_the_rest_is_taken_back_so_a_replay_counts_once() -> None:
    store = Store()
    records = history(A, [200, 200]) + history(B, [500]) + history(A, [200, 500])
    store.failing = {B}
    first = HealthCounter(store, 3600).count(records)
    b_first = next(n for n, r in enumerate(records) if added_attempts(r) and added_attempts(r)[0].integration_id == B)
    assert first == records[b_first]["dynamodb"]["SequenceNumber"]
    # A's write held all four of its attempts; the two after B's record are taken back
    assert counts(store, A) == [(2, 0, 500)]
    store.failing = set()
    assert HealthCounter(store, 3600).count(records[b_first:]) is None  # Lambda's replay: from that record on
    assert counts(store, A) == [(3, 1, 500)]
    assert counts(store, B) == [(0, 1, 500)]


def test_a_record_that_cannot_be_read_is_logged_and_passed_over(caplog: pytest.LogCaptureFixture) -> None:
    store = Store()
    broken = record(image({A: (pending, [])}))
    broken["dynamodb"]["NewImage"]["deliveries"] = {"M": {A: {"M": {"attempts": {"N": "x"}}}}}
    assert HealthCounter(store, 3600).count([broken, *history(A, [200])]) is None
    assert counts(store, A) == [(1, 0, 200)]
