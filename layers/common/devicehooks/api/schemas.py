"""Response shapes, for the OpenAPI document the APIs serve (the handlers write plain JSON)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from devicehooks.domain.models import EventType


class HttpCredentialsOut(BaseModel):
    model_config = ConfigDict(defer_build=True)  # documentation only: built for the OpenAPI document

    url: str
    secret: Literal["<omitted>"] | None = Field(
        default=None, description='Present (always "<omitted>") when the integration has a secret.'
    )


class CredentialsOut(BaseModel):
    model_config = ConfigDict(defer_build=True)  # documentation only: built for the OpenAPI document

    type: Literal["http"]
    http: HttpCredentialsOut


class IntegrationOut(BaseModel):
    model_config = ConfigDict(defer_build=True)  # documentation only: built for the OpenAPI document

    id: str = Field(description="Integration id (UUID).")
    provider: Literal["webhook"]
    credentials: CredentialsOut
    description: str | None = None
    event_types: list[EventType] | None = Field(default=None, description="devicehooks: the event-type filter.")
    enabled: bool = Field(description="devicehooks: false when disabled (by a user, a 410, or failing too long).")
    disabled_reason: str | None = Field(default=None, description="devicehooks: why it is disabled.")


class DeliveryStatusOut(BaseModel):
    model_config = ConfigDict(defer_build=True)  # documentation only: built for the OpenAPI document

    integration_id: str
    success: bool
    error: str | None = None
    status_code: int | None = None
    state: Literal["pending", "retrying", "delivered", "failed", "skipped"] = Field(
        description="devicehooks: where the delivery stands."
    )
    attempts: int = Field(description="devicehooks: attempts made so far.")
    next_attempt: str | None = Field(default=None, description="devicehooks: when the next retry is due.")


class EventOut(BaseModel):
    model_config = ConfigDict(defer_build=True)  # documentation only: built for the OpenAPI document

    id: str
    type: str = Field(description="A device event type, or webhook-test for test deliveries.")
    data: dict[str, Any]
    time: str = Field(description="Event time, RFC 3339 UTC, milliseconds.")
    delivery_statuses: list[DeliveryStatusOut] | None = None


class AttemptOut(BaseModel):
    model_config = ConfigDict(defer_build=True)  # documentation only: built for the OpenAPI document

    attempt: int
    time: str
    duration_ms: int
    status_code: int | None = None
    error: str | None = None
    response_body: str | None = Field(default=None, description="The first 256 bytes of the response body.")


class DeliveryDetailOut(DeliveryStatusOut):
    model_config = ConfigDict(defer_build=True)  # documentation only: built for the OpenAPI document

    attempt_log: list[AttemptOut]


class EventDetailOut(BaseModel):
    model_config = ConfigDict(defer_build=True)  # documentation only: built for the OpenAPI document

    id: str
    type: str
    data: dict[str, Any]
    time: str
    delivery_statuses: list[DeliveryDetailOut] | None = None


class RedeliverIn(BaseModel):
    model_config = ConfigDict(defer_build=True)  # documentation only: built for the OpenAPI document

    integration_id: str | None = Field(
        default=None, description="Only this webhook; absent: every enabled webhook the event went to."
    )


class RedeliverOut(BaseModel):
    model_config = ConfigDict(defer_build=True)  # documentation only: built for the OpenAPI document

    event_id: str
    integration_ids: list[str]


class TestOutcomeOut(BaseModel):
    model_config = ConfigDict(defer_build=True)  # documentation only: built for the OpenAPI document

    event_id: str = Field(description='Id of the test event (type "webhook-test"), also in the activity log.')
    success: bool
    status_code: int | None = None
    error: str | None = None
    duration_ms: int
    response_body: str | None = None
