"""Mender's useradm as the judge of who may do what (Enterprise RBAC), asked as Mender's gateway asks.

Mender's gateway (Traefik, ``compose/config/traefik/middlewares.yaml`` in mender-server: the
``userauth`` forwardAuth middleware) sends every management request's ``Authorization`` header to
``/api/internal/v1/useradm/auth/verify`` with the original method and URI in
``X-Forwarded-Method`` and ``X-Forwarded-Uri``. useradm (``services/useradm/api/http/
api_useradm.go``: ``authTokenExtractor``, ``AuthVerifyHandler``) answers 200 when the user may,
401 for a token it does not accept (revoked, unknown key), 403 ``{"error": "unauthorized"}`` when
its authorizer (Enterprise RBAC) refuses the action, 500 when it fails. This module asks the same
question, keeps definite answers for a short while, and says "unavailable" for everything else:
the caller decides what an unavailable judge means (a write is refused, a read goes on).

Imported only when a deployment names a useradm, so that the authorizer's cold start in the
other modes does not pay for urllib3.
"""

from __future__ import annotations

import hashlib
import string
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING
from urllib.parse import quote

from urllib3 import PoolManager, Timeout
from urllib3.exceptions import HTTPError

from devicehooks.errors import DevicehooksError, Forbidden, ServiceUnavailable, Unauthorized
from devicehooks.jsonenc import loads
from devicehooks.observability import logger

if TYPE_CHECKING:
    from urllib3 import BaseHTTPResponse

VERIFY_PATH = "/api/internal/v1/useradm/auth/verify"
REFUSED = "unauthorized"  # useradm's message when its authorizer refuses (authz.ErrAuthzUnauthorized)
UNAVAILABLE = "authorization service unavailable"
CACHE_SECONDS = 30.0
CONNECT_SECONDS = 1.0
TOTAL_SECONDS = 2.0  # the authorizer has 5 s; the gateway waits for it
MAX_ENTRIES = 4096
MAX_MESSAGE = 256

Verdict = DevicehooksError | None  # None: allowed


class UseradmVerifier:
    """Asks useradm whether a token may make a request; remembers definite answers briefly."""

    def __init__(
        self,
        url: str,
        cache_seconds: float = CACHE_SECONDS,
        pool: PoolManager | None = None,
        clock: Callable[[], float] = time.monotonic,
        max_entries: int = MAX_ENTRIES,
        timeout: float = TOTAL_SECONDS,
    ) -> None:
        self._url = url
        self._ttl = cache_seconds
        # No retries, redirects or environment proxies (PoolManager reads none); certificates are
        # checked against the system trust store
        self._pool = pool or PoolManager(num_pools=2, maxsize=4, retries=False)
        self._timeout = Timeout(total=timeout, connect=min(CONNECT_SECONDS, timeout))
        self._clock = clock
        self._max = max_entries
        self._cache: dict[tuple[str, str, str], tuple[float, Verdict]] = {}
        self._lock = threading.Lock()

    def verdict(self, token: str, method: str, uri: str, host: str = "", request_id: str = "") -> Verdict:
        """None when useradm lets the token make ``method uri``; otherwise the error to answer with:
        :class:`Unauthorized` / :class:`Forbidden` from useradm, :class:`ServiceUnavailable` when
        useradm could not be asked or answered something else."""
        # the token is kept only as a hash, never as a key a memory dump would show
        key = (hashlib.sha256(token.encode()).hexdigest(), method, uri)
        now = self._clock()
        with self._lock:
            cached = self._cache.get(key)
        if cached is not None and cached[0] > now:
            return cached[1]
        verdict = self._ask(token, method, uri, host, request_id)
        if not isinstance(verdict, ServiceUnavailable):  # an outage is never remembered
            self._remember(key, now + self._ttl, verdict)
        return verdict

    def _remember(self, key: tuple[str, str, str], expires: float, verdict: Verdict) -> None:
        with self._lock:
            self._cache.pop(key, None)
            self._cache[key] = (expires, verdict)
            while len(self._cache) > self._max:  # oldest first: dicts keep insertion order
                del self._cache[next(iter(self._cache))]

    def _ask(self, token: str, method: str, uri: str, host: str, request_id: str) -> Verdict:
        headers = {
            "Authorization": f"Bearer {token}",
            "X-Forwarded-Method": method,
            # what reached the API is already percent-encoded; anything else is encoded, not refused
            "X-Forwarded-Uri": quote(uri, safe=string.punctuation),
            "X-Forwarded-Proto": "https",
        }
        if host and host.isascii() and host.isprintable():
            headers["X-Forwarded-Host"] = host
        if request_id:
            headers["X-MEN-RequestID"] = request_id
        started = time.monotonic()
        try:
            # GET, as Traefik's forwardAuth sends it; useradm routes GET and POST alike (router.go)
            response = self._pool.request(
                "GET", self._url, headers=headers, timeout=self._timeout, retries=False, redirect=False
            )
        except (HTTPError, OSError, ValueError) as exc:  # ValueError: a header http.client will not send
            logger.warning(
                "useradm could not be asked",
                extra={"reason": type(exc).__name__, "method": method, "took_ms": _ms(started)},
            )
            return ServiceUnavailable(UNAVAILABLE)
        status = response.status
        if 200 <= status < 300:
            return None
        if status == 401:
            return Unauthorized(_message(response))
        if status == 403:
            return Forbidden(_message(response))
        logger.warning(
            "useradm answered neither yes nor no", extra={"status": status, "method": method, "took_ms": _ms(started)}
        )
        return ServiceUnavailable(UNAVAILABLE)


def _ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


def _message(response: BaseHTTPResponse) -> str:
    """useradm's ``error`` message, as the gateway would relay it (short, printable), or its default."""
    try:
        body = loads(response.data[:4096])
    except ValueError:
        return REFUSED
    message = body.get("error") if isinstance(body, dict) else None
    if isinstance(message, str) and 0 < len(message) <= MAX_MESSAGE and message.isprintable():
        return message
    return REFUSED
