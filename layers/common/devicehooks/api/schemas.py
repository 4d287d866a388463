"""Response shapes, for the OpenAPI document the APIs serve (the handlers write plain JSON)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from devicehooks.models import EventType


class HttpCredentialsOut(BaseModel):
    url: str
    secret: Literal["<omitted>"] | None = Field(
        default=None, description='Present (always "<omitted>") when the integration has a secret.'
    )


class CredentialsOut(BaseModel):
    type: Literal["http"]
    http: HttpCredentialsOut


class IntegrationOut(BaseModel):
    id: str = Field(description="Integration id (UUID).")
    provider: Literal["webhook"]
    credentials: CredentialsOut
    description: str | None = None


class DeliveryStatusOut(BaseModel):
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
    id: str
    type: EventType
    data: dict[str, Any]
    time: str = Field(description="Event time, RFC 3339 UTC, milliseconds.")
    delivery_statuses: list[DeliveryStatusOut] | None = None
