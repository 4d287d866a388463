"""The fault matrix on the in-process local stack (moto, real handlers, real receivers).

For every fault: no event is lost (it is delivered, or it is in a dead-letter queue and shown
as failed in the activity log), and nothing is POSTed again once a success was recorded.
Retry schedule 1 s, 1 s (3 attempts), delivery timeout 1 s, lease 3 s (tests/integration/conftest.py).
"""

from __future__ import annotations

import json
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from devicehooks import aws
from devicehooks_dev import devkeys
from devicehooks_dev.local.stack import LocalStack
from tests.conftest import ROOT
from tests.integration.faults import Budget
from tests.receiver import Answer, Receiver, eventually

MGMT = "/api/management/v1/iot-manager"
INTERNAL = "/api/internal/v1/iot-manager"
QUIET = 2.5  # seconds without traffic that prove no further POST comes (> redelivery + retry delays)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


class Scenario:
    """One tenant with one webhook on the in-process stack."""

    def __init__(self, stack: LocalStack, url: str, secret: str | None = "deadbeef") -> None:
        self.stack = stack
        self.tenant = f"tenant-{uuid.uuid4()}"
        self.headers = {"Authorization": f"Bearer {devkeys.mint_token(self.tenant)}"}
        http: dict[str, Any] = {"url": url}
        if secret is not None:
            http["secret"] = secret
        body = {"provider": "webhook", "credentials": {"type": "http", "http": http}}
        created = requests.post(f"{stack.url}{MGMT}/integrations", json=body, headers=self.headers, timeout=10)
        assert created.status_code == 201, created.text
        self.integration_id = created.headers["Location"].rsplit("/", 1)[1]

    def decommission(self, device: str = "dev-1") -> None:
        response = requests.delete(f"{self.stack.url}{INTERNAL}/tenants/{self.tenant}/devices/{device}", timeout=10)
        assert response.status_code == 202

    def bulk(self, devices: list[str]) -> None:
        response = requests.put(
            f"{self.stack.url}{INTERNAL}/tenants/{self.tenant}/bulk/devices/status/accepted",
            json=[{"id": d} for d in devices],
            timeout=10,
        )
        assert response.status_code == 202

    def events(self) -> list[dict[str, Any]]:
        response = requests.get(f"{self.stack.url}{MGMT}/events", headers=self.headers, timeout=10)
        return list(response.json())

    def status(self) -> dict[str, Any]:
        """The one delivery status of the one event ({} until the event is recorded)."""
        events = self.events()
        return dict(events[0]["delivery_statuses"][0]) if events else {}

    def final(self, state: str, timeout: float = 20.0) -> dict[str, Any]:
        def reached() -> dict[str, Any] | None:
            events = self.events()
            if len(events) == 1 and events[0].get("delivery_statuses", [{}])[0].get("state") == state:
                return dict(events[0]["delivery_statuses"][0])
            return None

        return dict(eventually(reached, timeout=timeout))  # type: ignore[arg-type]

    def dead_lettered(self) -> list[dict[str, Any]]:
        """Delivery DLQ messages of this tenant."""
        messages = peek(
            self.stack, "DeliveryDeadLetterQueue", lambda m: json.loads(m["Body"])["tenant_id"] == self.tenant
        )
        return [json.loads(m["Body"]) for m in messages]


