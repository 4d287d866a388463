"""R1: 10,000 device events through the local stack, every delivery counted.

``devicehooks local`` in a subprocess (bench/local_launcher.py: the same command, moto fixed, see
devicehooks_dev.local.motofixes), the receiver in another. ``TENANTS`` tenants with one webhook each (created
through the management API), then 10,000 status changes of distinct devices through the internal
API: bulk requests of 100, spread over the tenants in turn, ``CLIENTS`` requests at a time. Then
wait until every webhook received every event of its tenant, or until nothing arrived for
``QUIET`` seconds (longer than the first retry's 5 s and the local redelivery's 2 s).

Events are spread over tenants, one webhook each, rather than sent to 3 webhooks of one tenant:
the local stack is one Python process (API, moto, the dispatcher), and each delivery costs it
about 10 ms of CPU in moto and boto3 calls, so 30,000 deliveries would take twice the time
budget of ``make bench`` on two cores; 10,000 deliveries exercise the same paths.

Prints ``R1_events_per_s`` (events over the seconds from the first request to the last delivery
received), ``R1_lost`` (per webhook, events of its tenant it never received, summed) and
``R1_duplicated`` (per webhook, requests beyond the first for the same webhook-id, summed).
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import benchlib
import requests
from benchlib import figure, note

EVENTS = int(os.environ.get("BENCH_R1_EVENTS", "10000"))
BULK = 100
CLIENTS = 4
TENANTS = 3
QUIET = 20.0
DEADLINE = float(os.environ.get("BENCH_R1_DEADLINE", "600"))


def main() -> None:
    with benchlib.receiver() as receiver, tempfile.TemporaryDirectory(prefix="bench-r1-") as workdir:
        stack = benchlib.start_stack(Path(workdir))
        try:
            tenants = [f"r1-{n}" for n in range(TENANTS)]
            paths = {tenant: f"/{tenant}" for tenant in tenants}
            for tenant, path in paths.items():
                stack.create_webhook(tenant, receiver.url(path))
            devices = [f"dev-{n:05d}" for n in range(EVENTS)]
            requests_ = [
                (tenants[i % TENANTS], devices[start : start + BULK]) for i, start in enumerate(range(0, EVENTS, BULK))
            ]
            expected_of = {tenant: {d for t, chunk in requests_ if t == tenant for d in chunk} for tenant in tenants}
            errors: list[BaseException] = []

            def client(mine: list[tuple[str, list[str]]]) -> None:
                try:
                    with requests.Session() as session:
                        for tenant, chunk in mine:
                            stack.bulk_status(session, tenant, chunk)
                except BaseException as exc:  # noqa: BLE001 - reported below
                    errors.append(exc)

            expected = EVENTS
            started = time.monotonic()
            threads = [threading.Thread(target=client, args=(requests_[n::CLIENTS],)) for n in range(CLIENTS)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            ingested = time.monotonic() - started
            if errors:
                raise RuntimeError(f"R1: the internal API failed: {errors[0]}")
            count, last_change = receiver.count(), time.monotonic()
            while count < expected and time.monotonic() - last_change < QUIET:
                if time.monotonic() - started > DEADLINE:
                    raise RuntimeError(f"R1: {count} of {expected} deliveries after {DEADLINE:.0f} s")
                time.sleep(0.5)
                now = receiver.count()
                if now != count:
                    count, last_change = now, time.monotonic()
            log = receiver.log()
        except Exception:
            print(stack.tail(), flush=True)
            raise
        finally:
            benchlib.stop_stack(stack)
    output = "".join(stack.output)
    lost = duplicated = 0
    for tenant, path in paths.items():
        mine = [(w, d) for p, w, _, d in log if p == path]
        per_id = Counter(w for w, _ in mine)
        duplicated += sum(n - 1 for n in per_id.values())
        lost += len(expected_of[tenant] - {d for _, d in mine})
    received = [t for p, _, t, _ in log if p in paths.values()]
    took = max(received) - started
    note(
        f"{EVENTS} events over {TENANTS} tenants (one webhook each), bulk requests of {BULK}, {CLIENTS} at a "
        f"time: all accepted after {ingested:.1f} s; {len(received)} deliveries received, the last after {took:.1f} s"
    )
    failures = output.count("Traceback")
    if failures:
        note(f"{failures} traceback(s) in the stack's output")
    figure("R1_events_per_s", EVENTS / took, 0)
    figure("R1_lost", lost, 0)
    figure("R1_duplicated", duplicated, 0)


if __name__ == "__main__":
    main()
