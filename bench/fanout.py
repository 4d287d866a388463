"""P1: dispatcher throughput, against what one keep-alive connection to the same receiver allows.

A delivery here is the dispatcher's whole path: parse the bus event, read the tenant's webhooks,
write the activity record, open the secret, sign, POST with the real :class:`HttpSender`
(guarded, pooled), record the status. The receiver is ``receiver.py`` in its own process,
answering at once. Scenarios, each measured ``ROUNDS`` times, interleaved with the baselines,
the median kept:

* ``1x50``: one event to 50 webhooks, events handled one after another (a batch of one): all
  concurrency comes from the fan-out (the dispatcher POSTs an event's webhooks side by side);
* ``500x1``: 500 events to one webhook, as SQS delivers them: batches of 10 records, each batch
  as one invocation's batch, its records handled side by side in 10 threads as the handler does
  (handlers/dispatcher.py runs each record of a batch on a thread of its own).

Baselines, same run, same receiver, same body and headers: ``limit``, a raw
``http.client.HTTPConnection`` keep-alive POST loop; ``naive``, a sequential ``requests.post``
loop without a session (a new connection each time).

Prints ``P1_fanout_vs_limit`` and ``P1_fanout_vs_naive`` for the WORSE of the two scenarios
(both are in the ``#`` lines), then ``P1_fanout_moto_per_s``: the 500x1 scenario with the
DynamoDB stores on moto (its server in a child process, as ``LocalStack(...).start(serve_http=False,
poll=False)`` runs it, moto fixed by devicehooks_dev.local.motofixes) and secrets opened through KMS (moto's), an
absolute rate. The ``#`` lines also give this process's CPU time per delivery, and the 500x1
rate with a sender that does no I/O at all: the dispatcher's own ceiling on this machine.

Knobs: ``BENCH_ROUNDS`` (5), ``BENCH_SKIP_MOTO=1``, ``DEVICEHOOKS_LOCAL_MOTO_FIXES=0`` (moto as it is).
"""

from __future__ import annotations

import http.client
import os
import statistics
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import benchlib
import requests
from benchlib import bus_event, figure, note

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
FAN_EVENTS = 40  # 1x50: 40 events, 2000 deliveries per round
BATCH_EVENTS = 500  # 500x1
RAW_POSTS = 1500
NAIVE_POSTS = 100
RECORDS_PER_BATCH = 10


def sample_request(receiver: benchlib.Receiver) -> tuple[bytes, dict[str, str]]:
    """A webhook body and its headers, exactly as the dispatcher sends them."""
    from devicehooks.delivery.signing import webhook_headers
    from devicehooks.domain.events import BusEvent, WebhookEvent

    event = WebhookEvent.from_bus(BusEvent.model_validate_json(bus_event("t1", "dev-1")))
    body = event.body()
    return body, webhook_headers(event.id, body, [b"\xde\xad\xbe\xef"], int(time.time()))


def raw_rate(receiver: benchlib.Receiver, body: bytes, headers: dict[str, str]) -> float:
    """POSTs/s of one raw keep-alive connection: the limit a sequential client meets."""
    connection = http.client.HTTPConnection("127.0.0.1", receiver.port, timeout=10)
    request_headers = {**headers, "Content-Length": str(len(body))}
    for _ in range(50):  # warm up
        connection.request("POST", "/raw", body, request_headers)
        connection.getresponse().read()
    started = time.perf_counter()
    for _ in range(RAW_POSTS):
        connection.request("POST", "/raw", body, request_headers)
        response = connection.getresponse()
        response.read()
        assert response.status == 200
    took = time.perf_counter() - started
    connection.close()
    return RAW_POSTS / took


def naive_rate(receiver: benchlib.Receiver, body: bytes, headers: dict[str, str]) -> float:
    """POSTs/s of ``requests.post`` without a session: a new connection for every request."""
    url = receiver.url("/naive")
    requests.post(url, data=body, headers=headers, timeout=10)
    started = time.perf_counter()
    for _ in range(NAIVE_POSTS):
        assert requests.post(url, data=body, headers=headers, timeout=10).status_code == 200
    return NAIVE_POSTS / (time.perf_counter() - started)


