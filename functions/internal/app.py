"""Internal API function: Mender's device endpoints publish device events to the bus."""

from typing import Any

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from devicehooks.handlers import internal
from devicehooks.observability import logger, tracer


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@tracer.capture_lambda_handler(capture_response=False)  # no response bodies in traces
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return internal.handle(event, context)
