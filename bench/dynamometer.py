"""Counting what DynamoDB would bill: requests per operation, write and read request units.

:class:`MeteredClient` stands in for a low-level DynamoDB client (the stores take one in their
constructor) and passes every call through. For each call it counts the request and works out
the request units AWS would charge, from the item sizes (DynamoDB's published sizing rules):

* a write costs ``ceil(size / 1 KB)`` write units, ``size`` being the larger of the item before
  and after (UpdateItem) or the item written (PutItem, BatchWriteItem), doubled in a transaction;
  a write that changes an item's projection in a global secondary index costs the same again on
  the index's projected item (twice when the index key changes: a delete and a put); a condition
  that fails still costs the write;
* a read costs ``ceil(size / 4 KB)`` read units per item (GetItem, BatchGetItem) or per page of
  a Query (the sizes of the items it read, summed), halved when eventually consistent.

Each write's units are also booked per partition key (:attr:`Meter.partitions`): the table's
partition key of the item, and the partition key of each index entry the write puts or deletes
(bench/scale.py models the hot partitions from them).

Sizes of updated items are read with a second, unmetered client before and after the call, so
metering slows the calls down: never measure CPU or time with it.
"""

from __future__ import annotations

import math
import threading
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any


def attribute_size(value: Mapping[str, Any]) -> int:
    """Bytes of one DynamoDB attribute value (``{"S": ...}``, ``{"M": ...}``, ...)."""
    (kind, raw), *_ = value.items()
    if kind == "S":
        return len(str(raw).encode())
    if kind == "B":
        return len(raw)
    if kind == "N":
        digits = str(Decimal(str(raw)).normalize()).lstrip("-").replace(".", "")
        digits = digits.split("E")[0].strip("0") or "0"
        return math.ceil(len(digits) / 2) + 1
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "L":
        return 3 + sum(1 + attribute_size(v) for v in raw)
    if kind == "M":
        return 3 + sum(1 + len(k.encode()) + attribute_size(v) for k, v in raw.items())
    if kind in ("SS", "NS", "BS"):
        return sum(attribute_size({kind[0]: v}) for v in raw)
    raise ValueError(f"unknown attribute type {kind}")


def item_size(item: Mapping[str, Any] | None) -> int:
    """Bytes of an item: attribute names plus values."""
    return sum(len(name.encode()) + attribute_size(v) for name, v in (item or {}).items())


def write_units(size: int) -> int:
    return max(1, math.ceil(size / 1024))


def read_units(size: int, consistent: bool) -> float:
    units = max(1, math.ceil(size / 4096))
    return units if consistent else units / 2


@dataclass(frozen=True)
class Index:
    """A global secondary index: its key attributes and what it projects."""

    keys: tuple[str, ...]
    projection: str  # ALL | KEYS_ONLY | INCLUDE
    attributes: tuple[str, ...] = ()
    name: str = ""

    def projected(self, item: Mapping[str, Any] | None, table_keys: tuple[str, ...]) -> dict[str, Any] | None:
        if not item or any(k not in item for k in self.keys):
            return None
        if self.projection == "ALL":
            return dict(item)
        names = set(self.keys) | set(table_keys) | (set(self.attributes) if self.projection == "INCLUDE" else set())
        return {k: v for k, v in item.items() if k in names}


@dataclass(frozen=True)
class TableShape:
    keys: tuple[str, ...]
    indexes: tuple[Index, ...] = ()

    @classmethod
    def from_template(cls, resource: Mapping[str, Any]) -> TableShape:
        props = resource["Properties"]
        indexes = tuple(
            Index(
                keys=tuple(k["AttributeName"] for k in gsi["KeySchema"]),
                projection=gsi["Projection"]["ProjectionType"],
                attributes=tuple(gsi["Projection"].get("NonKeyAttributes", ())),
                name=str(gsi.get("IndexName", "")),
            )
            for gsi in props.get("GlobalSecondaryIndexes", [])
        )
        return cls(keys=tuple(k["AttributeName"] for k in props["KeySchema"]), indexes=indexes)


# a write's units on one partition key: (table, index name or "" for the table, partition key value)
Partition = tuple[str, str, str]


@dataclass
class Meter:
    """What the metered clients were asked, and the units it would cost; write units per partition
    key in ``partitions``."""

    requests: Counter[str] = field(default_factory=Counter)
    write_units: float = 0.0
    read_units: float = 0.0
    partitions: defaultdict[Partition, float] = field(default_factory=lambda: defaultdict(float))
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(
        self, operation: str, wru: float = 0.0, rru: float = 0.0, parts: Iterable[tuple[Partition, float]] = ()
    ) -> None:
        with self.lock:
            self.requests[operation] += 1
            self.write_units += wru
            self.read_units += rru
            for partition, units in parts:
                self.partitions[partition] += units

    def reset(self) -> None:
        with self.lock:
            self.requests.clear()
            self.partitions.clear()
            self.write_units = self.read_units = 0.0

    @property
    def total_requests(self) -> int:
        return sum(self.requests.values())


