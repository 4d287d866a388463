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
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from enum import Enum
from typing import Any, Protocol

from devicehooks import aws
from devicehooks.domain.activity import ActivityEvent, Attempt, DeliveryState, DeliveryStatus
from devicehooks.store.dynamo import batch_delete, batch_get, batch_write, from_item, query_all, to_item, value

BY_TIME = "by_time"
BY_WEBHOOK = "by_webhook"

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

    def record(self, tenant_id: str, event_id: str, updates: Sequence[Update]) -> None:
        """Store deliveries' new statuses and append their attempts, in one write when possible.

        A delivery recorded as delivered is never changed by a status that is not ``delivered``
        (a late report of a failure must not hide a success); such an update is dropped.
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
        self, tenant_id: str, page: int, per_page: int, integration_id: str | None = None
    ) -> list[ActivityEvent]:
        """A page of the tenant's events, newest first, optionally only one webhook's."""

    def remove_tenant(self, tenant_id: str) -> int:
        """Delete a tenant's whole activity log; returns the number of events it held."""


def _pk(tenant_id: str) -> str:
    return f"T#{tenant_id}"


def _webhook_pk(tenant_id: str, integration_id: str) -> str:
    return f"{_pk(tenant_id)}#I#{integration_id}"


def _time_prefix(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _time_key(event: ActivityEvent) -> str:
    return _time_prefix(event.time) + "#" + event.id


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
        attempts={i: tuple(_attempt(a) for a in log) for i, log in item.get("attempt_log", {}).items()},
        test=bool(item.get("test", False)),
    )


def _event_id_of(sort_key: str) -> str:
    """The event id in an index entry's table sort key (``E#<event>`` or ``D#<event>#<integration>``)."""
    if sort_key.startswith("D#"):
        return sort_key[2:].rsplit("#", 1)[0]
    return sort_key[2:]


