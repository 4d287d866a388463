"""HttpSender against real servers on loopback: the bytes it puts on the wire, how it reads
responses (well-formed, odd and malformed), keep-alive pooling, body limits and decoding,
timeouts, TLS, redirects, Retry-After, SSRF at connect, proxies, cookies and concurrency.

Raw socket servers are used wherever a response must be byte-exact or broken; the shared
``tests.receiver.Receiver`` where an ordinary HTTP server will do. Nothing sleeps and hopes: every
wait is for an event, a queue, a barrier, a condition or a TCP state, with a timeout.
"""

from __future__ import annotations

import email.utils
import gzip
import ipaddress
import queue
import socket
import ssl
import threading
import time
import tracemalloc
import types
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
from requests.utils import default_headers

import devicehooks.delivery.sender as sender_module
from devicehooks.delivery.sender import MAX_BODY_READ, DeliveryResult, HttpSender, WebhookRequest
from devicehooks.security.ssrf import CONNECT_MESSAGE, DestinationGuard
from tests.receiver import Answer, Receiver, _self_signed_certificate

LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))
GUARD = DestinationGuard(allowed_cidrs=LOOPBACK)
WAIT = 5.0  # the longest anything here waits for the other side (a failure, never a normal path)
TIMEOUT = 0.5  # the sender's timeout in the tests that wait for it to expire
DRIP = 0.1  # a slow server's pause between two bytes: well inside TIMEOUT, so every recv succeeds
TCP_FIN_WAIT2 = 5  # tcp_info.tcpi_state once the peer acknowledged our FIN (linux/tcp_states.h)


# ---------------------------------------------------------------------------------------- servers
class Peer:
    """One accepted connection, seen from the server side."""

    def __init__(self, server: RawServer, sock: socket.socket, number: int) -> None:
        self.server = server
        self.sock = sock
        self.number = number  # 1 for the server's first connection, 2 for the next, ...
        self._file: Any = None
        sock.settimeout(WAIT)

    @property
    def file(self) -> Any:
        if self._file is None:
            self._file = self.sock.makefile("rb")
        return self._file

    def start_tls(self, context: ssl.SSLContext) -> None:
        self.sock = context.wrap_socket(self.sock, server_side=True)

    def request(self) -> bytes | None:
        """The next request's exact bytes (head, then a Content-Length body); None at the client's EOF."""
        head = b""
        while not head.endswith(b"\r\n\r\n"):
            line = self.file.readline(70000)
            if not line:
                assert not head, f"request cut short: {head!r}"
                return None
            head += line
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.lower() == b"content-length":
                length = int(value)
        data: bytes = head + self.file.read(length)
        self.server.record(data)
        return data

    def rest(self) -> bytes:
        """Everything the client sends until it closes the connection."""
        data: bytes = self.file.read()
        return data

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def drip(self, data: bytes) -> None:
        """``data`` one byte at a time, DRIP seconds apart (stops when the server closes)."""
        for i in range(len(data)):
            self.sock.sendall(data[i : i + 1])
            if self.server.stopping.wait(DRIP):
                return

    def close(self) -> None:
        if self._file is not None:
            self._file.close()  # the socket's file descriptor lives on until its file is closed too
        self.sock.close()

    def close_and_wait_for_ack(self) -> None:
        """Half-close, and return once the client's kernel has acknowledged the FIN (so the client
        socket is readable: an idle pooled connection now looks dropped), then close."""
        self.sock.shutdown(socket.SHUT_WR)
        deadline = time.monotonic() + WAIT
        while self.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0] != TCP_FIN_WAIT2:
            assert time.monotonic() < deadline, "the client never acknowledged the FIN"
            time.sleep(0.001)
        self.close()


Handler = Callable[[Peer], None]


