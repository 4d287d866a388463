"""``devicehooks local`` as a child process: started on a free port, ready when it says so.

Used by the end-to-end tests, the browser tests and the benchmarks.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from devicehooks_dev.local.stack import project_root

READY = re.compile(r"devicehooks local stack ready on (http://[\d.]+:\d+)")
BIN = Path(sys.executable).parent


@dataclass
class RunningStack:
    url: str
    process: subprocess.Popen[str]
    env: dict[str, str]
    output: list[str] = field(default_factory=list)

    def token(self, tenant: str, user: str | None = None, ttl: int | None = None) -> str:
        """A management token from ``devicehooks token`` (the stack's development key)."""
        command = [str(BIN / "devicehooks"), "token", "--tenant", tenant]
        if user:
            command += ["--user", user]
        if ttl is not None:
            command += ["--ttl", str(ttl)]
        return subprocess.run(command, env=self.env, check=True, capture_output=True, text=True).stdout.strip()

    def tail(self, lines: int = 40) -> str:
        return "".join(self.output[-lines:])


def start_stack(workdir: Path, extra_env: dict[str, str] | None = None, deadline: float = 60.0) -> RunningStack:
    """Run ``devicehooks local --port 0`` with its development key in ``workdir``; its output is
    read all along (a full pipe would block it) and kept in ``RunningStack.output``."""
    # The caller's own settings of the service stay out (an in-process stack of the caller's, a test
    # or a benchmark, may have set DEVICEHOOKS_* and AWS_* for itself: its keys, tables, endpoint);
    # the local stack's own knobs (DEVICEHOOKS_LOCAL_*) pass through.
    inherited = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DEVICEHOOKS_", "AWS_")) or k.startswith("DEVICEHOOKS_LOCAL_")
    }
    env = {
        **inherited,
        "DEVICEHOOKS_DEV_KEY_FILE": str(workdir / "dev-key.pem"),
        "POWERTOOLS_LOG_LEVEL": "WARNING",
        "PYTHONUNBUFFERED": "1",
        **(extra_env or {}),
    }
    process = subprocess.Popen(
        [str(BIN / "devicehooks"), "local", "--port", "0"],
        cwd=project_root(),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    output: list[str] = []

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            output.append(line)
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        try:
            line = lines.get(timeout=0.2)
        except queue.Empty:
            if process.poll() is not None:
                break
            continue
        found = READY.search(line)
        if found:
            return RunningStack(found.group(1), process, env, output)
    process.kill()
    raise RuntimeError("devicehooks local did not become ready:\n" + "".join(output))


def stop_stack(stack: RunningStack, deadline: float = 30.0) -> int:
    """Ctrl-C, as a developer would; returns the exit code (killed after ``deadline``)."""
    if stack.process.poll() is None:
        stack.process.send_signal(signal.SIGINT)
    try:
        return stack.process.wait(timeout=deadline)
    except subprocess.TimeoutExpired:
        stack.process.kill()
        stack.process.wait()
        raise
