"""Deliveries in the activity table: an event stored with its deliveries' first statuses, each
delivery's lease (claim), its statuses and attempts (record, bounded by :mod:`devicehooks.store.bounds`),
a reopen for a redelivery, and deliveries added later; each state change moves the delivery's
``by_state`` entry (:mod:`devicehooks.store.activity_items` has the layout)."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from enum import Enum
from typing import Any

from devicehooks.aws.dynamo import batch_write, value
from devicehooks.domain.activity import ActivityEvent, Attempt, DeliveryState, DeliveryStatus
from devicehooks.store.activity_items import (
    INDEXED_STATES,
    Keyed,
    KnownEvents,
    attempt_map,
    event_from_item,
    event_item,
    event_key,
    first_of,
    keyed_of,
    marker_item,
    marker_key,
    millis,
    state_key,
    status_map,
)
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
from devicehooks.store.table import Table

Update = tuple[DeliveryStatus, Attempt | None]


class Claim(Enum):
    """Outcome of trying to take a delivery."""

    TAKEN = "taken"  # this worker may POST
    DONE = "done"  # already delivered (or no such delivery): nothing to do
    BUSY = "busy"  # another worker holds the lease: try again later
    STALE = "stale"  # it has made more attempts than the caller saw: someone else took it on since


class Deliveries:
    """The writes of :class:`~devicehooks.store.activity.ActivityStore` (its ``create``, ``claim``,
    ``record``, ``reopen``, ``add_deliveries``)."""

    def __init__(self, table: Table, known: KnownEvents) -> None:
        self.table = table
        self.known = known

    @property
    def client(self) -> Any:
        return self.table.client

    def _markers(self, event: ActivityEvent, integration_ids: list[str]) -> list[dict[str, Any]]:
        """Markers putting ``event`` in the ``by_webhook`` index under these webhooks."""
        return [{"PutRequest": {"Item": marker_item(event, i)}} for i in integration_ids]

    def create(self, event: ActivityEvent) -> ActivityEvent | None:
        try:
            self.client.put_item(
                TableName=self.table.name,
                Item=event_item(event),
                ConditionExpression="attribute_not_exists(sk)",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except self.client.exceptions.ConditionalCheckFailedException as exc:
            existing = exc.response.get("Item")
            if not existing:  # pragma: no cover - the condition only fails on an existing item
                raise
            stored = event_from_item(existing)
            self.known.remember(stored.tenant_id, stored.id, keyed_of(existing))
            # A copy of the message: the first writer may have stopped before its markers. Each
            # is written only where it is missing (a marker there may hold a newer state).
            for integration_id in stored.deliveries:
                if integration_id == first_of(existing):
                    continue
                try:
                    self.client.put_item(
                        TableName=self.table.name,
                        Item=marker_item(stored, integration_id),
                        ConditionExpression="attribute_not_exists(sk)",
                    )
                except self.client.exceptions.ConditionalCheckFailedException:
                    continue
            return stored
        first = next(iter(event.deliveries), None)
        self.known.remember(event.tenant_id, event.id, Keyed(first or "", event.type))
        # the event item is in the index under its first webhook; markers for the others
        batch_write(self.client, self.table.name, self._markers(event, list(event.deliveries)[1:]))
        return None

    def claim(
        self,
        tenant_id: str,
        event_id: str,
        integration_id: str,
        now: datetime,
        lease_seconds: int,
        seen_attempts: int | None = None,
    ) -> Claim:
        now_ms = millis(now) or 0
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
                TableName=self.table.name,
                Key=event_key(tenant_id, event_id),
                UpdateExpression="SET deliveries.#i.lease_until = :until",
                ConditionExpression=condition,
                ExpressionAttributeNames={"#i": integration_id, "#s": "state"},
                ExpressionAttributeValues=values,
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except self.client.exceptions.ConditionalCheckFailedException as exc:
            existing = exc.response.get("Item")
            status = event_from_item(existing).deliveries.get(integration_id) if existing else None
            if status is None or status.state == "delivered":
                return Claim.DONE
            if seen_attempts is not None and status.attempts > seen_attempts:
                return Claim.STALE
            return Claim.BUSY
        except self.client.exceptions.ClientError as exc:
            if too_large(exc):  # past the bounds (none should be): not taken, so nothing is POSTed unrecorded
                raise ItemTooLarge(f"event {event_id}: the activity item has no room to lease a delivery") from exc
            raise
        return Claim.TAKEN

    def _mark(
        self, tenant_id: str, event_id: str, status: DeliveryStatus, keyed: Keyed, at: datetime | None = None
    ) -> None:
        """Move a delivery's marker to its new state's ``by_state`` partition, or out of the index
        (a missing marker is not written; a newer state recorded meanwhile is not overwritten)."""
        version = millis(at or status.updated_at) or 0
        partition = state_key(tenant_id, status.state, keyed.type)
        values: dict[str, Any] = {":v": {"N": str(version)}}
        if partition is not None:
            values[":g"] = {"S": partition}
        try:
            self.client.update_item(
                TableName=self.table.name,
                Key=marker_key(tenant_id, event_id, status.integration_id),
                UpdateExpression="SET gsi4pk = :g, sv = :v" if partition is not None else "SET sv = :v REMOVE gsi4pk",
                ConditionExpression="attribute_exists(sk) AND sv <= :v",
                ExpressionAttributeValues=values,
            )
        except self.client.exceptions.ConditionalCheckFailedException:
            return

    def record(self, tenant_id: str, event_id: str, updates: Sequence[Update], deliveries: int | None = None) -> None:
        if not updates:
            return
        bound = bound_for(deliveries) if deliveries is not None else Bound()
        keyed = self.known.keyed(tenant_id, event_id)
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

    def _record_alone(self, tenant_id: str, event_id: str, update: Update, keep: int, keyed: Keyed | None) -> None:
        """One delivery's update, written as it can be: its log started when it is not there yet (a
        rotating slot needs the list); refused for the item's size (past the bounds, which none should be),
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
        keyed: Keyed | None,
        append: bool = False,
    ) -> None:
        """One write of these statuses and attempts (bounded already): each attempt appended to its
        delivery's log while the log is not full, else written in the slot of the one it replaces
        (``append``: appended whatever its number, to start a log that is not there). ``keyed``
        ``None`` (no event was found): no index key is moved."""
        names: dict[str, str] = {}
        values: dict[str, Any] = {}
        sets: list[str] = []
        removes: list[str] = []
        conditions = ["attribute_exists(sk)"]
        for n, (status, attempt) in enumerate(updates):
            if keyed is not None and status.integration_id == keyed.carrier:
                partition = state_key(tenant_id, status.state, keyed.type)
                if partition is not None:
                    values[":g"] = {"S": partition}
                else:  # out of by_state (nothing written when it was not there)
                    removes.append("gsi4pk")
            names[f"#i{n}"] = status.integration_id
            values[f":s{n}"] = value(status_map(status))
            sets.append(f"deliveries.#i{n} = :s{n}")
            if attempt is not None:
                at = None if append else slot(attempt.number, keep)
                if at is None:
                    values[f":a{n}"] = {"L": [value(attempt_map(attempt, event_id))]}
                    values[":empty"] = {"L": []}
                    sets.append(f"attempt_log.#i{n} = list_append(if_not_exists(attempt_log.#i{n}, :empty), :a{n})")
                else:  # the log is full: this one replaces the oldest of the latest (store/bounds.py)
                    values[f":a{n}"] = value(attempt_map(attempt, event_id))
                    sets.append(f"attempt_log.#i{n}[{at}] = :a{n}")
            if status.state != "delivered":
                # a late failure report must not overwrite a success recorded meanwhile
                names["#s"] = "state"
                values[":d"] = {"S": "delivered"}
                conditions.append(f"(attribute_not_exists(deliveries.#i{n}) OR deliveries.#i{n}.#s <> :d)")
        if ":g" in values:  # last: moto measures the item when a top-level attribute is set
            sets.append("gsi4pk = :g")
        expression = "SET " + ", ".join(sets) + (" REMOVE " + ", ".join(removes) if removes else "")
        out = self.client.update_item(
            TableName=self.table.name,
            Key=event_key(tenant_id, event_id),
            UpdateExpression=expression,
            ConditionExpression=" AND ".join(conditions),
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
            ReturnValues="UPDATED_OLD",  # the states before: a marker moves only into or out of by_state
        )
        if keyed is not None:  # the other webhooks' deliveries are in the indexes through their markers
            before = out.get("Attributes", {}).get("deliveries", {}).get("M", {})
            for status, _ in updates:
                if status.integration_id == keyed.carrier:
                    continue
                was = before.get(status.integration_id, {}).get("M", {}).get("state", {}).get("S")
                if was is None or was in INDEXED_STATES or status.state in INDEXED_STATES:
                    self._mark(tenant_id, event_id, status, keyed)

    def reopen(
        self,
        tenant_id: str,
        event_id: str,
        integration_id: str,
        now: datetime,
        seen_attempts: int,
        from_states: Collection[DeliveryState] | None = None,
    ) -> bool:
        keyed = self.known.keyed(tenant_id, event_id)
        now_ms = str(millis(now))
        condition = (
            "attribute_exists(deliveries.#i) AND deliveries.#i.attempts = :seen AND "
            "(attribute_not_exists(deliveries.#i.lease_until) OR deliveries.#i.lease_until < :now)"
        )
        values: dict[str, Any] = {
            ":pending": {"S": "pending"},
            ":now": {"N": now_ms},
            ":seen": {"N": str(seen_attempts)},
        }
        if from_states is not None:
            # in the same condition as the attempts and the lease: a delivery that became delivered (or
            # anything else) since the caller read it is never reopened, however stale that read
            states = sorted(set(from_states))
            if not states:
                return False
            condition += f" AND deliveries.#i.#s IN ({', '.join(f':from{n}' for n in range(len(states)))})"
            values.update({f":from{n}": {"S": state} for n, state in enumerate(states)})
        update = "SET deliveries.#i.#s = :pending, deliveries.#i.next_attempt_at = :now"
        remove = " REMOVE deliveries.#i.lease_until"
        if keyed is not None and keyed.carrier == integration_id:
            remove += ", gsi4pk"  # pending: not in by_state
        try:
            self.client.update_item(
                TableName=self.table.name,
                Key=event_key(tenant_id, event_id),
                UpdateExpression=update + remove,
                ConditionExpression=condition,
                ExpressionAttributeNames={"#i": integration_id, "#s": "state"},
                ExpressionAttributeValues=values,
            )
        except self.client.exceptions.ConditionalCheckFailedException:
            return False
        except self.client.exceptions.ClientError as exc:
            if too_large(exc):  # past the bounds (none should be): the caller answers a clear 409
                raise ItemTooLarge(f"event {event_id}: the activity item has no room to reopen a delivery") from exc
            raise
        if keyed is not None and keyed.carrier != integration_id:
            self._mark(tenant_id, event_id, DeliveryStatus(integration_id, state="pending"), keyed, now)
        return True

    def add_deliveries(self, tenant_id: str, event_id: str, integration_ids: list[str]) -> None:
        event = self.known.get(tenant_id, event_id)
        if event is None:
            return
        added: list[str] = []
        for integration_id in (i for i in integration_ids if i not in event.deliveries):
            try:
                self.client.update_item(
                    TableName=self.table.name,
                    Key=event_key(tenant_id, event_id),
                    UpdateExpression="SET deliveries.#i = :status",
                    ConditionExpression="attribute_exists(sk) AND attribute_not_exists(deliveries.#i)",
                    ExpressionAttributeNames={"#i": integration_id},
                    ExpressionAttributeValues={":status": value(status_map(DeliveryStatus(integration_id)))},
                )
            except self.client.exceptions.ConditionalCheckFailedException:
                continue
            except self.client.exceptions.ClientError as exc:
                if too_large(exc):
                    raise ItemTooLarge(f"event {event_id}: the activity item has no room for another delivery") from exc
                raise
            added.append(integration_id)
        batch_write(self.client, self.table.name, self._markers(event, added))
