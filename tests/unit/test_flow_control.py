"""Flow control in the dispatcher: the circuit breaker, holds, the per-webhook share, the rate
limit, retry jitter, and handing deliveries back when the invocation runs out of time.

In-memory stores, a real receiver (pytest-httpserver), the production sender; the clock is the
harness's, so cooldowns pass without waiting.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from devicehooks.delivery.sender import HttpSender
from devicehooks.dispatch import Batch, DispatchContext, Dispatcher
from devicehooks.dispatch.context import spread
from devicehooks.domain.decisions import DispatchPolicy
from devicehooks.domain.models import Integration
from devicehooks.security.ssrf import DestinationGuard
from tests.ids import webhook_id
from tests.unit.test_dispatcher import LOOPBACK, Harness

NOW = datetime(2026, 1, 1, tzinfo=UTC)
POLICY = DispatchPolicy(
    schedule=(5, 60, 600),
    disable_after=10**6,
    delivery_timeout=2.0,
    circuit_threshold=3,
    circuit_cooldown=30,
    circuit_max_cooldown=100,
)


@pytest.fixture
def h(httpserver: HTTPServer) -> Iterator[Harness]:
    httpserver.expect_request("/down", method="POST").respond_with_data("no", status=503)
    httpserver.expect_request("/hook", method="POST").respond_with_data("ok")
    yield Harness(httpserver, policy=POLICY)
    httpserver.clear()


class Slow:
    """A receiver's handler that holds each POST until ``release`` is set, counting the most held at once."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.most = 0
        self._inside = 0
        self._lock = threading.Lock()

    def __call__(self, request: Request) -> Response:
        with self._lock:
            self._inside += 1
            self.most = max(self.most, self._inside)
        self.release.wait(5)
        with self._lock:
            self._inside -= 1
        return Response("ok")


def _another(h: Harness, timeout: float) -> Dispatcher:
    """A second dispatcher instance on the harness's stores and queue (as Lambda's share DynamoDB and SQS)."""
    sender = HttpSender(DestinationGuard(allowed_cidrs=LOOPBACK), timeout=timeout)
    return Dispatcher(
        DispatchContext(
            h.integrations, h.activity, h.cipher, sender, h.queue, h.policy, clock=h.clock, draw=lambda: 0.0
        )
    )


def _invocation(dispatcher: Dispatcher, start: threading.Barrier | None = None) -> str:
    """One invocation of ``dispatcher`` with one status change of tenant-1 (after ``start``, if given)."""
    event_id = str(uuid.uuid4())
    batch = Batch(deadline=None)
    body = Harness.bus(event_id, "device-status-changed", "tenant-1", {"id": "d", "status": "accepted"})
    if start is not None:
        start.wait(5)
    dispatcher.handle_message(body, batch)
    dispatcher.finish_batch(batch)
    return webhook_id(body)


def _posts(h: Harness, path: str) -> int:
    return len(h.requests(path))


def _due_tasks(h: Harness) -> None:
    """Run every scheduled task that is due on the harness's clock, in a new batch."""
    due = [t for t, _ in h.queue.scheduled if t.due_at <= h.clock().timestamp() + 1]
    h.queue.scheduled = [(t, d) for t, d in h.queue.scheduled if t.due_at > h.clock().timestamp() + 1]
    h.new_batch()
    for task in due:
        h.task(task)


# ---------------------------------------------------------------------------------------- the circuit
def test_the_circuit_opens_after_consecutive_failures_and_holds_deliveries_without_posting(h: Harness) -> None:
    down = h.webhook(path="/down")
    for _ in range(3):
        h.send()
    stored = h.integrations.get("tenant-1", down.id)
    assert stored is not None and stored.circuit.state(h.clock()) == "open"
    assert stored.circuit.open_until == h.clock() + timedelta(seconds=30)
    held = h.send()
    assert _posts(h, "/down") == 3  # the fourth event was not attempted
    status = h.activity.get("tenant-1", held)
    assert status is not None
    delivery = status.deliveries[down.id]
    assert (delivery.state, delivery.attempts) == ("retrying", 0)
    assert delivery.error is not None and delivery.error.startswith("circuit open since")
    assert delivery.next_attempt_at == h.clock() + timedelta(seconds=30 + POLICY.attempt_budget)
    task, delay = h.queue.scheduled[-1]
    assert (task.event_id, delay) == (held, 30 + POLICY.attempt_budget)


