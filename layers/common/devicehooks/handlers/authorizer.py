"""The authorizer function's wiring: its settings from the environment, one verdict per request."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from devicehooks.security.auth import AuthConfig, authorize, useradm_verifier


@lru_cache(maxsize=1)
def config() -> AuthConfig:
    """The authorizer's settings, read once; raises ``ConfigError`` when the keys are missing or the
    admin settings contradict each other. Alongside Mender, the useradm client is made here too, so
    that its import is part of the cold start rather than of the first request."""
    settings = AuthConfig.from_env()
    if settings.useradm_verify_url:
        useradm_verifier(settings.useradm_verify_url)
    return settings


def handle(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """The authorizer's simple response for one HTTP API request."""
    return authorize(event, config())
