"""The local stack runs an SQS event source's invocations side by side, up to the template's
``ScalingConfig.MaximumConcurrency``, as Lambda does (``devicehooks_dev/local/sqs.py``).

Two layers: the stack's own sources, driven through the real dispatcher with an instrumented
handler (a gate that counts the invocations in flight per source and holds chosen tenants'
events until opened); and :class:`SqsPoller` alone on private queues of the stack's moto, with a
test function, for what the stack cannot show without stopping (shutdown, redrive, windows).
Every wait is bounded; no assert compares wall times.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests

from devicehooks import aws
from devicehooks_dev import devkeys
from devicehooks_dev.local.sqs import UNBOUNDED_CONCURRENCY, SqsPoller, SqsSource, record
from devicehooks_dev.local.stack import LambdaContextStub, LocalStack
from devicehooks_dev.local.template import Resolver, load_template
from tests.conftest import ROOT
from tests.integration.test_faults import MGMT, Scenario
from tests.receiver import Receiver, eventually

WAIT = 20.0  # the bound of every wait for something to happen
BUSY = 2.5  # how long "nothing more is received" is watched: over two of the pollers' long polls


# ---------------------------------------------------------------------------- helpers
def _tenant_of(body: str) -> str:
    """The tenant of a dispatch-queue event or a retry task."""
    try:
        message = json.loads(body)
    except ValueError:
        return ""
    if not isinstance(message, dict):
        return ""
    detail = message.get("detail")
    return str((detail.get("tenant_id") if isinstance(detail, dict) else message.get("tenant_id")) or "")


class Gate:
    """Wraps the dispatcher's handler: counts its invocations in flight per event source, and holds
    each invocation that carries an event of a held tenant until the gate opens."""

    def __init__(self, handler: Callable[[dict[str, Any], Any], Any], held: set[str]) -> None:
        self._handler = handler
        self._held = held
        self._changed = threading.Condition()
        self._open = False
        self.in_flight: Counter[str] = Counter()
        self.peak: Counter[str] = Counter()
        self.waiting = 0  # invocations held at the gate now
        self.seen: list[tuple[str, bool]] = []  # (tenant, whether the gate was open when it arrived)
        self.request_ids: list[str] = []
        self.remaining: list[tuple[int, int]] = []  # a held invocation's remaining ms: arrived, let through

    def __call__(self, event: dict[str, Any], context: Any) -> Any:
        records = event.get("Records") or []
        source = str(records[0].get("eventSourceARN", "")) if records else ""
        tenants = {_tenant_of(str(r.get("body", ""))) for r in records}
        with self._changed:
            self.in_flight[source] += 1
            self.peak[source] = max(self.peak[source], self.in_flight[source])
            self.seen += [(tenant, self._open) for tenant in tenants]
            self.request_ids.append(context.aws_request_id)
            self._changed.notify_all()
        try:
            if tenants & self._held and not self._open:
                arrived = context.get_remaining_time_in_millis()
                with self._changed:
                    self.waiting += 1
                    self._changed.notify_all()
                    self._changed.wait_for(lambda: self._open, timeout=60)
                    self.waiting -= 1
                self.remaining.append((arrived, context.get_remaining_time_in_millis()))
            return self._handler(event, context)
        finally:
            with self._changed:
                self.in_flight[source] -= 1
                self._changed.notify_all()

    def wait_until(self, check: Callable[[], bool], what: str) -> None:
        with self._changed:
            if not self._changed.wait_for(check, timeout=WAIT):
                raise AssertionError(
                    f"not within {WAIT}s: {what} (held {self.waiting}, in flight {dict(self.in_flight)})"
                )

    def open(self) -> None:
        with self._changed:
            self._open = True
            self._changed.notify_all()


@pytest.fixture
def gate(stack: LocalStack, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[set[str]], Gate]]:
    """``gate(tenants)`` puts a :class:`Gate` before the dispatcher's handler; opened at teardown."""
    function = stack.functions["DispatcherFunction"]
    installed: list[Gate] = []

    def install(held: set[str]) -> Gate:
        wrapper = Gate(function.handler, held)
        monkeypatch.setattr(function, "handler", wrapper)
        installed.append(wrapper)
        return wrapper

    yield install
    for wrapper in installed:
        wrapper.open()


