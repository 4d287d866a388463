"""End to end on ``devicehooks local``: internal API → bus → queue → dispatcher → a real receiver,
and the activity log through the management API."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
import requests

from devicehooks_dev.local.process import RunningStack
from tests.receiver import Receiver, eventually

pytestmark = pytest.mark.e2e
MGMT = "/api/management/v1/iot-manager"
INTERNAL = "/api/internal/v1/iot-manager"


class Tenant:
    def __init__(self, stack: RunningStack, tenant_id: str | None = None) -> None:
        self.stack = stack
        self.id = tenant_id if tenant_id is not None else f"tenant-{uuid.uuid4()}"
        self.headers = {"Authorization": f"Bearer {stack.token(self.id)}"}

    def webhook(self, url: str, secret: str | None = "deadbeef", **extra: Any) -> str:
        http: dict[str, Any] = {"url": url}
        if secret is not None:
            http["secret"] = secret
        body = {"provider": "webhook", "credentials": {"type": "http", "http": http}, **extra}
        response = requests.post(f"{self.stack.url}{MGMT}/integrations", json=body, headers=self.headers, timeout=10)
        assert response.status_code == 201, response.text
        return str(response.headers["Location"].rsplit("/", 1)[1])

    def internal(self, method: str, path: str, body: Any = None) -> requests.Response:
        url = f"{self.stack.url}{INTERNAL}/tenants/{self.id}{path}"
        return requests.request(method, url, json=body, timeout=10)

    def events(self, **query: Any) -> list[dict[str, Any]]:
        response = requests.get(f"{self.stack.url}{MGMT}/events", params=query, headers=self.headers, timeout=10)
        assert response.status_code == 200, response.text
        return list(response.json())


def _delivered(tenant: Tenant, event_id: str) -> dict[str, Any] | None:
    for event in tenant.events(per_page=500):
        if event["id"] == event_id and all(s["success"] for s in event.get("delivery_statuses", [{"success": 0}])):
            return event
    return None


def test_provision_is_delivered_once_with_menders_body_and_both_signatures(
    local_stack: RunningStack, receiver: Receiver
) -> None:
    tenant = Tenant(local_stack)
    integration_id = tenant.webhook(receiver.url("/provisioned"))
    device = {
        "id": "9c91e5fa-9dcb-451b-b4d8-d30e6b1e9266",
        "status": "accepted",
        "auth_sets": [
            {
                "id": "a1",
                "device_id": "9c91e5fa-9dcb-451b-b4d8-d30e6b1e9266",
                "identity_data": {"sn": "12345", "mac": "00:11"},
                "pubkey": "-----BEGIN PUBLIC KEY-----\nMCow\n-----END PUBLIC KEY-----\n",
                "status": "accepted",
                "ts": "2026-01-01T09:59:58.123456789Z",
            }
        ],
        "created_ts": "2026-01-01T09:59:57Z",
        "revision": 1,
    }
    assert tenant.internal("POST", "/devices", device).status_code == 202
    (request,) = receiver.wait_for(1, "/provisioned")
    body = json.loads(request.body)
    assert list(body) == ["id", "type", "data", "time"]
    assert body["type"] == "device-provisioned"
    assert body["data"] == {k: v for k, v in device.items() if k != "revision"}
    assert list(body["data"]["auth_sets"][0]["identity_data"]) == ["mac", "sn"]
    assert body["time"].endswith("Z")
    assert request.header("Content-Type") == "application/json"
    assert request.header("X-Men-Algorithm") == "MEN-HMAC-SHA256-Payload"
    assert request.signed_by("deadbeef")
    assert request.header("webhook-id") == body["id"]

    event = eventually(lambda: _delivered(tenant, body["id"]))
    assert isinstance(event, dict)
    assert event["type"] == "device-provisioned"
    assert event["delivery_statuses"] == [
        {"integration_id": integration_id, "success": True, "status_code": 200, "state": "delivered", "attempts": 1}
    ]
    assert event["data"]["id"] == device["id"]
    assert len(receiver.on("/provisioned")) == 1


@pytest.mark.parametrize(
    ("method", "path", "body", "expected_type", "expected_data"),
    [
        ("DELETE", "/devices/dev-42", None, "device-decommissioned", {"id": "dev-42"}),
        (
            "PUT",
            "/bulk/devices/status/rejected",
            [{"id": "dev-43"}],
            "device-status-changed",
            {"id": "dev-43", "status": "rejected"},
        ),
    ],
)
def test_decommission_and_status_change_are_delivered_once_and_logged(
    local_stack: RunningStack,
    receiver: Receiver,
    method: str,
    path: str,
    body: Any,
    expected_type: str,
    expected_data: dict[str, Any],
) -> None:
    tenant = Tenant(local_stack)
    tenant.webhook(receiver.url("/hook"), secret="00ff")
    assert tenant.internal(method, path, body).status_code == 202
    (request,) = receiver.wait_for(1, "/hook")
    sent = json.loads(request.body)
    assert (sent["type"], sent["data"]) == (expected_type, expected_data)
    assert request.signed_by("00ff")
    assert eventually(lambda: _delivered(tenant, sent["id"]))
    assert len(receiver.on("/hook")) == 1


def test_a_bulk_of_100_gives_100_deliveries(local_stack: RunningStack, receiver: Receiver) -> None:
    tenant = Tenant(local_stack)
    tenant.webhook(receiver.url("/bulk"))
    devices = [{"id": f"dev-{n:03d}"} for n in range(100)]
    assert tenant.internal("PUT", "/bulk/devices/status/accepted", devices).status_code == 202
    received = receiver.wait_for(100, "/bulk", timeout=30)
    ids = sorted(json.loads(r.body)["data"]["id"] for r in received)
    assert ids == [d["id"] for d in devices]
    assert len({r.header("webhook-id") for r in received}) == 100
    eventually(lambda: len(tenant.events(per_page=500)) == 100)


def test_another_tenants_webhooks_receive_nothing(local_stack: RunningStack, receiver: Receiver) -> None:
    mine, theirs = Tenant(local_stack), Tenant(local_stack)
    mine.webhook(receiver.url("/mine"))
    theirs.webhook(receiver.url("/theirs"))
    assert mine.internal("DELETE", "/devices/dev-1").status_code == 202
    receiver.wait_for(1, "/mine")
    assert theirs.internal("DELETE", "/devices/dev-2").status_code == 202
    receiver.wait_for(1, "/theirs")
    assert [json.loads(r.body)["data"]["id"] for r in receiver.on("/mine")] == ["dev-1"]
    assert [json.loads(r.body)["data"]["id"] for r in receiver.on("/theirs")] == ["dev-2"]
    assert len(mine.events()) == 1 and len(theirs.events()) == 1


def test_the_event_type_filter_holds_end_to_end(local_stack: RunningStack, receiver: Receiver) -> None:
    tenant = Tenant(local_stack)
    only_gone = tenant.webhook(receiver.url("/gone"), event_types=["device-decommissioned"])
    everything = tenant.webhook(receiver.url("/all"))
    assert tenant.internal("PUT", "/bulk/devices/status/accepted", [{"id": "d1"}]).status_code == 202
    assert tenant.internal("DELETE", "/devices/d1").status_code == 202
    receiver.wait_for(2, "/all")
    (gone,) = receiver.wait_for(1, "/gone")
    assert json.loads(gone.body)["type"] == "device-decommissioned"
    assert [e["type"] for e in tenant.events(integration_id=only_gone)] == ["device-decommissioned"]
    assert len(tenant.events(integration_id=everything)) == 2


def test_menders_open_source_empty_tenant_end_to_end(local_stack: RunningStack, receiver: Receiver) -> None:
    tenant = Tenant(local_stack, tenant_id="")
    tenant.webhook(receiver.url("/oss"))
    response = requests.post(f"{local_stack.url}{INTERNAL}/tenants//devices", json={"device_id": "oss-1"}, timeout=10)
    assert response.status_code == 202
    (request,) = receiver.wait_for(1, "/oss")
    assert json.loads(request.body)["data"] == {"id": "oss-1"}


def test_a_test_delivery_and_its_activity_detail(local_stack: RunningStack, receiver: Receiver) -> None:
    tenant = Tenant(local_stack)
    integration_id = tenant.webhook(receiver.url("/test"))
    response = requests.post(
        f"{local_stack.url}{MGMT}/integrations/{integration_id}/test", headers=tenant.headers, timeout=15
    )
    assert response.status_code == 200
    outcome = response.json()
    assert outcome["success"] is True and outcome["status_code"] == 200
    (request,) = receiver.on("/test")
    assert json.loads(request.body)["type"] == "webhook-test" and request.signed_by("deadbeef")
    detail = requests.get(f"{local_stack.url}{MGMT}/events/{outcome['event_id']}", headers=tenant.headers, timeout=10)
    (status,) = detail.json()["delivery_statuses"]
    assert status["attempt_log"][0]["status_code"] == 200