def test_after_the_cooldown_one_probe_is_attempted_and_its_failure_doubles_the_cooldown(h: Harness) -> None:
    down = h.webhook(path="/down")
    for _ in range(5):  # 3 attempts open the circuit, 2 more are held
        h.send()
    assert _posts(h, "/down") == 3
    h.clock.advance(30 + POLICY.attempt_budget + 1)
    _due_tasks(h)  # every due delivery comes back: exactly one is the probe
    assert _posts(h, "/down") == 4
    stored = h.integrations.get("tenant-1", down.id)
    assert stored is not None and stored.circuit.cooldown == 60 and stored.circuit.state(h.clock()) == "open"
    h.clock.advance(60 + POLICY.attempt_budget + 1)
    _due_tasks(h)
    stored = h.integrations.get("tenant-1", down.id)
    assert _posts(h, "/down") == 5 and stored is not None and stored.circuit.cooldown == 100  # capped


def test_a_successful_probe_closes_the_circuit_and_the_held_deliveries_go_through(
    h: Harness, httpserver: HTTPServer
) -> None:
    down = h.webhook(path="/flaky")
    httpserver.expect_ordered_request("/flaky", method="POST").respond_with_data("no", status=500)
    httpserver.expect_ordered_request("/flaky", method="POST").respond_with_data("no", status=500)
    httpserver.expect_ordered_request("/flaky", method="POST").respond_with_data("no", status=500)
    httpserver.expect_request("/flaky", method="POST").respond_with_data("ok")
    events = [h.send() for _ in range(5)]
    h.clock.advance(30 + POLICY.attempt_budget + 1)
    _due_tasks(h)  # the probe succeeds: the circuit closes, and the other held deliveries follow
    stored = h.integrations.get("tenant-1", down.id)
    assert stored is not None and stored.circuit.state(h.clock()) == "closed" and stored.circuit.failures == 0
    _due_tasks(h)
    h.clock.advance(3600)
    _due_tasks(h)
    states = {}
    for event_id in events:
        record = h.activity.get("tenant-1", event_id)
        assert record is not None
        states[event_id] = record.deliveries[down.id].state
    assert set(states.values()) == {"delivered"}


def test_a_test_delivery_is_sent_whatever_the_circuit(h: Harness) -> None:
    from devicehooks.services.redelivery import DeliveryService

    down = h.webhook(path="/down")
    for _ in range(3):
        h.send()
    service = DeliveryService(h.integrations, h.activity, h.queue, lambda: h.dispatcher, 3600, clock=h.clock)
    _, attempt = service.send_test("tenant-1", down.id)
    assert attempt.status_code == 503 and _posts(h, "/down") == 4


def test_other_webhooks_of_the_tenant_are_not_held(h: Harness) -> None:
    h.webhook(path="/down")
    h.webhook(path="/hook")
    for _ in range(6):
        h.send()
    assert _posts(h, "/down") == 3 and _posts(h, "/hook") == 6


# ---------------------------------------------------------------------------------------- the webhook's share
def test_no_more_than_the_webhooks_share_is_attempted_at_once_the_rest_is_held(httpserver: HTTPServer) -> None:
    slow = Slow()
    server = HTTPServer(threaded=True)
    server.start()
    server.expect_request("/slow", method="POST").respond_with_handler(slow)
    h = Harness(server, timeout=5.0, policy=DispatchPolicy(schedule=(5,), delivery_timeout=5.0, webhook_concurrency=2))
    hook = h.webhook(path="/slow")
    batch = h.new_batch()  # one invocation: its records side by side, as the handler runs them
    bodies = [
        Harness.bus(str(uuid.uuid4()), "device-status-changed", "tenant-1", {"id": f"d{n}", "status": "accepted"})
        for n in range(5)
    ]
    try:
        threads = [threading.Thread(target=h.dispatcher.handle_message, args=(body, batch)) for body in bodies]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 5
        while (sum(not t.is_alive() for t in threads) < 3 or slow.most < 2) and time.monotonic() < deadline:
            time.sleep(0.01)  # two inside the receiver, three held (their records done)
        slow.release.set()
        for thread in threads:
            thread.join(10)
        h.dispatcher.finish_batch(batch)
    finally:
        slow.release.set()
        server.clear()
        server.stop()
    assert slow.most == 2
    held = [single for t, _ in h.queue.scheduled for single in t.singles()]  # one group of the three
    assert len(h.queue.scheduled) == 1 and len(held) == 3 and {t.integration_id for t in held} == {hook.id}
    for task in held:
        record = h.activity.get("tenant-1", task.event_id)
        assert record is not None
        assert record.deliveries[hook.id].error == "held: the webhook's share of concurrent deliveries is in use"


