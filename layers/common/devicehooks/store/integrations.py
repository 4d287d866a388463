"""Integrations: per webhook a configuration item and the items its deliveries write, plus a
per-tenant counter that enforces the limit (docs/architecture.md, "Storage")."""

from __future__ import annotations

import random
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any, Protocol

from devicehooks import aws
from devicehooks.aws.dynamo import batch_delete, first_condition_failed, from_item, query_all, to_item, value
from devicehooks.domain.models import PROVIDER_WEBHOOK, Circuit, Integration, IntegrationChanges
from devicehooks.errors import Conflict
from devicehooks.store.keys import SEP, escape, join, unescape

# Sort keys: a webhook's configuration item ``<id>``, its runtime items ``<id>#state`` and
# ``<id>#rate``, the id escaped (devicehooks.store.keys: it holds no ``#``), so a key without ``#``
# is a configuration item's; the tenant's counter ``#count`` (no webhook's: its id part is empty).
COUNTER_ID = "#count"
STATE_SUFFIX = "#state"
RATE_SUFFIX = "#rate"
STATE_FIELDS = ("failing_since", "circuit")  # the Integration fields kept on the state item
TTL = "expire_ts"  # the table's TTL attribute (template.yaml): epoch seconds

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


def tenant_key(tenant_id: str) -> str:
    """Partition key of a tenant (DynamoDB keys cannot be empty; Mender's open source tenant is "")."""
    return join("T", tenant_id)


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


def _record_changes(changes: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
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


def _to_record(integration: Integration) -> dict[str, Any]:
    """The configuration item of a new integration (its state, if any, goes on the state item)."""
    record: dict[str, Any] = {
        "tenant_key": tenant_key(integration.tenant_id),
        "integration_id": escape(integration.id),  # the sort key
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
            if f.name not in ("id", "tenant_id", "provider", "created_at", *STATE_FIELDS)
        }
    )
    return {k: v for k, v in {**record, **sets}.items() if v is not None}


def _state_attributes(integration: Integration) -> dict[str, Any]:
    """The state item's attributes for ``integration`` as given (none for a fresh one)."""
    sets, _ = _record_changes({name: getattr(integration, name) for name in STATE_FIELDS})
    return sets


def _time(value: Any) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def _sealed(data: Mapping[str, Any], prefix: str) -> bytes | None:
    if data.get(f"{prefix}_state", "none") == "none":
        return None
    ciphertext = data.get(f"{prefix}_ct")
    return bytes(ciphertext) if ciphertext is not None else b""


def _from_records(config: Mapping[str, Any], state: Mapping[str, Any]) -> Integration:
    """An integration from its configuration item and its state item (``{}``: none, a fresh state)."""
    event_types = config.get("event_types")
    scopes = config.get("scopes")  # absent when none were given: deviceauth only
    return Integration(
        id=unescape(config["integration_id"]),
        tenant_id=config["tenant_id"],
        url=config["url"],
        created_at=datetime.fromisoformat(config["created_at"]),
        updated_at=datetime.fromisoformat(config["updated_at"]),
        provider=config.get("provider", PROVIDER_WEBHOOK),
        secret=_sealed(config, "secret"),
        description=config.get("description", ""),
        event_types=tuple(event_types) if event_types is not None else None,
        enabled=bool(config.get("enabled", True)),
        disabled_reason=config.get("disabled_reason"),
        failing_since=_time(state.get("failing_since")),
        previous_secret=_sealed(config, "prev_secret"),
        previous_secret_until=_time(config.get("previous_secret_until")),
        rate_limit=int(config["rate_limit"]) if config.get("rate_limit") is not None else None,
        circuit=_circuit(state),
        scopes=tuple(scopes) if scopes is not None else None,
    )


def _integrations(items: Iterable[Mapping[str, Any]]) -> dict[str, Integration]:
    """The integrations among a partition's items, by id: each configuration item with its state
    item. A state item without its configuration item (an orphan: the webhook was removed while
    a dispatcher wrote) is passed over; rate items and the counter are no integrations."""
    configs: dict[str, dict[str, Any]] = {}
    states: dict[str, dict[str, Any]] = {}
    for item in items:
        key = item["integration_id"]["S"]
        if SEP not in key:
            configs[key] = from_item(item)
        elif key.endswith(STATE_SUFFIX):
            states[key.removesuffix(STATE_SUFFIX)] = from_item(item)
        # else a rate item, or the counter
    return {unescape(key): _from_records(config, states.get(key, {})) for key, config in configs.items()}


