"""Mender's internal API (BEHAVIOUR.md §1.3): device events onto the bus, tenant removal."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from devicehooks.api import internal
from devicehooks.domain.models import Integration
from devicehooks.errors import ServiceUnavailable
from devicehooks.handlers import internal as internal_handler
from devicehooks.services.ingest import EventBridgePublisher, IngestService
from devicehooks.services.tenants import TenantService
from devicehooks_dev.doubles import MemoryActivityStore, MemoryIntegrationStore, MemoryPublisher
from tests.conftest import FakeContext, load_event

BASE = "/api/internal/v1/iot-manager"


class Internal:
    def __init__(self) -> None:
        self.publisher = MemoryPublisher()
        self.integrations = MemoryIntegrationStore()
        self.activity = MemoryActivityStore()

    def __call__(
        self, method: str, path: str, body: Any = None, raw: str | None = None
    ) -> tuple[int, Any, dict[str, str]]:
        event = copy.deepcopy(load_event("internal-provision-device.json"))
        event["rawPath"] = path
        event["requestContext"]["http"].update(method=method, path=path)
        event.pop("body", None)
        if raw is not None:
            event["body"] = raw
        elif body is not None:
            event["body"] = json.dumps(body)
        out = internal_handler.handle(event, FakeContext())  # type: ignore[arg-type]
        text = out.get("body") or ""
        return out["statusCode"], (json.loads(text) if text else None), out["headers"]

    @property
    def events(self) -> list[tuple[str, dict[str, Any]]]:
        return self.publisher.events


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> Iterator[Internal]:
    client = Internal()
    clock = lambda: datetime(2026, 1, 1, 10, 0, 0, 123456, tzinfo=UTC)  # noqa: E731
    monkeypatch.setattr(internal, "ingest_service", lambda: IngestService(client.publisher, clock))
    monkeypatch.setattr(internal, "tenant_service", lambda: TenantService(client.integrations, client.activity))
    yield client


def test_provision_publishes_the_device_and_answers_202(api: Internal) -> None:
    device = load_event("internal-provision-device.json")["body"]
    status, body, headers = api("POST", f"{BASE}/tenants/tenant-1/devices", raw=device)
    assert (status, body) == (202, None)
    assert headers["X-MEN-RequestID"] == "a4c7b6d2-1f0e-4c3b-8a9d-5e6f7a8b9c0d"
    ((detail_type, detail),) = api.events
    assert detail_type == "device-provisioned"
    assert detail["tenant_id"] == "tenant-1"
    assert detail["time"] == "2026-01-01T10:00:00.123456Z"
    assert list(detail["data"]) == ["id", "status", "auth_sets", "created_ts"]
    assert detail["data"]["auth_sets"][0]["ts"] == "2026-01-01T09:59:58.123Z"


def test_provision_accepts_the_legacy_device_id_alias_and_ignores_unknown_fields(api: Internal) -> None:
    status, _, _ = api("POST", f"{BASE}/tenants/t/devices", {"device_id": "dev-7", "revision": 3})
    assert status == 202
    assert api.events[0][1]["data"] == {"id": "dev-7"}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "missing device ID"),
        ({"id": ""}, "missing device ID"),
        ({"status": "accepted"}, "missing device ID"),
        ({"id": True}, "malformed request body: id: must be a string."),
        ([], "malformed request body: the body must be a JSON object"),
        ({"id": "d", "auth_sets": "x"}, "malformed request body: auth_sets: must be a list."),
    ],
)
def test_provision_errors_use_menders_messages(api: Internal, body: Any, message: str) -> None:
    status, answer, _ = api("POST", f"{BASE}/tenants/t/devices", body)
    assert (status, answer["error"]) == (400, message)
    assert api.events == []


def test_provision_with_invalid_json_is_a_400(api: Internal) -> None:
    status, answer, _ = api("POST", f"{BASE}/tenants/t/devices", raw="{nope")
    assert status == 400 and answer["error"].startswith("malformed request body: ")


def test_decommission_publishes_and_always_answers_202(api: Internal) -> None:
    status, _, _ = api("DELETE", f"{BASE}/tenants/tenant-1/devices/dev%2F1")
    assert status == 202
    assert api.events == [
        (
            "device-decommissioned",
            {"tenant_id": "tenant-1", "data": {"id": "dev/1"}, "time": "2026-01-01T10:00:00.123456Z"},
        )
    ]


def test_bulk_status_publishes_one_event_per_device(api: Internal) -> None:
    body = [{"id": "a"}, {"device_id": "b", "extra": 1}, {"id": ""}]
    status, _, _ = api("PUT", f"{BASE}/tenants/t/bulk/devices/status/rejected", body)
    assert status == 202
    assert [(t, d["data"]) for t, d in api.events] == [
        ("device-status-changed", {"id": "a", "status": "rejected"}),
        ("device-status-changed", {"id": "b", "status": "rejected"}),
        ("device-status-changed", {"id": "", "status": "rejected"}),  # Mender does not reject an empty id
    ]


@pytest.mark.parametrize("status", ["accepted", "noauth", "pending", "preauthorized", "rejected", "decommissioned"])
def test_every_mender_status_is_accepted(api: Internal, status: str) -> None:
    assert api("PUT", f"{BASE}/tenants/t/bulk/devices/status/{status}", [{"id": "d"}])[0] == 202


@pytest.mark.parametrize(
    ("status", "body", "message"),
    [
        ("sleeping", "not even json", "invalid status 'sleeping'"),
        ("accepted", {"id": "x"}, "invalid request body: must be a list."),
        ("accepted", ["x"], "invalid request body: 0: must be an object."),
        ("accepted", [{"id": 5}], "invalid request body: 0: (id: must be a string of at most 256 characters.)."),
        ("accepted", [{"id": str(n)} for n in range(101)], "too many bulk items: max 100 items per request"),
    ],
)
def test_bulk_status_errors_use_menders_messages(api: Internal, status: str, body: Any, message: str) -> None:
    raw = body if isinstance(body, str) else json.dumps(body)
    answer = api("PUT", f"{BASE}/tenants/t/bulk/devices/status/{status}", raw=raw)
    assert (answer[0], answer[1]["error"]) == (400, message)
    assert api.events == []


def test_an_empty_bulk_is_accepted_and_publishes_nothing(api: Internal) -> None:
    assert api("PUT", f"{BASE}/tenants/t/bulk/devices/status/accepted", [])[0] == 202
    assert api.events == []


def test_a_bulk_of_100_is_published_in_batches_of_10() -> None:
    class Bus:
        def __init__(self) -> None:
            self.calls: list[int] = []

        def put_events(self, Entries: list[dict[str, Any]]) -> dict[str, Any]:  # noqa: N803 - boto3's name
            self.calls.append(len(Entries))
            return {"FailedEntryCount": 0, "Entries": [{"EventId": "x"} for _ in Entries]}

    bus = Bus()
    IngestService(EventBridgePublisher("bus", "devicehooks.deviceauth", client=bus)).change_status(
        "t", "accepted", [str(n) for n in range(100)]
    )
    assert bus.calls == [10] * 10


def test_entries_the_bus_refuses_are_sent_again_and_a_persistent_refusal_fails_loudly() -> None:
    class FlakyBus:
        def __init__(self, failures: int) -> None:
            self.failures = failures
            self.sent: list[str] = []

        def put_events(self, Entries: list[dict[str, Any]]) -> dict[str, Any]:  # noqa: N803
            results = []
            for entry in Entries:
                if self.failures > 0:
                    self.failures -= 1
                    results.append({"ErrorCode": "InternalFailure", "ErrorMessage": "try again"})
                else:
                    self.sent.append(json.loads(entry["Detail"])["data"]["id"])
                    results.append({"EventId": "x"})
            return {"FailedEntryCount": sum("ErrorCode" in r for r in results), "Entries": results}

    flaky = FlakyBus(failures=3)
    IngestService(EventBridgePublisher("bus", "src", client=flaky)).change_status("t", "accepted", ["a", "b", "c", "d"])
    assert sorted(flaky.sent) == ["a", "b", "c", "d"]
    broken = FlakyBus(failures=10_000)
    with pytest.raises(ServiceUnavailable):
        IngestService(EventBridgePublisher("bus", "src", client=broken, attempts=3)).decommission("t", "a")


def test_a_publishing_failure_is_a_503_not_a_lost_event(api: Internal, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(events: Any) -> None:
        raise ServiceUnavailable("failed to publish 1 device event(s) to the bus; retry the request")

    monkeypatch.setattr(api.publisher, "publish", refuse)
    status, body, _ = api("DELETE", f"{BASE}/tenants/t/devices/d")
    assert status == 503
    assert body["error"] == "failed to publish 1 device event(s) to the bus; retry the request"


@pytest.mark.parametrize(
    ("method", "path", "body", "detail_type"),
    [
        ("POST", "/tenants//devices", {"id": "d"}, "device-provisioned"),
        ("DELETE", "/tenants//devices/d", None, "device-decommissioned"),
        ("PUT", "/tenants//bulk/devices/status/accepted", [{"id": "d"}], "device-status-changed"),
    ],
)
def test_menders_open_source_empty_tenant_is_supported(
    api: Internal, method: str, path: str, body: Any, detail_type: str
) -> None:
    assert api(method, BASE + path, body)[0] == 202
    assert api.events[0][0] == detail_type
    assert api.events[0][1]["tenant_id"] == ""


def test_deleting_a_tenant_removes_its_integrations_and_activity(api: Internal) -> None:
    now = datetime.now(UTC)
    for tenant in ("gone", "kept", ""):
        api.integrations.add(
            Integration(id=f"i-{tenant}", tenant_id=tenant, url="https://e.com", created_at=now, updated_at=now), 20
        )
    assert api("DELETE", f"{BASE}/tenants/gone")[0] == 204
    assert api.integrations.list_tenant("gone") == []
    assert len(api.integrations.list_tenant("kept")) == 1
    assert api("DELETE", f"{BASE}/tenants/")[0] == 204
    assert api.integrations.list_tenant("") == []


def test_alive_answers_204_and_unknown_routes_404(api: Internal) -> None:
    assert api("GET", f"{BASE}/alive")[:2] == (204, None)
    status, body, _ = api("GET", f"{BASE}/nope")
    assert (status, body["error"]) == (404, "not found")
    status, body, _ = api("GET", f"{BASE}/tenants/t/devices")
    assert (status, body["error"]) == (405, "method not allowed")
