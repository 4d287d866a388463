"""P4: Mender's largest bulk status change, end to end on the local stack.

``devicehooks local`` in a subprocess (bench/local_launcher.py: the same command, moto fixed,
moto fixed by devicehooks_dev.local.motofixes), the receiver in another; one webhook created through the
management API (token from ``devicehooks token``). After a warm-up (another tenant: one event, then
a bulk of 100 devices, so that the execution environments the bulk will run in have made their
clients, connections and caches, as warm Lambdas have), the figure is the seconds from just
before ``PUT /api/internal/v1/iot-manager/tenants/<t>/bulk/devices/status/accepted`` with 100
devices until the receiver has received the 100th delivery (its own receive time). Target < 3 s.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import benchlib
import requests
from benchlib import figure, note

DEVICES = 100
DEADLINE = 60.0


def main() -> None:
    with benchlib.receiver() as receiver, tempfile.TemporaryDirectory(prefix="bench-p4-") as workdir:
        stack = benchlib.start_stack(Path(workdir))
        try:
            with requests.Session() as session:
                stack.create_webhook("p4-warm", receiver.url("/warm"))
                stack.create_webhook("p4", receiver.url("/p4"))
                stack.bulk_status(session, "p4-warm", ["warm-1"])  # the warm-up webhook proven
                receiver.wait_for(1, DEADLINE, "P4 warm-up")
                stack.bulk_status(session, "p4-warm", [f"warm-{n:03d}" for n in range(DEVICES)])
                receiver.wait_for(1 + DEVICES, DEADLINE, "P4 warm-up bulk")
                since = receiver.count()
                devices = [f"dev-{n:03d}" for n in range(DEVICES)]
                started = time.monotonic()
                stack.bulk_status(session, "p4", devices)
                accepted = time.monotonic() - started
                receiver.wait_for(since + DEVICES, DEADLINE, "P4")
            log = [entry for entry in receiver.log(since) if entry[0] == "/p4"]
        except Exception:
            print(stack.tail(), flush=True)
            raise
        finally:
            benchlib.stop_stack(stack)
    received = sorted(t for _, _, t, _ in log)
    if len(received) != DEVICES or {d for *_, d in log} != set(devices):
        raise RuntimeError(f"P4: {len(received)} deliveries for {len({d for *_, d in log})} distinct devices")
    note(f"bulk request answered 202 after {accepted * 1000:.0f} ms; first delivery at {received[0] - started:.2f} s")
    failures = "".join(stack.output).count("Traceback")
    if failures:
        note(f"{failures} traceback(s) in the stack's output (moto errors: records redelivered)")
    figure("P4_bulk100_seconds", received[-1] - started)


if __name__ == "__main__":
    main()
