"""What the management API accepts for an integration: pydantic models with Mender's validation rules.

Built on first use (``defer_build``): only requests that carry such a body pay for them.
"""

from __future__ import annotations

import string
from typing import Annotated, ClassVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, SecretStr, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from devicehooks.domain.models import EVENT_TYPES, PROVIDER_WEBHOOK, SCOPES, EventType, Scope
from devicehooks.security.urls import BAD_SCHEME, NO_HOST, InvalidURL, parse_target

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
    """A webhook URL the sender can send to: absolute http(s) with a host, at most 2048 characters.

    Read with the sender's own parse (:func:`parse_target`, urllib3's parser), so what passes
    here is what the sender accepts, and the host the SSRF guard then checks is the host it
    dials. Stricter than the sender in one way: no whitespace, control character or lone
    surrogate anywhere (urllib3 would percent-encode them in the path; a URL shown to people
    should not hide them, and a lone surrogate cannot be stored).
    """
    if not value.strip():
        raise _fail("cannot be blank")
    if len(value) > MAX_URL_LENGTH:
        raise _fail(f"the length must be no more than {MAX_URL_LENGTH}")
    if any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F or 0xD800 <= ord(c) <= 0xDFFF for c in value):
        raise _fail("must be a valid URL")
    try:
        parse_target(value)
    except InvalidURL as exc:
        if exc.reason in (BAD_SCHEME, NO_HOST):
            raise _fail("must be an absolute http:// or https:// URL with a host") from None
        raise _fail("must be a valid URL") from None  # unparseable host, port or character; port 0
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
        description="devicehooks: only these event types are sent to the webhook (they must be in its scopes); "
        "absent or null means every type of its scopes.",
    ),
]


def _check_scopes(value: list[Scope] | None) -> list[Scope] | None:
    return None if value is None else [s for s in SCOPES if s in value]  # canonical order, no duplicates


Scopes = Annotated[
    list[Scope] | None,
    AfterValidator(_check_scopes),
    Field(
        default=None,
        description="Mender's webhook scopes: deviceauth (device-provisioned, -decommissioned, -status-changed) "
        "and inventory (device-inventory-changed). Absent or [] means deviceauth only. event_types, when "
        "given, narrows the scopes' types and must stay inside them.",
    ),
]


def _check_description(value: str | None) -> str | None:
    if value is not None and len(value.encode()) > MAX_DESCRIPTION_BYTES:
        raise _fail(f"the length must be no more than {MAX_DESCRIPTION_BYTES}")
    return value


class HttpCredentialsIn(BaseModel):
    """Where to POST and, optionally, the hex secret that signs each request."""

    model_config = ConfigDict(extra="ignore", defer_build=True)
    # Mender's HTTPCredentials decodes itself through a local alias type (``creds``): Go names the
    # field that holds it in type errors (domain/validation.py go_unmarshal_error)
    go_type: ClassVar[str] = "model.creds"
    go_name: ClassVar[str] = "creds"
    go_fields: ClassVar[dict[str, str]] = {"url": "string", "secret": "*model.HexSecret"}
    go_unmarshaler: ClassVar[bool] = True

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
    """Mender's ``Credentials`` for a webhook: type ``http``.

    ``http`` is required only once ``type`` is valid, as Mender's ``validation.When(type == http,
    Required)``: a body without ``type`` is answered ``type: cannot be blank.`` alone.
    """

    model_config = ConfigDict(extra="ignore", defer_build=True)
    go_type: ClassVar[str] = "model.Credentials"
    go_name: ClassVar[str] = "Credentials"
    go_fields: ClassVar[dict[str, str]] = {"type": "model.CredentialType", "http": "*model.HTTPCredentials"}
    go_unmarshaler: ClassVar[bool] = False

    type: Annotated[str, AfterValidator(_check_credentials_type), Field(json_schema_extra={"enum": ["http"]})]
    http: Annotated[HttpCredentialsIn | None, Field(default=None, validate_default=True)]

    @field_validator("http", mode="after")
    @classmethod
    def _http_required(cls, value: HttpCredentialsIn | None, info: ValidationInfo) -> HttpCredentialsIn | None:
        if value is None and info.data.get("type") == "http":  # absent when type failed its own check
            raise _fail("cannot be blank")
        return value

    @property
    def webhook(self) -> HttpCredentialsIn:
        """The ``http`` credentials (always there once validated)."""
        if self.http is None:  # pragma: no cover - _http_required refused it
            raise ValueError("http credentials missing")
        return self.http


MAX_RATE_LIMIT = 10_000

RateLimit = Annotated[
    int | None,
    Field(
        ge=1,
        le=MAX_RATE_LIMIT,
        description="devicehooks: at most this many deliveries per second to the webhook, across every "
        "dispatcher; the others wait on the retry queue (never dropped). null or absent: no limit.",
    ),
]


class IntegrationIn(BaseModel):
    """Body of ``POST /integrations`` (Mender's ``Integration``; ``id`` is ignored)."""

    model_config = ConfigDict(extra="ignore", defer_build=True)
    go_type: ClassVar[str] = "model.Integration"
    go_name: ClassVar[str] = "Integration"
    go_fields: ClassVar[dict[str, str]] = {
        "id": "uuid.UUID",
        "provider": "model.Provider",
        "credentials": "model.Credentials",
        "description": "string",
    }
    go_unmarshaler: ClassVar[bool] = False

    provider: Annotated[str, AfterValidator(_check_provider), Field(json_schema_extra={"enum": ["webhook"]})]
    credentials: CredentialsIn
    description: Annotated[
        str | None,
        AfterValidator(_check_description),
        Field(default=None, description="Free text, at most 1024 bytes of UTF-8."),
    ]
    scopes: Scopes
    event_types: EventTypes
    rate_limit: RateLimit = None


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
    scopes: Scopes
    event_types: EventTypes
    enabled: bool | None = Field(default=None, description="true re-enables a disabled webhook; false disables it.")
    rate_limit: RateLimit = None