class RawServer:
    """A threaded TCP server on loopback: every accepted connection runs ``handler`` in its own
    thread. Counts accepted and still-open connections, records every request read."""

    def __init__(self, handler: Handler, host: str = "127.0.0.1") -> None:
        self.host = host
        self.handler = handler
        self.accepted = 0
        self.open = 0
        self.requests: list[bytes] = []
        self.errors: list[BaseException] = []
        self.stopping = threading.Event()
        self._changed = threading.Condition()
        self._peers: list[Peer] = []
        self._threads: list[threading.Thread] = []
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._listener = socket.socket(family, socket.SOCK_STREAM)
        self._listener.bind((host, 0))
        self._listener.listen(128)
        self.port: int = self._listener.getsockname()[1]
        self._acceptor = threading.Thread(target=self._accept, daemon=True)
        self._acceptor.start()

    def url(self, path: str = "/hook", scheme: str = "http") -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}{path}"

    def record(self, data: bytes) -> None:
        with self._changed:
            self.requests.append(data)
            self._changed.notify_all()

    def wait_until(self, condition: Callable[[], bool], what: str) -> None:
        with self._changed:
            assert self._changed.wait_for(condition, WAIT), f"timed out waiting for {what}"

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return  # closed
            with self._changed:
                self.accepted += 1
                self.open += 1
                peer = Peer(self, sock, self.accepted)
                self._peers.append(peer)
                self._changed.notify_all()
            thread = threading.Thread(target=self._serve, args=(peer,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, peer: Peer) -> None:
        try:
            self.handler(peer)
        except (OSError, ValueError):
            pass  # the client went away (or the server is closing): nothing more to do
        except BaseException as exc:  # noqa: BLE001 - reported by the fixture
            self.errors.append(exc)
        finally:
            peer.close()
            with self._changed:
                self.open -= 1
                self._changed.notify_all()

    def close(self) -> None:
        self.stopping.set()
        try:
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        except OSError:
            pass
        self._listener.close()
        self._acceptor.join(WAIT)
        for peer in list(self._peers):
            try:
                peer.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for thread in self._threads:
            thread.join(WAIT)


@pytest.fixture
def serve() -> Iterator[Callable[..., RawServer]]:
    servers: list[RawServer] = []

    def start(handler: Handler, host: str = "127.0.0.1") -> RawServer:
        server = RawServer(handler, host)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()
    assert not [error for server in servers for error in server.errors]


@pytest.fixture
def receivers() -> Iterator[Callable[..., Receiver]]:
    started: list[Receiver] = []

    def start(tls: bool = False) -> Receiver:
        receiver = Receiver(tls=tls)
        started.append(receiver)
        return receiver

    yield start
    for receiver in started:
        receiver.close()


def response(status: int = 200, body: bytes = b"ok", *headers: str, reason: str = "OK") -> bytes:
    """An HTTP/1.1 response framed by Content-Length."""
    head = [f"HTTP/1.1 {status} {reason}", *headers, f"Content-Length: {len(body)}"]
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


OK = response()


def keep_alive(answer: bytes = OK) -> Handler:
    """Answer every request on the connection with ``answer``, until the client closes it."""

    def handler(peer: Peer) -> None:
        while peer.request() is not None:
            peer.send(answer)

    return handler


def answer_then_close(answer: bytes) -> Handler:
    """Answer one request and close (what a close-delimited body needs)."""

    def handler(peer: Peer) -> None:
        if peer.request() is not None:
            peer.send(answer)

    return handler


def post(sender: HttpSender, url: str, body: bytes = b'{"n":1}', **headers: str) -> DeliveryResult:
    return sender.send(WebhookRequest(url, body, {"Content-Type": "application/json", **headers}))


def resolving(names: dict[str, list[str]]) -> Callable[[str, int], list[tuple[Any, ...]]]:
    """A resolver for DestinationGuard: ``names`` only, in order; anything else does not exist."""

    def resolver(host: str, port: int) -> list[tuple[Any, ...]]:
        if host not in names:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [
            (socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port)) for a in names[host]
        ]

    return resolver


@pytest.fixture
def dialled(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, ...]]:
    """Every address the sender connects a socket to (its ``socket`` module, seen through a spy)."""
    calls: list[tuple[Any, ...]] = []

    class Spy(socket.socket):
        def connect(self, address: Any) -> None:
            calls.append(address)
            super().connect(address)

    spy = types.SimpleNamespace(**{**vars(socket), "socket": Spy})
    monkeypatch.setattr(sender_module, "socket", spy)
    return calls


# ---------------------------------------------------------------------------------------- 1. the request on the wire
def _defaults() -> str:
    return "".join(f"{name}: {value}\r\n" for name, value in default_headers().items())


