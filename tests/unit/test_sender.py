"""HttpSender against real servers on loopback: what it puts on the wire, how it reads responses
(well-formed, odd and malformed), keep-alive pooling, body limits and decoding, the whole-attempt
deadline (DNS, connect, TLS, head, body), TLS, redirects, Retry-After, SSRF at connect, invalid
URLs, the environment it ignores, cookies and concurrency.

Raw socket servers are used wherever a response must be byte-exact or broken; the shared
``tests.receiver.Receiver`` where an ordinary HTTP server will do. Nothing sleeps and hopes: every
wait is for an event, a queue, a barrier, a condition or a TCP state, with a timeout; the only
pauses are the slow peers' own (a dripping server, a slow resolver). Times are only ever bounded.
"""

from __future__ import annotations

import email.utils
import gzip
import ipaddress
import queue
import socket
import ssl
import sys
import threading
import time
import tracemalloc
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from devicehooks.delivery.sender import MAX_BODY_READ, DeliveryResult, HttpSender, WebhookRequest
from devicehooks.delivery.signing import webhook_headers
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


def first_answer_then_ok(first: bytes) -> Handler:
    """Answer the server's very first request with ``first``, every other one with OK, keeping alive."""

    def handler(peer: Peer) -> None:
        if peer.request() is not None:
            peer.send(first if peer.number == 1 else OK)  # the client may stop reading ``first``: this may fail
            keep_alive()(peer)

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


_CONNECTS: dict[int, list[tuple[Any, ...]]] = {}  # thread id -> addresses its sockets connected to


def _record_connects(event: str, args: tuple[Any, ...]) -> None:
    if event == "socket.connect":
        calls = _CONNECTS.get(threading.get_ident())
        if calls is not None:
            calls.append(tuple(args[1]))


sys.addaudithook(_record_connects)  # audit hooks stay for the process: this one records only when asked


@pytest.fixture
def dialled() -> Iterator[list[tuple[Any, ...]]]:
    """Every address a socket connects to from the test's own thread (where ``send`` runs), seen
    through the interpreter's ``socket.connect`` audit event: whatever sockets the sender makes."""
    calls = _CONNECTS.setdefault(threading.get_ident(), [])
    yield calls
    del _CONNECTS[threading.get_ident()]


def head_of(request: bytes) -> tuple[str, list[tuple[str, str]]]:
    """A request's line and its headers, in order."""
    lines = request.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    return lines[0], [(name, value) for name, _, value in (line.partition(": ") for line in lines[1:])]


# ---------------------------------------------------------------------------------------- 1. the request on the wire
def test_post_sends_request_line_host_length_accept_encoding_headers_and_body_once_exactly(serve: Any) -> None:
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
        f"Content-Length: {len(body)}\r\n"
        "Accept-Encoding: gzip, deflate\r\n"
        "Content-Type: application/json\r\nX-Men-Signature: c2ln\r\nwebhook-id: msg_1\r\n"
        "\r\n"
    ).encode() + body
    assert seen.get(timeout=WAIT) == expected  # no User-Agent, Accept, Connection or Authorization of its own
    assert server.accepted == 1


def test_the_dispatchers_headers_are_sent_and_nothing_else(serve: Any) -> None:
    server = serve(keep_alive())
    body = b'{"id":"8a1d","type":"device-provisioned"}'
    headers = webhook_headers("8a1d", body, [b"current-key", b"previous-key"], 1_700_000_000)

    result = HttpSender(GUARD, timeout=WAIT).send(WebhookRequest(server.url(), body, headers))

    assert result.status_code == 200
    line, sent = head_of(server.requests[0])
    assert line == "POST /hook HTTP/1.1"
    assert sent == [
        ("Host", f"127.0.0.1:{server.port}"),
        ("Content-Length", str(len(body))),
        ("Accept-Encoding", "gzip, deflate"),
        *headers.items(),  # Content-Type, User-Agent, webhook-id, -timestamp, X-Men-*, webhook-signature
    ]
    assert server.requests[0].endswith(b"\r\n\r\n" + body)


