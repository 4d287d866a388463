"""The activity table's items: their keys, the mapping between items and :class:`ActivityEvent`,
and the events read (:class:`KnownEvents`, which remembers what recording their statuses needs).

Each tenant's events of one type are one partition, sorted by event id (``pk = T#<tenant>#Y#<type's
letter>``, ``sk = E#<event id>``): an event id is a UUIDv7 that says its type and sorts by its time
(:mod:`devicehooks.domain.eventids`), so the table itself lists a tenant's events by time, one
partition per type (merged for a list of every type), and reads one by its id. The event item holds
the exact body, the delivery status per webhook (a map, updated in place with conditional
expressions), the attempt detail per webhook (a map of lists) and the TTL ``expire_ts``. The
tenant's own partition (``pk = T#<tenant>``) holds a marker ``sk = D#<event id>#<integration id>``
for each webhook of an event but the first, and the hourly health counts.

A keys-only index ``by_webhook`` (``gsi2pk = T#<tenant>#I#<integration>``) holds the event item
under its first webhook and the markers under the others. So an event to one webhook is one item
(one write before the POST, one after), and updating a delivery's status never rewrites an index
entry (no index projects it).

The filters of ``GET /events`` have two more indexes, sorted by ``<time>#<id>`` keys:
``by_device`` (``gsi3pk = T#<tenant>#V#<device>`` on the event item) and ``by_state`` (``gsi4pk =
T#<tenant>#S#<state>#Y#<type>``), which holds only the deliveries in a state worth finding and
rare (:data:`INDEXED_STATES`: retrying, failed, skipped) on the item that stands for each: the
event item for its first webhook, the marker for the others. A delivery entering such a state
gets its entry (the event item's in the same write as the status, a marker's with one conditional
write, versioned by its ``sv``), leaving it loses it; the happy path (pending, then delivered)
writes none: those states are found by reading on through the type partitions or ``by_webhook``
(:mod:`devicehooks.store.activity_queries`). Hourly attempt counts per webhook
(``H#<integration>#<hour>``, :mod:`devicehooks.store.health`) give its health. Every id in a key is
escaped (:mod:`devicehooks.store.keys`: ``%`` as ``%25``, ``#`` as ``%23``), so that ids holding
``#`` make no key of another tenant, event or webhook.

The item keeps what its keys do not say: the event's id, tenant, type and time are read back from
``sk``, ``pk`` and ``gsi1sk``, so that a delivered single-webhook event stays under 1 KB (one write
unit per write).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from devicehooks.aws.dynamo import batch_get, from_item, to_item
from devicehooks.delivery.signing import MEN_ALGORITHM_HEADER, derived_headers
from devicehooks.domain.activity import ActivityEvent, Attempt, DeliveryStatus, device_of
from devicehooks.domain.eventids import SHARDS, check_event_id, shard_of_id, type_of_id
from devicehooks.domain.models import ActivityType
from devicehooks.store.keys import escape, join, split
from devicehooks.store.table import Table

TABLE = ""  # not an index: the table's own partitions, a tenant's events of one type by time
BY_WEBHOOK = "by_webhook"
BY_DEVICE = "by_device"  # gsi3pk T#<tenant>#V#<device>, gsi1sk: each event item
BY_STATE = "by_state"  # gsi4pk T#<tenant>#S#<state>#Y#<type>, gsi2sk, and gsi2pk (its webhook): each delivery
INDEX_KEYS = {  # each index's partition and sort key attributes (template.yaml)
    BY_WEBHOOK: ("gsi2pk", "gsi2sk"),
    BY_DEVICE: ("gsi3pk", "gsi1sk"),
    BY_STATE: ("gsi4pk", "gsi2sk"),
}
# the states by_state holds: rare, and what an administrator looks for; pending and delivered (the
# happy path) are read on through the type partitions or by_webhook, so that they cost no index write
INDEXED_STATES: frozenset[str] = frozenset({"retrying", "failed", "skipped"})
# the request headers an attempt keeps as a bit of ``hd`` when they are as derived (in this order)
DERIVED = ("Content-Type", "webhook-id", "webhook-timestamp", MEN_ALGORITHM_HEADER)


# ---------------------------------------------------------------------------------------- keys
def tenant_pk(tenant_id: str) -> str:
    return join("T", tenant_id)


# the type partitions name the type with a letter (the item carries no other copy of its type, so a
# short one keeps it under 1 KB); a type without a letter is named in full, which no letter is
TYPE_LETTERS = {
    "device-provisioned": "p",
    "device-decommissioned": "d",
    "device-status-changed": "s",
    "device-inventory-changed": "i",
    "webhook-test": "t",
}
LETTER_TYPES = {letter: name for name, letter in TYPE_LETTERS.items()}


def time_pk(tenant_id: str, event_type: str, shard: int) -> str:
    """A partition of the tenant's events of one type: ``T#<tenant>#Y#<type's letter>#<shard>``."""
    return join("T", tenant_id, "Y", TYPE_LETTERS.get(event_type, event_type), str(shard))


