"""A webhook's DynamoDB items and the integration they hold: the key layout, an integration's
fields as item attributes (configuration and state) and back, and update expressions. Pure: no
request is made here (:mod:`devicehooks.store.integrations` and
:mod:`devicehooks.store.webhook_state` make them); docs/architecture.md, "Storage", has the table.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import fields
from datetime import UTC, datetime
from typing import Any

from devicehooks.aws.dynamo import from_item, value
from devicehooks.domain.models import PROVIDER_WEBHOOK, Circuit, Integration
from devicehooks.store.keys import SEP, escape, join, unescape

# Sort keys: a webhook's configuration item ``<id>``, its runtime items ``<id>#state`` and
# ``<id>#rate``, the id escaped (devicehooks.store.keys: it holds no ``#``), so a key without ``#``
# is a configuration item's; the tenant's counter ``#count`` (no webhook's: its id part is empty).
COUNTER_ID = "#count"
STATE_SUFFIX = "#state"
RATE_SUFFIX = "#rate"
STATE_FIELDS = ("failing_since", "circuit")  # the Integration fields kept on the state item
TTL = "expire_ts"  # the table's TTL attribute (template.yaml): epoch seconds

# The circuit on the state item, its times as epoch milliseconds (comparable in a condition)
_CIRCUIT_TIMES = (("opened_at", "cb_opened_at"), ("open_until", "cb_open_until"), ("probe_until", "cb_probe_until"))
CIRCUIT_ATTRIBUTES = ("cb_failures", "cb_cooldown", *(attribute for _, attribute in _CIRCUIT_TIMES))
PROVEN = "cb_proven"  # a delivery succeeded and none failed since: not on trial


def tenant_key(tenant_id: str) -> str:
    """Partition key of a tenant (DynamoDB keys cannot be empty; Mender's open source tenant is "")."""
    return join("T", tenant_id)


def trial_attribute(slot: int) -> str:
    return f"cb_trial{slot}"  # until when the turn is taken (epoch milliseconds)


def millis(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _from_millis(value: Any) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(int(value) / 1000, UTC)


def circuit_attributes(circuit: Circuit) -> tuple[dict[str, Any], list[str]]:
    """A circuit as item attributes to SET and to REMOVE (times as epoch milliseconds, comparable)."""
    values: dict[str, Any] = {
        "cb_failures": circuit.failures or None,
        "cb_cooldown": circuit.cooldown or None,
        PROVEN: True if circuit.proven else None,
    }
    for name, attribute in _CIRCUIT_TIMES:
        moment = getattr(circuit, name)
        values[attribute] = None if moment is None else millis(moment)
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


def record_changes(changes: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Integration fields as item attributes to SET, and the names of those to REMOVE (set to ``None``)."""
    sets: dict[str, Any] = {}
    removes: list[str] = []
    for name, val in changes.items():
        if isinstance(val, Circuit):
            circuit_sets, circuit_removes = circuit_attributes(val)
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


def to_record(integration: Integration) -> dict[str, Any]:
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
    sets, _ = record_changes(
        {
            f.name: getattr(integration, f.name)
            for f in fields(integration)
            if f.name not in ("id", "tenant_id", "provider", "created_at", *STATE_FIELDS)
        }
    )
    return {k: v for k, v in {**record, **sets}.items() if v is not None}


def state_attributes(integration: Integration) -> dict[str, Any]:
    """The state item's attributes for ``integration`` as given (none for a fresh one)."""
    sets, _ = record_changes({name: getattr(integration, name) for name in STATE_FIELDS})
    return sets


def _time(value: Any) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def _sealed(data: Mapping[str, Any], prefix: str) -> bytes | None:
    if data.get(f"{prefix}_state", "none") == "none":
        return None
    ciphertext = data.get(f"{prefix}_ct")
    return bytes(ciphertext) if ciphertext is not None else b""


def from_records(config: Mapping[str, Any], state: Mapping[str, Any]) -> Integration:
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


def is_configuration(sort_key: str) -> bool:
    """Whether an item's (escaped) sort key is a webhook's configuration item's."""
    return SEP not in sort_key


def integrations_of(items: Iterable[Mapping[str, Any]]) -> dict[str, Integration]:
    """The integrations among a partition's items, by id: each configuration item with its state
    item. A state item without its configuration item (an orphan: the webhook was removed while
    a dispatcher wrote) is passed over; rate items and the counter are no integrations."""
    configs: dict[str, dict[str, Any]] = {}
    states: dict[str, dict[str, Any]] = {}
    for item in items:
        key = item["integration_id"]["S"]
        if is_configuration(key):
            configs[key] = from_item(item)
        elif key.endswith(STATE_SUFFIX):
            states[key.removesuffix(STATE_SUFFIX)] = from_item(item)
        # else a rate item, or the counter
    return {unescape(key): from_records(config, states.get(key, {})) for key, config in configs.items()}


def update_expression(sets: Mapping[str, Any], removes: Iterable[str]) -> dict[str, Any]:
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
