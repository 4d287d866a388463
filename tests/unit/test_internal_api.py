"""Mender's internal API (BEHAVIOUR.md §1.3): device events onto the bus, tenant removal."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from devicehooks.api import internal
from devicehooks.aws.eventbridge import EventBridgePublisher
from devicehooks.domain.events import MAX_ATTRIBUTES, ProvisionedDevice
from devicehooks.domain.models import Integration
from devicehooks.errors import InvalidRequest, ServiceUnavailable
from devicehooks.handlers import internal as internal_handler
from devicehooks.services.ingest import (
    EVENTBRIDGE_MAX_ENTRY_BYTES,
    MAX_DETAIL_BYTES,
    IngestService,
    detail_json,
    entry_size,
)
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


def _clock() -> datetime:
    return datetime(2026, 1, 1, 10, 0, 0, 123456, tzinfo=UTC)


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> Iterator[Internal]:
    client = Internal()
    monkeypatch.setattr(internal, "ingest_service", lambda: IngestService(client.publisher, _clock))
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


# ------------------------------------------------------------------ nothing accepted that cannot be delivered


def _identity(value: str) -> str:
    """A provision body whose one auth set's identity_data is ``{"sn": <value>}`` (value: raw JSON)."""
    return '{"id":"dev-1","auth_sets":[{"id":"a1","identity_data":{"sn":' + value + "}}]}"


@pytest.mark.parametrize(
    ("value", "where"),
    [
        ("NaN", "sn: NaN is not a JSON number."),
        ("Infinity", "sn: Infinity is not a JSON number."),
        ("-Infinity", "sn: -Infinity is not a JSON number."),
        ("1e400", "sn: number is out of range (beyond a 64-bit float)."),
        ("-1E+400", "sn: number is out of range (beyond a 64-bit float)."),
        ("9223372036854775808", "sn: integer 9223372036854775808 is out of range (64-bit)."),
        (r'"\ud800"', r"sn: contains a lone surrogate (\ud800), which is not Unicode."),
        (r'["ok","x\udfff"]', r"sn: (1: contains a lone surrogate (\udfff), which is not Unicode.)."),
        (r'{"\udbff":1}', r"sn: a key contains a lone surrogate (\udbff), which is not Unicode."),
    ],
)
def test_provision_data_the_dispatcher_could_not_write_is_a_400_naming_the_field(
    api: Internal, value: str, where: str
) -> None:
    status, answer, _ = api("POST", f"{BASE}/tenants/t/devices", raw=_identity(value))
    assert (status, answer["error"]) == (400, f"malformed request body: auth_sets: (0: (identity_data: ({where}).).).")
    assert api.events == []


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (r'{"id":"\ud800"}', r"malformed request body: id: contains a lone surrogate (\ud800), which is not Unicode."),
        ('{"id":"' + "d" * 257 + '"}', "malformed request body: id: is too long."),
        ('{"device_id":"' + "d" * 257 + '"}', "malformed request body: id: is too long."),
    ],
)
def test_provision_device_ids_an_event_cannot_carry_are_refused(api: Internal, raw: str, message: str) -> None:
    status, answer, _ = api("POST", f"{BASE}/tenants/t/devices", raw=raw)
    assert (status, answer["error"]) == (400, message)
    assert api.events == []


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            r'[{"id":"a"},{"id":"\udc00"}]',
            r"invalid request body: 1: (id: contains a lone surrogate (\udc00), which is not Unicode.).",
        ),
        ('[{"id":"a","n":NaN}]', "invalid request body: 0: (n: NaN is not a JSON number.)."),
        ('[{"id":"' + "d" * 257 + '"}]', "invalid request body: 0: (id: must be a string of at most 256 characters.)."),
    ],
)
def test_bulk_items_an_event_cannot_carry_are_refused(api: Internal, raw: str, message: str) -> None:
    status, answer, _ = api("PUT", f"{BASE}/tenants/t/bulk/devices/status/accepted", raw=raw)
    assert (status, answer["error"]) == (400, message)
    assert api.events == []


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/devices", {"id": "d"}),
        ("DELETE", "/devices/d", None),
        ("PUT", "/bulk/devices/status/accepted", [{"id": "d"}]),
        ("DELETE", "", None),
    ],
)
def test_tenant_ids_of_256_characters_are_accepted_and_257_refused(
    api: Internal, method: str, path: str, body: Any
) -> None:
    assert api(method, f"{BASE}/tenants/{'t' * 256}{path}", body)[0] in (202, 204)
    status, answer, _ = api(method, f"{BASE}/tenants/{'t' * 257}{path}", body)
    assert (status, answer["error"]) == (400, "invalid tenant ID: the length must be no more than 256")


