"""S1: a million-device fleet on paper, from what one delivery measurably writes.

The fleet: 1,000,000 devices across 10,000 tenants, each device sending one status or inventory
event a day (the background), and one tenant of 100,000 devices making a fleet-wide change: 1,000
of Mender's bulk status changes of 100 devices, reaching the bus within a minute. Every tenant has
one webhook, answering in 200 ms.

Measured in this run (moto's server in this process, the template's tables, the production
dispatcher and stores through bench/dynamometer.py's meter, the real sender to a receiver that
answers 200 at once; only counts are kept, never times): DynamoDB requests, write and read units
per delivery, and the write units per delivery on each partition key (the table's, each index's),
for a tenant's events in batches of 10 (the change) and for an event alone in its batch (a quiet
tenant). Read from template.yaml: the dispatcher's and the intake's ``MaximumConcurrency``,
``BatchSize``, ``MemorySize``. Stated: the latencies, the arrival, the headroom (bench/scalemodel.py,
``Fleet`` and ``Pipeline``), and the prices (docs/operations.md, "Prices": AWS list prices,
us-east-1).

Figures (``S1_*``): the measured inputs; the change's delivery rate and drain time, unthrottled and
as the hottest partition key allows; each partition key's peak write units per second against
DynamoDB's 1,000 per partition; for each key over it, by how much and the shards it needs, then the
model again with those shards; the cost per day by service. bench/scalemodel.py does the arithmetic
(tests/unit/test_scale_model.py checks it); docs/architecture.md, "Scale: a million-device fleet",
explains it.
"""

from __future__ import annotations

import logging
import os
import re
import urllib.request
import uuid
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import benchlib
import costs
import delivery
import dynamometer
import scalemodel
from benchlib import bus_event, figure, note
from scalemodel import Fleet, KeyLoad, Measured, Pipeline

BUSY_BATCHES = 20  # batches of 10 of the hot tenant's events, counted (200: the shards' shares settle)
ALONE_EVENTS = 20  # quiet tenants' events, each alone in its batch, counted
AWS_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
FLEET = Fleet()
TABLES = {"ActivityLogTable": "", "IntegrationsTable": "integrations_"}  # figure prefix of each table


def mender_id() -> str:
    """A tenant id as Mender makes them (24 hex digits): item sizes depend on it."""
    return uuid.uuid4().hex[:24]


class Moto:
    """moto's server in this process with the template's resources (as bench/filter_costs.py)."""

    def __init__(self) -> None:
        from moto.server import ThreadedMotoServer

        from devicehooks import aws
        from devicehooks_dev.local import motofixes
        from devicehooks_dev.local.stack import create_resources

        if motofixes.enabled():
            motofixes.apply()
        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's server logs every request
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.server.start()
        host, port = self.server.get_host_and_port()
        self.endpoint = f"http://{host}:{port}"
        os.environ.update({**AWS_ENV, "AWS_ENDPOINT_URL": self.endpoint})
        aws.reset_clients()
        self.template = benchlib.template()
        self.resolver, physical = create_resources(self.template, {"JwtPublicKeys": "unused"})
        self.client = aws.client("dynamodb")
        self.names = {logical: physical[logical]["TableName"] for logical in TABLES}

    def shapes(self) -> dict[str, dynamometer.TableShape]:
        resources = self.template["Resources"]
        return {name: dynamometer.TableShape.from_template(resources[logical]) for logical, name in self.names.items()}

    def stop(self) -> None:
        request = urllib.request.Request(f"{self.endpoint}/moto-api/reset", method="POST")
        urllib.request.urlopen(request, timeout=30).close()
        self.server.stop()