def time_pks(tenant_id: str, event_type: str) -> list[str]:
    """Every partition of the tenant's events of one type (its shards)."""
    return [time_pk(tenant_id, event_type, n) for n in range(SHARDS)]


def event_pk(tenant_id: str, event_id: str) -> str:
    """The partition of an event's item and markers: its type's shard, which its id says (an id that
    says no type, not one devicehooks made, is looked for in the tenant's partition: no event is)."""
    event_type = type_of_id(event_id)
    if event_type is None:
        return tenant_pk(tenant_id)
    return time_pk(tenant_id, event_type, shard_of_id(event_id))


def webhook_pk(tenant_id: str, integration_id: str) -> str:
    return join("T", tenant_id, "I", integration_id)


def device_pk(tenant_id: str, device_id: str) -> str:
    return join("T", tenant_id, "V", device_id)


def state_key(tenant_id: str, state: str, event_type: str) -> str | None:
    """A delivery's ``by_state`` partition, or ``None`` when its state has no entry there."""
    return state_pk(tenant_id, state, event_type) if state in INDEXED_STATES else None


def state_pk(tenant_id: str, state: str, event_type: str) -> str:
    """A delivery's partition in ``by_state`` (it changes with its state; the sort key is the item's
    ``gsi2sk``, ``<time>#<event>``, which never does, and the index shows the item's ``gsi2pk``, the
    delivery's webhook)."""
    return join("T", tenant_id, "S", state, "Y", event_type)


def time_prefix(at: datetime) -> str:
    # isoformat, not strftime: its year has four digits before year 1000 too (strftime's "%Y" on
    # glibc writes "1" for year 1, which would sort after "2026")
    return at.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def time_key(event: ActivityEvent) -> str:
    return time_prefix(event.time) + "#" + escape(event.id)


def time_of(key: str) -> datetime:
    """The time of a :func:`time_key` (microseconds, UTC)."""
    return datetime.fromisoformat(key.split("#", 1)[0].removesuffix("Z")).replace(tzinfo=UTC)


def event_key(tenant_id: str, event_id: str) -> dict[str, Any]:
    return {"pk": {"S": event_pk(tenant_id, event_id)}, "sk": {"S": event_sk(event_id)}}


def event_sk(event_id: str) -> str:
    return join("E", event_id)


def marker_key(tenant_id: str, event_id: str, integration_id: str) -> dict[str, Any]:
    return {"pk": {"S": event_pk(tenant_id, event_id)}, "sk": {"S": join("D", event_id, integration_id)}}


def first_of(item: Mapping[str, Any]) -> str | None:
    """The webhook an event item stands for in ``by_webhook`` (its first), from its index key."""
    key = item.get("gsi2pk", {}).get("S")
    return split(key)[3] if key else None  # T#<tenant>#I#<integration>


def event_id_of(sort_key: str) -> str:
    """The event id in an index entry's table sort key (``E#<event>`` or ``D#<event>#<integration>``)."""
    return split(sort_key)[1]


@dataclass(frozen=True, slots=True)
class Keyed:
    """What writing a delivery's state keys needs to know of its event, which never changes: the
    webhook whose delivery the event item carries (its first; ``""``: none) and the event's type."""

    carrier: str
    type: str


def type_of(item: Mapping[str, Any]) -> str:
    """An event item's type (plain values or as stored), from its partition ``T#<tenant>#Y#<letter>#<n>``."""
    raw = item["pk"]
    letter = split(raw["S"] if isinstance(raw, Mapping) else str(raw))[3]
    return LETTER_TYPES.get(letter, letter)