def test_headers_the_sender_writes_itself_are_never_taken_from_the_request(serve: Any) -> None:
    server = serve(keep_alive())
    given = {
        "Host": "elsewhere.test",
        "content-length": "999",
        "Transfer-Encoding": "chunked",
        "Accept-Encoding": "br",
        "X-Kept": "1",
    }

    result = HttpSender(GUARD, timeout=WAIT).send(WebhookRequest(server.url(), b"abc", given))

    assert result.status_code == 200
    assert head_of(server.requests[0])[1] == [
        ("Host", f"127.0.0.1:{server.port}"),
        ("Content-Length", "3"),
        ("Accept-Encoding", "gzip, deflate"),
        ("X-Kept", "1"),
    ]
    assert server.requests[0].endswith(b"\r\n\r\nabc")


@pytest.mark.parametrize(
    ("path", "target"),
    [
        ("/hook", "/hook"),
        ("/a b/caf\u00e9?q=\u00fc&r=a b", "/a%20b/caf%C3%A9?q=%C3%BC&r=a%20b"),  # raw spaces and non-ASCII: encoded
        ("/%7Euser/%41?x=%7e&y=%2F", "/%7Euser/%41?x=%7E&y=%2F"),  # escapes kept (their hex upper-cased)
        ("/p;params?a=1&a=2&b=%zz", "/p;params?a=1&a=2&b=%25zz"),  # a broken escape: its % encoded
        ('/a\x00b\x7f?c="<>`{}|\\^', "/a%00b%7F?c=%22%3C%3E%60%7B%7D%7C%5C%5E"),  # controls and unsafe characters
        ("/../a/./b/../c", "/a/c"),  # dot segments removed
        ("", "/"),  # no path at all
        ("?only=query", "/?only=query"),
        ("/x#fragment", "/x"),  # the fragment is never sent
    ],
)
def test_request_target_is_the_url_as_urllib3_encodes_it(serve: Any, path: str, target: str) -> None:
    server = serve(keep_alive())

    result = post(HttpSender(GUARD, timeout=WAIT), server.url(path))

    assert result.status_code == 200
    assert head_of(server.requests[0])[0] == f"POST {target} HTTP/1.1"


@pytest.mark.parametrize(
    ("user_info", "credentials"),
    [
        ("user:p%40ss", "dXNlcjpwQHNz"),  # user:p@ss, percent-decoded
        ("%E2%82%AC:pw", "4oKsOnB3"),  # a non-Latin-1 name: its UTF-8 bytes, as Go's net/http sends them
        ("user", "dXNlcjo="),  # no password: "user:"
        (":secret", "OnNlY3JldA=="),  # no user name: ":secret"
    ],
)
def test_url_user_info_is_sent_as_basic_credentials(serve: Any, user_info: str, credentials: str) -> None:
    server = serve(keep_alive())
    url = f"http://{user_info}@127.0.0.1:{server.port}/hook"

    result = post(HttpSender(GUARD, timeout=WAIT), url, Authorization="Bearer given")  # the URL's win

    assert result.status_code == 200
    sent = head_of(server.requests[0])[1]
    assert [value for name, value in sent if name.lower() == "authorization"] == [f"Basic {credentials}"]


def test_host_name_is_resolved_and_sent_as_urllib3_dials_it(serve: Any, dialled: Any) -> None:
    server = serve(keep_alive())
    asked: list[str] = []
    known = resolving({"xn--bcher-kva.test.": ["127.0.0.1"]})

    def resolver(host: str, port: int) -> list[tuple[Any, ...]]:
        asked.append(host)
        return known(host, port)

    guard = DestinationGuard(allowed_cidrs=LOOPBACK, resolver=resolver)

    result = post(HttpSender(guard, timeout=WAIT), f"http://B\u00fccher.TEST.:{server.port}/hook")

    assert (result.status_code, result.error) == (200, None)
    assert asked == ["xn--bcher-kva.test."]  # IDNA, lower case, the trailing dot kept for the lookup
    assert dialled == [("127.0.0.1", server.port)]
    assert ("Host", f"xn--bcher-kva.test:{server.port}") in head_of(server.requests[0])[1]  # and dropped here


