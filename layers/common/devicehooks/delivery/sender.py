"""The HTTP side of a delivery: one POST, guarded, pooled, bounded in time and size, never redirected.

The HTTP is urllib3's (2.x): its pool manager and connection pools, its connections (http.client's
request writer and response parser underneath), its URL parser, TLS set-up and content decoders.
This module adds what delivering webhooks to URLs chosen by tenants needs on top, through urllib3's
extension points (pool and connection subclasses, ``SSLContext.sslsocket_class``) and two private
hooks no public one replaces: urllib3's ``HTTPConnection._new_conn`` (a connection's socket) and
http.client's ``HTTPResponse._read_status`` (a status line). urllib3 is pinned to one version and
``tests/unit/test_library_guards.py`` fails, naming the hook, when either moves or changes shape.

* **The SSRF guard at connect time.** urllib3 opens sockets in ``HTTPConnection._new_conn``; the
  connection classes here override it. A new connection resolves the host it was made for (its
  pool's: the URL parsed once by ``parse_url``, IDNA-encoded, a trailing dot kept, which the
  connection's ``host`` drops) with :meth:`DestinationGuard.resolve`, checks every address with
  :meth:`DestinationGuard.check_addresses` (one refused address refuses them all: the
  :class:`BlockedDestination` becomes a ``blocked`` result), then connects to exactly those
  addresses, the next one when one refuses. TLS stays urllib3's: the certificate is verified
  against the URL's host name, which is also the SNI. So a name that resolves to a private address
  at delivery time (DNS rebinding) is refused. A PoolManager never reads proxy variables from the
  environment, which would hide the real destination from the guard.
* **One deadline for the whole attempt.** ``send`` puts ``now + timeout`` in a context variable
  (one value per thread: the dispatcher calls ``send`` from many). Every socket a connection uses
  is a ``_DeadlineSocket``, or once wrapped for TLS a ``_DeadlineSSLSocket`` (the TLS context's
  ``sslsocket_class``); before each connect, send, receive and handshake step it sets its timeout to
  the time left, and fails at once when none is. A peer dripping its status line or its body one
  byte at a time therefore cannot stretch the attempt, as it could with a per-read timeout, which
  restarts with every byte. getaddrinfo cannot be interrupted: a name is resolved in a small
  executor owned by the sender (one lookup per name in flight, however many deliveries wait for
  it), and ``send`` stops waiting at the deadline; a stuck lookup holds one executor thread, never a
  delivery.
* **Bounded responses.** The status and headers are http.client's (interim 1xx responses skipped);
  of the body, at most ``MAX_BODY_READ + 1`` bytes are read off the wire and at most that many
  decoded (gzip and deflate, the only codings asked for, with urllib3's decoders and their output
  bound), so neither a large body nor a compression bomb costs memory. A connection goes back to the
  pool only when its body was read to the end; otherwise it is closed, never drained.
* **Nothing else.** No redirects (a 3xx is the result), no retries, no cookies, no proxies, no
  credentials but the URL's own user info (Basic, as Go's net/http and requests send it).

Certificates are verified against the system trust store (on Lambda, Amazon Linux's CA bundle,
which AWS updates with the runtime): no CA package has to ship with the layer, and OpenSSL's
``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` variables can point elsewhere (the tests use them).
"""

from __future__ import annotations

import functools
import http.client
import os
import socket
import ssl
import sys
import threading
import time
import zlib
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from contextvars import ContextVar
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any, Protocol

from urllib3 import BaseHTTPResponse, HTTPConnectionPool, HTTPSConnectionPool, PoolManager
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.exceptions import ConnectTimeoutError, HTTPError, NewConnectionError, ProtocolError, ReadTimeoutError
from urllib3.exceptions import SSLError as TLSError
from urllib3.response import DeflateDecoder, GzipDecoder
from urllib3.util import SKIP_HEADER, create_urllib3_context

from devicehooks.errors import BlockedDestination
from devicehooks.security.ssrf import CONNECT_MESSAGE, DestinationGuard, IPAddress, parse_numeric_host
from devicehooks.security.urls import InvalidURL, Target, parse_target

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer, WriteableBuffer

ACCEPT_ENCODING = "gzip, deflate"  # what _DECODERS decodes
SNIPPET_BYTES = 256
MAX_BODY_READ = 64 * 1024  # of a response body, read at most this much (and one byte to tell there is more)
_READ_LIMIT = MAX_BODY_READ + 1
_READ_CHUNK = 16 * 1024
_DNS_WORKERS = 8  # lookups running at once (one per name); one stuck past its deadline holds one of them
# headers the sender writes itself: the body's framing, the codings it can decode, the URL's host
_OWN_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "accept-encoding"})


