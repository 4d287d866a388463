"""P1 and C1: what one delivery costs, with DynamoDB in another process (moto's server).

``devicehooks local`` runs in a subprocess (moto's server with every table and key of
template.yaml); this process runs the production dispatcher (real stores on that moto, the KMS
secret cipher, the real sender, retries kept in memory) against a receiver in a third process.
Happy path only: every POST answers 200.

Scenarios (``WxH``: events x webhooks per event):

* ``1x1``: events to one webhook, one SQS batch each (a quiet fleet: every event alone);
* ``1x5``: events to five webhooks, one batch each;
* ``10x1``: events to one webhook in batches of 10 records, run side by side as the worker does.

Figures:

* ``P1_cpu_us_per_delivery_<scenario>``: this process's CPU time (every thread) per delivery,
  median of ``BENCH_ROUNDS`` rounds;
* ``P1_dynamo_requests_per_delivery_<scenario>``, ``P1_dynamo_wru_per_delivery_<scenario>``,
  ``P1_dynamo_rru_per_delivery_<scenario>``: DynamoDB requests, write and read request units
  (counted by bench/dynamometer.py in a separate, unmeasured run). Requests are the delivery
  path's (the dispatcher's); write units add the health counter's: after the counted run, the
  activity table's stream records it made (as the counter's event source filters them) are run
  through the production counter, metered alike, in the batches Lambda would hand it: each event
  alone for ``1x1`` and ``1x5`` (a quiet fleet: events further apart than the source's 10 s
  window), ``BatchSize`` (100) records for ``10x1`` (a busy one). A note line says its requests
  and units per delivery;
* ``C1_usd_per_million_deliveries``: the ``10x1`` scenario (a busy fleet, single-webhook events)
  priced with docs/operations.md's table: DynamoDB units as counted; SQS requests (the rule's
  SendMessage to the intake queue, the intake's ReceiveMessage, DeleteMessageBatch and
  SendMessageBatch to the dispatch queue per batch of its ``BatchSize``, the dispatcher's
  ReceiveMessage and DeleteMessageBatch per batch of 10); one EventBridge event per event; Lambda
  GB-seconds at the dispatcher's measured wall time per batch with a receiver that answers in
  250 ms, at the template's memory size, plus one invocation per batch; the intake's invocations
  per batch at bench/scalemodel.py's stated 30 ms and its memory size; the health counter's
  invocations (one per 100 stream records) at its measured wall time and memory size; KMS
  requests as counted.
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import benchlib
import costs
import dynamometer
import scalemodel
from benchlib import bus_event, figure, note

from devicehooks.store.keys import split
from devicehooks_dev.local.streams import StreamSource, matches, record

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
EVENTS = {"1x1": 200, "1x5": 60, "10x1": 300}
WEBHOOKS = {"1x1": 1, "1x5": 5, "10x1": 1}
COUNTED_EVENTS = 30
SLOW_RECEIVER = 0.25
SLOW_BATCHES = 5
RECORDS_PER_BATCH = 10
ALONE = {"1x1", "1x5"}  # the health counter's batches: each event alone (else BatchSize records)


def one_by_one(dispatcher: Any, bodies: list[str], _pool: ThreadPoolExecutor) -> None:
    for body in bodies:
        _raise(benchlib.one_batch(dispatcher, [body]))


def in_batches(dispatcher: Any, bodies: list[str], pool: ThreadPoolExecutor) -> None:
    for start in range(0, len(bodies), RECORDS_PER_BATCH):  # one invocation's batch, as the handler runs it
        _raise(benchlib.one_batch(dispatcher, bodies[start : start + RECORDS_PER_BATCH], pool))


def _raise(errors: list[BaseException | None]) -> None:
    for error in errors:
        if error is not None:
            raise error


RUN: dict[str, Callable[[Any, list[str], ThreadPoolExecutor], None]] = {
    "1x1": one_by_one,
    "1x5": one_by_one,
    "10x1": in_batches,
}


class Fleet:
    """The stack's tables and key, the webhooks of each scenario, and dispatchers over them."""

    def __init__(self, info: dict[str, Any], receiver: benchlib.Receiver, slow: benchlib.Receiver) -> None:
        from devicehooks import aws

        os.environ.update(
            {
                **info["aws_endpoints"],
                "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": "testing",
                "AWS_DEFAULT_REGION": "us-east-1",
            }
        )
        aws.reset_clients()
        resources = info["resources"]
        self.integrations_table = resources["IntegrationsTable"]["TableName"]
        self.activity_table = resources["ActivityLogTable"]["TableName"]
        self.key = resources["SecretsKey"]["Arn"]
        template = benchlib.template()
        self.shapes = {
            self.integrations_table: dynamometer.TableShape.from_template(template["Resources"]["IntegrationsTable"]),
            self.activity_table: dynamometer.TableShape.from_template(template["Resources"]["ActivityLogTable"]),
        }
        self.memory_gb = benchlib.function_memory_mb(template, "DispatcherFunction") / 1024
        self.counter_memory_gb = benchlib.function_memory_mb(template, "HealthCounterFunction") / 1024
        self.intake_memory_gb = benchlib.function_memory_mb(template, "IntakeFunction") / 1024
        intake_source = template["Resources"]["IntakeFunction"]["Properties"]["Events"]["BusEvents"]
        self.intake_batch = int(intake_source["Properties"]["BatchSize"])
        self.stream = ActivityStream(resources["ActivityLogTable"]["StreamArn"], template)
        integrations, _ = self.stores(None)
        cipher = benchlib.kms_cipher(self.key)
        for scenario, count in WEBHOOKS.items():
            for n in range(count):
                benchlib.add_webhook(integrations, cipher, scenario, receiver.url(f"/{scenario}/{n}"))
        benchlib.add_webhook(integrations, cipher, "slow", slow.url("/slow"))

    def stores(self, meter: dynamometer.Meter | None) -> tuple[Any, Any]:
        from devicehooks import aws

        client = aws.client("dynamodb")
        if meter is not None:
            client = dynamometer.MeteredClient(client, self.shapes, meter)
        return benchlib.dynamo_stores(self.integrations_table, self.activity_table, client)

    def dispatcher(self, meter: dynamometer.Meter | None = None) -> Any:
        integrations, activity = self.stores(meter)
        return benchlib.dispatcher(integrations, activity, benchlib.kms_cipher(self.key))

    def health_counter(self, meter: dynamometer.Meter) -> Any:
        from devicehooks.services.health_counter import HealthCounter

        _, activity = self.stores(meter)
        return HealthCounter(activity, 7 * 24 * 3600)