def test_post_sends_request_line_host_port_headers_length_and_body_once_exactly(serve: Any) -> None:
    seen: queue.Queue[bytes] = queue.Queue()

    def handler(peer: Peer) -> None:
        request = peer.request()
        assert request is not None
        peer.send(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
        seen.put(request + peer.rest())  # the request, then whatever else came before the client closed

    server = serve(handler)
    body = b'{"id":"4f1c","event":"device.provisioned"}'
    path = "/hooks/a%2Fb/caf%C3%A9/x%20y?tenant=t%26co&q=a%2Bb&plus=a+b&empty=&eq=%3D#fragment"
    headers = {"Content-Type": "application/json", "X-Men-Signature": "c2ln", "webhook-id": "msg_1"}
    result = HttpSender(GUARD, timeout=WAIT).send(WebhookRequest(server.url(path), body, headers))

    assert (result.status_code, result.error, result.response_body) == (204, None, "")
    expected = (
        "POST /hooks/a%2Fb/caf%C3%A9/x%20y?tenant=t%26co&q=a%2Bb&plus=a+b&empty=&eq=%3D HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{server.port}\r\n"
        f"{_defaults()}"
        "Content-Type: application/json\r\nX-Men-Signature: c2ln\r\nwebhook-id: msg_1\r\n"
        f"Content-Length: {len(body)}\r\n"
        "\r\n"
    ).encode() + body
    assert seen.get(timeout=WAIT) == expected
    assert server.accepted == 1


@pytest.mark.parametrize(
    "path",
    [
        "/hook",
        "/a b/caf\u00e9?q=\u00fc&r=a b",  # raw spaces and non-ASCII: requoted as requests does
        "/%7Euser/%41?x=%7e&y=%2F",  # escapes of unreserved characters: normalised as requests does
        "/p;params?a=1&a=2&b=%zz",  # a parameter segment, a repeated key, a broken escape
        "",  # no path at all
    ],
)
def test_request_bytes_are_the_ones_a_requests_session_sends(serve: Any, path: str) -> None:
    seen: queue.Queue[bytes] = queue.Queue()

    def handler(peer: Peer) -> None:
        request = peer.request()
        assert request is not None
        peer.send(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
        seen.put(request + peer.rest())

    server = serve(handler)
    url = f"http://user:p%40ss@127.0.0.1:{server.port}{path}"  # user info: Basic credentials, as requests adds
    body = b"\x00binary\xffbody"
    headers = {"Content-Type": "application/octet-stream", "X-Extra": "1", "Accept": "application/json"}

    with requests.Session() as session:
        session.trust_env = False
        session.post(url, data=body, headers=headers, timeout=WAIT)
    by_requests = seen.get(timeout=WAIT)
    result = HttpSender(GUARD, timeout=WAIT).send(WebhookRequest(url, body, headers))

    assert result.status_code == 204
    assert seen.get(timeout=WAIT) == by_requests
    assert b"Authorization: Basic dXNlcjpwQHNz\r\n" in by_requests


# ---------------------------------------------------------------------------------------- 2. reading responses
@pytest.mark.parametrize(
    ("answer", "server_closes", "snippet", "reusable"),
    [
        pytest.param(response(200, b"hello"), False, "hello", True, id="content-length"),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            b'5;name=value\r\nhello\r\n6;quoted="a;b"\r\n world\r\n0;last\r\nX-Trailer: yes\r\nX-More: 1\r\n\r\n',
            False,
            "hello world",
            True,
            id="chunked-with-extensions-and-trailers",
        ),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: Chunked\r\n\r\nB\r\nhello world\r\n0\r\n\r\n",
            False,
            "hello world",
            True,
            id="chunked-upper-case-size",
        ),
        pytest.param(
            b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil close",
            True,
            "until close",
            False,
            id="http10-close-delimited",
        ),
        pytest.param(b"HTTP/1.1 200 OK\r\n\r\nuntil close", True, "until close", False, id="http11-close-delimited"),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 4\r\n\r\nbye!",
            False,
            "bye!",
            False,
            id="http11-connection-close",
        ),
        pytest.param(
            b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok",
            False,
            "ok",
            True,
            id="http10-keep-alive",
        ),
        pytest.param(b"HTTP/1.1 204 No Content\r\n\r\n", False, "", True, id="no-content"),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            False,
            "hello",
            True,
            id="chunked-wins-over-content-length",
        ),
        pytest.param(OK + b"HTTP/1.1 200 OK\r\n", False, "ok", False, id="bytes-after-the-response"),
    ],
)
def test_response_framing(serve: Any, answer: bytes, server_closes: bool, snippet: str, reusable: bool) -> None:
    # where the server does not close, it keeps answering on the connection: only the sender's
    # reading of the framing decides whether the second POST reuses it
    server = serve(answer_then_close(answer) if server_closes else keep_alive(answer))
    sender = HttpSender(GUARD, timeout=WAIT)

    results = [post(sender, server.url()), post(sender, server.url())]

    status = int(answer.split(b" ")[1])
    assert [(r.status_code, r.error, r.response_body) for r in results] == [(status, None, snippet)] * 2
    assert server.accepted == (1 if reusable else 2)
    assert len(server.requests) == 2


def test_100_continue_is_skipped_for_the_real_status(serve: Any) -> None:
    server = serve(
        keep_alive(
            b"HTTP/1.1 100 Continue\r\nX-Interim: 1\r\n\r\nHTTP/1.1 100 Continue\r\n\r\n" + response(201, b"made")
        )
    )
    sender = HttpSender(GUARD, timeout=WAIT)

    result = post(sender, server.url())

    assert (result.status_code, result.error, result.response_body) == (201, None, "made")
    assert post(sender, server.url()).status_code == 201
    assert server.accepted == 1  # the interim responses were consumed exactly


def test_other_interim_responses_are_skipped_too(serve: Any) -> None:
    early_hints = b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"
    server = serve(keep_alive(early_hints + response(500, b"broken")))
    sender = HttpSender(GUARD, timeout=WAIT)

    result = post(sender, server.url())

    assert (result.status_code, result.error) == (500, "unexpected status code from webhook: 500")


