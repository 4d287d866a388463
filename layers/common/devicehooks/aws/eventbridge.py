"""EventBridge: device events put on the bus (the internal API's publisher)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from devicehooks import aws
from devicehooks.errors import InvalidRequest, ServiceUnavailable
from devicehooks.services.ingest import BATCH, EVENTBRIDGE_MAX_ENTRY_BYTES, detail_json, entry_size


class EventBridgePublisher:
    """PutEvents in batches of at most 10 entries and 256 KB; entries the bus refuses are sent
    again, then the call fails."""

    def __init__(
        self,
        bus_name: str,
        source: str,
        client: Any = None,
        attempts: int = 5,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.bus_name = bus_name
        self.source = source
        self.attempts = attempts
        self.sleep = sleep
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = aws.client("events")
        return self._client

    def publish(self, events: Sequence[tuple[str, dict[str, Any]]]) -> list[str]:
        entries = [
            {
                "Source": self.source,
                "DetailType": detail_type,
                "Detail": detail_json(detail),
                "EventBusName": self.bus_name,
            }
            for detail_type, detail in events
        ]
        sizes = [entry_size(e) for e in entries]
        if any(s >= EVENTBRIDGE_MAX_ENTRY_BYTES for s in sizes):  # before any is put: all or none
            raise InvalidRequest(f"device event too large for the bus: over {EVENTBRIDGE_MAX_ENTRY_BYTES} bytes")
        ids: dict[int, str] = {}  # entry (by identity) -> the id the bus gave its event
        batch: list[dict[str, Any]] = []
        batch_size = 0
        for entry, size in zip(entries, sizes, strict=True):
            if batch and (len(batch) == BATCH or batch_size + size >= EVENTBRIDGE_MAX_ENTRY_BYTES):
                self._put(batch, ids)
                batch, batch_size = [], 0
            batch.append(entry)
            batch_size += size
        if batch:
            self._put(batch, ids)
        return [ids[id(e)] for e in entries if id(e) in ids]

    def _put(self, entries: list[dict[str, Any]], ids: dict[int, str]) -> None:
        def put(pending: list[dict[str, Any]]) -> list[dict[str, Any]]:
            out = self.client.put_events(Entries=pending)
            refused = []
            for entry, result in zip(pending, out.get("Entries") or [], strict=False):
                if result.get("ErrorCode"):
                    refused.append(entry)
                elif result.get("EventId"):
                    ids[id(entry)] = result["EventId"]
            return refused if out.get("FailedEntryCount") else []

        left = aws.retried(put, entries, attempts=self.attempts, sleep=self.sleep)
        if left:
            raise ServiceUnavailable(f"failed to publish {len(left)} device event(s) to the bus; retry the request")