class MeteredClient:
    """A DynamoDB client that counts requests and request units (see the module docstring)."""

    def __init__(self, client: Any, shapes: Mapping[str, TableShape], meter: Meter) -> None:
        self._client = client
        self._shapes = shapes
        self.meter = meter
        self.exceptions = client.exceptions
        self.meta = client.meta

    def __getattr__(self, name: str) -> Any:
        raise AttributeError(f"MeteredClient does not meter {name}; add it")

    # ------------------------------------------------------------------ sizes
    def _current(self, table: str, key: Mapping[str, Any]) -> dict[str, Any] | None:
        item = self._client.get_item(TableName=table, Key=key, ConsistentRead=True).get("Item")
        return dict(item) if item else None

    def _write_parts(
        self, table: str, before: Mapping[str, Any] | None, after: Mapping[str, Any] | None
    ) -> list[tuple[Partition, float]]:
        """The write's units on each partition key it touches: the table's, each index entry's."""
        shape = self._shapes.get(table)
        base = float(write_units(max(item_size(before), item_size(after))))
        parts = [((table, "", _partition_value(after or before, shape.keys if shape else ())), base)]
        for index in shape.indexes if shape else ():
            old = index.projected(before, shape.keys if shape else ())
            new = index.projected(after, shape.keys if shape else ())
            if old == new:
                continue
            if old is not None and new is not None and any(old[k] != new[k] for k in index.keys):
                parts.append(((table, index.name, _partition_value(old, index.keys)), write_units(item_size(old))))
                parts.append(((table, index.name, _partition_value(new, index.keys)), write_units(item_size(new))))
            else:
                entry = new if new is not None else old
                parts.append(
                    (
                        (table, index.name, _partition_value(entry, index.keys)),
                        write_units(max(item_size(old), item_size(new))),
                    )
                )
        return parts

    def _key_of(self, table: str, item: Mapping[str, Any]) -> dict[str, Any]:
        return {k: item[k] for k in self._shapes[table].keys}

    # ------------------------------------------------------------------ writes
    def put_item(self, **kwargs: Any) -> Any:
        table, item = kwargs["TableName"], kwargs["Item"]
        before = self._current(table, self._key_of(table, item))
        try:
            out = self._client.put_item(**kwargs)
        except self._client.exceptions.ConditionalCheckFailedException:
            self._failed("PutItem", table, item, write_units(item_size(item)))
            raise
        self._written("PutItem", self._write_parts(table, before, item))
        return out

    def update_item(self, **kwargs: Any) -> Any:
        table, key = kwargs["TableName"], kwargs["Key"]
        before = self._current(table, key)
        try:
            out = self._client.update_item(**kwargs)
        except self._client.exceptions.ConditionalCheckFailedException:
            self._failed("UpdateItem", table, key, write_units(item_size(before)))
            raise
        self._written("UpdateItem", self._write_parts(table, before, self._current(table, key)))
        return out

    def delete_item(self, **kwargs: Any) -> Any:
        table, key = kwargs["TableName"], kwargs["Key"]
        before = self._current(table, key)
        out = self._client.delete_item(**kwargs)
        self._written("DeleteItem", self._write_parts(table, before, None))
        return out

    def batch_write_item(self, **kwargs: Any) -> Any:
        parts: list[tuple[Partition, float]] = []
        for table, entries in kwargs["RequestItems"].items():
            for entry in entries:
                if "PutRequest" in entry:
                    item = entry["PutRequest"]["Item"]
                    parts += self._write_parts(table, self._current(table, self._key_of(table, item)), item)
                else:
                    key = entry["DeleteRequest"]["Key"]
                    parts += self._write_parts(table, self._current(table, key), None)
        out = self._client.batch_write_item(**kwargs)
        self._written("BatchWriteItem", parts)
        return out

    def transact_write_items(self, **kwargs: Any) -> Any:
        parts: list[tuple[Partition, float]] = []
        for entry in kwargs["TransactItems"]:
            (kind, spec), *_ = entry.items()
            table = spec["TableName"]
            key = spec.get("Key") or self._key_of(table, spec["Item"])
            units = 2 * write_units(max(item_size(self._current(table, key)), item_size(spec.get("Item"))))
            parts.append(((table, "", _partition_value(key, self._shapes[table].keys)), float(units)))
        out = self._client.transact_write_items(**kwargs)
        self._written("TransactWriteItems", parts)
        return out

    def _written(self, operation: str, parts: list[tuple[Partition, float]]) -> None:
        self.meter.add(operation, wru=sum(units for _, units in parts), parts=parts)

    def _failed(self, operation: str, table: str, key: Mapping[str, Any], units: float) -> None:
        """A write whose condition failed: its units on the table's partition key, no index entry."""
        shape = self._shapes.get(table)
        self.meter.add(
            operation, wru=units, parts=[((table, "", _partition_value(key, shape.keys if shape else ())), units)]
        )

    # ------------------------------------------------------------------ reads
    def get_item(self, **kwargs: Any) -> Any:
        out = self._client.get_item(**kwargs)
        self.meter.add("GetItem", rru=read_units(item_size(out.get("Item")), bool(kwargs.get("ConsistentRead"))))
        return out

    def batch_get_item(self, **kwargs: Any) -> Any:
        out = self._client.batch_get_item(**kwargs)
        units = 0.0
        for table, items in out.get("Responses", {}).items():
            consistent = bool(kwargs["RequestItems"][table].get("ConsistentRead"))
            units += sum(read_units(item_size(i), consistent) for i in items)
        self.meter.add("BatchGetItem", rru=units)
        return out

    def query(self, **kwargs: Any) -> Any:
        out = self._client.query(**kwargs)
        size = sum(item_size(i) for i in out.get("Items", []))
        self.meter.add("Query", rru=read_units(size, bool(kwargs.get("ConsistentRead"))))
        return out


def _partition_value(item: Mapping[str, Any] | None, keys: tuple[str, ...]) -> str:
    """The partition key (the first key attribute) of an item or index entry, as text."""
    if not item or not keys or keys[0] not in item:
        return ""
    (_, raw), *_ = item[keys[0]].items()
    return str(raw)
