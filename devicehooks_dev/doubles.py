"""In-memory doubles of the stores, the secret cipher, the task queue and the event publisher.

Each keeps the contract of the production class it stands in for (the store contract suite in
tests/contract runs against both); unit tests and benchmarks use them. Never shipped.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Collection, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from devicehooks.delivery.tasks import DeliveryTask, EventMessage, Queued
from devicehooks.domain.activity import (
    WAITING_CAP,
    ActivityEvent,
    DeliveryState,
    DeliveryStatus,
    EventFilter,
    HourCount,
    Waiting,
    hour_of,
    matches,
)
from devicehooks.domain.eventids import check_event_id
from devicehooks.domain.models import Circuit, Integration, IntegrationChanges
from devicehooks.errors import Conflict
from devicehooks.store.activity import Claim, Update
from devicehooks.store.bounds import Bound, bound_for, bounded_attempt, bounded_status, kept
from devicehooks.store.integrations import Trial, limit_message


class MemoryIntegrationStore:
    """In-memory :class:`~devicehooks.store.integrations.IntegrationStore`.

    The state a delivery writes (``failing_since``, the circuit) is kept on the stored
    :class:`Integration` with its ``updated_at`` untouched, as the DynamoDB store keeps it on an
    item apart from the configuration; the trial turns and rate windows are kept apart, and go
    with the integration when it is removed. Nothing expires (the DynamoDB store's TTLs only ever
    forget what a fresh state holds)."""

    def __init__(self) -> None:
        self._items: dict[tuple[str, str], Integration] = {}
        self._rates: dict[tuple[str, str], tuple[int, int]] = {}  # (unix second, deliveries counted in it)
        self._trials: dict[tuple[str, str], dict[int, datetime]] = {}  # turns taken: until when
        self._lock = threading.Lock()

    def add(self, integration: Integration, limit: int) -> None:
        with self._lock:
            if sum(1 for t, _ in self._items if t == integration.tenant_id) >= limit:
                raise Conflict(limit_message(limit))
            self._items[(integration.tenant_id, integration.id)] = integration

    def list_tenant(self, tenant_id: str) -> list[Integration]:
        with self._lock:
            found = [i for (t, _), i in self._items.items() if t == tenant_id]
        return sorted(found, key=lambda i: (i.created_at, i.id))

    def get(self, tenant_id: str, integration_id: str) -> Integration | None:
        with self._lock:
            return self._items.get((tenant_id, integration_id))

    def remove(self, tenant_id: str, integration_id: str) -> bool:
        with self._lock:
            self._forget((tenant_id, integration_id))
            return self._items.pop((tenant_id, integration_id), None) is not None

    def _forget(self, key: tuple[str, str]) -> None:
        """A removed webhook's runtime state goes with it (the lock held)."""
        self._rates.pop(key, None)
        self._trials.pop(key, None)

    def update(self, tenant_id: str, integration_id: str, changes: IntegrationChanges) -> Integration | None:
        with self._lock:
            current = self._items.get((tenant_id, integration_id))
            if current is None:
                return None
            updated = self._items[(tenant_id, integration_id)] = current.changed(changes)
            return updated

    def note_failure(self, tenant_id: str, integration_id: str, now: datetime) -> Integration | None:
        with self._lock:
            current = self._items.get((tenant_id, integration_id))
            if current is None:
                return None
            circuit = replace(current.circuit, failures=current.circuit.failures + 1, proven=False)
            changes = IntegrationChanges(
                updated_at=current.updated_at, failing_since=current.failing_since or now, circuit=circuit
            )
            updated = self._items[(tenant_id, integration_id)] = current.changed(changes)
            return updated

    def note_success(self, tenant_id: str, integration_id: str, proven: bool = True) -> None:
        with self._lock:
            current = self._items.get((tenant_id, integration_id))
            if current is not None and (current.failing_since is not None or current.circuit != Circuit(proven=proven)):
                changes = IntegrationChanges(
                    updated_at=current.updated_at, failing_since=None, circuit=Circuit(proven=proven)
                )
                self._items[(tenant_id, integration_id)] = current.changed(changes)

    def open_circuit(self, tenant_id: str, integration_id: str, seen: Circuit, circuit: Circuit) -> bool:
        with self._lock:
            current = self._items.get((tenant_id, integration_id))
            if current is None or current.circuit.open_until != seen.open_until:
                return False
            opened = replace(circuit, failures=current.circuit.failures)  # failures counted meanwhile stay
            self._items[(tenant_id, integration_id)] = current.changed(
                IntegrationChanges(updated_at=current.updated_at, circuit=opened)
            )
            return True

    def claim_probe(self, tenant_id: str, integration_id: str, now: datetime, until: datetime) -> bool:
        with self._lock:
            current = self._items.get((tenant_id, integration_id))
            circuit = current.circuit if current else None
            if current is None or circuit is None or circuit.open_until is None or circuit.open_until > now:
                return False
            if circuit.probe_until is not None and circuit.probe_until > now:
                return False
            self._items[(tenant_id, integration_id)] = current.changed(
                IntegrationChanges(updated_at=current.updated_at, circuit=replace(circuit, probe_until=until))
            )
            return True

    def start_trial(self, tenant_id: str, integration_id: str, slots: int, now: datetime, until: datetime) -> Trial:
        with self._lock:
            current = self._items.get((tenant_id, integration_id))
            if current is None:
                return Trial()
            if current.circuit.proven:
                return Trial(proven=True)
            taken = self._trials.setdefault((tenant_id, integration_id), {})
            free = [n for n in range(slots) if n not in taken or taken[n] <= now]
            if not free:
                return Trial()
            taken[free[0]] = until
            return Trial(free[0], until)

    def end_trial(self, tenant_id: str, integration_id: str, trial: Trial) -> None:
        with self._lock:
            taken = self._trials.get((tenant_id, integration_id), {})
            if trial.slot is not None and taken.get(trial.slot) == trial.until:
                del taken[trial.slot]

    def take_rate_token(self, tenant_id: str, integration_id: str, second: int, limit: int) -> bool:
        with self._lock:
            if (tenant_id, integration_id) not in self._items:
                return False
            window, count = self._rates.get((tenant_id, integration_id), (0, 0))
            if window == second and count >= limit or window > second:
                return False
            self._rates[(tenant_id, integration_id)] = (second, count + 1 if window == second else 1)
            return True

    def remove_tenant(self, tenant_id: str) -> int:
        with self._lock:
            keys = [k for k in self._items if k[0] == tenant_id]
            for k in keys:
                del self._items[k]
            for k in [*self._rates, *self._trials]:
                if k[0] == tenant_id:
                    self._forget(k)
            return len(keys)


