"""A webhook's runtime state, on items of its own: the state item ``<id>#state`` (circuit, proof,
trial turns, ``failing_since``) and the rate item ``<id>#rate`` (the current second's delivery
count), which only deliveries write (docs/architecture.md, "Storage").

:class:`WebhookState` holds these operations and the table access they share with the
configuration's (the client, the keys, a write made again on a transaction conflict);
:class:`~devicehooks.store.integrations.DynamoIntegrationStore` is made from it.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from devicehooks.aws.dynamo import from_item, value
from devicehooks.domain.models import Circuit, Integration
from devicehooks.store.integration_items import (
    CIRCUIT_ATTRIBUTES,
    PROVEN,
    RATE_SUFFIX,
    STATE_SUFFIX,
    TTL,
    circuit_attributes,
    from_records,
    millis,
    tenant_key,
    trial_attribute,
)
from devicehooks.store.keys import escape
from devicehooks.store.table import Table

# A state item expires this long after its last write (each write sets its expire_ts again). What
# it holds lasts as long as it matters: every failure writes it, so `failing_since` is kept while
# failures come less than 30 days apart, and a webhook that is attempted at all (retries; a probe
# at the latest an hour after its circuit opened) is disabled, as before, by its first failure
# DEVICEHOOKS_DISABLE_AFTER (5 days by default) after the first; a circuit's cooldown is an hour
# at most, a trial turn minutes. So it runs out only for a webhook nothing was written for in 30
# days: idle, or proven and succeeding (a success that changes nothing writes nothing). Then the
# webhook reads as fresh: circuit closed, no failure counted, its failure clock starting again at
# its next failure (rather than disabling it for one a month old), and on trial until a success
# proves it again (one write). State a dispatcher wrote for a webhook being removed (an orphan,
# which no read returns) goes the same way. DynamoDB deletes an expired item within days, not at
# once; until then it counts as written: nothing depends on the exact moment.
STATE_TTL = 30 * 24 * 3600
# A rate window is only ever compared with the current second: a minute past its own it is stale
# whatever it says. Once DynamoDB has deleted it, the next window's start reads the configuration
# item once (is there still such a webhook?); until then the item is rolled over in place.
RATE_TTL = 60
# A write refused for a transaction in flight on its item (a user's reset, a removal) is made
# again after a short random pause, at most this many times in all.
CONFLICT_ATTEMPTS = 3
CONFLICT_PAUSE = 0.02  # seconds, doubled each time


@dataclass(frozen=True, slots=True)
class Trial:
    """A dispatcher invocation's turn at a webhook on trial: turn ``slot``, held until ``until``;
    or no turn needed (``proven``); or none to be had (neither)."""

    slot: int | None = None
    until: datetime | None = None
    proven: bool = False

    @property
    def granted(self) -> bool:
        return self.proven or self.slot is not None


def _conflicted(exc: Exception) -> bool:
    """Whether a cancelled transaction was cancelled only for another request on its items."""
    codes = {r.get("Code") for r in getattr(exc, "response", {}).get("CancellationReasons", [])}
    return "TransactionConflict" in codes and codes <= {"TransactionConflict", "None", None}


class WebhookState:
    """The runtime state of a tenant's webhooks in DynamoDB (PK ``tenant_key``, SK the escaped id
    and a suffix), and the table access shared with the configuration's operations.

    A state or rate write must not make items for a webhook that is gone: a write that would create
    its item (none there yet) first reads the configuration item (one ``GetItem``), which happens
    once in a webhook's life or per TTL; when the item is there it shows the webhook was, and the
    write needs no read. ``note_failure`` reads the configuration every time, for the integration
    it returns. A removal racing such a write may still leave an orphan, which no read returns and
    which expires.
    """

    def __init__(self, table_name: str, client: Any = None) -> None:
        self.table = Table(table_name, client)

    @property
    def table_name(self) -> str:
        return self.table.name

    @property
    def client(self) -> Any:
        return self.table.client

    def _item_key(self, tenant_id: str, sort_key: str) -> dict[str, Any]:
        return {"tenant_key": {"S": tenant_key(tenant_id)}, "integration_id": {"S": sort_key}}

    def _key(self, tenant_id: str, integration_id: str) -> dict[str, Any]:
        """The key of a webhook's configuration item."""
        return self._item_key(tenant_id, escape(integration_id))

    def _state_key(self, tenant_id: str, integration_id: str) -> dict[str, Any]:
        return self._item_key(tenant_id, escape(integration_id) + STATE_SUFFIX)

    def _rate_key(self, tenant_id: str, integration_id: str) -> dict[str, Any]:
        return self._item_key(tenant_id, escape(integration_id) + RATE_SUFFIX)

    @staticmethod
    def _state_expiry() -> dict[str, str]:
        # wall-clock time, not the caller's `now`: DynamoDB compares the TTL with its own clock
        return {"N": str(int(time.time()) + STATE_TTL)}

    def _write(self, operation: str, **kwargs: Any) -> Any:
        """One write request (``operation`` of the client); made again after a short random pause,
        up to :data:`CONFLICT_ATTEMPTS` in all, while DynamoDB refuses it for a transaction in flight
        on the same item: a user's reset or a removal is a transaction on the state item that the
        dispatchers write, and neither side should fail for the other. Any other error (a failed
        condition included) is the caller's."""
        for attempt in range(1, CONFLICT_ATTEMPTS + 1):
            try:
                return getattr(self.client, operation)(**kwargs)
            except self.client.exceptions.TransactionConflictException:
                if attempt == CONFLICT_ATTEMPTS:
                    raise
            except self.client.exceptions.TransactionCanceledException as exc:
                if attempt == CONFLICT_ATTEMPTS or not _conflicted(exc):
                    raise
            time.sleep(random.uniform(0.0, CONFLICT_PAUSE * 2 ** (attempt - 1)))
        raise AssertionError("unreachable")  # pragma: no cover - the last attempt returns or raises

    def _config(self, tenant_id: str, integration_id: str) -> dict[str, Any] | None:
        """The configuration item, or ``None`` when there is no such webhook."""
        out = self.client.get_item(
            TableName=self.table_name, Key=self._key(tenant_id, integration_id), ConsistentRead=True
        )
        item = out.get("Item")
        return from_item(item) if item else None

    def _exists(self, tenant_id: str, integration_id: str) -> bool:
        out = self.client.get_item(
            TableName=self.table_name,
            Key=self._key(tenant_id, integration_id),
            ProjectionExpression="integration_id",
            ConsistentRead=True,
        )
        return "Item" in out

    def note_failure(self, tenant_id: str, integration_id: str, now: datetime) -> Integration | None:
        # The integration as it now is needs its configuration, which no write on the state item
        # returns: read first (which also keeps a removed webhook from getting a state item)
        config = self._config(tenant_id, integration_id)
        if config is None:
            return None
        out = self._write(
            "update_item",
            TableName=self.table_name,
            Key=self._state_key(tenant_id, integration_id),
            UpdateExpression=f"SET failing_since = if_not_exists(failing_since, :now), {TTL} = :ttl "
            f"ADD cb_failures :one REMOVE {PROVEN}",
            ExpressionAttributeValues={
                ":now": {"S": now.isoformat()},
                ":one": {"N": "1"},
                ":ttl": self._state_expiry(),
            },
            ReturnValues="ALL_NEW",
        )
        return from_records(config, from_item(out["Attributes"]))

    def note_success(self, tenant_id: str, integration_id: str, proven: bool = True) -> None:
        cleared = ", ".join(("failing_since", *CIRCUIT_ATTRIBUTES))
        # written only when something changes: it was failing, its circuit counted, or it is (not) proven yet
        change = f"attribute_not_exists({PROVEN})" if proven else f"attribute_exists({PROVEN})"
        condition = f"attribute_exists(failing_since) OR attribute_exists(cb_failures) OR {change}"
        values: dict[str, Any] = {":ttl": self._state_expiry()}
        if proven:
            values[":yes"] = {"BOOL": True}
        request: dict[str, Any] = {
            "TableName": self.table_name,
            "Key": self._state_key(tenant_id, integration_id),
            "UpdateExpression": f"SET {PROVEN} = :yes, {TTL} = :ttl REMOVE {cleared}"
            if proven
            else f"SET {TTL} = :ttl REMOVE {PROVEN}, {cleared}",
            "ExpressionAttributeValues": values,
        }
        try:
            self._write(
                "update_item",
                ConditionExpression=f"attribute_exists(integration_id) AND ({condition})",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
                **request,
            )
            return
        except self.client.exceptions.ConditionalCheckFailedException as exc:
            if exc.response.get("Item") or not proven:
                return  # nothing changes (no state item is a fresh state: not failing, not proven)
        if not self._exists(tenant_id, integration_id):
            return  # no such webhook: nothing written
        try:
            self._write("update_item", ConditionExpression=condition, **request)
        except self.client.exceptions.ConditionalCheckFailedException:
            return  # another dispatcher proved it meanwhile

    def open_circuit(self, tenant_id: str, integration_id: str, seen: Circuit, circuit: Circuit) -> bool:
        sets, removes = circuit_attributes(circuit)
        sets.pop("cb_failures", None)  # failures counted meanwhile (by other dispatchers) stay counted
        removes = [r for r in removes if r != "cb_failures"]
        names = {f"#a{n}": attribute for n, attribute in enumerate([*sets, *removes])}
        by_attribute = {attribute: name for name, attribute in names.items()}
        values = {f":v{n}": value(val) for n, val in enumerate(sets.values())}
        expression = "SET " + ", ".join([*(f"{by_attribute[a]} = :v{n}" for n, a in enumerate(sets)), f"{TTL} = :ttl"])
        values[":ttl"] = self._state_expiry()
        if removes:
            expression += " REMOVE " + ", ".join(by_attribute[a] for a in removes)
        names["#until"] = "cb_open_until"
        if seen.open_until is None:
            condition = "attribute_not_exists(#until)"
        else:
            condition = "#until = :seen"
            values[":seen"] = {"N": str(millis(seen.open_until))}
        request: dict[str, Any] = {
            "TableName": self.table_name,
            "Key": self._state_key(tenant_id, integration_id),
            "UpdateExpression": expression,
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
        }
        try:  # the usual case: failures were counted, so the state item is there
            self._write(
                "update_item",
                ConditionExpression=f"attribute_exists(integration_id) AND {condition}",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
                **request,
            )
            return True
        except self.client.exceptions.ConditionalCheckFailedException as exc:
            if exc.response.get("Item") or seen.open_until is not None:
                return False  # changed since it was seen (no state item: a closed circuit, not the one seen)
        if not self._exists(tenant_id, integration_id):
            return False
        try:
            self._write("update_item", ConditionExpression=condition, **request)
        except self.client.exceptions.ConditionalCheckFailedException:
            return False
        return True

    def claim_probe(self, tenant_id: str, integration_id: str, now: datetime, until: datetime) -> bool:
        try:  # an open circuit is on the state item: without one there is nothing to probe (no read needed)
            self._write(
                "update_item",
                TableName=self.table_name,
                Key=self._state_key(tenant_id, integration_id),
                UpdateExpression=f"SET cb_probe_until = :until, {TTL} = :ttl",
                ConditionExpression="cb_open_until <= :now AND "
                "(attribute_not_exists(cb_probe_until) OR cb_probe_until <= :now)",
                ExpressionAttributeValues={
                    ":until": {"N": str(millis(until))},
                    ":now": {"N": str(millis(now))},
                    ":ttl": self._state_expiry(),
                },
            )
        except self.client.exceptions.ConditionalCheckFailedException:
            return False
        return True

    def start_trial(self, tenant_id: str, integration_id: str, slots: int, now: datetime, until: datetime) -> Trial:
        values = {":until": {"N": str(millis(until))}, ":now": {"N": str(millis(now))}, ":ttl": self._state_expiry()}
        free_turn = f"attribute_not_exists({PROVEN}) AND (attribute_not_exists(#turn) OR #turn <= :now)"
        present = "attribute_exists(integration_id) AND "  # the state item is there: so was the webhook
        tried: set[int] = set()
        slot = 0
        while True:  # the first free turn, as the failed condition's copy of the item tells (<= slots tries)
            tried.add(slot)
            try:
                self._write(
                    "update_item",
                    TableName=self.table_name,
                    Key=self._state_key(tenant_id, integration_id),
                    UpdateExpression=f"SET #turn = :until, {TTL} = :ttl",
                    ConditionExpression=present + free_turn,
                    ExpressionAttributeNames={"#turn": trial_attribute(slot)},
                    ExpressionAttributeValues=values,
                    ReturnValuesOnConditionCheckFailure="ALL_OLD",
                )
                return Trial(slot, until)
            except self.client.exceptions.ConditionalCheckFailedException as exc:
                item = exc.response.get("Item")
                if not item:  # no state item (every turn free), unless there is no such webhook
                    if not present or not self._exists(tenant_id, integration_id):
                        return Trial()
                    present = ""
                    continue
                data = from_item(item)
                if data.get(PROVEN):
                    return Trial(proven=True)
                free = [
                    n
                    for n in range(slots)
                    if n not in tried and ((taken := data.get(trial_attribute(n))) is None or int(taken) <= millis(now))
                ]
                if not free:
                    return Trial()
                slot = free[0]

    def end_trial(self, tenant_id: str, integration_id: str, trial: Trial) -> None:
        if trial.slot is None or trial.until is None:
            return
        try:
            self._write(
                "update_item",
                TableName=self.table_name,
                Key=self._state_key(tenant_id, integration_id),
                UpdateExpression=f"SET {TTL} = :ttl REMOVE #turn",
                ConditionExpression="#turn = :until",
                ExpressionAttributeNames={"#turn": trial_attribute(trial.slot)},
                ExpressionAttributeValues={":until": {"N": str(millis(trial.until))}, ":ttl": self._state_expiry()},
            )
        except self.client.exceptions.ConditionalCheckFailedException:
            return  # its time was up, and another dispatcher took the turn

    def take_rate_token(self, tenant_id: str, integration_id: str, second: int, limit: int) -> bool:
        key = self._rate_key(tenant_id, integration_id)
        try:  # the usual case: this second's window exists and has room
            self._write(
                "update_item",
                TableName=self.table_name,
                Key=key,
                UpdateExpression="ADD rl_count :one",
                ConditionExpression="rl_second = :s AND rl_count < :limit",
                ExpressionAttributeValues={":s": {"N": str(second)}, ":one": {"N": "1"}, ":limit": {"N": str(limit)}},
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
            return True
        except self.client.exceptions.ConditionalCheckFailedException as exc:
            found = exc.response.get("Item")
        values = {":s": {"N": str(second)}, ":one": {"N": "1"}, ":ttl": {"N": str(second + RATE_TTL)}}
        if found:  # the window there tells: full, or a past second's (started anew here)
            window = int(from_item(found).get("rl_second", 0))
            if window >= second:
                return False  # this second is full (or a later one started: the past is closed)
            condition = "rl_second = :seen"
            values[":seen"] = {"N": str(window)}
        elif self._exists(tenant_id, integration_id):  # no window yet, or it expired: a webhook still?
            condition = "attribute_not_exists(rl_second)"
        else:
            return False
        try:  # the first delivery of a new second starts its window
            self._write(
                "update_item",
                TableName=self.table_name,
                Key=key,
                UpdateExpression=f"SET rl_second = :s, rl_count = :one, {TTL} = :ttl",
                ConditionExpression=condition,
                ExpressionAttributeValues=values,
            )
            return True
        except self.client.exceptions.ConditionalCheckFailedException:
            return False  # another dispatcher started a window meanwhile: try the next second