class _Decoder(Protocol):
    """urllib3's decoders (their ``max_length`` bounds the output since urllib3 2.6)."""

    def decompress(self, data: bytes, max_length: int = -1) -> bytes: ...

    def flush(self) -> bytes: ...


_DECODERS: dict[str, Callable[[], _Decoder]] = {
    "gzip": GzipDecoder,
    "x-gzip": GzipDecoder,
    "deflate": DeflateDecoder,
}


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
        """The webhook answered 2xx (interim 1xx answers are skipped: never a result)."""
        return self.status_code is not None and self.status_code < 300


class Sender(Protocol):
    def send(self, request: WebhookRequest) -> DeliveryResult:
        """POST ``request``; never raises for network or HTTP failures (they are results)."""


# ------------------------------------------------------------------------------------ the attempt's deadline
@dataclass(frozen=True, slots=True)
class _Attempt:
    sender: HttpSender
    deadline: float  # time.monotonic() past which nothing of this attempt may wait


_ATTEMPT: ContextVar[_Attempt | None] = ContextVar("devicehooks_delivery_attempt", default=None)


def _arm(sock: socket.socket) -> None:
    """Let ``sock``'s next blocking step wait only for what is left of the attempt."""
    attempt = _ATTEMPT.get()
    if attempt is None:
        return
    remaining = attempt.deadline - time.monotonic()
    if remaining <= 0:
        raise TimeoutError("timed out")
    sock.settimeout(remaining)


class _DeadlineSocket(socket.socket):
    """A TCP socket whose connect, sends and receives end at the attempt's deadline (http.client
    reads through ``recv_into``, writes through ``sendall``)."""

    __slots__ = ()

    def connect(self, address: Any) -> None:
        _arm(self)
        super().connect(address)

    def send(self, data: ReadableBuffer, flags: int = 0) -> int:
        _arm(self)
        return super().send(data, flags)

    def sendall(self, data: ReadableBuffer, flags: int = 0) -> None:
        _arm(self)
        super().sendall(data, flags)

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        _arm(self)
        return super().recv(bufsize, flags)

    def recv_into(self, buffer: WriteableBuffer, nbytes: int = 0, flags: int = 0) -> int:
        _arm(self)
        return super().recv_into(buffer, nbytes, flags)


class _DeadlineSSLSocket(ssl.SSLSocket):
    """The same for TLS: the handshake, every record read (``recv_into`` and ``recv`` go through
    ``read``) and every write (``sendall`` goes through ``send``)."""

    def do_handshake(self, block: bool = False) -> None:
        _arm(self)
        super().do_handshake(block)

    def read(self, len: int = 1024, buffer: WriteableBuffer | None = None) -> bytes:
        _arm(self)
        return super().read(len, buffer)

    def send(self, data: ReadableBuffer, flags: int = 0) -> int:
        _arm(self)
        return super().send(data, flags)


@functools.lru_cache(maxsize=4)
def _tls_context(cafile: str | None, capath: str | None) -> ssl.SSLContext:
    """urllib3's client context (TLS 1.2+, certificates and host names verified) over the system
    trust store. One per process: reading the store takes ~20 ms. The arguments are OpenSSL's
    variables, which the store depends on."""
    context = create_urllib3_context(cert_reqs=ssl.CERT_REQUIRED)
    context.load_default_certs()  # the system store, or SSL_CERT_FILE / SSL_CERT_DIR
    context.sslsocket_class = _DeadlineSSLSocket
    return context


# ------------------------------------------------------------------------------------ connections
class _DialFailed(NewConnectionError):
    """Resolving or connecting failed; ``description`` is the result's error."""

    def __init__(self, conn: HTTPConnection, description: str) -> None:
        super().__init__(conn, description)
        self.description = description


def _dial(conn: HTTPConnection, host: str) -> socket.socket:
    """What urllib3's ``_new_conn`` does, guarded: resolve ``host``, check every address, connect to one."""
    attempt = _ATTEMPT.get()
    if attempt is None:  # fail closed: no connection is ever made outside a guarded send
        raise RuntimeError("HttpSender connections are only opened within send()")
    port = conn.port or conn.default_port
    sys.audit("http.client.connect", conn, conn.host, port)
    addresses = attempt.sender._resolve(conn, host, port, attempt.deadline)
    attempt.sender.guard.check_addresses(addresses, CONNECT_MESSAGE)  # BlockedDestination: a blocked result
    last: OSError | None = None
    for address in addresses:
        try:
            sock = _DeadlineSocket(socket.AF_INET6 if address.version == 6 else socket.AF_INET, socket.SOCK_STREAM)
        except OSError as exc:  # no IPv6 here, say
            last = exc
            continue
        try:
            for option in conn.socket_options or ():
                sock.setsockopt(*option)
            sock.connect((str(address), port))
        except TimeoutError:
            sock.close()
            raise _DialFailed(conn, "connect timeout") from None  # the deadline is spent: no next address
        except OSError as exc:
            sock.close()
            last = exc
            continue
        return sock
    raise _DialFailed(conn, "connection refused" if isinstance(last, ConnectionRefusedError) else "connection failed")