def test_decommission_device_ids_of_256_characters_are_accepted_and_longer_ones_refused(api: Internal) -> None:
    assert api("DELETE", f"{BASE}/tenants/t/devices/{'d' * 256}")[0] == 202
    status, answer, _ = api("DELETE", f"{BASE}/tenants/t/devices/{'d' * 300}")
    assert (status, answer["error"]) == (400, "invalid device ID: the length must be no more than 256")
    status, answer, _ = api("DELETE", f"{BASE}/tenants/t/devices/{'%C3%A9' * 257}")  # counted in characters
    assert (status, answer["error"]) == (400, "invalid device ID: the length must be no more than 256")
    assert len(api.events) == 1


def _sized_provision(detail_bytes: int, char: str) -> str:
    """A provision body whose event Detail is exactly ``detail_bytes`` bytes (the pubkey pads it)."""
    body = {"id": "dev-1", "auth_sets": [{"id": "a1", "pubkey": ""}]}
    service = IngestService(MemoryPublisher(), _clock)  # the api fixture's clock: the same time, the same size
    empty = service._detail("t", ProvisionedDevice.model_validate(body).payload())
    missing = detail_bytes - len(detail_json(empty).encode())
    wide, narrow = divmod(missing, len(char.encode()))
    body["auth_sets"][0]["pubkey"] = char * wide + "k" * narrow
    return json.dumps(body, ensure_ascii=False)


@pytest.mark.parametrize("char", ["k", "\u00e9", "\u20ac"], ids=["ascii", "2-byte", "3-byte"])
def test_a_provision_whose_event_exceeds_the_detail_limit_is_a_400(api: Internal, char: str) -> None:
    assert MAX_DETAIL_BYTES == 240 * 1024 < EVENTBRIDGE_MAX_ENTRY_BYTES
    assert api("POST", f"{BASE}/tenants/t/devices", raw=_sized_provision(MAX_DETAIL_BYTES, char))[0] == 202
    status, answer, _ = api("POST", f"{BASE}/tenants/t/devices", raw=_sized_provision(MAX_DETAIL_BYTES + 1, char))
    assert (status, answer["error"]) == (
        400,
        f"malformed request body: the device event would be {MAX_DETAIL_BYTES + 1} bytes, "
        f"more than the {MAX_DETAIL_BYTES} an event may carry",
    )
    assert len(api.events) == 1  # the one at the limit
    assert len(detail_json(api.events[0][1]).encode()) == MAX_DETAIL_BYTES


def test_the_limit_holds_for_a_body_the_size_of_menders_request_limit(api: Internal) -> None:
    body = json.dumps({"id": "d", "auth_sets": [{"identity_data": {"blob": "x" * (1024 * 1024 - 100)}}]})
    status, answer, _ = api("POST", f"{BASE}/tenants/t/devices", raw=body)
    assert status == 400 and answer["error"].startswith("malformed request body: the device event would be ")
    assert api.events == []