@pytest.mark.parametrize(
    ("url", "error"),
    [
        ("http://\u2488.test/hook", "invalid url: cannot be parsed"),  # a host IDNA refuses
        ("http://\ud800.test/hook", "invalid url: cannot be parsed"),  # a lone surrogate
        ("http://exa mple.test/hook", "invalid url: cannot be parsed"),
        ("http://example.test:99999/hook", "invalid url: cannot be parsed"),  # port out of range
        ("http://example.test:http/hook", "invalid url: cannot be parsed"),
        ("ftp://example.test/hook", "invalid url: the scheme must be http or https"),
        ("example.test/hook", "invalid url: the scheme must be http or https"),
        ("http:///hook", "invalid url: no host"),
        ("", "invalid url: the scheme must be http or https"),
    ],
)
def test_url_that_cannot_be_sent_to_is_a_result_and_dials_nothing(url: str, error: str, dialled: Any) -> None:
    result = post(HttpSender(GUARD, timeout=WAIT), url)

    assert result == DeliveryResult(None, error, result.duration_ms)
    assert dialled == []


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({"X-Bad": "a\r\nInjected: 1"}, id="value-with-crlf"),
        pytest.param({"X-Bad:Name": "v"}, id="name-with-colon"),
        pytest.param({"X-Euro": "\u20ac"}, id="value-not-latin-1"),
    ],
)
def test_header_http_client_refuses_raises_and_nothing_is_sent(serve: Any, headers: dict[str, str]) -> None:
    # the dispatcher's own headers never look like this: a caller's bug, not a delivery outcome
    server = serve(keep_alive())
    sender = HttpSender(GUARD, timeout=WAIT)

    with pytest.raises(ValueError):
        sender.send(WebhookRequest(server.url(), b"{}", headers))

    assert post(sender, server.url()).status_code == 200  # the sender is none the worse
    assert len(server.requests) == 1
    assert b"Injected" not in server.requests[0]


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


def test_bytes_after_a_response_are_never_read_as_the_next_response(serve: Any) -> None:
    # A peer that sends more than it was asked for: urllib3 drops what it buffered with the
    # response, and a pooled connection with unread bytes waiting counts as dropped. Either way
    # the next POST reads only its own answer (the old client also refused to reuse the connection)
    server = serve(keep_alive(OK + b"HTTP/1.1 500 Stale\r\nContent-Length: 5\r\n\r\nstale"))
    sender = HttpSender(GUARD, timeout=WAIT)

    results = [post(sender, server.url()) for _ in range(3)]

    assert [(r.status_code, r.error, r.response_body) for r in results] == [(200, None, "ok")] * 3
    assert len(server.requests) == 3


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


@pytest.mark.parametrize(
    "interim",
    [
        pytest.param(b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n", id="103"),
        pytest.param(b"HTTP/1.1 102 Processing\r\n\r\nHTTP/1.1 103 Early Hints\r\n\r\n", id="102-then-103"),
        pytest.param(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n", id="101-never-asked-for"),
    ],
)
def test_other_interim_responses_are_skipped_too(serve: Any, interim: bytes) -> None:
    server = serve(keep_alive(interim + response(500, b"broken")))
    sender = HttpSender(GUARD, timeout=WAIT)

    results = [post(sender, server.url()), post(sender, server.url())]

    assert [(r.status_code, r.error, r.response_body) for r in results] == [
        (500, "unexpected status code from webhook: 500", "broken")
    ] * 2
    assert server.accepted == 1


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
        pytest.param(
            b"HTTP/1.1 103 Early Hints\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(101)) + b"\r\n" + OK,
            id="more-than-100-headers-in-an-interim-response",
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
        pytest.param(b"HTTP/1.1 103 Early Hints\r\n\r\n", id="only-an-interim-response"),
    ],
)
def test_malformed_or_missing_response_is_a_connection_failure_result(serve: Any, answer: bytes) -> None:
    server = serve(answer_then_close(answer))  # the peer answers this, then closes

    result = post(HttpSender(GUARD, timeout=WAIT), server.url())

    assert result == DeliveryResult(None, "connection failed", result.duration_ms)
    assert len(server.requests) == 1  # and it was not retried
    assert server.accepted == 1


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
        pytest.param(
            b"HTTP/1.1 200 OK\r\nContent-Encoding: deflate\r\nContent-Length: 4\r\n\r\n\xff\xff\xff\xff",
            id="bad-deflate",
        ),
        pytest.param(b"HTTP/1.1 200 OK\r\nContent-Le", id="head-cut-after-the-status-line"),  # as http.client
    ],
)
def test_broken_body_keeps_the_status_and_drops_the_connection(serve: Any, answer: bytes) -> None:
    server = serve(answer_then_close(answer))
    sender = HttpSender(GUARD, timeout=WAIT)

    result = post(sender, server.url())

    assert (result.status_code, result.error) == (200, None)
    assert isinstance(result.response_body, str)


