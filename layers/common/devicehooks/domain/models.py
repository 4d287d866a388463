"""Integrations as stored (a frozen dataclass) and how they change; the event types."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, fields
from datetime import datetime
from enum import Enum
from typing import Final, Literal, get_args

EventType = Literal["device-provisioned", "device-decommissioned", "device-status-changed", "device-inventory-changed"]
EVENT_TYPES: tuple[EventType, ...] = get_args(EventType)
# Mender's webhook scopes: each event type belongs to one. An integration without scopes (or with
# ``[]``, what Mender's UI sends) is in ``deviceauth`` only, as open-source Mender delivers.
Scope = Literal["deviceauth", "inventory"]
SCOPES: tuple[Scope, ...] = get_args(Scope)
DEFAULT_SCOPES: Final[tuple[Scope, ...]] = ("deviceauth",)
SCOPE_OF: Final[dict[str, Scope]] = {
    "device-provisioned": "deviceauth",
    "device-decommissioned": "deviceauth",
    "device-status-changed": "deviceauth",
    "device-inventory-changed": "inventory",
}
# The type of the event ``POST /integrations/{id}/test`` sends; never sent for a device event.
TEST_EVENT_TYPE: Final = "webhook-test"
ActivityType = Literal[EventType, "webhook-test"]
ACTIVITY_TYPES: tuple[ActivityType, ...] = (*EVENT_TYPES, TEST_EVENT_TYPE)

OMITTED = "<omitted>"
PROVIDER_WEBHOOK: Final = "webhook"


class _Keep(Enum):
    KEEP = "keep"


KEEP: Final = _Keep.KEEP
"""In :class:`IntegrationChanges`: this field is left as it is."""


@dataclass(frozen=True, slots=True)
class Circuit:
    """A webhook's circuit breaker, shared by every dispatcher (stored with the integration, on
    an item apart from its configuration).

    Closed while ``open_until`` is ``None``: deliveries are attempted. Open until ``open_until``:
    deliveries wait on the retry queue, none is attempted. Then half-open: one probe at a time
    (the one that took ``probe_until``) is attempted; a success closes the circuit, a failure opens
    it again for a longer ``cooldown``. ``failures`` counts consecutive failed attempts.

    ``proven``: a delivery succeeded since the webhook was created (or its URL changed, or it was
    enabled by hand), none failed since, and the last success was not slow (see
    ``DispatchPolicy.slow_seconds``). A webhook not proven is *on trial*: only a few
    dispatcher invocations at a time may attempt it (see ``DispatchPolicy.trial_invocations``).
    """

    failures: int = 0
    opened_at: datetime | None = None
    open_until: datetime | None = None
    cooldown: int = 0
    probe_until: datetime | None = None
    proven: bool = False

    def state(self, now: datetime) -> Literal["closed", "open", "half-open"]:
        if self.open_until is None:
            return "closed"
        return "open" if now < self.open_until else "half-open"


@dataclass(frozen=True, slots=True)
class Integration:
    """A stored webhook integration. ``secret`` is a KMS ciphertext, ``b""`` for an empty secret."""

    id: str
    tenant_id: str
    url: str
    created_at: datetime
    updated_at: datetime
    provider: str = PROVIDER_WEBHOOK
    secret: bytes | None = field(default=None, repr=False)
    description: str = ""
    event_types: tuple[EventType, ...] | None = None
    enabled: bool = True
    disabled_reason: str | None = None
    failing_since: datetime | None = None
    previous_secret: bytes | None = field(default=None, repr=False)
    previous_secret_until: datetime | None = None
    rate_limit: int | None = None  # deliveries per second at most, across every dispatcher; None: no limit
    circuit: Circuit = field(default_factory=Circuit)
    scopes: tuple[Scope, ...] | None = None  # as given (None: not given); see effective_scopes

    @property
    def effective_scopes(self) -> tuple[Scope, ...]:
        """The scopes events are selected by: those given, ``deviceauth`` when none (absent or ``[]``)."""
        return self.scopes or DEFAULT_SCOPES

    def wants(self, event_type: str) -> bool:
        """Whether ``event_type`` is in the integration's scopes and passes its event-type filter
        (no filter: every type of its scopes). Types outside every scope (``webhook-test``) pass."""
        scope = SCOPE_OF.get(event_type)
        if scope is not None and scope not in self.effective_scopes:
            return False
        return self.event_types is None or event_type in self.event_types

    @property
    def has_secret(self) -> bool:
        """Whether requests are signed (an empty secret signs with an empty key, as Mender)."""
        return self.secret is not None

    def changed(self, changes: IntegrationChanges) -> Integration:
        """This integration with ``changes`` applied (what the store does to the stored one)."""
        return Integration(
            id=self.id,
            tenant_id=self.tenant_id,
            url=self.url if changes.url is KEEP else changes.url,
            created_at=self.created_at,
            updated_at=changes.updated_at,
            provider=self.provider,
            secret=self.secret if changes.secret is KEEP else changes.secret,
            description=self.description if changes.description is KEEP else changes.description,
            event_types=self.event_types if changes.event_types is KEEP else changes.event_types,
            enabled=self.enabled if changes.enabled is KEEP else changes.enabled,
            disabled_reason=self.disabled_reason if changes.disabled_reason is KEEP else changes.disabled_reason,
            failing_since=self.failing_since if changes.failing_since is KEEP else changes.failing_since,
            previous_secret=self.previous_secret if changes.previous_secret is KEEP else changes.previous_secret,
            previous_secret_until=self.previous_secret_until
            if changes.previous_secret_until is KEEP
            else changes.previous_secret_until,
            rate_limit=self.rate_limit if changes.rate_limit is KEEP else changes.rate_limit,
            circuit=self.circuit if changes.circuit is KEEP else changes.circuit,
            scopes=self.scopes if changes.scopes is KEEP else changes.scopes,
        )


@dataclass(frozen=True, slots=True)
class IntegrationChanges:
    """What to change on a stored integration; every field left at :data:`KEEP` is kept.

    Made by the named constructors below, one per use case, and applied by the store at once as
    partial updates (so a user's change and the dispatcher's bookkeeping never overwrite each
    other's fields; the circuit and ``failing_since`` are stored apart from the configuration, and
    a change that resets them resets them with it).
    """

    updated_at: datetime
    url: str | _Keep = KEEP
    secret: bytes | None | _Keep = KEEP
    description: str | _Keep = KEEP
    event_types: tuple[EventType, ...] | None | _Keep = KEEP
    enabled: bool | _Keep = KEEP
    disabled_reason: str | None | _Keep = KEEP
    failing_since: datetime | None | _Keep = KEEP
    previous_secret: bytes | None | _Keep = KEEP
    previous_secret_until: datetime | None | _Keep = KEEP
    rate_limit: int | None | _Keep = KEEP
    circuit: Circuit | _Keep = KEEP
    scopes: tuple[Scope, ...] | None | _Keep = KEEP

    @classmethod
    def credentials(
        cls, url: str, secret: bytes | None, previous: bytes | None, previous_until: datetime | None, at: datetime
    ) -> IntegrationChanges:
        """New URL and secret; ``previous`` keeps signing until ``previous_until`` (or nothing does)."""
        return cls(
            updated_at=at,
            url=url,
            secret=secret,
            previous_secret=previous,
            previous_secret_until=previous_until if previous is not None else None,
        )

    @classmethod
    def settings(
        cls,
        at: datetime,
        url: str | _Keep = KEEP,
        description: str | _Keep = KEEP,
        event_types: tuple[EventType, ...] | None | _Keep = KEEP,
        enabled: bool | _Keep = KEEP,
        rate_limit: int | None | _Keep = KEEP,
        scopes: tuple[Scope, ...] | None | _Keep = KEEP,
    ) -> IntegrationChanges:
        """A user's change of URL, description, scopes, event filter, rate limit or enabled state.

        Enabling or disabling by hand starts afresh: no failure count, the circuit closed. So does
        a new URL (another endpoint: its circuit closed, on trial until a delivery succeeds).
        """
        if enabled is KEEP:
            return cls(
                updated_at=at,
                url=url,
                description=description,
                event_types=event_types,
                rate_limit=rate_limit,
                scopes=scopes,
                circuit=KEEP if url is KEEP else Circuit(),
            )
        return cls(
            updated_at=at,
            url=url,
            description=description,
            event_types=event_types,
            rate_limit=rate_limit,
            scopes=scopes,
            enabled=enabled,
            failing_since=None,
            disabled_reason=None if enabled else "disabled by a user",
            circuit=Circuit(),
        )

    @classmethod
    def disabled(cls, reason: str, at: datetime) -> IntegrationChanges:
        """The dispatcher gives up on the webhook (410 Gone, or failing too long)."""
        return cls(updated_at=at, enabled=False, disabled_reason=reason, failing_since=None, circuit=Circuit())

    def given(self) -> dict[str, object]:
        """The fields to change, by name (``updated_at`` included)."""
        return {f.name: value for f in fields(self) if (value := getattr(self, f.name)) is not KEEP}


def outside_scopes(event_types: tuple[EventType, ...] | None, scopes: tuple[Scope, ...] | None) -> list[EventType]:
    """The event types of a filter that its scopes never select (a filter must stay inside them)."""
    selected = scopes or DEFAULT_SCOPES
    return [t for t in event_types or () if SCOPE_OF[t] not in selected]


def new_id() -> str:
    """A fresh lowercase UUIDv4 string."""
    return str(uuid.uuid4())


def go_uuid_error(value: str) -> str | None:
    """Mirror of Go's ``uuid.Parse`` error text; ``None`` when ``value`` is a valid UUID."""
    if len(value) not in (32, 36, 38, 45):
        return f"invalid UUID length: {len(value)}"
    try:
        uuid.UUID(value)
    except ValueError:
        return "invalid UUID format"
    return None
