"""What the management API accepts for an integration: pydantic models with Mender's validation rules.

Built on first use (``defer_build``): only requests that carry such a body pay for them.
"""

from __future__ import annotations

import string
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, SecretStr
from pydantic_core import PydanticCustomError

from devicehooks.domain.models import EVENT_TYPES, PROVIDER_WEBHOOK, EventType
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

    provider: Annotated[str, AfterValidator(_check_provider), Field(json_schema_extra={"enum": ["webhook"]})]
    credentials: CredentialsIn
    description: Annotated[
        str | None,
        AfterValidator(_check_description),
        Field(default=None, description="Free text, at most 1024 bytes of UTF-8."),
    ]
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
    event_types: EventTypes
    enabled: bool | None = Field(default=None, description="true re-enables a disabled webhook; false disables it.")
    rate_limit: RateLimit = None
