"""The relay: plain HTTP in from Mender's workflows, SigV4-signed HTTPS out to devicehooks' internal API.

What it forwards, and how:

* only ``/api/internal/v1/iot-manager/...`` (anything else: 404, nothing sent); no dot segments,
  no characters a request-target may not hold (400);
* the method, the path and the query exactly as received (percent-escapes such as the workflows'
  ``%2F`` and ``%23`` in url-encoded ids are kept; their hex digits are upper-cased, as the HTTP
  client sends them, so the signature covers what is sent); the body; ``Content-Type`` and
  ``X-MEN-RequestID``; nothing else of the caller's;
* signed for ``execute-api`` with botocore's SigV4 signer and the credentials botocore finds (a
  role of the pod or task, a profile, keys in the environment), refreshed as botocore refreshes them;
* the upstream's status and body back, with its ``Content-Type``, ``X-MEN-RequestID``,
  ``Location`` and ``Apigw-Requestid``;
* devicehooks not reachable (DNS, connection, TLS): 502; no answer in time: 504; both with a
  JSON body ``{"error", "request_id"}``. Mender's workflow tasks retry a status they do not accept,
  whereas a connection the relay refused would fail the workflow at once (docs/mender.md).

``GET /healthz`` is the relay's own health (no upstream call: a probe must not take every relay
out of service while devicehooks is away, or Mender's workflows would get refused connections
instead of retriable 502s); ``GET /healthz/upstream`` sends one signed ``GET .../alive`` to
devicehooks, for operators checking credentials, policy and reachability.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import urllib3
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import BotoCoreError, ClientError
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    NameResolutionError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
    SSLError,
)

log = logging.getLogger("devicehooks_relay")

PREFIX = "/api/internal/v1/iot-manager/"
ALIVE = PREFIX + "alive"
SERVICE = "execute-api"
# devicehooks' own limit (DEVICEHOOKS_REQUEST_SIZE_LIMIT): a larger body would be a 413 upstream
MAX_BODY = 1024 * 1024
# Longer than Go's idle keep-alive (90 s, the workflows worker's default transport), so the worker
# always closes an idle connection first and never sends on one the relay is closing.
IDLE_TIMEOUT = 120.0
USER_AGENT = "devicehooks-relay"
FORWARDED_REQUEST_HEADERS = ("Content-Type", "X-MEN-RequestID")
RETURNED_RESPONSE_HEADERS = ("content-type", "x-men-requestid", "location", "apigw-requestid")
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")

# A request-target the relay can forward byte for byte: RFC 3986 path and query characters,
# percent-escapes of two hex digits. urllib3 leaves such a target as it is (but for the escapes'
# case, normalised below), so what is signed is what is sent.
_PCHAR = r"[A-Za-z0-9\-._~!$&'()*+,;=:@/]|%[0-9A-Fa-f]{2}"
_TARGET = re.compile(rf"/(?:{_PCHAR})*(?:\?(?:{_PCHAR}|\?)*)?")
_ESCAPE = re.compile(r"%[0-9a-fA-F]{2}")
_EXECUTE_API_HOST = re.compile(r"^[a-z0-9]+\.execute-api\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?$")


class Refused(Exception):
    """A request the relay does not forward: its status and message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Settings:
    """``upstream``: devicehooks' API base URL (the stack's ``ApiUrl`` output, or a custom domain
    with its base path); ``region``: the API's region, which the signature names."""

    upstream: str
    region: str
    host: str = "0.0.0.0"  # a relay in Mender's network listens for its workflows
    port: int = 8080
    connect_timeout: float = 5.0
    # API Gateway answers within 30 s (its integration timeout): the relay waits as long
    read_timeout: float = 30.0

    @classmethod
    def make(
        cls,
        upstream: str,
        region: str | None = None,
        host: str = "0.0.0.0",
        port: int = 8080,
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
    ) -> Settings:
        """Checked settings: an https upstream (http only on a loopback address, for tests), the
        region given, else ``AWS_REGION``/``AWS_DEFAULT_REGION``, else the execute-api host's."""
        parts = urlsplit(upstream.strip())
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise ValueError(f"the upstream must be an https URL, not {upstream!r}")
        if parts.scheme == "http" and not _loopback(parts.hostname):
            raise ValueError("the upstream must be https: signed requests and their bodies must not travel in clear")
        if parts.query or parts.fragment:
            raise ValueError("the upstream is a base URL: no query or fragment")
        base = f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"
        found = _EXECUTE_API_HOST.match(parts.hostname)
        region = (
            region
            or os.environ.get("AWS_REGION")
            or os.environ.get("AWS_DEFAULT_REGION")
            or (found.group(1) if found else "")
        )
        if not region:
            raise ValueError("no region: give --region (or AWS_REGION) for an upstream that is not an execute-api host")
        if connect_timeout <= 0 or read_timeout <= 0:
            raise ValueError("timeouts must be positive")
        return cls(base, region, host, port, connect_timeout, read_timeout)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def forwardable(target: str) -> str:
    """``target`` (a request-target as received) as the relay sends it, or :class:`Refused`."""
    if not _TARGET.fullmatch(target):
        raise Refused(400, "malformed request target")
    path = target.split("?", 1)[0]
    if not path.startswith(PREFIX):
        raise Refused(404, f"not found: the relay forwards {PREFIX}... only")
    segments = path.split("/")
    if any(_ESCAPE.sub(lambda m: chr(int(m.group(0)[1:], 16)), s) in (".", "..") for s in segments):
        raise Refused(400, "malformed request target: dot segments")
    return _ESCAPE.sub(lambda m: m.group(0).upper(), target)