def test_a_compressed_body_cannot_expand_in_memory(serve: Any) -> None:
    bomb = gzip.compress(b"\0" * (64 * 1024 * 1024))  # 64 MiB of zeros in about 64 KiB
    answer = (
        b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: " + str(len(bomb)).encode() + b"\r\n\r\n" + bomb
    )
    server = serve(keep_alive(answer))
    sender = HttpSender(GUARD, timeout=WAIT)
    tracemalloc.start()
    try:
        result = post(sender, server.url())
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()

    assert (result.status_code, result.response_body) == (200, "\0" * 256)
    assert peak < 4 * 1024 * 1024  # never the 64 MiB it would decompress to


def test_obsolete_folded_header_lines_continue_the_previous_header(serve: Any) -> None:
    answer = b"HTTP/1.1 503 Busy\r\nRetry-After:\r\n  7\r\nX-Folded: one\r\n\ttwo\r\nContent-Length: 2\r\n\r\nno"
    server = serve(keep_alive(answer))
    sender = HttpSender(GUARD, timeout=WAIT)

    result = post(sender, server.url())

    assert (result.status_code, result.retry_after, result.response_body) == (503, 7.0, "no")
    assert result.error == "unexpected status code from webhook: 503"
    assert post(sender, server.url()).status_code == 503
    assert server.accepted == 1


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param(
            b"HTTP/1.1 200 OK\r\nX-Long: " + b"a" * 70000 + b"\r\nContent-Length: 0\r\n\r\n", id="header-line-too-long"
        ),
        pytest.param(
            b"HTTP/1.1 200 OK\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(101)) + b"Content-Length: 0\r\n\r\n",
            id="more-than-100-headers",
        ),
        pytest.param(b"HTTP/1.1 200 " + b"O" * 70000 + b"\r\nContent-Length: 0\r\n\r\n", id="status-line-too-long"),
        pytest.param(b"GARBAGE\r\n\r\n", id="garbage-status-line"),
        pytest.param(b"SSH-2.0-OpenSSH_9.6\r\n", id="not-http"),
        pytest.param(b"HTTP/1.1 abc OK\r\n\r\n", id="status-not-a-number"),
        pytest.param(b"HTTP/1.1 99 Low\r\n\r\n", id="status-below-100"),
        pytest.param(b"HTTP/1.1\r\n\r\n", id="status-missing"),
        pytest.param(b"HTTP/2 200\r\n\r\n", id="http2-status-line"),
        pytest.param(b"", id="empty-reply"),
        pytest.param(b"HTTP/1.1 20", id="cut-in-the-status-line"),
    ],
)
def test_malformed_or_missing_response_is_a_connection_failure_result(serve: Any, answer: bytes) -> None:
    server = serve(answer_then_close(answer))  # the peer answers this, then closes

    result = post(HttpSender(GUARD, timeout=WAIT), server.url())

    assert result == DeliveryResult(None, "connection failed", result.duration_ms)
    assert len(server.requests) == 1


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", id="content-length-short"),
        pytest.param(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab", id="chunk-cut"),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nab\r\n0\r\n\r\n", id="chunk-size-garbage"
        ),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\nabcdefg\r\n", id="chunk-size-negative"
        ),
        pytest.param(b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 9\r\n\r\nnot gzip!", id="bad-gzip"),
        pytest.param(b"HTTP/1.1 200 OK\r\nContent-Le", id="head-cut-after-the-status-line"),  # as http.client
    ],
)
def test_broken_body_keeps_the_status_and_drops_the_connection(serve: Any, answer: bytes) -> None:
    server = serve(answer_then_close(answer))
    sender = HttpSender(GUARD, timeout=WAIT)

    result = post(sender, server.url())

    assert (result.status_code, result.error) == (200, None)
    assert isinstance(result.response_body, str)


# ---------------------------------------------------------------------------------------- 3. keep-alive
def test_sequential_sends_to_one_server_reuse_one_connection(serve: Any) -> None:
    server = serve(keep_alive())
    sender = HttpSender(GUARD, timeout=WAIT)

    results = [post(sender, server.url(f"/hook/{i}")) for i in range(3)]

    assert [r.status_code for r in results] == [200, 200, 200]
    assert server.accepted == 1
    assert [r.split(b" ")[1] for r in server.requests] == [b"/hook/0", b"/hook/1", b"/hook/2"]


