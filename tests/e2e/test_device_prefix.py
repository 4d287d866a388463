"""The tenant-wide device search, end to end on ``devicehooks local``: ``GET /events?device_prefix=``
returns exactly the events of the devices whose id starts with it (case as stored), newest first,
across pages of two, across two webhooks, and with the other filters."""

from __future__ import annotations

from typing import Any

import pytest

from devicehooks_dev.local.process import RunningStack
from tests.e2e.tenant import Tenant
from tests.receiver import Receiver, eventually

pytestmark = pytest.mark.e2e
# the devices of the events, oldest first: the first three go to webhook A alone, the rest to A and B
FIRST = ["dev-041", "DEV-042", "dev-04"]
THEN = ["dev-042", "dev-0", "xdev-041", "dev-041", "dev-05", "dev-042", "dev-0419", "Dev-041"]


def test_device_prefix_finds_exactly_the_matching_events_across_pages_and_webhooks(
    local_stack: RunningStack, receiver: Receiver
) -> None:
    tenant = Tenant(local_stack)
    a = tenant.webhook(receiver.url("/a"))
    for n, device in enumerate(FIRST):
        tenant.internal("POST", "/devices", {"id": device, "status": "accepted"})
        receiver.wait_for(n + 1, "/a")  # dispatched (to the webhooks there are then) before B exists
    b = tenant.webhook(receiver.url("/b"))
    for n, device in enumerate(THEN):
        if n % 3 == 2:
            tenant.internal("DELETE", f"/devices/{device}")  # a decommissioning: its data.id too
        else:
            tenant.internal("POST", "/devices", {"id": device, "status": "accepted"})
    receiver.wait_for(len(THEN), "/b")

    def settled() -> list[dict[str, Any]] | None:
        events = tenant.get("/events", per_page=50).json()
        states = [s["state"] for e in events for s in e.get("delivery_statuses") or []]
        done = len(events) == len(FIRST) + len(THEN) and len(states) == len(FIRST) + 2 * len(THEN)
        return events if done and set(states) == {"delivered"} else None

    events = eventually(settled)
    assert isinstance(events, list)
    assert sorted(e["data"]["id"] for e in events) == sorted(FIRST + THEN)

    def expect(prefix: str, hook: str | None = None) -> list[str]:
        """The unfiltered list's events (newest first) of the devices starting with ``prefix``."""
        to = [hook] if hook else [a, b]
        return [
            e["id"]
            for e in events
            if e["data"]["id"].startswith(prefix) and any(s["integration_id"] in to for s in e["delivery_statuses"])
        ]

    found = tenant.pages(device_prefix="dev-04")
    assert found == expect("dev-04") and len(found) == 6  # dev-041 (2), dev-04, dev-042 (2), dev-0419
    assert tenant.pages(device_prefix="dev-04", per_page=1) == found
    assert tenant.pages(device_prefix="dev-04", per_page=50) == found
    # case as stored: DEV-042 and Dev-041 are other devices
    assert tenant.pages(device_prefix="DEV-04") == expect("DEV-04") and len(expect("DEV-04")) == 1
    assert tenant.pages(device_prefix="dev-042") == expect("dev-042") and len(expect("dev-042")) == 2
    assert tenant.pages(device_prefix="dev-0") == expect("dev-0") and len(expect("dev-0")) == 8
    assert tenant.pages(device_prefix="dev-0419") == expect("dev-0419")
    assert tenant.pages(device_prefix="dev-1") == []
    assert tenant.pages(device_prefix="ev-04") == []  # the start of the id, not a part of it
    # across the two webhooks: B's are the later ones only, A's all of them
    assert tenant.pages(device_prefix="dev-04", integration_id=b) == expect("dev-04", b)
    assert len(expect("dev-04", b)) == 4
    assert tenant.pages(device_prefix="dev-04", integration_id=a) == expect("dev-04", a) == found
    # with the other filters
    gone = [e["id"] for e in events if e["type"] == "device-decommissioned" and e["data"]["id"].startswith("dev-0")]
    assert tenant.pages(device_prefix="dev-0", type="device-decommissioned") == gone and gone
    assert tenant.pages(device_prefix="dev-04", status="delivered", integration_id=b) == expect("dev-04", b)
    assert tenant.pages(device_prefix="dev-04", status="retrying") == []
    # an exact id and a prefix together are refused
    refused = tenant.get("/events", device_id="dev-041", device_prefix="dev-04")
    assert refused.status_code == 400 and "device_prefix" in refused.text, refused.text
