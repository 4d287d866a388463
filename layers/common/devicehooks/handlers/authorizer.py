"""The authorizer function's wiring: its settings from the environment, one verdict per request."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from devicehooks.security.auth import AuthConfig, authorize


@lru_cache(maxsize=1)
def config() -> AuthConfig:
    """The authorizer's settings, read once; raises ``ConfigError`` when the keys are missing."""
    return AuthConfig.from_env()


def handle(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """The authorizer's simple response for one HTTP API request."""
    return authorize(event, config())
