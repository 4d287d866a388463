"""The management function's wiring: the API's routes behind the request rules and the identity check."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from devicehooks.api import http, management
from devicehooks.config import get_settings

get_settings()  # read and checked at cold start: a missing or bad setting fails here, not at a request


def handle(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Serve one API Gateway event: size limit, request id, then the caller's verified identity."""
    return http.serve(management.app, event, context, get_settings().request_size_limit, before=management.authenticate)
