"""P5: one tenant's dead endpoint does not hold back another tenant's deliveries.

The local stack in this process (every resource from template.yaml, the real handlers, the
dispatcher's invocations side by side up to the template's MaximumConcurrency, as Lambda runs
them), delivery timeout 2 s; the receiver in its own process, answering after 100 ms (as P2's
healthy endpoints: a realistic receiver answers in tens to hundreds of milliseconds), except
paths under ``/hang``, which it answers after 5 s (past the timeout: as good as never), and under
``/late``, which it answers after 1.5 s (slow, but within the timeout: every delivery succeeds).

* alone: tenant B (one healthy webhook) sends 10 events (Mender's bulk status change of 10
  devices); the seconds until the 10th delivery is received;
* noisy: tenant A, whose webhook hangs, sends 300 events (three bulk changes of 100), then tenant
  B' (as B) sends 10: the seconds from B''s request until its 10th delivery is received;
* noisy, 20 webhooks: tenant A' has 20 hanging webhooks and sends one bulk of 20 devices (400
  deliveries), then B'' sends 10;
* slow, in a process and stack of its own (B alone measured again there): tenant S, whose webhook
  answers in 1.5 s and has delivered 10 events before, sends 300 events, then B''' sends 10.

Prints ``P5_noisy_neighbor`` (noisy / alone), ``P5_noisy_neighbor_20_webhooks`` and
``P5_slow_neighbor``; goal <= 3.
Each scenario uses fresh tenants (no circuit or backlog carried over), A's backlog left running.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import benchlib
import requests
from benchlib import figure, note

TIMEOUT = "2"
DEADLINE = float(os.environ.get("BENCH_P5_DEADLINE", "600"))
ENVIRONMENT = dict(os.environ)  # as given, before a stack sets its own (AWS endpoint, dev key, ...)


def main() -> None:
    benchlib.quiet()
    if sys.argv[1:] == ["slow"]:
        slow_neighbor()
        return
    with tempfile.TemporaryDirectory(prefix="bench-p5-") as tmp, benchlib.receiver(0.1, 5.0, 1.5) as receiver:
        with stack_api(Path(tmp)) as api:
            alone = warm_then_alone(api, receiver)
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
    note(f"delivery timeout {TIMEOUT} s; B alone: 10 deliveries in {alone:.2f} s")
    note(f"after A's 300 events to a hanging webhook: B's 10 in {noisy:.2f} s")
    note(f"after A's 20 devices to 20 hanging webhooks: B's 10 in {noisy20:.2f} s")
    note(f"POSTs the hanging webhooks received meanwhile: {hung} (of {300 + 400} deliveries)")
    figure("P5_noisy_neighbor", noisy / alone)
    figure("P5_noisy_neighbor_20_webhooks", noisy20 / alone)
    # in a process and stack of its own: A's backlog (its circuit opening: 300 records) would land in its window
    subprocess.run([sys.executable, __file__, "slow"], check=True, env=ENVIRONMENT)


def slow_neighbor() -> None:
    with tempfile.TemporaryDirectory(prefix="bench-p5-") as tmp, benchlib.receiver(0.1, 5.0, 1.5) as receiver:
        with stack_api(Path(tmp)) as api:
            alone = warm_then_alone(api, receiver)
            s = api.tenant("p5-s", [receiver.url("/late/s")])
            b3 = api.tenant("p5-b3", [receiver.url("/ok/b3")])
            api.time_to_receive(receiver, s, "/late/s", 10, DEADLINE)  # S's webhook has delivered before
            time.sleep(3)  # its answers (1.5 s) recorded
            started = time.monotonic()
            for n in range(3):
                api.bulk(s, [f"s-{n}-{d}" for d in range(100)])
            slow = api.time_to_receive(receiver, b3, "/ok/b3", 10, DEADLINE)
            while True:  # every one of S's 300 is delivered meanwhile, at the pace of a few invocations
                got = {d for p, _, _, d in receiver.log() if p == "/late/s" and d and d.startswith("s-")}
                if len(got) >= 300 or time.monotonic() > started + DEADLINE:
                    break
                time.sleep(0.2)
            drained = time.monotonic() - started
    note(
        f"a stack of its own: B alone in {alone:.2f} s; after S's 300 events to a webhook answering in 1.5 s, "
        f"B's 10 in {slow:.2f} s"
    )
    note(f"S's 300 received (each at least once) in {drained:.1f} s: {len(got)} of 300")
    figure("P5_slow_neighbor", slow / alone)


def warm_then_alone(api: benchlib.InProcessApi, receiver: benchlib.Receiver) -> float:
    """B alone, after a warm-up tenant's 10 (each environment's clients and connections made)."""
    api.time_to_receive(receiver, api.tenant("p5-warm", [receiver.url("/ok/warm")]), "/ok/warm", 10, DEADLINE)
    return api.time_to_receive(receiver, api.tenant("p5-b", [receiver.url("/ok/b")]), "/ok/b", 10, DEADLINE)


@contextmanager
def stack_api(workdir: Path) -> Iterator[benchlib.InProcessApi]:
    """A fresh in-process stack (delivery timeout ``TIMEOUT``) and its API."""
    stack = benchlib.in_process_stack(workdir, {"DEVICEHOOKS_DELIVERY_TIMEOUT": TIMEOUT})
    try:
        with requests.Session() as session:
            yield benchlib.InProcessApi(stack, session)
    finally:
        stack.stop()


if __name__ == "__main__":
    main()