class DynamoActivityStore:
    """:class:`ActivityStore` on the activity table of template.yaml."""

    def __init__(self, table_name: str, client: Any = None) -> None:
        self.table_name = table_name
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = aws.client("dynamodb")
        return self._client

    def _key(self, tenant_id: str, event_id: str) -> dict[str, Any]:
        return {"pk": {"S": _pk(tenant_id)}, "sk": {"S": f"E#{event_id}"}}

    def _markers(self, event: ActivityEvent, integration_ids: list[str]) -> list[dict[str, Any]]:
        """Markers putting ``event`` in the ``by_webhook`` index under these webhooks."""
        return [
            {
                "PutRequest": {
                    "Item": to_item(
                        {
                            "pk": _pk(event.tenant_id),
                            "sk": f"D#{event.id}#{integration_id}",
                            "gsi2pk": _webhook_pk(event.tenant_id, integration_id),
                            "gsi2sk": _time_key(event),
                            "expire_ts": event.expire_ts,
                        }
                    )
                }
            }
            for integration_id in integration_ids
        ]

    def create(self, event: ActivityEvent) -> ActivityEvent | None:
        first = next(iter(event.deliveries), None)
        item = to_item(
            {
                "pk": _pk(event.tenant_id),
                "sk": f"E#{event.id}",
                "gsi1pk": _pk(event.tenant_id),
                "gsi1sk": _time_key(event),
                "gsi2pk": _webhook_pk(event.tenant_id, first) if first is not None else None,
                "gsi2sk": _time_key(event) if first is not None else None,
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
            # A copy of the message: the first writer may have stopped before its markers.
            # Markers are idempotent, so they are written again (no transaction: half the cost).
            batch_write(self.client, self.table_name, self._markers(stored, list(stored.deliveries)[1:]))
            return stored
        # the event item is in the index under its first webhook; markers for the others
        batch_write(self.client, self.table_name, self._markers(event, list(event.deliveries)[1:]))
        return None

    def get(self, tenant_id: str, event_id: str) -> ActivityEvent | None:
        out = self.client.get_item(TableName=self.table_name, Key=self._key(tenant_id, event_id), ConsistentRead=True)
        item = out.get("Item")
        return _event_from_item(item) if item else None

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
        return Claim.TAKEN

    def record(self, tenant_id: str, event_id: str, updates: Sequence[Update]) -> None:
        if not updates:
            return
        names: dict[str, str] = {}
        values: dict[str, Any] = {}
        sets: list[str] = []
        conditions = ["attribute_exists(sk)"]
        for n, (status, attempt) in enumerate(updates):
            names[f"#i{n}"] = status.integration_id
            values[f":s{n}"] = value(_status_map(status))
            sets.append(f"deliveries.#i{n} = :s{n}")
            if attempt is not None:
                values[f":a{n}"] = {"L": [value(_attempt_map(attempt))]}
                values[":empty"] = {"L": []}
                sets.append(f"attempt_log.#i{n} = list_append(if_not_exists(attempt_log.#i{n}, :empty), :a{n})")
            if status.state != "delivered":
                # a late failure report must not overwrite a success recorded meanwhile
                names["#s"] = "state"
                values[":d"] = {"S": "delivered"}
                conditions.append(f"(attribute_not_exists(deliveries.#i{n}) OR deliveries.#i{n}.#s <> :d)")
        try:
            self.client.update_item(
                TableName=self.table_name,
                Key=self._key(tenant_id, event_id),
                UpdateExpression="SET " + ", ".join(sets),
                ConditionExpression=" AND ".join(conditions),
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            )
        except self.client.exceptions.ConditionalCheckFailedException:
            if len(updates) > 1:  # one of them met a success: record the others one by one
                for update in updates:
                    self.record(tenant_id, event_id, [update])

    def reopen(
        self,
        tenant_id: str,
        event_id: str,
        integration_id: str,
        now: datetime,
        seen_attempts: int,
        from_state: DeliveryState | None = None,
    ) -> bool:
        now_ms = str(_millis(now))
        condition = (
            "attribute_exists(deliveries.#i) AND deliveries.#i.attempts = :seen AND "
            "(attribute_not_exists(deliveries.#i.lease_until) OR deliveries.#i.lease_until < :now)"
        )
        values = {":pending": {"S": "pending"}, ":now": {"N": now_ms}, ":seen": {"N": str(seen_attempts)}}
        if from_state is not None:
            condition += " AND deliveries.#i.#s = :from"
            values[":from"] = {"S": from_state}
        try:
            self.client.update_item(
                TableName=self.table_name,
                Key=self._key(tenant_id, event_id),
                UpdateExpression="SET deliveries.#i.#s = :pending, deliveries.#i.next_attempt_at = :now "
                "REMOVE deliveries.#i.lease_until",
                ConditionExpression=condition,
                ExpressionAttributeNames={"#i": integration_id, "#s": "state"},
                ExpressionAttributeValues=values,
            )
        except self.client.exceptions.ConditionalCheckFailedException:
            return False
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
        found = {
            event.id: event
            for event in map(
                _event_from_item,
                batch_get(self.client, self.table_name, [self._key(tenant_id, e) for e in event_ids]),
            )
        }
        return [found[e] for e in event_ids if e in found]

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
            added.append(integration_id)
        batch_write(self.client, self.table_name, self._markers(event, added))

    def list_events(
        self, tenant_id: str, page: int, per_page: int, integration_id: str | None = None
    ) -> list[ActivityEvent]:
        skip = (page - 1) * per_page
        if integration_id is None:
            index, attribute, partition = BY_TIME, "gsi1pk", _pk(tenant_id)
        else:
            index, attribute, partition = BY_WEBHOOK, "gsi2pk", _webhook_pk(tenant_id, integration_id)
        event_ids: list[str] = []
        for item in query_all(
            self.client,
            TableName=self.table_name,
            IndexName=index,
            KeyConditionExpression=f"{attribute} = :p",
            ExpressionAttributeValues={":p": {"S": partition}},
            ScanIndexForward=False,
            Limit=min(skip + per_page, 1000),
        ):
            event_ids.append(_event_id_of(item["sk"]["S"]))
            if len(event_ids) >= skip + per_page:
                break
        wanted = event_ids[skip:]
        found = {
            event.id: event
            for event in map(
                _event_from_item, batch_get(self.client, self.table_name, [self._key(tenant_id, e) for e in wanted])
            )
        }
        return [found[e] for e in wanted if e in found]

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


__all__ = ["ActivityStore", "Claim", "DynamoActivityStore", "Update"]