def test_connection_closed_by_the_server_while_idle_is_replaced_without_an_error(serve: Any) -> None:
    def handler(peer: Peer) -> None:
        if peer.request() is not None:
            peer.send(OK)  # keep-alive, as far as the client knows ...
            if peer.number == 1:
                peer.close_and_wait_for_ack()  # ... then the server times the idle connection out
                return
            keep_alive()(peer)

    server = serve(handler)
    sender = HttpSender(GUARD, timeout=WAIT)
    assert post(sender, server.url()).status_code == 200
    server.wait_until(lambda: server.open == 0, "the server to close the idle connection")

    result = post(sender, server.url())

    assert (result.status_code, result.error) == (200, None)
    assert server.accepted == 2
    assert len(server.requests) == 2  # the dead connection took nothing


def test_concurrent_sends_all_succeed_and_only_pool_size_connections_are_kept(serve: Any) -> None:
    threads, pool_size = 20, 4
    everyone_connected = threading.Barrier(threads, timeout=WAIT)

    def handler(peer: Peer) -> None:
        first = True
        while peer.request() is not None:
            if first:  # hold the first answers until all 20 requests are in: 20 connections at once
                everyone_connected.wait()
                first = False
            peer.send(OK)

    server = serve(handler)
    sender = HttpSender(GUARD, timeout=WAIT, pool_size=pool_size)

    with ThreadPoolExecutor(threads) as pool:
        results = list(pool.map(lambda i: post(sender, server.url(f"/c/{i}")), range(threads)))

    assert [(r.status_code, r.error) for r in results] == [(200, None)] * threads
    assert server.accepted == threads
    server.wait_until(lambda: server.open == pool_size, f"the sender to close all but {pool_size} connections")
    assert [post(sender, server.url()).status_code for _ in range(2 * pool_size)] == [200] * 2 * pool_size
    assert server.accepted == threads  # the kept ones are the ones reused


# ---------------------------------------------------------------------------------------- 4. bodies
def _chunked(body: bytes, size: int = 8192) -> bytes:
    chunks = [b"%x\r\n%s\r\n" % (len(body[i : i + size]), body[i : i + size]) for i in range(0, len(body), size)]
    return b"".join(chunks) + b"0\r\n\r\n"


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_body_over_64_kib_reports_the_status_and_drops_the_connection(serve: Any, framing: str) -> None:
    big = bytes(range(97, 123)) * 8000  # 208,000 bytes
    first = (
        response(200, big)
        if framing == "content-length"
        else b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + _chunked(big)
    )

    def handler(peer: Peer) -> None:
        if peer.request() is not None:
            peer.send(first if peer.number == 1 else OK)  # the client stops reading: this may fail
            keep_alive()(peer)

    server = serve(handler)
    sender = HttpSender(GUARD, timeout=WAIT)

    result = post(sender, server.url())

    assert (result.status_code, result.error) == (200, None)
    assert result.response_body == big[:256].decode()
    assert post(sender, server.url()).status_code == 200
    assert server.accepted == 2  # not drained for reuse: dropped


def test_compressed_body_padded_past_64_kib_is_not_read_to_its_end(serve: Any) -> None:
    # a tiny gzip member followed by megabytes the decoder swallows: decoded it stays small, but
    # reading it all would take the sender far past the 64 KiB it may read of a response
    padded = gzip.compress(b"tiny") + bytes(4 * 1024 * 1024)
    first = response(200, padded, "Content-Encoding: gzip")

    def handler(peer: Peer) -> None:
        if peer.request() is not None:
            peer.send(first if peer.number == 1 else OK)
            keep_alive()(peer)

    server = serve(handler)
    sender = HttpSender(GUARD, timeout=WAIT)

    result = post(sender, server.url())

    assert (result.status_code, result.response_body) == (200, "tiny")
    assert post(sender, server.url()).status_code == 200
    assert server.accepted == 2  # dropped after 64 KiB, not read (4 MiB) to the end and kept


@pytest.mark.parametrize(
    ("encoding", "encoded"),
    [
        ("gzip", gzip.compress(b"decoded body")),
        ("x-gzip", gzip.compress(b"decoded body")),
        ("GZip", gzip.compress(b"decoded body")),
        ("deflate", zlib.compress(b"decoded body")),
        ("deflate", zlib.compress(b"decoded body")[2:-4]),  # raw deflate, as some servers send it
    ],
)
def test_gzip_and_deflate_bodies_are_decoded_for_the_snippet(serve: Any, encoding: str, encoded: bytes) -> None:
    server = serve(keep_alive(response(200, encoded, f"Content-Encoding: {encoding}")))
    sender = HttpSender(GUARD, timeout=WAIT)

    result = post(sender, server.url())

    assert (result.status_code, result.response_body) == (200, "decoded body")
    assert post(sender, server.url()).response_body == "decoded body"
    assert server.accepted == 1


def test_compressed_body_larger_than_the_limit_decoded_is_cut_for_the_snippet(serve: Any) -> None:
    server = serve(keep_alive(response(200, gzip.compress(b"z" * (4 * MAX_BODY_READ)), "Content-Encoding: gzip")))

    result = post(HttpSender(GUARD, timeout=WAIT), server.url())

    assert (result.status_code, result.response_body) == (200, "z" * 256)