def keyed_of(item: Mapping[str, Any]) -> Keyed:
    """An event item's :class:`Keyed` (the item as stored, or its ``pk`` and ``gsi2pk``)."""
    return Keyed(carrier=first_of(item) or "", type=type_of(item))


# ------------------------------------------------------------------------------------- values
def millis(value: datetime | None) -> int | None:
    return None if value is None else int(value.timestamp() * 1000)


def from_millis(value: Any) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(int(value) / 1000, UTC)


def as_int(value: Any) -> int | None:
    return None if value is None else int(value)


def status_map(status: DeliveryStatus) -> dict[str, Any]:
    fields = {
        "state": status.state,
        "attempts": status.attempts,
        "status_code": status.status_code,
        "error": status.error,
        "updated_at": millis(status.updated_at),
        "next_attempt_at": millis(status.next_attempt_at),
        "lease_until": millis(status.lease_until),
    }
    return {k: v for k, v in fields.items() if v is not None}


def _derivable(event_id: str | None, at: datetime) -> dict[str, str]:
    """The request headers an attempt's event id and time say (its signing time is its start)."""
    return derived_headers(event_id, int(at.timestamp())) if event_id is not None else {}


def attempt_map(attempt: Attempt, event_id: str | None = None) -> dict[str, Any]:
    """An attempt as stored: its request headers without those that follow from the event id and
    the attempt's time (``hd``: a bit per :data:`DERIVED` header the request had, as derived)."""
    headers = dict(attempt.headers) if attempt.headers else None
    flags = 0
    if headers:
        derivable = _derivable(event_id, attempt.at)
        for bit, name in enumerate(DERIVED):
            if name in derivable and headers.get(name) == derivable[name]:
                del headers[name]
                flags |= 1 << bit
    fields = {
        "number": attempt.number,
        "at": millis(attempt.at),
        "duration_ms": attempt.duration_ms,
        "status_code": attempt.status_code,
        "error": attempt.error,
        "response_body": attempt.response_body,
        "headers": headers or None,
        "hd": flags or None,
    }
    return {k: v for k, v in fields.items() if v is not None}


def status_of(integration_id: str, d: Mapping[str, Any]) -> DeliveryStatus:
    return DeliveryStatus(
        integration_id=integration_id,
        state=d.get("state", "pending"),
        attempts=int(d.get("attempts", 0)),
        status_code=as_int(d.get("status_code")),
        error=d.get("error"),
        updated_at=from_millis(d.get("updated_at")),
        next_attempt_at=from_millis(d.get("next_attempt_at")),
        lease_until=from_millis(d.get("lease_until")),
    )


def attempt_of(a: Mapping[str, Any], event_id: str) -> Attempt:
    at = from_millis(a["at"]) or datetime.now(UTC)
    headers = dict(a["headers"]) if a.get("headers") else {}  # absent: not built, or not kept (bounds)
    flags = int(a.get("hd", 0))
    if flags:
        derivable = _derivable(event_id, at)
        headers.update({name: derivable[name] for bit, name in enumerate(DERIVED) if flags & (1 << bit)})
    return Attempt(
        number=int(a["number"]),
        at=at,
        duration_ms=int(a.get("duration_ms", 0)),
        status_code=as_int(a.get("status_code")),
        error=a.get("error"),
        response_body=a.get("response_body"),
        headers=headers or None,
    )


# -------------------------------------------------------------------------------------- items
def event_item(event: ActivityEvent) -> dict[str, Any]:
    """A new event's item: in every index, its first webhook's delivery (if any) its entry in
    ``by_webhook`` and ``by_state``."""
    check_event_id(event.id, event.type)
    first = next(iter(event.deliveries), None)
    device = device_of(event)
    state = event.deliveries[first].state if first is not None else None
    return to_item(
        {
            "pk": event_pk(event.tenant_id, event.id),
            "sk": event_sk(event.id),
            "gsi1sk": time_key(event),  # by_device's sort key, and the event's exact time
            "gsi2pk": webhook_pk(event.tenant_id, first) if first is not None else None,
            "gsi2sk": time_key(event),  # also the sort key of the state indexes
            "gsi3pk": device_pk(event.tenant_id, device) if device is not None else None,
            "gsi4pk": state_key(event.tenant_id, state, event.type) if state is not None else None,
            "body": event.body.decode(),
            "expire_ts": event.expire_ts,
            "deliveries": {i: status_map(s) for i, s in event.deliveries.items()},
            "attempt_log": {},
            "test": True if event.test else None,
        }
    )


