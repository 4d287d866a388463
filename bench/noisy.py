"""P5: one tenant's dead endpoint does not hold back another tenant's deliveries.

The local stack in this process (every resource from template.yaml, the real handlers, the
dispatcher's invocations side by side up to the template's MaximumConcurrency, as Lambda runs
them), delivery timeout 2 s; the receiver in its own process, answering after 100 ms (as P2's
healthy endpoints: a realistic receiver answers in tens to hundreds of milliseconds), except
paths under ``/hang``, which it answers after 5 s (past the timeout: as good as never).

* alone: tenant B (one healthy webhook) sends 10 events (Mender's bulk status change of 10
  devices); the seconds until the 10th delivery is received;
* noisy: tenant A, whose webhook hangs, sends 300 events (three bulk changes of 100), then tenant
  B' (as B) sends 10: the seconds from B''s request until its 10th delivery is received;
* noisy, 20 webhooks: tenant A' has 20 hanging webhooks and sends one bulk of 20 devices (400
  deliveries), then B'' sends 10.

Prints ``P5_noisy_neighbor`` (noisy / alone) and ``P5_noisy_neighbor_20_webhooks``; goal <= 3.
Each scenario uses fresh tenants (no circuit or backlog carried over), A's backlog left running.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import benchlib
import requests
from benchlib import figure, note

TIMEOUT = "2"
DEADLINE = float(os.environ.get("BENCH_P5_DEADLINE", "600"))


def main() -> None:
    benchlib.quiet()
    with tempfile.TemporaryDirectory(prefix="bench-p5-") as workdir, benchlib.receiver(delay=0.1, hang=5.0) as receiver:
        stack = benchlib.in_process_stack(Path(workdir), {"DEVICEHOOKS_DELIVERY_TIMEOUT": TIMEOUT})
        try:
            with requests.Session() as session:
                api = benchlib.InProcessApi(stack, session)
                b = api.tenant("p5-b", [receiver.url("/ok/b")])
                alone = api.time_to_receive(receiver, b, "/ok/b", 10, DEADLINE)
                a = api.tenant("p5-a", [receiver.url("/hang/a")])
                b1 = api.tenant("p5-b1", [receiver.url("/ok/b1")])
                for n in range(3):
                    api.bulk(a, [f"a-{n}-{d}" for d in range(100)])
                noisy = api.time_to_receive(receiver, b1, "/ok/b1", 10, DEADLINE)
                a20 = api.tenant("p5-a20", [receiver.url(f"/hang/a20/{n}") for n in range(20)])
                b2 = api.tenant("p5-b2", [receiver.url("/ok/b2")])
                api.bulk(a20, [f"a20-{d}" for d in range(20)])
                noisy20 = api.time_to_receive(receiver, b2, "/ok/b2", 10, DEADLINE)
                hung = sum(1 for path, *_ in receiver.log() if path.startswith("/hang"))
        finally:
            stack.stop()
    note(f"delivery timeout {TIMEOUT} s; B alone: 10 deliveries in {alone:.2f} s")
    note(f"after A's 300 events to a hanging webhook: B's 10 in {noisy:.2f} s")
    note(f"after A's 20 devices to 20 hanging webhooks: B's 10 in {noisy20:.2f} s")
    note(f"POSTs the hanging webhooks received meanwhile: {hung} (of {300 + 400} deliveries)")
    figure("P5_noisy_neighbor", noisy / alone)
    figure("P5_noisy_neighbor_20_webhooks", noisy20 / alone)


if __name__ == "__main__":
    main()
