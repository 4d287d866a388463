"""The dispatcher with in-memory stores and a real HTTP receiver (pytest-httpserver)."""

from __future__ import annotations

import ipaddress
import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from devicehooks.delivery.sender import HttpSender
from devicehooks.delivery.tasks import DeliveryTask
from devicehooks.dispatch import Batch, Busy, DispatchContext, Dispatcher
from devicehooks.domain.activity import ActivityEvent, DeliveryStatus
from devicehooks.domain.decisions import DispatchPolicy
from devicehooks.domain.eventids import new_event_id
from devicehooks.domain.events import WebhookEvent, normalize_data
from devicehooks.domain.models import Circuit, Integration, IntegrationChanges
from devicehooks.errors import Conflict, InvalidRequest, NotFound
from devicehooks.security.ssrf import DestinationGuard
from devicehooks.services import redelivery
from devicehooks.services.redelivery import DeliveryService
from devicehooks_dev.doubles import MemoryActivityStore, MemoryIntegrationStore, MemoryTaskQueue, PlainTestCipher
from devicehooks_dev.receiver import verify_men_signature, verify_standard_webhook
from tests.ids import webhook_id

LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"),)


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class Harness:
    """A dispatcher on in-memory stores, the production sender, a fixed clock and no spread. It runs
    records as the dispatcher's handler does, in a batch it makes (:attr:`batch`, :meth:`new_batch`:
    one SQS batch, whose records read each tenant's webhooks once) and finishes after each record
    (:meth:`message`, :meth:`task`: what it left for the retry queue sent, its trial turns given
    back, its attempts counted)."""

    def __init__(
        self,
        server: HTTPServer,
        guard: DestinationGuard | None = None,
        timeout: float = 2.0,
        policy: DispatchPolicy | None = None,
    ) -> None:
        self.server = server
        self.integrations = MemoryIntegrationStore()
        self.activity = MemoryActivityStore()
        self.queue = MemoryTaskQueue()
        self.cipher = PlainTestCipher()
        self.clock = Clock()
        self.policy = policy or DispatchPolicy(schedule=(5, 60), disable_after=3600, delivery_timeout=timeout)
        self.dispatcher = Dispatcher(
            DispatchContext(
                integrations=self.integrations,
                activity=self.activity,
                cipher=self.cipher,
                sender=HttpSender(guard or DestinationGuard(allowed_cidrs=LOOPBACK), timeout=timeout),
                queue=self.queue,
                policy=self.policy,
                clock=self.clock,
                draw=lambda: 0.0,  # no spread: retry delays are the schedule's
            )
        )
        self.batch = Batch(deadline=None)

    def rewire(self, **dependencies: Any) -> Dispatcher:
        """A new dispatcher on the context's dependencies but ``dependencies`` (a sender, a store)."""
        self.dispatcher = Dispatcher(replace(self.dispatcher.ctx, **dependencies))
        return self.dispatcher

    def new_batch(self, deadline: float | None = None) -> Batch:
        """A new batch (a later SQS batch: it reads the webhooks again), the one :meth:`message` and
        :meth:`task` use from now on; ``deadline`` on ``time.monotonic()`` (``None``: no limit)."""
        self.batch = Batch(deadline)
        return self.batch

    def message(self, body: str) -> None:
        """One queue message, handled in :attr:`batch`, which is then finished (not when the message
        raises: SQS brings it back, and the batch's tasks go with a later message)."""
        batch = self.batch
        self.dispatcher.handle_message(body, batch)
        self.dispatcher.finish_batch(batch)

    def task(self, task: DeliveryTask) -> None:
        """One delivery task, handled in :attr:`batch`, which is then finished (even when it raises)."""
        batch = self.batch
        try:
            self.dispatcher.handle_task(task, batch)
        finally:
            self.dispatcher.finish_batch(batch)

    def webhook(
        self,
        path: str = "/hook",
        secret: str | None = "deadbeef",
        tenant: str = "tenant-1",
        url: str | None = None,
        **fields: Any,
    ) -> Integration:
        integration_id = str(uuid.uuid4())
        integration = Integration(
            id=integration_id,
            tenant_id=tenant,
            url=url or self.server.url_for(path),
            secret=None if secret is None else self.cipher.seal(bytes.fromhex(secret), tenant, integration_id),
            created_at=self.clock(),
            updated_at=self.clock(),
            **fields,
        )
        self.integrations.add(integration, limit=99)
        return integration

    def send(self, event_type: str = "device-status-changed", tenant: str = "tenant-1", **data: Any) -> str:
        event_id = str(uuid.uuid4())
        payload = {"id": "dev-1", "status": "accepted"} if event_type == "device-status-changed" else {"id": "dev-1"}
        payload.update(data)
        self.new_batch()
        body = self.bus(event_id, event_type, tenant, payload)
        self.message(body)
        return webhook_id(body)  # the id the bus event's webhook event gets

    @staticmethod
    def bus(event_id: str, event_type: str, tenant: str, data: dict[str, Any]) -> str:
        return json.dumps(
            {
                "version": "0",
                "id": event_id,
                "detail-type": event_type,
                "source": "devicehooks.deviceauth",
                "time": "2026-01-01T10:00:00Z",
                "detail": {"tenant_id": tenant, "data": data, "time": "2026-01-01T10:00:00.5Z"},
            }
        )

    def requests(self, path: str | None = None) -> list[Request]:
        return [r for r, _ in self.server.log if path is None or r.path == path]


