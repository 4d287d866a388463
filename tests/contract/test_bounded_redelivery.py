"""Issue 19, point 2, end to end on DynamoDB (moto's server, the template's table): a 240 KiB event to
20 webhooks that answer binary error bodies, redelivered through ``POST /events/{id}/redeliver`` again
and again; each redelivery's POSTs made by the dispatcher (lease, POST, record).

Before the bounds the event item outgrew DynamoDB's 400 KB: a redeliver answered 500
(``ValidationException`` in ``reopen``), or a POST went unrecorded and the delivery stayed pending.
"""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from bench.dynamometer import item_size
from devicehooks.dispatch import Batch, Dispatcher
from devicehooks.domain.activity import ActivityEvent, DeliveryStatus
from devicehooks.domain.eventids import new_event_id
from devicehooks.domain.events import WebhookEvent
from devicehooks.store.activity import DynamoActivityStore
from devicehooks.store.bounds import BODY_BYTES, TARGET_BYTES, bound_for
from tests.unit import test_management_api as harness

WEBHOOKS = 20
ROUNDS = 12  # the first delivery and 11 redeliveries


@pytest.fixture
def api(moto_tables: tuple[Any, dict[str, dict[str, Any]]], monkeypatch: pytest.MonkeyPatch) -> Any:
    """The management API's harness (tests/unit/test_management_api.py), its activity log on DynamoDB."""
    client, physical = moto_tables
    store = DynamoActivityStore(physical["ActivityLogTable"]["TableName"], client)
    monkeypatch.setattr(harness, "MemoryActivityStore", lambda: store)
    client_api = harness.Api()
    client_api.service.max_integrations = WEBHOOKS
    # the circuit left closed: a redelivery's attempts are what is measured, not the flow gates'
    # holding them (tests/unit/test_flow_control.py)
    policy = replace(client_api.dispatcher.ctx.policy, circuit_threshold=10_000)
    client_api.dispatcher = Dispatcher(replace(client_api.dispatcher.ctx, policy=policy))
    management = harness.management
    management.app.dependency_overrides[management.integration_service] = lambda: client_api.service
    management.app.dependency_overrides[management.event_service] = lambda: client_api.events
    management.app.dependency_overrides[management.delivery_service] = lambda: client_api.deliveries
    yield client_api
    management.app.dependency_overrides.clear()


def test_a_240_kib_event_to_20_webhooks_redelivered_again_and_again_never_fails_and_records_every_post(
    api: Any, httpserver: Any
) -> None:
    tenant = f"tenant-{uuid.uuid4().hex[:8]}"
    httpserver.expect_request("/hook", method="POST").respond_with_data(b"\xff\xfe" * 2048, status=500)
    webhooks = [
        harness._create(api, harness._webhook(url=httpserver.url_for("/hook"), secret="deadbeef"), tenant=tenant)
        for _ in range(WEBHOOKS)
    ]
    data: dict[str, Any] = {"id": "dev-1", "pad": ""}
    event = WebhookEvent(
        id=new_event_id(datetime.now(UTC), "device-decommissioned"),
        tenant_id=tenant,
        type="device-decommissioned",
        data=data,
        time=datetime.now(UTC),
    )
    data["pad"] = "x" * (BODY_BYTES - len(event.body()))
    assert len(event.body()) == BODY_BYTES
    api.activity.create(ActivityEvent.new(event, 0, [DeliveryStatus(i) for i in webhooks]))
    store: DynamoActivityStore = api.activity
    sizes = []
    for n in range(1, ROUNDS + 1):
        api.queue.scheduled.clear()
        response = api("POST", f"{harness.BASE}/events/{event.id}/redeliver", tenant=tenant)
        assert response.status == 202, response.text  # never a 500
        assert sorted(response.json()["integration_ids"]) == sorted(webhooks)
        tasks = [t for t, _ in api.queue.scheduled if t.reason == "redeliver"]
        assert len(tasks) == WEBHOOKS
        batch = Batch(deadline=None)
        for task in tasks:
            api.dispatcher.handle_task(task, batch)  # lease, POST, record
        api.dispatcher.finish_batch(batch)
        assert len(httpserver.log) == n * WEBHOOKS
        raw = store.client.get_item(TableName=store.table_name, Key=store._key(tenant, event.id))["Item"]
        sizes.append(item_size(raw))
    detail = api("GET", f"{harness.BASE}/events/{event.id}", tenant=tenant)
    assert detail.status == 200
    keep = bound_for(WEBHOOKS).keep
    for status in detail.json()["delivery_statuses"]:
        assert status["attempts"] == ROUNDS  # every POST recorded: as many as the receiver got
        assert status["state"] == "retrying"  # not stuck pending: its next retry is on the queue
        assert [a["attempt"] for a in status["attempt_log"]] == [1, *range(ROUNDS - keep + 2, ROUNDS + 1)]
        assert status["attempts_not_kept"] == ROUNDS - keep
        latest = status["attempt_log"][-1]
        assert len(latest["response_body"].encode()) <= 256 and latest["headers"]["X-Men-Signature"]
    assert max(sizes) <= TARGET_BYTES