@dataclass(frozen=True)
class Reply:
    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes


def error_reply(status: int, message: str, request_id: str) -> Reply:
    """Mender's error body, as devicehooks and iot-manager answer."""
    body = json.dumps({"error": message, "request_id": request_id}).encode()
    return Reply(status, (("Content-Type", "application/json; charset=utf-8"),), body)


class Forwarder:
    """Signs and sends one request at a time per thread (urllib3's pool is thread-safe)."""

    def __init__(self, settings: Settings, credentials: Credentials, pool: urllib3.PoolManager | None = None) -> None:
        self.settings = settings
        self._credentials = credentials
        self._pool = pool or urllib3.PoolManager(maxsize=16, block=False)
        self._timeout = urllib3.Timeout(connect=settings.connect_timeout, read=settings.read_timeout)

    def forward(self, method: str, target: str, headers: Mapping[str, str], body: bytes) -> Reply:
        """``target`` already checked (:func:`forwardable`); ``headers`` those to forward."""
        request_id = headers.get("X-MEN-RequestID", "")
        url = self.settings.upstream + target
        try:
            signed = self._sign(method, url, headers, body)
        except (BotoCoreError, ClientError) as exc:  # the credentials could not be found or refreshed
            log.error("cannot sign: %s: %s", type(exc).__name__, exc)
            return error_reply(503, f"the relay has no AWS credentials to sign with ({type(exc).__name__})", request_id)
        try:
            response = self._pool.urlopen(
                method,
                url,
                body=body if body else None,
                headers=signed,
                retries=False,
                redirect=False,
                timeout=self._timeout,
                preload_content=True,
                assert_same_host=False,
            )
        except ReadTimeoutError:
            return self._failed(504, f"devicehooks did not answer within {self.settings.read_timeout:g} s", request_id)
        except (NameResolutionError, NewConnectionError) as exc:  # NewConnectionError before its base class
            return self._failed(502, f"devicehooks cannot be reached: {_reason(exc)}", request_id)
        except ConnectTimeoutError:
            message = f"devicehooks did not accept a connection within {self.settings.connect_timeout:g} s"
            return self._failed(504, message, request_id)
        except SSLError as exc:
            return self._failed(502, f"devicehooks cannot be reached: TLS: {_reason(exc)}", request_id)
        except (ProtocolError, HTTPError) as exc:
            return self._failed(502, f"devicehooks' answer was cut off: {type(exc).__name__}", request_id)
        kept = tuple((k, v) for k, v in response.headers.items() if k.lower() in RETURNED_RESPONSE_HEADERS)
        return Reply(response.status, kept, response.data)

    def _sign(self, method: str, url: str, headers: Mapping[str, str], body: bytes) -> dict[str, str]:
        request = AWSRequest(method=method, url=url, data=body, headers={**headers, "User-Agent": USER_AGENT})
        SigV4Auth(self._credentials.get_frozen_credentials(), SERVICE, self.settings.region).add_auth(request)
        return dict(request.headers.items())

    @staticmethod
    def _failed(status: int, message: str, request_id: str) -> Reply:
        log.warning("%d: %s (request_id=%s)", status, message, request_id or "-")
        return error_reply(status, message, request_id)


def _reason(exc: BaseException) -> str:
    """The innermost cause's words (``[Errno 111] Connection refused``), without the URL."""
    while exc.__cause__ is not None or exc.__context__ is not None:
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return str(exc) or type(exc).__name__


