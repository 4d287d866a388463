"""The activity log's records: an event, its delivery status per webhook, and each attempt.

Plain frozen dataclasses (built in microseconds, nothing to validate: the dispatcher makes them
from validated input). A delivery changes state only through the typed transitions of
:class:`DeliveryStatus`; the API's JSON shapes are the response models in ``api/schemas.py``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal, get_args

from devicehooks.domain.events import WebhookEvent
from devicehooks.domain.models import TEST_EVENT_TYPE, ActivityType

DeliveryState = Literal["pending", "retrying", "delivered", "failed", "skipped"]
DELIVERY_STATES: tuple[DeliveryState, ...] = get_args(DeliveryState)
IN_PROGRESS: frozenset[DeliveryState] = frozenset({"pending", "retrying"})
# what a retry (``POST /events/{id}/retry``) may attempt again: a delivery that was not delivered and
# is not under way (waiting for its retry or held, out of tries, or skipped while its webhook was
# disabled); the store's reopen writes only from these states, so a delivered one never is
RETRYABLE: frozenset[DeliveryState] = frozenset({"retrying", "failed", "skipped"})
# why a retry attempts nothing (Mender's 409 body says it as it is)
DELIVERED_ALREADY = "the event was delivered to this webhook; redeliver it to send it again"
IN_FLIGHT = "the delivery is being attempted right now; wait for that attempt to finish"
QUEUED_ALREADY = "the delivery is already queued to be attempted now"
# why recover left a delivery of its window unsent (its answer counts them by reason)
RecoverSkip = Literal["delivered", "attempted", "disabled", "record_full", "gone"]
RECOVER_SKIPS: dict[RecoverSkip, str] = {
    "delivered": "delivered since it was found",
    "attempted": "attempted again meanwhile, and waiting for its next retry",
    "disabled": "skipped while the webhook was disabled (retry each one to send it)",
    "record_full": "the event's activity record is full and cannot record another attempt",
    "gone": "no longer in the activity log",
}
RESPONSE_SNIPPET_BYTES = 256


@dataclass(frozen=True, slots=True)
class Attempt:
    """One POST (or a refusal to POST) to one webhook."""

    number: int
    at: datetime
    duration_ms: int = 0
    status_code: int | None = None
    error: str | None = None
    response_body: str | None = None
    # the request's headers as sent (signatures included: HMAC outputs, never the secret);
    # None when the request was not built, and when they were not kept (store/bounds.py: a bare
    # attempt, or an event to 69 webhooks or more)
    headers: Mapping[str, str] | None = None


@dataclass(frozen=True, slots=True)
class DeliveryStatus:
    """Where delivery of one event to one webhook stands.

    ``lease_until`` is internal: while it lies in the future, one dispatcher holds the right to
    POST this delivery (see docs/architecture.md, "At least once, no duplicates").
    """

    integration_id: str
    state: DeliveryState = "pending"
    attempts: int = 0
    status_code: int | None = None
    error: str | None = None
    updated_at: datetime | None = None
    next_attempt_at: datetime | None = None
    lease_until: datetime | None = None

    # ------------------------------------------------------------------ starting points
    @classmethod
    def leased(cls, integration_id: str, until: datetime) -> DeliveryStatus:
        """A new delivery, reserved for the dispatcher that records it until ``until``."""
        return cls(integration_id=integration_id, lease_until=until)

    @classmethod
    def skipped_new(cls, integration_id: str, reason: str, at: datetime) -> DeliveryStatus:
        """A delivery that is not attempted at all (the webhook is disabled)."""
        return cls(integration_id=integration_id, state="skipped", error=reason, updated_at=at)

    # ------------------------------------------------------------------ transitions
    @property
    def success(self) -> bool:
        return self.state == "delivered"

    @property
    def in_progress(self) -> bool:
        return self.state in IN_PROGRESS

    def retry_refusal(self, now: datetime) -> str | None:
        """Why a retry may not attempt this delivery now (``None``: it may): it was delivered, an
        attempt is in flight (its lease is held), or it is pending (queued to be attempted)."""
        if self.state == "delivered":
            return DELIVERED_ALREADY
        if self.lease_until is not None and self.lease_until >= now:
            return IN_FLIGHT
        if self.state not in RETRYABLE:
            return QUEUED_ALREADY
        return None

    def with_lease(self, until: datetime | None) -> DeliveryStatus:
        """The same delivery, leased until ``until`` (``None``: the lease is given back)."""
        return replace(self, lease_until=until)

    def after_attempt(
        self,
        attempt: Attempt,
        state: Literal["delivered", "retrying", "failed"],
        at: datetime,
        next_attempt_at: datetime | None = None,
        error: str | None = None,
    ) -> DeliveryStatus:
        """The status once ``attempt`` is over: delivered, retrying at ``next_attempt_at``, or failed."""
        return DeliveryStatus(
            integration_id=self.integration_id,
            state=state,
            attempts=attempt.number,
            status_code=attempt.status_code,
            error=error if error is not None else attempt.error,
            updated_at=at,
            next_attempt_at=next_attempt_at if state == "retrying" else None,
        )

    def held(self, until: datetime, reason: str, at: datetime) -> DeliveryStatus:
        """Not attempted now, for ``reason``: waiting on the retry queue until ``until`` (no attempt
        is counted, the lease is given back)."""
        return replace(self, state="retrying", error=reason, updated_at=at, next_attempt_at=until, lease_until=None)

    def closed(self, state: Literal["failed", "skipped"], reason: str, at: datetime) -> DeliveryStatus:
        """Given up without an attempt (the webhook was removed or disabled meanwhile)."""
        return replace(self, state=state, error=reason, updated_at=at, next_attempt_at=None, lease_until=None)

    def reopened(self, at: datetime) -> DeliveryStatus:
        """A finished delivery made pending again, for a redelivery due at ``at``."""
        return replace(self, state="pending", next_attempt_at=at, lease_until=None)


@dataclass(frozen=True, slots=True)
class ActivityEvent:
    """An event as the activity log keeps it: the exact body sent, and every delivery."""

    id: str
    tenant_id: str
    type: ActivityType
    time: datetime
    body: bytes = field(repr=False)
    expire_ts: int
    deliveries: Mapping[str, DeliveryStatus] = field(default_factory=dict)
    attempts: Mapping[str, tuple[Attempt, ...]] = field(default_factory=dict)
    test: bool = False  # a test delivery's sample of a device event type (``webhook-test`` is one by its type)

    @classmethod
    def new(
        cls,
        event: WebhookEvent,
        expire_ts: int,
        statuses: list[DeliveryStatus],
        body: bytes | None = None,
        test: bool = False,
    ) -> ActivityEvent:
        """The record of ``event`` before any POST, with one status per webhook it goes to
        (``body``: ``event.body()``, when the caller has it already; ``test``: sent as a test)."""
        return cls(
            id=event.id,
            tenant_id=event.tenant_id,
            type=event.type,
            time=event.time,
            body=event.body() if body is None else body,
            expire_ts=expire_ts,
            deliveries={s.integration_id: s for s in statuses},
            test=test,
        )

    @property
    def is_test(self) -> bool:
        """Sent by ``POST /integrations/{id}/test``: never retried, redelivered or recovered."""
        return self.test or self.type == TEST_EVENT_TYPE

    def data(self) -> dict[str, Any]:
        """The ``data`` object of the body that was sent."""
        return dict(json.loads(self.body)["data"])

    def with_status(self, status: DeliveryStatus, attempt: Attempt | None = None) -> ActivityEvent:
        """This event with one delivery's status replaced and ``attempt`` appended to its log."""
        attempts = self.attempts
        if attempt is not None:
            attempts = {**attempts, status.integration_id: (*attempts.get(status.integration_id, ()), attempt)}
        return replace(self, deliveries={**self.deliveries, status.integration_id: status}, attempts=attempts)