class ActivityStream:
    """The activity table's stream as the health counter's event source sees it (its filter
    applied, records shaped as Lambda hands them; moto's stream has one shard)."""

    def __init__(self, arn: str, template: dict[str, Any]) -> None:
        from devicehooks import aws

        props = template["Resources"]["HealthCounterFunction"]["Properties"]["Events"]["ActivityStream"]["Properties"]
        filters = tuple(json.loads(f["Pattern"]) for f in props["FilterCriteria"]["Filters"])
        self.source = StreamSource(
            "HealthCounterFunction", "ActivityStream", arn, int(props["BatchSize"]), filters=filters
        )
        self.client = aws.client("dynamodbstreams")
        self.shard = self.client.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]["ShardId"]

    def mark(self) -> str:
        """An iterator at the stream's end: :meth:`since` reads what is written after this call."""
        return str(
            self.client.get_shard_iterator(
                StreamArn=self.source.stream_arn, ShardId=self.shard, ShardIteratorType="LATEST"
            )["ShardIterator"]
        )

    def since(self, iterator: str) -> list[dict[str, Any]]:
        records: list[dict[str, Any]] = []
        while True:
            out = self.client.get_records(ShardIterator=iterator, Limit=1000)
            iterator = out["NextShardIterator"]
            if not out["Records"]:
                return [r for r in records if any(matches(f, r) for f in self.source.filters)]
            records += [record(r, self.source) for r in out["Records"]]

    def batches(self, records: list[dict[str, Any]], alone: bool) -> list[list[dict[str, Any]]]:
        """The batches Lambda hands the counter: each event's records alone, or BatchSize at a time."""
        if not alone:
            size = self.source.batch_size
            return [records[n : n + size] for n in range(0, len(records), size)]
        grouped: dict[str, list[dict[str, Any]]] = {}
        for r in records:
            grouped.setdefault(split(r["dynamodb"]["Keys"]["sk"]["S"])[1], []).append(r)
        return list(grouped.values())


