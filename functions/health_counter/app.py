"""Health counter function: the activity table's stream in, each webhook's hourly attempt counts out."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from devicehooks.handlers import health_counter
from devicehooks.observability import logger, tracer


@logger.inject_lambda_context
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return health_counter.handle(event, context)