def count(
    moto: Moto, receiver: benchlib.Receiver, pool: ThreadPoolExecutor, batch: int, events: int
) -> tuple[dynamometer.Meter, dynamometer.Meter, dict[str, str]]:
    """A new tenant with one webhook, proven; then ``events`` of its devices' events in batches of
    ``batch``, metered; then the health counter over the stream records they made (each event alone
    in its stream batch when ``batch`` is 1, a quiet tenant's; else the event source's batches),
    metered apart. Returns the two meters and what to write for the tenant's ids in key shapes."""
    from devicehooks.services.health_counter import HealthCounter
    from devicehooks_dev.doubles import PlainTestCipher

    meter = dynamometer.Meter()
    client = dynamometer.MeteredClient(moto.client, moto.shapes(), meter)
    integrations, activity = benchlib.dynamo_stores(
        moto.names["IntegrationsTable"], moto.names["ActivityLogTable"], client
    )
    cipher = PlainTestCipher()
    tenant = mender_id()
    webhook = benchlib.add_webhook(integrations, cipher, tenant, receiver.url(f"/{tenant}"))
    dispatcher = benchlib.dispatcher(integrations, activity, cipher)
    for _ in range(2):  # its first successes prove the webhook: the happy path from then on
        raise_any(benchlib.one_batch(dispatcher, [bus_event(tenant, str(uuid.uuid4()))]))
    meter.reset()
    arn = moto.client.describe_table(TableName=moto.names["ActivityLogTable"])["Table"]["LatestStreamArn"]
    stream = delivery.ActivityStream(arn, moto.template)
    mark = stream.mark()
    devices = [str(uuid.uuid4()) for _ in range(events)]
    bodies = [bus_event(tenant, device) for device in devices]
    for start in range(0, events, batch):
        raise_any(benchlib.one_batch(dispatcher, bodies[start : start + batch], pool if batch > 1 else None))
    counter_meter = dynamometer.Meter()
    _, counter_activity = benchlib.dynamo_stores(
        moto.names["IntegrationsTable"],
        moto.names["ActivityLogTable"],
        dynamometer.MeteredClient(moto.client, moto.shapes(), counter_meter),
    )
    counter = HealthCounter(counter_activity, 7 * 24 * 3600)
    for records in stream.batches(stream.since(mark), alone=batch == 1):
        if counter.count(records) is not None:
            raise RuntimeError("the health counter could not write its counts")
    names = {tenant: "<tenant>", webhook: "<webhook>", **dict.fromkeys(devices, "<device>")}
    return meter, counter_meter, names


def raise_any(errors: list[BaseException | None]) -> None:
    for error in errors:
        if error is not None:
            raise error


def key_loads(
    meter: dynamometer.Meter, names: dict[str, str], tables: dict[str, str], deliveries: int
) -> list[KeyLoad]:
    """The meter's write units per partition key, summed per key shape (ids replaced by
    ``<tenant>``, ``<webhook>``, ``<device>``), per delivery."""
    ids = re.compile("|".join(sorted(map(re.escape, names), key=len, reverse=True)))
    units: dict[tuple[str, str], float] = defaultdict(float)
    for (table, index, value), wru in meter.partitions.items():
        shape = ids.sub(lambda m: names[m.group(0)], value)
        units[(tables[table] + (index or "table"), shape)] += wru
    return [
        KeyLoad(where, shape, total / deliveries, per_device="<device>" in shape)
        for (where, shape), total in sorted(units.items())
    ]


def pipeline(moto: Moto) -> Pipeline:
    """The dispatcher's and the intake's event sources and memory, as template.yaml deploys them."""
    resources = moto.template["Resources"]

    def source(function: str, event: str) -> dict[str, Any]:
        props: dict[str, Any] = moto.resolver.resolve(resources[function]["Properties"]["Events"][event]["Properties"])
        return props

    dispatch = source("DispatcherFunction", "DeviceEvents")
    intake = source("IntakeFunction", "BusEvents")
    return Pipeline(
        dispatch_concurrency=int(dispatch["ScalingConfig"]["MaximumConcurrency"]),
        batch_size=int(dispatch["BatchSize"]),
        dispatcher_memory_gb=benchlib.function_memory_mb(moto.template, "DispatcherFunction") / 1024,
        intake_batch_size=int(intake["BatchSize"]),
        intake_memory_gb=benchlib.function_memory_mb(moto.template, "IntakeFunction") / 1024,
    )


