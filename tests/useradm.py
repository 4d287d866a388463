"""A stand-in for Mender's useradm that speaks its token check contract, for a real HTTP server.

``GET|POST /api/internal/v1/useradm/auth/verify`` as mender-server's useradm serves it
(``backend/services/useradm/api/http/api_useradm.go``: ``authTokenExtractor``,
``AuthVerifyHandler``; ``utils.go``: ``ExtractToken``, ``ExtractResourceAction``): the token from
``Authorization: Bearer`` or the ``JWT`` cookie (none: 401), checked against the signing key
(bad: 401 ``invalid jwt``), ``X-Forwarded-Uri`` of at least 4 components and
``X-Forwarded-Method`` (missing: 500 ``internal error``), then the authorizer: here a stand-in for
Enterprise RBAC in which a token whose role claim (``devicehooks token --role``) holds ``admin`` may do anything and any
other user may only read (Mender's read-only role), refused with 403 ``unauthorized``; a revoked
token gets 401 ``unauthorized``. Errors are Mender's ``{"error", "request_id"}``.
"""

from __future__ import annotations

import json
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any

import jwt
from werkzeug import Request, Response

from devicehooks_dev.cli import ROLE_CLAIM  # what `devicehooks token --role` writes

VERIFY_PATH = "/api/internal/v1/useradm/auth/verify"


@dataclass
class FakeUseradm:
    """The verify handler (``respond_with_handler``); ``failing`` makes it answer that status instead."""

    public_pem: str
    failing: int | None = None
    revoked: set[str] = field(default_factory=set)
    calls: list[dict[str, str]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, request: Request) -> Response:
        with self._lock:
            self.calls.append({k.lower(): v for k, v in request.headers.items()})
        request_id = request.headers.get("X-MEN-RequestID") or str(uuid.uuid4())
        if self.failing is not None:
            return _error(self.failing, "internal error", request_id)
        token = _token(request)
        if token is None:
            return _error(401, "authorization not present in header", request_id)
        try:
            claims: dict[str, Any] = jwt.decode(
                token, self.public_pem, algorithms=["EdDSA", "ES256", "RS256"], options={"verify_aud": False}
            )
        except jwt.InvalidTokenError:
            return _error(401, "invalid jwt", request_id)
        uri = request.headers.get("X-Forwarded-Uri", "")
        method = request.headers.get("X-Forwarded-Method", "")
        if not uri or len(uri.split("/")) < 4 or not method:
            return _error(500, "internal error", request_id)
        if claims.get("jti") in self.revoked:
            return _error(401, "unauthorized", request_id)
        roles = claims.get(ROLE_CLAIM)
        admin = isinstance(roles, list) and "admin" in roles
        if not admin and method != "GET":
            return _error(403, "unauthorized", request_id)
        return Response(status=200, headers={"X-MEN-RequestID": request_id})

    def forwarded(self) -> list[tuple[str, str]]:
        """The (method, URI) pairs useradm was asked about, in order."""
        with self._lock:
            return [(c.get("x-forwarded-method", ""), c.get("x-forwarded-uri", "")) for c in self.calls]


def _token(request: Request) -> str | None:
    authorization = request.headers.get("Authorization")
    if authorization:
        scheme, _, token = authorization.partition(" ")
        return token.strip() if scheme.lower() == "bearer" and token.strip() else None
    return request.cookies.get("JWT") or None


def _error(status: int, message: str, request_id: str) -> Response:
    body = json.dumps({"error": message, "request_id": request_id})
    return Response(body, status=status, content_type="application/json; charset=utf-8")
