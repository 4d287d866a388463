"""A gate before a function's handler, across its execution environments (processes of their own).

The test runs :class:`GateServer`; the stack wraps the function's handler with
``tests.integration.faults:gated`` pointed at it. Each invocation reports as it starts (its event
source, its records' bodies, its context's time left, its process) and is held there while it
carries an event of a held tenant and the gate is closed; it reports again when it ends. The
server counts the invocations in flight per source and their peak.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

WAIT = 20.0  # the bound of every wait for something to happen


def tenant_of(body: str) -> str:
    """The tenant of a dispatch-queue event or a retry task."""
    try:
        message = json.loads(body)
    except ValueError:
        return ""
    if not isinstance(message, dict):
        return ""
    detail = message.get("detail")
    return str((detail.get("tenant_id") if isinstance(detail, dict) else message.get("tenant_id")) or "")


class GateServer:
    """The gate's state, served on a loopback port (``url``)."""

    def __init__(self, held: set[str]) -> None:
        self.held = held
        self._changed = threading.Condition()
        self._open = False
        self.in_flight: Counter[str] = Counter()
        self.peak: Counter[str] = Counter()
        self.waiting = 0  # invocations held at the gate now
        self.seen: list[tuple[str, bool]] = []  # (tenant, whether the gate was open when it arrived)
        self.request_ids: list[str] = []
        self.pids: set[int] = set()
        self.remaining: dict[str, list[int]] = {}  # an invocation's time left as it arrived, and as it ended
        gate = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                report = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
                (gate.enter if self.path == "/enter" else gate.leave)(report)
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's naming
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def enter(self, report: dict[str, Any]) -> None:
        source = report["source"]
        tenants = {tenant_of(body) for body in report["bodies"]}
        with self._changed:
            self.in_flight[source] += 1
            self.peak[source] = max(self.peak[source], self.in_flight[source])
            self.seen += [(tenant, self._open) for tenant in tenants]
            self.request_ids.append(report["request_id"])
            self.pids.add(report["pid"])
            self._changed.notify_all()
            if tenants & self.held and not self._open:
                self.remaining[report["request_id"]] = [report["remaining_ms"]]
                self.waiting += 1
                self._changed.notify_all()
                self._changed.wait_for(lambda: self._open, timeout=60)
                self.waiting -= 1

    def leave(self, report: dict[str, Any]) -> None:
        with self._changed:
            self.in_flight[report["source"]] -= 1
            if report["request_id"] in self.remaining:
                self.remaining[report["request_id"]].append(report["remaining_ms"])
            self._changed.notify_all()

    def wait_until(self, check: Callable[[], bool], what: str) -> None:
        with self._changed:
            if not self._changed.wait_for(check, timeout=WAIT):
                raise AssertionError(
                    f"not within {WAIT}s: {what} (held {self.waiting}, in flight {dict(self.in_flight)})"
                )

    def open(self) -> None:
        with self._changed:
            self._open = True
            self._changed.notify_all()

    def close(self) -> None:
        self.open()
        self._server.shutdown()
        self._server.server_close()
