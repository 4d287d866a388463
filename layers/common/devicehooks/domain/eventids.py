"""Event ids: UUIDv7 strings that carry their event's time and type (docs/architecture.md, "Event ids").

An event's id is what its activity record is keyed by (``GET /events/{id}``), and the activity table
keeps each tenant's events of one type in one partition sorted by id: so the id says the partition
(its type) and sorts by time, and listing by time or type needs no index (one write unit less per
delivery). The 128 bits, in RFC 9562's UUIDv7 layout:

* 48 bits: the event's time in Unix milliseconds (times before 1970 count as 1970, after the year
  10889 as then);
* the version, 7; 12 bits: the fraction of that millisecond (RFC 9562's "method 3"), so that a
  microsecond time comes back exactly;
* the variant; 3 bits: the event's type (:data:`TYPE_CODES`); 4 bits: the event's shard, ``0`` to
  :data:`SHARDS` - 1 (which of its type's partitions holds it: docs/architecture.md, "Scale"); 55
  bits: a hash of ``seed``, the bus event's id, so that the same bus event (SQS may bring it twice)
  always gets the same id, and the shard from it.

A receiver sees a valid, opaque UUID, as Mender sends (Mender's are UUIDv4).
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime, timedelta

from devicehooks.domain.models import ACTIVITY_TYPES, ActivityType

CODE_TYPES: dict[int, ActivityType] = dict(enumerate(ACTIVITY_TYPES, start=1))  # 0, 6, 7: none
TYPE_CODES: dict[str, int] = {t: n for n, t in CODE_TYPES.items()}
# a tenant's events of one type are spread over this many partitions (each id says its own, so that
# the count may grow, never shrink: a list reads every shard below it); at most 16
SHARDS = 4
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MAX_MS = (1 << 48) - 1


def _time_bits(at: datetime) -> tuple[int, int]:
    """Milliseconds since 1970 (clamped to 48 bits) and the millisecond's fraction in 12 bits."""
    delta = at.astimezone(UTC) - _EPOCH
    micros = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    if micros < 0:
        return 0, 0
    ms, rest = divmod(micros, 1000)
    if ms > _MAX_MS:
        return _MAX_MS, 0xFFF
    return ms, rest * 4096 // 1000


def _compose(ms: int, fraction: int, code: int, shard: int, low: int) -> str:
    value = (ms << 80) | (0x7 << 76) | (fraction << 64) | (0b10 << 62) | (code << 59) | (shard << 55) | low
    return str(uuid.UUID(int=value))


def event_id(at: datetime, event_type: str, seed: str) -> str:
    """The id of the event of ``event_type`` at ``at`` whose bus event (or other origin) is ``seed``."""
    ms, fraction = _time_bits(at)
    low = int.from_bytes(hashlib.blake2b(seed.encode(), digest_size=8).digest()) & ((1 << 55) - 1)
    return _compose(ms, fraction, TYPE_CODES[event_type], low % SHARDS, low)


def new_event_id(at: datetime, event_type: str) -> str:
    """A fresh id for an event that has no bus event (a test delivery)."""
    return event_id(at, event_type, str(uuid.uuid4()))


def floor_id(at: datetime) -> str:
    """An id below every id of an event at ``at`` or later, and above every id of an earlier one."""
    ms, fraction = _time_bits(at)
    return _compose(ms, fraction, 0, 0, 0)


def _parsed(value: str) -> int | None:
    try:
        number = uuid.UUID(value).int
    except ValueError:
        return None
    if (number >> 76) & 0xF != 7 or (number >> 62) & 0b11 != 0b10:
        return None
    return number


def type_of_id(value: str) -> ActivityType | None:
    """The event type an id says; ``None`` for a string that is not such an id (any other UUID)."""
    number = _parsed(value)
    return None if number is None else CODE_TYPES.get((number >> 59) & 0b111)


def shard_of_id(value: str) -> int:
    """The shard an id says (``0`` for a string that is not such an id)."""
    number = _parsed(value)
    return 0 if number is None else (number >> 55) & 0xF


def time_of_id(value: str) -> datetime | None:
    """The time an id says (to the microsecond); ``None`` for a string that is not such an id."""
    number = _parsed(value)
    if number is None:
        return None
    ms, fraction = number >> 80, (number >> 64) & 0xFFF
    micros = -(-fraction * 1000 // 4096)  # the microsecond _time_bits made the fraction of
    return _EPOCH + timedelta(milliseconds=ms, microseconds=micros)


def check_event_id(value: str, event_type: str) -> None:
    """Raise ``ValueError`` unless ``value`` is an id of an event of ``event_type`` (a store keys the
    event by what its id says)."""
    if type_of_id(value) != event_type:
        raise ValueError(f"event id {value!r} is not the id of a {event_type} event")
