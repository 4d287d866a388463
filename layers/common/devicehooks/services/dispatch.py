"""Dispatching device events: fan out to the tenant's webhooks, sign, POST, record, retry.

At least once, without duplicates: the activity record is written before any POST, each
delivery is leased before it is POSTed, and a delivery recorded as delivered is never POSTed
again, whatever redelivers the message (SQS, a crash, a retry task that is late).

Flow control: a delivery is attempted only when :func:`~devicehooks.domain.decisions.gate` lets
it (the webhook's circuit is closed, or this is its one probe; the invocation has time for it),
when this invocation has a turn at a webhook on trial (not yet proven by a quick success: a few
invocations of every instance at a time), when the webhook has a free share of this
dispatcher's concurrent attempts and, with a rate limit, a token for this second. Otherwise it
is *held*: recorded as retrying with the time it comes back, its task on the retry queue; no
Lambda waits for it. What comes after an attempt is decided by
:func:`~devicehooks.domain.decisions.decide`; this module performs it.

The statuses of an event's webhooks that finish together are recorded in one write (each within
:data:`QUIET_SECONDS` of the last, :data:`COALESCE_SECONDS` at most), so a fan-out costs one
status write rather than one per webhook, and a slow webhook delays nobody's.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, TypeVar

from pydantic import ValidationError

from devicehooks.delivery.sender import DeliveryResult, Sender, WebhookRequest
from devicehooks.delivery.signing import webhook_headers
from devicehooks.delivery.tasks import DeliveryTask, EventMessage, Queued, TaskQueue, group_held, parse_message
from devicehooks.domain.activity import ActivityEvent, Attempt, DeliveryStatus, HourCount, hour_of
from devicehooks.domain.decisions import (
    Decision,
    DispatchPolicy,
    Gate,
    Hold,
    decide,
    gate,
    held_back,
    on_trial,
    rate_limited,
)
from devicehooks.domain.events import BusEvent, WebhookEvent
from devicehooks.domain.models import EVENT_TYPES, Circuit, Integration, IntegrationChanges
from devicehooks.domain.validation import format_errors
from devicehooks.observability import logger, record_delivery
from devicehooks.security.secretbox import SecretCipher
from devicehooks.store.activity import ActivityStore, Claim
from devicehooks.store.integrations import IntegrationStore, Trial
from devicehooks.timeutil import utcnow

K = TypeVar("K")
V = TypeVar("V")

COALESCE_SECONDS = 0.05  # how long a finished delivery may wait for its siblings, to share their write
QUIET_SECONDS = 0.01  # ... as long as one more finishes within this of the last

__all__ = ["Batch", "Busy", "COALESCE_SECONDS", "Dispatcher", "DispatchPolicy", "Outcome", "PoolRack", "WebhookShares"]


class Busy(Exception):
    """Another worker holds a delivery of this message: SQS must bring it back later."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """One delivery's turn: an attempt and what was decided about it, or a hold (no attempt)."""

    integration: Integration
    status: DeliveryStatus
    attempt: Attempt | None = None
    decision: Decision | None = None
    probe: bool = False
    next_task: DeliveryTask | None = None  # the delivery's next attempt, should its circuit need a probe


