"""The HTTP side of a delivery: one POST, guarded, pooled, bounded in time, never redirected.

Every new connection resolves the destination itself and checks each address with the
:class:`DestinationGuard` before dialling it, then dials exactly the address it checked (TLS
still verifies the certificate against the URL's host name). So a destination that passed the
check when it was stored but now resolves to a private address (DNS rebinding) is refused.
Environment proxies are ignored: they would hide the real destination from the guard.

The client is a small HTTP/1.1 one on plain sockets, so a delivery costs the dispatcher little
CPU (it runs many side by side). It sends exactly what a ``requests`` session sends (the same
request line, headers and body: URLs are prepared by ``requests`` itself, once per URL) and
reads responses by ``http.client``'s rules (status line, 100 Continue, header limits, chunked,
Content-Length or close-delimited bodies, keep-alive); the body is decoded as ``urllib3`` does
(gzip, deflate). Idle connections are kept per (scheme, host, port), the most recently used
reused first, and a connection the peer closed is never reused.
"""

from __future__ import annotations

import errno
import re
import select
import socket
import ssl
import threading
import time
import zlib
from collections import OrderedDict
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Protocol
from urllib.parse import urlsplit

import requests
from requests.models import PreparedRequest
from requests.utils import DEFAULT_CA_BUNDLE_PATH, check_header_validity, default_headers, extract_zipped_paths
from urllib3.util.ssl_ import ALPN_PROTOCOLS, create_urllib3_context

from devicehooks.errors import BlockedDestination
from devicehooks.security.ssrf import CONNECT_MESSAGE, DestinationGuard

# Only gzip and deflate are decoded (the request says so in Accept-Encoding): with zlib, whose
# output is bounded, so a small compressed body cannot expand into a large one in memory.
CONTENT_DECODERS = ("gzip", "x-gzip", "deflate")
ACCEPT_ENCODING = "gzip, deflate"

SNIPPET_BYTES = 256
MAX_BODY_READ = 64 * 1024  # read at most this much of a response, so the connection can be reused
MAX_LINE = 65536  # http.client's limits on a status, header or chunk-size line
MAX_HEADERS = 100  # and on the number of response headers
_HEADER_LINE = re.compile(r"^(From |[\041-\071\073-\176]*:|[\t ])")  # the email parser's header test
_RAW_CHUNK = 16 * 1024
_RECV_BYTES = 16 * 1024


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


class _Failed(Exception):
    """A transport failure, already described (the same words ``requests``' exceptions gave)."""

    def __init__(self, description: str) -> None:
        super().__init__(description)
        self.description = description


class _BadResponse(Exception):
    """The peer's bytes are not an HTTP/1.x response (http.client's BadStatusLine and friends)."""


@dataclass(frozen=True)
class _Target:
    """What a URL means for the wire, computed once per URL."""

    key: tuple[str, str, int]  # (scheme, host, port): the pool of idle connections
    https: bool
    dns_host: str  # what is resolved (a trailing dot kept)
    tls_host: str  # the TLS server name (SNI, certificate check)
    port: int
    request_line: str  # "POST <target> HTTP/1.1\r\n"
    host: str  # the Host header's value
    authorization: str | None  # Basic credentials from the URL's user info, as requests adds them


@lru_cache(maxsize=4096)
def _target(url: str) -> _Target:
    """Prepare ``url`` as requests does (IDNA host, requoted path, user info as Basic auth)."""
    prepared = PreparedRequest()
    prepared.prepare(method="POST", url=url)  # raises requests' own exceptions (InvalidURL, ...)
    parts = urlsplit(str(prepared.url))
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise requests.exceptions.InvalidSchema(f"No connection adapters were found for {str(prepared.url)!r}")
    default_port = 443 if scheme == "https" else 80
    port = parts.port or default_port
    dns_host = parts.hostname or ""
    host = dns_host.rstrip(".")  # urllib3 drops a trailing dot everywhere but in DNS lookups
    try:
        host_header = host.encode("ascii").decode("ascii")
    except UnicodeEncodeError:  # pragma: no cover - requests already IDNA-encoded the name
        host_header = host.encode("idna").decode("ascii")
    if "%" in host_header:
        host_header = host_header[: host_header.find("%")]
    if ":" in host:
        host_header = f"[{host_header}]"
    if port != default_port:
        host_header = f"{host_header}:{port}"
    tls_host = host.strip("[]")
    if "%" in tls_host:
        tls_host = tls_host[: tls_host.rfind("%")]
    path = prepared.path_url
    try:
        from urllib3.util.url import _encode_target

        path = _encode_target(path)
    except ImportError:  # pragma: no cover
        pass
    return _Target(
        key=(scheme, dns_host, port),
        https=scheme == "https",
        dns_host=dns_host,
        tls_host=tls_host,
        port=port,
        request_line=f"POST {path} HTTP/1.1\r\n",
        host=host_header,
        authorization=prepared.headers.get("Authorization"),
    )


