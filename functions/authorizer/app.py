"""Lambda authorizer for the management API: verifies the caller's JWT (no AWS SDK needed)."""

from typing import Any

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from devicehooks.handlers import authorizer
from devicehooks.observability import logger, tracer

authorizer.config()  # fail at cold start, not at the first request, when the keys are missing


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@tracer.capture_lambda_handler(capture_response=False)  # no response bodies in traces
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return authorizer.handle(event, context)
