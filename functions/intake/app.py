"""Intake function: device events from the bus onto the dispatch queue, each in its tenant's group."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from devicehooks.handlers import intake
from devicehooks.observability import logger, tracer


@logger.inject_lambda_context
@tracer.capture_lambda_handler(capture_response=False)  # no response bodies in traces
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return intake.handle(event, context)
