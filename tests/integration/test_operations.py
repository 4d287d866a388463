"""Operating the pipeline: dead-letter redrive, EMF metrics and correlated logs, health."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import uuid
from pathlib import Path

import requests

from devicehooks_dev.local.stack import LocalStack
from tests.conftest import load_event
from tests.ids import webhook_id
from tests.integration.test_faults import Scenario
from tests.receiver import Answer, Receiver, eventually

DEVICEHOOKS = Path(sys.executable).parent / "devicehooks"


def test_an_exhausted_delivery_is_redriven_from_the_delivery_dlq(stack: LocalStack) -> None:
    receiver = Receiver()
    try:
        receiver.script("/hook", *[Answer(500)] * 3)
        scenario = Scenario(stack, receiver.url("/hook"))
        scenario.decommission()
        scenario.final("failed")
        assert eventually(scenario.dead_lettered)
        moved = subprocess.run(
            [str(DEVICEHOOKS), "redrive", "--queue", "delivery", "--local", stack.url],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert moved.returncode == 0, moved.stderr
        assert moved.stdout.startswith("moved ")
        status = scenario.final("delivered")
        assert status["attempts"] == 4  # three failed, then the redriven one
        assert len(receiver.on("/hook")) == 4
        assert not scenario.dead_lettered()
    finally:
        receiver.close()


def test_the_dispatcher_emits_delivery_metrics_and_logs_with_the_event_id(stack: LocalStack) -> None:
    receiver = Receiver()
    function = stack.functions["DispatcherFunction"]
    try:
        receiver.script("/hook", Answer(500))
        scenario = Scenario(stack, receiver.url("/hook"))
        event = copy.deepcopy(load_event("dispatcher-device-decommissioned.json"))
        body = json.loads(event["Records"][0]["body"])
        body["id"] = str(uuid.uuid4())
        body["detail"]["tenant_id"] = scenario.tenant
        event["Records"][0]["body"] = json.dumps(body)
        since = len(function.logs.lines())
        assert function.invoke(event) == {"batchItemFailures": []}
        # the function's log (its environments' output), as CloudWatch Logs would keep it
        eventually(lambda: any(webhook_id(body) in line for line in function.logs.lines()))
        eventually(lambda: any("DeliveryLatency" in line for line in function.logs.lines()[since:]))
        output = "\n".join(function.logs.lines())
    finally:
        receiver.close()
    lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    metrics = [line for line in lines if "_aws" in line]
    names = {m["Name"] for line in metrics for d in line["_aws"]["CloudWatchMetrics"] for m in d["Metrics"]}
    assert {"DeliveryFailed", "DeliveryLatency"} <= names
    # the stack's pollers may be logging other tests' retries meanwhile: this event's own line
    failures = [line for line in lines if line.get("message") == "webhook delivery failed"]
    ours = [line for line in failures if line.get("correlation_id") == webhook_id(body)]
    assert ours, f"no failure logged with the event id as correlation id: {failures}"
    assert ours[0]["integration_id"] == scenario.integration_id


def test_health_checks_the_table_and_alive_answers(stack: LocalStack) -> None:
    base = f"{stack.url}/api/internal/v1/iot-manager"
    assert requests.get(f"{base}/alive", timeout=10).status_code == 204
    assert requests.get(f"{base}/health", timeout=10).status_code == 204