def measure() -> tuple[Measured, Pipeline, float]:
    moto = Moto()
    try:
        with benchlib.receiver() as receiver, ThreadPoolExecutor(10, thread_name_prefix="record") as pool:
            pipe = pipeline(moto)
            busy_events = BUSY_BATCHES * pipe.batch_size
            busy, busy_counter, busy_names = count(moto, receiver, pool, pipe.batch_size, busy_events)
            alone, alone_counter, _ = count(moto, receiver, pool, 1, ALONE_EVENTS)
        tables = {moto.names[logical]: prefix for logical, prefix in TABLES.items()}
        timeout = float(
            moto.resolver.resolve(moto.template["Resources"]["DispatcherFunction"]["Properties"]["Timeout"])
        )
    finally:
        moto.stop()
    for name, meter, counter, events in (
        ("busy", busy, busy_counter, busy_events),
        ("alone", alone, alone_counter, ALONE_EVENTS),
    ):
        calls = ", ".join(f"{op} {n / events:.2f}" for op, n in sorted(meter.requests.items()))
        note(
            f"measured, {name} ({events} deliveries): per delivery {calls}; the health counter "
            f"{counter.total_requests / events:.2f} requests, {counter.write_units / events:.2f} WRU"
        )
    both = dynamometer.Meter()  # the busy tenant's keys: the dispatcher's writes and the counter's
    for meter in (busy, busy_counter):
        for partition, units in meter.partitions.items():
            both.partitions[partition] += units
    # requests: the delivery path's (the batch's critical path); units: the counter's too
    return (
        Measured(
            busy_wru=(busy.write_units + busy_counter.write_units) / busy_events,
            busy_rru=busy.read_units / busy_events,
            busy_requests=busy.total_requests / busy_events,
            alone_wru=(alone.write_units + alone_counter.write_units) / ALONE_EVENTS,
            alone_rru=alone.read_units / ALONE_EVENTS,
            alone_requests=alone.total_requests / ALONE_EVENTS,
            keys=tuple(key_loads(both, busy_names, tables, busy_events)),
        ),
        pipe,
        timeout,
    )


def report_keys(prefix: str, keys: tuple[KeyLoad, ...], rate: float, headroom: float) -> None:
    for found in scalemodel.peaks(keys, rate):
        load = found.load
        figure(f"{prefix}peak_wcu_per_s_{load.name}", found.peak, 0)
        if found.over > 1:
            need = scalemodel.shards_needed(found.peak * load.shards, headroom)
            note(
                f"{load.where} {load.key}: {found.peak:.0f} WCU/s, {found.over:.2f} x the "
                f"{scalemodel.PARTITION_WCU_LIMIT:.0f} a partition takes: needs {need} shards"
            )
            figure(f"{prefix}over_limit_{load.name}", found.over)
            figure(f"{prefix}shards_{load.name}", need, 0)