def test_the_service_applies_the_same_rules_to_data_that_did_not_come_through_the_api() -> None:
    service = IngestService(MemoryPublisher())
    device = ProvisionedDevice.model_validate({"id": "d", "auth_sets": [{"identity_data": {"x": float("nan")}}]})
    with pytest.raises(InvalidRequest) as caught:
        service.provision("t", device)
    assert (
        caught.value.message
        == "malformed request body: auth_sets: (0: (identity_data: (x: NaN is not a JSON number.).).)."
    )
    with pytest.raises(InvalidRequest):
        service.decommission("t" * 257, "d")
    with pytest.raises(InvalidRequest):
        service.change_status("t", "accepted", ["ok", "d" * 257])


def test_entry_size_is_counted_as_eventbridge_counts_it() -> None:
    entry = {"Source": "src", "DetailType": "d\u00e9", "Detail": '{"k":"\u20ac"}', "EventBusName": "not counted"}
    assert entry_size(entry) == 3 + 3 + 11
    assert entry_size({**entry, "Time": datetime.now(UTC), "Resources": ["r1", "\u00e9"]}) == 17 + 14 + 2 + 2


class _Bus:
    def __init__(self) -> None:
        self.calls: list[list[dict[str, Any]]] = []

    def put_events(self, Entries: list[dict[str, Any]]) -> dict[str, Any]:  # noqa: N803 - boto3's name
        self.calls.append(Entries)
        return {"FailedEntryCount": 0, "Entries": [{"EventId": "x"} for _ in Entries]}


def test_the_detail_is_utf8_json_and_batches_stay_under_the_request_limit() -> None:
    bus = _Bus()
    publisher = EventBridgePublisher("bus", "src", client=bus)
    big = {"tenant_id": "t", "data": {"id": "\u00e9" * (50 * 1024)}}  # ~100 KiB of UTF-8 each
    publisher.publish([("device-provisioned", big)] * 3 + [("device-decommissioned", {"data": {"id": "d"}})] * 12)
    assert [len(c) for c in bus.calls] == [2, 10, 3]  # 2 big ones, then the third and 9 small, then 3
    assert all(sum(entry_size(e) for e in call) < EVENTBRIDGE_MAX_ENTRY_BYTES for call in bus.calls)
    assert "\u00e9" in bus.calls[0][0]["Detail"]  # not \\u00e9: EventBridge counts bytes


def test_an_entry_over_the_eventbridge_limit_is_refused_before_anything_is_put() -> None:
    bus = _Bus()
    huge = {"data": {"id": "x" * EVENTBRIDGE_MAX_ENTRY_BYTES}}
    with pytest.raises(InvalidRequest):
        EventBridgePublisher("bus", "src", client=bus).publish([("device-decommissioned", {"data": {}}), ("x", huge)])
    assert bus.calls == []


def test_the_document_gives_the_id_limits() -> None:
    status, document, _ = Internal()("GET", f"{BASE}/openapi.json")
    assert status == 200
    operation = document["paths"][f"{BASE}/tenants/{{tenant_id}}/devices/{{device_id}}"]["delete"]
    schemas = {p["name"]: p["schema"] for p in operation["parameters"]}
    assert schemas["tenant_id"]["maxLength"] == schemas["device_id"]["maxLength"] == 256


# ------------------------------------------------------------------ device-inventory-changed

_INVENTORY = [
    {"name": "artifact_name", "value": "large", "scope": "inventory"},
    {"name": "network_interfaces", "value": ["eth0"], "scope": "inventory"},
    {"name": "mem_total_kB", "value": 3884428},
]


def test_an_inventory_change_publishes_menders_documented_data_and_answers_202(api: Internal) -> None:
    status, body, _ = api("POST", f"{BASE}/tenants/tenant-1/devices/dev-1/inventory", _INVENTORY)
    assert (status, body) == (202, None)
    ((detail_type, detail),) = api.events
    assert detail_type == "device-inventory-changed"
    assert detail["tenant_id"] == "tenant-1"
    assert detail["data"] == {
        "device_id": "dev-1",
        "tenant_id": "tenant-1",
        "inventory": [*_INVENTORY[:2], {"name": "mem_total_kB", "value": 3884428, "scope": "inventory"}],
    }
    assert list(detail["data"]) == ["device_id", "tenant_id", "inventory"]