class Consumed:
    """What the health counter did with a counted run's stream records: its DynamoDB requests and
    units (a meter), its invocations and their wall time."""

    def __init__(self) -> None:
        self.meter = dynamometer.Meter()
        self.invocations = 0
        self.seconds = 0.0


def events(tenant: str, count: int) -> list[str]:
    return [bus_event(tenant, f"dev-{n}") for n in range(count)]


def cpu_per_delivery(
    fleet: Fleet, receiver: benchlib.Receiver, pool: ThreadPoolExecutor
) -> tuple[dict[str, float], float]:
    """CPU microseconds per delivery per scenario, and KMS requests per delivery (warm caches)."""
    dispatcher = fleet.dispatcher()
    for scenario in EVENTS:  # warm up: clients, connections, the KMS cache
        RUN[scenario](dispatcher, events(scenario, 10), pool)
    benchlib.kms_requests(reset=True)
    samples: dict[str, list[float]] = {s: [] for s in EVENTS}
    for _ in range(ROUNDS):
        for scenario, count in EVENTS.items():
            bodies = events(scenario, count)
            deliveries = count * WEBHOOKS[scenario]
            before = receiver.count()
            cpu = time.process_time()
            RUN[scenario](dispatcher, bodies, pool)
            samples[scenario].append((time.process_time() - cpu) / deliveries * 1e6)
            arrived = receiver.count() - before
            if arrived != deliveries:
                raise RuntimeError(f"{scenario}: {arrived} of {deliveries} deliveries arrived")
    total = ROUNDS * sum(count * WEBHOOKS[s] for s, count in EVENTS.items())
    return {s: statistics.median(v) for s, v in samples.items()}, benchlib.kms_requests() / total


def counted(fleet: Fleet, pool: ThreadPoolExecutor) -> tuple[dict[str, dynamometer.Meter], dict[str, Consumed]]:
    """The dispatcher's DynamoDB requests and units per scenario, and then the health counter's
    over the stream records the counted run made (see the module)."""
    meters: dict[str, dynamometer.Meter] = {}
    consumed: dict[str, Consumed] = {}
    for scenario in EVENTS:
        meter = dynamometer.Meter()
        dispatcher = fleet.dispatcher(meter)
        RUN[scenario](dispatcher, events(scenario, RECORDS_PER_BATCH), pool)  # warm: as the CPU run
        meter.reset()
        start = fleet.stream.mark()
        RUN[scenario](dispatcher, events(scenario, COUNTED_EVENTS), pool)
        meters[scenario] = meter
        consumer = consumed[scenario] = Consumed()
        counter = fleet.health_counter(consumer.meter)
        for batch in fleet.stream.batches(fleet.stream.since(start), alone=scenario in ALONE):
            started = time.perf_counter()
            if counter.count(batch) is not None:
                raise RuntimeError(f"{scenario}: the health counter could not write its counts")
            consumer.seconds += time.perf_counter() - started
            consumer.invocations += 1
    return meters, consumed


def lambda_seconds_per_delivery(fleet: Fleet, pool: ThreadPoolExecutor) -> float:
    """Wall time per delivery of batches of 10 single-webhook events, the receiver taking 250 ms."""
    dispatcher = fleet.dispatcher()
    in_batches(dispatcher, events("slow", RECORDS_PER_BATCH), pool)  # warm up
    walls = []
    for _ in range(SLOW_BATCHES):
        started = time.perf_counter()
        in_batches(dispatcher, events("slow", RECORDS_PER_BATCH), pool)
        walls.append(time.perf_counter() - started)
    return statistics.median(walls) / RECORDS_PER_BATCH