def no_io_rate(dispatcher: Any, run: Callable[[Any, list[str]], None]) -> float:
    bodies = [bus_event("no-io", f"dev-{n}") for n in range(BATCH_EVENTS)]
    cpu = time.process_time()
    started = time.perf_counter()
    run(dispatcher, bodies)
    took = time.perf_counter() - started
    CPU_US.setdefault("no-io", []).append((time.process_time() - cpu) / BATCH_EVENTS * 1e6)
    return BATCH_EVENTS / took


def one_by_one(dispatcher: Any, bodies: list[str]) -> None:
    for body in bodies:
        (error,) = benchlib.one_batch(dispatcher, [body])
        if error is not None:
            raise error


FAILED: list[str] = []  # records that raised (the worker reports them; SQS delivers them again)


def in_batches(records: ThreadPoolExecutor) -> Callable[[Any, list[str]], None]:
    def run(dispatcher: Any, bodies: list[str]) -> None:
        pending = list(bodies)
        while pending:
            batch, pending = pending[:RECORDS_PER_BATCH], pending[RECORDS_PER_BATCH:]
            for body, error in zip(batch, benchlib.one_batch(dispatcher, batch, records), strict=True):
                if error is not None:
                    FAILED.append(f"{type(error).__name__}: {' '.join(str(error).split())[:120]}")
                    pending.append(body)  # redelivered, as SQS does with a batch item failure

    return run


CPU_US: dict[str, list[float]] = {}  # this process's CPU time per delivery, per scenario


def deliveries_per_s(
    dispatcher: Any,
    receiver: benchlib.Receiver,
    run: Callable[[Any, list[str]], None],
    tenant: str,
    events: int,
    webhooks: int,
) -> float:
    bodies = [bus_event(tenant, f"dev-{n}") for n in range(events)]
    before = receiver.count()
    cpu = time.process_time()
    started = time.perf_counter()
    run(dispatcher, bodies)
    took = time.perf_counter() - started
    CPU_US.setdefault(tenant, []).append((time.process_time() - cpu) / (events * webhooks) * 1e6)
    arrived = receiver.count() - before
    if arrived != events * webhooks:
        raise RuntimeError(f"{tenant}: {arrived} deliveries arrived, {events * webhooks} expected")
    return events * webhooks / took


class NoIO:
    """A sender that answers 200 at once: what the dispatcher costs without any network."""

    def send(self, request: Any) -> Any:
        from devicehooks.delivery.sender import DeliveryResult

        return DeliveryResult(200, None, 0, "", None)


