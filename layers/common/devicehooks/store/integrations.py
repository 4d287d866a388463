"""Integrations: per webhook a configuration item and the items its deliveries write, plus a
per-tenant counter that enforces the limit (docs/architecture.md, "Storage").

This module has the store's port (:class:`IntegrationStore`) and, in
:class:`DynamoIntegrationStore`, the configuration's operations (create within the tenant's
limit, read, change, delete); the runtime state's are in :mod:`devicehooks.store.webhook_state`,
the item mapping in :mod:`devicehooks.store.integration_items`.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any, Protocol

from devicehooks.aws.dynamo import batch_delete, first_condition_failed, from_item, query_all, to_item
from devicehooks.domain.models import Circuit, Integration, IntegrationChanges
from devicehooks.errors import Conflict
from devicehooks.store.integration_items import (
    COUNTER_ID,
    STATE_FIELDS,
    TTL,
    from_records,
    integrations_of,
    is_configuration,
    record_changes,
    state_attributes,
    tenant_key,
    to_record,
    update_expression,
)
from devicehooks.store.keys import escape
from devicehooks.store.webhook_state import RATE_TTL, STATE_TTL, Trial, WebhookState

__all__ = [
    "COUNTER_ID",
    "RATE_TTL",
    "STATE_TTL",
    "DynamoIntegrationStore",
    "IntegrationStore",
    "Trial",
    "limit_message",
    "tenant_key",
]


def limit_message(limit: int) -> str:
    return f"integration limit reached: a tenant may have at most {limit} integrations"


class IntegrationStore(Protocol):
    """Where integrations live. Every method is scoped to one tenant."""

    def add(self, integration: Integration, limit: int) -> None:
        """Store a new integration; :class:`Conflict` when the tenant already has ``limit``."""

    def list_tenant(self, tenant_id: str) -> list[Integration]:
        """The tenant's integrations, oldest first."""

    def get(self, tenant_id: str, integration_id: str) -> Integration | None:
        """One integration, or ``None``."""

    def remove(self, tenant_id: str, integration_id: str) -> bool:
        """Delete one integration; ``False`` when it did not exist."""

    def update(self, tenant_id: str, integration_id: str, changes: IntegrationChanges) -> Integration | None:
        """Apply ``changes`` (the fields given, no other) atomically: a reset of what deliveries
        wrote (``circuit``, ``failing_since``) lands with the change of configuration or not at
        all. The integration as changed, ``None`` if there is none."""

    def note_failure(self, tenant_id: str, integration_id: str, now: datetime) -> Integration | None:
        """A failed attempt: stamp when the webhook started failing (kept if already set) and count
        one more consecutive failure on its circuit; the integration as it now is."""

    def note_success(self, tenant_id: str, integration_id: str, proven: bool = True) -> None:
        """The webhook works again: forget when it started failing, close its circuit; it is proven
        by the success, or (``proven=False``: it answered, but slowly) left on trial."""

    def open_circuit(self, tenant_id: str, integration_id: str, seen: Circuit, circuit: Circuit) -> bool:
        """Open (or reopen) the circuit as ``circuit``, unless it changed since it was ``seen``
        (another dispatcher opened it meanwhile); ``False`` then, or without such an integration."""

    def claim_probe(self, tenant_id: str, integration_id: str, now: datetime, until: datetime) -> bool:
        """Take the half-open circuit's one probe until ``until``; ``False`` when the circuit is not
        half-open at ``now`` or another probe is in flight."""

    def start_trial(self, tenant_id: str, integration_id: str, slots: int, now: datetime, until: datetime) -> Trial:
        """Take one of ``slots`` turns at a webhook on trial (not proven) until ``until``; a turn
        whose time is up at ``now`` is free again. ``Trial(proven=True)`` when the webhook is proven
        meanwhile (no turn needed), ``Trial()`` when every turn is taken or there is no such webhook."""

    def end_trial(self, tenant_id: str, integration_id: str, trial: Trial) -> None:
        """Give a turn back (a no-op if its time was up and another dispatcher took it)."""

    def take_rate_token(self, tenant_id: str, integration_id: str, second: int, limit: int) -> bool:
        """Count one delivery in the unix second ``second``; ``False`` when ``limit`` are counted already."""

    def remove_tenant(self, tenant_id: str) -> int:
        """Delete all of a tenant's integrations; returns how many there were."""


