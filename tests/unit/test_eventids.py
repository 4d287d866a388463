"""Event ids (devicehooks.domain.eventids): UUIDv7 that say their event's time, type and shard."""

from __future__ import annotations

import random
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from devicehooks.domain.eventids import (
    SHARDS,
    check_event_id,
    event_id,
    floor_id,
    new_event_id,
    shard_of_id,
    time_of_id,
    type_of_id,
)
from devicehooks.domain.models import ACTIVITY_TYPES

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def test_an_id_gives_back_its_time_to_the_microsecond_and_its_type() -> None:
    rng = random.Random(7)
    for _ in range(20_000):
        at = EPOCH + timedelta(microseconds=rng.randrange(0, 400 * 365 * 86_400 * 10**6))
        kind = rng.choice(ACTIVITY_TYPES)
        made = event_id(at, kind, str(rng.random()))
        assert uuid.UUID(made).version == 7 and uuid.UUID(made).variant == uuid.RFC_4122
        assert (time_of_id(made), type_of_id(made)) == (at, kind)


def test_ids_sort_by_time_and_the_floor_of_a_time_is_between_it_and_the_microsecond_before() -> None:
    rng = random.Random(8)
    at = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
    times = [at + timedelta(microseconds=n) for n in range(-3, 4)]
    ids = [event_id(t, rng.choice(ACTIVITY_TYPES), str(n)) for n, t in enumerate(times)]
    assert ids == sorted(ids)  # as the table sorts its sort keys: as strings
    for t, made in zip(times, ids, strict=True):
        assert floor_id(t) < made < floor_id(t + timedelta(microseconds=1))


def test_the_same_seed_makes_the_same_id_and_shards_spread_evenly() -> None:
    at = datetime(2026, 12, 7, tzinfo=UTC)
    assert event_id(at, "device-provisioned", "bus-1") == event_id(at, "device-provisioned", "bus-1")
    assert event_id(at, "device-provisioned", "bus-1") != event_id(at, "device-provisioned", "bus-2")
    shards = Counter(shard_of_id(new_event_id(at, "device-status-changed")) for _ in range(4000))
    assert set(shards) == set(range(SHARDS)) and min(shards.values()) > 4000 / SHARDS * 0.8


def test_times_outside_48_bits_of_milliseconds_are_clamped_not_refused() -> None:
    early = event_id(datetime(1, 1, 1, tzinfo=UTC), "device-provisioned", "x")
    late = event_id(datetime(9999, 12, 31, tzinfo=UTC), "device-provisioned", "x")
    assert time_of_id(early) == EPOCH and type_of_id(early) == "device-provisioned"
    assert early < late


@pytest.mark.parametrize("other", [str(uuid.uuid4()), str(uuid.uuid1()), "not a uuid", ""])
def test_a_string_that_is_no_such_id_says_nothing(other: str) -> None:
    assert type_of_id(other) is None and time_of_id(other) is None and shard_of_id(other) == 0
    with pytest.raises(ValueError, match="is not the id of a device-provisioned event"):
        check_event_id(other, "device-provisioned")


def test_an_id_of_another_type_is_refused_by_the_stores_check() -> None:
    made = new_event_id(datetime.now(UTC), "device-decommissioned")
    check_event_id(made, "device-decommissioned")
    with pytest.raises(ValueError):
        check_event_id(made, "device-provisioned")
