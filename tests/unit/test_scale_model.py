"""S1's arithmetic (bench/scalemodel.py): peaks per partition key, shards, drain, daily cost. No I/O."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path
from types import ModuleType

import pytest


def _load() -> ModuleType:
    path = Path(__file__).resolve().parents[2] / "bench" / "scalemodel.py"
    spec = importlib.util.spec_from_file_location("scalemodel", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["scalemodel"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


sm = _load()

TENANT = sm.KeyLoad("table", "T#<tenant>", 3.1)
PENDING = sm.KeyLoad("by_state", "T#<tenant>#S#pending#Y#device-status-changed", 2.0)
BY_TIME = sm.KeyLoad("by_time", "T#<tenant>", 1.0)
DEVICE = sm.KeyLoad("by_device", "T#<tenant>#V#<device>", 1.0, per_device=True)
KEYS = (TENANT, PENDING, BY_TIME, DEVICE)
MEASURED = sm.Measured(
    busy_wru=9.1, busy_rru=0.1, busy_requests=2.2, alone_wru=10.0, alone_rru=1.0, alone_requests=4.0, keys=KEYS
)
PIPE = sm.Pipeline(
    dispatch_concurrency=20,
    batch_size=10,
    dispatcher_memory_gb=1.0,
    intake_batch_size=10,
    intake_memory_gb=0.25,
    endpoint_latency_s=0.2,
    dynamo_latency_s=0.008,
)
QUIET = sm.Fleet(devices=0, hot_devices=100_000, arrival_s=60.0)  # no background


def test_names() -> None:
    assert TENANT.name == "table_tenant"
    assert PENDING.name == "by_state_pending_device_status_changed"
    assert DEVICE.name == "by_device_device"
    assert sm.KeyLoad("by_webhook", "T#<tenant>#I#<webhook>", 1.0).name == "by_webhook_webhook"


def test_peak_per_key_is_rate_times_units_and_a_device_key_takes_one_event() -> None:
    found = {p.load.name: p.peak for p in sm.peaks(KEYS, 746.0)}
    assert found["table_tenant"] == pytest.approx(746 * 3.1)
    assert found["by_state_pending_device_status_changed"] == pytest.approx(1492.0)
    assert found["by_time_tenant"] == pytest.approx(746.0)
    assert found["by_device_device"] == pytest.approx(1.0)
    over = {p.load.name: p.over for p in sm.peaks(KEYS, 746.0)}
    assert over["table_tenant"] == pytest.approx(2.3126)
    assert over["by_time_tenant"] < 1


@pytest.mark.parametrize(
    ("peak", "headroom", "shards"),
    [(2312.6, 1.5, 4), (1492.0, 1.5, 3), (746.0, 1.5, 2), (500.0, 1.5, 1), (1000.0, 1.0, 1), (1000.1, 1.0, 2)],
)
def test_shards_needed(peak: float, headroom: float, shards: int) -> None:
    assert sm.shards_needed(peak, headroom) == shards


def test_sharding_splits_only_the_keys_over_the_limit() -> None:
    split = {k.name: k for k in sm.sharded(KEYS, 746.0, 1.5)}
    assert split["table_tenant"].shards == 4
    assert split["by_state_pending_device_status_changed"].shards == 3
    assert split["by_time_tenant"].shards == 1
    assert split["by_device_device"].shards == 1
    peaks = {p.load.name: p.peak for p in sm.peaks(tuple(split.values()), 746.0)}
    assert peaks["table_tenant"] == pytest.approx(746 * 3.1 / 4)
    assert all(p < sm.PARTITION_WCU_LIMIT for p in peaks.values())


def test_drain_at_the_template_concurrency_and_as_the_hottest_key_allows() -> None:
    batch_s = 0.2 + 4 * 0.008  # endpoint, then the batch's 4 DynamoDB requests one after the other
    assert PIPE.batch_s(MEASURED) == pytest.approx(batch_s)
    flow = sm.drain(MEASURED, QUIET, PIPE, KEYS)
    assert flow.rate == pytest.approx(20 * 10 / batch_s)  # below the arrival, 100,000 in 60 s
    assert flow.seconds == pytest.approx(100_000 / (200 / batch_s) + batch_s)
    assert flow.throttled_rate == pytest.approx(1000 / 3.1)  # the tenant's table key
    assert flow.throttled_seconds == pytest.approx(100_000 / (1000 / 3.1) + batch_s)
    split = sm.sharded(KEYS, flow.rate, PIPE.headroom)
    assert sm.drain(MEASURED, QUIET, PIPE, split).throttled_rate == pytest.approx(flow.rate)


def test_drain_follows_a_slow_arrival_and_leaves_the_background_its_dispatchers() -> None:
    slow = sm.drain(MEASURED, sm.Fleet(devices=0, hot_devices=100_000, arrival_s=600.0), PIPE, KEYS)
    assert slow.rate == pytest.approx(100_000 / 600)
    busy = sm.Fleet(devices=864_000, hot_devices=100_000)  # 10 events/s, each alone in its batch
    flow = sm.drain(MEASURED, busy, PIPE, KEYS)
    assert flow.background_environments == pytest.approx(10 * PIPE.batch_s(MEASURED))
    assert flow.rate == pytest.approx((20 - flow.background_environments) * 10 / PIPE.batch_s(MEASURED))


def test_max_concurrency_is_where_the_hottest_key_reaches_the_limit() -> None:
    batch_s = PIPE.batch_s(MEASURED)
    assert sm.max_concurrency(MEASURED, QUIET, PIPE, KEYS) == pytest.approx(1000 / 3.1 * batch_s / 10)
    split = sm.sharded(KEYS, 862.0, 1.5)  # the table key x 4, pending x 3: by_time is next
    assert sm.max_concurrency(MEASURED, QUIET, PIPE, split) == pytest.approx(1000 / 1.0 * batch_s / 10)


def test_daily_cost_counts_the_background_and_the_change() -> None:
    prices = dict.fromkeys(
        (
            "dynamodb_write_unit",
            "dynamodb_read_unit",
            "sqs_request",
            "eventbridge_event",
            "lambda_gb_second",
            "lambda_request",
            "http_api_request",
            "kms_request",
        ),
        1.0,
    )
    fleet = sm.Fleet(devices=1000, hot_devices=100, arrival_s=60.0)
    cost = sm.daily_cost(MEASURED, fleet, PIPE, prices)
    assert cost["dynamodb"] == pytest.approx(1000 * (10.0 + 1.0) + 100 * (9.1 + 0.1))
    assert cost["eventbridge"] == pytest.approx(1100)
    assert cost["http_api"] == pytest.approx(1000 + 1)  # one request per quiet event, one bulk of 100
    idle_polls = 5 * 3 * 86400 / 20
    assert cost["sqs"] == pytest.approx(1000 * 6 + 100 * (1 + 0.3 + 0.2) + idle_polls)
    batch_s = PIPE.batch_s(MEASURED)
    gb_s = (1000 + 10) * batch_s * 1.0 + (1000 + 10) * 0.03 * 0.25
    assert cost["lambda"] == pytest.approx(gb_s + 2 * 1010)
    assert cost["kms"] == pytest.approx(1000 + 20 * math.ceil(60 / 300 + 1))
