"""Integrations: the API input (pydantic, with Mender's validation rules) and the stored webhook."""

from __future__ import annotations

import string
import uuid
from dataclasses import dataclass, field, fields
from datetime import datetime
from enum import Enum
from typing import Annotated, Final, Literal, get_args
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, SecretStr
from pydantic_core import PydanticCustomError

EventType = Literal["device-provisioned", "device-decommissioned", "device-status-changed"]
EVENT_TYPES: tuple[EventType, ...] = get_args(EventType)
# The type of the event ``POST /integrations/{id}/test`` sends; never sent for a device event.
TEST_EVENT_TYPE: Final = "webhook-test"
ActivityType = Literal[EventType, "webhook-test"]

OMITTED = "<omitted>"
PROVIDER_WEBHOOK: Final = "webhook"
MAX_DESCRIPTION_BYTES = 1024
MAX_URL_LENGTH = 2048
# 64 bytes is SHA-256's block size: HMAC hashes longer keys first, so they add no strength.
MAX_SECRET_HEX = 128

_HEX = frozenset(string.hexdigits)


def _fail(message: str) -> PydanticCustomError:
    return PydanticCustomError("devicehooks", message)


def _check_provider(value: str) -> str:
    if not value:
        raise _fail("cannot be blank")
    if value in ("iot-hub", "iot-core"):
        raise _fail(f"'{value}' is not supported: devicehooks manages 'webhook' integrations only")
    if value != PROVIDER_WEBHOOK:
        raise _fail("must be a valid value")
    return value


def _check_credentials_type(value: str) -> str:
    if not value:
        raise _fail("cannot be blank")
    if value in ("aws", "sas"):
        raise _fail(f"'{value}' is not supported: webhook integrations take credentials of type 'http'")
    if value != "http":
        raise _fail("must be a valid value")
    return value


def check_url(value: str) -> str:
    """A webhook URL: absolute http(s) with a host, no whitespace, at most 2048 characters."""
    if not value.strip():
        raise _fail("cannot be blank")
    if len(value) > MAX_URL_LENGTH:
        raise _fail(f"the length must be no more than {MAX_URL_LENGTH}")
    if any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise _fail("must be a valid URL")
    try:
        parts = urlsplit(value)
        _ = parts.port  # raises on a malformed port
    except ValueError:
        raise _fail("must be a valid URL") from None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise _fail("must be an absolute http:// or https:// URL with a host")
    return value


def _check_secret(value: SecretStr | None) -> SecretStr | None:
    if value is None:
        return None
    text = value.get_secret_value()
    if len(text) > MAX_SECRET_HEX:
        raise _fail(f"the length must be no more than {MAX_SECRET_HEX}")
    if len(text) % 2 or not _HEX.issuperset(text):
        raise _fail("must be a hexadecimal string of even length")
    return value


def _check_event_types(value: list[EventType] | None) -> list[EventType] | None:
    if value is None:
        return None
    if not value:
        raise _fail("must list at least one event type (leave it out for all types)")
    return [t for t in EVENT_TYPES if t in value]  # canonical order, no duplicates


EventTypes = Annotated[
    list[EventType] | None,
    AfterValidator(_check_event_types),
    Field(
        default=None,
        description="devicehooks: only these event types are sent to the webhook; absent or null means all types.",
    ),
]


def _check_description(value: str | None) -> str | None:
    if value is not None and len(value.encode()) > MAX_DESCRIPTION_BYTES:
        raise _fail(f"the length must be no more than {MAX_DESCRIPTION_BYTES}")
    return value


class HttpCredentialsIn(BaseModel):
    """Where to POST and, optionally, the hex secret that signs each request."""

    model_config = ConfigDict(extra="ignore", defer_build=True)

    url: Annotated[
        str,
        AfterValidator(check_url),
        Field(description="Destination URL (http or https). Each event is POSTed to it exactly as stored."),
    ]
    secret: Annotated[
        SecretStr | None,
        AfterValidator(_check_secret),
        Field(
            default=None,
            description="Optional signing secret, hex-encoded (even length, at most 128 hex digits). "
            "Write-only: it is never returned.",
            json_schema_extra={"pattern": "^([0-9a-fA-F]{2}){0,64}$"},
        ),
    ]

    def secret_bytes(self) -> bytes | None:
        """The hex-decoded secret (``b""`` for an empty secret, ``None`` when there is none)."""
        return None if self.secret is None else bytes.fromhex(self.secret.get_secret_value())


class CredentialsIn(BaseModel):
    """Mender's ``Credentials`` for a webhook: type ``http``."""

    model_config = ConfigDict(extra="ignore", defer_build=True)

    type: Annotated[str, AfterValidator(_check_credentials_type), Field(json_schema_extra={"enum": ["http"]})]
    http: HttpCredentialsIn


class IntegrationIn(BaseModel):
    """Body of ``POST /integrations`` (Mender's ``Integration``; ``id`` is ignored)."""

    model_config = ConfigDict(extra="ignore", defer_build=True)

    provider: Annotated[str, AfterValidator(_check_provider), Field(json_schema_extra={"enum": ["webhook"]})]
    credentials: CredentialsIn
    description: Annotated[
        str | None,
        AfterValidator(_check_description),
        Field(default=None, description="Free text, at most 1024 bytes of UTF-8."),
    ]
    event_types: EventTypes


class IntegrationUpdate(BaseModel):
    """Body of ``PUT /integrations/{id}`` (devicehooks): the fields given are changed, the others kept."""

    model_config = ConfigDict(extra="ignore", defer_build=True)

    url: Annotated[
        str | None,
        AfterValidator(lambda v: None if v is None else check_url(v)),
        Field(default=None, description="New destination URL."),
    ]
    description: Annotated[
        str | None,
        AfterValidator(_check_description),
        Field(default=None, description="New description (at most 1024 bytes)."),
    ]
    event_types: EventTypes
    enabled: bool | None = Field(default=None, description="true re-enables a disabled webhook; false disables it.")


class _Keep(Enum):
    KEEP = "keep"


KEEP: Final = _Keep.KEEP
"""In :class:`IntegrationChanges`: this field is left as it is."""


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

    def wants(self, event_type: str) -> bool:
        """Whether the event-type filter lets ``event_type`` through (no filter: everything)."""
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
        )


@dataclass(frozen=True, slots=True)
class IntegrationChanges:
    """What to change on a stored integration; every field left at :data:`KEEP` is kept.

    Made by the named constructors below, one per use case, and applied by the store as one
    partial update (so a user's change and the dispatcher's bookkeeping never overwrite each
    other's fields).
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
    ) -> IntegrationChanges:
        """A user's change of URL, description, event filter or enabled state.

        Enabling or disabling by hand starts the failure count afresh.
        """
        if enabled is KEEP:
            return cls(updated_at=at, url=url, description=description, event_types=event_types)
        return cls(
            updated_at=at,
            url=url,
            description=description,
            event_types=event_types,
            enabled=enabled,
            failing_since=None,
            disabled_reason=None if enabled else "disabled by a user",
        )

    @classmethod
    def disabled(cls, reason: str, at: datetime) -> IntegrationChanges:
        """The dispatcher gives up on the webhook (410 Gone, or failing too long)."""
        return cls(updated_at=at, enabled=False, disabled_reason=reason, failing_since=None)

    def given(self) -> dict[str, object]:
        """The fields to change, by name (``updated_at`` included)."""
        return {f.name: value for f in fields(self) if (value := getattr(self, f.name)) is not KEEP}


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