def test_the_share_is_the_dispatchers_two_batches_of_it_share_one_limit_another_dispatcher_has_its_own() -> None:
    """The share is the execution environment's (``FlowGate.shares``: one per dispatcher, i.e. per
    process, which runs one invocation at a time), no longer each batch's: two batches of one
    dispatcher side by side attempt a webhook no more than its share between them, the rest held;
    another dispatcher (another environment) meanwhile attempts it up to a share of its own; once
    the attempts are over, the next batch finds the whole share free again."""
    slow = Slow()
    server = HTTPServer(threaded=True)
    server.start()
    server.expect_request("/slow", method="POST").respond_with_handler(slow)
    h = Harness(server, timeout=5.0, policy=DispatchPolicy(schedule=(5,), delivery_timeout=5.0, webhook_concurrency=2))
    hook = h.webhook(path="/slow")
    h.integrations.note_success("tenant-1", hook.id)  # proven: no trial turns in the way
    other = _another(h, timeout=5.0)

    events: dict[Dispatcher, list[str]] = {h.dispatcher: [], other: []}

    def records(dispatcher: Dispatcher, batch: Batch, count: int) -> list[threading.Thread]:
        threads = []
        for n in range(count):
            event_id = str(uuid.uuid4())
            body = Harness.bus(event_id, "device-status-changed", "tenant-1", {"id": f"d{n}", "status": "accepted"})
            events[dispatcher].append(webhook_id(body))
            threads.append(threading.Thread(target=dispatcher.handle_message, args=(body, batch)))
        return threads

    first, second, elsewhere = Batch(deadline=None), Batch(deadline=None), Batch(deadline=None)
    ours = records(h.dispatcher, first, 3) + records(h.dispatcher, second, 3)
    theirs = records(other, elsewhere, 2)
    try:
        for thread in ours:
            thread.start()
        deadline = time.monotonic() + 5
        while (sum(not t.is_alive() for t in ours) < 4 or slow.most < 2) and time.monotonic() < deadline:
            time.sleep(0.01)  # two inside the receiver, four held (their records done)
        ours_at_once = slow.most
        for thread in theirs:
            thread.start()
        while slow.most < 4 and time.monotonic() < deadline:
            time.sleep(0.01)  # the other dispatcher's two go in beside them
        slow.release.set()
        for thread in ours + theirs:
            thread.join(10)
        for dispatcher, batch in ((h.dispatcher, first), (h.dispatcher, second), (other, elsewhere)):
            dispatcher.finish_batch(batch)
    finally:
        slow.release.set()
        server.clear()
        server.stop()
    assert ours_at_once == 2 and slow.most == 4
    held = [single for t, _ in h.queue.scheduled for single in t.singles()]
    assert len(held) == 4 and {t.integration_id for t in held} == {hook.id}
    assert {t.event_id for t in held} < set(events[h.dispatcher])  # four of the two batches' six
    for task in held:
        record = h.activity.get("tenant-1", task.event_id)
        assert record is not None
        assert record.deliveries[hook.id].error == "held: the webhook's share of concurrent deliveries is in use"
    for event_id in events[other]:
        record = h.activity.get("tenant-1", event_id)
        assert record is not None and record.deliveries[hook.id].state == "delivered"
    shares = h.dispatcher.gate.shares
    assert [shares.take(hook.id) for _ in range(3)] == [True, True, False]  # the whole share free for the next batch


# ---------------------------------------------------------------------------------------- the rate limit
def test_deliveries_beyond_the_rate_limit_are_held_to_a_later_second(h: Harness) -> None:
    hook = h.webhook(rate_limit=2)
    events = [h.send() for _ in range(5)]
    assert _posts(h, "/hook") == 2
    held = [t for t, _ in h.queue.scheduled]
    assert len(held) == 3
    record = h.activity.get("tenant-1", events[-1])
    assert record is not None
    assert record.deliveries[hook.id].error == "held: the webhook's rate limit is reached"
    assert record.deliveries[hook.id].next_attempt_at is not None
    assert record.deliveries[hook.id].next_attempt_at > h.clock()
    h.clock.advance(1)
    _due_tasks(h)
    assert _posts(h, "/hook") == 4  # two more in the next second
    h.clock.advance(1)
    _due_tasks(h)
    assert _posts(h, "/hook") == 5


# ---------------------------------------------------------------------------------------- handing back
def test_with_no_time_left_in_the_invocation_deliveries_are_handed_back_not_attempted(h: Harness) -> None:
    hook = h.webhook()
    h.new_batch(deadline=time.monotonic() + POLICY.attempt_budget - 1)
    body = h.bus("e-late", "device-decommissioned", "tenant-1", {"id": "dev-1"})
    h.message(body)
    assert _posts(h, "/hook") == 0
    record = h.activity.get("tenant-1", webhook_id(body))
    assert record is not None and record.deliveries[hook.id].state == "retrying"
    assert record.deliveries[hook.id].error == "handed back: the invocation had no time left for it"
    ((task, delay),) = h.queue.scheduled
    assert task.event_id == webhook_id(body) and 1 <= delay <= 2
    h.clock.advance(2)
    _due_tasks(h)
    assert _posts(h, "/hook") == 1