def _send(stack: LocalStack, tenant: str) -> None:
    """A device event of ``tenant`` straight onto the dispatch queue (as the bus's rule puts it)."""
    event = {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "device-decommissioned",
        "source": "devicehooks.deviceauth",
        "account": "123456789012",
        "time": "2026-01-01T10:00:00Z",
        "region": "us-east-1",
        "resources": [],
        "detail": {"tenant_id": tenant, "data": {"id": "dev-1"}, "time": "2026-01-01T10:00:00.1Z"},
    }
    aws.client("sqs").send_message(QueueUrl=stack.physical["DispatchQueue"]["QueueUrl"], MessageBody=json.dumps(event))


def _counts(queue_url: str) -> tuple[int, int]:
    """(visible, in flight) messages of a queue."""
    attributes = aws.client("sqs").get_queue_attributes(
        QueueUrl=queue_url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]), int(attributes["ApproximateNumberOfMessagesNotVisible"])


def _poller(stack: LocalStack, name: str) -> SqsPoller:
    (poller,) = [p for p in stack.pollers if p.source.function == "DispatcherFunction" and p.source.name == name]
    return poller


# ---------------------------------------------------------------------------- the stack's sources
def test_each_sqs_event_source_runs_up_to_the_templates_maximum_concurrency(stack: LocalStack) -> None:
    events = load_template(ROOT / "template.yaml")["Resources"]["DispatcherFunction"]["Properties"]["Events"]
    declared = {name: e["Properties"]["ScalingConfig"]["MaximumConcurrency"] for name, e in events.items()}
    assert declared == {"DeviceEvents": 20, "Retries": 10}
    configured = {p.source.name: p.source.max_concurrency for p in stack.pollers}
    assert configured == declared
    assert {p.source.batch_size for p in stack.pollers} == {10}
    # a source without a maximum: Lambda's first 5 concurrent batches
    source = stack._sqs_source(
        "DispatcherFunction", "Unbounded", {"Queue": {"Fn::GetAtt": ["DispatchQueue", "Arn"]}}, Resolver({})
    )
    assert source.max_concurrency == UNBOUNDED_CONCURRENCY == 5
    # the functions behind API routes stay one invocation at a time; the dispatcher does not
    for name in ("AuthorizerFunction", "ManagementFunction", "InternalFunction"):
        assert stack.functions[name].serial, name
    assert not stack.functions["DispatcherFunction"].serial


def test_dispatcher_invocations_overlap_up_to_the_maximum_and_never_beyond(
    stack: LocalStack, gate: Callable[[set[str]], Gate]
) -> None:
    poller = _poller(stack, "DeviceEvents")
    maximum, arn, url = poller.source.max_concurrency, poller.source.queue_arn, poller.source.queue_url
    receiver = Receiver()
    try:
        scenarios = [Scenario(stack, receiver.url(f"/hook/{n}")) for n in range(maximum + 5)]
        held, extra = scenarios[:maximum], scenarios[maximum:]
        extra_tenants = {s.tenant for s in extra}
        wrapper = gate({s.tenant for s in scenarios})
        # one event at a time, each sent once the ones before it are held: a batch each
        for n, scenario in enumerate(held, 1):
            _send(stack, scenario.tenant)
            wrapper.wait_until(lambda n=n: wrapper.waiting >= n, f"{n} invocations held")
        assert wrapper.in_flight[arn] == maximum
        # every execution environment of the source is busy: the next events are not received
        # (and held invisible) but stay in the queue, visible, for as long as they stay busy
        for scenario in extra:
            _send(stack, scenario.tenant)
        eventually(lambda: _counts(url)[0] >= len(extra), timeout=WAIT)
        watched = time.monotonic() + BUSY
        while time.monotonic() < watched:
            assert wrapper.in_flight[arn] == maximum
            assert _counts(url)[0] >= len(extra)
            time.sleep(0.1)
        assert not [tenant for tenant, _ in wrapper.seen if tenant in extra_tenants]
        wrapper.open()
        for n in range(len(scenarios)):
            receiver.wait_for(1, f"/hook/{n}", timeout=WAIT)
    finally:
        receiver.close()
    assert wrapper.peak[arn] == maximum  # reached, never exceeded
    assert poller.peak <= maximum
    assert all(opened for tenant, opened in wrapper.seen if tenant in extra_tenants)
    # each invocation had its own context, counting the function's 60 s down from its start
    assert len(set(wrapper.request_ids)) == len(wrapper.request_ids)
    assert len(wrapper.remaining) == maximum
    assert all(55_000 < arrived <= 60_000 for arrived, _ in wrapper.remaining)
    assert all(let_through < arrived for arrived, let_through in wrapper.remaining)


