"""Response shapes: the models that write every JSON response and document it in the OpenAPI.

Each is made from the domain object it shows (``of``) and written by :func:`devicehooks.api.http.
model_response`: fields in declaration order (Mender's order), ``None`` fields left out, ``data``
objects kept exactly (their nulls included). Built on first use (``defer_build``), so they cost
nothing at cold start.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from devicehooks.domain.activity import (
    RECOVER_SKIPS,
    ActivityEvent,
    Attempt,
    DeliveryState,
    DeliveryStatus,
    RecoverSkip,
)
from devicehooks.domain.events import Timestamp, sort_keys
from devicehooks.domain.models import OMITTED, PROVIDER_WEBHOOK, Circuit, EventType, Integration, Scope
from devicehooks.timeutil import rfc3339, rfc3339_millis, utcnow

if TYPE_CHECKING:
    from devicehooks.services.health import Health
    from devicehooks.services.redelivery import Recovery


class ResponseModel(BaseModel):
    """A response body; :meth:`to_json` is what is written."""

    model_config = ConfigDict(defer_build=True, frozen=True)

    def to_json(self) -> dict[str, Any]:
        """The JSON object, ``None`` fields left out (they are absent in Mender's JSON too)."""
        return self.model_dump(mode="json", exclude_none=True)


class HttpCredentialsOut(ResponseModel):
    url: str
    secret: Literal["<omitted>"] | None = Field(
        default=None, description='Present (always "<omitted>") when the integration has a secret.'
    )


class CredentialsOut(ResponseModel):
    type: Literal["http"] = "http"
    http: HttpCredentialsOut


class CircuitOut(ResponseModel):
    state: Literal["closed", "open", "half-open"] = Field(
        description="closed: deliveries are attempted; open: they wait (held) until next_attempt; "
        "half-open: one probe at a time decides."
    )
    failures: int = Field(description="Failed attempts in a row.")
    since: str | None = Field(default=None, description="When the circuit opened (RFC 3339).")
    next_attempt: str | None = Field(default=None, description="When the next probe may go (RFC 3339).")

    @classmethod
    def of(cls, circuit: Circuit, now: datetime) -> CircuitOut:
        return cls(
            state=circuit.state(now),
            failures=circuit.failures,
            since=rfc3339_millis(circuit.opened_at) if circuit.opened_at else None,
            next_attempt=rfc3339_millis(circuit.open_until) if circuit.open_until else None,
        )


class IntegrationOut(ResponseModel):
    id: str = Field(description="Integration id (UUID).")
    provider: Literal["webhook"] = PROVIDER_WEBHOOK
    credentials: CredentialsOut
    description: str | None = None
    scopes: list[Scope] | None = Field(
        default=None,
        description="Mender's webhook scopes, as given (absent when none was; absent or [] means deviceauth only).",
    )
    event_types: list[EventType] | None = Field(
        default=None, description="devicehooks: the event-type filter, inside the scopes."
    )
    enabled: bool = Field(description="devicehooks: false when disabled (by a user, a 410, or failing too long).")
    disabled_reason: str | None = Field(default=None, description="devicehooks: why it is disabled.")
    rate_limit: int | None = Field(
        default=None, description="devicehooks: at most this many deliveries per second (absent: no limit)."
    )
    circuit: CircuitOut | None = Field(
        default=None,
        description="devicehooks: the webhook's circuit breaker, when it has failed (absent: closed, no failure).",
    )

    @classmethod
    def of(cls, integration: Integration, now: datetime | None = None) -> IntegrationOut:
        """Mender's Integration JSON; the secret is never shown, only whether there is one."""
        moment = now or utcnow()
        circuit = integration.circuit
        return cls(
            id=integration.id,
            credentials=CredentialsOut(
                http=HttpCredentialsOut(url=integration.url, secret=OMITTED if integration.has_secret else None)
            ),
            description=integration.description or None,
            scopes=list(integration.scopes) if integration.scopes is not None else None,
            event_types=list(integration.event_types) if integration.event_types is not None else None,
            enabled=integration.enabled,
            disabled_reason=integration.disabled_reason if not integration.enabled else None,
            rate_limit=integration.rate_limit,
            circuit=CircuitOut.of(circuit, moment) if circuit.failures or circuit.open_until else None,
        )


class DeliveryStatusOut(ResponseModel):
    integration_id: str
    success: bool
    error: str | None = None
    status_code: int | None = None
    state: DeliveryState = Field(description="devicehooks: where the delivery stands.")
    attempts: int = Field(description="devicehooks: attempts made so far.")
    next_attempt: str | None = Field(default=None, description="devicehooks: when the next retry is due.")

    @classmethod
    def fields_of(cls, status: DeliveryStatus) -> dict[str, Any]:
        return {
            "integration_id": status.integration_id,
            "success": status.success,
            "error": status.error or None,
            "status_code": status.status_code,
            "state": status.state,
            "attempts": status.attempts,
            "next_attempt": rfc3339_millis(status.next_attempt_at)
            if status.next_attempt_at is not None and status.in_progress
            else None,
        }

    @classmethod
    def of(cls, status: DeliveryStatus) -> DeliveryStatusOut:
        """Mender's delivery status (``integration_id, success, error, status_code``) plus ours."""
        return cls(**cls.fields_of(status))


_TEST = (
    "devicehooks: true for a test delivery (POST /integrations/{id}/test, which may send a sample of a "
    "device event type), absent otherwise."
)


class EventOut(ResponseModel):
    id: str
    type: str = Field(description="A device event type, or webhook-test for test deliveries.")
    data: dict[str, Any]
    time: str = Field(description="Event time, RFC 3339 UTC, milliseconds.")
    test: bool | None = Field(default=None, description=_TEST)
    delivery_statuses: list[DeliveryStatusOut] | None = None

    @classmethod
    def fields_of(cls, event: ActivityEvent) -> dict[str, Any]:
        return {
            "id": event.id,
            "type": event.type,
            "data": sort_keys(event.data()),
            "time": rfc3339_millis(event.time),
            "test": True if event.is_test else None,
        }

    @classmethod
    def of(cls, event: ActivityEvent) -> EventOut:
        """Mender's Event JSON (``id, type, data, time, delivery_statuses``); ``data`` keys sorted, as Go."""
        statuses = [DeliveryStatusOut.of(s) for s in _by_integration(event)]
        return cls(**cls.fields_of(event), delivery_statuses=statuses or None)


class AttemptOut(ResponseModel):
    attempt: int
    time: str
    duration_ms: int
    status_code: int | None = None
    error: str | None = None
    response_body: str | None = Field(
        default=None,
        description="The first 256 bytes of the response body, as UTF-8 (a byte that is not UTF-8 is shown as "
        "U+FFFD), cut to 256 bytes of UTF-8 as it is kept.",
    )
    headers: dict[str, str] | None = Field(
        default=None,
        description="devicehooks: the request's headers as sent (signatures included, never the secret); "
        "absent when the request was not built, and when they were not kept (an event's activity record keeps "
        "them while it has room).",
    )

    @classmethod
    def of(cls, attempt: Attempt) -> AttemptOut:
        return cls(
            attempt=attempt.number,
            time=rfc3339_millis(attempt.at),
            duration_ms=attempt.duration_ms,
            status_code=attempt.status_code,
            error=attempt.error or None,
            response_body=attempt.response_body,
            headers=dict(attempt.headers) if attempt.headers else None,
        )


class DeliveryDetailOut(DeliveryStatusOut):
    attempt_log: list[AttemptOut]
    attempts_not_kept: int | None = Field(
        default=None,
        description="devicehooks: attempts made that attempt_log leaves out (a delivery keeps its first "
        "attempt and its latest ones, up to 4 in all, fewer when the event went to many webhooks); "
        "absent when it shows every attempt.",
    )


class EventDetailOut(ResponseModel):
    id: str
    type: str
    data: dict[str, Any]
    time: str
    test: bool | None = Field(default=None, description=_TEST)
    delivery_statuses: list[DeliveryDetailOut] | None = None
    body: str = Field(description="devicehooks: the request body exactly as sent (UTF-8 JSON, byte for byte).")

    @classmethod
    def of(cls, event: ActivityEvent) -> EventDetailOut:
        """:class:`EventOut` with every attempt of every delivery."""
        statuses = [
            DeliveryDetailOut(
                **DeliveryStatusOut.fields_of(s),
                attempt_log=[AttemptOut.of(a) for a in event.attempts.get(s.integration_id, ())],
                attempts_not_kept=max(0, s.attempts - len(event.attempts.get(s.integration_id, ()))) or None,
            )
            for s in _by_integration(event)
        ]
        return cls(**EventOut.fields_of(event), delivery_statuses=statuses or None, body=event.body.decode())


def _by_integration(event: ActivityEvent) -> list[DeliveryStatus]:
    return sorted(event.deliveries.values(), key=lambda s: s.integration_id)


class RedeliverIn(BaseModel):
    model_config = ConfigDict(defer_build=True)

    integration_id: str | None = Field(
        default=None, description="Only this webhook; absent: every enabled webhook the event went to."
    )


class EgressOut(ResponseModel):
    addresses: list[str] = Field(
        description="The public IP addresses every webhook request (deliveries, tests) comes from, for a "
        "receiver's allow-list; empty when the service has no static addresses (AWS's shared ranges)."
    )


class RetryIn(BaseModel):
    model_config = ConfigDict(defer_build=True)

    integration_id: str | None = Field(
        default=None,
        description="Only this webhook's delivery; absent: each delivery of the event to an enabled webhook "
        "that was not delivered.",
    )


class RedeliverOut(ResponseModel):
    """What a redeliver or a retry queued, to be attempted now."""

    event_id: str
    integration_ids: list[str] = Field(
        description="The webhooks whose delivery of the event was queued to be attempted now (a retry leaves "
        "out the deliveries it refused: delivered, being attempted, to a disabled webhook)."
    )


class RecoverIn(BaseModel):
    model_config = ConfigDict(defer_build=True)

    since: Timestamp = Field(
        description="RFC 3339. Events at or after this time (at most the event retention, 7 days, ago)."
    )
    until: Timestamp | None = Field(default=None, description="RFC 3339. Events before this time; absent: now.")


class RecoverSkippedOut(ResponseModel):
    reason: RecoverSkip = Field(
        description="delivered: delivered since it was found; attempted: attempted again meanwhile (waiting for its "
        "next retry); disabled: skipped while the webhook was disabled (retry it to send it); record_full: its "
        "event's activity record cannot record another attempt; gone: no longer in the activity log."
    )
    count: int = Field(description="Deliveries not sent again for this reason.")
    message: str = Field(description="The reason in words.")


class RecoverOut(ResponseModel):
    count: int = Field(
        description="Deliveries queued to be sent again now: those whose last attempt failed (retrying or failed) "
        "and those held by the webhook's circuit, trial or limits."
    )
    found: int = Field(
        description="devicehooks: deliveries of the window that were not delivered: count + already_queued + skipped."
    )
    already_queued: int = Field(
        description="devicehooks: deliveries already queued to be attempted now, or being attempted (by an "
        "earlier recover, a retry, or on their way): left alone, not sent twice."
    )
    skipped: list[RecoverSkippedOut] = Field(
        description="devicehooks: the deliveries not sent again, counted by reason (empty: none)."
    )
    circuit: CircuitOut | None = Field(
        default=None,
        description="devicehooks: the webhook's circuit when it is not closed. The queued deliveries go through it "
        "as any delivery: while it is open they are held until its probe (next_attempt) succeeds.",
    )
    next_since: str | None = Field(
        default=None,
        description="Present when the window held more events than one call examines: "
        "call again with this as since (and the same until) to go on.",
    )

    @classmethod
    def of(cls, recovery: Recovery) -> RecoverOut:
        circuit = recovery.circuit
        return cls(
            count=recovery.count,
            found=recovery.found,
            already_queued=recovery.already_queued,
            skipped=[
                RecoverSkippedOut(reason=reason, count=n, message=RECOVER_SKIPS[reason])
                for reason, n in recovery.skipped.items()
                if n
            ],
            circuit=CircuitOut.of(circuit, recovery.at or utcnow()) if circuit is not None else None,
            next_since=rfc3339(recovery.next_since) if recovery.next_since is not None else None,
        )


class SendTestIn(BaseModel):
    model_config = ConfigDict(defer_build=True)

    type: EventType | None = Field(
        default=None,
        description='Send a realistic sample of this event type (a made-up device) instead of "webhook-test".',
    )


class TestOutcomeOut(ResponseModel):
    event_id: str = Field(description='Id of the test event (type "webhook-test"), also in the activity log.')
    success: bool
    status_code: int | None = None
    error: str | None = None
    duration_ms: int
    response_body: str | None = None

    @classmethod
    def of(cls, event_id: str, attempt: Attempt) -> TestOutcomeOut:
        return cls(
            event_id=event_id,
            success=attempt.status_code is not None and attempt.status_code < 300,
            status_code=attempt.status_code,
            error=attempt.error or None,
            duration_ms=attempt.duration_ms,
            response_body=attempt.response_body,
        )


class LastDeliveryOut(ResponseModel):
    at: str = Field(description="When the webhook's last attempt started (RFC 3339).")
    outcome: Literal["delivered", "failed"]
    status_code: int | None = Field(description="The response's status; null when none came (timeout, refused, ...).")
    error: str | None = Field(description="Why the attempt failed; null when it was delivered.")


class HealthHourOut(ResponseModel):
    hour: str = Field(description="The hour's start (RFC 3339, UTC).")
    delivered: int
    failed: int


class HealthOut(ResponseModel):
    """A webhook's health. Every field is always present (``null`` when it has no value)."""

    last_delivery: LastDeliveryOut | None = Field(
        description="The webhook's last attempt (within the event retention); null when there was none."
    )
    window_hours: int = Field(description="The hours the counts cover, up to the current one (24).")
    delivered: int = Field(description="Attempts answered 2xx in the window.")
    failed: int = Field(description="Attempts that failed in the window (held deliveries are not attempts).")
    success_rate: float | None = Field(description="delivered / (delivered + failed); null without attempts.")
    failing_since: str | None = Field(description="Since when every attempt failed (RFC 3339); null when working.")
    circuit: CircuitOut = Field(description="The webhook's circuit breaker, as GET /integrations/{id} shows it.")
    disable_at: str | None = Field(
        description="When the webhook is disabled if it keeps failing (failing_since + the disable period); "
        "null when it is not failing."
    )
    hourly: list[HealthHourOut] = Field(description="window_hours entries, oldest first, hours without attempts 0.")
    waiting: int = Field(
        description="Its deliveries that wait for a try (state retrying: after a failed attempt, or held without "
        "one), counted up to 1000."
    )
    waiting_more: bool = Field(description='true: more than `waiting` wait (the count stops at 1000: "1,000+").')
    oldest_waiting_at: str | None = Field(
        description="The event time of the oldest delivery that waits (RFC 3339); null when none waits."
    )

    def to_json(self) -> dict[str, Any]:
        """Every field, nulls included; the circuit exactly as GET /integrations/{id} writes it."""
        out = self.model_dump(mode="json")
        out["circuit"] = self.circuit.to_json()
        return out

    @classmethod
    def of(cls, health: Health) -> HealthOut:
        last = health.last
        integration = health.integration
        return cls(
            last_delivery=LastDeliveryOut(
                at=rfc3339_millis(last.last_at),
                outcome="delivered" if last.last_delivered else "failed",
                status_code=last.last_status_code,
                error=None if last.last_delivered else last.last_error,
            )
            if last is not None and last.last_at is not None
            else None,
            window_hours=len(health.hourly),
            delivered=health.delivered,
            failed=health.failed,
            success_rate=health.success_rate,
            failing_since=rfc3339_millis(integration.failing_since) if integration.failing_since else None,
            circuit=CircuitOut.of(integration.circuit, health.now),
            disable_at=rfc3339_millis(health.disable_at) if health.disable_at else None,
            hourly=[HealthHourOut(hour=rfc3339(h.hour), delivered=h.delivered, failed=h.failed) for h in health.hourly],
            waiting=health.waiting.count,
            waiting_more=health.waiting.more,
            oldest_waiting_at=rfc3339_millis(health.waiting.oldest_at) if health.waiting.oldest_at else None,
        )
