"""Lambda execution environments for the local stack: a process each, one invocation at a time.

As Lambda runs a function: an execution environment is started when an invocation finds none
free (a cold start: a new process imports the function's code, :mod:`devicehooks_dev.local.runtime`),
up to the function's concurrency; it is kept and reused for later invocations (warm); it sees
exactly its function's environment variables; it runs one invocation at a time; an invocation
past the function's timeout is stopped with its environment (Lambda resets it), as is one whose
environment died. Environments never share memory with each other or with the stack.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import IO, Any

# seconds an environment may take to start (Lambda gives the init phase 10 s; many starting at
# once on two cores take longer)
INIT_TIMEOUT = 30.0
STOP_GRACE = 5.0  # seconds a stopping environment gets before it is killed
LOG_LINES = 10_000  # a function's last log lines kept in memory


class InvocationError(Exception):
    """An invocation that returned no answer: its handler raised, it timed out, or its environment died."""


@dataclass(frozen=True)
class FunctionSpec:
    """What an execution environment of one function is made of (from template.yaml)."""

    logical_id: str
    name: str
    code_uri: Path
    handler: str
    timeout: float
    memory: int
    environment: Mapping[str, str]  # exactly the variables its processes see
    concurrency: int  # execution environments at most


@dataclass
class Stats:
    """What a function's environments did: what Lambda bills and what its cold starts cost."""

    invocations: int = 0
    busy_seconds: float = 0.0  # in the handler, as Lambda bills (not starting an environment, not handing it the event)
    cold_starts: int = 0
    init_seconds: float = 0.0
    peak: int = 0  # environments running invocations at once, at most
    errors: int = 0
    pids: set[int] = field(default_factory=set)


class Logs:
    """A function's log, as Lambda sends its environments' output to one log group: every line its
    environments print, written to the stack's standard error as it comes, the last
    :data:`LOG_LINES` kept (``lines()``: tests read a function's log there)."""

    def __init__(self) -> None:
        self._lines: deque[str] = deque(maxlen=LOG_LINES)
        self._lock = threading.Lock()

    def follow(self, stream: IO[bytes]) -> None:
        """Copy ``stream`` (an environment's output) line by line until it ends (on a thread)."""

        def pump() -> None:
            with stream:
                for raw in stream:
                    line = raw.decode("utf-8", "replace")
                    with self._lock:
                        self._lines.append(line.rstrip("\n"))
                    sys.stderr.write(line)
                    sys.stderr.flush()

        threading.Thread(target=pump, name="logs", daemon=True).start()

    def lines(self) -> list[str]:
        with self._lock:
            return list(self._lines)