def peek(stack: LocalStack, queue: str, wanted: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
    """The messages of ``queue`` that ``wanted`` picks, left visible (other tests share the queue)."""
    sqs = aws.client("sqs")
    found: dict[str, dict[str, Any]] = {}
    for _ in range(5):  # SQS (and moto) return a sample of the queue per call
        out = sqs.receive_message(
            QueueUrl=stack.physical[queue]["QueueUrl"],
            MaxNumberOfMessages=10,
            VisibilityTimeout=0,
            MessageAttributeNames=["All"],
        )
        found.update({m["MessageId"]: m for m in out.get("Messages", []) if wanted(m)})
    return list(found.values())


def _quiet(receiver: Receiver, expected: int, path: str = "/hook") -> None:
    time.sleep(QUIET)  # a bounded quiet period: a duplicate would have to arrive within it
    assert len(receiver.on(path)) == expected


def test_a_receiver_answering_500_ends_in_the_delivery_dlq_shown_failed(stack: LocalStack, receiver: Receiver) -> None:
    receiver.script("/hook", *[Answer(500)] * 3)
    scenario = Scenario(stack, receiver.url("/hook"))
    scenario.decommission()
    status = scenario.final("failed")
    assert (status["attempts"], status["status_code"], status["success"]) == (3, 500, False)
    assert len(receiver.on("/hook")) == 3
    assert len({r.body for r in receiver.on("/hook")}) == 1  # the same bytes every time
    assert len({r.header("webhook-id") for r in receiver.on("/hook")}) == 1
    (dead,) = eventually(scenario.dead_lettered)  # type: ignore[misc]
    assert dead["integration_id"] == scenario.integration_id


def test_503_with_retry_after_is_retried_after_that_delay(stack: LocalStack, receiver: Receiver) -> None:
    receiver.script("/hook", Answer(503, {"Retry-After": "2"}))
    scenario = Scenario(stack, receiver.url("/hook"))
    scenario.decommission()
    scenario.final("delivered")
    first, second = receiver.on("/hook")
    assert second.at - first.at >= 1.9
    _quiet(receiver, 2)


def test_429_is_retried_then_delivered(stack: LocalStack, receiver: Receiver) -> None:
    receiver.script("/hook", Answer(429), Answer(429))
    scenario = Scenario(stack, receiver.url("/hook"))
    scenario.decommission()
    assert scenario.final("delivered")["attempts"] == 3
    _quiet(receiver, 3)


def test_410_disables_the_webhook_without_retries(stack: LocalStack, receiver: Receiver) -> None:
    receiver.script("/hook", Answer(410))
    scenario = Scenario(stack, receiver.url("/hook"))
    scenario.decommission()
    assert scenario.final("failed")["status_code"] == 410
    integration = requests.get(
        f"{stack.url}{MGMT}/integrations/{scenario.integration_id}", headers=scenario.headers, timeout=10
    )
    assert integration.json()["enabled"] is False
    assert integration.json()["disabled_reason"] == "the endpoint answered 410 Gone"
    _quiet(receiver, 1)


def test_a_timeout_is_retried_and_nothing_is_sent_after_the_success(stack: LocalStack, receiver: Receiver) -> None:
    receiver.script("/hook", Answer(200, delay=2.5))  # answers after the 1 s timeout
    scenario = Scenario(stack, receiver.url("/hook"))
    scenario.decommission()
    status = scenario.final("delivered")
    assert status["attempts"] == 2
    _quiet(receiver, 2)


def test_connection_refused_then_the_receiver_comes_up(stack: LocalStack) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    scenario = Scenario(stack, f"http://127.0.0.1:{port}/hook")
    scenario.decommission()
    eventually(lambda: scenario.status().get("error") == "connection refused")
    late = Receiver(port=port)
    try:
        scenario.final("delivered")
        assert len(late.on("/hook")) == 1
    finally:
        late.close()


@pytest.fixture
def fault(stack: LocalStack, tmp_path: Path) -> Iterator[Callable[[str, int], str]]:
    """``fault(wrapper, count)``: the dispatcher's handler wrapped by ``tests.integration.faults:<wrapper>``
    in each of its environments (started afresh), the fault happening ``count`` times in all; the
    budget's file (to put more in). Unwrapped at teardown."""
    function = stack.functions["DispatcherFunction"]

    def wrap(wrapper: str, count: int) -> str:
        budget = Budget.create(tmp_path / f"{wrapper}.budget", count)
        function.wrap(f"{ROOT}=tests.integration.faults:{wrapper}", budget)
        return budget

    yield wrap
    function.wrap("")


def test_a_dns_failure_is_retried_until_the_name_resolves(
    stack: LocalStack, receiver: Receiver, fault: Callable[[str, int], str]
) -> None:
    fault("flaky_dns", 1)
    scenario = Scenario(stack, f"http://localhost:{receiver.port}/hook")
    scenario.decommission()
    status = scenario.final("delivered")
    assert status["attempts"] == 2
    detail = requests.get(
        f"{stack.url}{MGMT}/events/{scenario.events()[0]['id']}", headers=scenario.headers, timeout=10
    )
    assert detail.json()["delivery_statuses"][0]["attempt_log"][0]["error"] == "dns lookup failed"
    _quiet(receiver, 1)


def test_a_tls_failure_ends_in_the_delivery_dlq(stack: LocalStack) -> None:
    tls = Receiver(tls=True)  # a self-signed certificate: verification fails
    try:
        scenario = Scenario(stack, tls.url("/hook"))
        scenario.decommission()
        status = scenario.final("failed")
        assert (status["error"], status["attempts"]) == ("tls handshake failed", 3)
        assert eventually(scenario.dead_lettered)
        assert tls.on("/hook") == []  # no request got past the handshake
    finally:
        tls.close()


def test_a_redirect_is_not_followed_and_counts_as_a_failure(stack: LocalStack, receiver: Receiver) -> None:
    receiver.script("/hook", Answer(307, {"Location": receiver.url("/elsewhere")}))
    scenario = Scenario(stack, receiver.url("/hook"))
    scenario.decommission()
    scenario.final("delivered")
    assert [r.path for r in receiver.requests] == ["/hook", "/hook"]
    detail = requests.get(
        f"{stack.url}{MGMT}/events/{scenario.events()[0]['id']}", headers=scenario.headers, timeout=10
    )
    assert [a["status_code"] for a in detail.json()["delivery_statuses"][0]["attempt_log"]] == [307, 200]


def test_a_dispatcher_crash_mid_batch_loses_and_duplicates_nothing(
    stack: LocalStack, receiver: Receiver, fault: Callable[[str, int], str]
) -> None:
    budget = fault("crash_on_send", 1)  # the second send crashes: one passes first
    Budget.create(Path(budget + ".pass"), 1)
    scenario = Scenario(stack, receiver.url("/hook"))
    devices = [f"dev-{n}" for n in range(5)]
    scenario.bulk(devices)
    received = receiver.wait_for(5, "/hook")
    eventually(
        lambda: len(scenario.events()) == 5 and all(e["delivery_statuses"][0]["success"] for e in scenario.events())
    )
    _quiet(receiver, 5)
    assert sorted(json.loads(r.body)["data"]["id"] for r in received) == devices


def test_a_dynamodb_error_while_recording_loses_nothing(
    stack: LocalStack, receiver: Receiver, fault: Callable[[str, int], str]
) -> None:
    fault("flaky_record", 1)
    scenario = Scenario(stack, receiver.url("/hook"))
    scenario.decommission()
    status = scenario.final("delivered")
    # the first success could not be recorded: the event came back and was delivered again (at
    # least once); once a success is recorded nothing more is sent
    assert len(receiver.on("/hook")) == 2
    assert status["attempts"] == 1
    _quiet(receiver, 2)


def test_sqs_redelivery_of_the_same_message_posts_once(stack: LocalStack, receiver: Receiver) -> None:
    scenario = Scenario(stack, receiver.url("/hook"))
    event = {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "device-decommissioned",
        "source": "devicehooks.deviceauth",
        "account": "123456789012",
        "time": "2026-01-01T10:00:00Z",
        "region": "us-east-1",
        "resources": [],
        "detail": {"tenant_id": scenario.tenant, "data": {"id": "dev-1"}, "time": "2026-01-01T10:00:00.1Z"},
    }
    sqs = aws.client("sqs")
    for _ in range(3):
        sqs.send_message(QueueUrl=stack.physical["DispatchQueue"]["QueueUrl"], MessageBody=json.dumps(event))
    receiver.wait_for(1, "/hook")
    scenario.final("delivered")
    _quiet(receiver, 1)


def test_a_malformed_event_goes_to_the_dispatch_dlq_with_its_reason(stack: LocalStack) -> None:
    marker = str(uuid.uuid4())
    sqs = aws.client("sqs")
    bad = {"id": marker, "detail-type": "device-decommissioned", "source": "x", "time": "now", "detail": {}}
    sqs.send_message(QueueUrl=stack.physical["DispatchQueue"]["QueueUrl"], MessageBody=json.dumps(bad))

    messages = eventually(lambda: peek(stack, "DispatchDeadLetterQueue", lambda m: marker in m["Body"]))
    assert isinstance(messages, list)
    (message,) = messages
    assert message["MessageAttributes"]["reason"]["StringValue"].startswith("malformed device event: ")
