"""Settings read once from the environment (``DEVICEHOOKS_*``)."""

from __future__ import annotations

import ipaddress
import os
from functools import lru_cache
from typing import Annotated, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from devicehooks.errors import ConfigError

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_M = TypeVar("_M", bound="BaseModel")

DEFAULT_RETRY_SCHEDULE = (5, 300, 1800, 7200, 18000, 36000, 36000)


def _split(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


def _cidrs(value: object) -> object:
    parts = _split(value)
    if isinstance(parts, list):
        return [ipaddress.ip_network(p, strict=False) if isinstance(p, str) else p for p in parts]
    return parts


class Settings(BaseModel):
    """Everything the functions read from the environment.

    Table names have no defaults: a function deployed without them fails at cold start.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    integrations_table: str = Field(min_length=1)
    activity_table: str = Field(min_length=1)
    secrets_key_id: str = ""
    event_bus: str = ""
    event_source: str = "devicehooks.deviceauth"
    retry_queue_url: str = ""
    dispatch_dlq_url: str = ""
    delivery_dlq_url: str = ""
    max_integrations: int = Field(default=20, ge=1, le=99)
    allowed_cidrs: Annotated[tuple[IPNetwork, ...], BeforeValidator(_cidrs)] = ()
    event_retention: int = Field(default=7 * 24 * 3600, ge=60)
    delivery_timeout: float = Field(default=10.0, gt=0, le=60)
    retry_schedule: Annotated[tuple[int, ...], BeforeValidator(_split)] = DEFAULT_RETRY_SCHEDULE
    secret_overlap: int = Field(default=24 * 3600, ge=0)
    delivery_lease: int = Field(default=0, ge=0)
    disable_after: int = Field(default=5 * 24 * 3600, ge=0)
    request_size_limit: int = Field(default=1024 * 1024, ge=1024)


def _environ(prefix: str = "DEVICEHOOKS_") -> dict[str, str]:
    return {k[len(prefix) :].lower(): v for k, v in os.environ.items() if k.startswith(prefix)}


def _load(model: type[_M]) -> _M:
    try:
        return model.model_validate(_environ())
    except ValidationError as exc:
        problems = "; ".join(
            f"DEVICEHOOKS_{'_'.join(str(p) for p in err['loc']).upper()}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"invalid configuration: {problems}") from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The service settings, validated once per process."""
    return _load(Settings)
