"""Settings read once from the environment (``DEVICEHOOKS_*``), checked at cold start.

A frozen dataclass and a table of small parsers rather than a pydantic model: every function
reads its settings at import time (a missing table name fails the cold start, not the first
request), and building a pydantic model's validator there cost 6-9 ms of each cold start.
"""

from __future__ import annotations

import ipaddress
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from functools import lru_cache
from typing import Any

from devicehooks.errors import ConfigError

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

DEFAULT_RETRY_SCHEDULE = (5, 300, 1800, 7200, 18000, 36000, 36000)
PREFIX = "DEVICEHOOKS_"


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the functions read from the environment.

    Table names have no defaults: a function deployed without them fails at cold start.
    """

    integrations_table: str
    activity_table: str
    secrets_key_id: str = ""
    event_bus: str = ""
    event_source: str = "devicehooks.deviceauth"
    retry_queue_url: str = ""
    dispatch_queue_url: str = ""
    dispatch_dlq_url: str = ""
    delivery_dlq_url: str = ""
    max_integrations: int = 20
    allowed_cidrs: tuple[IPNetwork, ...] = ()
    event_retention: int = 7 * 24 * 3600
    delivery_timeout: float = 10.0
    retry_schedule: tuple[int, ...] = DEFAULT_RETRY_SCHEDULE
    secret_overlap: int = 24 * 3600
    delivery_lease: int = 0
    disable_after: int = 5 * 24 * 3600
    request_size_limit: int = 1024 * 1024
    # the public addresses webhook requests leave from (template.yaml StaticEgressIps); () when they
    # are AWS's shared ranges. Only shown (GET /egress, the UI): nothing routes by them.
    egress_ips: tuple[str, ...] = ()

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> Settings:
        """The settings in ``environ`` (``DEVICEHOOKS_*``); :class:`ConfigError` naming every bad one."""
        values, problems = _parse(environ, required=True)
        if problems:
            raise ConfigError("invalid configuration: " + "; ".join(problems))
        return cls(**values)


def problems_in(environ: Mapping[str, str]) -> list[str]:
    """What is wrong with the ``DEVICEHOOKS_*`` settings ``environ`` gives (none is required), one
    line each. The local stack checks each function's variables so before it serves, rather than
    each function failing its cold start."""
    return _parse(environ, required=False)[1]


def _parse(environ: Mapping[str, str], required: bool) -> tuple[dict[str, Any], list[str]]:
    """The settings ``environ`` gives, parsed, and what is wrong with them."""
    values: dict[str, Any] = {}
    problems: list[str] = []
    for field in fields(Settings):
        name = PREFIX + field.name.upper()
        raw = environ.get(name)
        parse = _PARSERS.get(field.name, _text)
        if raw is None:
            if required and field.name in _REQUIRED:
                problems.append(f"{name}: is required")
            continue
        try:
            values[field.name] = parse(raw)
        except ValueError as exc:
            problems.append(f"{name}: {exc}")
    return values, problems


def _text(raw: str) -> str:
    return raw


def _required_text(raw: str) -> str:
    if not raw:
        raise ValueError("must not be empty")
    return raw


def _integer(low: int, high: int | None = None) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        try:
            value = int(raw.strip())
        except ValueError:
            raise ValueError(f"must be an integer, not {raw!r}") from None
        if value < low or (high is not None and value > high):
            within = f"must be at least {low}" + (f" and at most {high}" if high is not None else "")
            raise ValueError(f"{within}, not {value}")
        return value

    return parse


def _seconds(raw: str) -> float:
    try:
        value = float(raw.strip())
    except ValueError:
        raise ValueError(f"must be a number of seconds, not {raw!r}") from None
    if not (math.isfinite(value) and 0 < value <= 60):
        raise ValueError("must be more than 0 and at most 60 seconds")
    return value


def _parts(raw: str) -> list[str]:
    return [part.strip() for part in raw.split(",") if part.strip()]


def _cidrs(raw: str) -> tuple[IPNetwork, ...]:
    try:
        return tuple(ipaddress.ip_network(part, strict=False) for part in _parts(raw))
    except ValueError as exc:
        raise ValueError(f"must be comma-separated CIDRs: {exc}") from None


def _addresses(raw: str) -> tuple[str, ...]:
    try:
        return tuple(str(ipaddress.ip_address(part)) for part in _parts(raw))
    except ValueError as exc:
        raise ValueError(f"must be comma-separated IP addresses: {exc}") from None


def _schedule(raw: str) -> tuple[int, ...]:
    parse = _integer(0)
    return tuple(parse(part) for part in _parts(raw))


_REQUIRED = frozenset({"integrations_table", "activity_table"})
_PARSERS: dict[str, Callable[[str], Any]] = {
    "integrations_table": _required_text,
    "activity_table": _required_text,
    "max_integrations": _integer(1, 99),
    "allowed_cidrs": _cidrs,
    "event_retention": _integer(60),
    "delivery_timeout": _seconds,
    "retry_schedule": _schedule,
    "secret_overlap": _integer(0),
    "delivery_lease": _integer(0),
    "disable_after": _integer(0),
    "request_size_limit": _integer(1024),
    "egress_ips": _addresses,
}


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The service settings, read and checked once per process."""
    return Settings.from_environ(os.environ)
