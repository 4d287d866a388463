"""The activity log in DynamoDB, and an in-memory double.

One partition per tenant (``pk = T#<tenant>``) holds:

* the event item ``sk = E#<event id>``: exact body, delivery status per webhook (a map, updated
  in place), attempt detail per webhook (a map of lists), TTL ``expire_ts``;
* one marker per delivery ``sk = D#<event id>#<integration id>``.

The ``by_time`` index (``gsi1pk``, ``gsi1sk = <time>#<id>``) lists a tenant's events newest first
(``gsi1pk = T#<tenant>``) and, through the markers, one webhook's events
(``gsi1pk = T#<tenant>#I#<integration id>``), both without a Scan.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from enum import Enum
from typing import Any, Protocol

from devicehooks import aws
from devicehooks.domain.activity import ActivityEvent, Attempt, DeliveryStatus
from devicehooks.store.dynamo import batch_delete, batch_write, from_item, query_all, to_item, value

INDEX = "by_time"


class Claim(Enum):
    """Outcome of trying to take a delivery."""

    TAKEN = "taken"  # this worker may POST
    DONE = "done"  # already delivered (or no such delivery): nothing to do
    BUSY = "busy"  # another worker holds the lease: try again later


class ActivityStore(Protocol):
    """Where events and their delivery outcomes are kept."""

    def create(self, event: ActivityEvent) -> bool:
        """Store a new event; ``False`` (and nothing written) when it already exists."""

    def get(self, tenant_id: str, event_id: str) -> ActivityEvent | None:
        """One event with its attempt detail (strongly consistent)."""

    def claim(self, tenant_id: str, event_id: str, integration_id: str, now: datetime, lease_seconds: int) -> Claim:
        """Take the right to POST this delivery for ``lease_seconds``."""

    def record(self, tenant_id: str, event_id: str, status: DeliveryStatus, attempt: Attempt | None) -> None:
        """Store a delivery's new status (never downgrading a success) and append ``attempt``."""

    def add_deliveries(self, tenant_id: str, event_id: str, integration_ids: list[str]) -> None:
        """Start tracking deliveries of an existing event to more webhooks."""

    def reopen(self, tenant_id: str, event_id: str, integration_id: str, now: datetime) -> bool:
        """Make a finished delivery (delivered, failed, skipped) pending again, for a redelivery.

        ``False`` when it is still in progress (pending or retrying) or does not exist.
        """

    def list_events(
        self, tenant_id: str, page: int, per_page: int, integration_id: str | None = None
    ) -> list[ActivityEvent]:
        """A page of the tenant's events, newest first, optionally only one webhook's."""

    def remove_tenant(self, tenant_id: str) -> int:
        """Delete a tenant's whole activity log; returns the number of items deleted."""


def _pk(tenant_id: str) -> str:
    return f"T#{tenant_id}"


def _time_key(event: ActivityEvent) -> str:
    return event.time.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ") + "#" + event.id


def _millis(value: datetime | None) -> int | None:
    return None if value is None else int(value.timestamp() * 1000)


def _from_millis(value: Any) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(int(value) / 1000, UTC)


def _status_map(status: DeliveryStatus) -> dict[str, Any]:
    return {
        "state": status.state,
        "attempts": status.attempts,
        "status_code": status.status_code,
        "error": status.error,
        "updated_at": _millis(status.updated_at),
        "next_attempt_at": _millis(status.next_attempt_at),
        "lease_until": _millis(status.lease_until),
    }


def _attempt_map(attempt: Attempt) -> dict[str, Any]:
    return {
        "number": attempt.number,
        "at": _millis(attempt.at),
        "duration_ms": attempt.duration_ms,
        "status_code": attempt.status_code,
        "error": attempt.error,
        "response_body": attempt.response_body,
    }


def _clean(mapping: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in mapping.items() if v is not None}


def _int(value: Any) -> int | None:
    return None if value is None else int(value)