@pytest.mark.parametrize(
    ("answer", "reusable"),
    [
        pytest.param(
            b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 9\r\n\r\nnot gzip!",
            True,
            id="undecodable-but-read-to-its-end",
        ),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nab\r\n0\r\n\r\n", False, id="bad-chunk"
        ),
    ],
)
def test_connection_is_reused_only_after_a_body_read_to_its_end(serve: Any, answer: bytes, reusable: bool) -> None:
    # the server goes on answering on the connection: only the sender's own rule decides whether
    # it is used again (a body decoding failed on was still read to its end: its framing is intact)
    server = serve(first_answer_then_ok(answer))
    sender = HttpSender(GUARD, timeout=WAIT)

    results = [post(sender, server.url()), post(sender, server.url())]

    assert [(r.status_code, r.error) for r in results] == [(200, None)] * 2
    assert results[1].response_body == "ok"
    assert server.accepted == (1 if reusable else 2)


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


def test_connections_are_kept_for_at_most_pool_size_hosts(serve: Any) -> None:
    first, second = serve(keep_alive()), serve(keep_alive())
    sender = HttpSender(GUARD, timeout=WAIT, pool_size=1)

    results = [post(sender, first.url()), post(sender, second.url()), post(sender, first.url())]

    assert [r.status_code for r in results] == [200] * 3
    assert (first.accepted, second.accepted) == (2, 1)  # the first host's pool made way for the second's
    first.wait_until(lambda: first.open == 1, "the first host's evicted connection to be closed")
    second.wait_until(lambda: second.open == 0, "the second host's evicted connection to be closed")


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
    server = serve(first_answer_then_ok(first))
    sender = HttpSender(GUARD, timeout=WAIT)

    result = post(sender, server.url())

    assert (result.status_code, result.error) == (200, None)
    assert result.response_body == big[:256].decode()
    assert post(sender, server.url()).status_code == 200
    assert server.accepted == 2  # not drained for reuse: dropped


def test_body_not_read_to_its_end_closes_the_connection_even_with_nothing_left_waiting(serve: Any) -> None:
    # the server sends exactly as much of a longer body as the sender reads, and no more: nothing
    # is left on the socket to make the idle connection look dropped, so only the sender's own rule
    # (close what was not read to its end) keeps it from being used again
    first = b"HTTP/1.1 200 OK\r\nContent-Length: 200000\r\n\r\n" + b"x" * (MAX_BODY_READ + 1)
    server = serve(first_answer_then_ok(first))
    sender = HttpSender(GUARD, timeout=WAIT)

    results = [post(sender, server.url()), post(sender, server.url())]

    assert [(r.status_code, r.error, r.response_body) for r in results] == [(200, None, "x" * 256), (200, None, "ok")]
    assert server.accepted == 2


def test_body_of_exactly_64_kib_is_read_to_its_end_and_the_connection_kept(serve: Any) -> None:
    body = b"x" * MAX_BODY_READ
    server = serve(first_answer_then_ok(response(200, body)))
    sender = HttpSender(GUARD, timeout=WAIT)

    results = [post(sender, server.url()), post(sender, server.url())]

    assert [(r.status_code, r.response_body) for r in results] == [(200, "x" * 256), (200, "ok")]
    assert server.accepted == 1


def test_compressed_body_padded_past_64_kib_is_not_read_to_its_end(serve: Any) -> None:
    # a tiny gzip member followed by megabytes the decoder swallows: decoded it stays small, but
    # reading it all would take the sender far past the 64 KiB it may read of a response
    padded = gzip.compress(b"tiny") + bytes(4 * 1024 * 1024)
    first = response(200, padded, "Content-Encoding: gzip")
    server = serve(first_answer_then_ok(first))
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
        ("gzip", gzip.compress(b"decoded ") + gzip.compress(b"body")),  # two gzip members
    ],
)
def test_gzip_and_deflate_bodies_are_decoded_for_the_snippet(serve: Any, encoding: str, encoded: bytes) -> None:
    server = serve(keep_alive(response(200, encoded, f"Content-Encoding: {encoding}")))
    sender = HttpSender(GUARD, timeout=WAIT)

    result = post(sender, server.url())

    assert (result.status_code, result.response_body) == (200, "decoded body")
    assert post(sender, server.url()).response_body == "decoded body"
    assert server.accepted == 1


