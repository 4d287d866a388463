"""Webhook health, counted off the delivery path: the activity table's stream records in, one
write per webhook and hour per batch out (docs/architecture.md, "Webhook health").

A batch is one shard's records in order. Its attempts (:func:`~devicehooks.store.activity_stream.added_attempts`)
are summed per (tenant, webhook, hour) and each sum is written with ``count_attempts``, whose
condition keeps the hour's last attempt right whatever order batches write in.

*A batch that comes back.* When a write fails, the batch reports the first record that went into a
failed write (``batchItemFailures``), and Lambda brings that record and every one after it back.
The writes that succeeded may hold some of those records too: what they counted of them is taken
back (``uncount_attempts``) before answering, so that the batch that comes back counts each attempt
once. What stays inexact: a take-back that fails too (logged: those attempts are counted twice), and
an invocation that crashes or times out after some of its writes (Lambda then brings the whole
batch back: its written counts are counted twice, at most one batch's attempts per crash).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from devicehooks.domain.activity import HourCount, hour_of
from devicehooks.observability import logger
from devicehooks.store.activity import ActivityStore
from devicehooks.store.activity_stream import CountedAttempt, added_attempts

T = TypeVar("T")
R = TypeVar("R")
Mapper = Callable[[Callable[[T], R], Iterable[T]], Iterator[R]]

HourKey = tuple[str, str, datetime]  # tenant, webhook, hour


@dataclass
class _Sum:
    """One webhook's hour in a batch: its attempts, with the index of the record each came from."""

    key: HourKey
    attempts: list[tuple[int, CountedAttempt]] = field(default_factory=list)

    def counts(self, since: int = 0) -> HourCount:
        total = HourCount(hour=self.key[2])
        for index, counted in self.attempts:
            if index >= since:
                total = total.plus(counted.attempt, counted.delivered)
        return total


class HealthCounter:
    """Counts a stream batch's attempts into the webhooks' hourly health items."""

    def __init__(self, activity: ActivityStore, retention: int, mapper: Mapper[Any, Any] = map) -> None:
        self.activity = activity
        self.retention = retention  # seconds an hour's item outlives its hour (the event retention)
        self.mapper = mapper  # how the batch's writes run: side by side in the handler

    def count(self, records: Sequence[Mapping[str, Any]]) -> str | None:
        """Count the batch's attempts; the sequence number of the first record that must come back
        (its counts, and those of every record after it, not written), ``None`` when all were."""
        sums: dict[HourKey, _Sum] = {}
        for index, record in enumerate(records):
            for counted in self._attempts(record):
                key = (counted.tenant_id, counted.integration_id, hour_of(counted.attempt.at))
                sums.setdefault(key, _Sum(key)).attempts.append((index, counted))
        written = list(self.mapper(self._write, list(sums.values())))
        failed = [s for s, ok in zip(sums.values(), written, strict=True) if not ok]
        if not failed:
            return None
        first = min(index for s in failed for index, _ in s.attempts)
        for s, ok in zip(sums.values(), written, strict=True):
            if ok and any(index >= first for index, _ in s.attempts):
                self._take_back(s, first)
        return str(records[first]["dynamodb"]["SequenceNumber"])

    @staticmethod
    def _attempts(record: Mapping[str, Any]) -> list[CountedAttempt]:
        try:
            return added_attempts(record)
        except Exception:  # noqa: BLE001 - a record not as written (a bug): logged, its attempts not counted
            logger.exception("could not read a stream record's attempts", extra={"event_id": record.get("eventID")})
            return []

    def _write(self, s: _Sum) -> bool:
        tenant_id, integration_id, hour = s.key
        try:
            expire_ts = int(hour.timestamp()) + self.retention
            self.activity.count_attempts(tenant_id, integration_id, s.counts(), expire_ts)
        except Exception as exc:  # noqa: BLE001 - the records come back (partial batch response)
            logger.warning(
                "could not count a webhook's attempts",
                extra={"integration_id": integration_id, "error": f"{type(exc).__name__}: {exc}"},
            )
            return False
        return True

    def _take_back(self, s: _Sum, first: int) -> None:
        tenant_id, integration_id, hour = s.key
        again = s.counts(since=first)
        try:
            self.activity.uncount_attempts(tenant_id, integration_id, hour, again.delivered, again.failed)
        except Exception as exc:  # noqa: BLE001 - health figures are best effort: counted twice
            logger.warning(
                "could not take back counts a batch that comes back adds again",
                extra={"integration_id": integration_id, "error": f"{type(exc).__name__}: {exc}"},
            )