def test_non_utf8_body_gets_replacement_characters(serve: Any) -> None:
    server = serve(keep_alive(response(200, b"caf\xe9 \xff\xfe ok")))

    result = post(HttpSender(GUARD, timeout=WAIT), server.url())

    assert result.response_body == "caf\ufffd \ufffd\ufffd ok"


def test_snippet_is_the_first_256_bytes_even_inside_a_character(serve: Any) -> None:
    body = "\u20ac".encode() * 100  # 300 bytes: byte 256 is the first of a 3-byte character
    server = serve(keep_alive(response(200, body)))

    result = post(HttpSender(GUARD, timeout=WAIT), server.url())

    assert result.response_body == "\u20ac" * 85 + "\ufffd"


# ---------------------------------------------------------------------------------------- 5. timeouts
def test_server_that_never_answers_times_out_after_the_timeout(serve: Any) -> None:
    def handler(peer: Peer) -> None:
        peer.request()
        peer.server.stopping.wait(WAIT)  # read it, say nothing

    server = serve(handler)
    started = time.monotonic()

    result = post(HttpSender(GUARD, timeout=TIMEOUT), server.url())

    elapsed = time.monotonic() - started
    assert (result.status_code, result.error) == (None, "timeout waiting for the response")
    assert TIMEOUT * 0.9 <= elapsed < TIMEOUT * 3


def test_server_dripping_its_status_line_cannot_hold_the_sender_past_the_timeout(serve: Any) -> None:
    answer = response(200, b"ok", "X-Pad: " + "p" * 40)  # ~80 bytes at DRIP apart: 8 s if read to the end

    def handler(peer: Peer) -> None:
        if peer.request() is not None:
            peer.drip(answer)

    server = serve(handler)
    started = time.monotonic()

    result = post(HttpSender(GUARD, timeout=TIMEOUT), server.url())

    elapsed = time.monotonic() - started
    assert (result.status_code, result.error) == (None, "timeout waiting for the response")
    assert elapsed < TIMEOUT * 3


def test_server_dripping_its_body_cannot_hold_the_sender_past_the_timeout(serve: Any) -> None:
    body = b"b" * 60  # 6 s if read to the end

    def handler(peer: Peer) -> None:
        if peer.request() is not None:
            peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body))
            peer.drip(body)

    server = serve(handler)
    sender = HttpSender(GUARD, timeout=TIMEOUT)
    started = time.monotonic()

    result = post(sender, server.url())

    elapsed = time.monotonic() - started
    assert (result.status_code, result.error) == (200, None)  # the status arrived: it stands
    assert elapsed < TIMEOUT * 3


def test_closed_port_is_connection_refused() -> None:
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))  # bound, never listening: the port is ours and refuses
    try:
        result = post(HttpSender(GUARD, timeout=WAIT), f"http://127.0.0.1:{holder.getsockname()[1]}/hook")
    finally:
        holder.close()

    assert result == DeliveryResult(None, "connection refused", result.duration_ms)


def test_listener_with_a_full_backlog_is_a_connect_timeout() -> None:
    # offline stand-in for a non-routable address: Linux drops SYNs to a listener whose accept
    # queue is full, so the handshake never completes
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers: list[socket.socket] = []
    try:
        for _ in range(8):
            probe = socket.socket()
            probe.settimeout(0.2)
            fillers.append(probe)
            try:
                probe.connect(("127.0.0.1", port))
            except TimeoutError:
                break
        else:
            pytest.skip("this kernel accepts past the listen backlog")
        started = time.monotonic()
        result = post(HttpSender(GUARD, timeout=TIMEOUT), f"http://127.0.0.1:{port}/hook")
        elapsed = time.monotonic() - started
    finally:
        for sock in fillers:
            sock.close()
        listener.close()

    assert result == DeliveryResult(None, "connect timeout", result.duration_ms)
    assert elapsed < TIMEOUT * 3


# ---------------------------------------------------------------------------------------- 6. TLS
@pytest.fixture(scope="module")
def certificate() -> tuple[str, str]:
    return _self_signed_certificate()  # for 127.0.0.1 (an IP SAN), self-signed


