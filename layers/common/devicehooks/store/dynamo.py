"""Thin helpers over the low-level DynamoDB client (no boto3 resource layer at cold start)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

_ser = TypeSerializer()
_de = TypeDeserializer()


def to_item(values: Mapping[str, Any]) -> dict[str, Any]:
    """Python values to DynamoDB attribute values; ``None`` values are left out."""
    return {k: _ser.serialize(v) for k, v in values.items() if v is not None}


def from_item(item: Mapping[str, Any]) -> dict[str, Any]:
    """DynamoDB attribute values to Python values (numbers come back as ``Decimal``)."""
    return {k: _de.deserialize(v) for k, v in item.items()}


def value(v: Any) -> dict[str, Any]:
    """One Python value as a DynamoDB attribute value."""
    return dict(_ser.serialize(v))


def query_all(client: Any, **kwargs: Any) -> Iterator[dict[str, Any]]:
    """Every item a Query returns, across pages."""
    while True:
        page = client.query(**kwargs)
        yield from page.get("Items", [])
        last = page.get("LastEvaluatedKey")
        if not last:
            return
        kwargs["ExclusiveStartKey"] = last


def batch_write(client: Any, table: str, requests: list[dict[str, Any]]) -> None:
    """``PutRequest``/``DeleteRequest`` entries in batches of 25, retrying unprocessed items."""
    for start in range(0, len(requests), 25):
        pending = requests[start : start + 25]
        for _ in range(10):
            if not pending:
                break
            out = client.batch_write_item(RequestItems={table: pending})
            pending = out.get("UnprocessedItems", {}).get(table, [])
        if pending:
            raise RuntimeError(f"{len(pending)} writes left unprocessed in {table}")


def batch_get(client: Any, table: str, keys: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The items at ``keys`` that exist, in no particular order (batches of 100, unprocessed keys retried)."""
    found: list[dict[str, Any]] = []
    for start in range(0, len(keys), 100):
        pending = keys[start : start + 100]
        for _ in range(10):
            if not pending:
                break
            out = client.batch_get_item(RequestItems={table: {"Keys": pending}})
            found += out.get("Responses", {}).get(table, [])
            pending = out.get("UnprocessedKeys", {}).get(table, {}).get("Keys", [])
        if pending:
            raise RuntimeError(f"{len(pending)} reads left unprocessed in {table}")
    return found


def batch_delete(client: Any, table: str, keys: list[dict[str, Any]]) -> None:
    """Delete ``keys`` (see :func:`batch_write`)."""
    batch_write(client, table, [{"DeleteRequest": {"Key": k}} for k in keys])


def first_condition_failed(exc: Exception) -> bool:
    """Whether a cancelled transaction was cancelled by its first item's condition."""
    reasons = [r.get("Code") for r in getattr(exc, "response", {}).get("CancellationReasons", [])]
    return bool(reasons) and reasons[0] == "ConditionalCheckFailed"