def _update(sets: Mapping[str, Any], removes: Iterable[str]) -> dict[str, Any]:
    """An ``UpdateItem``'s expression, names and values that SET ``sets`` and REMOVE ``removes``."""
    names: dict[str, str] = {}
    values: dict[str, Any] = {}
    clauses = []
    for n, (key, val) in enumerate(sets.items()):
        names[f"#s{n}"] = key
        values[f":s{n}"] = value(val)
        clauses.append(f"#s{n} = :s{n}")
    expression = "SET " + ", ".join(clauses) if clauses else ""
    removed = [key for key in dict.fromkeys(removes) if key not in sets]
    for n, key in enumerate(removed):
        names[f"#r{n}"] = key
    if removed:
        expression += " REMOVE " + ", ".join(f"#r{n}" for n in range(len(removed)))
    out: dict[str, Any] = {"UpdateExpression": expression.strip(), "ExpressionAttributeNames": names}
    if values:
        out["ExpressionAttributeValues"] = values
    return out


def _conflicted(exc: Exception) -> bool:
    """Whether a cancelled transaction was cancelled only for another request on its items."""
    codes = {r.get("Code") for r in getattr(exc, "response", {}).get("CancellationReasons", [])}
    return "TransactionConflict" in codes and codes <= {"TransactionConflict", "None", None}


class DynamoIntegrationStore:
    """Integrations in DynamoDB: PK ``tenant_key``, SK ``integration_id`` (ids escaped in both:
    :mod:`devicehooks.store.keys`).

    Per webhook, in its tenant's partition: the configuration item (SK ``<id>``), written only by
    the user's changes (and the dispatcher disabling the webhook); the state item (SK
    ``<id>#state``: circuit, proof, trial turns, ``failing_since``; TTL :data:`STATE_TTL` after its
    last write); the rate item (SK ``<id>#rate``: the current second's delivery count; TTL
    :data:`RATE_TTL` after its second). A delivery's bookkeeping writes only the last two, so it
    never rewrites the configuration nor races a user's change on one item. No state item reads as
    a fresh state.

    A state or rate write must not make items for a webhook that is gone: a write that would create
    its item (none there yet) first reads the configuration item (one ``GetItem``), which happens
    once in a webhook's life or per TTL; when the item is there it shows the webhook was, and the
    write needs no read. ``note_failure`` reads the configuration every time, for the integration
    it returns. A removal racing such a write may still leave an orphan, which no read returns and
    which expires.
    """

    def __init__(self, table_name: str, client: Any = None) -> None:
        self.table_name = table_name
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = aws.client("dynamodb")
        return self._client

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
                    "Item": to_item(_to_record(integration)),
                    "ConditionExpression": "attribute_not_exists(integration_id)",
                }
            },
        ]
        state = _state_attributes(integration)
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
        return sorted(_integrations(items).values(), key=lambda i: (i.created_at, i.id))

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
        return _integrations(items).get(integration_id)

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
        sets, removes = _record_changes(given)
        config = _update(sets, removes)
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
            return _from_records(from_item(out["Attributes"]), from_item(found or {}))
        # A reset (enabled or disabled, a new URL, the dispatcher giving up): the configuration and
        # the state in one transaction, so no delivery's bookkeeping lands between them and
        # survives the reset. Trial turns stay: each is held by a running invocation, and freeing
        # them would let more invocations than there are turns at the webhook on trial. The state
        # item is written even when there was none (it is a few bytes, and expires).
        state_sets, state_removes = _record_changes(state)
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
                            **_update(state_sets, state_removes),
                        }
                    },
                ],
            )
        except self.client.exceptions.TransactionCanceledException as exc:
            if first_condition_failed(exc):
                return None
            raise
        return self.get(tenant_id, integration_id)  # a transaction returns no item: read both back

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
        return _from_records(config, from_item(out["Attributes"]))

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
        sets, removes = _circuit_attributes(circuit)
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
            values[":seen"] = {"N": str(_millis(seen.open_until))}
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
                    ":until": {"N": str(_millis(until))},
                    ":now": {"N": str(_millis(now))},
                    ":ttl": self._state_expiry(),
                },
            )
        except self.client.exceptions.ConditionalCheckFailedException:
            return False
        return True

    def start_trial(self, tenant_id: str, integration_id: str, slots: int, now: datetime, until: datetime) -> Trial:
        values = {":until": {"N": str(_millis(until))}, ":now": {"N": str(_millis(now))}, ":ttl": self._state_expiry()}
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
                    ExpressionAttributeNames={"#turn": _trial_attribute(slot)},
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
            self._write(
                "update_item",
                TableName=self.table_name,
                Key=self._state_key(tenant_id, integration_id),
                UpdateExpression=f"SET {TTL} = :ttl REMOVE #turn",
                ConditionExpression="#turn = :until",
                ExpressionAttributeNames={"#turn": _trial_attribute(trial.slot)},
                ExpressionAttributeValues={":until": {"N": str(_millis(trial.until))}, ":ttl": self._state_expiry()},
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
        return sum(
            1
            for k in keys
            if SEP not in k["integration_id"]["S"]  # a configuration item
        )