class _Reader:
    """Buffered reads from a socket, kept with its connection: what is left unread is visible."""

    __slots__ = ("sock", "buffer", "position", "deadline")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""
        self.position = 0
        self.deadline: float | None = None  # time.monotonic() past which no read may wait

    def _fill(self) -> bool:
        if self.deadline is not None:  # a peer trickling bytes in must not stretch each wait anew
            remaining = self.deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("timed out")
            self.sock.settimeout(remaining)
        data = self.sock.recv(_RECV_BYTES)
        if not data:
            return False
        self.buffer = self.buffer[self.position :] + data if self.position < len(self.buffer) else data
        self.position = 0
        return True

    def readline(self, limit: int) -> bytes:
        """Up to and including the next LF, at most ``limit`` bytes; less at the end of the stream."""
        while True:
            start = self.position
            end = self.buffer.find(b"\n", start, start + limit)
            if end >= 0:
                self.position = end + 1
                return self.buffer[start : end + 1]
            if len(self.buffer) - start >= limit or not self._fill():
                line = self.buffer[start : start + limit]
                self.position = start + len(line)
                return line

    def read(self, size: int) -> bytes:
        """``size`` bytes, or fewer at the end of the stream."""
        while len(self.buffer) - self.position < size and self._fill():
            pass
        start = self.position
        data = self.buffer[start : start + size]
        self.position = start + len(data)
        return data

    @property
    def pending(self) -> bool:
        return self.position < len(self.buffer)


class _Connection:
    __slots__ = ("sock", "reader")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.reader = _Reader(sock)

    def dropped(self) -> bool:
        """Readable while idle: the peer closed it (or sent something unasked). urllib3's test."""
        try:
            poller = select.poll()
            poller.register(self.sock, select.POLLIN)
            return bool(poller.poll(0))
        except (OSError, ValueError):
            return True

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:  # pragma: no cover
            pass


class _Pools:
    """Idle keep-alive connections: at most ``per_host`` per (scheme, host, port), LIFO, and at most
    ``hosts`` such pools (the least recently used one is closed), as requests' adapter keeps them."""

    def __init__(self, hosts: int, per_host: int) -> None:
        self._hosts = hosts
        self._per_host = per_host
        self._idle: OrderedDict[tuple[str, str, int], list[_Connection]] = OrderedDict()
        self._lock = threading.Lock()

    def take(self, key: tuple[str, str, int]) -> _Connection | None:
        evicted: list[_Connection] = []
        with self._lock:
            idle = self._idle.get(key)
            if idle is None:
                self._idle[key] = idle = []
                while len(self._idle) > self._hosts:
                    evicted += self._idle.popitem(last=False)[1]
            else:
                self._idle.move_to_end(key)
            found = idle.pop() if idle else None
        for connection in evicted:
            connection.close()
        while found is not None and found.dropped():
            found.close()
            with self._lock:
                found = idle.pop() if idle else None
        return found

    def give_back(self, key: tuple[str, str, int], connection: _Connection) -> None:
        with self._lock:
            idle = self._idle.get(key)
            if idle is not None and len(idle) < self._per_host:
                idle.append(connection)
                return
        connection.close()  # pool full, or evicted meanwhile


@dataclass
class _Response:
    status: int
    headers: dict[str, str]  # lower-case name -> value; repeated headers joined with ", " (urllib3)
    framing: dict[str, str]  # lower-case name -> first value (what http.client frames the body by)
    http11: bool


def _read_line(reader: Any, what: str) -> bytes:
    line: bytes = reader.readline(MAX_LINE + 1)
    if len(line) > MAX_LINE:
        raise _BadResponse(f"got more than {MAX_LINE} bytes when reading {what}")
    return line


def _read_header_lines(reader: Any) -> list[bytes]:
    lines: list[bytes] = []
    while True:
        line = _read_line(reader, "header line")
        if line in (b"\r\n", b"\n", b""):
            return lines
        lines.append(line)
        if len(lines) > MAX_HEADERS:
            raise _BadResponse(f"got more than {MAX_HEADERS} headers")