def main() -> None:
    benchlib.quiet()
    # the stack reads no stream: the counted runs' records are counted here, metered; its own
    # health counter would write the same hour items meanwhile (and make this one's writes cross)
    os.environ["DEVICEHOOKS_LOCAL_STREAMS"] = "0"
    with (
        benchlib.receiver() as receiver,
        benchlib.receiver(delay=SLOW_RECEIVER) as slow,
        tempfile.TemporaryDirectory(prefix="bench-p1-") as workdir,
        ThreadPoolExecutor(RECORDS_PER_BATCH, thread_name_prefix="record") as pool,
    ):
        stack = benchlib.start_stack(Path(workdir))
        try:
            with urllib.request.urlopen(f"{stack.url}/local/info", timeout=30) as answer:
                fleet = Fleet(json.loads(answer.read()), receiver, slow)
            cpu, kms = cpu_per_delivery(fleet, receiver, pool)
            meters, consumed = counted(fleet, pool)
            seconds = lambda_seconds_per_delivery(fleet, pool)
        finally:
            benchlib.stop_stack(stack)
    note(f"dispatcher in this process, DynamoDB and KMS on moto in another; {ROUNDS} rounds, medians")
    per: dict[str, dict[str, float]] = {}
    for scenario, meter in meters.items():
        deliveries = COUNTED_EVENTS * WEBHOOKS[scenario]
        consumer = consumed[scenario]
        per[scenario] = {
            "requests": meter.total_requests / deliveries,  # the delivery path's
            "wru": (meter.write_units + consumer.meter.write_units) / deliveries,
            "rru": (meter.read_units + consumer.meter.read_units) / deliveries,
            "invocations": consumer.invocations / deliveries,
            "counter_seconds": consumer.seconds / deliveries,
        }
        calls = ", ".join(f"{op} {n / deliveries:.2f}" for op, n in sorted(meter.requests.items()))
        note(f"{scenario}: per delivery {calls}")
        note(
            f"{scenario}: health counter: {consumer.meter.total_requests / deliveries:.2f} requests, "
            f"{consumer.meter.write_units / deliveries:.2f} WRU per delivery "
            f"({consumer.invocations} invocation(s) for {deliveries} deliveries: "
            + (
                "each event alone)"
                if scenario in ALONE
                else f"up to {fleet.stream.source.batch_size} stream records each)"
            )
        )
    for scenario in EVENTS:
        figure(f"P1_cpu_us_per_delivery_{scenario}", cpu[scenario], 0)
    for scenario in EVENTS:
        figure(f"P1_dynamo_requests_per_delivery_{scenario}", per[scenario]["requests"])
        figure(f"P1_dynamo_wru_per_delivery_{scenario}", per[scenario]["wru"])
        figure(f"P1_dynamo_rru_per_delivery_{scenario}", per[scenario]["rru"])

    busy = per["10x1"]
    # the health counter: its invocations per delivery, at its measured time and memory
    counter_lambda = busy["counter_seconds"] * fleet.counter_memory_gb * costs.price("lambda_gb_second") + busy[
        "invocations"
    ] * costs.price("lambda_request")
    # the rule's SendMessage; the intake's Receive, DeleteMessageBatch and SendMessageBatch per its
    # batch; the dispatcher's Receive and DeleteMessageBatch per batch
    sqs = 1 + 3 / fleet.intake_batch + 2 / RECORDS_PER_BATCH
    intake_lambda = (
        scalemodel.Pipeline.intake_batch_s * fleet.intake_memory_gb * costs.price("lambda_gb_second")
        + costs.price("lambda_request")
    ) / fleet.intake_batch
    parts = {
        "DynamoDB": busy["wru"] * costs.price("dynamodb_write_unit") + busy["rru"] * costs.price("dynamodb_read_unit"),
        "SQS": sqs * costs.price("sqs_request"),
        "EventBridge": costs.price("eventbridge_event"),
        "Lambda": seconds * fleet.memory_gb * costs.price("lambda_gb_second")
        + costs.price("lambda_request") / RECORDS_PER_BATCH
        + intake_lambda
        + counter_lambda,
        "KMS": kms * costs.price("kms_request"),
    }
    note(
        f"C1 (10x1, receiver {SLOW_RECEIVER * 1000:.0f} ms: {seconds * 1000:.1f} ms of a "
        f"{fleet.memory_gb:.0f} GB function per delivery): "
        + ", ".join(f"{name} ${usd * 1e6:.2f}" for name, usd in parts.items())
        + f" (of Lambda, the intake ${intake_lambda * 1e6:.3f}, the health counter ${counter_lambda * 1e6:.3f}; "
        f"of SQS, the intake's hop ${3 / fleet.intake_batch * costs.price('sqs_request') * 1e6:.2f})"
    )
    figure("C1_usd_per_million_deliveries", sum(parts.values()) * 1e6)


if __name__ == "__main__":
    main()