# ---------------------------------------------------------------------------------------- jitter
def test_retry_delays_are_spread_within_twenty_percent(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/down", method="POST").respond_with_data("no", status=503)
    h = Harness(httpserver, policy=DispatchPolicy(schedule=(100,), circuit_threshold=10**6))
    h.rewire(draw=spread)  # the real random spread
    h.webhook(path="/down")
    for _ in range(40):
        h.send()
    delays = [delay for _, delay in h.queue.scheduled]
    assert len(delays) == 40 and all(80 <= d <= 120 for d in delays)
    assert max(delays) - min(delays) > 10  # spread, not all at once


# ---------------------------------------------------------------------------------------- one bad delivery
def test_a_raising_sender_fails_only_its_own_delivery_which_is_retried(h: Harness) -> None:
    bad, good = h.webhook(url="http://bad.invalid/hook"), h.webhook()
    real_send = h.dispatcher.ctx.sender.send

    class Exploding:
        def send(self, request: Any) -> Any:
            if "bad.invalid" in request.url:
                raise RuntimeError("a bug in the sender, with secrets it must not log? no: only its type")
            return real_send(request)

    h.rewire(sender=Exploding())
    event_id = h.send()  # no exception: the message is done, the other webhook delivered
    record = h.activity.get("tenant-1", event_id)
    assert record is not None
    assert record.deliveries[good.id].state == "delivered"
    failed = record.deliveries[bad.id]
    assert (failed.state, failed.attempts) == ("retrying", 1)
    assert failed.error == "internal error: RuntimeError while preparing or sending the request"
    assert [t.integration_id for t, _ in h.queue.scheduled] == [bad.id]


@pytest.mark.parametrize(
    ("data", "why"),
    [
        ({"id": "dev-1", "status": "sleeping"}, "malformed device event: "),
        ({"id": "dev-1", "status": "accepted", "extra": float("nan")}, None),  # dropped extra: delivered
    ],
)
def test_a_device_event_that_cannot_be_delivered_is_shown_failed_and_kept_with_its_reason(
    h: Harness, data: dict[str, Any], why: str | None
) -> None:
    hook = h.webhook()
    body = json.dumps(
        {
            "id": "e-bad",
            "detail-type": "device-status-changed",
            "source": "devicehooks.deviceauth",
            "time": "2026-01-01T10:00:00Z",
            "detail": {"tenant_id": "tenant-1", "data": data},
        }
    )
    h.message(body)
    record = h.activity.get("tenant-1", webhook_id(body))
    assert record is not None
    if why is None:
        assert record.deliveries[hook.id].state == "delivered"
        return
    assert record.deliveries[hook.id].state == "failed"
    assert (record.deliveries[hook.id].error or "").startswith(why)
    ((kept, reason),) = h.queue.rejected
    assert kept == body and reason.startswith(why) and h.requests() == []


def test_identity_data_json_cannot_carry_is_refused_visibly_not_crashed_on(h: Harness) -> None:
    hook = h.webhook()
    data = {"id": "dev-1", "auth_sets": [{"id": "a", "identity_data": {"sn": float("inf")}}]}
    body = json.dumps(
        {
            "id": "e-inf",
            "detail-type": "device-provisioned",
            "source": "devicehooks.deviceauth",
            "time": "2026-01-01T10:00:00Z",
            "detail": {"tenant_id": "tenant-1", "data": data},
        }
    )
    h.message(body)  # no exception: SQS does not bring it back five times
    record = h.activity.get("tenant-1", webhook_id(body))
    assert record is not None and record.deliveries[hook.id].state == "failed"
    assert h.queue.rejected[0][1] == "malformed device event: data JSON cannot carry (ValueError)"
    assert h.requests() == []


def test_a_retry_that_comes_back_to_an_open_circuit_says_so_in_the_activity_log(h: Harness) -> None:
    down = h.webhook(path="/down")
    first = h.send()  # attempt 1 fails: a retry in 5 s
    for _ in range(2):
        h.send()  # the circuit opens after the third failure
    h.clock.advance(6)
    _due_tasks(h)  # the first event's retry finds the circuit open: held, and its status says so
    record = h.activity.get("tenant-1", first)
    assert record is not None
    status = record.deliveries[down.id]
    assert status.state == "retrying" and status.attempts == 1
    assert (status.error or "").startswith("circuit open since")
    assert status.next_attempt_at is not None and status.next_attempt_at > h.clock()
    assert all(t.reason == "hold" for t, _ in h.queue.scheduled if t.event_id == first)


def test_a_task_never_comes_back_before_it_is_due() -> None:
    from devicehooks.aws.sqs import SqsTaskQueue
    from devicehooks.delivery.tasks import DeliveryTask

    class Sqs:
        def __init__(self) -> None:
            self.sent: list[dict[str, Any]] = []

        def send_message(self, **kwargs: Any) -> None:
            self.sent.append(kwargs)

    sqs = Sqs()
    queue = SqsTaskQueue("retry", "delivery-dlq", "dispatch-dlq", sqs=sqs)
    task = DeliveryTask.first("t", "e", "i")
    for delay in (0.0, 0.2, 1.0, 4.01, 899.5, 7200.0):
        queue.schedule(task, delay)
    assert [m["DelaySeconds"] for m in sqs.sent] == [0, 1, 1, 5, 900, 900]  # whole seconds, rounded up


def test_opening_the_circuit_schedules_its_probe_ahead_of_the_held_deliveries(h: Harness) -> None:
    down = h.webhook(path="/down")
    for _ in range(3):
        h.send()
    stored = h.integrations.get("tenant-1", down.id)
    assert stored is not None and stored.circuit.open_until is not None
    probe_delay = (stored.circuit.open_until - h.clock()).total_seconds()
    delays = sorted(delay for _, delay in h.queue.scheduled)
    assert probe_delay in delays  # one task due exactly when the cooldown ends: the probe
    held = h.send()
    (held_task, held_delay) = h.queue.scheduled[-1]
    assert held_task.event_id == held and held_delay > probe_delay  # held ones come back after it


def test_tasks_sent_back_in_bulk_go_ten_to_a_request_and_failed_entries_are_sent_again() -> None:
    from devicehooks.aws.sqs import SqsTaskQueue
    from devicehooks.delivery.tasks import DeliveryTask

    class Sqs:
        def __init__(self) -> None:
            self.batches: list[list[str]] = []
            self.refused = {"3"}

        def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:  # noqa: N803
            self.batches.append([e["Id"] for e in Entries])
            failed = [{"Id": e["Id"]} for e in Entries if e["Id"] in self.refused]
            self.refused = set()
            return {"Failed": failed}

    sqs = Sqs()
    queue = SqsTaskQueue("retry", "delivery-dlq", "dispatch-dlq", sqs=sqs)
    queue.schedule_many([(DeliveryTask.first("t", f"e{n}", "i"), 1.5) for n in range(23)])
    assert [len(b) for b in sqs.batches] == [10, 1, 10, 3]  # entry 3 of the first ten sent again
    assert sqs.batches[1] == ["3"]


def test_a_copy_of_an_event_whose_delivery_was_held_queues_the_held_task_again(h: Harness) -> None:
    down = h.webhook(path="/down")
    for _ in range(3):
        h.send()  # the circuit opens
    body = h.bus("e-held", "device-decommissioned", "tenant-1", {"id": "dev-1"})
    h.message(body)  # held when it came
    first = [t for t, _ in h.queue.scheduled if t.event_id == webhook_id(body)]
    h.queue.scheduled = [(t, d) for t, d in h.queue.scheduled if t.event_id != webhook_id(body)]  # as if lost
    h.message(body)  # SQS brings the message again
    again = [t for t, _ in h.queue.scheduled if t.event_id == webhook_id(body)]
    assert len(first) == len(again) == 1 and again[0].reason == "hold" and again[0].integration_id == down.id
    assert _posts(h, "/down") == 3


# ---------------------------------------------------------------------------------------- a webhook on trial
def test_a_webhook_on_trial_is_attempted_by_a_few_invocations_across_dispatcher_instances(
    httpserver: HTTPServer,
) -> None:
    """Two dispatcher instances (sharing the stores, as Lambda's share DynamoDB), three invocations
    each at once, to a new webhook that takes its time: only ``trial_invocations`` attempt it, the
    others hold their deliveries; once a delivery succeeded, it is proven and every invocation goes."""
    slow = Slow()
    server = HTTPServer(threaded=True)
    server.start()
    server.expect_request("/slow", method="POST").respond_with_handler(slow)
    policy = DispatchPolicy(schedule=(5,), delivery_timeout=5.0, trial_invocations=2)
    h = Harness(server, timeout=5.0, policy=policy)
    other = _another(h, timeout=5.0)
    hook = h.webhook(path="/slow")

    def run(count: int) -> list[str]:
        done: list[str] = []
        threads = [
            threading.Thread(target=lambda d=d: done.append(_invocation(d)))
            for d in (h.dispatcher, other)
            for _ in range(count)
        ]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 5
        while len(done) < len(threads) - slow.most and time.monotonic() < deadline:
            time.sleep(0.01)  # the held ones are done, the attempted ones wait inside the receiver
        slow.release.set()
        for thread in threads:
            thread.join(10)
        return done

    try:
        first = run(3)
        assert slow.most == 2  # two invocations in all attempted it, whichever instance they ran in
        # the others' events went back to the queue as they came, unrecorded, for a few seconds
        assert not h.queue.scheduled and len(h.queue.returned) == 4
        assert all(1 <= delay <= 3 for _, delay in h.queue.returned)
        held = [webhook_id(body) for body, _ in h.queue.returned]
        assert len(set(held) & set(first)) == 4 and all(h.activity.get("tenant-1", e) is None for e in held)
        stored = h.integrations.get("tenant-1", hook.id)
        assert stored is not None and stored.circuit.proven  # the two attempts succeeded
        slow.release.clear()
        slow.most = 0
        second = run(3)
        assert slow.most == 6  # proven: every invocation attempts it, no turn taken
        assert len(h.queue.returned) == 4 and not h.queue.scheduled
        for body, _ in h.queue.returned:  # back from the queue: now delivered
            h.message(body)
    finally:
        slow.release.set()
        server.clear()
        server.stop()
    delivered = [h.activity.get("tenant-1", e) for e in second + held]
    assert all(r is not None and r.deliveries[hook.id].state == "delivered" for r in delivered)
    assert len(first) == 6


def test_a_failure_puts_a_proven_webhook_back_on_trial_and_a_success_proves_it_again(h: Harness) -> None:
    hook = h.webhook(path="/hook")
    h.send()
    stored = h.integrations.get("tenant-1", hook.id)
    assert stored is not None and stored.circuit.proven
    down = h.webhook(path="/down")
    h.send()
    failing = h.integrations.get("tenant-1", down.id)
    assert failing is not None and not failing.circuit.proven and failing.circuit.failures == 1
    turn = h.integrations.start_trial("tenant-1", down.id, 1, h.clock(), h.clock() + timedelta(seconds=60))
    assert turn.slot == 0  # the batch gave its turn back when it finished


def test_a_slow_success_leaves_a_webhook_on_trial_and_takes_a_proven_one_back() -> None:
    """A receiver that answers, but late (over ``slow_seconds``), is not proven by it: its backlog
    stays with the few invocations that have a turn, instead of every dispatcher invocation."""
    policy = DispatchPolicy(schedule=(5,), delivery_timeout=0.5, trial_invocations=1)
    assert policy.slow_seconds == 0.25

    def late(request: Request) -> Response:
        time.sleep(0.35)
        return Response("ok")

    server = HTTPServer(threaded=True)  # the quick webhook's answer does not wait behind the late one
    server.start()
    try:
        _slow_success_on(server, policy, late)
    finally:
        server.clear()
        server.stop()


def _slow_success_on(server: HTTPServer, policy: DispatchPolicy, late: Any) -> None:
    server.expect_request("/late", method="POST").respond_with_handler(late)
    server.expect_request("/hook", method="POST").respond_with_data("ok")
    h = Harness(server, timeout=0.5, policy=policy)
    slow, fast = h.webhook(path="/late"), h.webhook(path="/hook")
    first = h.send()
    record = h.activity.get("tenant-1", first)
    assert record is not None and {d.state for d in record.deliveries.values()} == {"delivered"}
    assert record.attempts[slow.id][0].duration_ms > 250
    stored, quick = h.integrations.get("tenant-1", slow.id), h.integrations.get("tenant-1", fast.id)
    assert stored is not None and not stored.circuit.proven and stored.failing_since is None  # still on trial
    assert quick is not None and quick.circuit.proven
    h.integrations.note_success("tenant-1", slow.id)  # proven, as by an earlier quick answer
    h.send()
    stored = h.integrations.get("tenant-1", slow.id)
    assert stored is not None and not stored.circuit.proven  # taken back on trial by the slow answer
    turn = h.integrations.start_trial("tenant-1", slow.id, 1, h.clock(), h.clock() + timedelta(seconds=60))
    assert turn.slot == 0  # on trial: turns are taken again (the batch gave its own back)
    assert _posts(h, "/late") == 2


def test_a_batch_that_saw_a_slow_answer_does_not_prove_the_webhook_with_a_fast_one() -> None:
    batch = Batch(deadline=None)
    hook = Integration(id="w", tenant_id="t", url="https://example.com/", created_at=NOW, updated_at=NOW)
    other = replace(hook, id="v")
    assert batch.slow(hook, False) is False  # fast so far
    assert batch.slow(hook, True) is True
    assert batch.slow(hook, False) is True  # once slow in the batch, slow for it
    assert batch.slow(other, False) is False
    assert Batch(deadline=None).slow(hook, False) is False  # a new batch judges afresh


def test_the_rate_limit_holds_across_two_dispatcher_instances_at_once(h: Harness) -> None:
    """Eight invocations at once, four in each of two dispatcher instances sharing the stores,
    within one second (the harness's clock stands still): three POSTs, the rest held."""
    hook = h.webhook(path="/hook", rate_limit=3)
    h.integrations.note_success("tenant-1", hook.id)  # proven: no trial turns in the way
    other = _another(h, timeout=2.0)
    start = threading.Barrier(8)

    threads = [threading.Thread(target=_invocation, args=(d, start)) for d in (h.dispatcher, other) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert _posts(h, "/hook") == 3
    held = [t for t, _ in h.queue.scheduled]
    assert len(held) == 5 and {t.integration_id for t in held} == {hook.id}
    record = h.activity.get("tenant-1", held[0].event_id)
    assert record is not None and record.deliveries[hook.id].error == "held: the webhook's rate limit is reached"


# ---------------------------------------------------------------------------------------- held backlogs
def _batch_of_events(h: Harness, count: int, tenant: str = "tenant-1") -> list[str]:
    """``count`` status changes of ``tenant`` handled as one batch (one invocation); their ids."""
    bodies = [
        Harness.bus(str(uuid.uuid4()), "device-status-changed", tenant, {"id": f"d{n}", "status": "accepted"})
        for n in range(count)
    ]
    batch = h.new_batch()
    for body in bodies:
        h.dispatcher.handle_message(body, batch)
    h.dispatcher.finish_batch(batch)
    return [webhook_id(body) for body in bodies]


def test_a_backlog_held_for_an_open_circuit_goes_back_and_forth_as_one_message_and_follows_a_probe_that_succeeds(
    httpserver: HTTPServer,
) -> None:
    for _ in range(4):  # three failures open the circuit; the first probe fails too
        httpserver.expect_ordered_request("/flaky", method="POST").respond_with_data("no", status=503)
    httpserver.expect_request("/flaky", method="POST").respond_with_data("ok")
    h = Harness(httpserver, policy=POLICY)
    hook = h.webhook(path="/flaky")
    for _ in range(3):
        h.send()
    before = len(h.queue.scheduled)
    held = _batch_of_events(h, 25)
    (group, delay), *others = h.queue.scheduled[before:]
    assert not others and group.kind == "deliveries" and [group.event_id, *group.more_events] == held
    assert (group.reason, group.integration_id, group.seen_attempts) == ("hold", hook.id, 0)
    assert delay == 30 + POLICY.attempt_budget  # due when the earliest of them is
    for event_id in held:
        record = h.activity.get("tenant-1", event_id)
        assert record is not None and record.deliveries[hook.id].state == "retrying"
        assert record.deliveries[hook.id].error is not None
        assert record.deliveries[hook.id].error.startswith("circuit open since")

    h.clock.advance(30 + POLICY.attempt_budget + 1)
    _due_tasks(h)  # the probe fails (the circuit reopens for 60 s); the group comes back to it: held again, whole
    assert _posts(h, "/flaky") == 4
    regrouped = [t for t, _ in h.queue.scheduled if t.kind == "deliveries"]
    assert len(regrouped) == 1 and [regrouped[0].event_id, *regrouped[0].more_events] == held

    h.clock.advance(60 + POLICY.attempt_budget + 1)
    _due_tasks(h)  # the probe succeeds and closes the circuit; the group is released, one task each
    released = [t for t, _ in h.queue.scheduled]
    assert {t.event_id for t in released} >= set(held) and all(t.kind == "delivery" for t in released)
    _due_tasks(h)
    assert _posts(h, "/flaky") == 4 + 3 + 25  # failures, the three first events' retries (one the probe), the backlog
    for event_id in held:
        record = h.activity.get("tenant-1", event_id)
        assert record is not None
        assert (record.deliveries[hook.id].state, record.deliveries[hook.id].attempts) == ("delivered", 1)


def test_a_held_group_whose_webhook_was_removed_closes_each_of_its_deliveries(h: Harness) -> None:
    down = h.webhook(path="/down")
    for _ in range(3):
        h.send()
    held = _batch_of_events(h, 4)
    h.integrations.remove("tenant-1", down.id)
    h.clock.advance(30 + POLICY.attempt_budget + 1)
    _due_tasks(h)  # released one by one: each finds the webhook gone
    _due_tasks(h)
    for event_id in held:
        record = h.activity.get("tenant-1", event_id)
        assert record is not None
        assert (record.deliveries[down.id].state, record.deliveries[down.id].error) == ("failed", "webhook was removed")
    assert _posts(h, "/down") == 3


def test_held_tasks_are_grouped_only_when_alike_but_for_their_event() -> None:
    from devicehooks.delivery.tasks import GROUP_MAX, DeliveryTask, EventMessage, Queued, group_held

    def held(event: str, hook: str = "i", attempts: int = 0) -> DeliveryTask:
        return DeliveryTask.first("t", event, hook, attempts).held()

    raw = EventMessage('{"id": "raw"}', "t")
    waiting: list[tuple[Queued, float]] = [
        (held("e1"), 40.0),
        (held("e2"), 35.0),
        (held("e3", hook="j"), 35.0),  # another webhook
        (held("e4", attempts=2), 35.0),  # made attempts before: not alike
        (DeliveryTask.first("t", "e5", "i", 0), 5.0),  # a retry, not a hold
        (raw, 2.0),  # an event sent back as it came
        (held("e6"), 50.0),
    ]
    out = group_held(waiting)
    groups = [(t, d) for t, d in out if isinstance(t, DeliveryTask) and t.more_events]
    assert len(out) == 5 and len(groups) == 1
    group, delay = groups[0]
    assert [group.event_id, *group.more_events] == ["e1", "e2", "e6"] and delay == 35.0
    assert (raw, 2.0) in out
    many = group_held([(held(f"e{n}"), 10.0) for n in range(GROUP_MAX + 3)])
    sizes = [1 + len(t.more_events) for t, _ in many if isinstance(t, DeliveryTask)]
    assert sizes == [GROUP_MAX, 3]
    assert all(len(t.model_dump_json()) < 64 * 1024 for t, _ in many if isinstance(t, DeliveryTask))


def test_events_sent_back_whole_go_within_sqs_batch_limits() -> None:
    from devicehooks.aws.sqs import SEND_BATCH_BYTES, SqsTaskQueue
    from devicehooks.delivery.tasks import EventMessage

    class Sqs:
        def __init__(self) -> None:
            self.batches: list[list[dict[str, Any]]] = []

        def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:  # noqa: N803
            self.batches.append(Entries)
            return {"Failed": []}

    sqs = Sqs()
    big = json.dumps({"id": "big", "detail": {"data": "x" * 100_000}})
    small = json.dumps({"id": "small"})
    SqsTaskQueue("retry", "delivery-dlq", "dispatch-dlq", sqs=sqs).schedule_many(
        [(EventMessage(big, "acme"), 1.2)] * 3 + [(EventMessage(small, "other tenant"), 2.5)] * 12
    )
    assert [len(b) for b in sqs.batches] == [2, 10, 3]  # two big bodies fill a request
    assert all(sum(len(e["MessageBody"]) for e in b) <= SEND_BATCH_BYTES for b in sqs.batches)
    assert {e["DelaySeconds"] for b in sqs.batches for e in b} == {2, 3}  # rounded up, never early
    assert sqs.batches[0][0]["MessageBody"] == big  # as it came
    # each in its tenant's group on the fair queue (a space is no group id character: hashed)
    groups = [e["MessageGroupId"] for b in sqs.batches for e in b]
    assert groups[:3] == ["t:acme"] * 3
    assert len(set(groups[3:])) == 1 and groups[3].startswith("h:") and len(groups[3]) <= 128


def test_an_event_is_sent_back_unrecorded_only_when_every_webhook_it_goes_to_is_on_trial_with_no_turn(
    h: Harness,
) -> None:
    trial = h.webhook(path="/hook")
    now = h.clock()
    turn = h.integrations.start_trial("tenant-1", trial.id, POLICY.trial_invocations, now, now + timedelta(minutes=1))
    taken = [turn] + [
        h.integrations.start_trial("tenant-1", trial.id, POLICY.trial_invocations, now, now + timedelta(minutes=1))
        for _ in range(POLICY.trial_invocations - 1)
    ]
    assert all(t.granted for t in taken)
    alone = h.send()
    assert h.activity.get("tenant-1", alone) is None and len(h.queue.returned) == 1 and _posts(h, "/hook") == 0
    proven = h.webhook(path="/hook")
    h.integrations.note_success("tenant-1", proven.id)
    both = h.send()
    record = h.activity.get("tenant-1", both)  # one webhook can go: recorded, the other held in it
    assert record is not None and record.deliveries[proven.id].state == "delivered"
    assert record.deliveries[trial.id].state == "retrying" and len(h.queue.returned) == 1