def _tls_server(serve: Any, certificate: tuple[str, str]) -> tuple[RawServer, queue.Queue[Any], queue.Queue[Any]]:
    """A TLS server with ``certificate``: reports each handshake's outcome and SNI, then keeps alive."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*certificate)
    outcomes: queue.Queue[Any] = queue.Queue()
    names: queue.Queue[Any] = queue.Queue()
    context.sni_callback = lambda _sock, name, _context: names.put(name)

    def handler(peer: Peer) -> None:
        try:
            peer.start_tls(context)
        except ssl.SSLError as exc:
            outcomes.put(exc)
            return
        outcomes.put("handshake done")
        keep_alive()(peer)

    return serve(handler), outcomes, names


def test_self_signed_server_fails_the_handshake_and_receives_no_request(serve: Any, certificate: Any) -> None:
    server, outcomes, _ = _tls_server(serve, certificate)

    result = post(HttpSender(GUARD, timeout=WAIT), server.url(scheme="https"))

    assert result == DeliveryResult(None, "tls handshake failed", result.duration_ms)
    assert isinstance(outcomes.get(timeout=WAIT), ssl.SSLError)  # the client refused the certificate
    assert server.requests == []


def test_trusted_certificate_succeeds_and_the_connection_is_kept(
    serve: Any, certificate: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # HttpSender has no CA-bundle option: it trusts requests' default bundle (certifi). Point
    # that at the test certificate to exercise the success path through its real TLS context.
    monkeypatch.setattr(sender_module, "DEFAULT_CA_BUNDLE_PATH", certificate[0])
    server, outcomes, _ = _tls_server(serve, certificate)
    sender = HttpSender(GUARD, timeout=WAIT)

    results = [post(sender, server.url(scheme="https")), post(sender, server.url(scheme="https"))]

    assert [(r.status_code, r.error, r.response_body) for r in results] == [(200, None, "ok")] * 2
    assert outcomes.get(timeout=WAIT) == "handshake done"
    assert server.accepted == 1
    assert server.requests[0].startswith(b"POST /hook HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n" % server.port)


def test_certificate_is_checked_against_the_url_host_name_sent_as_sni(
    serve: Any, certificate: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sender_module, "DEFAULT_CA_BUNDLE_PATH", certificate[0])  # trusted, but for 127.0.0.1
    server, outcomes, names = _tls_server(serve, certificate)
    guard = DestinationGuard(allowed_cidrs=LOOPBACK, resolver=resolving({"webhook.test": ["127.0.0.1"]}))

    result = post(HttpSender(guard, timeout=WAIT), f"https://webhook.test:{server.port}/hook")

    assert result == DeliveryResult(None, "tls handshake failed", result.duration_ms)
    assert names.get(timeout=WAIT) == "webhook.test"  # the name, not the address dialled
    assert isinstance(outcomes.get(timeout=WAIT), ssl.SSLError)
    assert server.requests == []


# ---------------------------------------------------------------------------------------- 7. redirects, Retry-After
@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
@pytest.mark.parametrize("where", ["absolute", "relative"])
def test_redirect_is_reported_and_never_followed(serve: Any, status: int, where: str) -> None:
    elsewhere = serve(keep_alive())
    location = elsewhere.url("/moved") if where == "absolute" else "/moved"
    server = serve(keep_alive(response(status, b"gone", f"Location: {location}", reason="Moved")))

    result = post(HttpSender(GUARD, timeout=WAIT), server.url("/hook"))

    assert (result.status_code, result.error) == (status, f"unexpected status code from webhook: {status}")
    assert result.response_body == "gone"
    assert [r.split(b" ")[1] for r in server.requests] == [b"/hook"]
    assert elsewhere.accepted == 0


@pytest.mark.parametrize(
    ("status", "retry_after", "expected"),
    [
        (429, "7", (7.0, 7.0)),
        (503, "7", (7.0, 7.0)),
        (503, "0", (0.0, 0.0)),
        (429, 120, (115.0, 120.0)),  # an HTTP-date this many seconds from now
        (503, -3600, (0.0, 0.0)),  # an HTTP-date in the past: now
        (429, None, None),
        (429, "soon", None),
        (500, "7", None),
        (502, "7", None),
        (200, "7", None),
        (301, "7", None),
    ],
)
def test_retry_after_is_read_only_for_429_and_503(
    serve: Any, status: int, retry_after: str | int | None, expected: tuple[float, float] | None
) -> None:
    if isinstance(retry_after, int):
        later = datetime.now(UTC) + timedelta(seconds=retry_after)
        retry_after = email.utils.format_datetime(later, usegmt=True)
    headers = [f"Retry-After: {retry_after}"] if retry_after is not None else []
    server = serve(keep_alive(response(status, b"", *headers)))

    result = post(HttpSender(GUARD, timeout=WAIT), server.url())

    assert result.status_code == status
    assert result.error == (None if status < 300 else f"unexpected status code from webhook: {status}")
    if expected is None:
        assert result.retry_after is None
    else:
        assert result.retry_after is not None and expected[0] <= result.retry_after <= expected[1]


# ---------------------------------------------------------------------------------------- 8. SSRF at connect
def test_host_resolving_to_a_private_address_is_blocked_before_dialling(dialled: Any) -> None:
    guard = DestinationGuard(allowed_cidrs=LOOPBACK, resolver=resolving({"rebound.test": ["10.0.0.1"]}))

    result = post(HttpSender(guard, timeout=WAIT), "http://rebound.test:8080/hook")

    assert result == DeliveryResult(None, CONNECT_MESSAGE, result.duration_ms, blocked=True)
    assert dialled == []


def test_one_private_address_among_allowed_ones_blocks_them_all(serve: Any, dialled: Any) -> None:
    server = serve(keep_alive())
    guard = DestinationGuard(allowed_cidrs=LOOPBACK, resolver=resolving({"mixed.test": ["127.0.0.1", "10.0.0.1"]}))

    result = post(HttpSender(guard, timeout=WAIT), f"http://mixed.test:{server.port}/hook")

    assert (result.status_code, result.error, result.blocked) == (None, CONNECT_MESSAGE, True)
    assert dialled == []


def test_unknown_host_is_a_dns_failure(dialled: Any) -> None:
    guard = DestinationGuard(allowed_cidrs=LOOPBACK, resolver=resolving({}))

    result = post(HttpSender(guard, timeout=WAIT), "http://nowhere.test/hook")

    assert result == DeliveryResult(None, "dns lookup failed", result.duration_ms)
    assert dialled == []


def test_second_address_is_used_when_the_first_refuses(serve: Any, dialled: Any) -> None:
    server = serve(keep_alive())  # on 127.0.0.1 only: 127.0.0.2 refuses on the same port
    guard = DestinationGuard(allowed_cidrs=LOOPBACK, resolver=resolving({"two.test": ["127.0.0.2", "127.0.0.1"]}))

    result = post(HttpSender(guard, timeout=WAIT), f"http://two.test:{server.port}/hook")

    assert (result.status_code, result.error) == (200, None)
    assert dialled == [("127.0.0.2", server.port), ("127.0.0.1", server.port)]
    assert server.requests[0].startswith(b"POST /hook HTTP/1.1\r\nHost: two.test:%d\r\n" % server.port)


def test_ipv6_loopback_works_when_allowed_and_is_blocked_otherwise(serve: Any) -> None:
    try:
        server = serve(keep_alive(), host="::1")
    except OSError:
        pytest.skip("no IPv6 loopback here")

    result = post(HttpSender(GUARD, timeout=WAIT), server.url())
    refused = post(HttpSender(DestinationGuard(allowed_cidrs=LOOPBACK[:1]), timeout=WAIT), server.url())

    assert (result.status_code, result.error) == (200, None)
    assert server.requests[0].startswith(b"POST /hook HTTP/1.1\r\nHost: [::1]:%d\r\n" % server.port)
    assert (refused.error, refused.blocked) == (CONNECT_MESSAGE, True)
    assert len(server.requests) == 1


# ---------------------------------------------------------------------------------------- 9. no proxies
def test_environment_proxies_are_ignored(serve: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    proxy = serve(keep_alive(response(502, b"proxy")))
    target = serve(keep_alive())
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.setenv(name, proxy.url(""))
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)

    result = post(HttpSender(GUARD, timeout=WAIT), target.url("/direct"))

    assert (result.status_code, result.response_body) == (200, "ok")
    assert target.requests[0].startswith(b"POST /direct HTTP/1.1\r\n")  # origin form: not a proxy request
    assert proxy.accepted == 0


# ---------------------------------------------------------------------------------------- 10. no cookies
def test_set_cookie_is_never_sent_back(receivers: Any) -> None:
    receiver = receivers()
    receiver.script("/hook", Answer(headers={"Set-Cookie": "a=b; Path=/"}), Answer(headers={"Set-Cookie": "c=d"}))
    sender = HttpSender(GUARD, timeout=WAIT)

    results = [post(sender, receiver.url(path)) for path in ("/hook", "/hook", "/hook", "/other")]

    assert [r.status_code for r in results] == [200] * 4
    assert [r.header("Cookie") for r in receiver.requests] == [None] * 4


# ---------------------------------------------------------------------------------------- 11. thread safety
def test_many_threads_to_several_servers_every_send_accounted_for(receivers: Any) -> None:
    servers = [receivers(), receivers(), receivers()]
    sender = HttpSender(GUARD, timeout=WAIT)

    def one(i: int) -> tuple[int, DeliveryResult]:
        return i, post(sender, servers[i % 3].url(f"/s/{i}"), body=b'{"i":%d}' % i)

    with ThreadPoolExecutor(16) as pool:
        results = dict(pool.map(one, range(200)))

    assert sorted(results) == list(range(200))
    assert {(r.status_code, r.error, r.response_body) for r in results.values()} == {(200, None, "ok")}
    for n, server in enumerate(servers):
        got = sorted((r.path, r.body) for r in server.requests)
        assert got == sorted((f"/s/{i}", b'{"i":%d}' % i) for i in range(n, 200, 3))