class DynamoIntegrationStore(WebhookState):
    """Integrations in DynamoDB: PK ``tenant_key``, SK ``integration_id`` (ids escaped in both:
    :mod:`devicehooks.store.keys`).

    Per webhook, in its tenant's partition: the configuration item (SK ``<id>``), written only by
    the user's changes (and the dispatcher disabling the webhook); the state item (SK
    ``<id>#state``: circuit, proof, trial turns, ``failing_since``; TTL :data:`STATE_TTL` after its
    last write); the rate item (SK ``<id>#rate``: the current second's delivery count; TTL
    :data:`RATE_TTL` after its second). A delivery's bookkeeping writes only the last two
    (:class:`~devicehooks.store.webhook_state.WebhookState`, whose client, keys and writes this
    class shares), so it never rewrites the configuration nor races a user's change on one item.
    No state item reads as a fresh state.
    """

    def add(self, integration: Integration, limit: int) -> None:
        counter = self._item_key(integration.tenant_id, COUNTER_ID)
        items: list[dict[str, Any]] = [
            {
                "Update": {
                    "TableName": self.table_name,
                    "Key": counter,
                    "UpdateExpression": "SET #n = if_not_exists(#n, :zero) + :one",
                    "ConditionExpression": "attribute_not_exists(#n) OR #n < :limit",
                    "ExpressionAttributeNames": {"#n": "count"},
                    "ExpressionAttributeValues": {
                        ":zero": {"N": "0"},
                        ":one": {"N": "1"},
                        ":limit": {"N": str(limit)},
                    },
                }
            },
            {
                "Put": {
                    "TableName": self.table_name,
                    "Item": to_item(to_record(integration)),
                    "ConditionExpression": "attribute_not_exists(integration_id)",
                }
            },
        ]
        state = state_attributes(integration)
        if state:  # a new webhook has none: only one given with a state (an import, a test) writes it
            key = self._state_key(integration.tenant_id, integration.id)
            items.append(
                {"Put": {"TableName": self.table_name, "Item": {**key, **to_item(state), TTL: self._state_expiry()}}}
            )
        try:
            self._write("transact_write_items", TransactItems=items)
        except self.client.exceptions.TransactionCanceledException as exc:
            if first_condition_failed(exc):
                raise Conflict(limit_message(limit)) from None
            raise

    def list_tenant(self, tenant_id: str) -> list[Integration]:
        # one Query of the partition, as before the state items: it reads them along (and the
        # rate items, ~100 bytes each), so a read unit (4 KB) covers fewer webhooks than it did
        items = query_all(
            self.client,
            TableName=self.table_name,
            KeyConditionExpression="tenant_key = :t",
            ExpressionAttributeValues={":t": {"S": tenant_key(tenant_id)}},
            ConsistentRead=True,
        )
        return sorted(integrations_of(items).values(), key=lambda i: (i.created_at, i.id))

    def get(self, tenant_id: str, integration_id: str) -> Integration | None:
        # the configuration, state and rate items sort together (each key starts with the escaped
        # id; those of ids it is a prefix of come too, and are left out):
        # one Query reads them, billed on their summed size, where a BatchGetItem would be billed
        # a read unit per item
        items = query_all(
            self.client,
            TableName=self.table_name,
            KeyConditionExpression="tenant_key = :t AND begins_with(integration_id, :id)",
            ExpressionAttributeValues={":t": {"S": tenant_key(tenant_id)}, ":id": {"S": escape(integration_id)}},
            ConsistentRead=True,
        )
        return integrations_of(items).get(integration_id)

    def remove(self, tenant_id: str, integration_id: str) -> bool:
        try:
            self._write(
                "transact_write_items",
                TransactItems=[
                    {
                        "Delete": {
                            "TableName": self.table_name,
                            "Key": self._key(tenant_id, integration_id),
                            "ConditionExpression": "attribute_exists(integration_id)",
                        }
                    },
                    {
                        "Update": {
                            "TableName": self.table_name,
                            "Key": self._item_key(tenant_id, COUNTER_ID),
                            "UpdateExpression": "SET #n = #n - :one",
                            "ConditionExpression": "#n > :zero",
                            "ExpressionAttributeNames": {"#n": "count"},
                            "ExpressionAttributeValues": {":one": {"N": "1"}, ":zero": {"N": "0"}},
                        }
                    },
                    # with it, its runtime items: nothing of a removed webhook is left to expire
                    {"Delete": {"TableName": self.table_name, "Key": self._state_key(tenant_id, integration_id)}},
                    {"Delete": {"TableName": self.table_name, "Key": self._rate_key(tenant_id, integration_id)}},
                ],
            )
        except self.client.exceptions.TransactionCanceledException as exc:
            if first_condition_failed(exc):
                return False
            raise
        return True

    def update(self, tenant_id: str, integration_id: str, changes: IntegrationChanges) -> Integration | None:
        given = changes.given()
        state = {name: given.pop(name) for name in STATE_FIELDS if name in given}
        sets, removes = record_changes(given)
        config = update_expression(sets, removes)
        config["ExpressionAttributeNames"]["#id"] = "integration_id"
        key = self._key(tenant_id, integration_id)
        if not state:  # the configuration alone (a description, a secret): one write, as ever, and a
            # read of the state item for the integration it returns
            try:
                out = self._write(
                    "update_item",
                    TableName=self.table_name,
                    Key=key,
                    ConditionExpression="attribute_exists(#id)",
                    ReturnValues="ALL_NEW",
                    **config,
                )
            except self.client.exceptions.ConditionalCheckFailedException:
                return None
            found = self.client.get_item(
                TableName=self.table_name, Key=self._state_key(tenant_id, integration_id), ConsistentRead=True
            ).get("Item")
            return from_records(from_item(out["Attributes"]), from_item(found or {}))
        # A reset (enabled or disabled, a new URL, the dispatcher giving up): the configuration and
        # the state in one transaction, so no delivery's bookkeeping lands between them and
        # survives the reset. Trial turns stay: each is held by a running invocation, and freeing
        # them would let more invocations than there are turns at the webhook on trial. The state
        # item is written even when there was none (it is a few bytes, and expires).
        state_sets, state_removes = record_changes(state)
        state_sets[TTL] = int(time.time()) + STATE_TTL
        try:
            self._write(
                "transact_write_items",
                TransactItems=[
                    {
                        "Update": {
                            "TableName": self.table_name,
                            "Key": key,
                            "ConditionExpression": "attribute_exists(#id)",
                            **config,
                        }
                    },
                    {
                        "Update": {
                            "TableName": self.table_name,
                            "Key": self._state_key(tenant_id, integration_id),
                            **update_expression(state_sets, state_removes),
                        }
                    },
                ],
            )
        except self.client.exceptions.TransactionCanceledException as exc:
            if first_condition_failed(exc):
                return None
            raise
        return self.get(tenant_id, integration_id)  # a transaction returns no item: read both back

    def remove_tenant(self, tenant_id: str) -> int:
        keys = [
            {"tenant_key": i["tenant_key"], "integration_id": i["integration_id"]}
            for i in query_all(
                self.client,
                TableName=self.table_name,
                KeyConditionExpression="tenant_key = :t",
                ExpressionAttributeValues={":t": {"S": tenant_key(tenant_id)}},
                ProjectionExpression="tenant_key, integration_id",
                ConsistentRead=True,
            )
        ]
        batch_delete(self.client, self.table_name, keys)  # the runtime items (and orphans) with the rest
        return sum(1 for k in keys if is_configuration(k["integration_id"]["S"]))
