"""Lambda authorizer for the management API: verifies the caller's JWT (no AWS SDK needed)."""

from typing import Any

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from devicehooks.auth import AuthConfig, authorize
from devicehooks.observability import logger

config = AuthConfig.from_env()


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return authorize(event, config)