@pytest.mark.parametrize("encoding", ["br", "zstd", "identity", "gzip, deflate", "compress"])
def test_codings_not_asked_for_are_left_as_they_are(serve: Any, encoding: str) -> None:
    server = serve(keep_alive(response(200, b"as sent", f"Content-Encoding: {encoding}")))

    result = post(HttpSender(GUARD, timeout=WAIT), server.url())

    assert (result.status_code, result.response_body) == (200, "as sent")


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


# ---------------------------------------------------------------------------------------- 5. the deadline
def test_server_that_never_answers_times_out_after_the_timeout(serve: Any) -> None:
    def handler(peer: Peer) -> None:
        peer.request()
        peer.server.stopping.wait(WAIT)  # read it, say nothing

    server = serve(handler)
    started = time.monotonic()

    result = post(HttpSender(GUARD, timeout=TIMEOUT), server.url())

    elapsed = time.monotonic() - started
    assert (result.status_code, result.error) == (None, "timeout waiting for the response")
    assert TIMEOUT * 0.9 <= elapsed < TIMEOUT + 1
    assert len(server.requests) == 1  # not retried


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
    assert elapsed < TIMEOUT + 1


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
    assert elapsed < TIMEOUT + 1


def test_slow_dns_cannot_hold_the_sender_and_one_lookup_serves_every_waiting_delivery() -> None:
    release = threading.Event()
    asked: list[str] = []

    def slow(host: str, port: int) -> list[tuple[Any, ...]]:  # getaddrinfo stuck on a silent name server
        asked.append(host)
        release.wait(WAIT)
        return resolving({"slow.test": ["127.0.0.1"]})(host, port)

    sender = HttpSender(DestinationGuard(allowed_cidrs=LOOPBACK, resolver=slow), timeout=TIMEOUT)
    started = time.monotonic()
    try:
        with ThreadPoolExecutor(4) as pool:
            results = list(pool.map(lambda _: post(sender, "http://slow.test:9/hook"), range(4)))
        elapsed = time.monotonic() - started
    finally:
        release.set()

    assert [(r.status_code, r.error) for r in results] == [(None, "dns lookup failed")] * 4
    assert elapsed < TIMEOUT + 1
    assert asked == ["slow.test"]  # one lookup in flight per name, however many deliveries wait


def test_one_deadline_spans_the_lookup_and_the_response(serve: Any) -> None:
    # 0.8 s of DNS then a dripping server: a deadline per stage would end after 1.8 s at least
    timeout, lookup = 1.0, 0.8

    def handler(peer: Peer) -> None:
        if peer.request() is not None:
            peer.drip(OK)

    server = serve(handler)
    known = resolving({"slow.test": ["127.0.0.1"]})

    def slow(host: str, port: int) -> list[tuple[Any, ...]]:
        server.stopping.wait(lookup)
        return known(host, port)

    sender = HttpSender(DestinationGuard(allowed_cidrs=LOOPBACK, resolver=slow), timeout=timeout)
    started = time.monotonic()

    result = post(sender, f"http://slow.test:{server.port}/hook")

    elapsed = time.monotonic() - started
    assert (result.status_code, result.error) == (None, "timeout waiting for the response")
    assert len(server.requests) == 1  # it was sent, within the time left
    assert elapsed < timeout + 0.5


def test_closed_port_is_connection_refused() -> None:
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))  # bound, never listening: the port is ours and refuses
    try:
        result = post(HttpSender(GUARD, timeout=WAIT), f"http://127.0.0.1:{holder.getsockname()[1]}/hook")
    finally:
        holder.close()

    assert result == DeliveryResult(None, "connection refused", result.duration_ms)


@pytest.fixture
def full_backlog() -> Iterator[int]:
    """A port whose listener's accept queue is full: Linux drops the SYNs, the handshake never
    completes (an offline stand-in for a non-routable address)."""
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
        yield port
    finally:
        for sock in fillers:
            sock.close()
        listener.close()