class RelayServer(ThreadingHTTPServer):
    """A thread per connection; counts requests in flight so that a stop lets them finish."""

    daemon_threads = True
    request_queue_size = 128
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], forwarder: Forwarder) -> None:
        self.forwarder = forwarder
        self._active = 0
        self._changed = threading.Condition()
        super().__init__(address, _Handler)

    def enter(self) -> None:
        with self._changed:
            self._active += 1

    def leave(self) -> None:
        with self._changed:
            self._active -= 1
            self._changed.notify_all()

    def drain(self, timeout: float) -> bool:
        """Wait until no request is in flight (True), at most ``timeout`` seconds."""
        with self._changed:
            return self._changed.wait_for(lambda: self._active == 0, timeout)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = IDLE_TIMEOUT
    server: RelayServer
    server_version = USER_AGENT
    sys_version = ""

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._serve()

    do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_GET  # noqa: N815

    def _serve(self) -> None:
        self.server.enter()
        started = time.monotonic()
        request_id = self.headers.get("X-MEN-RequestID", "")
        try:
            try:
                reply = self._reply(request_id)
            except Exception:  # noqa: BLE001 - whatever failed, the workflow gets a retriable answer
                log.exception("relay failure")
                reply = error_reply(500, "internal error", request_id)
            self._send(reply)
        finally:
            self.server.leave()
        took = (time.monotonic() - started) * 1000
        log.info("%s %s %d %.0fms request_id=%s", self.command, self.path, reply.status, took, request_id or "-")

    def _reply(self, request_id: str) -> Reply:
        path = self.path.split("?", 1)[0]
        if path == "/healthz" and self.command in ("GET", "HEAD"):
            return Reply(200, (("Content-Type", "application/json"),), b'{"status":"ok"}')
        if path == "/healthz/upstream" and self.command in ("GET", "HEAD"):
            return self._upstream_health(request_id)
        try:
            target = forwardable(self.path)
            body = self._body()
        except Refused as refused:
            self.close_connection = True  # a body left unread: the connection cannot carry another request
            return error_reply(refused.status, refused.message, request_id)
        forwarded = {name: self.headers[name] for name in FORWARDED_REQUEST_HEADERS if self.headers.get(name)}
        return self.server.forwarder.forward(self.command, target, forwarded, body)

    def _upstream_health(self, request_id: str) -> Reply:
        headers = {"X-MEN-RequestID": request_id} if request_id else {}
        answer = self.server.forwarder.forward("GET", ALIVE, headers, b"")
        if answer.status == 204:
            body: dict[str, Any] = {"status": "ok", "upstream_status": 204}
            return Reply(200, (("Content-Type", "application/json"),), json.dumps(body).encode())
        try:
            detail = json.loads(answer.body)
        except ValueError:
            detail = answer.body.decode("utf-8", "replace")[:200]
        body = {"error": "devicehooks did not answer 204", "upstream_status": answer.status, "upstream": detail}
        return Reply(502, (("Content-Type", "application/json"),), json.dumps(body).encode())

    def _body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            raise Refused(411, "a request body needs a Content-Length")
        raw = self.headers.get("Content-Length")
        if raw is None:
            return b""
        if not raw.isdigit():
            raise Refused(400, "invalid Content-Length")
        length = int(raw)
        if length > MAX_BODY:
            raise Refused(413, f"request body too large: more than {MAX_BODY} bytes")
        return self.rfile.read(length)

    def _send(self, reply: Reply) -> None:
        try:
            self.send_response(reply.status)
            for name, value in reply.headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(reply.body)))
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(reply.body)
        except OSError:
            self.close_connection = True  # the caller went away

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's signature
        log.debug(format, *args)


class Relay:
    """A relay serving on its own thread: ``start()``, ``url``, ``stop()`` (lets requests in flight
    finish, up to the upstream's timeouts)."""

    def __init__(self, settings: Settings, credentials: Credentials, pool: urllib3.PoolManager | None = None) -> None:
        self.settings = settings
        self.server = RelayServer((settings.host, settings.port), Forwarder(settings, credentials, pool))
        self._thread = threading.Thread(target=self.server.serve_forever, name="relay", daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> Relay:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()  # no new connection is accepted
        grace = self.settings.connect_timeout + self.settings.read_timeout + 1
        if not self.server.drain(grace):
            log.warning("stopping with requests still in flight after %.0f s", grace)
        self.server.server_close()
