"""The webhook receiver of the benchmarks: a small HTTP/1.1 keep-alive server in its own process.

Run by the benchmarks (``receiver.Receiver.start``), never imported into the process being
measured, so it does not share that process's GIL. Every POST is answered ``200`` with a tiny
body, after ``--delay`` seconds (``--hang`` seconds when the path starts with ``/hang``, ``--late``
seconds when it starts with ``/late``: an endpoint that answers, late but within the timeout), and
logged with the path, the ``webhook-id`` header, the body and the time it was *received* (the
request fully read, before any delay), on ``time.monotonic()``: CLOCK_MONOTONIC, which is one
clock for every process of the machine, so the benchmarks compare it with their own.

Control (GET): ``/_log?since=N`` the log from entry N as JSON (``[path, webhook_id, received,
device_id]``, the device id read from the body), ``/_count`` how many POSTs arrived, ``/_reset``.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

LOG: list[tuple[str, str | None, float, bytes]] = []  # list.append is atomic: no lock needed
LOCK = threading.Lock()  # only for reset
DELAY = 0.0
HANG = 5.0
LATE = 1.5
ANSWER = b'{"ok":true}'
RESPONSE = (
    b"HTTP/1.1 200 OK\r\nServer: bench-receiver\r\nContent-Type: application/json\r\n"
    b"Content-Length: %d\r\n\r\n%s" % (len(ANSWER), ANSWER)
)


def _device(body: bytes) -> str | None:
    try:
        data = json.loads(body)["data"]
        return str(data.get("id") or data.get("device_id"))
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive
    disable_nagle_algorithm = True  # headers and body are two writes: no Nagle/delayed-ACK stall

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        LOG.append((self.path, self.headers.get("webhook-id"), time.monotonic(), body))
        pause = HANG if self.path.startswith("/hang") else LATE if self.path.startswith("/late") else DELAY
        if pause:
            time.sleep(pause)
        try:  # one write, as real servers answer (http.server would write the headers, then the body)
            self.wfile.write(RESPONSE)
        except OSError:
            self.close_connection = True  # the client gave up (a hang past its timeout)

    def do_GET(self) -> None:  # noqa: N802
        parts = urlsplit(self.path)
        payload: Any
        if parts.path == "/_count":
            payload = len(LOG)
        elif parts.path == "/_log":
            since = int(parse_qs(parts.query).get("since", ["0"])[0])
            payload = [[p, w, t, _device(b)] for p, w, t, b in LOG[since:]]
        elif parts.path == "/_reset":
            with LOCK:
                LOG.clear()
            payload = 0
        else:
            self.send_error(404)
            return
        data = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's signature
        return


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 512


def main() -> None:
    global DELAY, HANG, LATE
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--delay", type=float, default=0.0, help="seconds before answering a POST")
    parser.add_argument("--hang", type=float, default=5.0, help="seconds before answering a POST to /hang*")
    parser.add_argument("--late", type=float, default=1.5, help="seconds before answering a POST to /late*")
    args = parser.parse_args()
    DELAY, HANG, LATE = args.delay, args.hang, args.late
    server = Server(("127.0.0.1", args.port), Handler)
    print(f"listening on {server.server_address[1]}", flush=True)
    sys.stdout.close()
    server.serve_forever(poll_interval=0.5)


if __name__ == "__main__":
    main()