@pytest.fixture
def h(httpserver: HTTPServer) -> Iterator[Harness]:
    httpserver.expect_request("/hook", method="POST").respond_with_data("ok")
    httpserver.expect_request("/other", method="POST").respond_with_data("ok")
    yield Harness(httpserver)
    httpserver.clear()


def _task(h: Harness, index: int = 0) -> DeliveryTask:
    return h.queue.scheduled[index][0].due(h.clock().timestamp())


# ------------------------------------------------------------------ first delivery


def test_every_matching_webhook_gets_one_signed_post_with_the_same_bytes(h: Harness) -> None:
    hooks = [h.webhook(), h.webhook(secret="c0ffee"), h.webhook(path="/other", secret=None)]
    event_id = h.send()
    received = h.requests()
    assert len(received) == 3
    bodies = {r.get_data() for r in received}
    assert len(bodies) == 1
    body = bodies.pop()
    assert json.loads(body)["id"] == event_id
    signed = [r for r in received if "X-Men-Signature" in r.headers]
    assert len(signed) == 2
    for request in signed:
        secret = "deadbeef" if verify_men_signature("deadbeef", body, request.headers["X-Men-Signature"]) else "c0ffee"
        assert verify_men_signature(secret, body, request.headers["X-Men-Signature"])
        verify_standard_webhook(secret, body, dict(request.headers), now=h.clock().timestamp())
    unsigned = [r for r in received if "X-Men-Signature" not in r.headers]
    assert unsigned[0].headers["webhook-id"] == event_id
    record = h.activity.get("tenant-1", event_id)
    assert record is not None
    assert {s.integration_id: (s.state, s.status_code, s.attempts) for s in record.deliveries.values()} == {
        i.id: ("delivered", 200, 1) for i in hooks
    }


def test_the_event_type_filter_holds(h: Harness) -> None:
    only_status = h.webhook(event_types=("device-status-changed",))
    everything = h.webhook(path="/other")
    h.send("device-decommissioned")
    assert [r.path for r in h.requests()] == ["/other"]
    h.send("device-status-changed")
    assert sorted(r.path for r in h.requests()) == ["/hook", "/other", "/other"]
    assert only_status.wants("device-status-changed") and not only_status.wants("device-provisioned")
    assert everything.wants("device-provisioned")


def test_scopes_select_the_events_and_the_event_type_filter_narrows_them(h: Harness) -> None:
    # Given a webhook in the inventory scope and one with no scopes (deviceauth only, as before scopes)
    inventory = h.webhook(scopes=("inventory",))
    deviceauth_only = h.webhook(path="/other")
    inventory_data = {"device_id": "dev-1", "inventory": [{"name": "os", "value": ["a", "b"], "scope": "inventory"}]}
    # When an inventory change and a status change come
    inventory_event = h.send("device-inventory-changed", **inventory_data)
    h.send("device-status-changed")
    # Then each reaches only the webhook whose scope it is in, signed as any other event
    assert [r.path for r in h.requests()] == ["/hook", "/other"]
    first = h.requests()[0]
    assert verify_men_signature("deadbeef", first.get_data(), first.headers["X-Men-Signature"])
    assert json.loads(first.get_data())["data"] == {"device_id": "dev-1", "tenant_id": "tenant-1", **inventory_data}
    record = h.activity.get("tenant-1", inventory_event)
    assert record is not None and list(record.deliveries) == [inventory.id]
    assert [i.wants("device-inventory-changed") for i in (inventory, deviceauth_only)] == [True, False]
    both = h.webhook(scopes=("deviceauth", "inventory"), event_types=("device-inventory-changed",))
    assert [both.wants(t) for t in ("device-inventory-changed", "device-status-changed")] == [True, False]
    assert h.webhook(scopes=()).wants("device-provisioned")  # [] is deviceauth only, as Mender's UI sends it
    assert not h.webhook(scopes=()).wants("device-inventory-changed")


def test_other_tenants_webhooks_receive_nothing_and_no_integration_means_no_record(h: Harness) -> None:
    h.webhook(tenant="tenant-2")
    event_id = h.send(tenant="tenant-1")
    assert h.requests() == []
    assert h.activity.get("tenant-1", event_id) is None


def test_a_disabled_webhook_is_recorded_as_skipped(h: Harness) -> None:
    hook = h.webhook(enabled=False, disabled_reason="disabled by a user")
    event_id = h.send()
    assert h.requests() == []
    record = h.activity.get("tenant-1", event_id)
    assert record is not None and record.deliveries[hook.id].state == "skipped"


def test_malformed_events_go_to_the_dead_letter_queue_with_a_reason(h: Harness) -> None:
    h.webhook()
    h.message('{"detail-type": "device-status-changed", "detail": {}}')
    h.message("not json")
    assert len(h.queue.rejected) == 2
    assert h.queue.rejected[0][1].startswith("malformed device event: ")
    assert h.queue.rejected[1][1] == "malformed message: not a JSON object"
    assert h.requests() == []


# ------------------------------------------------------------------ at least once, no duplicates


def test_the_same_bus_event_twice_is_posted_once(h: Harness) -> None:
    h.webhook()
    body = h.bus(str(uuid.uuid4()), "device-decommissioned", "tenant-1", {"id": "dev-1"})
    h.message(body)
    h.message(body)
    assert len(h.requests()) == 1


