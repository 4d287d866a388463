"""moto's server in a process of its own: ``python -m devicehooks_dev.local.motoserver``.

The local stack runs AWS there, beside the functions' process rather than inside it, as AWS runs
beside Lambda: an AWS call costs the functions a network round trip, not the CPU (and the GIL)
of the service answering it. Prints ``moto ready on http://127.0.0.1:<port>`` once it serves,
and stops when its standard input closes (its parent died or stopped it) or on SIGTERM.
"""

from __future__ import annotations

import argparse
import gc
import logging
import subprocess
import sys
from collections.abc import Sequence

READY = "moto ready on "
# How often a running thread hands the GIL to another (CPython's default: 5 ms). moto's server
# answers each request on a thread of its own in this one process; a thread back from its socket
# (a request read, a response written: several times per request) waits for the GIL until the
# busy thread gives it up, so while moto works on a big write every short request costs several
# intervals: P5's 20-webhook variant measured B's writes at 20-90 ms behind A's fan-out, where
# DynamoDB answers each independently. At 0.5 ms they wait a tenth as long.
SWITCH_INTERVAL = 0.0005
# A full pass of Python's collector stops every thread of the process. moto's modules and
# service models are ~100,000 objects (and the functions' process holds every function's modules):
# passes of 50-120 ms, while a service answers each request on its own. What is loaded at start
# is frozen (gc.freeze) out of those passes: 7-40 ms remain, for the data stored since.


def start() -> tuple[subprocess.Popen[str], str]:
    """moto's server in a child process running this module; the process and the server's URL."""
    process = subprocess.Popen(
        [sys.executable, "-m", "devicehooks_dev.local.motoserver"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        # a scheduling group of its own (runtime.py, CPU), not the developer's terminal's: it stops
        # when its input closes, whatever stops the stack
        start_new_session=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line.startswith(READY):
        process.kill()
        raise OSError(f"moto's server did not start: {line!r}")
    return process, line[len(READY) :].strip()


def stop(process: subprocess.Popen[str]) -> None:
    """Stop a server :func:`start` started (it stops when its input closes; killed after 10 s)."""
    assert process.stdin is not None
    process.stdin.close()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    if process.stdout is not None:
        process.stdout.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devicehooks_dev.local.motoserver")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)

    from moto.server import ThreadedMotoServer

    from devicehooks_dev.local import fairqueue, motofixes

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no request lines
    sys.setswitchinterval(SWITCH_INTERVAL)
    if motofixes.enabled():
        motofixes.apply()
    fairqueue.apply()  # after the fixes: it orders what their list of visible messages holds
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=args.port, verbose=False)
    server.start()
    gc.freeze()  # moto's modules and models, kept out of the collector's full passes (see above)
    host, port = server.get_host_and_port()
    print(f"{READY}http://{host}:{port}", flush=True)
    try:
        sys.stdin.read()  # until the parent closes the pipe (or exits)
    except KeyboardInterrupt:
        pass
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
