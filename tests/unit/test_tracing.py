"""Tracing: the event id is the trace annotation ``event_id`` from the internal API to the POST.

Powertools' Tracer is given a provider that records subsegments and annotations in place of
X-Ray's recorder (tracing is off in the tests: outside Lambda, Powertools disables it), the way
its own tests swap providers; a disabled tracer calls no provider at all.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Generator, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from aws_lambda_powertools.tracing.base import BaseProvider, BaseSegment
from pytest_httpserver import HTTPServer

from devicehooks import observability
from devicehooks.aws.eventbridge import EventBridgePublisher
from devicehooks.domain import eventids
from devicehooks.domain.events import ProvisionedDevice
from devicehooks.services.ingest import IngestService
from devicehooks.services.intake import forward
from devicehooks.timeutil import parse_time
from tests.unit.test_dispatcher import Harness


@dataclass
class Segment(BaseSegment):
    name: str
    annotations: dict[str, Any] = field(default_factory=dict)

    def close(self, end_time: int | None = None) -> None:
        pass

    def add_subsegment(self, subsegment: Any) -> None:
        pass

    def remove_subsegment(self, subsegment: Any) -> None:
        pass

    def put_annotation(self, key: str, value: Any) -> None:
        self.annotations[key] = value

    def put_metadata(self, key: str, value: Any, namespace: str = "default") -> None:
        pass

    def add_exception(self, exception: BaseException, stack: Any, remote: bool = False) -> None:
        pass


class Recorder(BaseProvider):
    """Every subsegment opened, in any thread; annotations go to the thread's innermost open one."""

    def __init__(self) -> None:
        self.segments: list[Segment] = []
        self._open = threading.local()
        self._lock = threading.Lock()

    @contextmanager
    def in_subsegment(self, name: str | None = None, **kwargs: Any) -> Generator[BaseSegment, None, None]:
        segment = Segment(str(name))
        with self._lock:
            self.segments.append(segment)
        stack = self._stack()
        stack.append(segment)
        try:
            yield segment
        finally:
            stack.pop()

    def in_subsegment_async(self, name: str | None = None, **kwargs: Any) -> Any:
        raise NotImplementedError

    def put_annotation(self, key: str, value: Any) -> None:
        self._stack()[-1].put_annotation(key, value)

    def put_metadata(self, key: str, value: Any, namespace: str = "default") -> None:
        pass

    def patch(self, modules: Sequence[str]) -> None:
        pass

    def patch_all(self) -> None:
        pass

    def _stack(self) -> list[Segment]:
        if not hasattr(self._open, "stack"):
            self._open.stack = []
        stack: list[Segment] = self._open.stack
        return stack

    def named(self, name: str) -> list[dict[str, Any]]:
        return [s.annotations for s in self.segments if s.name == name]


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> Iterator[Recorder]:
    recorder = Recorder()
    monkeypatch.setattr(observability.tracer, "provider", recorder)
    monkeypatch.setattr(observability.tracer, "disabled", False)
    yield recorder


def test_the_dispatchers_record_and_its_post_carry_the_event_id(httpserver: HTTPServer, recorder: Recorder) -> None:
    httpserver.expect_request("/hook", method="POST").respond_with_data("ok")
    h = Harness(httpserver)
    webhook = h.webhook()
    event_id = h.send()
    assert len(h.requests("/hook")) == 1
    assert recorder.named("device event") == [{"event_id": event_id}]
    assert recorder.named("webhook POST") == [
        {"event_id": event_id, "integration_id": webhook.id, "status_code": 200, "delivered": True}
    ]


def test_a_retry_is_traced_with_its_event_id_and_a_failed_post_with_its_outcome(
    httpserver: HTTPServer, recorder: Recorder
) -> None:
    httpserver.expect_request("/hook", method="POST").respond_with_data("no", status=503)
    h = Harness(httpserver)
    h.webhook()
    event_id = h.send()
    task = h.queue.scheduled[0][0].due(h.clock().timestamp() + 60)
    h.clock.advance(60)
    h.new_batch()
    h.task(task)
    assert recorder.named("device event") == [{"event_id": event_id}] * 2
    posts = recorder.named("webhook POST")
    assert [(p["event_id"], p["status_code"], p["delivered"]) for p in posts] == [(event_id, 503, False)] * 2