def main() -> None:
    benchlib.quiet()
    measured, pipe, timeout = measure()
    prices = costs.prices()
    note(
        f"fleet: {FLEET.devices:,} devices, {FLEET.tenants:,} tenants, one webhook each, "
        f"{FLEET.background_per_device_per_day:g} event per device a day ({FLEET.background_per_s:.1f}/s); "
        f"one tenant's {FLEET.hot_devices:,} devices change in {FLEET.hot_devices // FLEET.bulk_size:,} bulk "
        f"requests of {FLEET.bulk_size} within {FLEET.arrival_s:.0f} s"
    )
    note(
        f"template: dispatcher MaximumConcurrency {pipe.dispatch_concurrency}, BatchSize {pipe.batch_size}, "
        f"{pipe.dispatcher_memory_gb * 1024:.0f} MB, timeout {timeout:.0f} s; intake BatchSize "
        f"{pipe.intake_batch_size}, {pipe.intake_memory_gb * 1024:.0f} MB"
    )
    note(
        f"stated: endpoint {pipe.endpoint_latency_s * 1000:.0f} ms, DynamoDB request "
        f"{pipe.dynamo_latency_s * 1000:.0f} ms ({measured.critical_requests():.1f} one after the other per batch: "
        f"a batch takes {pipe.batch_s(measured) * 1000:.0f} ms), intake batch {pipe.intake_batch_s * 1000:.0f} ms, "
        f"headroom {pipe.headroom:g}, partition limit {scalemodel.PARTITION_WCU_LIMIT:.0f} WCU/s"
    )
    note(
        "prices (docs/operations.md, AWS list, us-east-1): DynamoDB on-demand "
        f"${prices['dynamodb_write_unit'] * 1e6:.3f}/M WRU, ${prices['dynamodb_read_unit'] * 1e6:.3f}/M RRU; "
        f"SQS ${prices['sqs_request'] * 1e6:.2f}/M requests; EventBridge ${prices['eventbridge_event'] * 1e6:.2f}/M "
        f"events; Lambda ${prices['lambda_gb_second']:.10f}/GB-s (arm64), ${prices['lambda_request'] * 1e6:.2f}/M "
        f"invocations; HTTP API ${prices['http_api_request'] * 1e6:.2f}/M; KMS ${prices['kms_request'] * 1e6:.2f}/M"
    )
    figure("S1_wru_per_delivery_busy", measured.busy_wru)
    figure("S1_rru_per_delivery_busy", measured.busy_rru)
    figure("S1_requests_per_delivery_busy", measured.busy_requests)
    figure("S1_wru_per_delivery_alone", measured.alone_wru)
    figure("S1_rru_per_delivery_alone", measured.alone_rru)
    figure("S1_requests_per_delivery_alone", measured.alone_requests)
    for load in measured.keys:
        note(f"per delivery (busy): {load.where} {load.key}: {load.units_per_delivery:.2f} WRU")
        figure(f"S1_wru_per_delivery_{load.name}", load.units_per_delivery)

    keys = measured.keys
    flow = scalemodel.drain(measured, FLEET, pipe, keys)
    note(
        f"the background keeps {flow.background_environments:.1f} of {pipe.dispatch_concurrency} dispatchers "
        "busy (a fair queue serves it first); the change gets the rest"
    )
    figure("S1_change_deliveries_per_s", flow.rate, 0)
    figure("S1_drain_s", flow.seconds, 0)
    note(
        "each key against DynamoDB's 1,000 WCU/s a partition: an index key over it throttles the table's "
        "writes too (a GSI that cannot keep up throttles its base table), so the change goes at its hottest key's pace"
    )
    report_keys("S1_", keys, flow.rate, pipe.headroom)
    figure("S1_throttled_deliveries_per_s", flow.throttled_rate, 0)
    figure("S1_throttled_drain_s", flow.throttled_seconds, 0)
    figure("S1_max_concurrency", scalemodel.max_concurrency(measured, FLEET, pipe, keys), 1)

    split = scalemodel.sharded(keys, flow.rate, pipe.headroom)
    shards = ", ".join(f"{k.where} {k.key} x {k.shards}" for k in split if k.shards > 1)
    note(f"with shards: {shards or 'none needed'}")
    flow_split = scalemodel.drain(measured, FLEET, pipe, split)
    report_keys("S1_sharded_", split, flow_split.rate, pipe.headroom)
    figure("S1_sharded_throttled_deliveries_per_s", flow_split.throttled_rate, 0)
    figure("S1_sharded_drain_s", flow_split.throttled_seconds, 0)
    figure("S1_sharded_max_concurrency", scalemodel.max_concurrency(measured, FLEET, pipe, split), 1)

    cost = scalemodel.daily_cost(measured, FLEET, pipe, prices)
    for service, usd in cost.items():
        figure(f"S1_usd_per_day_{service}", usd)
    figure("S1_usd_per_day", sum(cost.values()))


if __name__ == "__main__":
    main()
