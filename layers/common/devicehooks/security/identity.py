"""Who calls the management API, as the authorizer verified it (kept free of JWT libraries)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from devicehooks.errors import Forbidden, ServiceUnavailable, Unauthorized


@dataclass(frozen=True)
class Identity:
    """Who is calling: the tenant (``""`` in open source Mender) and the subject (user id)."""

    tenant_id: str
    subject: str


def identity_from_request(request_context: Mapping[str, Any]) -> Identity:
    """The verified identity the authorizer passed on; raises when it refused the token."""
    verdict = (request_context.get("authorizer") or {}).get("lambda") or {}
    if verdict.get("verified") is True:
        return Identity(tenant_id=str(verdict.get("tenant_id", "")), subject=str(verdict.get("subject", "")))
    message = str(verdict.get("error") or "Authorization not present in header")
    if verdict.get("status") == 403:
        raise Forbidden(message)
    if verdict.get("status") == 503:  # useradm could not say whether the user may write
        raise ServiceUnavailable(message)
    raise Unauthorized(message)