class ExecutionEnvironment:
    """One process running one function's handler (see the module)."""

    def __init__(self, spec: FunctionSpec, logs: Logs, wrap: tuple[str, str] = ("", "")) -> None:
        self.spec = spec
        self.wrap = wrap
        self.last_duration = 0.0
        ours, theirs = socket.socketpair()
        command = [
            sys.executable,
            "-m",
            "devicehooks_dev.local.runtime",
            "--fd",
            str(theirs.fileno()),
            "--code-uri",
            str(spec.code_uri),
            "--handler",
            spec.handler,
            "--function-name",
            spec.name,
            "--timeout",
            str(spec.timeout),
            "--memory",
            str(spec.memory),
            "--wrap",
            wrap[0],
            "--wrap-arg",
            wrap[1],
        ]
        # the stack's own knob (never in the function's environment): record its AWS calls (tests)
        record = os.environ.get("DEVICEHOOKS_LOCAL_RECORD_CALLS", "")
        if record:
            command += ["--record-calls", record]
        started = time.monotonic()
        try:
            self.process = subprocess.Popen(  # noqa: S603 - our own runtime module, with the template's settings
                command,
                env=dict(spec.environment),
                cwd=spec.code_uri,
                pass_fds=(theirs.fileno(),),
                stdout=subprocess.PIPE,  # its log: Logs, never among what the stack prints on its standard output
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C in the developer's terminal goes to the stack, which stops it
            )
        finally:
            theirs.close()
        assert self.process.stdout is not None
        logs.follow(self.process.stdout)
        self._connection = Connection(ours.detach())
        answer = self._receive(INIT_TIMEOUT, "init")
        if not answer.get("ready"):
            self.stop()
            raise InvocationError(f"{spec.logical_id}: {answer.get('message', 'init failed')}")
        self.init_seconds = time.monotonic() - started

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def alive(self) -> bool:
        return self.process.poll() is None and not self._connection.closed

    def invoke(self, event: dict[str, Any]) -> Any:
        """Run ``event`` through the handler; its answer, or :class:`InvocationError` (the handler's
        own duration, what Lambda bills, in :attr:`last_duration`)."""
        try:
            self._connection.send({"event": event, "request_id": str(uuid.uuid4())})
        except OSError as exc:
            self.stop()
            raise InvocationError(f"{self.spec.logical_id}: the execution environment is gone ({exc})") from None
        # a little past the function's timeout: the handler's own deadline passes first
        answer = self._receive(self.spec.timeout + 1.0, "invocation")
        self.last_duration = float(answer.get("duration", 0.0))
        if "error" in answer:
            raise InvocationError(f"{answer['error']}: {answer.get('message', '')}")
        return answer["result"]

    def _receive(self, timeout: float, what: str) -> dict[str, Any]:
        try:
            if self._connection.poll(timeout):
                answer: dict[str, Any] = self._connection.recv()
                return answer
        except (EOFError, OSError):
            self.stop()
            gone = f"{self.spec.logical_id}: the execution environment exited during its {what}"
            raise InvocationError(gone) from None
        self.stop()  # Lambda stops a timed-out invocation with its environment
        raise InvocationError(f"{self.spec.logical_id}: {what} timed out after {timeout:.0f} seconds")

    def stop(self) -> None:
        """End the process (its connection closes: it exits), killed if it does not."""
        if not self._connection.closed:
            self._connection.close()
        try:
            self.process.wait(timeout=STOP_GRACE)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class FunctionPool:
    """A function's execution environments: started on demand up to ``spec.concurrency``, reused
    when free. :meth:`invoke` waits for a free one when all are busy (the callers bound how many
    invocations they start: an SQS source its ``MaximumConcurrency``)."""

    def __init__(self, spec: FunctionSpec) -> None:
        self.spec = spec
        self.stats = Stats()
        self.logs = Logs()
        self._idle: list[ExecutionEnvironment] = []
        self._count = 0  # environments started or starting, idle or busy
        self._busy = 0
        self._wrap = ("", "")
        self._changed = threading.Condition()
        self._stopped = False

    def invoke(self, event: dict[str, Any]) -> Any:
        environment = self._take()
        started = time.monotonic()
        try:
            result = environment.invoke(event)
        except InvocationError:
            with self._changed:
                self.stats.errors += 1
            raise
        finally:
            # the handler's own time when it answered; else (it died, or timed out) the wait for it
            answered = environment.last_duration if environment.alive else time.monotonic() - started
            self._give_back(environment, answered)
        return result

    def warm(self, count: int | None = None) -> None:
        """Start environments until ``count`` (every one the function may have) exist, side by side,
        as provisioned concurrency keeps them ready."""
        wanted = self.spec.concurrency if count is None else min(count, self.spec.concurrency)
        starters = []
        for _ in range(max(0, wanted - self._count)):
            starter = threading.Thread(target=lambda: self._give_back(self._take(), None), daemon=True)
            starter.start()
            starters.append(starter)
        for starter in starters:
            starter.join()

    def wrap(self, wrapper: str, argument: str = "") -> None:
        """Run the handler inside ``wrapper`` (``[directory=]module:function``, see :mod:`runtime`)
        from now on (``""``: unwrapped): the free environments are stopped, the busy ones when they
        end; new ones start wrapped (tests)."""
        with self._changed:
            self._wrap = (wrapper, argument)
            idle, self._idle = self._idle, []
            self._count -= len(idle)
        for environment in idle:
            environment.stop()

    def stop(self) -> None:
        """Stop the free environments now, the busy ones as they finish."""
        with self._changed:
            self._stopped = True
            idle, self._idle = self._idle, []
            self._count -= len(idle)
            self._changed.notify_all()
        for environment in idle:
            environment.stop()

    @property
    def pids(self) -> list[int]:
        with self._changed:
            return [e.pid for e in self._idle]

    def _take(self) -> ExecutionEnvironment:
        with self._changed:
            while True:
                if self._stopped:
                    raise InvocationError(f"{self.spec.logical_id}: the local stack is stopping")
                if self._idle:
                    environment = self._idle.pop()
                    self._busy += 1
                    self.stats.peak = max(self.stats.peak, self._busy)
                    return environment
                if self._count < self.spec.concurrency:
                    self._count += 1
                    wrap = self._wrap
                    break
                self._changed.wait()
        try:
            environment = ExecutionEnvironment(self.spec, self.logs, wrap)
        except BaseException:
            with self._changed:
                self._count -= 1
                self._changed.notify_all()
            raise
        with self._changed:
            self.stats.cold_starts += 1
            self.stats.init_seconds += environment.init_seconds
            self.stats.pids.add(environment.pid)
            self._busy += 1
            self.stats.peak = max(self.stats.peak, self._busy)
        return environment

    def _give_back(self, environment: ExecutionEnvironment, busy: float | None) -> None:
        with self._changed:
            self._busy -= 1
            if busy is not None:
                self.stats.invocations += 1
                self.stats.busy_seconds += busy
            # one started before the handler was wrapped (or unwrapped) is not reused
            keep = environment.alive and not self._stopped and environment.wrap == self._wrap
            if keep:
                self._idle.append(environment)
            else:
                self._count -= 1
            self._changed.notify_all()
        if not keep:
            environment.stop()


def lambda_variables(spec_name: str, handler: str, code_uri: Path, memory: int, region: str) -> dict[str, str]:
    """The variables Lambda's Python runtime sets in every execution environment."""
    return {
        "AWS_LAMBDA_FUNCTION_NAME": spec_name,
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(memory),
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{spec_name}",
        "AWS_LAMBDA_LOG_STREAM_NAME": "local",
        "AWS_EXECUTION_ENV": "AWS_Lambda_python3.12",
        "AWS_REGION": region,
        "AWS_DEFAULT_REGION": region,
        "LAMBDA_TASK_ROOT": str(code_uri),
        "_HANDLER": handler,
        "TZ": ":UTC",
        "LANG": "C.UTF-8",
        "PYTHONUNBUFFERED": "1",
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
    }