class MemoryActivityStore:
    """In-memory :class:`~devicehooks.store.activity.ActivityStore`."""

    def __init__(self) -> None:
        self._events: dict[tuple[str, str], ActivityEvent] = {}
        self._hours: dict[tuple[str, str, datetime], HourCount] = {}
        self._lock = threading.Lock()

    def create(self, event: ActivityEvent) -> ActivityEvent | None:
        check_event_id(event.id, event.type)  # as the DynamoDB store, which keys the event by it
        with self._lock:
            stored = self._events.get((event.tenant_id, event.id))
            if stored is None:
                self._store(event)
            return stored

    def _store(self, event: ActivityEvent) -> None:
        self._events[(event.tenant_id, event.id)] = event

    def get(self, tenant_id: str, event_id: str) -> ActivityEvent | None:
        with self._lock:
            return self._events.get((tenant_id, event_id))

    def claim(
        self,
        tenant_id: str,
        event_id: str,
        integration_id: str,
        now: datetime,
        lease_seconds: int,
        seen_attempts: int | None = None,
    ) -> Claim:
        with self._lock:
            event = self._events.get((tenant_id, event_id))
            status = event.deliveries.get(integration_id) if event else None
            if event is None or status is None or status.state == "delivered":
                return Claim.DONE
            if seen_attempts is not None and status.attempts > seen_attempts:
                return Claim.STALE
            if status.lease_until is not None and status.lease_until > now:
                return Claim.BUSY
            if seen_attempts is not None and status.attempts != seen_attempts:
                return Claim.BUSY
            self._store(event.with_status(status.with_lease(now + timedelta(seconds=lease_seconds))))
            return Claim.TAKEN

    def record(self, tenant_id: str, event_id: str, updates: Sequence[Update], deliveries: int | None = None) -> None:
        bound = bound_for(deliveries) if deliveries is not None else Bound()
        with self._lock:
            event = self._events.get((tenant_id, event_id))
            if event is None:
                return
            for status, attempt in updates:
                current = event.deliveries.get(status.integration_id)
                if current is not None and current.state == "delivered" and status.state != "delivered":
                    continue
                stored = None if attempt is None else bounded_attempt(attempt, bound)
                event = event.with_status(bounded_status(status), stored)
                log = event.attempts.get(status.integration_id, ())
                if len(log) > bound.keep:  # the first and the latest (store/bounds.py)
                    event = replace(event, attempts={**event.attempts, status.integration_id: kept(log, bound.keep)})
            self._store(event)

    def reopen(
        self,
        tenant_id: str,
        event_id: str,
        integration_id: str,
        now: datetime,
        seen_attempts: int,
        from_states: Collection[DeliveryState] | None = None,
    ) -> bool:
        with self._lock:
            event = self._events.get((tenant_id, event_id))
            status = event.deliveries.get(integration_id) if event else None
            if (
                event is None
                or status is None
                or status.attempts != seen_attempts
                or (status.lease_until is not None and status.lease_until >= now)
                or (from_states is not None and status.state not in from_states)
            ):
                return False
            self._store(event.with_status(status.reopened(now)))
            return True

    def webhook_events(
        self, tenant_id: str, integration_id: str, since: datetime, until: datetime, limit: int
    ) -> list[ActivityEvent]:
        with self._lock:
            events = [
                e
                for (t, _), e in self._events.items()
                if t == tenant_id and integration_id in e.deliveries and since <= e.time < until
            ]
        events.sort(key=lambda e: (e.time, e.id))
        return events[: max(0, limit)]

    def add_deliveries(self, tenant_id: str, event_id: str, integration_ids: list[str]) -> None:
        with self._lock:
            event = self._events.get((tenant_id, event_id))
            if event is None:
                return
            for integration_id in integration_ids:
                if integration_id not in event.deliveries:
                    event = event.with_status(DeliveryStatus(integration_id))
            self._store(event)

    def list_events(
        self,
        tenant_id: str,
        page: int,
        per_page: int,
        integration_id: str | None = None,
        only: EventFilter | None = None,
    ) -> list[ActivityEvent]:
        only = only or EventFilter()
        with self._lock:
            events = [e for (t, _), e in self._events.items() if t == tenant_id and matches(e, integration_id, only)]
        events.sort(key=lambda e: (e.time, e.id), reverse=True)
        skip = (page - 1) * per_page
        return events[skip : skip + per_page]

    def waiting(self, tenant_id: str, integration_id: str, cap: int = WAITING_CAP) -> Waiting:
        with self._lock:
            times = [
                e.time
                for (t, _), e in self._events.items()
                if t == tenant_id
                and (status := e.deliveries.get(integration_id)) is not None
                and status.state == "retrying"
            ]
        return Waiting(count=min(len(times), cap), more=len(times) > cap, oldest_at=min(times, default=None))

    def count_attempts(self, tenant_id: str, integration_id: str, counts: HourCount, expire_ts: int) -> None:
        with self._lock:
            key = (tenant_id, integration_id, hour_of(counts.hour))
            stored = self._hours.get(key) or HourCount(hour=hour_of(counts.hour))
            later = stored.last_at is None or (counts.last_at is not None and counts.last_at >= stored.last_at)
            last = counts if later else stored
            self._hours[key] = replace(
                last,
                hour=hour_of(counts.hour),
                delivered=stored.delivered + counts.delivered,
                failed=stored.failed + counts.failed,
            )

    def uncount_attempts(
        self, tenant_id: str, integration_id: str, hour: datetime, delivered: int, failed: int
    ) -> None:
        with self._lock:
            key = (tenant_id, integration_id, hour_of(hour))
            stored = self._hours.get(key)
            if stored is not None:
                self._hours[key] = replace(
                    stored, delivered=stored.delivered - delivered, failed=stored.failed - failed
                )

    def hour_counts(self, tenant_id: str, integration_id: str, until: datetime, hours: int) -> list[HourCount]:
        with self._lock:
            found = [
                c
                for (t, i, hour), c in self._hours.items()
                if t == tenant_id and i == integration_id and hour <= hour_of(until)
            ]
        found.sort(key=lambda c: c.hour, reverse=True)
        return found[: max(1, hours)]

    def remove_tenant(self, tenant_id: str) -> int:
        with self._lock:
            keys = [k for k in self._events if k[0] == tenant_id]
            for k in keys:
                del self._events[k]
            for hour in [h for h in self._hours if h[0] == tenant_id]:
                del self._hours[hour]
            return len(keys)