def _read_head(reader: Any) -> _Response:
    """Status line and headers, by http.client's rules."""
    while True:
        line = _read_line(reader, "status line")
        if not line:
            raise _BadResponse("Remote end closed connection without response")
        words = str(line, "iso-8859-1").split(None, 2)
        version = words[0] if len(words) >= 2 else ""
        if not version.startswith("HTTP/"):
            raise _BadResponse(f"bad status line {line!r}")
        try:
            status = int(words[1])
        except ValueError:
            raise _BadResponse(f"bad status line {line!r}") from None
        if not 100 <= status <= 999:
            raise _BadResponse(f"bad status line {line!r}")
        if status >= 200:
            break
        _read_header_lines(reader)  # an interim 1xx (100 Continue, 103 Early Hints): then the real one
    if version in ("HTTP/1.0", "HTTP/0.9"):
        http11 = False
    elif version.startswith("HTTP/1."):
        http11 = True
    else:
        raise _BadResponse(f"unknown protocol {version}")
    headers: dict[str, str] = {}
    framing: dict[str, str] = {}
    last = ""
    for raw in _read_header_lines(reader):
        text = str(raw, "iso-8859-1")
        if not _HEADER_LINE.match(text):
            break  # the email parser stops reading headers at the first line that is not one
        if text[0] in " \t":
            if last:  # an obsolete folded line continues the previous header
                framing[last] = framing[last] + " " + text.strip()
                headers[last] = headers[last] + " " + text.strip()
            continue
        name, _, value = text.partition(":")
        last = name.lower()
        value = value.lstrip(" \t").rstrip("\r\n")
        if last in headers:
            headers[last] = f"{headers[last]}, {value}"
        else:
            headers[last] = framing[last] = value
    return _Response(status, headers, framing, http11)


def _will_close(response: _Response) -> bool:
    connection = response.framing.get("connection")
    if response.http11:
        return bool(connection and "close" in connection.lower())
    if response.framing.get("keep-alive"):
        return False
    if connection and "keep-alive" in connection.lower():
        return False
    proxy = response.framing.get("proxy-connection")
    return not (proxy and "keep-alive" in proxy.lower())


class _ZlibDecoder:
    """gzip, or deflate (zlib-wrapped or raw, as servers send both), with bounded output."""

    def __init__(self, mode: str) -> None:
        self._gzip = mode in ("gzip", "x-gzip")
        self._first = True
        self._obj = zlib.decompressobj(16 + zlib.MAX_WBITS if self._gzip else zlib.MAX_WBITS)

    def decompress(self, data: bytes, max_length: int) -> bytes:
        """At most ``max_length`` bytes of output (the rest of the input is dropped)."""
        if self._first and not self._gzip and data:
            self._first = False
            try:
                return self._obj.decompress(data, max_length)
            except zlib.error:  # raw deflate, without the zlib header
                self._obj = zlib.decompressobj(-zlib.MAX_WBITS)
        return self._obj.decompress(data, max_length)

    def flush(self) -> bytes:
        return self._obj.flush()


def _decoder(headers: dict[str, str]) -> _ZlibDecoder | None:
    encoding = headers.get("content-encoding", "").strip().lower()
    return _ZlibDecoder(encoding) if encoding in CONTENT_DECODERS else None


class _RawBody:
    """The response body's bytes as they come (de-chunked), up to what the caller asks for."""

    def __init__(self, reader: Any, response: _Response) -> None:
        self.reader = reader
        encoding = response.framing.get("transfer-encoding")
        self.chunked = bool(encoding and encoding.lower() == "chunked")
        self.length: int | None = None
        declared = response.framing.get("content-length")
        if declared and not self.chunked:
            try:
                self.length = int(declared)
            except ValueError:
                self.length = None
            else:
                if self.length < 0:
                    self.length = None
        if response.status in (204, 304) or 100 <= response.status < 200:
            self.length = 0
        self.will_close = _will_close(response)
        if not self.will_close and not self.chunked and self.length is None:
            self.will_close = True  # the body runs to the end of the connection
        self.chunk_left = 0
        self.done = self.length == 0

    def read(self, limit: int) -> bytes:
        """Up to ``limit`` bytes; ``b""`` at the end of the body."""
        if self.done:
            return b""
        if self.chunked:
            return self._read_chunked(limit)
        want = limit if self.length is None else min(limit, self.length)
        data: bytes = self.reader.read(want)
        if self.length is None:
            self.done = not data
            return data
        if len(data) < want:
            raise _BadResponse(f"incomplete body: {self.length - len(data)} bytes missing")
        self.length -= len(data)
        self.done = self.length == 0
        return data

    def _read_chunked(self, limit: int) -> bytes:
        if self.chunk_left == 0:
            line = _read_line(self.reader, "chunk size")
            size = line.split(b";", 1)[0]
            try:
                self.chunk_left = int(size, 16)
            except ValueError:
                raise _BadResponse(f"bad chunk size {line!r}") from None
            if self.chunk_left == 0:
                while _read_line(self.reader, "trailer line") not in (b"\r\n", b"\n", b""):
                    pass
                self.done = True
                return b""
        want = min(limit, self.chunk_left)
        data: bytes = self.reader.read(want)
        if len(data) < want:
            raise _BadResponse("incomplete chunk")
        self.chunk_left -= want
        if self.chunk_left == 0 and len(self.reader.read(2)) < 2:  # the CRLF after the chunk
            raise _BadResponse("incomplete chunk")
        return data


