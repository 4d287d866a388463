"""Retry now and recover, end to end on ``devicehooks local`` with a real receiver: a delivery is
sent again at once, and the retry that was waiting for it (a task on the retry queue that cannot
be taken back) does nothing when it comes due; a retry (``POST /events/{id}/retry``) of a delivery
that was delivered meanwhile is refused and sends nothing; recovering a window sends each of its
failed deliveries once, however often it is asked, and sends now the deliveries still retrying
once their receiver is fixed."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests

from devicehooks.timeutil import parse_time, rfc3339
from devicehooks_dev.local.process import RunningStack, start_stack, stop_stack
from tests.e2e.tenant import MGMT
from tests.e2e.tenant import Tenant as ApiTenant
from tests.receiver import Answer, Receiver, eventually

pytestmark = pytest.mark.e2e
RETRY_AFTER = 12  # the stack's one retry step (spread by up to 20 %): long enough to retry now before it


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    running = start_stack(tmp_path_factory.mktemp("recover"), {"DEVICEHOOKS_RETRY_SCHEDULE": str(RETRY_AFTER)})
    yield running
    stop_stack(running)


class Tenant(ApiTenant):
    def webhook(self, url: str, secret: str | None = "deadbeef") -> str:
        return super().webhook(url, secret)

    def decommission(self, device: str) -> None:
        self.internal("DELETE", f"/devices/{device}")

    def put(self, path: str, body: Any) -> requests.Response:
        return requests.put(f"{self.stack.url}{MGMT}{path}", json=body, headers=self.headers, timeout=20)

    def status(self, event_id: str) -> dict[str, Any]:
        response = self.get(f"/events/{event_id}")
        assert response.status_code == 200, response.text
        (status,) = response.json()["delivery_statuses"]
        return dict(status)


def _in_state(tenant: Tenant, event_id: str, state: str) -> dict[str, Any] | None:
    status = tenant.status(event_id)
    return status if status["state"] == state else None


def test_retry_now_sends_once_at_once_and_the_waiting_retry_never_sends_again(
    stack: RunningStack, receiver: Receiver
) -> None:
    tenant = Tenant(stack)
    tenant.webhook(receiver.url("/now"))
    receiver.script("/now", Answer(status=500))
    tenant.decommission("dev-now")
    (first,) = receiver.wait_for(1, "/now")
    event_id = json.loads(first.body)["id"]
    retrying = eventually(lambda: _in_state(tenant, event_id, "retrying"))
    assert isinstance(retrying, dict) and retrying["attempts"] == 1
    due = parse_time(retrying["next_attempt"])

    asked = time.monotonic()
    response = tenant.post(f"/events/{event_id}/redeliver")
    assert response.status_code == 202, response.text
    _, second = receiver.wait_for(2, "/now", timeout=RETRY_AFTER * 0.8 - 1)  # before the retry was due
    assert time.monotonic() - asked < RETRY_AFTER * 0.8
    assert second.body == first.body and second.header("webhook-id") == event_id
    assert eventually(lambda: _in_state(tenant, event_id, "delivered"))

    # the retry that was waiting comes due (its task comes back from the queue) and is dropped
    left = (due - datetime.now(UTC)).total_seconds()
    time.sleep(max(0.0, left) + 5)
    assert len(receiver.on("/now")) == 2
    status = tenant.status(event_id)
    assert (status["state"], status["attempts"]) == ("delivered", 2)


def test_a_failed_retry_now_goes_on_with_its_own_retry_and_the_waiting_one_is_dropped(
    stack: RunningStack, receiver: Receiver
) -> None:
    tenant = Tenant(stack)
    tenant.webhook(receiver.url("/again"))
    # the first attempt fails, retry now fails, and so does every attempt after: the stack retries once,
    # so the delivery ends failed after the redelivery's own retry. Had the waiting retry (queued by the
    # first attempt) not been dropped it would have been an attempt of its own: four POSTs, not three.
    receiver.script("/again", *[Answer(status=503)] * 4)
    tenant.decommission("dev-again")
    (first,) = receiver.wait_for(1, "/again")
    event_id = json.loads(first.body)["id"]
    retrying = eventually(lambda: _in_state(tenant, event_id, "retrying"))
    assert isinstance(retrying, dict)
    waiting_due = parse_time(retrying["next_attempt"])
    assert tenant.post(f"/events/{event_id}/redeliver").status_code == 202
    receiver.wait_for(2, "/again", timeout=RETRY_AFTER * 0.8 - 1)
    again = eventually(lambda: _in_state(tenant, event_id, "retrying") or _in_state(tenant, event_id, "failed"))
    assert isinstance(again, dict) and again["attempts"] >= 2
    assert eventually(lambda: _in_state(tenant, event_id, "failed"), timeout=RETRY_AFTER * 2 + 10)
    time.sleep(max(0.0, (waiting_due - datetime.now(UTC)).total_seconds()) + 5)
    assert len(receiver.on("/again")) == 3
    status = tenant.status(event_id)
    assert (status["state"], status["attempts"]) == ("failed", 3)


def test_a_retry_after_the_scheduled_retry_succeeded_is_a_409_and_the_receiver_gets_nothing_more(
    stack: RunningStack, receiver: Receiver
) -> None:
    """Issue 21: a row still shown as retrying whose scheduled retry has just succeeded. "Retry now"
    calls retry, which never sends a delivered event again (redeliver would)."""
    tenant = Tenant(stack)
    integration_id = tenant.webhook(receiver.url("/safe"))
    receiver.script("/safe", Answer(status=500))  # fails, then succeeds
    tenant.decommission("dev-safe")
    (first,) = receiver.wait_for(1, "/safe")
    event_id = json.loads(first.body)["id"]
    shown = eventually(lambda: _in_state(tenant, event_id, "retrying"))  # what the stale page shows
    assert isinstance(shown, dict) and shown["attempts"] == 1
    receiver.wait_for(2, "/safe", timeout=RETRY_AFTER * 1.2 + 10)  # the scheduled retry
    assert eventually(lambda: _in_state(tenant, event_id, "delivered"))

    for body in ({"integration_id": integration_id}, None):
        refused = tenant.post(f"/events/{event_id}/retry", body)
        assert refused.status_code == 409, refused.text
        assert refused.json()["error"] == "the event was delivered to this webhook; redeliver it to send it again"
        assert set(refused.json()) == {"error", "request_id"}
    time.sleep(3)  # nothing comes
    assert len(receiver.on("/safe")) == 2
    status = tenant.status(event_id)
    assert (status["state"], status["attempts"]) == ("delivered", 2)


def test_a_retry_while_the_delivery_still_fails_makes_a_new_attempt_now(
    stack: RunningStack, receiver: Receiver
) -> None:
    tenant = Tenant(stack)
    integration_id = tenant.webhook(receiver.url("/failing"))
    receiver.script("/failing", *[Answer(status=503)] * 4)
    tenant.decommission("dev-failing")
    (first,) = receiver.wait_for(1, "/failing")
    event_id = json.loads(first.body)["id"]
    assert eventually(lambda: _in_state(tenant, event_id, "retrying"))

    asked = time.monotonic()
    response = tenant.post(f"/events/{event_id}/retry", {"integration_id": integration_id})
    assert response.status_code == 202, response.text
    assert response.json() == {"event_id": event_id, "integration_ids": [integration_id]}
    _, second = receiver.wait_for(2, "/failing", timeout=RETRY_AFTER * 0.8 - 1)  # before the retry was due
    assert time.monotonic() - asked < RETRY_AFTER * 0.8
    assert second.body == first.body and second.header("webhook-id") == event_id
    again = eventually(lambda: _in_state(tenant, event_id, "retrying"))
    assert isinstance(again, dict) and again["attempts"] == 2
    # the webhook disabled: a retry is refused with the reason, and sends nothing
    assert tenant.put(f"/integrations/{integration_id}", {"enabled": False}).status_code == 200
    disabled = tenant.post(f"/events/{event_id}/retry", {"integration_id": integration_id})
    assert (disabled.status_code, disabled.json()["error"]) == (
        409,
        "the webhook is disabled; enable it before retrying",
    )
    unknown = tenant.post(f"/events/{uuid.uuid4()}/retry")
    assert (unknown.status_code, unknown.json()["error"]) == (404, "event not found")
    bad = tenant.post("/events/not-a-uuid/retry")
    assert bad.status_code == 400 and bad.json()["error"].startswith("event ID must be a valid UUID")


def test_recover_resends_exactly_the_failed_deliveries_of_the_window_once_when_called_twice(
    stack: RunningStack, receiver: Receiver
) -> None:
    tenant = Tenant(stack)
    integration_id = tenant.webhook(receiver.url("/recover"))
    # first attempts: e1 and e2 fail, e3 is delivered; then both retries fail: e1 and e2 end failed
    receiver.script("/recover", Answer(status=500), Answer(status=500), Answer(status=200), *[Answer(status=502)] * 2)
    start = datetime.now(UTC) - timedelta(seconds=1)
    ids = []
    for n in range(3):
        tenant.decommission(f"dev-{n}")
        ids.append(json.loads(receiver.wait_for(n + 1, "/recover")[n].body)["id"])
        if n == 0:
            time.sleep(0.05)
            middle = datetime.now(UTC)
            time.sleep(0.05)
    e1, e2, e3 = ids
    for event_id in (e1, e2):
        assert eventually(lambda event_id=event_id: _in_state(tenant, event_id, "failed"), timeout=RETRY_AFTER * 2)
    assert len(receiver.on("/recover")) == 5
    path = f"/integrations/{integration_id}/recover"

    window = {"since": rfc3339(start), "until": rfc3339(middle)}  # e1's time only
    answers = [tenant.post(path, window) for _ in range(2)]
    assert [(a.status_code, a.json()["count"], a.json()["skipped"]) for a in answers] == [(202, 1, []), (202, 0, [])]
    everything = {"since": rfc3339(start)}
    answers = [tenant.post(path, everything) for _ in range(2)]  # e2 now; e1 is pending or delivered
    assert [(a.status_code, a.json()["count"], a.json()["skipped"]) for a in answers] == [(202, 1, []), (202, 0, [])]

    resent = receiver.wait_for(7, "/recover")[5:]
    assert sorted(json.loads(r.body)["id"] for r in resent) == sorted([e1, e2])
    for event_id in (e1, e2):
        assert eventually(lambda event_id=event_id: _in_state(tenant, event_id, "delivered"))
    assert tenant.post(path, everything).json() == {"count": 0, "found": 0, "already_queued": 0, "skipped": []}
    time.sleep(3)  # nothing more comes: no resend twice
    assert len(receiver.on("/recover")) == 7
    assert [json.loads(r.body)["id"] for r in receiver.on("/recover")].count(e3) == 1

    unknown = tenant.post(f"/integrations/{uuid.uuid4()}/recover", everything)
    assert (unknown.status_code, unknown.json()["error"]) == (404, "integration not found")
    bad = tenant.post(path, {"since": "last week"})
    assert bad.status_code == 400 and bad.json()["error"].startswith("malformed request body: since: ")


def test_recover_after_the_receiver_is_fixed_sends_the_retrying_deliveries_now_and_once(
    stack: RunningStack, receiver: Receiver
) -> None:
    """Issue 21: the receiver answered 500, so its deliveries are retrying (their next try is
    RETRY_AFTER away); it is fixed; recover sends them now, not when the schedule says, and a second
    recover queues nothing: nothing is sent twice, and the retries that were waiting do nothing."""
    tenant = Tenant(stack)
    integration_id = tenant.webhook(receiver.url("/fixed"))
    receiver.script("/fixed", Answer(status=500), Answer(status=500))  # then 200: the receiver is fixed
    start = datetime.now(UTC) - timedelta(seconds=1)
    ids = []
    for n in range(2):
        tenant.decommission(f"dev-fixed-{n}")
        ids.append(json.loads(receiver.wait_for(n + 1, "/fixed")[n].body)["id"])
    dues = []
    for event_id in ids:
        retrying = eventually(lambda event_id=event_id: _in_state(tenant, event_id, "retrying"))
        assert isinstance(retrying, dict) and retrying["attempts"] == 1
        dues.append(parse_time(retrying["next_attempt"]))
    path = f"/integrations/{integration_id}/recover"

    asked = time.monotonic()
    first = tenant.post(path, {"since": rfc3339(start)})
    assert first.status_code == 202, first.text
    assert first.json() == {"count": 2, "found": 2, "already_queued": 0, "skipped": []}
    second = tenant.post(path, {"since": rfc3339(start)})  # while they are queued: left alone
    assert second.status_code == 202, second.text
    assert (second.json()["count"], second.json()["skipped"]) == (0, [])
    assert second.json()["already_queued"] == second.json()["found"]
    resent = receiver.wait_for(4, "/fixed", timeout=RETRY_AFTER * 0.8 - 1)[2:]  # before the retries were due
    assert time.monotonic() - asked < RETRY_AFTER * 0.8
    assert sorted(json.loads(r.body)["id"] for r in resent) == sorted(ids)
    for event_id in ids:
        assert eventually(lambda event_id=event_id: _in_state(tenant, event_id, "delivered"))
    third = tenant.post(path, {"since": rfc3339(start)})
    assert third.json() == {"count": 0, "found": 0, "already_queued": 0, "skipped": []}

    # the retries that were waiting come due and are dropped: nothing is sent again
    time.sleep(max(0.0, (max(dues) - datetime.now(UTC)).total_seconds()) + 5)
    assert len(receiver.on("/fixed")) == 4
    for event_id in ids:
        status = tenant.status(event_id)
        assert (status["state"], status["attempts"]) == ("delivered", 2)


def test_a_typed_test_event_reaches_the_receiver_and_the_activity_log(stack: RunningStack, receiver: Receiver) -> None:
    tenant = Tenant(stack)
    integration_id = tenant.webhook(receiver.url("/typed"))
    response = tenant.post(f"/integrations/{integration_id}/test", {"type": "device-inventory-changed"})
    assert response.status_code == 200 and response.json()["success"] is True, response.text
    (request,) = receiver.on("/typed")
    sent = json.loads(request.body)
    assert (sent["id"], sent["type"]) == (response.json()["event_id"], "device-inventory-changed")
    assert sent["data"]["tenant_id"] == tenant.id and sent["data"]["inventory"]
    assert request.signed_by("deadbeef")
    assert tenant.status(sent["id"])["state"] == "delivered"