class _FinalResponse(http.client.HTTPResponse):
    """http.client's response, with every interim 1xx skipped (http.client skips 100 Continue only).
    A 101 too: the sender never asks to switch protocols. ``_read_status`` is private, but the only
    step between a status line and its headers that a subclass can take over."""

    def _read_status(self) -> tuple[str, int, str]:
        while True:
            version, status, reason = super()._read_status()  # type: ignore[misc]  # not in typeshed
            if status >= 200:
                return version, status, reason
            http.client.parse_headers(self.fp)  # the interim response's headers, within http.client's limits


# Each connection keeps the host its pool made it for: ``host`` drops a trailing dot, which the
# lookup needs (without it, the resolver's search domains apply).
class _GuardedHTTPConnection(HTTPConnection):
    response_class = _FinalResponse

    def __init__(self, host: str, port: int | None = None, **options: Any) -> None:
        super().__init__(host, port, **options)
        self.dial_host = host

    def _new_conn(self) -> socket.socket:
        return _dial(self, self.dial_host)


class _GuardedHTTPSConnection(HTTPSConnection):
    response_class = _FinalResponse

    def __init__(self, host: str, port: int | None = None, **options: Any) -> None:
        super().__init__(host, port, **options)
        self.dial_host = host

    def _new_conn(self) -> socket.socket:
        return _dial(self, self.dial_host)


class _HTTPPool(HTTPConnectionPool):
    ConnectionCls = _GuardedHTTPConnection


class _HTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _GuardedHTTPSConnection


# ------------------------------------------------------------------------------------ responses
def _read_body(response: BaseHTTPResponse) -> bytes:
    """The body's first ``MAX_BODY_READ + 1`` decoded bytes at most, reading at most that many off
    the wire (a decoder may turn much input into little output: padding after a gzip member, say).
    The connection goes back to the pool if the body was read to its end, and is closed otherwise."""
    make = _DECODERS.get(response.headers.get("content-encoding", "").strip().lower())
    decoder = make() if make is not None else None
    parts: list[bytes] = []
    decoded = wire = 0
    complete = False
    try:
        while decoded < _READ_LIMIT and wire < _READ_LIMIT:
            data = response.read(min(_READ_CHUNK, _READ_LIMIT - wire), decode_content=False)
            if not data:
                complete = True
                if decoder is not None:
                    data = decoder.decompress(b"", max_length=_READ_LIMIT - decoded) + decoder.flush()
                    parts.append(data[: _READ_LIMIT - decoded])
                break
            wire += len(data)
            if decoder is not None:
                data = decoder.decompress(data, max_length=_READ_LIMIT - decoded)
            parts.append(data)
            decoded += len(data)
    except (HTTPError, zlib.error, ValueError):  # cut short, too slow, undecodable, a negative
        complete = False  # chunk size (http.client's ValueError): the status stands all the same
    finally:
        if not complete:
            response.close()  # and its connection: the rest of the body is never read
        response.release_conn()
    return b"".join(parts)


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def _describe(exc: HTTPError) -> str:
    """A short, secret-free description of a failure before any response arrived."""
    if isinstance(exc, _DialFailed):
        return exc.description
    if isinstance(exc, TLSError):
        return "tls handshake failed"
    if isinstance(exc, ConnectTimeoutError):
        return "connect timeout"
    if isinstance(exc, ReadTimeoutError) or (
        isinstance(exc, ProtocolError) and any(isinstance(arg, TimeoutError) for arg in exc.args)
    ):
        return "timeout waiting for the response"  # sending or waiting: the peer did not keep up
    return "connection failed"  # refused mid-way, reset, closed early, or not an HTTP/1.x response