def _read_body(body: _RawBody, decoder: _ZlibDecoder | None, limit: int) -> bytes:
    """Up to ``limit`` decoded bytes of the body, reading at most ``limit`` bytes of it off the wire
    (a decoder may turn much input into little output: padding after a gzip member, say)."""
    parts: list[bytes] = []
    got = 0
    raw = 0
    while got < limit and raw < limit and not body.done:
        data = body.read(limit - got if decoder is None else min(_RAW_CHUNK, limit - raw))
        raw += len(data)
        if decoder is not None:
            data = decoder.decompress(data, limit - got) if data else b""
            if body.done:
                data += decoder.flush()[: max(0, limit - got - len(data))]
        parts.append(data)
        got += len(data)
    return b"".join(parts)[:limit]


@lru_cache(maxsize=256)
def _valid_name(name: Any) -> bool:
    """requests' rule for a header name (``^[^:\\s][^:\\r\\n]*$``), remembered per name."""
    try:
        check_header_validity((name, ""))
    except requests.exceptions.InvalidHeader:
        return False
    return True


def _valid_value(value: str) -> bool:
    """requests' rule for a header value: empty, or no CR/LF and not starting with white space."""
    return not value or (not value[0].isspace() and "\r" not in value and "\n" not in value)


_ILLEGAL_VALUE = re.compile(r"\n(?![ \t])|\r(?![ \t\n])")  # http.client's test


def _checked_value(name: Any, value: Any) -> str:
    """The slow path, for a header the quick test refused: requests' check (InvalidHeader), then
    http.client's (ValueError), as a session would raise them; bytes values go as they are."""
    check_header_validity((name, value))
    text = value.decode("latin-1") if isinstance(value, bytes) else str(value)
    if _ILLEGAL_VALUE.search(text):
        raise ValueError(f"Invalid header value {text.encode('latin-1')!r}")
    return text


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
    """A short, secret-free description of a failure ``requests`` raised (preparing a URL)."""
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


def _timed_out(exc: OSError) -> bool:
    return isinstance(exc, TimeoutError) or exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK)


