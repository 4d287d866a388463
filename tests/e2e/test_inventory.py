"""End to end on ``devicehooks local``: scopes select events, and ``device-inventory-changed`` comes
in through Mender's internal API and straight from the bus, reaching only ``inventory`` webhooks."""

from __future__ import annotations

import json
import uuid
from typing import Any

import boto3
import pytest
import requests

from devicehooks_dev.local.process import RunningStack
from tests.e2e.test_pipeline import MGMT, Tenant
from tests.receiver import Receiver, eventually

pytestmark = pytest.mark.e2e

# Mender's documented body (mender-docs 10.Server-integration/07.Webhooks), a few of its attributes
INVENTORY = [
    {"name": "artifact_name", "value": "large", "scope": "inventory"},
    {"name": "device_type", "value": "raspberrypi4", "scope": "inventory"},
    {"name": "network_interfaces", "value": ["eth0"], "scope": "inventory"},
    {"name": "os", "value": ["RelaxedOS", "Based GNU/Linux 11 (bullseye)"], "scope": "inventory"},
]


def _integration(tenant: Tenant, integration_id: str) -> dict[str, Any]:
    response = requests.get(
        f"{tenant.stack.url}{MGMT}/integrations/{integration_id}", headers=tenant.headers, timeout=10
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_scopes_round_trip(local_stack: RunningStack, receiver: Receiver) -> None:
    tenant = Tenant(local_stack)
    both = tenant.webhook(receiver.url("/both"), scopes=["deviceauth", "inventory"])
    empty = tenant.webhook(receiver.url("/empty"), scopes=[])
    absent = tenant.webhook(receiver.url("/absent"))
    assert _integration(tenant, both)["scopes"] == ["deviceauth", "inventory"]
    assert _integration(tenant, empty)["scopes"] == []
    assert "scopes" not in _integration(tenant, absent)
    changed = requests.put(
        f"{local_stack.url}{MGMT}/integrations/{absent}",
        json={"scopes": ["inventory"]},
        headers=tenant.headers,
        timeout=10,
    )
    assert (changed.status_code, changed.json()["scopes"]) == (200, ["inventory"])
    assert _integration(tenant, absent)["scopes"] == ["inventory"]


def test_an_inventory_change_reaches_inventory_webhooks_only_signed_and_logged(
    local_stack: RunningStack, receiver: Receiver
) -> None:
    # Given a webhook in both scopes, one in the deviceauth scope and one with Mender's UI's []
    tenant = Tenant(local_stack)
    inventory = tenant.webhook(receiver.url("/inventory"), secret="c0ffee", scopes=["deviceauth", "inventory"])
    deviceauth = tenant.webhook(receiver.url("/deviceauth"), scopes=["deviceauth"])
    ui_empty = tenant.webhook(receiver.url("/empty"), scopes=[])
    # When Mender's inventory reports a change, then a device's status changes
    response = tenant.internal("POST", "/devices/1c251e63-ca93-41e2-ae39-97f402d93dd3/inventory", INVENTORY)
    assert response.status_code == 202, response.text
    assert tenant.internal("PUT", "/bulk/devices/status/accepted", [{"id": "dev-1"}]).status_code == 202
    # Then the inventory webhook gets Mender's documented body, signed both ways
    received = receiver.wait_for(2, "/inventory")
    (request,) = [r for r in received if json.loads(r.body)["type"] == "device-inventory-changed"]
    body = json.loads(request.body)
    assert list(body) == ["id", "type", "data", "time"]
    assert body["data"] == {
        "device_id": "1c251e63-ca93-41e2-ae39-97f402d93dd3",
        "tenant_id": tenant.id,
        "inventory": INVENTORY,
    }
    assert request.signed_by("c0ffee")  # X-Men-Signature and webhook-signature
    # and the deviceauth-only webhooks get the status change and nothing else
    for path in ("/deviceauth", "/empty"):
        (status,) = receiver.wait_for(1, path)
        assert json.loads(status.body)["type"] == "device-status-changed"
    # and the activity log lists the event for the inventory webhook only
    logged = eventually(
        lambda: next(
            (
                e
                for e in tenant.events()
                if e["id"] == body["id"] and e.get("delivery_statuses", [{}])[0].get("success")
            ),
            None,
        )
    )
    assert isinstance(logged, dict)
    assert logged["type"] == "device-inventory-changed"
    assert [s["integration_id"] for s in logged["delivery_statuses"]] == [inventory]
    assert logged["data"]["inventory"][3]["value"] == ["RelaxedOS", "Based GNU/Linux 11 (bullseye)"]
    assert [e["type"] for e in tenant.events(integration_id=deviceauth)] == ["device-status-changed"]
    assert [e["type"] for e in tenant.events(integration_id=ui_empty)] == ["device-status-changed"]
    assert len(receiver.on("/deviceauth")) == 1 and len(receiver.on("/empty")) == 1


def test_an_inventory_event_put_on_the_bus_is_delivered(local_stack: RunningStack, receiver: Receiver) -> None:
    # Given an inventory webhook, and a producer that puts events on the bus itself
    tenant = Tenant(local_stack)
    tenant.webhook(receiver.url("/bus"), scopes=["inventory"])
    info = requests.get(f"{local_stack.url}/local/info", timeout=10).json()
    events = boto3.session.Session().client(
        "events",
        endpoint_url=info["moto_endpoint"],
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    detail = {"tenant_id": tenant.id, "data": {"device_id": "dev-bus", "inventory": INVENTORY[:1]}}
    # When it puts a device-inventory-changed event (the stack's EventSource, the template's default)
    out = events.put_events(
        Entries=[
            {
                "Source": "devicehooks.deviceauth",
                "DetailType": "device-inventory-changed",
                "Detail": json.dumps(detail),
                "EventBusName": info["resources"]["DeviceEventBus"]["Name"],
            }
        ]
    )
    assert out["FailedEntryCount"] == 0
    # Then the webhook gets it, the tenant filled in
    (request,) = receiver.wait_for(1, "/bus")
    assert json.loads(request.body)["data"] == {
        "device_id": "dev-bus",
        "tenant_id": tenant.id,
        "inventory": INVENTORY[:1],
    }
    assert uuid.UUID(json.loads(request.body)["id"])


def test_an_inventory_too_large_for_an_event_is_refused_with_400(local_stack: RunningStack) -> None:
    tenant = Tenant(local_stack)
    huge = [{"name": f"blob{n}", "value": "x" * 1000} for n in range(300)]
    response = tenant.internal("POST", "/devices/dev-1/inventory", huge)
    assert response.status_code == 400
    assert response.json()["error"].endswith("an event may carry")