class Batch:
    """What the records of one SQS batch share: each tenant's webhooks, read once however many
    records ask at the same time (and kept up to date with what this batch learns of their
    circuits), and when the invocation must stop starting attempts.

    One per invocation, so concurrent invocations in one process (the local stack runs them as
    Lambda runs execution environments side by side) never see each other's reads."""

    def __init__(self, deadline: float | None = None) -> None:
        self.deadline = deadline  # time.monotonic() at which the invocation ends; None: no limit
        self._tenants: dict[str, Future[list[Integration]]] = {}
        self._outbox: list[tuple[Queued, float]] = []
        self._alone: list[tuple[Queued, float]] = []  # sent as they are, never grouped
        self._trials: dict[tuple[str, str], Future[Trial]] = {}
        self._hours: dict[tuple[str, str, datetime], HourCount] = {}  # attempts per webhook and hour
        self._shares: WebhookShares | None = None
        self._threads: tuple[PoolRack, ThreadPoolExecutor] | None = None  # taken from a rack until the batch ends
        self._slow: set[tuple[str, str]] = set()  # webhooks that answered slowly in this batch
        self._lock = threading.Lock()

    def shares(self, limit: int) -> WebhookShares:
        """The invocation's attempts at once per webhook (at most ``limit`` each). Per invocation
        because that is per instance on Lambda, whose execution environment runs one at a time;
        so the local stack, running invocations side by side in one process, bounds them alike."""
        with self._lock:
            if self._shares is None:
                self._shares = WebhookShares(limit)
            return self._shares

    def threads(self, rack: PoolRack) -> ThreadPoolExecutor:
        """The invocation's threads for its deliveries and writes: a pool of ``rack``'s, taken at
        the first need and given back by :meth:`give_back_threads` when the batch ends."""
        with self._lock:
            if self._threads is None:
                self._threads = (rack, rack.take())
            return self._threads[1]

    def give_back_threads(self) -> None:
        with self._lock:
            taken, self._threads = self._threads, None
        if taken is not None:
            taken[0].give_back(taken[1])

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

    def time_left(self) -> float:
        """Seconds until the deadline (infinite without one)."""
        return float("inf") if self.deadline is None else self.deadline - time.monotonic()

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

    def trial(self, integration: Integration, start: Callable[[], Trial]) -> Trial:
        """This invocation's turn at a webhook on trial: taken (``start``) once, however many of
        the batch's deliveries go to it, and given back by :meth:`Dispatcher.finish_batch`."""
        return self._once(self._trials, (integration.tenant_id, integration.id), start)

    def count(self, outcomes: list[Outcome]) -> None:
        """Count the outcomes' attempts (held deliveries are none) for their webhooks' health, to be
        written once per webhook and hour when the batch ends (:meth:`take_counts`)."""
        with self._lock:
            for outcome in outcomes:
                attempt = outcome.attempt
                if attempt is None:
                    continue
                key = (outcome.integration.tenant_id, outcome.integration.id, hour_of(attempt.at))
                counted = self._hours.get(key) or HourCount(hour=key[2])
                self._hours[key] = counted.plus(attempt, outcome.status.state == "delivered")

    def slow(self, integration: Integration, slow: bool) -> bool:
        """Whether a webhook has answered slowly in this batch (``slow``: this time): then a fast
        answer later in the batch does not prove it again (one write, not one per change)."""
        key = (integration.tenant_id, integration.id)
        with self._lock:
            if slow:
                self._slow.add(key)
            return key in self._slow

    def take_counts(self) -> list[tuple[str, str, HourCount]]:
        with self._lock:
            taken, self._hours = self._hours, {}
        return [(tenant_id, integration_id, counts) for (tenant_id, integration_id, _), counts in taken.items()]

    def take_trials(self) -> list[tuple[tuple[str, str], Trial]]:
        """The turns this batch took (to give back), forgotten here."""
        with self._lock:
            taken, self._trials = self._trials, {}
        return [(key, entry.result()) for key, entry in taken.items() if entry.done() and entry.exception() is None]

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