def test_an_inventory_change_of_the_open_source_tenant_has_an_empty_tenant_id(api: Internal) -> None:
    assert api("POST", f"{BASE}/tenants//devices/dev%2F1/inventory", _INVENTORY)[0] == 202
    assert api.events[0][1]["data"]["tenant_id"] == "" and api.events[0][1]["data"]["device_id"] == "dev/1"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"inventory": []}, "malformed request body: must be a list."),
        ([{"value": "x"}], "malformed request body: 0: (name: cannot be blank.)."),
        ([{"name": "", "value": "x"}], "malformed request body: 0: (name: cannot be blank.)."),
        (
            [{"name": "a", "value": "x"}, {"name": "b", "value": {"k": "v"}}],
            "malformed request body: 1: (value: must be a string, a number, or a list of strings or of numbers.).",
        ),
    ],
)
def test_inventory_errors_name_the_attribute(api: Internal, body: Any, message: str) -> None:
    status, answer, _ = api("POST", f"{BASE}/tenants/t/devices/d/inventory", body)
    assert (status, answer["error"]) == (400, message)
    assert api.events == []


def test_an_inventory_larger_than_an_event_may_carry_is_a_400(api: Internal) -> None:
    # Given attributes whose event is just under, then just over, MAX_DETAIL_BYTES
    attribute = {"name": "blob", "value": "x" * 1000, "scope": "inventory"}
    under = [attribute] * (MAX_DETAIL_BYTES // 1100)
    assert api("POST", f"{BASE}/tenants/t/devices/d/inventory", under)[0] == 202
    over = [attribute] * (MAX_DETAIL_BYTES // 1000 + 1)
    status, answer, _ = api("POST", f"{BASE}/tenants/t/devices/d/inventory", over)
    assert status == 400
    assert answer["error"].startswith("malformed request body: the device event would be ")
    assert answer["error"].endswith(f"more than the {MAX_DETAIL_BYTES} an event may carry")
    assert len(api.events) == 1


def test_the_inventory_limit_counts_gos_escapes_in_the_webhook_body(api: Internal) -> None:
    # "<" is one byte on the bus but six ("\u003c") in the body Mender's JSON writes
    value = "<" * (MAX_DETAIL_BYTES // 6 + 10)
    status, answer, _ = api("POST", f"{BASE}/tenants/t/devices/d/inventory", [{"name": "n", "value": value}])
    assert status == 400 and "the device event would be " in answer["error"]


def test_the_inventory_route_is_documented() -> None:
    status, body, _ = Internal()("GET", f"{BASE}/openapi.json")
    operation = body["paths"][f"{BASE}/tenants/{{tenant_id}}/devices/{{device_id}}/inventory"]["post"]
    assert status == 200 and str(MAX_DETAIL_BYTES) in operation["description"]
    schema = operation["requestBody"]["content"]["application/json"]["schema"]
    assert schema["type"] == "array" and schema["items"]["required"] == ["name", "value"]


def test_an_inventory_of_more_attributes_than_a_change_may_carry_is_a_400(api: Internal) -> None:
    # Given the most attributes a change may carry, then one more (each tiny: the size is not what stops them)
    attributes = [{"name": f"a{n}", "value": 1} for n in range(MAX_ATTRIBUTES + 1)]
    status, answer, _ = api("POST", f"{BASE}/tenants/t/devices/d/inventory", attributes)
    assert status == 400, answer
    assert answer["error"].startswith("malformed request body: ")
    assert answer["error"] == (
        f"malformed request body: {MAX_ATTRIBUTES + 1} attributes, more than the {MAX_ATTRIBUTES} "
        "an inventory change may carry"
    )
    assert api.events == []
