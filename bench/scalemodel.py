"""S1's arithmetic: a fleet's load on DynamoDB's partition keys, its drain time and its daily cost,
from per-delivery counts measured elsewhere (bench/scale.py measures them). Pure: no I/O, no AWS.

The model, for one tenant's fleet-wide change (every device of the tenant sends one event, all
within ``arrival_s``) on top of a background of every device's daily events:

* the dispatchers deliver the change at ``rate`` deliveries per second, the lower of the rate it
  arrives at and what the dispatcher's ``MaximumConcurrency`` environments can do (each batch of
  ``BatchSize`` records runs side by side: one endpoint latency plus the batch's critical path of
  DynamoDB requests), less the environments the background takes (a fair queue serves the quiet
  tenants first, and gives the noisy one every environment left: work-conserving);
* a partition key the tenant's deliveries share (the tenant's, its webhook's, a state's) takes
  ``rate x units per delivery`` write units per second; a device's key takes one event's units;
* a key over DynamoDB's 1,000 write units per second per partition throttles its writes (a global
  secondary index that cannot keep up throttles the table's writes too): the whole change then
  goes at the rate its hottest key allows; sharding a key ``N`` ways (a suffix from a hash of the
  event id) divides its load by ``N``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

PARTITION_WCU_LIMIT = 1000.0  # DynamoDB: write units per second one partition serves (docs: "Partitions")


@dataclass(frozen=True)
class KeyLoad:
    """Write units per delivery on one partition key of the activity log (or integrations) table.

    ``where`` is ``table`` (the base table) or an index name; ``key`` the key's shape
    (``T#<tenant>#S#pending#...``); ``per_device`` when each device has a key of its own (the
    change spreads it over every device); ``shards`` the ways the key is split (1: as today)."""

    where: str
    key: str
    units_per_delivery: float
    per_device: bool = False
    shards: int = 1

    @property
    def name(self) -> str:
        """A figure-safe name: ``table_tenant``, ``by_state_pending_device_status_changed``."""
        rest = self.key.removeprefix("T#<tenant>")
        for marker, word in (("#I#<webhook>", "_webhook"), ("#V#<device>", "_device"), ("#S#", "_"), ("#Y#", "_")):
            rest = rest.replace(marker, word)
        slug = "".join(c if c.isalnum() else "_" for c in rest.lower()).strip("_") or "tenant"
        return f"{self.where}_{slug}"


@dataclass(frozen=True)
class Measured:
    """Per delivery, counted on the real dispatcher: ``busy`` in batches of one tenant's events,
    ``alone`` an event alone in its batch (a quiet tenant's)."""

    busy_wru: float
    busy_rru: float
    busy_requests: float
    alone_wru: float
    alone_rru: float
    alone_requests: float
    keys: tuple[KeyLoad, ...]

    def critical_requests(self) -> float:
        """DynamoDB requests one after the other in a batch: a record's own (side by side with the
        others') and the batch's (the tenant's webhooks read first, the counts written last)."""
        return self.alone_requests


@dataclass(frozen=True)
class Fleet:
    devices: int = 1_000_000
    tenants: int = 10_000
    hot_devices: int = 100_000  # the tenant whose fleet-wide change is modelled
    bulk_size: int = 100  # Mender's bulk status change: at most 100 devices a request
    arrival_s: float = 60.0  # the change's 1,000 bulk requests reach the bus within this
    background_per_device_per_day: float = 1.0  # each device's status or inventory events a day
    background_batch: int = 1  # a quiet tenant's events come alone in their batch (pessimistic)

    @property
    def background_per_s(self) -> float:
        return self.devices * self.background_per_device_per_day / 86400


@dataclass(frozen=True)
class Pipeline:
    """From template.yaml (concurrency, batch sizes, memory) and stated latencies."""

    dispatch_concurrency: int
    batch_size: int
    dispatcher_memory_gb: float
    intake_batch_size: int
    intake_memory_gb: float
    endpoint_latency_s: float = 0.2
    dynamo_latency_s: float = 0.008  # one DynamoDB request from Lambda in the same region
    intake_batch_s: float = 0.03  # an intake invocation (docs/architecture.md, "Fair share")
    sqs_pollers: int = 5  # Lambda's pollers per SQS event source when idle
    sqs_sources: int = 3  # intake, dispatch, retry queues
    headroom: float = 1.5  # shards = ceil(peak / limit x headroom)

    def batch_s(self, measured: Measured) -> float:
        return self.endpoint_latency_s + measured.critical_requests() * self.dynamo_latency_s


@dataclass(frozen=True)
class KeyPeak:
    load: KeyLoad
    peak: float  # write units per second on one key (of one shard)

    @property
    def over(self) -> float:
        """How many times the partition limit (over 1: throttled)."""
        return self.peak / PARTITION_WCU_LIMIT


@dataclass(frozen=True)
class Drain:
    rate: float  # deliveries per second of the change, unthrottled
    seconds: float  # until the change's last delivery, unthrottled
    throttled_rate: float  # what the hottest key lets through
    throttled_seconds: float
    background_environments: float  # dispatcher environments the background keeps busy


def drain(measured: Measured, fleet: Fleet, pipeline: Pipeline, keys: Sequence[KeyLoad]) -> Drain:
    batch_s = pipeline.batch_s(measured)
    background_envs = fleet.background_per_s / fleet.background_batch * batch_s
    capacity = max(pipeline.dispatch_concurrency - background_envs, 0.0) * pipeline.batch_size / batch_s
    arrival = fleet.hot_devices / fleet.arrival_s
    rate = min(capacity, arrival)
    # a key takes rate x units: the rate its hottest shard allows (each device's key is never the bound)
    bounds = [PARTITION_WCU_LIMIT * k.shards / k.units_per_delivery for k in keys if not k.per_device]
    throttled = min([rate, *[b for b in bounds if b > 0]])
    return Drain(
        rate=rate,
        seconds=fleet.hot_devices / rate + batch_s,
        throttled_rate=throttled,
        throttled_seconds=fleet.hot_devices / throttled + batch_s,
        background_environments=background_envs,
    )


def max_concurrency(measured: Measured, fleet: Fleet, pipeline: Pipeline, keys: Sequence[KeyLoad]) -> float:
    """The dispatcher concurrency at which the hottest key (of one shard) reaches the partition
    limit during the change: raising ``MaximumConcurrency`` past it only adds throttling."""
    batch_s = pipeline.batch_s(measured)
    background_envs = fleet.background_per_s / fleet.background_batch * batch_s
    rates = [PARTITION_WCU_LIMIT * k.shards / k.units_per_delivery for k in keys if not k.per_device]
    return background_envs + min(r for r in rates if r > 0) * batch_s / pipeline.batch_size


def peaks(keys: Sequence[KeyLoad], rate: float) -> list[KeyPeak]:
    """Write units per second on one key of each shape (one shard of it) at ``rate`` deliveries/s;
    a device's key gets its one event's units within a second."""
    return [KeyPeak(k, k.units_per_delivery if k.per_device else rate * k.units_per_delivery / k.shards) for k in keys]


def shards_needed(peak: float, headroom: float) -> int:
    """Shards so that each stays under the partition limit with ``headroom``."""
    return max(1, math.ceil(peak / PARTITION_WCU_LIMIT * headroom))


def sharded(keys: Sequence[KeyLoad], rate: float, headroom: float) -> tuple[KeyLoad, ...]:
    """The keys over the limit at ``rate``, each split into the shards it needs."""
    out = []
    for found in peaks(keys, rate):
        if found.over > 1 and not found.load.per_device:
            out.append(replace(found.load, shards=shards_needed(found.peak * found.load.shards, headroom)))
        else:
            out.append(found.load)
    return tuple(out)


def daily_cost(measured: Measured, fleet: Fleet, pipeline: Pipeline, prices: Mapping[str, float]) -> dict[str, float]:
    """USD per day, by service: the background's events and one fleet-wide change."""
    background = fleet.devices * fleet.background_per_device_per_day
    change = float(fleet.hot_devices)
    bg_batch, busy_batch = fleet.background_batch, pipeline.batch_size
    batch_s = pipeline.batch_s(measured)
    # SQS: the rule's SendMessage; the intake's receive and delete per batch and its SendMessageBatch;
    # the dispatcher's receive and delete per batch; the idle pollers' 20 s long polls (at most)
    sqs = (
        background * (1 + 3 / bg_batch + 2 / bg_batch)
        + change * (1 + 3 / pipeline.intake_batch_size + 2 / busy_batch)
        + pipeline.sqs_pollers * pipeline.sqs_sources * 86400 / 20
    )
    dispatcher_batches = background / bg_batch + change / busy_batch
    intake_batches = background / bg_batch + change / pipeline.intake_batch_size
    gb_s = (
        dispatcher_batches * batch_s * pipeline.dispatcher_memory_gb
        + intake_batches * pipeline.intake_batch_s * pipeline.intake_memory_gb
    )
    # KMS: a secret is cached 5 minutes per environment: a quiet tenant's events (hours apart) each
    # decrypt; the change decrypts once per environment per 5 minutes
    kms = background + pipeline.dispatch_concurrency * math.ceil(fleet.arrival_s / 300 + 1)
    return {
        "dynamodb": (background * measured.alone_wru + change * measured.busy_wru) * prices["dynamodb_write_unit"]
        + (background * measured.alone_rru + change * measured.busy_rru) * prices["dynamodb_read_unit"],
        "sqs": sqs * prices["sqs_request"],
        "lambda": gb_s * prices["lambda_gb_second"] + (dispatcher_batches + intake_batches) * prices["lambda_request"],
        "eventbridge": (background + change) * prices["eventbridge_event"],
        "http_api": (background + change / fleet.bulk_size) * prices["http_api_request"],
        "kms": kms * prices["kms_request"],
    }
