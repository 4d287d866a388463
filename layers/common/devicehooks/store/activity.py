"""The activity log in DynamoDB.

One partition per tenant (``pk = T#<tenant>``) holds:

* the event item ``sk = E#<event id>``: exact body, delivery status per webhook (a map, updated
  in place with conditional expressions), attempt detail per webhook (a map of lists), TTL
  ``expire_ts``;
* a marker ``sk = D#<event id>#<integration id>`` for each webhook of the event but the first.

Two keys-only indexes page through it newest first, without a Scan: ``by_time``
(``gsi1pk = T#<tenant>``) holds every event item; ``by_webhook`` (``gsi2pk =
T#<tenant>#I#<integration>``) holds the event item under its first webhook and the markers
under the others. So an event to one webhook is one item (one write before the POST, one after),
and updating a delivery's status never rewrites an index entry (neither index projects it).

The filters of ``GET /events`` have two more indexes, sorted by those same ``<time>#<id>`` keys:
``by_device`` (``gsi3pk = T#<tenant>#V#<device>`` on the event item) and ``by_state`` (``gsi4pk =
T#<tenant>#S#<state>#Y#<type>`` on the item that stands for each delivery: the event item for its
first webhook, the marker for the others; ``-`` for the state of an event to no webhook). A
delivery's state change moves its ``by_state`` entry (the event item's in the same write as the
status, a marker's with one conditional write). Hourly attempt counts per webhook (``H#<integration>#<hour>``)
give its health. Every id in a key is escaped (:mod:`devicehooks.store.keys`: ``%`` as ``%25``,
``#`` as ``%23``), so that ids holding ``#`` make no key of another tenant, event or webhook.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from typing import Any, Protocol

from devicehooks import aws
from devicehooks.aws.dynamo import batch_delete, batch_get, batch_write, from_item, query_all, to_item, value
from devicehooks.domain.activity import (
    DELIVERY_STATES,
    ActivityEvent,
    Attempt,
    DeliveryState,
    DeliveryStatus,
    EventFilter,
    HourCount,
    device_of,
    hour_of,
    matches,
)
from devicehooks.domain.models import ACTIVITY_TYPES
from devicehooks.store.bounds import (
    Bound,
    ItemTooLarge,
    bare_attempt,
    bound_for,
    bounded_attempt,
    bounded_status,
    no_list,
    slot,
    too_large,
)
from devicehooks.store.keys import escape, join, split

BY_TIME = "by_time"
BY_WEBHOOK = "by_webhook"
BY_DEVICE = "by_device"  # gsi3pk T#<tenant>#V#<device>, gsi1sk: each event item
BY_STATE = "by_state"  # gsi4pk T#<tenant>#S#<state>#Y#<type>, gsi2sk, and gsi2pk (its webhook): each delivery
INDEX_KEYS = {  # each index's partition and sort key attributes (template.yaml)
    BY_TIME: ("gsi1pk", "gsi1sk"),
    BY_WEBHOOK: ("gsi2pk", "gsi2sk"),
    BY_DEVICE: ("gsi3pk", "gsi1sk"),
    BY_STATE: ("gsi4pk", "gsi2sk"),
}
NO_DELIVERY = "-"  # the by_state "state" of an event that went to no webhook (its type is still listed)

Update = tuple[DeliveryStatus, Attempt | None]


class Claim(Enum):
    """Outcome of trying to take a delivery."""

    TAKEN = "taken"  # this worker may POST
    DONE = "done"  # already delivered (or no such delivery): nothing to do
    BUSY = "busy"  # another worker holds the lease: try again later
    STALE = "stale"  # it has made more attempts than the caller saw: someone else took it on since


class ActivityStore(Protocol):
    """Where events and their delivery outcomes are kept (tests/contract checks every implementation)."""

    def create(self, event: ActivityEvent) -> ActivityEvent | None:
        """Store a new event with its deliveries' first statuses.

        ``None`` when this call stored it; when it was already there, the stored event (which
        is left as it is) so that the caller can see where its deliveries stand.
        """

    def get(self, tenant_id: str, event_id: str) -> ActivityEvent | None:
        """One event with its attempt detail (strongly consistent)."""

    def claim(
        self,
        tenant_id: str,
        event_id: str,
        integration_id: str,
        now: datetime,
        lease_seconds: int,
        seen_attempts: int | None = None,
    ) -> Claim:
        """Take the right to POST this delivery for ``lease_seconds``; with ``seen_attempts``, only
        if it has made that many attempts still (the caller read it so). ``STALE`` when it has made
        more (an attempt was recorded since: the caller decides whether its work is superseded or
        must be tried again on fresh data); ``BUSY`` while another worker holds the lease."""

    def record(self, tenant_id: str, event_id: str, updates: Sequence[Update], deliveries: int | None = None) -> None:
        """Store deliveries' new statuses and append their attempts, in one write when possible.

        A delivery recorded as delivered is never changed by a status that is not ``delivered``
        (a late report of a failure must not hide a success); such an update is dropped.

        What is kept is bounded (``store/bounds.py``) by the event's number of webhooks,
        ``deliveries`` (``None``: as many as a tenant may have): each attempt capped, each delivery's
        log its first and latest attempts. A write refused for the item's size all the same records
        the status with the attempt bare, then without it: never an error.
        """

    def add_deliveries(self, tenant_id: str, event_id: str, integration_ids: list[str]) -> None:
        """Start tracking deliveries of an existing event to more webhooks."""

    def reopen(
        self,
        tenant_id: str,
        event_id: str,
        integration_id: str,
        now: datetime,
        seen_attempts: int,
        from_state: DeliveryState | None = None,
    ) -> bool:
        """Make a delivery pending again, due ``now``, for a redelivery (in whatever state it is,
        or only in ``from_state``), if it has made ``seen_attempts`` attempts still and no attempt
        is in flight (its lease has run out).

        ``False`` otherwise, or when it does not exist: one conditional write, so of two callers
        that saw the same attempts at most one reopens it.
        """

    def webhook_events(
        self, tenant_id: str, integration_id: str, since: datetime, until: datetime, limit: int
    ) -> list[ActivityEvent]:
        """At most ``limit`` of the events that went to a webhook with ``since <= time < until``,
        oldest first (the ``by_webhook`` index, no Scan)."""

    def list_events(
        self,
        tenant_id: str,
        page: int,
        per_page: int,
        integration_id: str | None = None,
        only: EventFilter | None = None,
    ) -> list[ActivityEvent]:
        """A page of the tenant's events, newest first, optionally only one webhook's, and only
        those ``only`` lets through."""

    def count_attempts(self, tenant_id: str, integration_id: str, counts: HourCount, expire_ts: int) -> None:
        """Add an hour's attempts to a webhook's counts of that hour (and make its last attempt
        the hour's last, when it is the latest)."""

    def hour_counts(self, tenant_id: str, integration_id: str, until: datetime, hours: int) -> list[HourCount]:
        """A webhook's counted hours up to ``until``'s hour, newest first, at most ``hours`` of them
        (hours without attempts have no counts)."""

    def remove_tenant(self, tenant_id: str) -> int:
        """Delete a tenant's whole activity log; returns the number of events it held."""


def _pk(tenant_id: str) -> str:
    return join("T", tenant_id)


def _webhook_pk(tenant_id: str, integration_id: str) -> str:
    return join("T", tenant_id, "I", integration_id)


def _time_prefix(at: datetime) -> str:
    # isoformat, not strftime: its year has four digits before year 1000 too (strftime's "%Y" on
    # glibc writes "1" for year 1, which would sort after "2026")
    return at.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def _time_key(event: ActivityEvent) -> str:
    return _time_prefix(event.time) + "#" + escape(event.id)


def _state_pk(tenant_id: str, state: str, event_type: str) -> str:
    return join("T", tenant_id, "S", state, "Y", event_type)


def _state_keys(tenant_id: str, state: str, event_type: str) -> dict[str, str]:
    """A delivery's partition in ``by_state`` (it changes with its state; the sort key is the item's
    ``gsi2sk``, ``<time>#<event>``, which never does, and the index shows the item's ``gsi2pk``, the
    delivery's webhook)."""
    return {"gsi4pk": _state_pk(tenant_id, state, event_type)}


@dataclass(frozen=True, slots=True)
class _Keyed:
    """What writing a delivery's state keys needs to know of its event, which never changes: the
    webhook whose delivery the event item carries (its first; ``""``: none) and the event's type."""

    carrier: str
    type: str


def _keyed(item: Mapping[str, Any]) -> _Keyed:
    """An event item's :class:`_Keyed`."""
    return _Keyed(carrier=_first_of(item) or "", type=str(item["event_type"]["S"]))


def _millis(value: datetime | None) -> int | None:
    return None if value is None else int(value.timestamp() * 1000)


def _from_millis(value: Any) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(int(value) / 1000, UTC)


def _int(value: Any) -> int | None:
    return None if value is None else int(value)


def _status_map(status: DeliveryStatus) -> dict[str, Any]:
    fields = {
        "state": status.state,
        "attempts": status.attempts,
        "status_code": status.status_code,
        "error": status.error,
        "updated_at": _millis(status.updated_at),
        "next_attempt_at": _millis(status.next_attempt_at),
        "lease_until": _millis(status.lease_until),
    }
    return {k: v for k, v in fields.items() if v is not None}


def _attempt_map(attempt: Attempt) -> dict[str, Any]:
    fields = {
        "number": attempt.number,
        "at": _millis(attempt.at),
        "duration_ms": attempt.duration_ms,
        "status_code": attempt.status_code,
        "error": attempt.error,
        "response_body": attempt.response_body,
        "headers": dict(attempt.headers) if attempt.headers else None,
    }
    return {k: v for k, v in fields.items() if v is not None}


def _status(integration_id: str, d: Mapping[str, Any]) -> DeliveryStatus:
    return DeliveryStatus(
        integration_id=integration_id,
        state=d.get("state", "pending"),
        attempts=int(d.get("attempts", 0)),
        status_code=_int(d.get("status_code")),
        error=d.get("error"),
        updated_at=_from_millis(d.get("updated_at")),
        next_attempt_at=_from_millis(d.get("next_attempt_at")),
        lease_until=_from_millis(d.get("lease_until")),
    )


def _attempt(a: Mapping[str, Any]) -> Attempt:
    return Attempt(
        number=int(a["number"]),
        at=_from_millis(a["at"]) or datetime.now(UTC),
        duration_ms=int(a.get("duration_ms", 0)),
        status_code=_int(a.get("status_code")),
        error=a.get("error"),
        response_body=a.get("response_body"),
        headers=dict(a["headers"]) if a.get("headers") else None,  # absent: not built, or not kept (bounds)
    )


def _event_from_item(raw: Mapping[str, Any]) -> ActivityEvent:
    item = from_item(raw)
    body = item["body"]
    return ActivityEvent(
        id=item["event_id"],
        tenant_id=item["tenant_id"],
        type=item["event_type"],
        time=datetime.fromisoformat(item["time"]),
        body=body.encode() if isinstance(body, str) else bytes(body),
        expire_ts=int(item["expire_ts"]),
        deliveries={i: _status(i, d) for i, d in item.get("deliveries", {}).items()},
        # a full log's latest attempts rotate through its slots (store/bounds.py): by number
        attempts={
            i: tuple(sorted((_attempt(a) for a in log), key=lambda a: a.number))
            for i, log in item.get("attempt_log", {}).items()
        },
        test=bool(item.get("test", False)),
    )


def _take(entries: Iterator[tuple[str, str]], count: int) -> list[tuple[str, str]]:
    taken: list[tuple[str, str]] = []
    for entry in entries:
        taken.append(entry)
        if len(taken) >= count:
            break
    return taken


def _hour_sk(integration_id: str, hour: datetime) -> str:
    return join("H", integration_id, hour_of(hour).strftime("%Y-%m-%dT%H"))


def _hour_count(item: Mapping[str, Any]) -> HourCount:
    return HourCount(
        hour=datetime.strptime(split(str(item["sk"]))[2], "%Y-%m-%dT%H").replace(tzinfo=UTC),
        delivered=int(item.get("delivered", 0)),
        failed=int(item.get("failed", 0)),
        last_at=_from_millis(item.get("last_at")) if item.get("last_at") else None,
        last_delivered=bool(item.get("last_delivered", False)),
        last_status_code=_int(item.get("last_status_code")),
        last_error=item.get("last_error"),
    )


def _first_of(item: Mapping[str, Any]) -> str | None:
    """The webhook an event item stands for in ``by_webhook`` (its first), from its index key."""
    key = item.get("gsi2pk", {}).get("S")
    return split(key)[3] if key else None  # T#<tenant>#I#<integration>


def _event_id_of(sort_key: str) -> str:
    """The event id in an index entry's table sort key (``E#<event>`` or ``D#<event>#<integration>``)."""
    return split(sort_key)[1]


class DynamoActivityStore:
    """:class:`ActivityStore` on the activity table of template.yaml."""

    def __init__(self, table_name: str, client: Any = None) -> None:
        self.table_name = table_name
        self._client = client
        self._known: dict[tuple[str, str], _Keyed] = {}  # (tenant, event) -> see _remember

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = aws.client("dynamodb")
        return self._client

    def _key(self, tenant_id: str, event_id: str) -> dict[str, Any]:
        return {"pk": {"S": _pk(tenant_id)}, "sk": {"S": join("E", event_id)}}

    def _marker(self, event: ActivityEvent, integration_id: str) -> dict[str, Any]:
        """The marker putting ``event`` in the ``by_webhook`` index under a webhook, and the delivery
        in ``by_state``."""
        status = event.deliveries.get(integration_id) or DeliveryStatus(integration_id)
        return to_item(
            {
                "pk": _pk(event.tenant_id),
                "sk": join("D", event.id, integration_id),
                "gsi2pk": _webhook_pk(event.tenant_id, integration_id),
                "gsi2sk": _time_key(event),
                **_state_keys(event.tenant_id, status.state, event.type),
                "sv": _millis(status.updated_at) or 0,
                "expire_ts": event.expire_ts,
            }
        )

    def _markers(self, event: ActivityEvent, integration_ids: list[str]) -> list[dict[str, Any]]:
        """Markers putting ``event`` in the ``by_webhook`` index under these webhooks."""
        return [{"PutRequest": {"Item": self._marker(event, i)}} for i in integration_ids]

    def _remember(self, tenant_id: str, event_id: str, keyed: _Keyed) -> None:
        """What recording a status of this event needs to know (it never changes), so that it costs
        no read in the process that created or read the event (the usual case)."""
        if len(self._known) > 4096:
            self._known.clear()
        self._known[(tenant_id, event_id)] = keyed

    def _keyed(self, tenant_id: str, event_id: str) -> _Keyed | None:
        """:meth:`_remember`'s knowledge, read (a small GetItem) when this process has none; ``None``
        when that read finds no event."""
        known = self._known.get((tenant_id, event_id))
        if known is None:  # never read here, or forgotten since
            out = self.client.get_item(
                TableName=self.table_name,
                Key=self._key(tenant_id, event_id),
                ProjectionExpression="gsi2pk, event_type",
            )
            item = out.get("Item")
            if not item:
                return None
            known = _keyed(item)
            self._remember(tenant_id, event_id, known)
        return known

    def create(self, event: ActivityEvent) -> ActivityEvent | None:
        first = next(iter(event.deliveries), None)
        device = device_of(event)
        if first is not None:
            state_keys = _state_keys(event.tenant_id, event.deliveries[first].state, event.type)
        else:  # no webhook: still listed under its type
            state_keys = {"gsi4pk": _state_pk(event.tenant_id, NO_DELIVERY, event.type)}
        item = to_item(
            {
                "pk": _pk(event.tenant_id),
                "sk": join("E", event.id),
                "gsi1pk": _pk(event.tenant_id),
                "gsi1sk": _time_key(event),
                "gsi2pk": _webhook_pk(event.tenant_id, first) if first is not None else None,
                "gsi2sk": _time_key(event),  # also the sort key of the state indexes
                "gsi3pk": join("T", event.tenant_id, "V", device) if device is not None else None,
                **state_keys,
                "event_id": event.id,
                "tenant_id": event.tenant_id,
                "event_type": event.type,
                "time": event.time.astimezone(UTC).isoformat(),
                "body": event.body.decode(),
                "expire_ts": event.expire_ts,
                "deliveries": {i: _status_map(s) for i, s in event.deliveries.items()},
                "attempt_log": {},
                "test": True if event.test else None,
            }
        )
        try:
            self.client.put_item(
                TableName=self.table_name,
                Item=item,
                ConditionExpression="attribute_not_exists(sk)",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except self.client.exceptions.ConditionalCheckFailedException as exc:
            existing = exc.response.get("Item")
            if not existing:  # pragma: no cover - the condition only fails on an existing item
                raise
            stored = _event_from_item(existing)
            keyed = _keyed(existing)
            self._remember(stored.tenant_id, stored.id, keyed)
            # A copy of the message: the first writer may have stopped before its markers. Each
            # is written only where it is missing (a marker there may hold a newer state).
            for integration_id in stored.deliveries:
                if integration_id == _first_of(existing):
                    continue
                try:
                    self.client.put_item(
                        TableName=self.table_name,
                        Item=self._marker(stored, integration_id),
                        ConditionExpression="attribute_not_exists(sk)",
                    )
                except self.client.exceptions.ConditionalCheckFailedException:
                    continue
            return stored
        self._remember(event.tenant_id, event.id, _Keyed(first or "", event.type))
        # the event item is in the index under its first webhook; markers for the others
        batch_write(self.client, self.table_name, self._markers(event, list(event.deliveries)[1:]))
        return None

    def get(self, tenant_id: str, event_id: str) -> ActivityEvent | None:
        out = self.client.get_item(TableName=self.table_name, Key=self._key(tenant_id, event_id), ConsistentRead=True)
        item = out.get("Item")
        if not item:
            return None
        self._remember(tenant_id, event_id, _keyed(item))
        return _event_from_item(item)

    def claim(
        self,
        tenant_id: str,
        event_id: str,
        integration_id: str,
        now: datetime,
        lease_seconds: int,
        seen_attempts: int | None = None,
    ) -> Claim:
        now_ms = _millis(now) or 0
        condition = (
            "attribute_exists(deliveries.#i) AND deliveries.#i.#s <> :delivered AND "
            "(attribute_not_exists(deliveries.#i.lease_until) OR deliveries.#i.lease_until < :now)"
        )
        values = {
            ":until": {"N": str(now_ms + lease_seconds * 1000)},
            ":now": {"N": str(now_ms)},
            ":delivered": {"S": "delivered"},
        }
        if seen_attempts is not None:
            condition += " AND deliveries.#i.attempts = :seen"
            values[":seen"] = {"N": str(seen_attempts)}
        try:
            self.client.update_item(
                TableName=self.table_name,
                Key=self._key(tenant_id, event_id),
                UpdateExpression="SET deliveries.#i.lease_until = :until",
                ConditionExpression=condition,
                ExpressionAttributeNames={"#i": integration_id, "#s": "state"},
                ExpressionAttributeValues=values,
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except self.client.exceptions.ConditionalCheckFailedException as exc:
            existing = exc.response.get("Item")
            status = _event_from_item(existing).deliveries.get(integration_id) if existing else None
            if status is None or status.state == "delivered":
                return Claim.DONE
            if seen_attempts is not None and status.attempts > seen_attempts:
                return Claim.STALE
            return Claim.BUSY
        except self.client.exceptions.ClientError as exc:
            if too_large(exc):  # an item from before the bounds: not taken, so nothing is POSTed unrecorded
                raise ItemTooLarge(f"event {event_id}: the activity item has no room to lease a delivery") from exc
            raise
        return Claim.TAKEN

    def _mark(
        self, tenant_id: str, event_id: str, status: DeliveryStatus, keyed: _Keyed, at: datetime | None = None
    ) -> None:
        """Move a delivery's marker to its new state's index partitions (a missing marker is not
        written; a newer state recorded meanwhile is not overwritten)."""
        version = _millis(at or status.updated_at) or 0
        try:
            self.client.update_item(
                TableName=self.table_name,
                Key={"pk": {"S": _pk(tenant_id)}, "sk": {"S": join("D", event_id, status.integration_id)}},
                UpdateExpression="SET gsi4pk = :g, sv = :v",
                ConditionExpression="attribute_exists(sk) AND sv <= :v",
                ExpressionAttributeValues={
                    ":g": {"S": _state_pk(tenant_id, status.state, keyed.type)},
                    ":v": {"N": str(version)},
                },
            )
        except self.client.exceptions.ConditionalCheckFailedException:
            return

    def record(self, tenant_id: str, event_id: str, updates: Sequence[Update], deliveries: int | None = None) -> None:
        if not updates:
            return
        bound = bound_for(deliveries) if deliveries is not None else Bound()
        keyed = self._keyed(tenant_id, event_id)
        bounded = [(bounded_status(s), None if a is None else bounded_attempt(a, bound)) for s, a in updates]
        try:
            self._write(tenant_id, event_id, bounded, bound.keep, keyed)
        except self.client.exceptions.ConditionalCheckFailedException:
            if len(bounded) > 1:  # one of them met a success: record the others one by one
                for update in bounded:
                    self._record_alone(tenant_id, event_id, update, bound.keep, keyed)
            return
        except self.client.exceptions.ClientError as exc:
            if not (too_large(exc) or no_list(exc)):
                raise
            for update in bounded:  # each as it can be
                self._record_alone(tenant_id, event_id, update, bound.keep, keyed)

    def _record_alone(self, tenant_id: str, event_id: str, update: Update, keep: int, keyed: _Keyed | None) -> None:
        """One delivery's update, written as it can be: its log started when it is not there yet (a
        rotating slot needs the list); refused for the item's size (an item from before the bounds),
        the attempt recorded bare, then not at all: its status still counts it, so it is never
        POSTed again for want of a record. :class:`ItemTooLarge` when not even the status fits."""
        status, attempt = update
        candidates = [attempt] if attempt is None else [attempt, bare_attempt(attempt), None]
        for candidate in candidates:
            for append in (False, True):
                try:
                    self._write(tenant_id, event_id, [(status, candidate)], keep, keyed, append)
                    return
                except self.client.exceptions.ConditionalCheckFailedException:
                    return  # a success recorded meanwhile
                except self.client.exceptions.ClientError as exc:
                    if no_list(exc) and not append:
                        continue  # start the log
                    if too_large(exc):
                        break  # a smaller record
                    raise
        raise ItemTooLarge(f"event {event_id}: the activity item has no room for the status of a delivery")

    def _write(
        self,
        tenant_id: str,
        event_id: str,
        updates: Sequence[Update],
        keep: int,
        keyed: _Keyed | None,
        append: bool = False,
    ) -> None:
        """One write of these statuses and attempts (bounded already): each attempt appended to its
        delivery's log while the log is not full, else written in the slot of the one it replaces
        (``append``: appended whatever its number, to start a log that is not there)."""
        names: dict[str, str] = {}
        values: dict[str, Any] = {}
        sets: list[str] = []
        conditions = ["attribute_exists(sk)"]
        for n, (status, attempt) in enumerate(updates):
            if keyed is not None and status.integration_id == keyed.carrier:
                values[":g"] = {"S": _state_pk(tenant_id, status.state, keyed.type)}
            names[f"#i{n}"] = status.integration_id
            values[f":s{n}"] = value(_status_map(status))
            sets.append(f"deliveries.#i{n} = :s{n}")
            if attempt is not None:
                at = None if append else slot(attempt.number, keep)
                if at is None:
                    values[f":a{n}"] = {"L": [value(_attempt_map(attempt))]}
                    values[":empty"] = {"L": []}
                    sets.append(f"attempt_log.#i{n} = list_append(if_not_exists(attempt_log.#i{n}, :empty), :a{n})")
                else:  # the log is full: this one replaces the oldest of the latest (store/bounds.py)
                    values[f":a{n}"] = value(_attempt_map(attempt))
                    sets.append(f"attempt_log.#i{n}[{at}] = :a{n}")
            if status.state != "delivered":
                # a late failure report must not overwrite a success recorded meanwhile
                names["#s"] = "state"
                values[":d"] = {"S": "delivered"}
                conditions.append(f"(attribute_not_exists(deliveries.#i{n}) OR deliveries.#i{n}.#s <> :d)")
        if ":g" in values:  # last: moto measures the item when a top-level attribute is set
            sets.append("gsi4pk = :g")
        self.client.update_item(
            TableName=self.table_name,
            Key=self._key(tenant_id, event_id),
            UpdateExpression="SET " + ", ".join(sets),
            ConditionExpression=" AND ".join(conditions),
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
        )
        if keyed is not None:  # the other webhooks' deliveries are in the indexes through their markers
            for status, _ in updates:
                if status.integration_id != keyed.carrier:
                    self._mark(tenant_id, event_id, status, keyed)

    def reopen(
        self,
        tenant_id: str,
        event_id: str,
        integration_id: str,
        now: datetime,
        seen_attempts: int,
        from_state: DeliveryState | None = None,
    ) -> bool:
        keyed = self._keyed(tenant_id, event_id)
        now_ms = str(_millis(now))
        condition = (
            "attribute_exists(deliveries.#i) AND deliveries.#i.attempts = :seen AND "
            "(attribute_not_exists(deliveries.#i.lease_until) OR deliveries.#i.lease_until < :now)"
        )
        values: dict[str, Any] = {
            ":pending": {"S": "pending"},
            ":now": {"N": now_ms},
            ":seen": {"N": str(seen_attempts)},
        }
        if from_state is not None:
            condition += " AND deliveries.#i.#s = :from"
            values[":from"] = {"S": from_state}
        update = "SET deliveries.#i.#s = :pending, deliveries.#i.next_attempt_at = :now"
        if keyed is not None and keyed.carrier == integration_id:
            values[":g"] = {"S": _state_pk(tenant_id, "pending", keyed.type)}
            update += ", gsi4pk = :g"
        try:
            self.client.update_item(
                TableName=self.table_name,
                Key=self._key(tenant_id, event_id),
                UpdateExpression=update + " REMOVE deliveries.#i.lease_until",
                ConditionExpression=condition,
                ExpressionAttributeNames={"#i": integration_id, "#s": "state"},
                ExpressionAttributeValues=values,
            )
        except self.client.exceptions.ConditionalCheckFailedException:
            return False
        except self.client.exceptions.ClientError as exc:
            if too_large(exc):  # an item from before the bounds: the caller answers a clear 409
                raise ItemTooLarge(f"event {event_id}: the activity item has no room to reopen a delivery") from exc
            raise
        if keyed is not None and keyed.carrier != integration_id:
            self._mark(tenant_id, event_id, DeliveryStatus(integration_id, state="pending"), keyed, now)
        return True

    def webhook_events(
        self, tenant_id: str, integration_id: str, since: datetime, until: datetime, limit: int
    ) -> list[ActivityEvent]:
        if limit <= 0 or since >= until:
            return []
        event_ids: list[str] = []
        # sort keys are "<time>#<id>": between the bare times is since <= time < until
        for item in query_all(
            self.client,
            TableName=self.table_name,
            IndexName=BY_WEBHOOK,
            KeyConditionExpression="gsi2pk = :p AND gsi2sk BETWEEN :a AND :b",
            ExpressionAttributeValues={
                ":p": {"S": _webhook_pk(tenant_id, integration_id)},
                ":a": {"S": _time_prefix(since)},
                ":b": {"S": _time_prefix(until)},
            },
            ScanIndexForward=True,
            Limit=min(limit, 1000),
        ):
            event_ids.append(_event_id_of(item["sk"]["S"]))
            if len(event_ids) >= limit:
                break
        return self._events(tenant_id, event_ids)  # recover reopens some: remembered, no read then

    def add_deliveries(self, tenant_id: str, event_id: str, integration_ids: list[str]) -> None:
        event = self.get(tenant_id, event_id)
        if event is None:
            return
        added: list[str] = []
        for integration_id in (i for i in integration_ids if i not in event.deliveries):
            try:
                self.client.update_item(
                    TableName=self.table_name,
                    Key=self._key(tenant_id, event_id),
                    UpdateExpression="SET deliveries.#i = :status",
                    ConditionExpression="attribute_exists(sk) AND attribute_not_exists(deliveries.#i)",
                    ExpressionAttributeNames={"#i": integration_id},
                    ExpressionAttributeValues={":status": value(_status_map(DeliveryStatus(integration_id)))},
                )
            except self.client.exceptions.ConditionalCheckFailedException:
                continue
            except self.client.exceptions.ClientError as exc:
                if too_large(exc):
                    raise ItemTooLarge(f"event {event_id}: the activity item has no room for another delivery") from exc
                raise
            added.append(integration_id)
        batch_write(self.client, self.table_name, self._markers(event, added))

    def _entries(
        self,
        index: str,
        partition: str,
        lower: str | None,
        upper: str | None,
        limit: int,
        webhook: str | None = None,
    ) -> Iterator[tuple[str, str]]:
        """An index partition's entries between two times, newest first, as (sort key, event id), the
        sort key (``<time>#<escaped id>``) in the order of the partition, which the merge keeps: a
        Query page at a time, read only as far as the caller goes on. ``webhook``: only the entries
        of that webhook's deliveries (``by_state``), the others read and passed over."""
        pk, sk = INDEX_KEYS[index]
        condition = f"{pk} = :p"
        values: dict[str, Any] = {":p": {"S": partition}}
        # sort keys are "<time>#<id>": between the bare times is lower <= time < upper
        if lower is not None and upper is not None:
            condition += f" AND {sk} BETWEEN :a AND :b"
            values.update({":a": {"S": lower}, ":b": {"S": upper}})
        elif lower is not None:
            condition += f" AND {sk} >= :a"
            values[":a"] = {"S": lower}
        elif upper is not None:
            condition += f" AND {sk} < :b"
            values[":b"] = {"S": upper}
        for item in query_all(
            self.client,
            TableName=self.table_name,
            IndexName=index,
            KeyConditionExpression=condition,
            ExpressionAttributeValues=values,
            ScanIndexForward=False,
            Limit=limit,
        ):
            if webhook is None or item.get("gsi2pk", {}).get("S") == webhook:
                yield item[sk]["S"], _event_id_of(item["sk"]["S"])

    def _streams(
        self, tenant_id: str, integration_id: str | None, only: EventFilter, limit: int
    ) -> list[Iterator[tuple[str, str]]]:
        """The index partitions whose merge, newest first, is exactly the events asked for (an event
        may come more than once, from several of its deliveries, one after the other)."""
        lower = _time_prefix(only.since) if only.since is not None else None
        upper = _time_prefix(only.until) if only.until is not None else None
        if only.device_id is not None:
            return [self._entries(BY_DEVICE, join("T", tenant_id, "V", only.device_id), lower, upper, limit)]
        if not only.keyed:
            if integration_id is None:
                return [self._entries(BY_TIME, _pk(tenant_id), lower, upper, limit)]
            return [self._entries(BY_WEBHOOK, _webhook_pk(tenant_id, integration_id), lower, upper, limit)]
        states: tuple[str, ...] = (only.state,) if only.state else DELIVERY_STATES
        if only.state is None and integration_id is None:
            states = (*states, NO_DELIVERY)
        types = (only.type,) if only.type else ACTIVITY_TYPES
        webhook = _webhook_pk(tenant_id, integration_id) if integration_id is not None else None
        # an event's other deliveries come too (passed over, or the same event again): larger pages
        limit = min(max(4 * limit, 100), 1000)
        return [
            self._entries(BY_STATE, _state_pk(tenant_id, s, t), lower, upper, limit, webhook)
            for s in states
            for t in types
        ]

    def list_events(
        self,
        tenant_id: str,
        page: int,
        per_page: int,
        integration_id: str | None = None,
        only: EventFilter | None = None,
    ) -> list[ActivityEvent]:
        only = only or EventFilter()
        skip = (page - 1) * per_page
        want = skip + per_page
        limit = min(want, 1000)
        if only.device_id is not None and (integration_id is not None or only.state or only.type):
            return self._read_on(tenant_id, integration_id, only, skip, want)[skip:]
        event_ids: list[str] = []
        for _, event_id in heapq.merge(*self._streams(tenant_id, integration_id, only, limit), reverse=True):
            if event_ids and event_ids[-1] == event_id:
                continue  # the same event again, through another of its deliveries
            event_ids.append(event_id)
            if len(event_ids) >= want:
                break
        return self._events(tenant_id, event_ids[skip:])

    def _events(self, tenant_id: str, event_ids: list[str]) -> list[ActivityEvent]:
        """These events, in this order (those gone meanwhile left out): BatchGetItem. What recording
        their statuses needs is remembered (:meth:`_remember`)."""
        found = {}
        for item in batch_get(self.client, self.table_name, [self._key(tenant_id, e) for e in event_ids]):
            event = found[item["event_id"]["S"]] = _event_from_item(item)
            self._remember(tenant_id, event.id, _keyed(item))
        return [found[e] for e in event_ids if e in found]

    def _read_on(
        self, tenant_id: str, integration_id: str | None, only: EventFilter, skip: int, want: int
    ) -> list[ActivityEvent]:
        """A device's events narrowed further (a webhook, a state, a type): its index entries, newest
        first, read with their events until ``want`` match: at most the device's events of the window."""
        entries = self._streams(
            tenant_id, None, EventFilter(device_id=only.device_id, since=only.since, until=only.until), min(want, 100)
        )[0]
        found: list[ActivityEvent] = []
        while len(found) < want:
            chunk = [event_id for _, event_id in _take(entries, min(100, want - len(found)))]
            if not chunk:
                break
            found += [e for e in self._events(tenant_id, chunk) if matches(e, integration_id, only)]
        return found[:want]

    # ------------------------------------------------------------------ webhook health
    def count_attempts(self, tenant_id: str, integration_id: str, counts: HourCount, expire_ts: int) -> None:
        values: dict[str, Any] = {
            ":d": {"N": str(counts.delivered)},
            ":f": {"N": str(counts.failed)},
            ":x": {"N": str(expire_ts)},
            ":at": {"N": str(_millis(counts.last_at) or 0)},
            ":ok": {"BOOL": counts.last_delivered},
            ":c": value(counts.last_status_code),
            ":e": value(counts.last_error),
        }
        key = {"pk": {"S": _pk(tenant_id)}, "sk": {"S": _hour_sk(integration_id, counts.hour)}}
        try:
            self.client.update_item(
                TableName=self.table_name,
                Key=key,
                UpdateExpression="ADD delivered :d, failed :f SET expire_ts = :x, "
                "last_at = :at, last_delivered = :ok, last_status_code = :c, last_error = :e",
                ConditionExpression="attribute_not_exists(last_at) OR last_at <= :at",
                ExpressionAttributeValues=values,
            )
        except self.client.exceptions.ConditionalCheckFailedException:
            # a later attempt is the hour's last already (another dispatcher wrote after this one's
            # attempts): only the counts are added (a second write, when writers cross)
            self.client.update_item(
                TableName=self.table_name,
                Key=key,
                UpdateExpression="ADD delivered :d, failed :f",
                ExpressionAttributeValues={":d": values[":d"], ":f": values[":f"]},
            )

    def hour_counts(self, tenant_id: str, integration_id: str, until: datetime, hours: int) -> list[HourCount]:
        out = self.client.query(
            TableName=self.table_name,
            KeyConditionExpression="pk = :p AND sk BETWEEN :a AND :b",
            ExpressionAttributeValues={
                ":p": {"S": _pk(tenant_id)},
                ":a": {"S": join("H", integration_id) + "#"},  # the separator: not a longer id's
                ":b": {"S": _hour_sk(integration_id, until)},
            },
            ScanIndexForward=False,
            Limit=max(1, hours),
        )
        return [_hour_count(from_item(item)) for item in out.get("Items", [])]

    def remove_tenant(self, tenant_id: str) -> int:
        keys = [
            {"pk": i["pk"], "sk": i["sk"]}
            for i in query_all(
                self.client,
                TableName=self.table_name,
                KeyConditionExpression="pk = :p",
                ExpressionAttributeValues={":p": {"S": _pk(tenant_id)}},
                ProjectionExpression="pk, sk",
            )
        ]
        batch_delete(self.client, self.table_name, keys)
        return sum(1 for k in keys if k["sk"]["S"].startswith("E#"))


__all__ = ["ActivityStore", "Claim", "DynamoActivityStore", "EventFilter", "HourCount", "Update"]