def _event_from_item(raw: Mapping[str, Any]) -> ActivityEvent:
    item = from_item(raw)
    deliveries = {
        integration_id: DeliveryStatus(
            integration_id=integration_id,
            state=d.get("state", "pending"),
            attempts=int(d.get("attempts", 0)),
            status_code=_int(d.get("status_code")),
            error=d.get("error"),
            updated_at=_from_millis(d.get("updated_at")),
            next_attempt_at=_from_millis(d.get("next_attempt_at")),
            lease_until=_from_millis(d.get("lease_until")),
        )
        for integration_id, d in item.get("deliveries", {}).items()
    }
    attempts = {
        integration_id: [
            Attempt(
                number=int(a["number"]),
                at=_from_millis(a["at"]) or datetime.now(UTC),
                duration_ms=int(a.get("duration_ms", 0)),
                status_code=_int(a.get("status_code")),
                error=a.get("error"),
                response_body=a.get("response_body"),
            )
            for a in log
        ]
        for integration_id, log in item.get("attempt_log", {}).items()
    }
    body = item["body"]
    return ActivityEvent(
        id=item["event_id"],
        tenant_id=item["tenant_id"],
        type=item["event_type"],
        time=datetime.fromisoformat(item["time"]),
        body=body.encode() if isinstance(body, str) else bytes(body),
        expire_ts=int(item["expire_ts"]),
        deliveries=deliveries,
        attempts=attempts,
    )


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

    def _marker(self, event: ActivityEvent, integration_id: str) -> dict[str, Any]:
        return to_item(
            {
                "pk": _pk(event.tenant_id),
                "sk": f"D#{event.id}#{integration_id}",
                "gsi1pk": f"{_pk(event.tenant_id)}#I#{integration_id}",
                "gsi1sk": _time_key(event),
                "event_id": event.id,
                "expire_ts": event.expire_ts,
            }
        )

    def create(self, event: ActivityEvent) -> bool:
        item = to_item(
            {
                "pk": _pk(event.tenant_id),
                "sk": f"E#{event.id}",
                "gsi1pk": _pk(event.tenant_id),
                "gsi1sk": _time_key(event),
                "event_id": event.id,
                "tenant_id": event.tenant_id,
                "event_type": event.type,
                "time": event.time.astimezone(UTC).isoformat(),
                "body": event.body.decode(),
                "expire_ts": event.expire_ts,
                "deliveries": {i: _clean(_status_map(s)) for i, s in event.deliveries.items()},
                "attempt_log": {},
            }
        )
        try:
            self.client.put_item(TableName=self.table_name, Item=item, ConditionExpression="attribute_not_exists(sk)")
            created = True
        except self.client.exceptions.ConditionalCheckFailedException:
            created = False
        # The markers are idempotent, so no transaction (half the write cost): a copy of the
        # message that finds the event already there writes them again, in case the first
        # writer stopped in between.
        markers = [{"PutRequest": {"Item": self._marker(event, i)}} for i in event.deliveries]
        batch_write(self.client, self.table_name, markers)
        return created

    def get(self, tenant_id: str, event_id: str) -> ActivityEvent | None:
        out = self.client.get_item(TableName=self.table_name, Key=self._key(tenant_id, event_id), ConsistentRead=True)
        item = out.get("Item")
        return _event_from_item(item) if item else None

    def claim(self, tenant_id: str, event_id: str, integration_id: str, now: datetime, lease_seconds: int) -> Claim:
        now_ms = _millis(now) or 0
        try:
            self.client.update_item(
                TableName=self.table_name,
                Key=self._key(tenant_id, event_id),
                UpdateExpression="SET deliveries.#i.lease_until = :until",
                ConditionExpression="attribute_exists(deliveries.#i) AND deliveries.#i.#s <> :delivered AND "
                "(attribute_not_exists(deliveries.#i.lease_until) OR deliveries.#i.lease_until < :now)",
                ExpressionAttributeNames={"#i": integration_id, "#s": "state"},
                ExpressionAttributeValues={
                    ":until": {"N": str(now_ms + lease_seconds * 1000)},
                    ":now": {"N": str(now_ms)},
                    ":delivered": {"S": "delivered"},
                },
            )
        except self.client.exceptions.ConditionalCheckFailedException:
            current = self.get(tenant_id, event_id)
            status = current.deliveries.get(integration_id) if current else None
            if status is None or status.state == "delivered":
                return Claim.DONE
            return Claim.BUSY
        return Claim.TAKEN

    def record(self, tenant_id: str, event_id: str, status: DeliveryStatus, attempt: Attempt | None) -> None:
        names = {"#i": status.integration_id}
        values: dict[str, Any] = {":status": value(_clean(_status_map(status)))}
        update = "SET deliveries.#i = :status"
        if attempt is not None:
            update += ", attempt_log.#i = list_append(if_not_exists(attempt_log.#i, :empty), :attempt)"
            values[":empty"] = {"L": []}
            values[":attempt"] = {"L": [value(_clean(_attempt_map(attempt)))]}
        kwargs: dict[str, Any] = {
            "TableName": self.table_name,
            "Key": self._key(tenant_id, event_id),
            "UpdateExpression": update,
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
            "ConditionExpression": "attribute_exists(sk)",
        }
        if status.state != "delivered":
            # a late failure report must not overwrite a success recorded meanwhile
            kwargs["ConditionExpression"] += " AND (attribute_not_exists(deliveries.#i) OR deliveries.#i.#s <> :d)"
            names["#s"] = "state"
            values[":d"] = {"S": "delivered"}
        try:
            self.client.update_item(**kwargs)
        except self.client.exceptions.ConditionalCheckFailedException:
            return

    def reopen(self, tenant_id: str, event_id: str, integration_id: str, now: datetime) -> bool:
        try:
            self.client.update_item(
                TableName=self.table_name,
                Key=self._key(tenant_id, event_id),
                UpdateExpression="SET deliveries.#i.#s = :pending, deliveries.#i.next_attempt_at = :now "
                "REMOVE deliveries.#i.lease_until",
                ConditionExpression="attribute_exists(deliveries.#i) AND NOT deliveries.#i.#s IN (:pending, :retrying)",
                ExpressionAttributeNames={"#i": integration_id, "#s": "state"},
                ExpressionAttributeValues={
                    ":pending": {"S": "pending"},
                    ":retrying": {"S": "retrying"},
                    ":now": {"N": str(_millis(now))},
                },
            )
        except self.client.exceptions.ConditionalCheckFailedException:
            return False
        return True

    def add_deliveries(self, tenant_id: str, event_id: str, integration_ids: list[str]) -> None:
        event = self.get(tenant_id, event_id)
        if event is None:
            return
        new = [i for i in integration_ids if i not in event.deliveries]
        for integration_id in new:
            try:
                self.client.update_item(
                    TableName=self.table_name,
                    Key=self._key(tenant_id, event_id),
                    UpdateExpression="SET deliveries.#i = :status",
                    ConditionExpression="attribute_not_exists(deliveries.#i)",
                    ExpressionAttributeNames={"#i": integration_id},
                    ExpressionAttributeValues={
                        ":status": value(_clean(_status_map(DeliveryStatus(integration_id=integration_id))))
                    },
                )
            except self.client.exceptions.ConditionalCheckFailedException:
                continue
            self.client.put_item(TableName=self.table_name, Item=self._marker(event, integration_id))

    def list_events(
        self, tenant_id: str, page: int, per_page: int, integration_id: str | None = None
    ) -> list[ActivityEvent]:
        skip = (page - 1) * per_page
        partition = _pk(tenant_id) if integration_id is None else f"{_pk(tenant_id)}#I#{integration_id}"
        rows: list[dict[str, Any]] = []
        for item in query_all(
            self.client,
            TableName=self.table_name,
            IndexName=INDEX,
            KeyConditionExpression="gsi1pk = :p",
            ExpressionAttributeValues={":p": {"S": partition}},
            ScanIndexForward=False,
            Limit=min(skip + per_page, 1000),
        ):
            rows.append(item)
            if len(rows) >= skip + per_page:
                break
        rows = rows[skip:]
        if integration_id is None:
            return [_event_from_item(r) for r in rows]
        return self._fetch([r["event_id"]["S"] for r in rows], tenant_id)

    def _fetch(self, event_ids: list[str], tenant_id: str) -> list[ActivityEvent]:
        found: dict[str, ActivityEvent] = {}
        for start in range(0, len(event_ids), 100):
            pending: list[dict[str, Any]] = [self._key(tenant_id, e) for e in event_ids[start : start + 100]]
            for _ in range(10):
                if not pending:
                    break
                out = self.client.batch_get_item(RequestItems={self.table_name: {"Keys": pending}})
                for item in out.get("Responses", {}).get(self.table_name, []):
                    event = _event_from_item(item)
                    found[event.id] = event
                pending = out.get("UnprocessedKeys", {}).get(self.table_name, {}).get("Keys", [])
        return [found[e] for e in event_ids if e in found]

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
        return len(keys)


__all__ = ["ActivityStore", "Claim", "DynamoActivityStore"]
