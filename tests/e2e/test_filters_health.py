"""Event filters and webhook health, end to end on ``devicehooks local`` with a real receiver: a known
mix of outcomes (some 2xx, some 5xx) to two webhooks, then each filter of ``GET /events`` returns
exactly the matching events across pages, and each webhook's health counts exactly its attempts."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from devicehooks.timeutil import parse_time
from devicehooks_dev.local.process import RunningStack, start_stack, stop_stack
from tests.e2e.tenant import Tenant
from tests.receiver import Answer, Receiver, eventually

pytestmark = pytest.mark.e2e
B_ANSWERS = [500, 200, 503, 200, 500, 200, 200, 502]  # webhook B; A answers 200 to all


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    # one retry, long after the test: a failed first attempt stays "retrying"; the health counter's
    # batches gathered for half a second (the template's 10 s would make each wait below 10 s long)
    running = start_stack(
        tmp_path_factory.mktemp("filters"),
        {"DEVICEHOOKS_RETRY_SCHEDULE": "3600", "DEVICEHOOKS_LOCAL_STREAM_WINDOW": "0.5"},
    )
    yield running
    stop_stack(running)


def test_filters_and_health_match_a_known_mix_of_outcomes(stack: RunningStack, receiver: Receiver) -> None:
    tenant = Tenant(stack)
    a = tenant.webhook(receiver.url("/a"))
    b = tenant.webhook(receiver.url("/b"))
    receiver.script("/b", *(Answer(status=s) for s in B_ANSWERS))
    sent: list[dict[str, Any]] = []  # newest last: id, type, device, B's outcome

    def health(integration_id: str, attempts: int) -> dict[str, Any] | None:
        body = tenant.get(f"/integrations/{integration_id}/health").json()
        return body if body["delivered"] + body["failed"] == attempts else None

    for n, answer in enumerate(B_ANSWERS):
        device = f"dev-{n % 3}"
        if n % 2:
            tenant.internal("PUT", "/bulk/devices/status/accepted", [{"id": device}])
        else:
            tenant.internal("DELETE", f"/devices/{device}")
        body = json.loads(receiver.wait_for(n + 1, "/b")[n].body)
        receiver.wait_for(n + 1, "/a")
        # counted by the health counter from the activity table's stream once the outcome is
        # recorded (what it means for the webhook, its failing-since and circuit, is written right
        # after the record, long before the stream's batch): the next event's outcome comes after it
        eventually(lambda n=n: health(b, n + 1))
        sent.append({"id": body["id"], "type": body["type"], "device": device, "b_ok": answer < 300})

    def settled() -> list[dict[str, Any]] | None:
        events = tenant.get("/events", per_page=50).json()
        states = [s["state"] for e in events for s in e.get("delivery_statuses", [])]
        return events if len(events) == len(sent) and "pending" not in states else None

    events = eventually(settled)
    assert isinstance(events, list)
    newest = [e["id"] for e in events]
    assert newest == [e["id"] for e in reversed(sent)]
    times = {e["id"]: e["time"] for e in events}

    def expect(keep: Any) -> list[str]:
        return [e["id"] for e in reversed(sent) if keep(e)]

    # status: B's failed attempts left "retrying" (their retry is an hour away), the rest delivered
    assert tenant.pages(status="retrying", integration_id=b) == expect(lambda e: not e["b_ok"])
    assert tenant.pages(status="delivered", integration_id=b) == expect(lambda e: e["b_ok"])
    assert tenant.pages(status="retrying") == expect(lambda e: not e["b_ok"])
    assert tenant.pages(status="delivered", per_page=3) == newest  # A delivered every one
    assert tenant.pages(status="retrying", integration_id=a) == []
    assert tenant.pages(status="pending") == []
    # device, type, and combinations
    assert tenant.pages(device_id="dev-1") == expect(lambda e: e["device"] == "dev-1")
    assert tenant.pages(device_id="dev-0", integration_id=b, status="retrying", per_page=1) == expect(
        lambda e: e["device"] == "dev-0" and not e["b_ok"]
    )
    assert tenant.pages(type="device-status-changed") == expect(lambda e: e["type"] == "device-status-changed")
    assert tenant.pages(type="device-decommissioned", integration_id=a, status="delivered", per_page=3) == expect(
        lambda e: e["type"] == "device-decommissioned"
    )
    assert tenant.pages(type="device-provisioned") == []
    # time: from <= time < to
    ordered = [e["id"] for e in sent]
    window = {"from": times[ordered[2]], "to": times[ordered[6]]}
    assert tenant.pages(**window) == list(reversed(ordered[2:6]))
    assert tenant.pages(integration_id=b, status="retrying", **window) == expect(
        lambda e: e["id"] in ordered[2:6] and not e["b_ok"]
    )
    assert tenant.get("/events", status="lost").status_code == 400

    # health: per attempt, each webhook's own
    failures = sum(1 for e in sent if not e["b_ok"])
    of_b = eventually(lambda: health(b, len(sent)))
    assert isinstance(of_b, dict)
    assert (of_b["delivered"], of_b["failed"]) == (len(sent) - failures, failures)
    assert of_b["success_rate"] == pytest.approx((len(sent) - failures) / len(sent))
    assert of_b["window_hours"] == 24 and len(of_b["hourly"]) == 24
    assert sum(h["delivered"] for h in of_b["hourly"]) == len(sent) - failures
    assert sum(h["failed"] for h in of_b["hourly"]) == failures
    assert [parse_time(h["hour"]) for h in of_b["hourly"]] == sorted(parse_time(h["hour"]) for h in of_b["hourly"])
    last = of_b["last_delivery"]
    assert (last["outcome"], last["status_code"]) == ("failed", 502) and last["error"]
    assert of_b["failing_since"] is not None and of_b["circuit"]["failures"] == 1
    assert (parse_time(of_b["disable_at"]) - parse_time(of_b["failing_since"])).total_seconds() == 5 * 24 * 3600
    of_a = eventually(lambda: health(a, len(sent)))
    assert isinstance(of_a, dict)
    assert (of_a["delivered"], of_a["failed"], of_a["success_rate"]) == (len(sent), 0, 1.0)
    assert of_a["last_delivery"]["outcome"] == "delivered" and of_a["last_delivery"]["status_code"] == 200
    assert of_a["failing_since"] is None and of_a["disable_at"] is None
    assert tenant.get(f"/integrations/{uuid.uuid4()}/health").status_code == 404
