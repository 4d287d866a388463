"""P6: a dead endpoint costs little: attempts made to it and the dispatcher's busy seconds.

The local stack in this process, as bench/noisy.py, but one invocation at a time per event
source (as devicehooks 0.1's local stack ran them): busy seconds are what Lambda bills, and
invocations side by side in one process would each be charged for the others' CPU. Delivery
timeout 2 s, the default retry schedule; one tenant's webhook that never answers in time (the
receiver answers ``/hang`` after 5 s). 1,000 events (ten bulk status changes of 100 devices),
then ``BENCH_P6_SECONDS`` (300) of the stack working on them: the POSTs the endpoint received
in that time, and the seconds the dispatcher's invocations ran. Prints
``P6_dead_endpoint_attempts`` and ``P6_dead_endpoint_busy_seconds``; the issue's goal is <= 5 %
of what devicehooks 0.1 made of the same load (docs/operations.md gives both).
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import benchlib
import requests
from benchlib import figure, note

SECONDS = float(os.environ.get("BENCH_P6_SECONDS", "300"))
EVENTS = 1000


def main() -> None:
    benchlib.quiet()
    with tempfile.TemporaryDirectory(prefix="bench-p6-") as workdir, benchlib.receiver(hang=5.0) as receiver:
        # one invocation at a time per event source: side by side in one process, invocations share
        # one CPU and one GIL, and the sum of their durations would count each other's work
        env = {"DEVICEHOOKS_DELIVERY_TIMEOUT": "2", "DEVICEHOOKS_LOCAL_MAX_CONCURRENCY": "1"}
        stack = benchlib.in_process_stack(Path(workdir), env)
        try:
            with requests.Session() as session:
                api = benchlib.InProcessApi(stack, session)
                tenant = api.tenant("p6", [receiver.url("/hang/p6")])
                started = time.monotonic()
                for n in range(EVENTS // 100):
                    api.bulk(tenant, [f"p6-{n}-{d}" for d in range(100)])
                time.sleep(max(0.0, started + SECONDS - time.monotonic()))
                attempts = sum(1 for path, _, at, _ in receiver.log() if path == "/hang/p6" and at <= started + SECONDS)
                busy = stack.functions["DispatcherFunction"].stats.busy_seconds
                invocations = stack.functions["DispatcherFunction"].stats.invocations
        finally:
            stack.stop()
    note(f"{EVENTS} events to a webhook that never answers in time (timeout 2 s), {SECONDS:.0f} s observed")
    note(f"{invocations} dispatcher invocations, {busy:.1f} s busy in all; {attempts} POST attempts")
    figure("P6_dead_endpoint_attempts", attempts, 0)
    figure("P6_dead_endpoint_busy_seconds", busy, 1)


if __name__ == "__main__":
    main()