def test_a_crash_before_the_success_is_recorded_never_loses_the_delivery(h: Harness) -> None:
    hook = h.webhook()
    body = h.bus(str(uuid.uuid4()), "device-decommissioned", "tenant-1", {"id": "dev-1"})
    original = h.activity.record
    failures = iter([RuntimeError("DynamoDB unavailable")])

    def flaky(*args: Any, **kwargs: Any) -> None:
        error = next(failures, None)
        if error is not None:
            raise error
        original(*args, **kwargs)

    h.activity.record = flaky  # type: ignore[method-assign]
    with pytest.raises(RuntimeError):
        h.message(body)  # SQS will bring the message back
    assert len(h.requests()) == 1
    with pytest.raises(Busy):
        h.message(body)  # too early: the first attempt's lease still holds
    assert len(h.requests()) == 1
    h.clock.advance(h.policy.lease_seconds + 1)
    h.message(body)  # the lease expired: the delivery is made (at least once)
    assert len(h.requests()) == 2
    record = h.activity.get("tenant-1", webhook_id(body))
    assert record is not None and record.deliveries[hook.id].state == "delivered"
    h.message(body)
    assert len(h.requests()) == 2  # and never again once recorded


# ------------------------------------------------------------------ retries


def _respond(server: HTTPServer, path: str, *answers: tuple[int, dict[str, str]]) -> None:
    server.clear()
    for status, headers in answers:
        server.expect_ordered_request(path, method="POST").respond_with_data("nope", status=status, headers=headers)


def test_a_failed_delivery_is_retried_on_schedule_with_the_same_bytes(h: Harness) -> None:
    hook = h.webhook()
    _respond(h.server, "/hook", (500, {}), (200, {}))
    event_id = h.send()
    record = h.activity.get("tenant-1", event_id)
    assert record is not None
    status = record.deliveries[hook.id]
    assert (status.state, status.status_code, status.attempts) == ("retrying", 500, 1)
    assert status.next_attempt_at == h.clock() + timedelta(seconds=5)
    assert [(t.series_attempt, delay) for t, delay in h.queue.scheduled] == [(2, 5)]
    h.clock.advance(5)
    h.task(_task(h))
    first, second = h.requests()
    assert first.get_data() == second.get_data()
    assert first.headers["webhook-id"] == second.headers["webhook-id"] == event_id
    record = h.activity.get("tenant-1", event_id)
    assert record is not None
    assert (record.deliveries[hook.id].state, record.deliveries[hook.id].attempts) == ("delivered", 2)
    assert [a.status_code for a in record.attempts[hook.id]] == [500, 200]
    assert record.attempts[hook.id][0].response_body == "nope"


@pytest.mark.parametrize(
    ("status", "retry_after", "delay"), [(503, "120", 120), (429, "999999", 3600), (429, "soon", 5)]
)
def test_retry_after_is_honoured_and_capped(h: Harness, status: int, retry_after: str, delay: int) -> None:
    h.webhook()
    _respond(h.server, "/hook", (status, {"Retry-After": retry_after}))
    h.send()
    assert [d for _, d in h.queue.scheduled] == [delay]


def test_410_gone_disables_the_webhook_without_retries(h: Harness) -> None:
    hook = h.webhook()
    _respond(h.server, "/hook", (410, {}))
    event_id = h.send()
    assert h.queue.scheduled == []
    stored = h.integrations.get("tenant-1", hook.id)
    assert stored is not None and not stored.enabled and stored.disabled_reason == "the endpoint answered 410 Gone"
    record = h.activity.get("tenant-1", event_id)
    assert record is not None and record.deliveries[hook.id].state == "failed"
    h.server.clear()
    skipped = h.send()
    record = h.activity.get("tenant-1", skipped)
    assert record is not None and record.deliveries[hook.id].state == "skipped"
    assert h.requests() == []


def test_after_the_last_attempt_the_delivery_goes_to_the_delivery_dlq(h: Harness) -> None:
    hook = h.webhook()
    _respond(h.server, "/hook", (500, {}), (502, {}), (504, {}))
    event_id = h.send()
    for _ in range(2):
        h.task(_task(h))
        h.queue.scheduled.pop(0)
    assert len(h.requests()) == 3  # attempts = schedule entries + 1
    assert h.queue.scheduled == []
    ((task, reason),) = h.queue.dead
    assert (task.event_id, task.integration_id) == (event_id, hook.id)
    assert reason == "unexpected status code from webhook: 504"
    record = h.activity.get("tenant-1", event_id)
    assert record is not None and record.deliveries[hook.id].state == "failed"
    assert record.deliveries[hook.id].attempts == 3


def test_a_webhook_failing_longer_than_disable_after_is_disabled(h: Harness) -> None:
    hook = h.webhook()
    h.server.clear()
    h.server.expect_request("/hook", method="POST").respond_with_data("down", status=500)
    h.send()
    stored = h.integrations.get("tenant-1", hook.id)
    assert stored is not None and stored.failing_since == h.clock()
    h.clock.advance(h.policy.disable_after + 1)
    h.send()
    stored = h.integrations.get("tenant-1", hook.id)
    assert stored is not None and not stored.enabled
    assert stored.disabled_reason is not None and stored.disabled_reason.startswith("every delivery failed since")


def test_a_success_clears_the_failure_streak(h: Harness) -> None:
    hook = h.webhook()
    _respond(h.server, "/hook", (500, {}), (200, {}))
    h.send()
    h.task(_task(h))
    stored = h.integrations.get("tenant-1", hook.id)
    assert stored is not None and stored.failing_since is None and stored.enabled


