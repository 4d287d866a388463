"""Queue messages into deliveries: a device event's first deliveries, a retry (or a held or
redelivered delivery) when it is due, a group of held deliveries.

At least once, without duplicates: an event's activity record is written before any POST, each
delivery is leased before it is POSTed, and a delivery recorded as delivered is never POSTed again,
whatever brings the message back (SQS, a crash, a retry task that is late).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError

from devicehooks.delivery.tasks import DeliveryTask, EventMessage, parse_message
from devicehooks.dispatch.batch import Batch
from devicehooks.dispatch.context import DispatchContext
from devicehooks.dispatch.deliver import Job, deliver
from devicehooks.dispatch.gate import FlowGate
from devicehooks.domain.activity import ActivityEvent, DeliveryStatus
from devicehooks.domain.decisions import Hold
from devicehooks.domain.eventids import event_id as make_id
from devicehooks.domain.events import BusEvent, WebhookEvent, bus_time
from devicehooks.domain.models import EVENT_TYPES, Integration
from devicehooks.domain.validation import format_errors
from devicehooks.observability import logger, tracer
from devicehooks.store.activity import Claim
from devicehooks.store.bounds import ItemTooLarge


class Busy(Exception):
    """Another worker holds a delivery of this message: SQS must bring it back later."""


def handle_message(ctx: DispatchContext, gate: FlowGate, batch: Batch, body: str) -> None:
    """Process one queue message of ``batch``; raises when SQS must deliver it again."""
    data = parse_message(body)
    if data is None:
        reject(ctx, body, "malformed message: not a JSON object", None)
        return
    if data.get("kind") in ("delivery", "deliveries"):
        try:
            task = DeliveryTask.model_validate(data)
        except ValidationError as exc:
            reject(ctx, body, "malformed delivery task: " + format_errors(exc.errors()), None)
            return
        handle_task(ctx, gate, batch, task)
        return
    handle_bus_event(ctx, gate, batch, data, body)


# ---------------------------------------------------------------------- device events
def handle_bus_event(ctx: DispatchContext, gate: FlowGate, batch: Batch, data: dict[str, Any], body: str) -> None:
    """First delivery of a device event to every webhook of its tenant that wants it."""
    try:
        event = WebhookEvent.from_bus(BusEvent.model_validate(data))
        sent = event.body()  # the exact bytes: data JSON cannot carry (NaN, a lone surrogate) stops here
    except ValidationError as exc:
        refuse(ctx, batch, data, body, "malformed device event: " + format_errors(exc.errors()))
        return
    except (ValueError, UnicodeError) as exc:
        refuse(ctx, batch, data, body, f"malformed device event: data JSON cannot carry ({type(exc).__name__})")
        return
    logger.thread_safe_append_keys(correlation_id=event.id)
    tracer.put_annotation(key="event_id", value=event.id)
    integrations = batch.integrations_of(event.tenant_id, ctx.integrations.list_tenant)
    if not integrations:
        return  # as Mender: no integration, nothing to record
    now = ctx.clock()
    targets = [i for i in integrations if i.wants(event.type)]
    lease = now + timedelta(seconds=ctx.policy.lease_seconds)
    statuses: list[DeliveryStatus] = []
    ready: list[Integration] = []
    trials: list[bool] = []  # for each held delivery: held only for its webhook's trial turns
    for integration in targets:
        if not integration.enabled:
            statuses.append(DeliveryStatus.skipped_new(integration.id, "webhook is disabled", now))
            continue
        decided = gate.precheck(batch, integration, now)  # known before the record: a hold is in it
        if isinstance(decided, Hold):
            statuses.append(DeliveryStatus(integration.id).held(decided.until, decided.reason, now))
            trials.append(decided.trial)
        else:
            statuses.append(DeliveryStatus.leased(integration.id, lease))
            ready.append(integration)
    if trials and all(trials) and not ready:
        # every webhook it goes to is on trial with each turn taken: the event waits on the queue,
        # as it came, until the turns have told (a few seconds), unrecorded; recording it now would
        # cost a write per event of a backlog and tell nothing the queue does not
        until = min(s.next_attempt_at for s in statuses if s.next_attempt_at is not None)
        batch.send_back(EventMessage(body, event.tenant_id), (until - now).total_seconds())
        return
    record = ActivityEvent.new(event, int(now.timestamp()) + ctx.policy.retention, statuses, sent)
    existing = ctx.activity.create(record)
    if existing is None:
        queue_held(batch, record, now)
        deliver(ctx, gate, batch, record, [Job(i) for i in ready])  # every lease is this worker's
        return
    queue_held(batch, existing, now)
    jobs: list[Job] = []
    busy = False
    for integration in targets:  # a copy of a message already (partly) handled
        status = existing.deliveries.get(integration.id)
        if status is None or status.state != "pending" or not integration.enabled:
            continue  # delivered, waiting for a retry, failed or skipped: not this message's job
        task = DeliveryTask.first(event.tenant_id, event.id, integration.id, status.attempts)
        claim = _claim(ctx, task, now, status.attempts)
        if claim is Claim.BUSY:
            busy = True
        elif claim is Claim.TAKEN:
            jobs.append(Job(integration))
    if jobs:
        deliver(ctx, gate, batch, existing, jobs)
    if busy:
        raise Busy(f"event {event.id}: a delivery is leased by another worker")


def _claim(ctx: DispatchContext, task: DeliveryTask, now: datetime, attempts: int) -> Claim:
    """Lease a delivery before its POST. When its event's activity item has no room even for the
    lease (an item grown to DynamoDB's limit before store/bounds.py), nothing is sent: the delivery
    goes to the delivery DLQ with the reason, its message done (``DONE``), never retried into a
    POST that could not be recorded."""
    try:
        return ctx.activity.claim(
            task.tenant_id, task.event_id, task.integration_id, now, ctx.policy.lease_seconds, attempts
        )
    except ItemTooLarge as exc:
        reason = f"not sent: the event's activity record is full ({exc})"
        logger.error(reason, extra={"event_id": task.event_id, "integration_id": task.integration_id})
        ctx.queue.dead_letter(task, reason)
        return Claim.DONE


def queue_held(batch: Batch, event: ActivityEvent, now: datetime) -> None:
    """Tasks for the deliveries of ``event`` held when it came (retrying, no attempt yet), sent with
    the batch's others (ten to a request) once the batch is done. A crash before then brings the
    event's message back, whose copy finds them held and queues them again here (a second task is
    harmless: it finds its delivery done, or still held)."""
    for status in event.deliveries.values():
        if status.state == "retrying" and not status.attempts:
            due = status.next_attempt_at or now
            task = DeliveryTask.first(event.tenant_id, event.id, status.integration_id, status.attempts).held()
            batch.later(task, max(0.0, (due - now).total_seconds()))


# ---------------------------------------------------------------------- retries and held deliveries
def handle_task(ctx: DispatchContext, gate: FlowGate, batch: Batch, task: DeliveryTask) -> None:
    """A retry (or redelivery, or a held delivery) of one delivery, when it is due."""
    now = ctx.clock()
    remaining = task.due_at - now.timestamp()
    if remaining > 1:
        batch.later(task, remaining)
        return
    if task.more_events:
        handle_group(ctx, gate, batch, task, now)
        return
    logger.thread_safe_append_keys(correlation_id=task.event_id)
    tracer.put_annotation(key="event_id", value=task.event_id)
    integration = batch.integration(task.tenant_id, task.integration_id, ctx.integrations.list_tenant)
    hold: Hold | None = None
    if integration is not None and integration.enabled and task.reason != "redeliver":
        decided = gate.precheck(batch, integration, now)
        if isinstance(decided, Hold):
            if task.reason == "hold":  # still held: back to the queue; the activity log says why already
                batch.later(task, max(0.0, (decided.until - now).total_seconds()))
                return
            hold = decided  # a retry now held: its status must say so (below)
    event = ctx.activity.get(task.tenant_id, task.event_id)
    if event is None:
        logger.warning("retry of an event no longer in the activity log", extra={"event_id": task.event_id})
        return
    status = event.deliveries.get(task.integration_id)
    if status is None or status.state == "delivered":
        return
    if task.superseded_by(status.attempts):
        drop_superseded(task, status.attempts)
        return
    if integration is None or not integration.enabled:
        closed = (
            status.closed("failed", "webhook was removed", now)
            if integration is None
            else status.closed("skipped", "webhook is disabled", now)
        )
        ctx.activity.record(task.tenant_id, task.event_id, [(closed, None)])
        return
    if hold is not None:
        batch.later(task.held(), max(0.0, (hold.until - now).total_seconds()))
        ctx.activity.record(task.tenant_id, task.event_id, [(status.held(hold.until, hold.reason, now), None)])
        return
    claim = _claim(ctx, task, now, status.attempts)
    if claim is Claim.STALE and task.seen_attempts is not None and status.attempts >= task.seen_attempts:
        # an attempt recorded since the read, past the attempts this task was queued for
        drop_superseded(task, None)
        return
    if claim is Claim.BUSY or claim is Claim.STALE:  # STALE: the attempt before was recorded since the read
        raise Busy(f"event {task.event_id}: delivery to {task.integration_id} is leased by another worker")
    if claim is Claim.TAKEN:
        deliver(ctx, gate, batch, event, [Job(integration, task.series_attempt)])


def handle_group(ctx: DispatchContext, gate: FlowGate, batch: Batch, task: DeliveryTask, now: datetime) -> None:
    """A group of held deliveries (:func:`~devicehooks.delivery.tasks.group_held`): back to the queue
    as one message while its webhook still holds them (one read and one send however many they are);
    otherwise each goes on as a task of its own, due now."""
    integration = batch.integration(task.tenant_id, task.integration_id, ctx.integrations.list_tenant)
    if integration is not None and integration.enabled:
        decided = gate.precheck(batch, integration, now)
        if isinstance(decided, Hold):
            batch.later(task, max(0.0, (decided.until - now).total_seconds()))
            return
    for single in task.singles():
        batch.later(single, 0.0, group=False)


def drop_superseded(task: DeliveryTask, attempts: int | None) -> None:
    """A task whose attempt another task made (a redelivery, a probe): nothing left to do."""
    logger.info(
        "delivery task superseded: dropped",
        extra={"integration_id": task.integration_id, "seen_attempts": task.seen_attempts, "attempts": attempts},
    )


# ---------------------------------------------------------------------- what cannot be delivered
def refuse(ctx: DispatchContext, batch: Batch, data: dict[str, Any], body: str, reason: str) -> None:
    """A bus event that cannot be delivered: shown as failed in its tenant's activity log (when its
    tenant, id and type can be read and the tenant has webhooks for it), then kept in the dispatch
    DLQ with the reason. Recorded first: the record is idempotent, the DLQ copy is not."""
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
        targets = [i for i in batch.integrations_of(tenant_id, ctx.integrations.list_tenant) if i.wants(kind)]
        if targets:
            now = ctx.clock()
            # at the event's time when it has one to read (the same id whenever SQS brings it back)
            at = bus_time(data) or now
            shown = WebhookEvent(id=make_id(at, kind, event_id), tenant_id=tenant_id, type=kind, data={}, time=at)
            statuses = [DeliveryStatus(i.id).closed("failed", reason, now) for i in targets]
            ctx.activity.create(ActivityEvent.new(shown, int(now.timestamp()) + ctx.policy.retention, statuses))
    reject(ctx, body, reason, event_id)


def reject(ctx: DispatchContext, body: str, reason: str, event_id: Any) -> None:
    logger.warning("message sent to the dead-letter queue", extra={"reason": reason, "event_id": event_id})
    ctx.queue.reject_event(body, reason)