def test_a_slow_batch_does_not_hold_up_the_other_batches_of_its_source(
    stack: LocalStack, gate: Callable[[set[str]], Gate]
) -> None:
    receiver = Receiver()
    try:
        slow = Scenario(stack, receiver.url("/slow"))
        others = [Scenario(stack, receiver.url(f"/other/{n}")) for n in range(6)]
        wrapper = gate({slow.tenant})
        _send(stack, slow.tenant)
        wrapper.wait_until(lambda: wrapper.waiting == 1, "the slow batch held")
        for scenario in others:
            _send(stack, scenario.tenant)
        for n in range(len(others)):
            receiver.wait_for(1, f"/other/{n}", timeout=WAIT)
        assert wrapper.waiting == 1  # still held meanwhile
        assert receiver.on("/slow") == []
        wrapper.open()
        receiver.wait_for(1, "/slow", timeout=WAIT)
    finally:
        receiver.close()


def test_dispatcher_invocations_side_by_side_each_run_their_records_on_threads_of_their_own(
    stack: LocalStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As in an execution environment of its own: another invocation's records, however many are
    waiting, take none of its threads (a pool per invocation running at a time); a record that
    raises is the only one reported failed."""
    from devicehooks.handlers import dispatcher as worker

    release = threading.Event()
    changed = threading.Condition()
    holding = 0

    class Held:
        def handle_message(self, body: str, batch: object) -> None:
            nonlocal holding
            if body == "fail":
                raise RuntimeError("this record fails")
            if body == "hold":
                with changed:
                    holding += 1
                    changed.notify_all()
                release.wait(WAIT)

        def finish_batch(self, batch: object) -> None:
            pass

    monkeypatch.setattr(worker, "dispatcher", lambda: Held())
    source = SqsSource("DispatcherFunction", "local", "arn:aws:sqs:us-east-1:123456789012:q", 10, True)

    def invoke(bodies: list[str]) -> Any:
        messages = [{"MessageId": f"{b}-{n}", "ReceiptHandle": "r", "Body": b} for n, b in enumerate(bodies)]
        event = {"Records": [record(m, source) for m in messages]}
        return worker.handle(event, LambdaContextStub("DispatcherFunction", 60, 128))  # type: ignore[arg-type]

    waiting = worker.RECORDS_AT_ONCE + 6  # more records waiting than one invocation may run at once
    with ThreadPoolExecutor(max_workers=waiting // 10 + 2) as pool:
        try:
            held = [pool.submit(invoke, ["hold"] * 10) for _ in range(waiting // 10)]
            with changed:
                all_in = changed.wait_for(lambda: holding == waiting // 10 * 10, timeout=WAIT)
            answer = pool.submit(invoke, ["go", "fail", "go"]).result(timeout=WAIT)
            still_held = not release.is_set() and not any(f.done() for f in held)
        finally:
            release.set()
        for future in held:
            assert future.result(timeout=WAIT) == {"batchItemFailures": []}
    assert all_in and still_held
    assert answer == {"batchItemFailures": [{"itemIdentifier": "fail-1"}]}  # only the record that raised


def test_functions_behind_api_routes_still_run_one_invocation_at_a_time(
    stack: LocalStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    function = stack.functions["ManagementFunction"]
    real_handler, real_http = function.handler, stack.handle_http
    lock = threading.Lock()
    running = Counter[str]()
    peak = Counter[str]()

    def counted(kind: str, call: Callable[[], Any]) -> Any:
        with lock:
            running[kind] += 1
            peak[kind] = max(peak[kind], running[kind])
        try:
            return call()
        finally:
            with lock:
                running[kind] -= 1

    def handler(event: dict[str, Any], context: Any) -> Any:
        return counted("handler", lambda: (time.sleep(0.05), real_handler(event, context))[1])

    def handle_http(environ: dict[str, Any]) -> Any:
        return counted("http", lambda: real_http(environ))

    monkeypatch.setattr(function, "handler", handler)
    monkeypatch.setattr(stack, "handle_http", handle_http)
    headers = {"Authorization": f"Bearer {devkeys.mint_token(f'tenant-{uuid.uuid4()}')}"}

    def get(_: int) -> int:
        return requests.get(f"{stack.url}{MGMT}/integrations", headers=headers, timeout=WAIT).status_code

    with ThreadPoolExecutor(max_workers=6) as pool:
        assert list(pool.map(get, range(6))) == [200] * 6
    assert peak["http"] > 1  # the requests were served side by side...
    assert peak["handler"] == 1  # ...and the function ran them one at a time


def test_the_context_counts_the_timeout_down_from_the_invocations_start() -> None:
    context = LambdaContextStub("f", timeout=60, memory=128)
    first = context.get_remaining_time_in_millis()
    assert 59_000 < first <= 60_000
    eventually(lambda: context.get_remaining_time_in_millis() < first, timeout=WAIT)
    assert LambdaContextStub("f", 60, 128).aws_request_id != context.aws_request_id
    assert LambdaContextStub("f", timeout=0, memory=128).get_remaining_time_in_millis() == 0


# ---------------------------------------------------------------------------- the poller alone
class Target:
    """An invocation target that records its batches; ``hold()`` keeps invocations running until ``release()``."""

    def __init__(self, answer: Callable[[dict[str, Any]], Any] | None = None) -> None:
        self._answer = answer or (lambda event: {"batchItemFailures": []})
        self._changed = threading.Condition()
        self._held = False
        self.running = 0
        self.peak = 0
        self.batches: list[list[str]] = []  # the bodies of each invocation

    def __call__(self, event: dict[str, Any]) -> Any:
        with self._changed:
            self.running += 1
            self.peak = max(self.peak, self.running)
            self.batches.append([r["body"] for r in event["Records"]])
            self._changed.notify_all()
            self._changed.wait_for(lambda: not self._held, timeout=60)
        try:
            return self._answer(event)
        finally:
            with self._changed:
                self.running -= 1
                self._changed.notify_all()

    def hold(self) -> None:
        with self._changed:
            self._held = True

    def release(self) -> None:
        with self._changed:
            self._held = False
            self._changed.notify_all()

    def wait_running(self, count: int) -> None:
        with self._changed:
            assert self._changed.wait_for(lambda: self.running >= count, timeout=WAIT), f"{self.running} running"

    def bodies(self) -> list[str]:
        with self._changed:
            return sorted(body for batch in self.batches for body in batch)


def _queue(redrive: dict[str, Any] | None = None) -> tuple[str, str]:
    """A private queue in the stack's moto (the stack's pollers never see it): url, arn."""
    sqs = aws.client("sqs")
    attributes = {"VisibilityTimeout": "30"}
    if redrive:
        attributes["RedrivePolicy"] = json.dumps(redrive)
    url = sqs.create_queue(QueueName=f"poller-test-{uuid.uuid4().hex[:16]}", Attributes=attributes)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return str(url), str(arn)


def _fill(url: str, bodies: list[str]) -> None:
    sqs = aws.client("sqs")
    for start in range(0, len(bodies), 10):
        entries = [{"Id": str(i), "MessageBody": b} for i, b in enumerate(bodies[start : start + 10])]
        sqs.send_message_batch(QueueUrl=url, Entries=entries)


@pytest.fixture
def run_poller(stack: LocalStack) -> Iterator[Callable[..., SqsPoller]]:
    """``run_poller(function, **source)`` starts a poller on a private queue; stopped and joined at teardown."""
    started: list[tuple[SqsPoller, Target]] = []

    def run(function: Target, url: str, arn: str, client: Any = None, **source: Any) -> SqsPoller:
        settings: dict[str, Any] = {"batch_size": 10, "report_failures": True, "max_concurrency": 5} | source
        poller = SqsPoller(
            SqsSource(function="TestFunction", name="Test", queue_url=url, queue_arn=arn, **settings),
            invoke=function,
            client=client or (lambda: aws.client("sqs")),
            redelivery_seconds=1,
        )
        poller.start()
        started.append((poller, function))
        return poller

    yield run
    for poller, function in started:
        function.release()
        poller.stop(grace=5)
        assert poller.join(10) == [], "a poller thread outlived stop()"


def test_a_source_runs_at_most_its_maximum_batches_and_leaves_the_rest_in_the_queue(
    run_poller: Callable[..., SqsPoller],
) -> None:
    url, arn = _queue()
    bodies = [f"m{n:02d}" for n in range(12)]
    _fill(url, bodies)
    function = Target()
    function.hold()
    poller = run_poller(function, url, arn, batch_size=1, max_concurrency=3)
    function.wait_running(3)
    watched = time.monotonic() + BUSY
    while time.monotonic() < watched:  # all three busy: nothing more is received
        assert (function.running, poller.in_flight) == (3, 3)
        assert _counts(url) == (9, 3)
        time.sleep(0.1)
    function.release()
    eventually(lambda: _counts(url) == (0, 0) and function.running == 0, timeout=WAIT)
    assert function.bodies() == bodies
    assert all(len(batch) == 1 for batch in function.batches)
    assert function.peak == poller.peak == 3


def test_failed_records_come_back_and_end_in_the_dlq_after_max_receive_count(
    run_poller: Callable[..., SqsPoller],
) -> None:
    dlq_url, dlq_arn = _queue()
    url, arn = _queue({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 2})
    _fill(url, ["ok-1", "poison", "ok-2"])

    def answer(event: dict[str, Any]) -> Any:
        return {
            "batchItemFailures": [{"itemIdentifier": r["messageId"]} for r in event["Records"] if r["body"] == "poison"]
        }

    function = Target(answer)
    run_poller(function, url, arn)
    eventually(lambda: _counts(dlq_url)[0] == 1, timeout=WAIT)
    eventually(lambda: _counts(url) == (0, 0), timeout=WAIT)
    assert function.bodies() == ["ok-1", "ok-2", "poison", "poison"]  # received twice, then redriven


def test_a_crashed_invocation_returns_its_whole_batch(run_poller: Callable[..., SqsPoller]) -> None:
    url, arn = _queue()
    _fill(url, ["a", "b"])
    crashes = {"left": 1}

    def answer(event: dict[str, Any]) -> Any:
        if crashes["left"]:
            crashes["left"] -= 1
            raise RuntimeError("the function crashed (expected by the test)")
        return {"batchItemFailures": []}

    function = Target(answer)
    run_poller(function, url, arn)
    eventually(lambda: function.bodies() == ["a", "a", "b", "b"] and _counts(url) == (0, 0), timeout=WAIT)
    assert function.batches[0] == ["a", "b"]  # the first, crashed, invocation had both: both came back


def test_stop_waits_for_a_batch_in_flight(run_poller: Callable[..., SqsPoller]) -> None:
    url, arn = _queue()
    _fill(url, ["a", "b", "c"])
    function = Target()
    function.hold()
    poller = run_poller(function, url, arn)
    function.wait_running(1)
    threading.Timer(0.3, function.release).start()
    poller.stop(grace=WAIT)
    assert poller.join(WAIT) == []
    assert _counts(url) == (0, 0)  # finished within the grace period: settled as usual
    assert function.bodies() == ["a", "b", "c"]


def test_stop_gives_back_a_batch_still_running_after_the_grace_period(run_poller: Callable[..., SqsPoller]) -> None:
    url, arn = _queue()
    _fill(url, ["a", "b", "c"])
    function = Target()
    function.hold()
    poller = run_poller(function, url, arn)
    function.wait_running(1)
    poller.stop(grace=0.2)
    eventually(lambda: _counts(url) == (3, 0), timeout=WAIT)  # visible again at once, not after 30 s
    function.release()  # the invocation ends after its messages were given back: it settles nothing
    assert poller.join(WAIT) == []
    assert _counts(url) == (3, 0)
    assert function.batches == [["a", "b", "c"]]


def test_a_batch_received_while_stopping_is_given_back_not_run(run_poller: Callable[..., SqsPoller]) -> None:
    url, arn = _queue()
    _fill(url, ["a", "b"])
    received = threading.Event()
    pollers: list[SqsPoller] = []

    class Stalling:
        """The SQS client, whose receive returns only once the poller is stopping."""

        def __getattr__(self, name: str) -> Any:
            return getattr(aws.client("sqs"), name)

        def receive_message(self, **kwargs: Any) -> Any:
            out = aws.client("sqs").receive_message(**kwargs)
            if out.get("Messages"):
                received.set()
                deadline = time.monotonic() + WAIT
                while not (pollers and pollers[0].stopping) and time.monotonic() < deadline:
                    time.sleep(0.01)
            return out

    function = Target()
    pollers.append(run_poller(function, url, arn, client=Stalling))
    assert received.wait(WAIT)
    pollers[0].stop(grace=1)
    assert pollers[0].join(WAIT) == []
    eventually(lambda: _counts(url) == (2, 0), timeout=WAIT)
    assert function.batches == []


@pytest.mark.parametrize(("window", "sizes"), [(1.0, [25]), (0.0, [10, 10, 5])])
def test_a_batch_fills_up_to_the_batch_size_while_the_batching_window_lasts(
    run_poller: Callable[..., SqsPoller], window: float, sizes: list[int]
) -> None:
    url, arn = _queue()
    bodies = [f"m{n:02d}" for n in range(25)]
    _fill(url, bodies)
    function = Target()
    run_poller(function, url, arn, batch_size=25, batching_window=window)
    eventually(lambda: _counts(url) == (0, 0) and sum(len(b) for b in function.batches) == 25, timeout=WAIT)
    assert sorted(len(b) for b in function.batches) == sorted(sizes)
    assert function.bodies() == bodies