class PlainTestCipher:
    """Test double that 'seals' by prefixing a marker: only for unit tests and benchmarks."""

    MARK = b"test-sealed:"

    def seal(self, plaintext: bytes, tenant_id: str, integration_id: str) -> bytes:
        return self.MARK + plaintext if plaintext else b""

    def open(self, sealed: bytes, tenant_id: str, integration_id: str) -> bytes:
        return sealed[len(self.MARK) :] if sealed else b""


class MemoryTaskQueue:
    """In-memory :class:`TaskQueue` for unit tests and benchmarks."""

    def __init__(self) -> None:
        self.scheduled: list[tuple[DeliveryTask, float]] = []
        self.returned: list[tuple[str, float]] = []  # device events' messages sent back as they came
        self.dead: list[tuple[DeliveryTask, str]] = []
        self.rejected: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    def schedule(self, task: DeliveryTask, delay_seconds: float) -> None:
        with self._lock:
            self.scheduled.append((task.due(time.time() + delay_seconds), delay_seconds))

    def schedule_many(self, tasks: Sequence[tuple[Queued, float]]) -> None:
        for task, delay in tasks:
            if isinstance(task, EventMessage):
                with self._lock:
                    self.returned.append((task.body, delay))
            else:
                self.schedule(task, delay)

    def dead_letter(self, task: DeliveryTask, reason: str) -> None:
        with self._lock:
            self.dead.append((task, reason))

    def reject_event(self, body: str, reason: str) -> None:
        with self._lock:
            self.rejected.append((body, reason))


class MemoryPublisher:
    """:class:`EventPublisher` that keeps what it was given (tests)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def publish(self, events: Sequence[tuple[str, dict[str, Any]]]) -> list[str]:
        self.events.extend(events)
        return [str(uuid.uuid4()) for _ in events]  # as the bus: a new id per event