class PoolRack:
    """Thread pools of ``size`` threads, one for each invocation running at a time: an invocation
    takes one (made when none is free) and gives it back when it ends. On Lambda, whose execution
    environment runs one invocation at a time, that is one pool, which every invocation reuses;
    the local stack, running invocations side by side in one process, so gives each threads of its
    own, as Lambda gives each execution environment, and none can take another's."""

    def __init__(self, size: int, prefix: str) -> None:
        self.size = size
        self._prefix = prefix
        self._free: list[ThreadPoolExecutor] = []
        self._lock = threading.Lock()

    def take(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._free:
                return self._free.pop()
        return ThreadPoolExecutor(max_workers=self.size, thread_name_prefix=self._prefix)

    def give_back(self, pool: ThreadPoolExecutor) -> None:
        with self._lock:
            self._free.append(pool)


class WebhookShares:
    """At most ``limit`` attempts at once to any one webhook (in one invocation: see :meth:`Batch.shares`)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._in_use: dict[str, int] = {}
        self._lock = threading.Lock()

    def take(self, integration_id: str) -> bool:
        with self._lock:
            used = self._in_use.get(integration_id, 0)
            if used >= self.limit:
                return False
            self._in_use[integration_id] = used + 1
            return True

    def give_back(self, integration_id: str) -> None:
        with self._lock:
            left = self._in_use.get(integration_id, 1) - 1
            if left:
                self._in_use[integration_id] = left
            else:
                self._in_use.pop(integration_id, None)


class Dispatcher:
    """Turns queue messages (bus events, delivery tasks) into signed POSTs and activity records."""

    def __init__(
        self,
        integrations: IntegrationStore,
        activity: ActivityStore,
        cipher: SecretCipher,
        sender: Sender,
        queue: TaskQueue,
        policy: DispatchPolicy,
        clock: Callable[[], datetime] = utcnow,
        workers: int = 64,  # an invocation's deliveries (and writes) at once
        draw: Callable[[], float] = lambda: random.uniform(-1.0, 1.0),
    ) -> None:
        self.integrations = integrations
        self.activity = activity
        self.cipher = cipher
        self.sender = sender
        self.queue = queue
        self.policy = policy
        self.clock = clock
        self.draw = draw  # the spread of retries and holds (tests fix it)
        self.pools = PoolRack(workers, "deliver")  # a pool of ``workers`` threads per invocation at a time
        self._batch = Batch()

    # ------------------------------------------------------------------ entry points
    def begin_batch(self, deadline: float | None = None) -> Batch:
        """A new batch, also the one ``handle_message`` uses when it is given none (tests, benchmarks)."""
        self._batch = Batch(deadline)
        return self._batch

    def handle_message(self, body: str, batch: Batch | None = None) -> None:
        """Process one queue message of ``batch``; raises when SQS must deliver it again.

        Tasks the batch sends back in bulk (:meth:`Batch.later`) go with :meth:`finish_batch`; with
        no ``batch`` given (the default one: tests, benchmarks), right after this message."""
        try:
            self._handle_message(body, batch or self._batch)
        finally:
            logger.thread_safe_remove_keys(["correlation_id"])
        if batch is None:
            self.finish_batch(self._batch)

    def finish_batch(self, batch: Batch) -> None:
        """Send what the batch's records left for the retry queue (raises if it cannot: SQS must
        then bring the whole batch back)."""
        try:
            waiting = batch.take_outbox()
            if waiting:
                self.queue.schedule_many(waiting)
        finally:
            try:
                self._end_trials(batch)
                self._write_counts(batch)
            finally:
                batch.give_back_threads()

    def _write_counts(self, batch: Batch) -> None:
        """The batch's attempts, counted per webhook and hour (one write each, side by side when
        there are several: the invocation waits for one round trip, not one per webhook)."""
        counts = batch.take_counts()
        if len(counts) > 1:
            list(batch.threads(self.pools).map(self._write_count, counts))
        elif counts:
            self._write_count(counts[0])

    def _write_count(self, counted: tuple[str, str, HourCount]) -> None:
        """One webhook's count of an hour; one that cannot be written is lost (logged), never a delivery."""
        tenant_id, integration_id, counts = counted
        try:
            expire_ts = int(counts.hour.timestamp()) + self.policy.retention
            self.activity.count_attempts(tenant_id, integration_id, counts, expire_ts)
        except Exception as exc:  # noqa: BLE001 - health figures are best effort
            logger.warning(
                "could not count a webhook's attempts",
                extra={"integration_id": integration_id, "error": f"{type(exc).__name__}: {exc}"},
            )

    def _end_trials(self, batch: Batch) -> None:
        for (tenant_id, integration_id), trial in batch.take_trials():
            if trial.slot is None:
                continue
            try:
                self.integrations.end_trial(tenant_id, integration_id, trial)
            except Exception as exc:  # noqa: BLE001 - a turn not given back frees itself when its time is up
                logger.warning(
                    "could not end a webhook's trial turn",
                    extra={"integration_id": integration_id, "error": f"{type(exc).__name__}: {exc}"},
                )

    def _handle_message(self, body: str, batch: Batch) -> None:
        data = parse_message(body)
        if data is None:
            self._reject(body, "malformed message: not a JSON object", None)
            return
        if data.get("kind") in ("delivery", "deliveries"):
            try:
                task = DeliveryTask.model_validate(data)
            except ValidationError as exc:
                self._reject(body, "malformed delivery task: " + format_errors(exc.errors()), None)
                return
            self._handle_task(task, batch)
            return
        self.handle_bus_event(data, body, batch)

    def handle_bus_event(self, data: dict[str, Any], body: str, batch: Batch | None = None) -> None:
        """First delivery of a device event to every webhook of its tenant that wants it."""
        batch = batch or self._batch
        try:
            event = WebhookEvent.from_bus(BusEvent.model_validate(data))
            sent = event.body()  # the exact bytes: data JSON cannot carry (NaN, a lone surrogate) stops here
        except ValidationError as exc:
            self._refuse(data, body, "malformed device event: " + format_errors(exc.errors()), batch)
            return
        except (ValueError, UnicodeError) as exc:
            self._refuse(data, body, f"malformed device event: data JSON cannot carry ({type(exc).__name__})", batch)
            return
        logger.thread_safe_append_keys(correlation_id=event.id)
        integrations = batch.integrations_of(event.tenant_id, self.integrations.list_tenant)
        if not integrations:
            return  # as Mender: no integration, nothing to record
        now = self.clock()
        targets = [i for i in integrations if i.wants(event.type)]
        lease = now + timedelta(seconds=self.policy.lease_seconds)
        statuses: list[DeliveryStatus] = []
        ready: list[Integration] = []
        trials: list[bool] = []  # for each held delivery: held only for its webhook's trial turns
        for integration in targets:
            if not integration.enabled:
                statuses.append(DeliveryStatus.skipped_new(integration.id, "webhook is disabled", now))
                continue
            decided = self._admit(batch, integration, now)  # known before the record: a hold is in it
            if isinstance(decided, Hold):
                statuses.append(DeliveryStatus(integration.id).held(decided.until, decided.reason, now))
                trials.append(decided.trial)
            else:
                statuses.append(DeliveryStatus.leased(integration.id, lease))
                ready.append(integration)
        if trials and all(trials) and not ready:
            # every webhook it goes to is on trial with each turn taken: the event waits on the queue,
            # as it came, until the turns have told (a few seconds), unrecorded; recording it now
            # would cost a write per event of a backlog and tell nothing the queue does not
            until = min(s.next_attempt_at for s in statuses if s.next_attempt_at is not None)
            batch.send_back(EventMessage(body, event.tenant_id), (until - now).total_seconds())
            return
        record = ActivityEvent.new(event, int(now.timestamp()) + self.policy.retention, statuses, sent)
        existing = self.activity.create(record)
        if existing is None:
            self._queue_held(batch, record, now)
            self._run(batch, record, [(i, 0) for i in ready])  # every lease is this worker's
            return
        self._queue_held(batch, existing, now)
        jobs: list[tuple[Integration, int]] = []
        busy = False
        for integration in targets:  # a copy of a message already (partly) handled
            status = existing.deliveries.get(integration.id)
            if status is None or status.state != "pending" or not integration.enabled:
                continue  # delivered, waiting for a retry, failed or skipped: not this message's job
            claim = self.activity.claim(
                event.tenant_id, event.id, integration.id, now, self.policy.lease_seconds, status.attempts
            )
            if claim is Claim.BUSY:
                busy = True
            elif claim is Claim.TAKEN:
                jobs.append((integration, status.attempts))
        self._run(batch, existing, jobs)
        if busy:
            raise Busy(f"event {event.id}: a delivery is leased by another worker")

    def _queue_held(self, batch: Batch, event: ActivityEvent, now: datetime) -> None:
        """Tasks for the deliveries of ``event`` held when it came (retrying, no attempt yet), sent
        with the batch's others (ten to a request) once the batch is done. A crash before then
        brings the event's message back, whose copy finds them held and queues them again here (a
        second task is harmless: it finds its delivery done, or still held)."""
        for status in event.deliveries.values():
            if status.state == "retrying" and not status.attempts:
                due = status.next_attempt_at or now
                task = DeliveryTask.first(event.tenant_id, event.id, status.integration_id, status.attempts).held()
                batch.later(task, max(0.0, (due - now).total_seconds()))

    def handle_task(self, task: DeliveryTask, batch: Batch | None = None) -> None:
        """A retry (or redelivery, or a held delivery) of one delivery, when it is due (without a
        ``batch``, in the default one, whose tasks sent back in bulk go at once)."""
        if batch is None:
            try:
                self._handle_task(task, self._batch)
            finally:
                self.finish_batch(self._batch)
            return
        self._handle_task(task, batch)

    def _handle_task(self, task: DeliveryTask, batch: Batch) -> None:
        now = self.clock()
        remaining = task.due_at - now.timestamp()
        if remaining > 1:
            batch.later(task, remaining)
            return
        if task.more_events:
            self._handle_group(task, batch, now)
            return
        logger.thread_safe_append_keys(correlation_id=task.event_id)
        integration = next(
            (
                i
                for i in batch.integrations_of(task.tenant_id, self.integrations.list_tenant)
                if i.id == task.integration_id
            ),
            None,
        )
        hold: Hold | None = None
        if integration is not None and integration.enabled and task.reason != "redeliver":
            decided = self._admit(batch, integration, now)
            if isinstance(decided, Hold):
                if task.reason == "hold":  # still held: back to the queue; the activity log says why already
                    batch.later(task, max(0.0, (decided.until - now).total_seconds()))
                    return
                hold = decided  # a retry now held: its status must say so (below)
        event = self.activity.get(task.tenant_id, task.event_id)
        if event is None:
            logger.warning("retry of an event no longer in the activity log", extra={"event_id": task.event_id})
            return
        status = event.deliveries.get(task.integration_id)
        if status is None or status.state == "delivered":
            return
        if task.superseded_by(status.attempts):
            self._drop_superseded(task, status.attempts)
            return
        if integration is None or not integration.enabled:
            closed = (
                status.closed("failed", "webhook was removed", now)
                if integration is None
                else status.closed("skipped", "webhook is disabled", now)
            )
            self.activity.record(task.tenant_id, task.event_id, [(closed, None)])
            return
        if hold is not None:
            outcome = self._hold(batch, task, status, integration, hold, now)
            self.activity.record(task.tenant_id, task.event_id, [(outcome.status, None)])
            return
        claim = self.activity.claim(
            task.tenant_id, task.event_id, task.integration_id, now, self.policy.lease_seconds, status.attempts
        )
        if claim is Claim.STALE and task.seen_attempts is not None and status.attempts >= task.seen_attempts:
            # an attempt recorded since the read, past the attempts this task was queued for
            self._drop_superseded(task, None)
            return
        if claim is Claim.BUSY or claim is Claim.STALE:  # STALE: the attempt before was recorded since the read
            raise Busy(f"event {task.event_id}: delivery to {task.integration_id} is leased by another worker")
        if claim is Claim.TAKEN:
            self.deliver(event, integration, task.series_attempt, status.attempts, batch=batch)

    def _handle_group(self, task: DeliveryTask, batch: Batch, now: datetime) -> None:
        """A group of held deliveries (:func:`~devicehooks.delivery.tasks.group_held`): back to the
        queue as one message while its webhook still holds them (one read and one send however many
        they are); otherwise each goes on as a task of its own, due now."""
        integration = next(
            (
                i
                for i in batch.integrations_of(task.tenant_id, self.integrations.list_tenant)
                if i.id == task.integration_id
            ),
            None,
        )
        if integration is not None and integration.enabled:
            decided = self._admit(batch, integration, now)
            if isinstance(decided, Hold):
                batch.later(task, max(0.0, (decided.until - now).total_seconds()))
                return
        for single in task.singles():
            batch.later(single, 0.0, group=False)

    def _drop_superseded(self, task: DeliveryTask, attempts: int | None) -> None:
        """A task whose attempt another task made (a redelivery, a probe): nothing left to do."""
        logger.info(
            "delivery task superseded: dropped",
            extra={"integration_id": task.integration_id, "seen_attempts": task.seen_attempts, "attempts": attempts},
        )

    # ------------------------------------------------------------------ delivery
    def deliver(
        self,
        event: ActivityEvent,
        integration: Integration,
        series_attempt: int,
        attempts_so_far: int,
        retry: bool = True,
        batch: Batch | None = None,
    ) -> Attempt | None:
        """POST ``event`` to ``integration`` once (or hold it: ``None``), record it, do what comes next.

        ``retry=False`` (a test delivery) attempts at once, whatever the webhook's circuit, share
        or rate limit, and is never retried."""
        own = batch is None
        batch = batch or Batch()
        try:
            outcome = self._turn(batch, event, integration, series_attempt, attempts_so_far, retry)
            self.activity.record(event.tenant_id, event.id, [(outcome.status, outcome.attempt)])
            batch.count([outcome])
            self._follow_up(batch, outcome)
        finally:
            if own:
                self.finish_batch(batch)
        return outcome.attempt

    def _turn(
        self,
        batch: Batch,
        event: ActivityEvent,
        integration: Integration,
        series_attempt: int,
        attempts_so_far: int,
        retry: bool,
    ) -> Outcome:
        """One delivery's turn: through the gates to an attempt, or held (the caller records either)."""
        current = event.deliveries.get(integration.id) or DeliveryStatus(integration.id)
        if not retry:
            return self._attempt(event, integration, current, series_attempt, attempts_so_far, retry)
        now = self.clock()

        def task() -> DeliveryTask:  # made only for a hold: most deliveries go straight to their attempt
            first = DeliveryTask.first(event.tenant_id, event.id, integration.id, current.attempts)
            return first.at_attempt(series_attempt)

        decided = self._admit(batch, integration, now)
        probe = decided == "probe"
        if probe:
            until = now + timedelta(seconds=self.policy.attempt_budget)
            if not self.integrations.claim_probe(integration.tenant_id, integration.id, now, until):
                decided = held_back("held: another dispatcher is probing the webhook", now, self.policy, self.draw())
        if isinstance(decided, Hold):
            return self._hold(batch, task(), current, integration, decided, now)
        shares = batch.shares(self.policy.webhook_concurrency)
        if not shares.take(integration.id):
            reason = "held: the webhook's share of concurrent deliveries is in use"
            return self._hold(
                batch, task(), current, integration, held_back(reason, now, self.policy, self.draw()), now
            )
        try:
            second = int(now.timestamp())
            if integration.rate_limit and not self.integrations.take_rate_token(
                integration.tenant_id, integration.id, second, integration.rate_limit
            ):
                return self._hold(batch, task(), current, integration, rate_limited(now, self.draw()), now)
            outcome = self._attempt(event, integration, current, series_attempt, attempts_so_far, retry)
        finally:
            shares.give_back(integration.id)
        return replace(outcome, probe=probe)

    def _admit(self, batch: Batch, integration: Integration, now: datetime) -> Gate:
        """The gates a delivery to ``integration`` passes before any share or rate limit: the
        circuit and the invocation's time (:func:`gate`), then, for a webhook on trial, this
        invocation's turn at it (taken once per batch)."""
        decided = gate(integration.circuit, batch.time_left(), now, self.policy, self.draw())
        if decided == "attempt" and not integration.circuit.proven and not self._trial(batch, integration, now).granted:
            return on_trial(now, self.policy, self.draw())
        return decided

    def _trial(self, batch: Batch, integration: Integration, now: datetime) -> Trial:
        """This invocation's turn at a webhook on trial, held until the invocation ends."""
        lasts = min(batch.time_left(), float(self.policy.lease_seconds))
        until = now + timedelta(seconds=lasts)
        slots = self.policy.trial_invocations
        return batch.trial(
            integration,
            lambda: self.integrations.start_trial(integration.tenant_id, integration.id, slots, now, until),
        )

    def _hold(
        self,
        batch: Batch,
        task: DeliveryTask,
        current: DeliveryStatus,
        integration: Integration,
        hold: Hold,
        now: datetime,
    ) -> Outcome:
        # queued with the batch's others (ten to a request) once its records are done; until that
        # send succeeds the message that brought the delivery is not deleted (a crash brings it
        # back, and its copy queues the held delivery again), so nothing is lost
        batch.later(task.held(), max(0.0, (hold.until - now).total_seconds()))
        return Outcome(integration, current.held(hold.until, hold.reason, now))

    def _schedule(self, task: DeliveryTask, until: datetime, now: datetime) -> None:
        self.queue.schedule(task, max(0.0, (until - now).total_seconds()))

    def _attempt(
        self,
        event: ActivityEvent,
        integration: Integration,
        current: DeliveryStatus,
        series_attempt: int,
        attempts_so_far: int,
        retry: bool,
    ) -> Outcome:
        """Sign and POST, decide, and queue what must be queued before the status is recorded."""
        started = self.clock()
        headers: dict[str, str] | None = None  # kept with the attempt (no secret in them: HMAC outputs)
        try:
            keys = self._keys(integration, started)
            headers = webhook_headers(event.id, event.body, keys, int(started.timestamp()))
            result = self.sender.send(WebhookRequest(integration.url, event.body, headers))
        except Exception as exc:  # noqa: BLE001 - one bad delivery fails only itself, as a failed attempt
            # (opening the secret, signing, a sender bug): recorded with its reason and retried on
            # schedule like any failure, never by failing the whole message (every webhook of the event)
            logger.exception("delivery failed before it was sent", extra={"integration_id": integration.id})
            error = f"internal error: {type(exc).__name__} while preparing or sending the request"
            result = DeliveryResult(None, error, int((self.clock() - started).total_seconds() * 1000))
        done = self.clock()
        record_delivery(result.ok, result.duration_ms)
        attempt = Attempt(
            number=attempts_so_far + 1,
            at=started,
            duration_ms=result.duration_ms,
            status_code=result.status_code,
            error=result.error,
            response_body=result.response_body,
            headers=headers,
        )
        decision = decide(attempt, result.retry_after, series_attempt, self.policy, retry, self.draw())
        task = None  # the delivery's next attempt: made only after a failure (a retry, a dead letter, a probe)
        if decision.failure:
            task = DeliveryTask.first(event.tenant_id, event.id, integration.id, attempt.number)
            task = task.at_attempt(series_attempt + 1)
        next_at = None
        if task is not None and decision.retry_in is not None:
            # queued before the status is recorded: a lost record costs a retry, a lost task a delivery
            self.queue.schedule(task, decision.retry_in)
            next_at = done + timedelta(seconds=decision.retry_in)
        if task is not None and decision.dead_letter:
            self.queue.dead_letter(task.at_attempt(series_attempt), result.error or "failed")
        status = current.after_attempt(attempt, decision.state, done, next_at, decision.error)
        log = {"correlation_id": event.id, "integration_id": integration.id, "status_code": result.status_code}
        if result.ok:
            logger.debug("webhook delivered", extra=log)
        else:
            logger.warning("webhook delivery failed", extra={**log, "error": result.error, "attempt": attempt.number})
        return Outcome(integration, status, attempt, decision, next_task=task)

    def _follow_up(self, batch: Batch, outcome: Outcome) -> None:
        """What an attempt means for its webhook: disabled at once, failing (its circuit opening, or
        reopening after a failed probe), or working again (the circuit closed)."""
        integration, decision = outcome.integration, outcome.decision
        if decision is None:
            return  # held: nothing happened to the webhook
        now = outcome.status.updated_at or self.clock()
        if decision.disable_reason is not None:
            self._disable(integration, decision.disable_reason, now)
        elif decision.failure:
            failing = self.integrations.note_failure(integration.tenant_id, integration.id, now)
            if failing is None:
                return
            batch.remember(failing)
            since = failing.failing_since
            if self.policy.disable_due(since, now):
                self._disable(integration, f"every delivery failed since {since.isoformat() if since else '?'}", now)
                return
            circuit = failing.circuit
            opens = circuit.state(now) == "closed" and circuit.failures >= self.policy.circuit_threshold
            if opens or (outcome.probe and circuit.state(now) != "closed"):
                opened = self.policy.reopened(circuit, now)
                if self.integrations.open_circuit(integration.tenant_id, integration.id, circuit, opened):
                    batch.remember(failing.changed(IntegrationChanges(updated_at=failing.updated_at, circuit=opened)))
                    if outcome.next_task is not None and opened.open_until is not None:
                        # the probe goes as soon as the cooldown ends, ahead of the held deliveries, which
                        # come back an attempt's budget later: by then it has decided for them all
                        self._schedule(outcome.next_task, opened.open_until, now)
                    logger.warning(
                        "webhook circuit opened",
                        extra={
                            "integration_id": integration.id,
                            "failures": circuit.failures,
                            "until": str(opened.open_until),
                        },
                    )
        elif decision.state == "delivered":
            proven = not batch.slow(integration, decision.slow)  # a slow success leaves it on trial (for the batch)
            known = batch.known(integration)
            if known.failing_since is None and known.circuit == Circuit(proven=proven):
                return  # the usual case: nothing to write
            self.integrations.note_success(integration.tenant_id, integration.id, proven)
            batch.remember(
                known.changed(
                    IntegrationChanges(updated_at=known.updated_at, failing_since=None, circuit=Circuit(proven=proven))
                )
            )

    def _disable(self, integration: Integration, reason: str, now: datetime) -> None:
        self.integrations.update(integration.tenant_id, integration.id, IntegrationChanges.disabled(reason, now))
        logger.warning("webhook disabled", extra={"integration_id": integration.id, "reason": reason})

    def _keys(self, integration: Integration, now: datetime) -> list[bytes] | None:
        if integration.secret is None:
            return None
        keys = [self.cipher.open(integration.secret, integration.tenant_id, integration.id)]
        previous = integration.previous_secret
        until = integration.previous_secret_until
        if previous is not None and until is not None and until > now:
            keys.append(self.cipher.open(previous, integration.tenant_id, integration.id))
        return keys

    def _run(self, batch: Batch, event: ActivityEvent, jobs: list[tuple[Integration, int]]) -> None:
        """Deliver ``event`` to each webhook of ``jobs`` (with its attempts so far), side by side."""
        if not jobs:
            return
        if len(jobs) == 1:  # one webhook: no hand-off to the pool (the record already has a thread)
            integration, attempts_so_far = jobs[0]
            self.deliver(event, integration, 1, attempts_so_far, batch=batch)
            return
        pool = batch.threads(self.pools)
        pending = {pool.submit(self._turn, batch, event, i, 1, attempts, True) for i, attempts in jobs}
        errors: list[BaseException] = []
        while pending:
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            # siblings finishing close behind share the write: gather them while they keep coming
            # (each within QUIET_SECONDS of the last), for COALESCE_SECONDS at most
            until = time.monotonic() + COALESCE_SECONDS
            while pending and (left := until - time.monotonic()) > 0:
                more, pending = wait(pending, timeout=min(QUIET_SECONDS, left), return_when=FIRST_COMPLETED)
                if not more:
                    break
                finished |= more
            outcomes = []
            for future in finished:
                error = future.exception()
                if error is None:
                    outcomes.append(future.result())
                else:
                    errors.append(error)
            self.activity.record(event.tenant_id, event.id, [(o.status, o.attempt) for o in outcomes])
            batch.count(outcomes)
            for outcome in outcomes:
                self._follow_up(batch, outcome)
        if errors:
            raise errors[0]

    # ------------------------------------------------------------------ helpers
    def _refuse(self, data: dict[str, Any], body: str, reason: str, batch: Batch) -> None:
        """A bus event that cannot be delivered: shown as failed in its tenant's activity log (when
        its tenant, id and type can be read and the tenant has webhooks for it), then kept in the
        dispatch DLQ with the reason. Recorded first: the record is idempotent, the DLQ copy is not."""
        detail = data.get("detail")
        tenant_id = detail.get("tenant_id") if isinstance(detail, dict) else None
        event_id = data.get("id")
        kind = next((t for t in EVENT_TYPES if t == data.get("detail-type")), None)
        if (
            isinstance(tenant_id, str)
            and len(tenant_id) <= 256
            and isinstance(event_id, str)
            and 0 < len(event_id) <= 128
            and kind is not None
        ):
            targets = [i for i in batch.integrations_of(tenant_id, self.integrations.list_tenant) if i.wants(kind)]
            if targets:
                now = self.clock()
                shown = WebhookEvent(id=event_id, tenant_id=tenant_id, type=kind, data={}, time=now)
                statuses = [DeliveryStatus(i.id).closed("failed", reason, now) for i in targets]
                self.activity.create(ActivityEvent.new(shown, int(now.timestamp()) + self.policy.retention, statuses))
        self._reject(body, reason, event_id)

    def _reject(self, body: str, reason: str, event_id: Any) -> None:
        logger.warning("message sent to the dead-letter queue", extra={"reason": reason, "event_id": event_id})
        self.queue.reject_event(body, reason)
