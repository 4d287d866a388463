"""P2: one hanging webhook does not hold back the tenant's other webhooks.

One event to 20 webhooks of a tenant; 19 answer after 100 ms, one (``/hang``) answers only after
5 s, past the 2 s delivery timeout (DispatchPolicy and HttpSender). The 100 ms is an assumption:
a realistic webhook receiver on the internet (TLS already up, a short handler, one round trip
between regions) answers in tens to a few hundred milliseconds; it is also what makes the
figure meaningful, since the fan-out's own cost (a few ms for 20 POSTs) is then small beside one
delivery, as it is in production.

Figure: the time from the start of ``handle_message`` until the 19th healthy delivery is done
(its 2xx answer received and recorded as delivered in the activity store), divided by the time
one healthy delivery takes alone (the same dispatcher path: an event to one webhook on the same
100 ms endpoint, start to its delivered record), both measured in this run (median of
``ROUNDS``). Target <= 1.3; a dispatcher that delivered one webhook after another would score
about 19 (or 20 behind the hang), one that waited for the hang about 20.
"""

from __future__ import annotations

import os
import statistics
import time
from typing import Any

import benchlib
from benchlib import bus_event, figure, note

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
DELAY = 0.1  # the healthy endpoints' answer time (see above)
HANG = 5.0
TIMEOUT = 2.0
HEALTHY = 19


def _timed_store() -> type:
    from devicehooks_dev.doubles import MemoryActivityStore

    class Timed(MemoryActivityStore):
        """The in-memory store, noting when each delivery is recorded as delivered."""

        def __init__(self) -> None:
            super().__init__()
            self.delivered_at: list[float] = []

        def record(self, tenant_id: str, event_id: str, updates: Any, deliveries: int | None = None) -> None:
            super().record(tenant_id, event_id, updates, deliveries)
            now = time.monotonic()
            self.delivered_at += [now for status, _ in updates if status.state == "delivered"]

    return Timed


def main() -> None:
    benchlib.quiet()
    from devicehooks_dev.doubles import MemoryIntegrationStore, PlainTestCipher

    TimedActivityStore = _timed_store()  # noqa: N806 - a class

    with benchlib.receiver(delay=DELAY, hang=HANG) as receiver:
        cipher = PlainTestCipher()
        integrations = MemoryIntegrationStore()
        activity = TimedActivityStore()
        benchlib.add_webhook(integrations, cipher, "fan20", receiver.url("/hang"))
        for n in range(HEALTHY):
            benchlib.add_webhook(integrations, cipher, "fan20", receiver.url(f"/fan20/{n}"))
            benchlib.add_webhook(integrations, cipher, "warm", receiver.url(f"/warm/{n}"))  # same host: warms the pool
        benchlib.add_webhook(integrations, cipher, "alone", receiver.url("/alone"))
        dispatcher = benchlib.dispatcher(integrations, activity, cipher, timeout=TIMEOUT)

        def handle(tenant: str, n: int) -> float:
            started = time.monotonic()
            benchlib.one_batch(dispatcher, [bus_event(tenant, f"dev-{n}")])
            return started

        for n in range(2):  # warm up: connections to the receiver, caches
            handle("warm", n)
            handle("alone", n)
        alone: list[float] = []
        isolated: list[float] = []
        late: list[str] = []
        for n in range(ROUNDS):
            activity.delivered_at.clear()
            started = handle("alone", 100 + n)
            alone.append(max(activity.delivered_at) - started)
            activity.delivered_at.clear()
            since = receiver.count()
            started = handle("fan20", 100 + n)  # returns once the hang timed out (~2 s)
            log = receiver.log(since)
            healthy = sorted(activity.delivered_at)
            if len(healthy) != HEALTHY or not any(path == "/hang" for path, *_ in log):
                raise RuntimeError(f"round {n}: {len(healthy)} healthy deliveries, {HEALTHY} expected")
            isolated.append(healthy[-1] - started)
            record = activity.get("fan20", [w for p, w, *_ in log if p == "/hang"][0] or "")
            if record is not None:
                late += [s.error or "" for s in record.deliveries.values() if s.state != "delivered"]
        one, nineteen = statistics.median(alone), statistics.median(isolated)
        note(f"healthy endpoints answer after {DELAY * 1000:.0f} ms; /hang after {HANG:.0f} s; timeout {TIMEOUT:.0f} s")
        note(
            f"one healthy delivery alone: {one * 1000:.0f} ms; "
            f"the 19th of 19 healthy deliveries done after {nineteen * 1000:.0f} ms"
        )
        note(f"the hanging webhook's delivery: {sorted(set(late)) or 'delivered?'} (median of {ROUNDS} rounds)")
        figure("P2_isolation", nineteen / one)


if __name__ == "__main__":
    main()
