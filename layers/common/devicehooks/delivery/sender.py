"""The HTTP side of a delivery: one POST, guarded, pooled, bounded in time, never redirected.

Every new connection resolves the destination itself and checks each address with the
:class:`DestinationGuard` before dialling it, then dials exactly the address it checked (TLS
still verifies the certificate against the URL's host name). So a destination that passed the
check when it was stored but now resolves to a private address (DNS rebinding) is refused.
Environment proxies are ignored: they would hide the real destination from the guard.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass
from typing import Any, Protocol

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError

from devicehooks.errors import BlockedDestination
from devicehooks.ssrf import CONNECT_MESSAGE, DestinationGuard

SNIPPET_BYTES = 256
MAX_BODY_READ = 64 * 1024  # read at most this much of a response, so the connection can be reused


@dataclass(frozen=True)
class WebhookRequest:
    url: str
    body: bytes
    headers: dict[str, str]


@dataclass(frozen=True)
class DeliveryResult:
    """What came of one POST. ``status_code`` is ``None`` when no response arrived."""

    status_code: int | None
    error: str | None
    duration_ms: int
    response_body: str | None = None
    retry_after: float | None = None
    blocked: bool = False

    @property
    def ok(self) -> bool:
        return self.status_code is not None and self.status_code < 300


class Sender(Protocol):
    def send(self, request: WebhookRequest) -> DeliveryResult:
        """POST ``request``; never raises for network or HTTP failures (they are results)."""


class _GuardedConnect:
    """Mixin for urllib3 connections: resolve, check every address, dial a checked one."""

    guard: DestinationGuard
    _dns_host: str
    port: int
    timeout: Any
    source_address: Any
    socket_options: Any

    def _new_conn(self) -> socket.socket:
        try:
            addresses = self.guard.resolve(self._dns_host, self.port)
        except BlockedDestination as exc:
            raise NameResolutionError(self._dns_host, self, socket.gaierror(exc.message)) from None  # type: ignore[arg-type]
        self.guard.check_addresses(addresses, CONNECT_MESSAGE)
        last: OSError | None = None
        for address in addresses:
            family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_STREAM)
            try:
                for option in self.socket_options or ():
                    sock.setsockopt(*option)
                if isinstance(self.timeout, int | float):
                    sock.settimeout(self.timeout)
                sock.connect((str(address), self.port))
                return sock
            except TimeoutError:
                sock.close()
                raise ConnectTimeoutError(self, f"connection to {self._dns_host} timed out") from None
            except OSError as exc:
                sock.close()
                last = exc
        raise NewConnectionError(self, f"failed to establish a new connection: {last}")  # type: ignore[arg-type]


def _adapter(guard: DestinationGuard, pool_size: int) -> HTTPAdapter:
    http_conn = type("GuardedHTTPConnection", (_GuardedConnect, HTTPConnection), {"guard": guard})
    https_conn = type("GuardedHTTPSConnection", (_GuardedConnect, HTTPSConnection), {"guard": guard})
    http_pool = type("GuardedHTTPConnectionPool", (HTTPConnectionPool,), {"ConnectionCls": http_conn})
    https_pool = type("GuardedHTTPSConnectionPool", (HTTPSConnectionPool,), {"ConnectionCls": https_conn})
    adapter = HTTPAdapter(pool_connections=pool_size, pool_maxsize=pool_size, max_retries=0, pool_block=False)
    adapter.poolmanager.pool_classes_by_scheme = {"http": http_pool, "https": https_pool}
    return adapter


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


def _describe(exc: BaseException) -> str:
    """A short, secret-free description of a transport failure."""
    text = str(exc)
    for marker in ("NameResolutionError", "Failed to resolve", "no such host"):
        if marker in text:
            return "dns lookup failed"
    if isinstance(exc, requests.exceptions.SSLError):
        return "tls handshake failed"
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return "connect timeout"
    if isinstance(exc, requests.exceptions.ReadTimeout | requests.exceptions.Timeout):
        return "timeout waiting for the response"
    if isinstance(exc, requests.exceptions.ConnectionError):
        if "refused" in text.lower():
            return "connection refused"
        return "connection failed"
    return type(exc).__name__


class HttpSender:
    """:class:`Sender` over a pooled keep-alive ``requests.Session`` with the guarded adapter."""

    def __init__(self, guard: DestinationGuard, timeout: float = 10.0, pool_size: int = 64) -> None:
        self.timeout = timeout
        session = requests.Session()
        session.trust_env = False  # no environment proxies: they would bypass the guard
        adapter = _adapter(guard, pool_size)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        self.session = session

    def send(self, request: WebhookRequest) -> DeliveryResult:
        started = time.perf_counter()
        try:
            response = self.session.post(
                request.url,
                data=request.body,
                headers=request.headers,
                timeout=(self.timeout, self.timeout),
                allow_redirects=False,
                stream=True,
            )
        except BlockedDestination as exc:
            return DeliveryResult(None, exc.message, _ms(started), blocked=True)
        except requests.RequestException as exc:
            return DeliveryResult(None, _describe(exc), _ms(started))
        try:
            head = response.raw.read(MAX_BODY_READ + 1, decode_content=True) or b""
        except Exception:  # noqa: BLE001 - a broken body does not change the status already received
            head = b""
        if len(head) > MAX_BODY_READ:
            response.close()  # a huge body: drop the connection rather than drain it
        else:
            response.raw.release_conn()
        status = response.status_code
        snippet = head[:SNIPPET_BYTES].decode("utf-8", "replace")
        error = None if status < 300 else f"unexpected status code from webhook: {status}"
        retry_after = _retry_after(response.headers.get("Retry-After")) if status in (429, 503) else None
        return DeliveryResult(status, error, _ms(started), snippet, retry_after)


def _ms(started: float) -> int:
    return int((time.perf_counter() - started) * 1000)