# ---------------------------------------------------------------------------- lists and health
@dataclass(frozen=True, slots=True)
class EventFilter:
    """What ``GET /events`` may narrow a list to, besides a webhook (all optional, combined with AND).

    ``state``: with a webhook, that webhook's delivery is in it; without, any delivery of the event.
    ``since <= time < until``. ``device_prefix``: the event's device id starts with it (case as
    stored)."""

    device_id: str | None = None
    state: DeliveryState | None = None
    type: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    device_prefix: str | None = None

    @property
    def keyed(self) -> bool:
        """Narrows by more than time (read through the filter indexes, not the time indexes)."""
        return bool(self.device_id or self.state or self.type or self.device_prefix)


@dataclass(frozen=True, slots=True)
class HourCount:
    """A webhook's attempts of one hour (UTC): how many were delivered (2xx) and failed, and the
    last of them counted."""

    hour: datetime
    delivered: int = 0
    failed: int = 0
    last_at: datetime | None = None
    last_delivered: bool = False
    last_status_code: int | None = None
    last_error: str | None = None

    def plus(self, attempt: Attempt, delivered: bool) -> HourCount:
        """This hour with ``attempt`` counted (the latest attempt becomes the last one)."""
        newer = self.last_at is None or attempt.at >= self.last_at
        return HourCount(
            hour=self.hour,
            delivered=self.delivered + (1 if delivered else 0),
            failed=self.failed + (0 if delivered else 1),
            last_at=attempt.at if newer else self.last_at,
            last_delivered=delivered if newer else self.last_delivered,
            last_status_code=attempt.status_code if newer else self.last_status_code,
            last_error=attempt.error if newer else self.last_error,
        )


# how far a webhook's waiting deliveries are counted: beyond it, "1,000+" (docs/architecture.md,
# "Webhook health")
WAITING_CAP = 1000


@dataclass(frozen=True, slots=True)
class Waiting:
    """A webhook's deliveries that wait (state ``retrying``: a retry after a failed attempt, or held
    without one): how many, counted up to a cap (``more``: there are more than ``count``, which is
    the cap), and the event time of the oldest of them (``None``: none waits)."""

    count: int = 0
    more: bool = False
    oldest_at: datetime | None = None


def hour_of(at: datetime) -> datetime:
    """The start of ``at``'s hour, UTC."""
    return at.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def device_of(event: ActivityEvent) -> str | None:
    """The device an event is about: ``data.id``, or ``data.device_id`` (inventory events)."""
    try:
        data = json.loads(event.body).get("data")
    except (ValueError, AttributeError):
        return None
    if not isinstance(data, dict):
        return None
    found = data.get("id", data.get("device_id"))
    return found if isinstance(found, str) and found else None


def matches(event: ActivityEvent, integration_id: str | None, only: EventFilter) -> bool:
    """Whether ``event`` is in a list narrowed to a webhook (``integration_id``) and by ``only``."""
    if integration_id is not None and integration_id not in event.deliveries:
        return False
    if only.since is not None and event.time < only.since:
        return False
    if only.until is not None and event.time >= only.until:
        return False
    if only.type is not None and event.type != only.type:
        return False
    if only.device_id is not None and device_of(event) != only.device_id:
        return False
    if only.device_prefix is not None and not (device_of(event) or "").startswith(only.device_prefix):
        return False
    if only.state is not None:
        states = (
            [event.deliveries[integration_id].state]
            if integration_id is not None
            else [s.state for s in event.deliveries.values()]
        )
        if only.state not in states:
            return False
    return True
