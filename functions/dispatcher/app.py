"""Dispatcher function: device events and retries in (SQS), signed webhooks out."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from devicehooks.handlers import dispatcher
from devicehooks.observability import logger, metrics, tracer


@logger.inject_lambda_context
@tracer.capture_lambda_handler(capture_response=False)  # no response bodies in traces
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return dispatcher.handle(event, context)
