"""What the records of one SQS batch (one invocation) share: a small value every step is given."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import TypeVar

from devicehooks.delivery.tasks import DeliveryTask, EventMessage, Queued, group_held
from devicehooks.domain.models import Integration
from devicehooks.store.integrations import Trial

K = TypeVar("K")
V = TypeVar("V")


class Batch:
    """One invocation's batch: when it must stop starting attempts (``deadline``, on
    ``time.monotonic()``; ``None``: no limit), each tenant's webhooks read once however many of its
    records ask at the same time (and kept up to date with what its records learn of them), the
    turns it took at webhooks on trial, and what waits to go back to the retry queue. Made by
    whoever runs the batch (the handler, a test), finished with
    :meth:`devicehooks.dispatch.Dispatcher.finish_batch`."""

    def __init__(self, deadline: float | None) -> None:
        self.deadline = deadline
        self._tenants: dict[str, Future[list[Integration]]] = {}
        self._trials: dict[tuple[str, str], Future[Trial]] = {}
        self._outbox: list[tuple[Queued, float]] = []
        self._alone: list[tuple[Queued, float]] = []  # sent as they are, never grouped
        self._slow: set[tuple[str, str]] = set()  # webhooks that answered slowly in this batch
        self._lock = threading.Lock()

    def time_left(self) -> float:
        """Seconds until the deadline (infinite without one)."""
        return float("inf") if self.deadline is None else self.deadline - time.monotonic()

    # ------------------------------------------------------------------ reads, once per batch
    def _once(self, table: dict[K, Future[V]], key: K, load: Callable[[], V]) -> V:
        """``load()`` once per ``key`` for this batch, however many records ask at the same time (the
        others wait for the first one's answer); a failed load is forgotten, so the next record tries
        again."""
        with self._lock:
            entry = table.get(key)
            owner = entry is None
            if entry is None:
                entry = table[key] = Future()
        if owner:
            try:
                entry.set_result(load())
            except BaseException as exc:
                entry.set_exception(exc)
                with self._lock:
                    table.pop(key, None)
                raise
        return entry.result()

    def integrations_of(self, tenant_id: str, load: Callable[[str], list[Integration]]) -> list[Integration]:
        """The tenant's integrations, loaded once for this batch."""
        return self._once(self._tenants, tenant_id, lambda: load(tenant_id))

    def integration(
        self, tenant_id: str, integration_id: str, load: Callable[[str], list[Integration]]
    ) -> Integration | None:
        """One of the tenant's integrations (see :meth:`integrations_of`), ``None`` if it has no such one."""
        return next((i for i in self.integrations_of(tenant_id, load) if i.id == integration_id), None)

    def trial(self, integration: Integration, start: Callable[[], Trial]) -> Trial:
        """This invocation's turn at a webhook on trial: taken (``start``) once, however many of the
        batch's deliveries go to it; given back when the batch is finished (:meth:`take_trials`)."""
        return self._once(self._trials, (integration.tenant_id, integration.id), start)

    def known(self, integration: Integration) -> Integration:
        """The batch's latest view of ``integration`` (what its records have learnt of it)."""
        with self._lock:
            entry = self._tenants.get(integration.tenant_id)
            if entry is None or not entry.done() or entry.exception() is not None:
                return integration
            return next((i for i in entry.result() if i.id == integration.id), integration)

    def remember(self, integration: Integration) -> None:
        """What a record learnt of an integration (its circuit opened, say), for the records after it."""
        with self._lock:
            entry = self._tenants.get(integration.tenant_id)
            if entry is None or not entry.done() or entry.exception() is not None:
                return
            fresh: Future[list[Integration]] = Future()
            fresh.set_result([integration if i.id == integration.id else i for i in entry.result()])
            self._tenants[integration.tenant_id] = fresh

    def slow(self, integration: Integration, slow: bool) -> bool:
        """Whether a webhook has answered slowly in this batch (``slow``: this time): then a fast
        answer later in the batch does not prove it again (one write, not one per change)."""
        key = (integration.tenant_id, integration.id)
        with self._lock:
            if slow:
                self._slow.add(key)
            return key in self._slow

    # ------------------------------------------------------------------ what the batch leaves
    def later(self, task: DeliveryTask, delay: float, group: bool = True) -> None:
        """Send ``task`` back to the retry queue with the batch's other such tasks (one request per
        ten), when the batch's records are done: for tasks that come back early, whose activity
        item already says why. The message that brought the task is deleted only if that send
        succeeds (the invocation fails otherwise), so nothing is lost. Held deliveries alike but
        for their event go as one group (:meth:`take_outbox`), unless ``group`` is false (a group's
        deliveries released one by one)."""
        with self._lock:
            (self._outbox if group else self._alone).append((task, delay))

    def send_back(self, message: EventMessage, delay: float) -> None:
        """Send a device event's message back as it came, to be dispatched after ``delay`` seconds
        (with the batch's tasks, as :meth:`later`): nothing of it was recorded or attempted."""
        with self._lock:
            self._outbox.append((message, delay))

    def take_outbox(self) -> list[tuple[Queued, float]]:
        """What waits to be sent, held deliveries alike but for their event grouped
        (:func:`~devicehooks.delivery.tasks.group_held`), save those sent back ``group=False``."""
        with self._lock:
            taken, self._outbox = self._outbox, []
            alone, self._alone = self._alone, []
        return group_held(taken) + alone

    def take_trials(self) -> list[tuple[tuple[str, str], Trial]]:
        """The turns this batch took (to give back), forgotten here."""
        with self._lock:
            taken, self._trials = self._trials, {}
        return [(key, entry.result()) for key, entry in taken.items() if entry.done() and entry.exception() is None]