def memory_scenarios(receiver: benchlib.Receiver, records: ThreadPoolExecutor) -> None:
    from devicehooks_dev.doubles import MemoryActivityStore, MemoryIntegrationStore, PlainTestCipher

    cipher = PlainTestCipher()
    integrations = MemoryIntegrationStore()
    for n in range(50):
        benchlib.add_webhook(integrations, cipher, "fan50", receiver.url(f"/fan50/{n}"))
    benchlib.add_webhook(integrations, cipher, "single", receiver.url("/single"))
    benchlib.add_webhook(integrations, cipher, "no-io", receiver.url("/no-io"))  # never POSTed to
    dispatcher = benchlib.dispatcher(integrations, MemoryActivityStore(), cipher)
    ceiling = benchlib.dispatcher(integrations, MemoryActivityStore(), cipher, sender=NoIO())
    body, headers = sample_request(receiver)

    batches = in_batches(records)
    deliveries_per_s(dispatcher, receiver, one_by_one, "fan50", 4, 50)  # warm up: connections, caches
    deliveries_per_s(dispatcher, receiver, batches, "single", 50, 1)
    CPU_US.clear()
    rates: dict[str, list[float]] = {"limit": [], "naive": [], "1x50": [], "500x1": [], "no I/O": []}
    ratios: dict[str, list[float]] = {"1x50/limit": [], "500x1/limit": [], "1x50/naive": [], "500x1/naive": []}
    for _ in range(ROUNDS):
        # each scenario against the baselines measured just before and after it: the machine's load drifts
        before = raw_rate(receiver, body, headers)
        fan = deliveries_per_s(dispatcher, receiver, one_by_one, "fan50", FAN_EVENTS, 50)
        between = raw_rate(receiver, body, headers)
        single = deliveries_per_s(dispatcher, receiver, batches, "single", BATCH_EVENTS, 1)
        after = raw_rate(receiver, body, headers)
        naive = naive_rate(receiver, body, headers)
        rates["no I/O"].append(no_io_rate(ceiling, batches))
        rates["limit"] += [before, between, after]
        rates["naive"].append(naive)
        rates["1x50"].append(fan)
        rates["500x1"].append(single)
        ratios["1x50/limit"].append(fan / ((before + between) / 2))
        ratios["500x1/limit"].append(single / ((between + after) / 2))
        ratios["1x50/naive"].append(fan / naive)
        ratios["500x1/naive"].append(single / naive)
    rate = {k: statistics.median(v) for k, v in rates.items()}
    ratio = {k: statistics.median(v) for k, v in ratios.items()}
    cpu = {k: statistics.median(v) for k, v in CPU_US.items()}
    no_io = rate["no I/O"]
    note(f"receiver in its own process, answering at once; body {len(body)} bytes; {ROUNDS} rounds, medians")
    note(
        f"limit (raw http.client keep-alive loop): {rate['limit']:.0f} POST/s; "
        f"naive (requests.post, no session): {rate['naive']:.0f}/s"
    )
    note(
        f"1x50  (events one by one, fan-out concurrency): {rate['1x50']:.0f} deliveries/s, "
        f"{cpu['fan50']:.0f} us CPU each; vs limit {ratio['1x50/limit']:.2f}, vs naive {ratio['1x50/naive']:.1f}"
    )
    note(
        f"500x1 (batches of 10 records in 10 threads): {rate['500x1']:.0f} deliveries/s, "
        f"{cpu['single']:.0f} us CPU each; vs limit {ratio['500x1/limit']:.2f}, vs naive {ratio['500x1/naive']:.1f}"
    )
    note(
        f"500x1 with a sender that does no I/O (the dispatcher's own ceiling): {no_io:.0f}/s, "
        f"{cpu['no-io']:.0f} us CPU each, {no_io / rate['limit']:.2f} of the limit"
    )
    note("figures: the worse scenario")
    figure("P1_fanout_vs_limit", min(ratio["1x50/limit"], ratio["500x1/limit"]))
    figure("P1_fanout_vs_naive", min(ratio["1x50/naive"], ratio["500x1/naive"]), 1)


def moto_scenario(receiver: benchlib.Receiver, records: ThreadPoolExecutor) -> None:
    from devicehooks.aws.kms import KmsSecretCipher
    from devicehooks.store.activity import DynamoActivityStore
    from devicehooks.store.integrations import DynamoIntegrationStore
    from devicehooks_dev.local.stack import LocalStack

    stack = LocalStack(benchlib.ROOT, port=0)  # moto in a child process, with devicehooks_dev.local.motofixes
    stack.start(serve_http=False, poll=False)
    try:
        integrations = DynamoIntegrationStore(stack.physical["IntegrationsTable"]["TableName"])
        activity = DynamoActivityStore(stack.physical["ActivityLogTable"]["TableName"])
        cipher = KmsSecretCipher(stack.physical["SecretsKey"]["Arn"])
        benchlib.add_webhook(integrations, cipher, "moto", receiver.url("/moto"))
        dispatcher = benchlib.dispatcher(integrations, activity, cipher)
        batches = in_batches(records)
        deliveries_per_s(dispatcher, receiver, batches, "moto", 20, 1)  # warm up
        FAILED.clear()
        rate = deliveries_per_s(dispatcher, receiver, batches, "moto", BATCH_EVENTS, 1)
    finally:
        stack.stop()
    from devicehooks_dev.local import motofixes

    patched = "moto with devicehooks_dev.local.motofixes" if motofixes.enabled() else "moto as it is"
    note(f"500x1 on moto (DynamoDB stores, KMS secret, moto in a child process; {patched}): {rate:.0f} deliveries/s")
    if FAILED:
        note(f"{len(FAILED)} record(s) raised and were handled again (as SQS redelivers), e.g. {FAILED[0]}")
    figure("P1_fanout_moto_per_s", rate, 0)


def main() -> None:
    benchlib.quiet()
    with benchlib.receiver() as receiver, ThreadPoolExecutor(RECORDS_PER_BATCH, thread_name_prefix="record") as pool:
        memory_scenarios(receiver, pool)
        if not os.environ.get("BENCH_SKIP_MOTO"):
            moto_scenario(receiver, pool)


if __name__ == "__main__":
    main()