class HttpSender:
    """:class:`Sender` over pooled keep-alive connections, each dialled through the guard."""

    def __init__(self, guard: DestinationGuard, timeout: float = 10.0, pool_size: int = 64) -> None:
        self.guard = guard
        self.timeout = timeout
        self._pools = _Pools(hosts=pool_size, per_host=pool_size)
        # what a requests.Session sends unless a request overrides it (User-Agent, Accept-Encoding, ...)
        self._defaults = {name.lower(): (name, value) for name, value in default_headers().items()}
        self._defaults["accept-encoding"] = ("Accept-Encoding", ACCEPT_ENCODING)  # what _decoder can decode
        for header in self._defaults.values():
            check_header_validity(header)
        self._tls: ssl.SSLContext | None = None
        self._tls_lock = threading.Lock()

    # ------------------------------------------------------------------ connections
    def _tls_context(self) -> ssl.SSLContext:
        """urllib3's context for requests' defaults: certificates required, certifi's CAs, http/1.1."""
        with self._tls_lock:
            if self._tls is None:
                context = create_urllib3_context(cert_reqs=ssl.CERT_REQUIRED)
                context.load_verify_locations(extract_zipped_paths(DEFAULT_CA_BUNDLE_PATH))  # type: ignore[no-untyped-call]
                context.set_alpn_protocols(ALPN_PROTOCOLS)
                self._tls = context
            return self._tls

    def _connect(self, target: _Target) -> _Connection:
        """Resolve, check every address (BlockedDestination when one is not allowed), dial one."""
        try:
            addresses = self.guard.resolve(target.dns_host, target.port)
        except BlockedDestination:
            raise _Failed("dns lookup failed") from None
        self.guard.check_addresses(addresses, CONNECT_MESSAGE)
        last: OSError | None = None
        sock: socket.socket | None = None
        for address in addresses:
            family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
            candidate = socket.socket(family, socket.SOCK_STREAM)
            try:
                candidate.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                candidate.settimeout(self.timeout)
                candidate.connect((str(address), target.port))
            except TimeoutError:
                candidate.close()
                raise _Failed("connect timeout") from None
            except OSError as exc:
                candidate.close()
                last = exc
                continue
            sock = candidate
            break
        if sock is None:
            raise _Failed("connection refused" if "refused" in str(last).lower() else "connection failed")
        if not target.https:
            return _Connection(sock)
        try:
            return _Connection(self._tls_context().wrap_socket(sock, server_hostname=target.tls_host))
        except OSError as exc:
            sock.close()
            if _timed_out(exc):
                raise _Failed("timeout waiting for the response") from None
            if isinstance(exc, ssl.SSLError | ssl.CertificateError):
                raise _Failed("tls handshake failed") from None
            raise _Failed("connection failed") from None

    # ------------------------------------------------------------------ one POST
    def _encode(self, target: _Target, request: WebhookRequest) -> bytes:
        headers = dict(self._defaults)  # valid, checked once
        for name, value in request.headers.items():
            if value is None:
                headers.pop(name.lower(), None)
                continue
            if not (_valid_name(name) and type(value) is str and _valid_value(value)):
                value = _checked_value(name, value)
            headers[name.lower()] = (name, value)
        headers["content-length"] = ("Content-Length", str(len(request.body)))
        if target.authorization is not None:
            headers["authorization"] = ("Authorization", target.authorization)
        lines = [target.request_line]
        if "host" not in headers:
            lines.append(f"Host: {target.host}\r\n")
        lines += [f"{name}: {value}\r\n" for name, value in headers.values()]
        lines.append("\r\n")
        return "".join(lines).encode("latin-1") + request.body

    def _exchange(self, connection: _Connection, data: bytes) -> tuple[_Response, bytes | None, bool]:
        """Send, read the head, then up to MAX_BODY_READ + 1 decoded bytes of the body.

        Returns the response, the body's first bytes (``None`` when reading them failed), and
        whether the connection may be reused."""
        reader = connection.reader
        reader.deadline = time.monotonic() + self.timeout  # for the whole exchange, not each recv
        try:
            connection.sock.settimeout(self.timeout)  # the previous exchange's reads may have lowered it
            connection.sock.sendall(data)
        except OSError as exc:
            if isinstance(exc, ssl.SSLError):
                raise _Failed("tls handshake failed") from None
            if exc.errno not in (errno.EPIPE, errno.ECONNRESET, errno.EPROTOTYPE):
                raise _Failed("connection failed") from None
            # as urllib3: the peer may have answered before closing; read what it said
        try:
            response = _read_head(reader)
        except OSError as exc:
            if _timed_out(exc):
                raise _Failed("timeout waiting for the response") from None
            if isinstance(exc, ssl.SSLError):
                raise _Failed("tls handshake failed") from None
            raise _Failed("connection failed") from None
        except _BadResponse:
            raise _Failed("connection failed") from None
        body = _RawBody(reader, response)
        head: bytes | None = None
        try:
            head = _read_body(body, _decoder(response.headers), MAX_BODY_READ + 1)
        except Exception:  # noqa: BLE001 - a broken body does not change the status already received
            pass
        # reusable once the whole body is read (decoding failed or not), unless the peer closes it or
        # sent more than the response (which the next request would take for its own)
        return response, head, body.done and not body.will_close and not reader.pending

    def send(self, request: WebhookRequest) -> DeliveryResult:
        started = time.perf_counter()
        try:
            target = _target(request.url)
            data = self._encode(target, request)
        except requests.RequestException as exc:
            return DeliveryResult(None, _describe(exc), _ms(started))
        connection = None
        try:
            connection = self._pools.take(target.key) or self._connect(target)
            response, head, reusable = self._exchange(connection, data)
        except BlockedDestination as exc:
            return DeliveryResult(None, exc.message, _ms(started), blocked=True)
        except _Failed as exc:
            if connection is not None:
                connection.close()
            return DeliveryResult(None, exc.description, _ms(started))
        except BaseException:
            if connection is not None:
                connection.close()
            raise
        if reusable:
            self._pools.give_back(target.key, connection)
        else:
            connection.close()
        status = response.status
        snippet = (head or b"")[:SNIPPET_BYTES].decode("utf-8", "replace")
        error = None if status < 300 else f"unexpected status code from webhook: {status}"
        retry_after = _retry_after(response.headers.get("retry-after")) if status in (429, 503) else None
        return DeliveryResult(status, error, _ms(started), snippet, retry_after)


def _ms(started: float) -> int:
    return int((time.perf_counter() - started) * 1000)
