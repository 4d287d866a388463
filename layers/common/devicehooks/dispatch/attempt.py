"""One attempt of one delivery, as a pipeline of small steps over typed values:

:func:`prepare` (open the secrets, sign: the request) → :func:`send` (the sender POSTs it: its
result) → :func:`conclude` (what follows it, :func:`~devicehooks.domain.decisions.decide`; the
retry queued before anything is recorded: an :class:`Attempted`) → the caller records the status →
:func:`follow_up` (what it means for the webhook: disabled, failing, working again). A delivery the
flow gate holds is not attempted: a :class:`Held`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from devicehooks.delivery.sender import DeliveryResult, WebhookRequest
from devicehooks.delivery.signing import webhook_headers
from devicehooks.delivery.tasks import DeliveryTask
from devicehooks.dispatch.batch import Batch
from devicehooks.dispatch.context import DispatchContext
from devicehooks.domain.activity import ActivityEvent, Attempt, DeliveryStatus
from devicehooks.domain.decisions import Decision, Hold, decide
from devicehooks.domain.models import Circuit, Integration, IntegrationChanges
from devicehooks.observability import annotate, logger, record_delivery, traced


@dataclass(frozen=True, slots=True)
class Attempted:
    """A delivery attempted: the attempt, what was decided about it, the status to record."""

    integration: Integration
    status: DeliveryStatus
    attempt: Attempt
    decision: Decision
    probe: bool = False  # the attempt was the circuit's one probe
    next_task: DeliveryTask | None = None  # the delivery's next attempt (made after a failure)


@dataclass(frozen=True, slots=True)
class Held:
    """A delivery not attempted now (the flow gate held it): the status to record."""

    integration: Integration
    status: DeliveryStatus


Outcome = Attempted | Held


def prepare(ctx: DispatchContext, event: ActivityEvent, integration: Integration, at: datetime) -> WebhookRequest:
    """The signed request of an attempt made at ``at`` (the webhook's secrets opened)."""
    keys = None
    if integration.secret is not None:
        keys = [ctx.cipher.open(integration.secret, integration.tenant_id, integration.id)]
        previous, until = integration.previous_secret, integration.previous_secret_until
        if previous is not None and until is not None and until > at:
            keys.append(ctx.cipher.open(previous, integration.tenant_id, integration.id))
    headers = webhook_headers(event.id, event.body, keys, int(at.timestamp()))
    return WebhookRequest(integration.url, event.body, headers)


def send(
    ctx: DispatchContext, event: ActivityEvent, integration: Integration, at: datetime
) -> tuple[DeliveryResult, dict[str, str] | None]:
    """Prepare and POST; the result and the headers sent (kept with the attempt: HMAC outputs, no
    secret). Whatever fails before the POST (opening the secret, signing, a sender bug) fails only
    this delivery, as a failed attempt retried on schedule, never the whole message."""
    headers: dict[str, str] | None = None
    try:
        request = prepare(ctx, event, integration, at)
        headers = request.headers
        # the POST's subsegment carries the event's id: the trace's correlation id up to the receiver
        with traced("webhook POST", event_id=event.id, integration_id=integration.id) as subsegment:
            result = ctx.sender.send(request)
            annotate(subsegment, status_code=result.status_code or 0, delivered=result.ok)
        return result, headers
    except Exception as exc:  # noqa: BLE001 - one bad delivery fails only itself, as a failed attempt
        logger.exception("delivery failed before it was sent", extra={"integration_id": integration.id})
        error = f"internal error: {type(exc).__name__} while preparing or sending the request"
        return DeliveryResult(None, error, int((ctx.clock() - at).total_seconds() * 1000)), headers


def conclude(
    ctx: DispatchContext,
    event: ActivityEvent,
    integration: Integration,
    current: DeliveryStatus,
    result: DeliveryResult,
    headers: dict[str, str] | None,
    started: datetime,
    series_attempt: int,
    retry: bool,
) -> Attempted:
    """The attempt recorded as it went, what follows it decided, and the retry (or dead letter)
    queued before the status is recorded: a lost record costs a retry, a lost task a delivery."""
    done = ctx.clock()
    record_delivery(result.ok, result.duration_ms)
    attempt = Attempt(
        number=current.attempts + 1,
        at=started,
        duration_ms=result.duration_ms,
        status_code=result.status_code,
        error=result.error,
        response_body=result.response_body,
        headers=headers,
    )
    decision = decide(attempt, result.retry_after, series_attempt, ctx.policy, retry, ctx.draw())
    task = None
    next_at = None
    if decision.failure:
        task = DeliveryTask.first(event.tenant_id, event.id, integration.id, attempt.number)
        task = task.at_attempt(series_attempt + 1)
        if decision.retry_in is not None:
            ctx.queue.schedule(task, decision.retry_in)
            next_at = done + timedelta(seconds=decision.retry_in)
        if decision.dead_letter:
            ctx.queue.dead_letter(task.at_attempt(series_attempt), result.error or "failed")
    status = current.after_attempt(attempt, decision.state, done, next_at, decision.error)
    log = {"correlation_id": event.id, "integration_id": integration.id, "status_code": result.status_code}
    if result.ok:
        logger.debug("webhook delivered", extra=log)
    else:
        logger.warning("webhook delivery failed", extra={**log, "error": result.error, "attempt": attempt.number})
    return Attempted(integration, status, attempt, decision, next_task=task)


def attempt(
    ctx: DispatchContext,
    event: ActivityEvent,
    integration: Integration,
    current: DeliveryStatus,
    series_attempt: int,
    retry: bool,
) -> Attempted:
    """Prepare, send and conclude one attempt (the caller has admitted it)."""
    started = ctx.clock()
    result, headers = send(ctx, event, integration, started)
    return conclude(ctx, event, integration, current, result, headers, started, series_attempt, retry)


def held(
    batch: Batch, task: DeliveryTask, current: DeliveryStatus, integration: Integration, hold: Hold, now: datetime
) -> Held:
    """A delivery the gate holds: its task queued with the batch's others (ten to a request) once its
    records are done. Until that send succeeds the message that brought the delivery is not deleted
    (a crash brings it back, and its copy queues the held delivery again): nothing is lost."""
    batch.later(task.held(), max(0.0, (hold.until - now).total_seconds()))
    return Held(integration, current.held(hold.until, hold.reason, now))


def follow_up(ctx: DispatchContext, batch: Batch, outcome: Outcome) -> None:
    """What an attempt means for its webhook: disabled at once, failing (its circuit opening, or
    reopening after a failed probe), or working again (failures forgotten, proven)."""
    if isinstance(outcome, Held):
        return  # nothing happened to the webhook
    integration, decision = outcome.integration, outcome.decision
    now = outcome.status.updated_at or ctx.clock()
    if decision.disable_reason is not None:
        disable(ctx, integration, decision.disable_reason, now)
    elif decision.failure:
        _failed(ctx, batch, outcome, now)
    elif decision.state == "delivered":
        proven = not batch.slow(integration, decision.slow)  # a slow success leaves it on trial (for the batch)
        known = batch.known(integration)
        if known.failing_since is None and known.circuit == Circuit(proven=proven):
            return  # the usual case: nothing to write
        ctx.integrations.note_success(integration.tenant_id, integration.id, proven)
        batch.remember(
            known.changed(
                IntegrationChanges(updated_at=known.updated_at, failing_since=None, circuit=Circuit(proven=proven))
            )
        )


def _failed(ctx: DispatchContext, batch: Batch, outcome: Attempted, now: datetime) -> None:
    integration = outcome.integration
    failing = ctx.integrations.note_failure(integration.tenant_id, integration.id, now)
    if failing is None:
        return
    batch.remember(failing)
    since = failing.failing_since
    if ctx.policy.disable_due(since, now):
        disable(ctx, integration, f"every delivery failed since {since.isoformat() if since else '?'}", now)
        return
    circuit = failing.circuit
    opens = circuit.state(now) == "closed" and circuit.failures >= ctx.policy.circuit_threshold
    if not (opens or (outcome.probe and circuit.state(now) != "closed")):
        return
    opened = ctx.policy.reopened(circuit, now)
    if not ctx.integrations.open_circuit(integration.tenant_id, integration.id, circuit, opened):
        return
    batch.remember(failing.changed(IntegrationChanges(updated_at=failing.updated_at, circuit=opened)))
    if outcome.next_task is not None and opened.open_until is not None:
        # the probe goes as soon as the cooldown ends, ahead of the held deliveries, which come
        # back an attempt's budget later: by then it has decided for them all
        ctx.queue.schedule(outcome.next_task, max(0.0, (opened.open_until - now).total_seconds()))
    logger.warning(
        "webhook circuit opened",
        extra={"integration_id": integration.id, "failures": circuit.failures, "until": str(opened.open_until)},
    )


def disable(ctx: DispatchContext, integration: Integration, reason: str, now: datetime) -> None:
    ctx.integrations.update(integration.tenant_id, integration.id, IntegrationChanges.disabled(reason, now))
    logger.warning("webhook disabled", extra={"integration_id": integration.id, "reason": reason})
