"""Faults and probes put inside a function's execution environments.

The local stack runs each execution environment as a process of its own, so a test cannot patch
the dispatcher in its own process: it asks the stack to wrap the handler
(``stack.functions[name].wrap(f"{ROOT}=tests.integration.faults:<wrapper>", argument)``), and each new
environment calls the wrapper with the handler and the argument when it starts. Faults that must
happen a given number of times across every environment count down in a file (:class:`Budget`).
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import replace
from functools import lru_cache
from pathlib import Path
from typing import Any

Handler = Callable[[dict[str, Any], Any], Any]


class Budget:
    """How many more times a fault happens, shared by every environment through a file."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)

    @staticmethod
    def create(path: Path, count: int) -> str:
        path.write_text(str(count))
        return str(path)

    def take(self) -> bool:
        """One fault, if any is left."""
        with self.path.open("r+") as file:
            fcntl.flock(file, fcntl.LOCK_EX)
            left = int(file.read() or 0)
            if left <= 0:
                return False
            file.seek(0)
            file.truncate()
            file.write(str(left - 1))
            return True


def _dispatcher_with(**changes: Any) -> None:
    """This environment's dispatcher, its context changed (``DispatchContext`` fields)."""
    from devicehooks.dispatch import Dispatcher
    from devicehooks.handlers import dispatcher as worker

    changed = Dispatcher(replace(worker.dispatcher().ctx, **changes))
    worker.dispatcher = lru_cache(maxsize=1)(lambda: changed)


def flaky_dns(handler: Handler, budget: str) -> Handler:
    """Name lookups fail (``EAI_NONAME``) while the budget lasts."""
    from devicehooks.config import get_settings
    from devicehooks.delivery.sender import HttpSender
    from devicehooks.security.ssrf import DestinationGuard

    faults = Budget(budget)

    def resolver(host: str, port: int) -> Any:
        if faults.take():
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)

    settings = get_settings()
    guard = DestinationGuard(allowed_cidrs=settings.allowed_cidrs, resolver=resolver)
    _dispatcher_with(sender=HttpSender(guard, timeout=settings.delivery_timeout))
    return handler


def crash_on_send(handler: Handler, budget: str) -> Handler:
    """The sender raises (as a dispatcher crashing mid-batch would make it) while the budget lasts,
    once the budget's file says so: ``<file>`` holds how many sends pass first, then how many crash."""
    from devicehooks.handlers import dispatcher as worker

    sender = worker.dispatcher().ctx.sender
    real_send = sender.send
    passes, crashes = Budget(budget + ".pass"), Budget(budget)

    def crashing(request: Any) -> Any:
        if not passes.take() and crashes.take():
            raise RuntimeError("dispatcher crashed")
        return real_send(request)

    sender.send = crashing  # type: ignore[method-assign]
    return handler


def flaky_record(handler: Handler, budget: str) -> Handler:
    """Recording a success fails with a DynamoDB error while the budget lasts."""
    from botocore.exceptions import ClientError

    from devicehooks.handlers import dispatcher as worker

    activity = worker.dispatcher().ctx.activity
    real_record = activity.record
    faults = Budget(budget)

    def flaky(tenant_id: str, event_id: str, updates: Any, **options: Any) -> None:
        if any(status.state == "delivered" for status, _ in updates) and faults.take():
            raise ClientError({"Error": {"Code": "InternalServerError", "Message": "boom"}}, "UpdateItem")
        real_record(tenant_id, event_id, updates, **options)

    activity.record = flaky  # type: ignore[method-assign]
    return handler


def gated(handler: Handler, gate_url: str) -> Handler:
    """Each invocation reports to the test's gate (``tests.integration.gate.GateServer``) as it
    starts, waits until the gate lets it through, and reports again when it ends."""

    def call(path: str, body: dict[str, Any]) -> None:
        request = urllib.request.Request(
            gate_url + path, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=120) as answer:  # noqa: S310 - the test's own server
            answer.read()

    def run(event: dict[str, Any], context: Any) -> Any:
        records = event.get("Records") or []
        report = {
            "source": str(records[0].get("eventSourceARN", "")) if records else "",
            "bodies": [str(r.get("body", "")) for r in records],
            "request_id": context.aws_request_id,
            "remaining_ms": context.get_remaining_time_in_millis(),
            "pid": os.getpid(),
        }
        call("/enter", report)
        try:
            return handler(event, context)
        finally:
            call("/leave", {**report, "remaining_ms": context.get_remaining_time_in_millis()})

    return run


def report_environment(handler: Handler, folder: str) -> Handler:
    """Each invocation writes, in ``folder``, its process id, its thread, its environment's
    variable names and when it started and ended (wall clock, shared by every process); it lasts
    at least ``HOLD`` seconds, so that invocations overlap."""

    def run(event: dict[str, Any], context: Any) -> Any:
        started = time.monotonic()
        seen: dict[str, Any] = {
            "pid": os.getpid(),
            "thread": threading.get_ident(),
            "variables": sorted(os.environ),
            "function": context.function_name,
            "started": time.time(),
        }
        report = Path(folder) / f"{context.aws_request_id}.json"
        report.write_text(json.dumps(seen))
        try:
            return handler(event, context)
        finally:
            time.sleep(max(0.0, HOLD - (time.monotonic() - started)))
            report.write_text(json.dumps(seen | {"ended": time.time()}))

    return run


HOLD = 0.5
