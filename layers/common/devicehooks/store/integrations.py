"""Integrations: one item per webhook, plus a per-tenant counter that enforces the limit."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any, Protocol

from devicehooks import aws
from devicehooks.aws.dynamo import batch_delete, first_condition_failed, from_item, query_all, to_item, value
from devicehooks.domain.models import PROVIDER_WEBHOOK, Circuit, Integration, IntegrationChanges
from devicehooks.errors import Conflict

COUNTER_ID = "~count"


def tenant_key(tenant_id: str) -> str:
    """Partition key of a tenant (DynamoDB keys cannot be empty; Mender's open source tenant is "")."""
    return f"T#{tenant_id}"


def limit_message(limit: int) -> str:
    return f"integration limit reached: a tenant may have at most {limit} integrations"


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
        """Apply ``changes`` in one write; the integration as changed, ``None`` if there is none."""

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


_CIRCUIT_TIMES = (("opened_at", "cb_opened_at"), ("open_until", "cb_open_until"), ("probe_until", "cb_probe_until"))
CIRCUIT_ATTRIBUTES = ("cb_failures", "cb_cooldown", *(attribute for _, attribute in _CIRCUIT_TIMES))
PROVEN = "cb_proven"  # a delivery succeeded and none failed since: not on trial


def _trial_attribute(slot: int) -> str:
    return f"cb_trial{slot}"  # until when the turn is taken (epoch milliseconds)


def _millis(value: datetime) -> int:
    return int(value.timestamp() * 1000)


def _from_millis(value: Any) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(int(value) / 1000, UTC)


def _circuit_attributes(circuit: Circuit) -> tuple[dict[str, Any], list[str]]:
    """A circuit as item attributes to SET and to REMOVE (times as epoch milliseconds, comparable)."""
    values: dict[str, Any] = {
        "cb_failures": circuit.failures or None,
        "cb_cooldown": circuit.cooldown or None,
        PROVEN: True if circuit.proven else None,
    }
    for name, attribute in _CIRCUIT_TIMES:
        moment = getattr(circuit, name)
        values[attribute] = None if moment is None else _millis(moment)
    return {k: v for k, v in values.items() if v is not None}, [k for k, v in values.items() if v is None]


def _circuit(data: Mapping[str, Any]) -> Circuit:
    return Circuit(
        failures=int(data.get("cb_failures", 0)),
        opened_at=_from_millis(data.get("cb_opened_at")),
        open_until=_from_millis(data.get("cb_open_until")),
        cooldown=int(data.get("cb_cooldown", 0)),
        probe_until=_from_millis(data.get("cb_probe_until")),
        proven=bool(data.get(PROVEN)),
    )


def _to_record(integration: Integration) -> dict[str, Any]:
    record: dict[str, Any] = {
        "tenant_key": tenant_key(integration.tenant_id),
        "integration_id": integration.id,
        "tenant_id": integration.tenant_id,
        "provider": integration.provider,
        "url": integration.url,
        "description": integration.description,
        "enabled": integration.enabled,
        "created_at": integration.created_at.isoformat(),
    }
    sets, _ = _record_changes(
        {
            f.name: getattr(integration, f.name)
            for f in fields(integration)
            if f.name not in ("id", "tenant_id", "provider", "created_at")
        }
    )
    return {k: v for k, v in {**record, **sets}.items() if v is not None}


def _record_changes(changes: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Integration fields as item attributes to SET, and the names of those to REMOVE (set to ``None``)."""
    sets: dict[str, Any] = {}
    removes: list[str] = []
    for name, val in changes.items():
        if isinstance(val, Circuit):
            circuit_sets, circuit_removes = _circuit_attributes(val)
            sets.update(circuit_sets)
            removes += circuit_removes
        elif name in ("secret", "previous_secret"):
            prefix = "secret" if name == "secret" else "prev_secret"
            sets[f"{prefix}_state"] = "none" if val is None else ("sealed" if val else "empty")
            if val:
                sets[f"{prefix}_ct"] = val
            else:
                removes.append(f"{prefix}_ct")
        elif val is None:
            removes.append(name)
        elif isinstance(val, datetime):
            sets[name] = val.isoformat()
        elif isinstance(val, tuple):
            sets[name] = list(val)
        else:
            sets[name] = val
    return sets, removes


def _time(value: Any) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def _sealed(data: Mapping[str, Any], prefix: str) -> bytes | None:
    if data.get(f"{prefix}_state", "none") == "none":
        return None
    ciphertext = data.get(f"{prefix}_ct")
    return bytes(ciphertext) if ciphertext is not None else b""


def _from_record(data: Mapping[str, Any]) -> Integration:
    event_types = data.get("event_types")
    scopes = data.get("scopes")  # absent on items written before scopes: deviceauth only
    return Integration(
        id=data["integration_id"],
        tenant_id=data["tenant_id"],
        url=data["url"],
        created_at=datetime.fromisoformat(data["created_at"]),
        updated_at=datetime.fromisoformat(data["updated_at"]),
        provider=data.get("provider", PROVIDER_WEBHOOK),
        secret=_sealed(data, "secret"),
        description=data.get("description", ""),
        event_types=tuple(event_types) if event_types is not None else None,
        enabled=bool(data.get("enabled", True)),
        disabled_reason=data.get("disabled_reason"),
        failing_since=_time(data.get("failing_since")),
        previous_secret=_sealed(data, "prev_secret"),
        previous_secret_until=_time(data.get("previous_secret_until")),
        rate_limit=int(data["rate_limit"]) if data.get("rate_limit") is not None else None,
        circuit=_circuit(data),
        scopes=tuple(scopes) if scopes is not None else None,
    )


class DynamoIntegrationStore:
    """Integrations in DynamoDB: PK ``tenant_key``, SK ``integration_id``."""

    def __init__(self, table_name: str, client: Any = None) -> None:
        self.table_name = table_name
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = aws.client("dynamodb")
        return self._client

    def _key(self, tenant_id: str, integration_id: str) -> dict[str, Any]:
        return {"tenant_key": {"S": tenant_key(tenant_id)}, "integration_id": {"S": integration_id}}

    def add(self, integration: Integration, limit: int) -> None:
        counter = self._key(integration.tenant_id, COUNTER_ID)
        try:
            self.client.transact_write_items(
                TransactItems=[
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
                            "Item": to_item(_to_record(integration)),
                            "ConditionExpression": "attribute_not_exists(integration_id)",
                        }
                    },
                ]
            )
        except self.client.exceptions.TransactionCanceledException as exc:
            if first_condition_failed(exc):
                raise Conflict(limit_message(limit)) from None
            raise

    def list_tenant(self, tenant_id: str) -> list[Integration]:
        items = query_all(
            self.client,
            TableName=self.table_name,
            KeyConditionExpression="tenant_key = :t",
            ExpressionAttributeValues={":t": {"S": tenant_key(tenant_id)}},
            ConsistentRead=True,
        )
        found = [_from_record(from_item(i)) for i in items if i["integration_id"]["S"] != COUNTER_ID]
        return sorted(found, key=lambda i: (i.created_at, i.id))

    def get(self, tenant_id: str, integration_id: str) -> Integration | None:
        out = self.client.get_item(
            TableName=self.table_name, Key=self._key(tenant_id, integration_id), ConsistentRead=True
        )
        item = out.get("Item")
        return _from_record(from_item(item)) if item else None

    def remove(self, tenant_id: str, integration_id: str) -> bool:
        try:
            self.client.transact_write_items(
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
                            "Key": self._key(tenant_id, COUNTER_ID),
                            "UpdateExpression": "SET #n = #n - :one",
                            "ConditionExpression": "#n > :zero",
                            "ExpressionAttributeNames": {"#n": "count"},
                            "ExpressionAttributeValues": {":one": {"N": "1"}, ":zero": {"N": "0"}},
                        }
                    },
                ]
            )
        except self.client.exceptions.TransactionCanceledException as exc:
            if first_condition_failed(exc):
                return False
            raise
        return True

    def update(self, tenant_id: str, integration_id: str, changes: IntegrationChanges) -> Integration | None:
        sets, removes = _record_changes(changes.given())
        names: dict[str, str] = {}
        values: dict[str, Any] = {}
        clauses = []
        for n, (key, val) in enumerate(sets.items()):
            names[f"#s{n}"] = key
            values[f":s{n}"] = value(val)
            clauses.append(f"#s{n} = :s{n}")
        expression = "SET " + ", ".join(clauses) if clauses else ""
        if removes:
            for n, key in enumerate(removes):
                names[f"#r{n}"] = key
            expression += " REMOVE " + ", ".join(f"#r{n}" for n in range(len(removes)))
        names["#id"] = "integration_id"
        kwargs: dict[str, Any] = {
            "TableName": self.table_name,
            "Key": self._key(tenant_id, integration_id),
            "UpdateExpression": expression.strip(),
            "ConditionExpression": "attribute_exists(#id)",
            "ExpressionAttributeNames": names,
            "ReturnValues": "ALL_NEW",
        }
        if values:
            kwargs["ExpressionAttributeValues"] = values
        try:
            out = self.client.update_item(**kwargs)
        except self.client.exceptions.ConditionalCheckFailedException:
            return None
        return _from_record(from_item(out["Attributes"]))

    def note_failure(self, tenant_id: str, integration_id: str, now: datetime) -> Integration | None:
        try:
            out = self.client.update_item(
                TableName=self.table_name,
                Key=self._key(tenant_id, integration_id),
                UpdateExpression="SET failing_since = if_not_exists(failing_since, :now) ADD cb_failures :one "
                f"REMOVE {PROVEN}",
                ConditionExpression="attribute_exists(integration_id)",
                ExpressionAttributeValues={":now": {"S": now.isoformat()}, ":one": {"N": "1"}},
                ReturnValues="ALL_NEW",
            )
        except self.client.exceptions.ConditionalCheckFailedException:
            return None
        return _from_record(from_item(out["Attributes"]))

    def note_success(self, tenant_id: str, integration_id: str, proven: bool = True) -> None:
        cleared = ", ".join(("failing_since", *CIRCUIT_ATTRIBUTES))
        # written only when something changes: it was failing, its circuit counted, or it is (not) proven yet
        change = f"attribute_not_exists({PROVEN})" if proven else f"attribute_exists({PROVEN})"
        extra: dict[str, Any] = {"ExpressionAttributeValues": {":yes": {"BOOL": True}}} if proven else {}
        try:
            self.client.update_item(
                TableName=self.table_name,
                Key=self._key(tenant_id, integration_id),
                UpdateExpression=f"SET {PROVEN} = :yes REMOVE {cleared}" if proven else f"REMOVE {PROVEN}, {cleared}",
                ConditionExpression="attribute_exists(integration_id) AND "
                f"(attribute_exists(failing_since) OR attribute_exists(cb_failures) OR {change})",
                **extra,
            )
        except self.client.exceptions.ConditionalCheckFailedException:
            return

    def open_circuit(self, tenant_id: str, integration_id: str, seen: Circuit, circuit: Circuit) -> bool:
        sets, removes = _circuit_attributes(circuit)
        sets.pop("cb_failures", None)  # failures counted meanwhile (by other dispatchers) stay counted
        removes = [r for r in removes if r != "cb_failures"]
        names = {f"#a{n}": attribute for n, attribute in enumerate([*sets, *removes])}
        by_attribute = {attribute: name for name, attribute in names.items()}
        values = {f":v{n}": value(val) for n, val in enumerate(sets.values())}
        expression = "SET " + ", ".join(f"{by_attribute[a]} = :v{n}" for n, a in enumerate(sets))
        if removes:
            expression += " REMOVE " + ", ".join(by_attribute[a] for a in removes)
        names["#until"] = "cb_open_until"
        names["#id"] = "integration_id"
        if seen.open_until is None:
            condition = "attribute_exists(#id) AND attribute_not_exists(#until)"
        else:
            condition = "attribute_exists(#id) AND #until = :seen"
            values[":seen"] = {"N": str(_millis(seen.open_until))}
        try:
            self.client.update_item(
                TableName=self.table_name,
                Key=self._key(tenant_id, integration_id),
                UpdateExpression=expression,
                ConditionExpression=condition,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            )
        except self.client.exceptions.ConditionalCheckFailedException:
            return False
        return True

    def claim_probe(self, tenant_id: str, integration_id: str, now: datetime, until: datetime) -> bool:
        try:
            self.client.update_item(
                TableName=self.table_name,
                Key=self._key(tenant_id, integration_id),
                UpdateExpression="SET cb_probe_until = :until",
                ConditionExpression="cb_open_until <= :now AND "
                "(attribute_not_exists(cb_probe_until) OR cb_probe_until <= :now)",
                ExpressionAttributeValues={":until": {"N": str(_millis(until))}, ":now": {"N": str(_millis(now))}},
            )
        except self.client.exceptions.ConditionalCheckFailedException:
            return False
        return True

    def start_trial(self, tenant_id: str, integration_id: str, slots: int, now: datetime, until: datetime) -> Trial:
        values = {":until": {"N": str(_millis(until))}, ":now": {"N": str(_millis(now))}}
        tried: set[int] = set()
        slot = 0
        while True:  # the first free turn, as the failed condition's copy of the item tells (<= slots tries)
            tried.add(slot)
            try:
                self.client.update_item(
                    TableName=self.table_name,
                    Key=self._key(tenant_id, integration_id),
                    UpdateExpression="SET #turn = :until",
                    ConditionExpression=f"attribute_exists(integration_id) AND attribute_not_exists({PROVEN}) AND "
                    "(attribute_not_exists(#turn) OR #turn <= :now)",
                    ExpressionAttributeNames={"#turn": _trial_attribute(slot)},
                    ExpressionAttributeValues=values,
                    ReturnValuesOnConditionCheckFailure="ALL_OLD",
                )
                return Trial(slot, until)
            except self.client.exceptions.ConditionalCheckFailedException as exc:
                item = exc.response.get("Item")
                if not item:
                    return Trial()  # no such webhook
                data = from_item(item)
                if data.get(PROVEN):
                    return Trial(proven=True)
                free = [
                    n
                    for n in range(slots)
                    if n not in tried
                    and ((taken := data.get(_trial_attribute(n))) is None or int(taken) <= _millis(now))
                ]
                if not free:
                    return Trial()
                slot = free[0]

    def end_trial(self, tenant_id: str, integration_id: str, trial: Trial) -> None:
        if trial.slot is None or trial.until is None:
            return
        try:
            self.client.update_item(
                TableName=self.table_name,
                Key=self._key(tenant_id, integration_id),
                UpdateExpression="REMOVE #turn",
                ConditionExpression="#turn = :until",
                ExpressionAttributeNames={"#turn": _trial_attribute(trial.slot)},
                ExpressionAttributeValues={":until": {"N": str(_millis(trial.until))}},
            )
        except self.client.exceptions.ConditionalCheckFailedException:
            return  # its time was up, and another dispatcher took the turn

    def take_rate_token(self, tenant_id: str, integration_id: str, second: int, limit: int) -> bool:
        key = self._key(tenant_id, integration_id)
        values = {":s": {"N": str(second)}, ":one": {"N": "1"}}
        try:  # the usual case: this second's window exists and has room
            self.client.update_item(
                TableName=self.table_name,
                Key=key,
                UpdateExpression="ADD rl_count :one",
                ConditionExpression="rl_second = :s AND rl_count < :limit",
                ExpressionAttributeValues={**values, ":limit": {"N": str(limit)}},
            )
            return True
        except self.client.exceptions.ConditionalCheckFailedException:
            pass
        try:  # the first delivery of a new second starts its window
            self.client.update_item(
                TableName=self.table_name,
                Key=key,
                UpdateExpression="SET rl_second = :s, rl_count = :one",
                ConditionExpression="attribute_exists(integration_id) AND "
                "(attribute_not_exists(rl_second) OR rl_second < :s)",
                ExpressionAttributeValues=values,
            )
            return True
        except self.client.exceptions.ConditionalCheckFailedException:
            return False  # this second is full (or another dispatcher started it: try the next)

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
        batch_delete(self.client, self.table_name, keys)
        return sum(1 for k in keys if k["integration_id"]["S"] != COUNTER_ID)