class _Bus:
    """EventBridge's PutEvents: refuses the first entry once, then gives each entry an id."""

    def __init__(self) -> None:
        self.calls = 0
        self.ids: dict[str, str] = {}  # the bus id of each device: its webhook event's id

    def put_events(self, Entries: list[dict[str, Any]]) -> dict[str, Any]:  # noqa: N803 - botocore's name
        self.calls += 1
        results = [{"EventId": f"ev-{json.loads(e['Detail'])['data']['id']}"} for e in Entries]
        if self.calls == 1:
            results[0] = {"ErrorCode": "InternalFailure", "ErrorMessage": "try again"}
        for entry, result in zip(Entries, results, strict=True):
            if "EventId" in result:
                detail = json.loads(entry["Detail"])
                at = parse_time(detail["time"])
                self.ids[detail["data"]["id"]] = eventids.event_id(at, entry["DetailType"], result["EventId"])
        return {"FailedEntryCount": sum("ErrorCode" in r for r in results), "Entries": results}


def test_the_internal_api_traces_the_ids_the_bus_gave_its_events_and_logs_a_single_one_as_correlation_id(
    recorder: Recorder,
) -> None:
    bus = _Bus()
    publisher = EventBridgePublisher("bus", "devicehooks.deviceauth", client=bus, sleep=lambda _: None)
    service = IngestService(publisher)
    service.change_status("t1", "accepted", ["a", "b", "c"])  # "a" refused once, then put
    # each the id of the webhook event the dispatcher will make of it (its bus id, type and time)
    assert recorder.named("device event") == [{"event_id": bus.ids[d]} for d in "abc"]
    service.provision("t1", ProvisionedDevice.model_validate({"id": "d"}))
    assert recorder.named("device event")[-1] == {"event_id": bus.ids["d"]}
    try:
        assert observability.logger.get_correlation_id() == bus.ids["d"]
    finally:
        observability.logger.set_correlation_id(None)


def test_the_intake_traces_each_forwarded_events_id() -> None:
    sent: list[tuple[str, str | None]] = []

    class Queue:
        def send(self, messages: Sequence[tuple[str, str | None]]) -> list[int]:
            sent.extend(messages)
            return []

    whole = {"id": "e3", "detail-type": "device-decommissioned", "time": "2026-01-01T10:00:00Z", "detail": {}}
    bodies = [
        json.dumps({"id": "e1", "detail": {"tenant_id": "t1"}}),
        "not json",
        json.dumps({"id": "e2"}),
        json.dumps(whole),
    ]
    recorder = Recorder()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(observability.tracer, "provider", recorder)
        patch.setattr(observability.tracer, "disabled", False)
        assert forward(Queue(), bodies) == []
    assert sent == [(bodies[0], "t1"), (bodies[1], None), (bodies[2], None), (bodies[3], None)]
    # the id its webhook event gets; the bus's own where it can have none (the dispatcher refuses it)
    third = eventids.event_id(parse_time("2026-01-01T10:00:00Z"), "device-decommissioned", "e3")
    assert recorder.named("device event") == [{"event_id": "e1"}, {"event_id": "e2"}, {"event_id": third}]


def test_disabled_tracing_calls_no_provider(httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch) -> None:
    assert observability.tracer.disabled  # outside Lambda: Powertools turns it off
    recorder = Recorder()
    monkeypatch.setattr(observability.tracer, "provider", recorder)
    httpserver.expect_request("/hook", method="POST").respond_with_data("ok")
    h = Harness(httpserver)
    h.webhook()
    h.send()
    with observability.traced("anything", key="value") as subsegment:
        assert subsegment is None
    observability.trace_events(["e1"])
    assert recorder.segments == []
