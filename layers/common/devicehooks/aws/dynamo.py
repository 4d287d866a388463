"""DynamoDB for the stores: attribute values, paging, batches (the stores make the other requests).

Attribute values are written and read here rather than with boto3's ``TypeSerializer``: that one
lives in the boto3 package, whose import costs every cold start ~15 ms (see ``aws.py``), for the
handful of types the stores use (strings, integers, booleans, bytes, lists, maps; the contract
suite round-trips them through DynamoDB on moto).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from decimal import Decimal
from typing import Any

from devicehooks.aws import retried


def value(v: Any) -> dict[str, Any]:
    """One Python value as a DynamoDB attribute value (``None`` is NULL; floats are refused, as boto3 does)."""
    if v is None:
        return {"NULL": True}
    if isinstance(v, bool):
        return {"BOOL": v}
    if isinstance(v, int | Decimal):
        return {"N": str(v)}
    if isinstance(v, str):
        return {"S": v}
    if isinstance(v, bytes | bytearray):
        return {"B": bytes(v)}
    if isinstance(v, Mapping):
        return {"M": {str(k): value(x) for k, x in v.items()}}
    if isinstance(v, list | tuple):
        return {"L": [value(x) for x in v]}
    raise TypeError(f"unsupported type for a DynamoDB attribute: {type(v).__name__}")


def python(attribute: Mapping[str, Any]) -> Any:
    """One DynamoDB attribute value as a Python value (integral numbers as ``int``)."""
    ((kind, raw),) = attribute.items()
    if kind in ("S", "BOOL"):
        return raw
    if kind == "N":
        number = Decimal(raw)
        return int(number) if number == number.to_integral_value() else number
    if kind == "B":
        return bytes(raw)
    if kind == "NULL":
        return None
    if kind == "M":
        return {k: python(x) for k, x in raw.items()}
    if kind == "L":
        return [python(x) for x in raw]
    if kind == "SS":
        return set(raw)
    if kind == "NS":
        return {python({"N": n}) for n in raw}
    if kind == "BS":
        return {bytes(b) for b in raw}
    raise TypeError(f"unknown DynamoDB attribute type {kind}")


def to_item(values: Mapping[str, Any]) -> dict[str, Any]:
    """Python values to DynamoDB attribute values; ``None`` values are left out."""
    return {k: value(v) for k, v in values.items() if v is not None}


def from_item(item: Mapping[str, Any]) -> dict[str, Any]:
    """DynamoDB attribute values to Python values."""
    return {k: python(v) for k, v in item.items()}


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
    """``PutRequest``/``DeleteRequest`` entries in batches of 25, unprocessed ones retried."""
    for start in range(0, len(requests), 25):

        def write(pending: list[dict[str, Any]]) -> list[dict[str, Any]]:
            out = client.batch_write_item(RequestItems={table: pending})
            left: list[dict[str, Any]] = out.get("UnprocessedItems", {}).get(table, [])
            return left

        left = retried(write, requests[start : start + 25])
        if left:
            raise RuntimeError(f"{len(left)} writes left unprocessed in {table}")


def batch_get(client: Any, table: str, keys: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The items at ``keys`` that exist, in no particular order (batches of 100, unprocessed keys retried)."""
    found: list[dict[str, Any]] = []

    def read(pending: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out = client.batch_get_item(RequestItems={table: {"Keys": pending}})
        found.extend(out.get("Responses", {}).get(table, []))
        left: list[dict[str, Any]] = out.get("UnprocessedKeys", {}).get(table, {}).get("Keys", [])
        return left

    for start in range(0, len(keys), 100):
        left = retried(read, keys[start : start + 100])
        if left:
            raise RuntimeError(f"{len(left)} reads left unprocessed in {table}")
    return found


def batch_delete(client: Any, table: str, keys: list[dict[str, Any]]) -> None:
    """Delete ``keys`` (see :func:`batch_write`)."""
    batch_write(client, table, [{"DeleteRequest": {"Key": k}} for k in keys])


def first_condition_failed(exc: Exception) -> bool:
    """Whether a cancelled transaction was cancelled by its first item's condition."""
    reasons = [r.get("Code") for r in getattr(exc, "response", {}).get("CancellationReasons", [])]
    return bool(reasons) and reasons[0] == "ConditionalCheckFailed"
