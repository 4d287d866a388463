"""One Lambda execution environment of the local stack: ``python -m devicehooks_dev.local.runtime``.

A process of its own, started by :class:`devicehooks_dev.local.environments.ExecutionEnvironment`
with exactly its function's environment variables. Like Lambda's Python runtime it puts the
function's code directory first on ``sys.path``, imports the handler's module (the init phase: a
real cold start), then runs one invocation at a time, as the stack hands them over the connection
inherited on ``--fd``: an event in, the handler's answer (or its error) out. It ends when the
connection closes (its stack stopped, or died). Terminal signals do not reach it (it runs in a
session of its own): the stack stops it.

This module imports nothing of the project until the handler's module does, so that the
environment's cold start is the function's own.

**CPU.** On AWS each execution environment has CPU of its own, and AWS's services answer from
elsewhere; here every environment, moto and the stack share the machine's cores. Each environment
runs in a session of its own, which Linux schedules as one group (autogroup): it gets a fair share
of the CPU however many threads it runs (a dispatcher fanning out to 10 webhooks does not take ten
times the CPU of another tenant's invocation), and its group's weight is a tenth of moto's
(:data:`AUTOGROUP_NICE`; moto and the stack run in sessions of their own at the default weight), so
a burst of invocations cannot starve the emulated AWS all of them wait on. P8 measured another
tenant's 10 deliveries behind a backlog at 3.5-5.3 times their time alone with environments and
moto at equal weight, 2.7-2.9 with this.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
import traceback
import uuid
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

REGION_ARN = "arn:aws:lambda:us-east-1:123456789012:function:"
AUTOGROUP_NICE = 10  # see the module: an environment's scheduling weight, a tenth of moto's


class LambdaContext:
    """The attributes of Lambda's context object that handlers and Powertools read; made when the
    invocation starts, so ``get_remaining_time_in_millis`` counts the function's timeout down from then."""

    def __init__(self, function_name: str, timeout: float, memory: int, request_id: str | None = None) -> None:
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.invoked_function_arn = REGION_ARN + function_name
        self.memory_limit_in_mb = memory
        self.aws_request_id = request_id or str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = "local"
        self.identity = None
        self.client_context = None
        self._deadline = time.monotonic() + timeout

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


Handler = Callable[[dict[str, Any], Any], Any]


def load_handler(code_uri: Path, handler: str) -> Handler:
    """The function ``handler`` (``module.attribute``) of the code in ``code_uri``, as Lambda loads it."""
    module_name, _, attribute = handler.rpartition(".")
    sys.path.insert(0, str(code_uri))
    module = importlib.import_module(module_name)
    found: Handler = getattr(module, attribute)
    return found


def _wrapped(handler: Handler, wrap: str | None, argument: str) -> Handler:
    """``handler``, or what ``wrap`` (``[directory=]module:function``, called with the handler and
    ``argument``) makes of it: tests put faults or gates around a function inside its environments
    (the directory, on ``sys.path`` after the function's code, is where the wrapper's module is)."""
    if not wrap:
        return handler
    directory, _, wrap = wrap.rpartition("=")
    if directory:
        sys.path.append(directory)
    module_name, _, attribute = wrap.partition(":")
    wrapper: Callable[[Handler, str], Handler] = getattr(importlib.import_module(module_name), attribute)
    return wrapper(handler, argument)


def _lower_priority() -> None:
    """This environment's CPU share below AWS's and the event sources' (see the module)."""
    try:
        with open("/proc/self/autogroup", "w") as autogroup:
            autogroup.write(str(AUTOGROUP_NICE))
    except OSError:
        pass  # no autogroups here (another kernel, or turned off): the share stays the scheduler's


def serve(connection: Connection, handler: Handler, function_name: str, timeout: float, memory: int) -> None:
    """Run invocations one at a time until the connection closes."""
    while True:
        try:
            message = connection.recv()
        except (EOFError, OSError):
            return
        if message is None:
            return
        context = LambdaContext(function_name, timeout, memory, message.get("request_id"))
        started = time.monotonic()
        try:
            answer: dict[str, Any] = {"result": handler(message["event"], context)}
        except Exception as exc:  # noqa: BLE001 - Lambda reports a handler's error to its invoker
            traceback.print_exc()
            answer = {"error": type(exc).__name__, "message": str(exc)}
        answer["duration"] = time.monotonic() - started  # what Lambda bills: the handler's own time
        sys.stdout.flush()
        sys.stderr.flush()
        try:
            connection.send(answer)
        except (EOFError, OSError):
            return


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devicehooks_dev.local.runtime")
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--code-uri", type=Path, required=True)
    parser.add_argument("--handler", required=True)
    parser.add_argument("--function-name", required=True)
    parser.add_argument("--timeout", type=float, required=True)
    parser.add_argument("--memory", type=int, required=True)
    parser.add_argument("--wrap", default="")
    parser.add_argument("--wrap-arg", default="")
    parser.add_argument("--record-calls", default="", help="record the AWS calls in this directory (callrecorder)")
    args = parser.parse_args(argv)
    connection = Connection(args.fd)
    _lower_priority()
    started = time.monotonic()
    if args.record_calls:  # before the handler's module makes its clients (tests only: it imports botocore)
        from devicehooks_dev.local import callrecorder

        callrecorder.install(args.record_calls, args.function_name)
    try:
        handler = _wrapped(load_handler(args.code_uri, args.handler), args.wrap, args.wrap_arg)
    except Exception as exc:  # noqa: BLE001 - an init error is the invoker's to report
        traceback.print_exc()
        connection.send({"error": type(exc).__name__, "message": f"init failed: {exc}"})
        return 1
    connection.send({"ready": True, "init_ms": int((time.monotonic() - started) * 1000)})
    serve(connection, handler, args.function_name, args.timeout, args.memory)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