def test_listener_with_a_full_backlog_is_a_connect_timeout(full_backlog: int) -> None:
    started = time.monotonic()

    result = post(HttpSender(GUARD, timeout=TIMEOUT), f"http://127.0.0.1:{full_backlog}/hook")

    elapsed = time.monotonic() - started
    assert result == DeliveryResult(None, "connect timeout", result.duration_ms)
    assert elapsed < TIMEOUT + 1


def test_connect_timeout_to_the_first_address_leaves_no_time_for_the_next(full_backlog: int, dialled: Any) -> None:
    guard = DestinationGuard(allowed_cidrs=LOOPBACK, resolver=resolving({"two.test": ["127.0.0.1", "127.0.0.2"]}))
    started = time.monotonic()

    result = post(HttpSender(guard, timeout=TIMEOUT), f"http://two.test:{full_backlog}/hook")

    assert result == DeliveryResult(None, "connect timeout", result.duration_ms)
    assert time.monotonic() - started < TIMEOUT + 1
    assert dialled == [("127.0.0.1", full_backlog)]


# ---------------------------------------------------------------------------------------- 6. TLS
@pytest.fixture(scope="module")
def certificate() -> tuple[str, str]:
    return _self_signed_certificate()  # for 127.0.0.1 (an IP SAN), self-signed