def marker_item(event: ActivityEvent, integration_id: str) -> dict[str, Any]:
    """The marker putting ``event`` in the ``by_webhook`` index under a webhook, and the delivery
    in ``by_state`` (``sv``: the version of its state there, the time of its status)."""
    status = event.deliveries.get(integration_id) or DeliveryStatus(integration_id)
    return to_item(
        {
            "pk": event_pk(event.tenant_id, event.id),
            "sk": join("D", event.id, integration_id),
            "gsi2pk": webhook_pk(event.tenant_id, integration_id),
            "gsi2sk": time_key(event),
            "gsi4pk": state_key(event.tenant_id, status.state, event.type),
            "sv": millis(status.updated_at) or 0,
            "expire_ts": event.expire_ts,
        }
    )


def event_from_item(raw: Mapping[str, Any]) -> ActivityEvent:
    item = from_item(raw)
    body = item["body"]
    event_id = event_id_of(item["sk"])
    return ActivityEvent(
        id=event_id,
        tenant_id=split(item["pk"])[1],
        type=cast(ActivityType, type_of(item)),
        time=time_of(item["gsi1sk"]),
        body=body.encode() if isinstance(body, str) else bytes(body),
        expire_ts=int(item["expire_ts"]),
        deliveries={i: status_of(i, d) for i, d in item.get("deliveries", {}).items()},
        # a full log's latest attempts rotate through its slots (store/bounds.py): by number
        attempts={
            i: tuple(sorted((attempt_of(a, event_id) for a in log), key=lambda a: a.number))
            for i, log in item.get("attempt_log", {}).items()
        },
        test=bool(item.get("test", False)),
    )


class KnownEvents:
    """Events read whole, and what recording their statuses needs to know of each (its
    :class:`Keyed`, which never changes), remembered so that it costs no read in the process that
    created or read the event (the usual case)."""

    def __init__(self, table: Table) -> None:
        self.table = table
        self._known: dict[tuple[str, str], Keyed] = {}  # (tenant, event)

    def remember(self, tenant_id: str, event_id: str, keyed: Keyed) -> None:
        if len(self._known) > 4096:
            self._known.clear()
        self._known[(tenant_id, event_id)] = keyed

    def keyed(self, tenant_id: str, event_id: str) -> Keyed | None:
        """What is remembered of the event, read (a small GetItem) when this process has nothing;
        ``None`` when that read finds no event."""
        known = self._known.get((tenant_id, event_id))
        if known is None:  # never read here, or forgotten since
            out = self.table.client.get_item(
                TableName=self.table.name,
                Key=event_key(tenant_id, event_id),
                ProjectionExpression="pk, gsi2pk",
            )
            item = out.get("Item")
            if not item:
                return None
            known = keyed_of(item)
            self.remember(tenant_id, event_id, known)
        return known

    def get(self, tenant_id: str, event_id: str) -> ActivityEvent | None:
        """One event (strongly consistent)."""
        out = self.table.client.get_item(
            TableName=self.table.name, Key=event_key(tenant_id, event_id), ConsistentRead=True
        )
        item = out.get("Item")
        if not item:
            return None
        self.remember(tenant_id, event_id, keyed_of(item))
        return event_from_item(item)

    def events(
        self, tenant_id: str, event_ids: list[str], read: Mapping[str, Mapping[str, Any]] | None = None
    ) -> list[ActivityEvent]:
        """These events, in this order (those gone meanwhile left out): BatchGetItem of those not in
        ``read`` (event items read already, by id)."""
        read = read or {}
        found = {}
        given = [read[e] for e in event_ids if e in read]
        missing = [event_key(tenant_id, e) for e in event_ids if e not in read]
        for item in [*given, *batch_get(self.table.client, self.table.name, missing)]:
            event = found[event_id_of(item["sk"]["S"])] = event_from_item(item)
            self.remember(tenant_id, event.id, keyed_of(item))
        return [found[e] for e in event_ids if e in found]