class HttpSender:
    """:class:`Sender` over urllib3 keep-alive pools, every connection dialled through the guard.

    ``timeout`` bounds each ``send`` end to end; ``pool_size`` is both the number of idle
    connections kept per (scheme, host, port) and the number of such pools kept. Thread-safe."""

    def __init__(self, guard: DestinationGuard, timeout: float = 10.0, pool_size: int = 64) -> None:
        self.guard = guard
        self.timeout = timeout
        self._pools = PoolManager(
            num_pools=pool_size,
            maxsize=pool_size,
            block=False,  # never wait for a free connection: open one more, keep pool_size of them
            retries=False,
            ssl_context=_tls_context(os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR")),
        )
        # a PoolManager's own table of pool classes, there to be replaced per instance (its source
        # says so; the API reference does not list it: test_library_guards.py checks it is read)
        self._pools.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}
        self._dns = ThreadPoolExecutor(max_workers=_DNS_WORKERS, thread_name_prefix="devicehooks-dns")
        self._lookups: dict[tuple[str, int], Future[list[IPAddress]]] = {}
        self._lookups_lock = threading.Lock()

    def send(self, request: WebhookRequest) -> DeliveryResult:
        """POST ``request`` once. Network, TLS, DNS, HTTP and URL failures are results, never
        exceptions; a header http.client refuses (a caller's bug) raises its ``ValueError``."""
        started = time.perf_counter()
        try:
            target = parse_target(request.url)
        except InvalidURL as exc:
            return DeliveryResult(None, f"invalid url: {exc.reason}", _ms(started))
        headers = _headers(target, request.headers)
        token = _ATTEMPT.set(_Attempt(self, time.monotonic() + self.timeout))
        try:
            pool = self._pools.connection_from_host(target.host, target.port, target.scheme)
            try:
                response = pool.urlopen(
                    "POST",
                    target.request_uri,
                    body=request.body,
                    headers=headers,
                    retries=False,
                    redirect=False,
                    assert_same_host=False,
                    timeout=self.timeout,  # each step's own limit; the deadline is the tighter one
                    preload_content=False,
                    decode_content=False,  # _read_body decodes, within its bounds
                    release_conn=False,  # _read_body decides: back to the pool, or closed
                )
            except BlockedDestination as exc:
                return DeliveryResult(None, exc.message, _ms(started), blocked=True)
            except HTTPError as exc:
                return DeliveryResult(None, _describe(exc), _ms(started))
            body = _read_body(response)
        finally:
            _ATTEMPT.reset(token)
        status = response.status
        error = None if status < 300 else f"unexpected status code from webhook: {status}"
        retry_after = _retry_after(response.headers.get("retry-after")) if status in (429, 503) else None
        snippet = body[:SNIPPET_BYTES].decode("utf-8", "replace")
        return DeliveryResult(status, error, _ms(started), snippet, retry_after)

    def _resolve(self, conn: HTTPConnection, host: str, port: int, deadline: float) -> list[IPAddress]:
        """``guard.resolve(host, port)``, waited for until ``deadline`` at most."""
        if parse_numeric_host(host) is not None:
            return self.guard.resolve(host, port)  # an address: nothing to look up
        key = (host, port)
        with self._lookups_lock:
            lookup = self._lookups.get(key)
            started = lookup is None
            if lookup is None:
                lookup = self._lookups[key] = self._dns.submit(self.guard.resolve, host, port)
        if started:  # outside the lock: a lookup already done calls back at once, in this thread
            lookup.add_done_callback(functools.partial(self._forget, key))
        try:
            return lookup.result(timeout=max(0.0, deadline - time.monotonic()))
        except (FutureTimeout, BlockedDestination, OSError, ValueError):
            raise _DialFailed(conn, "dns lookup failed") from None

    def _forget(self, key: tuple[str, int], lookup: Future[list[IPAddress]]) -> None:
        with self._lookups_lock:
            if self._lookups.get(key) is lookup:
                del self._lookups[key]


def _headers(target: Target, given: Mapping[str, str]) -> dict[str, str]:
    """The request's headers (Host and Content-Length are urllib3's): the codings the sender
    decodes, ``given`` but for the ones the sender writes, no User-Agent unless given, and the
    URL's credentials."""
    headers = {"Accept-Encoding": ACCEPT_ENCODING}
    agent = False
    for name, value in given.items():
        lower = name.lower()
        if lower in _OWN_HEADERS or (lower == "authorization" and target.authorization is not None):
            continue
        agent = agent or lower == "user-agent"
        headers[name] = value
    if not agent:
        headers["User-Agent"] = SKIP_HEADER  # urllib3 would add its own
    if target.authorization is not None:
        headers["Authorization"] = target.authorization
    return headers


def _ms(started: float) -> int:
    return int((time.perf_counter() - started) * 1000)
