"""The local stack runs each function as Lambda runs it: every execution environment a process of
its own, one invocation at a time, with exactly its function's environment variables; an SQS
event source's invocations side by side up to the template's ``ScalingConfig.MaximumConcurrency``
(``devicehooks_dev/local/sqs.py``, ``environments.py``).

Two layers: the stack's own sources, driven through the real dispatcher whose handler is wrapped,
in its environments, by a gate (``tests/integration/gate.py``) that counts the invocations in flight
per source and holds chosen tenants' events until opened; and :class:`SqsPoller` alone on private
queues of the stack's moto, with a test function, for what the stack cannot show without stopping
(shutdown, redrive, windows). Every wait is bounded; no assert compares wall times.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests

from devicehooks import aws
from devicehooks.errors import ConfigError
from devicehooks_dev import devkeys
from devicehooks_dev.local.runtime import LambdaContext
from devicehooks_dev.local.sqs import UNBOUNDED_CONCURRENCY, SqsPoller, SqsSource
from devicehooks_dev.local.stack import API_CONCURRENCY, LocalStack
from devicehooks_dev.local.streams import StreamPoller
from devicehooks_dev.local.template import Resolver, load_template
from tests.conftest import ROOT, moto_client
from tests.integration.gate import GateServer
from tests.integration.test_faults import MGMT, Scenario
from tests.receiver import Receiver, eventually

WAIT = 20.0  # the bound of every wait for something to happen
BUSY = 2.5  # how long "nothing more is received" is watched: over two of the pollers' long polls


# ---------------------------------------------------------------------------- helpers
@pytest.fixture
def gate(stack: LocalStack) -> Iterator[Callable[[set[str]], GateServer]]:
    """``gate(tenants)`` puts a gate before the dispatcher's handler, in each of its environments
    (started afresh); opened, and the handler unwrapped, at teardown."""
    function = stack.functions["DispatcherFunction"]
    servers: list[GateServer] = []

    def install(held: set[str]) -> GateServer:
        server = GateServer(held)
        function.wrap(f"{ROOT}=tests.integration.faults:gated", server.url)
        servers.append(server)
        return server

    yield install
    for server in servers:
        server.close()
    function.wrap("")


def _event(tenant: str) -> dict[str, Any]:
    return {
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


def _send(stack: LocalStack, tenant: str) -> None:
    """A device event of ``tenant`` straight onto the dispatch queue (as the intake puts it)."""
    aws.client("sqs").send_message(
        QueueUrl=stack.physical["DispatchQueue"]["QueueUrl"],
        MessageBody=json.dumps(_event(tenant)),
        MessageGroupId=f"t:{tenant}",
    )


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
    configured = {
        p.source.name: p.source.max_concurrency for p in stack.pollers if p.source.function == "DispatcherFunction"
    }
    assert configured == declared
    assert {p.source.batch_size for p in stack.pollers if isinstance(p, SqsPoller)} == {10}
    # the activity table's stream: one reader, one batch at a time (moto's stream has one shard)
    [stream] = [p for p in stack.pollers if isinstance(p, StreamPoller)]
    assert (stream.source.function, stream.source.batch_size) == ("HealthCounterFunction", 100)
    assert stack.functions["HealthCounterFunction"].spec.concurrency == 1
    # a source without a maximum: Lambda's first 5 concurrent batches
    source = stack._sqs_source(
        "DispatcherFunction", "Unbounded", {"Queue": {"Fn::GetAtt": ["DispatchQueue", "Arn"]}}, Resolver({})
    )
    assert source.max_concurrency == UNBOUNDED_CONCURRENCY == 5
    # a function's environments: as many as its sources' batches in flight; behind API routes, a few
    assert stack.functions["DispatcherFunction"].spec.concurrency == 30
    for name in ("AuthorizerFunction", "ManagementFunction", "InternalFunction"):
        assert stack.functions[name].spec.concurrency == API_CONCURRENCY, name


def test_dispatcher_invocations_overlap_up_to_the_maximum_and_never_beyond(
    stack: LocalStack, gate: Callable[[set[str]], GateServer]
) -> None:
    poller = _poller(stack, "DeviceEvents")
    maximum, arn, url = poller.source.max_concurrency, poller.source.queue_arn, poller.source.queue_url
    receiver = Receiver()
    try:
        scenarios = [Scenario(stack, receiver.url(f"/hook/{n}")) for n in range(maximum + 5)]
        held, extra = scenarios[:maximum], scenarios[maximum:]
        extra_tenants = {s.tenant for s in extra}
        server = gate({s.tenant for s in scenarios})
        # one event at a time, each sent once the ones before it are held: a batch each
        for n, scenario in enumerate(held, 1):
            _send(stack, scenario.tenant)
            server.wait_until(lambda n=n: server.waiting >= n, f"{n} invocations held")
        assert server.in_flight[arn] == maximum
        # every execution environment of the source is busy: the next events are not received
        # (and held invisible) but stay in the queue, visible, for as long as they stay busy
        for scenario in extra:
            _send(stack, scenario.tenant)
        eventually(lambda: _counts(url)[0] >= len(extra), timeout=WAIT)
        watched = time.monotonic() + BUSY
        while time.monotonic() < watched:
            assert server.in_flight[arn] == maximum
            assert _counts(url)[0] >= len(extra)
            time.sleep(0.1)
        assert not [tenant for tenant, _ in server.seen if tenant in extra_tenants]
        server.open()
        for n in range(len(scenarios)):
            receiver.wait_for(1, f"/hook/{n}", timeout=WAIT)
        server.wait_until(lambda: server.in_flight[arn] == 0, "every invocation ended")
    finally:
        receiver.close()
    assert server.peak[arn] == maximum  # reached, never exceeded
    assert poller.peak <= maximum
    assert all(opened for tenant, opened in server.seen if tenant in extra_tenants)
    # each invocation in an environment of its own: as many processes as invocations at once
    assert len(server.pids) >= maximum
    # each invocation had its own context, counting the function's 60 s down from its start
    assert len(set(server.request_ids)) == len(server.request_ids)
    assert len(server.remaining) == maximum
    assert all(55_000 < times[0] <= 60_000 for times in server.remaining.values())
    assert all(len(times) == 2 and times[1] < times[0] for times in server.remaining.values())


def test_a_slow_batch_does_not_hold_up_the_other_batches_of_its_source(
    stack: LocalStack, gate: Callable[[set[str]], GateServer]
) -> None:
    receiver = Receiver()
    try:
        slow = Scenario(stack, receiver.url("/slow"))
        others = [Scenario(stack, receiver.url(f"/other/{n}")) for n in range(6)]
        server = gate({slow.tenant})
        _send(stack, slow.tenant)
        server.wait_until(lambda: server.waiting == 1, "the slow batch held")
        for scenario in others:
            _send(stack, scenario.tenant)
        for n in range(len(others)):
            receiver.wait_for(1, f"/other/{n}", timeout=WAIT)
        assert server.waiting == 1  # still held meanwhile
        assert receiver.on("/slow") == []
        server.open()
        receiver.wait_for(1, "/slow", timeout=WAIT)
    finally:
        receiver.close()


def test_invocations_run_in_processes_of_their_own_each_with_exactly_its_functions_environment(
    stack: LocalStack, tmp_path: Path
) -> None:
    """Lambda's shape: an execution environment per process, one invocation at a time, its own
    environment variables (the template's Globals and its function's, none of another function's)."""
    folder = tmp_path / "seen"
    folder.mkdir()
    functions = ("DispatcherFunction", "ManagementFunction", "AuthorizerFunction")
    for name in functions:
        stack.functions[name].wrap(f"{ROOT}=tests.integration.faults:report_environment", str(folder))
    receiver = Receiver()
    try:
        scenarios = [Scenario(stack, receiver.url(f"/hook/{n}")) for n in range(4)]
        for scenario in scenarios:  # batches that overlap: each invocation lasts HOLD seconds
            _send(stack, scenario.tenant)
        headers = {"Authorization": f"Bearer {devkeys.mint_token(f'tenant-{uuid.uuid4()}')}"}
        with ThreadPoolExecutor(max_workers=3) as pool:
            answers = list(
                pool.map(
                    lambda _: requests.get(f"{stack.url}{MGMT}/integrations", headers=headers, timeout=WAIT), range(3)
                )
            )
        assert [a.status_code for a in answers] == [200] * 3
        for n in range(len(scenarios)):
            receiver.wait_for(1, f"/hook/{n}", timeout=WAIT)
    finally:
        receiver.close()
        for name in functions:
            stack.functions[name].wrap("")
    seen = [json.loads(p.read_text()) for p in folder.iterdir()]
    by_function = {name: [s for s in seen if s["function"] == stack.functions[name].spec.name] for name in functions}
    assert all(by_function.values()), {k: len(v) for k, v in by_function.items()}
    pids = {s["pid"] for s in seen}
    assert os.getpid() not in pids  # no handler runs in the stack's process
    # invocations of a function that overlapped in time ran in processes of their own
    assert all("ended" in s for s in seen)
    overlapping = [
        (a, b)
        for name in functions
        for n, a in enumerate(by_function[name])
        for b in by_function[name][n + 1 :]
        if a["started"] < b["ended"] and b["started"] < a["ended"]
    ]
    assert overlapping  # the three management requests at once, the dispatcher's batches
    assert all(a["pid"] != b["pid"] for a, b in overlapping)
    # every function's processes are its own
    owners = {s["pid"]: s["function"] for s in seen}
    assert len(owners) == len(pids) and all(owners[s["pid"]] == s["function"] for s in seen)
    template = load_template(ROOT / "template.yaml")
    shared = set(template["Globals"]["Function"]["Environment"]["Variables"])
    for name in functions:
        own = set((template["Resources"][name]["Properties"].get("Environment") or {}).get("Variables") or {})
        others = (
            {
                variable
                for other, resource in template["Resources"].items()
                if resource.get("Type") == "AWS::Serverless::Function" and other != name
                for variable in ((resource["Properties"].get("Environment") or {}).get("Variables") or {})
            }
            - own
            - shared
        )
        for invocation in by_function[name]:
            variables = set(invocation["variables"])
            assert shared | own <= variables, (name, (shared | own) - variables)
            assert not variables & others, (name, variables & others)  # no other function's
            assert "DEVICEHOOKS_LOCAL_REDELIVERY_SECONDS" not in variables  # the stack's own knobs stay out
            assert not {v for v in variables if v.startswith("DEVICEHOOKS_") and v not in shared | own}


def test_the_context_counts_the_timeout_down_from_the_invocations_start() -> None:
    context = LambdaContext("f", timeout=60, memory=128)
    first = context.get_remaining_time_in_millis()
    assert 59_000 < first <= 60_000
    eventually(lambda: context.get_remaining_time_in_millis() < first, timeout=WAIT)
    assert LambdaContext("f", 60, 128).aws_request_id != context.aws_request_id
    assert LambdaContext("f", timeout=0, memory=128).get_remaining_time_in_millis() == 0


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

    def run(function: Target, url: str, arn: str, client: Any = None, receivers: int = 1, **source: Any) -> SqsPoller:
        settings: dict[str, Any] = {"batch_size": 10, "report_failures": True, "max_concurrency": 5} | source
        poller = SqsPoller(
            SqsSource(function="TestFunction", name="Test", queue_url=url, queue_arn=arn, **settings),
            invoke=function,
            client=client or (lambda: aws.client("sqs")),
            redelivery_seconds=1,
            receivers=receivers,
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


def test_several_receivers_poll_a_source_side_by_side_never_beyond_its_maximum_nor_twice_a_message(
    run_poller: Callable[..., SqsPoller],
) -> None:
    url, arn = _queue()
    bodies = [f"m{n:02d}" for n in range(40)]
    _fill(url, bodies)
    function = Target()
    poller = run_poller(function, url, arn, receivers=5, batch_size=1, max_concurrency=3)
    eventually(lambda: _counts(url) == (0, 0) and len(function.bodies()) == len(bodies), timeout=WAIT)
    assert function.bodies() == bodies  # each once
    assert function.peak <= 3 and poller.peak <= 3


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


def test_a_setting_a_function_would_refuse_at_its_cold_start_is_named_before_the_stack_serves(
    stack: LocalStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``DEVICEHOOKS_MAX_INTEGRATIONS=150 devicehooks local``: start() raises one ConfigError naming it
    (the CLI prints it in one line) rather than every cold start failing with a traceback."""
    stack.check_settings()  # the template's own values
    environment = stack.functions["ManagementFunction"].spec.environment
    assert isinstance(environment, dict) and "DEVICEHOOKS_MAX_INTEGRATIONS" in environment
    monkeypatch.setitem(environment, "DEVICEHOOKS_MAX_INTEGRATIONS", "150")
    with pytest.raises(ConfigError) as refused:
        stack.check_settings()
    assert str(refused.value) == (
        "invalid configuration: DEVICEHOOKS_MAX_INTEGRATIONS: must be at least 1 and at most 99, not 150"
    )


def test_dynamodb_is_answered_by_a_moto_process_of_its_own_and_every_function_is_sent_there(
    stack: LocalStack,
) -> None:
    """AWS serves each service apart: the stack's DynamoDB (and its streams) is a moto server in a
    process of its own, beside the one serving SQS, EventBridge and the rest; the SDK finds it
    through ``AWS_ENDPOINT_URL_DYNAMODB(_STREAMS)``, in every function's environment."""
    from devicehooks_dev.local.stack import APART

    apart = {k: v for k, v in stack.aws_endpoints.items() if k != "AWS_ENDPOINT_URL"}
    assert set(apart) == {v for variables in APART.values() for v in variables}
    assert set(apart.values()) == {apart["AWS_ENDPOINT_URL_DYNAMODB"]} != {stack.moto_endpoint}
    tables = {r["TableName"] for r in stack.physical.values() if "TableName" in r}
    on_its_own = moto_client("dynamodb", apart["AWS_ENDPOINT_URL_DYNAMODB"])
    on_the_rest = moto_client("dynamodb", stack.moto_endpoint)
    assert tables and tables <= set(on_its_own.list_tables()["TableNames"])
    assert on_the_rest.list_tables()["TableNames"] == []  # another process: none of the tables
    queues = moto_client("sqs", stack.moto_endpoint).list_queues()["QueueUrls"]
    assert {r["QueueUrl"] for r in stack.physical.values() if "QueueUrl" in r} <= set(queues)
    for function in stack.functions.values():
        environment = function.spec.environment
        assert environment["AWS_ENDPOINT_URL"] == stack.moto_endpoint
        assert {k: environment.get(k) for k in apart} == apart, function.spec.logical_id
    info = requests.get(f"{stack.url}/local/info", timeout=WAIT).json()
    assert info["aws_endpoints"] == {"AWS_ENDPOINT_URL": stack.moto_endpoint, **apart}
    assert info["moto_endpoint"] == stack.moto_endpoint