@pytest.fixture
def trusted(certificate: tuple[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Make the test certificate the whole trust store: OpenSSL reads its default store from these
    variables, so the sender's own context (the system store) is what is exercised."""
    monkeypatch.setenv("SSL_CERT_FILE", certificate[0])
    monkeypatch.setenv("SSL_CERT_DIR", str(tmp_path))  # empty


def _server_context(certificate: tuple[str, str]) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*certificate)
    return context


def _tls_server(serve: Any, certificate: tuple[str, str]) -> tuple[RawServer, queue.Queue[Any], queue.Queue[Any]]:
    """A TLS server with ``certificate``: reports each handshake's outcome and SNI, then keeps alive."""
    context = _server_context(certificate)
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


@pytest.mark.usefixtures("trusted")
def test_trusted_certificate_succeeds_and_the_connection_is_kept(serve: Any, certificate: Any) -> None:
    server, outcomes, _ = _tls_server(serve, certificate)
    sender = HttpSender(GUARD, timeout=WAIT)

    results = [post(sender, server.url(scheme="https")), post(sender, server.url(scheme="https"))]

    assert [(r.status_code, r.error, r.response_body) for r in results] == [(200, None, "ok")] * 2
    assert outcomes.get(timeout=WAIT) == "handshake done"
    assert server.accepted == 1
    assert server.requests[0].startswith(b"POST /hook HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n" % server.port)


@pytest.mark.usefixtures("trusted")
def test_certificate_is_checked_against_the_url_host_name_sent_as_sni(serve: Any, certificate: Any) -> None:
    server, outcomes, names = _tls_server(serve, certificate)  # trusted, but for 127.0.0.1
    guard = DestinationGuard(allowed_cidrs=LOOPBACK, resolver=resolving({"webhook.test": ["127.0.0.1"]}))

    result = post(HttpSender(guard, timeout=WAIT), f"https://webhook.test:{server.port}/hook")

    assert result == DeliveryResult(None, "tls handshake failed", result.duration_ms)
    assert names.get(timeout=WAIT) == "webhook.test"  # the name, not the address dialled
    assert isinstance(outcomes.get(timeout=WAIT), ssl.SSLError)
    assert server.requests == []


def test_tls_handshake_that_never_completes_cannot_hold_the_sender_past_the_timeout(serve: Any) -> None:
    server = serve(lambda peer: peer.server.stopping.wait(WAIT))  # takes the ClientHello, never answers
    started = time.monotonic()

    result = post(HttpSender(GUARD, timeout=TIMEOUT), server.url(scheme="https"))

    assert result == DeliveryResult(None, "timeout waiting for the response", result.duration_ms)
    assert time.monotonic() - started < TIMEOUT + 1


@pytest.mark.usefixtures("trusted")
def test_tls_server_dripping_its_body_cannot_hold_the_sender_past_the_timeout(serve: Any, certificate: Any) -> None:
    context = _server_context(certificate)

    def handler(peer: Peer) -> None:
        peer.start_tls(context)
        if peer.request() is not None:
            peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: 60\r\n\r\n")
            peer.drip(b"b" * 60)  # one TLS record per byte

    server = serve(handler)
    started = time.monotonic()

    result = post(HttpSender(GUARD, timeout=TIMEOUT), server.url(scheme="https"))

    assert (result.status_code, result.error) == (200, None)
    assert time.monotonic() - started < TIMEOUT + 1


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
        (503, "1.5", (1.5, 1.5)),
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
    assert len(server.requests) == 1  # never retried, whatever the status and Retry-After


# ---------------------------------------------------------------------------------------- 8. SSRF at connect
def test_host_resolving_to_a_private_address_is_blocked_before_dialling(dialled: Any) -> None:
    guard = DestinationGuard(allowed_cidrs=LOOPBACK, resolver=resolving({"rebound.test": ["10.0.0.1"]}))

    result = post(HttpSender(guard, timeout=WAIT), "http://rebound.test:8080/hook")

    assert result == DeliveryResult(None, CONNECT_MESSAGE, result.duration_ms, blocked=True)
    assert dialled == []


@pytest.mark.parametrize(
    "url",
    [
        "http://10.0.0.1:8080/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://0x0a000001:8080/hook",  # 10.0.0.1, as inet_aton reads it
        "http://[::ffff:10.0.0.1]:8080/hook",
        "http://[fe80::1%25lo]:8080/hook",
        "https://10.0.0.1:8443/hook",  # refused before any TLS
    ],
)
def test_address_in_the_url_is_checked_too(url: str, dialled: Any) -> None:
    result = post(HttpSender(GUARD, timeout=WAIT), url)

    assert result == DeliveryResult(None, CONNECT_MESSAGE, result.duration_ms, blocked=True)
    assert dialled == []


def test_one_private_address_among_allowed_ones_blocks_them_all(serve: Any, dialled: Any) -> None:
    server = serve(keep_alive())
    guard = DestinationGuard(allowed_cidrs=LOOPBACK, resolver=resolving({"mixed.test": ["127.0.0.1", "10.0.0.1"]}))

    result = post(HttpSender(guard, timeout=WAIT), f"http://mixed.test:{server.port}/hook")

    assert (result.status_code, result.error, result.blocked) == (None, CONNECT_MESSAGE, True)
    assert dialled == []


def test_every_new_connection_is_checked_again(serve: Any, dialled: Any) -> None:
    server = serve(keep_alive(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok"))
    names = {"rebind.test": ["127.0.0.1"]}
    sender = HttpSender(DestinationGuard(allowed_cidrs=LOOPBACK, resolver=resolving(names)), timeout=WAIT)

    first = post(sender, f"http://rebind.test:{server.port}/hook")
    names["rebind.test"] = ["10.0.0.1"]  # DNS rebinding: the name now points inside
    second = post(sender, f"http://rebind.test:{server.port}/hook")

    assert (first.status_code, first.error) == (200, None)
    assert (second.status_code, second.error, second.blocked) == (None, CONNECT_MESSAGE, True)
    assert dialled == [("127.0.0.1", server.port)]
    assert len(server.requests) == 1


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


def test_every_address_refusing_is_connection_refused(dialled: Any) -> None:
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))  # bound, never listening: refuses on 127.0.0.1 (127.0.0.2 has nothing)
    port = holder.getsockname()[1]
    guard = DestinationGuard(allowed_cidrs=LOOPBACK, resolver=resolving({"two.test": ["127.0.0.2", "127.0.0.1"]}))
    try:
        result = post(HttpSender(guard, timeout=WAIT), f"http://two.test:{port}/hook")
    finally:
        holder.close()

    assert result == DeliveryResult(None, "connection refused", result.duration_ms)
    assert dialled == [("127.0.0.2", port), ("127.0.0.1", port)]


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


# ---------------------------------------------------------------------------------------- 9. the environment
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


def test_netrc_credentials_are_never_sent(serve: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / ".netrc").write_text("machine 127.0.0.1 login user password secret\n")
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("NETRC", str(tmp_path / ".netrc"))
    server = serve(keep_alive())

    result = post(HttpSender(GUARD, timeout=WAIT), server.url())

    assert result.status_code == 200
    assert b"Authorization" not in server.requests[0]


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