def test_a_flaky_webhook_is_failing_since_its_last_success_and_is_not_disabled(h: Harness) -> None:
    """docs/architecture.md, "What 'failing since' means for a flaky webhook": since the last
    success; a success now and then clears it, so the disable date moves and the webhook stays on."""
    hook = h.webhook()
    h.server.clear()
    h.server.expect_request("/hook", method="POST").respond_with_data("down", status=500)
    h.send()
    first = h.integrations.get("tenant-1", hook.id)
    assert first is not None and first.failing_since == h.clock()
    h.clock.advance(h.policy.disable_after // 2)
    h.server.clear()
    h.server.expect_request("/hook", method="POST").respond_with_data("ok", status=200)
    h.send()  # a lone success
    cleared = h.integrations.get("tenant-1", hook.id)
    assert cleared is not None and cleared.failing_since is None
    h.clock.advance(h.policy.disable_after // 2 + 1)  # past the first failure's disable date
    h.server.clear()
    h.server.expect_request("/hook", method="POST").respond_with_data("down", status=500)
    h.send()
    again = h.integrations.get("tenant-1", hook.id)
    assert again is not None and again.enabled and again.failing_since == h.clock()  # since the new failure


def test_retries_of_removed_or_disabled_webhooks_stop(h: Harness) -> None:
    removed, disabled = h.webhook(), h.webhook(path="/other")
    _respond(h.server, "/hook", (500, {}))
    h.server.expect_request("/other", method="POST").respond_with_data("x", status=500)
    event_id = h.send()
    h.integrations.remove("tenant-1", removed.id)
    h.integrations.update("tenant-1", disabled.id, IntegrationChanges.settings(at=h.clock(), enabled=False))
    h.new_batch()  # the retries come in a later SQS batch, which reads the webhooks again
    for task, _ in list(h.queue.scheduled):
        h.task(task.due(0))
    record = h.activity.get("tenant-1", event_id)
    assert record is not None
    assert (
        record.deliveries[removed.id].state == "failed" and record.deliveries[removed.id].error == "webhook was removed"
    )
    assert record.deliveries[disabled.id].state == "skipped"
    assert len(h.requests()) == 2


def test_tasks_not_yet_due_wait_longer_than_sqs_allows(h: Harness) -> None:
    task = DeliveryTask(
        tenant_id="t", event_id="e", integration_id="i", series_attempt=2, due_at=h.clock().timestamp() + 7200
    )
    h.task(task)
    ((again, delay),) = h.queue.scheduled
    assert again.due(0) == task.due(0)
    assert 7199 <= delay <= 7200


# ------------------------------------------------------------------ transport failures


def test_connection_refused_is_a_retried_failure(h: Harness) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    hook = h.webhook(url=f"http://127.0.0.1:{port}/hook")
    event_id = h.send()
    record = h.activity.get("tenant-1", event_id)
    assert record is not None
    status = record.deliveries[hook.id]
    assert (status.state, status.status_code, status.error) == ("retrying", None, "connection refused")


def test_a_hanging_endpoint_times_out_and_does_not_delay_the_others() -> None:
    release = threading.Event()

    def hang(request: Request) -> Response:
        release.wait(5)
        return Response("late")

    server = HTTPServer(threaded=True)  # one handler thread per request, like a real receiver
    server.start()
    server.expect_request("/slow", method="POST").respond_with_handler(hang)
    server.expect_request("/hook", method="POST").respond_with_data("ok")
    h = Harness(server, timeout=1.0)
    slow, fast = h.webhook(path="/slow"), h.webhook()
    try:
        event_id = h.send()
    finally:
        release.set()
        server.clear()
        server.stop()
    record = h.activity.get("tenant-1", event_id)
    assert record is not None
    assert record.deliveries[fast.id].state == "delivered"
    assert record.deliveries[slow.id].error == "timeout waiting for the response"
    assert record.deliveries[slow.id].state == "retrying"


class CountingActivity(MemoryActivityStore):
    """The in-memory activity store, counting writes of statuses."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[list[str]] = []

    def record(self, tenant_id: str, event_id: str, updates: Any, deliveries: int | None = None) -> None:
        self.writes.append([status.integration_id for status, _ in updates])
        super().record(tenant_id, event_id, updates, deliveries)


def test_statuses_of_webhooks_that_finish_together_are_recorded_in_one_write() -> None:
    release = threading.Event()
    together = threading.Barrier(4, timeout=5)  # the four fast receivers answer at the same moment
    seen_before_release: list[dict[str, str]] = []

    def fast(request: Request) -> Response:
        together.wait()
        return Response("ok")

    def slow(request: Request) -> Response:
        release.wait(5)
        return Response("late")

    server = HTTPServer(threaded=True)
    server.start()
    server.expect_request("/slow", method="POST").respond_with_handler(slow)
    server.expect_request("/hook", method="POST").respond_with_handler(fast)
    h = Harness(server, timeout=3.0)
    h.activity = CountingActivity()
    h.rewire(activity=h.activity)
    fast_hooks = [h.webhook() for _ in range(4)]
    late = h.webhook(path="/slow")
    sender = threading.Thread(target=h.send)
    try:
        sender.start()
        while sum(len(w) for w in h.activity.writes) < 4:  # the fast ones recorded, the slow one still out
            sender.join(0.01)
        (event,) = [e for (_, _), e in h.activity._events.items()]
        seen_before_release.append({i: s.state for i, s in event.deliveries.items()})
        release.set()
        sender.join(10)
    finally:
        release.set()
        server.clear()
        server.stop()
    fast_writes = h.activity.writes[:-1]
    assert sorted(i for w in fast_writes for i in w) == sorted(f.id for f in fast_hooks)
    assert len(fast_writes) <= 2  # one write when they finish within 10 ms of each other, as they do here
    assert h.activity.writes[-1] == [late.id]
    assert seen_before_release[0] == {**{f.id: "delivered" for f in fast_hooks}, late.id: "pending"}


def test_a_batch_reads_each_tenants_integrations_once_even_when_its_records_ask_together(h: Harness) -> None:
    h.webhook()
    reads: list[str] = []
    real = h.integrations.list_tenant

    def counted(tenant_id: str) -> list[Integration]:
        reads.append(tenant_id)
        time.sleep(0.05)  # a DynamoDB round trip, so that the other records ask meanwhile
        return real(tenant_id)

    h.integrations.list_tenant = counted  # type: ignore[method-assign]
    bodies = [h.bus(str(uuid.uuid4()), "device-decommissioned", "tenant-1", {"id": f"d{n}"}) for n in range(10)]
    h.new_batch()
    with ThreadPoolExecutor(10) as pool:
        list(pool.map(h.message, bodies))
    assert reads == ["tenant-1"]
    assert len(h.requests("/hook")) == 10
    h.new_batch()  # the next batch reads again: changes to webhooks apply at once
    h.message(h.bus(str(uuid.uuid4()), "device-decommissioned", "tenant-1", {"id": "x"}))
    assert reads == ["tenant-1", "tenant-1"]


def test_redirects_are_not_followed(h: Harness, httpserver: HTTPServer) -> None:
    httpserver.clear()
    httpserver.expect_request("/hook", method="POST").respond_with_data(
        "", status=302, headers={"Location": "http://169.254.169.254/latest/meta-data/"}
    )
    hook = h.webhook()
    event_id = h.send()
    record = h.activity.get("tenant-1", event_id)
    assert record is not None
    assert (record.deliveries[hook.id].status_code, record.deliveries[hook.id].state) == (302, "retrying")
    assert len(httpserver.log) == 1


def test_connect_time_guard_refuses_private_destinations(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/hook", method="POST").respond_with_data("ok")
    h = Harness(httpserver, guard=DestinationGuard())  # no allowlist: loopback is refused at connect
    hook = h.webhook()
    event_id = h.send()
    assert httpserver.log == []
    record = h.activity.get("tenant-1", event_id)
    assert record is not None
    assert record.deliveries[hook.id].error == "destination address is in reserved address range"


def test_dns_rebinding_to_a_private_address_is_refused_at_send(httpserver: HTTPServer) -> None:
    def rebound(host: str, port: int) -> list[tuple[Any, ...]]:
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.0.0.7", port))]

    h = Harness(httpserver, guard=DestinationGuard(resolver=rebound))
    hook = h.webhook(url="http://hooks.example.com/x")  # stored when it resolved publicly
    event_id = h.send()
    record = h.activity.get("tenant-1", event_id)
    assert record is not None
    assert record.deliveries[hook.id].error == "destination address is in reserved address range"


def test_a_name_that_no_longer_resolves_is_a_dns_failure(httpserver: HTTPServer) -> None:
    def gone(host: str, port: int) -> list[tuple[Any, ...]]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    h = Harness(httpserver, guard=DestinationGuard(resolver=gone))
    hook = h.webhook(url="http://hooks.example.com/x")
    event_id = h.send()
    record = h.activity.get("tenant-1", event_id)
    assert record is not None and record.deliveries[hook.id].error == "dns lookup failed"


# ------------------------------------------------------------------ rotation, test, redelivery


def test_during_a_rotation_both_secrets_sign_then_only_the_new_one(h: Harness) -> None:
    hook = h.webhook(secret="c0ffee")
    h.integrations.update(
        "tenant-1",
        hook.id,
        IntegrationChanges.credentials(
            url=hook.url,
            secret=hook.secret,
            previous=h.cipher.seal(bytes.fromhex("deadbeef"), "tenant-1", hook.id),
            previous_until=h.clock() + timedelta(hours=24),
            at=h.clock(),
        ),
    )
    h.send()
    request = h.requests()[-1]
    body = request.get_data()
    assert verify_men_signature("c0ffee", body, request.headers["X-Men-Signature"])
    assert len(request.headers["webhook-signature"].split()) == 2
    verify_standard_webhook("deadbeef", body, dict(request.headers), now=h.clock().timestamp())
    h.clock.advance(24 * 3600 + 1)
    h.send()
    assert len(h.requests()[-1].headers["webhook-signature"].split()) == 1


def _deliveries(h: Harness) -> DeliveryService:
    return DeliveryService(h.integrations, h.activity, h.queue, lambda: h.dispatcher, retention=3600, clock=h.clock)


def test_a_test_delivery_posts_a_marked_event_once_and_reports_it(h: Harness) -> None:
    hook = h.webhook()
    event_id, attempt = _deliveries(h).send_test("tenant-1", hook.id)
    assert (attempt.status_code, attempt.error, attempt.response_body) == (200, None, "ok")
    request = h.requests()[-1]
    body = json.loads(request.get_data())
    assert body["type"] == "webhook-test"
    assert body["id"] == event_id == request.headers["webhook-id"]
    assert body["data"]["integration_id"] == hook.id
    assert verify_men_signature("deadbeef", request.get_data(), request.headers["X-Men-Signature"])
    assert h.activity.get("tenant-1", event_id) is not None


def test_redelivery_sends_the_same_event_again_as_new_attempts(h: Harness) -> None:
    hook = h.webhook()
    event_id = h.send()
    service = _deliveries(h)
    assert service.redeliver("tenant-1", event_id, hook.id) == [hook.id]
    assert service.redeliver("tenant-1", event_id, hook.id) == [hook.id]  # asked twice: queued twice...
    h.task(_task(h, 0))
    h.task(_task(h, 1))  # ...attempted once: both tasks saw the same attempts
    first, second = h.requests()
    assert first.get_data() == second.get_data()
    record = h.activity.get("tenant-1", event_id)
    assert record is not None
    assert (record.deliveries[hook.id].state, record.deliveries[hook.id].attempts) == ("delivered", 2)
    assert [a.number for a in record.attempts[hook.id]] == [1, 2]


# ------------------------------------------------------------------ retry now, recover


def _retrying(h: Harness, hook: Integration) -> str:
    """An event whose first attempt failed: its delivery waits for its retry (the one task queued)."""
    event_id = h.send()
    record = h.activity.get("tenant-1", event_id)
    assert record is not None
    assert (record.deliveries[hook.id].state, record.deliveries[hook.id].attempts) == ("retrying", 1)
    assert [(t.reason, t.seen_attempts) for t, _ in h.queue.scheduled] == [("retry", 1)]
    return event_id


@pytest.mark.parametrize(("answer", "state"), [(200, "delivered"), (503, "retrying")])
def test_retry_now_attempts_a_retrying_delivery_at_once_and_its_waiting_retry_does_nothing(
    h: Harness, answer: int, state: str
) -> None:
    hook = h.webhook()
    _respond(h.server, "/hook", (500, {}), (answer, {}), (200, {}))
    event_id = _retrying(h, hook)
    waiting = _task(h, 0)
    assert _deliveries(h).redeliver("tenant-1", event_id, hook.id) == [hook.id]
    now = _task(h, 1)
    assert (now.reason, now.seen_attempts, h.queue.scheduled[1][1]) == ("redeliver", 1, 0)
    h.task(now)
    assert [r.headers["webhook-id"] for r in h.requests()] == [event_id, event_id]
    h.clock.advance(5)
    h.task(waiting)  # the retry comes due: dropped quietly (no Busy, no POST)
    assert len(h.requests()) == 2
    record = h.activity.get("tenant-1", event_id)
    assert record is not None
    assert (record.deliveries[hook.id].state, record.deliveries[hook.id].attempts) == (state, 2)
    # what follows is the redelivery's own retry (if it failed), queued for its 2 attempts
    assert [t.seen_attempts for t, _ in h.queue.scheduled[2:]] == ([2] if state == "retrying" else [])
    assert h.queue.dead == []


def test_when_the_waiting_retry_comes_first_the_retry_now_task_is_the_one_dropped(h: Harness) -> None:
    hook = h.webhook()
    _respond(h.server, "/hook", (500, {}), (503, {}))
    event_id = _retrying(h, hook)
    waiting = _task(h, 0)
    _deliveries(h).redeliver("tenant-1", event_id, hook.id)
    now = _task(h, 1)
    h.task(waiting)  # attempt 2, which fails and queues attempt 3
    h.task(now)  # saw 1 attempt, there are 2: someone else's
    assert len(h.requests()) == 2
    record = h.activity.get("tenant-1", event_id)
    assert record is not None
    assert (record.deliveries[hook.id].state, record.deliveries[hook.id].attempts) == ("retrying", 2)
    assert [t.seen_attempts for t, _ in h.queue.scheduled] == [1, 1, 2]


def test_a_delivery_being_attempted_cannot_be_retried_now(h: Harness) -> None:
    hook = h.webhook()
    _respond(h.server, "/hook", (500, {}))
    event_id = _retrying(h, hook)
    assert h.activity.claim("tenant-1", event_id, hook.id, h.clock(), 60, 1).value == "taken"  # an attempt in flight
    with pytest.raises(Conflict, match="being attempted now"):
        _deliveries(h).redeliver("tenant-1", event_id, hook.id)
    assert len(h.queue.scheduled) == 1
    h.clock.advance(61)  # the attempt's lease ran out (its worker died): retry now works again
    assert _deliveries(h).redeliver("tenant-1", event_id, hook.id) == [hook.id]


def test_a_retry_overtaken_between_its_read_and_its_claim_is_dropped_not_retried(h: Harness) -> None:
    hook = h.webhook()
    _respond(h.server, "/hook", (500, {}), (503, {}))
    event_id = _retrying(h, hook)
    waiting = _task(h, 0)
    _deliveries(h).redeliver("tenant-1", event_id, hook.id)
    now = _task(h, 1)
    claim = h.activity.claim
    overtaken = iter([True])

    def late_claim(*args: Any, **kwargs: Any) -> Any:
        if next(overtaken, False):  # the retry-now task runs to the end between the read and the claim
            other = Batch(deadline=None)  # another invocation's
            h.dispatcher.handle_task(now, other)
            h.dispatcher.finish_batch(other)
        return claim(*args, **kwargs)

    h.activity.claim = late_claim  # type: ignore[method-assign]
    h.task(waiting)  # no Busy: SQS does not bring it back to its DLQ
    assert len(h.requests()) == 2
    record = h.activity.get("tenant-1", event_id)
    assert record is not None
    assert (record.deliveries[hook.id].state, record.deliveries[hook.id].attempts) == ("retrying", 2)
    assert [t.seen_attempts for t, _ in h.queue.scheduled] == [1, 1, 2]  # attempt 3: the redelivery's retry


def test_a_retry_that_comes_before_its_attempt_is_recorded_is_tried_again_later(h: Harness) -> None:
    hook = h.webhook()
    _respond(h.server, "/hook", (500, {}))
    event_id = h.send()
    task = _task(h).seen(2)  # queued by attempt 2, whose record is not written yet
    claim = h.activity.claim

    def recorded_meanwhile(*args: Any, **kwargs: Any) -> Any:  # attempt 2's record lands after the read
        h.activity.record("tenant-1", event_id, [(_bumped(h, event_id, hook.id), None)])
        return claim(*args, **kwargs)

    h.activity.claim = recorded_meanwhile  # type: ignore[method-assign]
    with pytest.raises(Busy):  # not superseded (it is attempt 3's task): SQS brings it back, on fresh data
        h.task(task)
    assert len(h.requests()) == 1


def _bumped(h: Harness, event_id: str, integration_id: str) -> Any:
    record = h.activity.get("tenant-1", event_id)
    assert record is not None
    status = record.deliveries[integration_id]
    return replace(status, attempts=status.attempts + 1, lease_until=None)


def _failed_event(h: Harness, hook: Integration, minutes_ago: float, state: str = "failed", attempts: int = 3) -> str:
    event = WebhookEvent(
        id=new_event_id(h.clock() - timedelta(minutes=minutes_ago), "device-decommissioned"),
        tenant_id="tenant-1",
        type="device-decommissioned",
        data={"id": "dev-1"},
        time=h.clock() - timedelta(minutes=minutes_ago),
    )
    h.activity.create(ActivityEvent.new(event, 0, [DeliveryStatus(hook.id)]))
    ended = DeliveryStatus(hook.id, state=state, attempts=attempts, status_code=500)  # type: ignore[arg-type]
    h.activity.record("tenant-1", event.id, [(ended, None)])
    return event.id


def _run_tasks(h: Harness) -> None:
    for task, _ in list(h.queue.scheduled):
        h.task(task.due(h.clock().timestamp()))


def test_recover_resends_each_failed_delivery_of_the_window_once_even_when_called_twice(h: Harness) -> None:
    hook, other = h.webhook(), h.webhook(path="/other")
    failed = [_failed_event(h, hook, m) for m in (50, 30, 10)]
    _failed_event(h, hook, 20, state="delivered")
    _failed_event(h, hook, 90)  # before the window
    _failed_event(h, other, 30)  # another webhook's
    service = _deliveries(h)
    since = h.clock() - timedelta(minutes=60)
    first = service.recover("tenant-1", hook.id, since, None)
    second = service.recover("tenant-1", hook.id, since, None)  # while the first's resends are pending
    assert (first.count, first.next_since, second.count, second.already_queued) == (3, None, 0, 3)
    assert (first.found, first.skipped, first.circuit, second.found) == (3, {}, None, 3)
    assert sorted(t.event_id for t, _ in h.queue.scheduled) == sorted(failed)
    assert {(t.reason, t.seen_attempts) for t, _ in h.queue.scheduled} == {("redeliver", 3)}
    _run_tasks(h)
    assert sorted(r.headers["webhook-id"] for r in h.requests("/hook")) == sorted(failed)
    assert h.requests("/other") == []
    assert service.recover("tenant-1", hook.id, since, None).count == 0  # done: nothing failed is left
    _run_tasks(h)  # every task again (as SQS could): nothing is sent twice
    assert len(h.requests()) == 3
    for event_id in failed:
        record = h.activity.get("tenant-1", event_id)
        assert record is not None
        assert (record.deliveries[hook.id].state, record.deliveries[hook.id].attempts) == ("delivered", 4)


def test_recover_sends_now_what_is_failing_retrying_held_or_failed_and_the_waiting_retries_do_nothing(
    h: Harness,
) -> None:
    """Issue 21: after the receiver is fixed, recover sends at once the deliveries waiting for a retry
    (their last attempt failed) and those held (no attempt counted), not only the failed ones."""
    hook = h.webhook()
    retrying = _failed_event(h, hook, 40, state="retrying", attempts=1)
    held = _failed_event(h, hook, 30, state="retrying", attempts=0)
    failed = _failed_event(h, hook, 20)
    _failed_event(h, hook, 15, state="delivered")
    _failed_event(h, hook, 12, state="skipped", attempts=0)  # while the webhook was disabled: not sent
    pending = _failed_event(h, hook, 10, state="pending", attempts=0)  # on its way already
    waiting = [  # the retry and the hold each was waiting with (they cannot be taken off the queue)
        DeliveryTask.first("tenant-1", retrying, hook.id, 1).at_attempt(2),
        DeliveryTask.first("tenant-1", held, hook.id, 0).held(),
    ]
    service = _deliveries(h)
    recovery = service.recover("tenant-1", hook.id, h.clock() - timedelta(hours=1), None)
    assert (recovery.count, recovery.already_queued, dict(recovery.skipped)) == (3, 1, {"disabled": 1})
    assert recovery.found == 5 and recovery.circuit is None
    assert sorted(t.event_id for t, _ in h.queue.scheduled) == sorted([retrying, held, failed])
    assert {t.event_id: t.seen_attempts for t, _ in h.queue.scheduled} == {retrying: 1, held: 0, failed: 3}
    _run_tasks(h)
    assert sorted(r.headers["webhook-id"] for r in h.requests("/hook")) == sorted([retrying, held, failed])
    for task in waiting:  # they come due: the delivery was attempted since, nothing is sent again
        h.task(task.due(h.clock().timestamp()))
    assert len(h.requests()) == 3
    for event_id in (retrying, held, failed):
        record = h.activity.get("tenant-1", event_id)
        assert record is not None and record.deliveries[hook.id].state == "delivered"
    again = service.recover("tenant-1", hook.id, h.clock() - timedelta(hours=1), None)
    assert (again.count, again.already_queued, dict(again.skipped)) == (0, 1, {"disabled": 1})
    assert pending not in {t.event_id for t, _ in h.queue.scheduled}


def test_recover_never_resends_a_delivery_delivered_after_the_window_was_read(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    hook = h.webhook()
    events = [_failed_event(h, hook, m, state="retrying", attempts=1) for m in (30, 20)]
    reopen = h.activity.reopen

    def delivered_first(tenant_id: str, event_id: str, integration_id: str, *args: Any) -> bool:
        if event_id == events[0]:  # its scheduled retry succeeds between the read and the write
            done = DeliveryStatus(integration_id, state="delivered", attempts=2, status_code=200)
            h.activity.record(tenant_id, event_id, [(done, None)])
        return reopen(tenant_id, event_id, integration_id, *args)

    monkeypatch.setattr(h.activity, "reopen", delivered_first)
    recovery = _deliveries(h).recover("tenant-1", hook.id, h.clock() - timedelta(hours=1), None)
    assert (recovery.count, recovery.already_queued, dict(recovery.skipped)) == (1, 0, {"delivered": 1})
    _run_tasks(h)  # the task queued for it before the write finds it delivered: nothing is sent
    assert [r.headers["webhook-id"] for r in h.requests("/hook")] == [events[1]]


def test_recover_with_the_circuit_open_says_so_and_its_deliveries_wait_for_the_probe(h: Harness) -> None:
    now = h.clock()
    circuit = Circuit(failures=5, opened_at=now, open_until=now + timedelta(minutes=5), cooldown=300, proven=True)
    hook = h.webhook(circuit=circuit)
    events = [_failed_event(h, hook, m, state="retrying", attempts=m // 10) for m in (30, 20)]
    recovery = _deliveries(h).recover("tenant-1", hook.id, now - timedelta(hours=1), None)
    assert (recovery.count, recovery.circuit) == (2, circuit)
    _run_tasks(h)  # through the gate as any delivery: held, not sent all at once past the open circuit
    assert h.requests() == []
    for event_id in events:
        record = h.activity.get("tenant-1", event_id)
        assert record is not None
        status = record.deliveries[hook.id]
        assert status.state == "retrying" and status.error is not None and "circuit open" in status.error


def test_recover_takes_until_and_goes_on_where_a_long_window_stopped(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    hook = h.webhook()
    monkeypatch.setattr(redelivery, "RECOVER_PAGE", 2)
    events = [_failed_event(h, hook, m) for m in (40, 30, 20, 10)]
    service = _deliveries(h)
    until = h.clock() - timedelta(minutes=15)
    first = service.recover("tenant-1", hook.id, h.clock() - timedelta(minutes=45), until)
    assert first.count == 2 and first.next_since is not None
    rest = service.recover("tenant-1", hook.id, first.next_since, until)
    assert (rest.count, rest.next_since) == (1, None)
    assert sorted(t.event_id for t, _ in h.queue.scheduled) == sorted(events[:3])


def test_recover_refuses_an_empty_window_an_unknown_or_disabled_webhook(h: Harness) -> None:
    hook = h.webhook()
    service = _deliveries(h)
    now = h.clock()
    with pytest.raises(InvalidRequest, match="until: must be later than since"):
        service.recover("tenant-1", hook.id, now, now - timedelta(seconds=1))
    with pytest.raises(NotFound):
        service.recover("tenant-1", str(uuid.uuid4()), now - timedelta(hours=1), None)
    h.integrations.update("tenant-1", hook.id, IntegrationChanges.disabled("by hand", now))
    with pytest.raises(Conflict, match="disabled"):
        service.recover("tenant-1", hook.id, now - timedelta(hours=1), None)


@pytest.mark.parametrize(
    ("event_type", "keys"),
    [
        ("device-provisioned", ["id", "status", "auth_sets", "created_ts"]),
        ("device-decommissioned", ["id"]),
        ("device-status-changed", ["id", "status"]),
        ("device-inventory-changed", ["device_id", "tenant_id", "inventory"]),
    ],
)
def test_a_typed_test_event_sends_a_sample_of_that_type_once_and_is_never_retried(
    h: Harness, event_type: str, keys: list[str]
) -> None:
    hook = h.webhook()
    _respond(h.server, "/hook", (500, {}))
    event_id, attempt = _deliveries(h).send_test("tenant-1", hook.id, event_type)  # type: ignore[arg-type]
    assert attempt.status_code == 500
    (request,) = h.requests()
    body = json.loads(request.get_data())
    assert (body["id"], body["type"], list(body["data"])) == (event_id, event_type, keys)
    assert normalize_data(event_type, body["data"], "tenant-1") == body["data"]  # a real event's exact shape
    if event_type == "device-provisioned":
        (auth_set,) = body["data"]["auth_sets"]
        assert auth_set["device_id"] == body["data"]["id"] and auth_set["pubkey"].startswith("-----BEGIN")
    if event_type == "device-inventory-changed":
        assert body["data"]["tenant_id"] == "tenant-1" and body["data"]["inventory"]
    assert verify_men_signature("deadbeef", request.get_data(), request.headers["X-Men-Signature"])
    record = h.activity.get("tenant-1", event_id)
    assert record is not None and (record.type, record.deliveries[hook.id].state) == (event_type, "failed")
    assert record.is_test
    assert h.queue.scheduled == [] and h.queue.dead == []
    with pytest.raises(Conflict, match="test events are not redelivered"):
        _deliveries(h).redeliver("tenant-1", event_id, hook.id)
    assert _deliveries(h).recover("tenant-1", hook.id, h.clock() - timedelta(minutes=5), None).count == 0
    assert h.queue.scheduled == [] and len(h.requests()) == 1
