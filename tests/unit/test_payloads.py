"""The exact webhook body per event type (BEHAVIOUR.md §3.2, §5.3), from the bus contract."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from pydantic import ValidationError

from devicehooks.domain.eventids import event_id, time_of_id, type_of_id
from devicehooks.domain.events import BusEvent, WebhookEvent, id_of_bus_event
from devicehooks.jsonenc import MAX_JSON_DEPTH, JSONInputError, dumpb, loads
from devicehooks.timeutil import parse_time
from tests.conftest import load_event


def _bus(name: str) -> dict[str, Any]:
    return dict(json.loads(load_event(name)["Records"][0]["body"]))


def _id(name: str) -> bytes:
    """The webhook event's id of a sample bus event: a UUIDv7 of its time, type and bus id."""
    bus = _bus(name)
    at = parse_time(bus["detail"].get("time") or bus["time"])
    return event_id(at, bus["detail-type"], bus["id"]).encode()


def test_an_events_id_is_a_uuidv7_of_its_time_and_type_the_same_for_the_same_bus_event() -> None:
    bus = _bus("dispatcher-device-status-changed.json")
    event = WebhookEvent.from_bus(BusEvent.model_validate(bus))
    again = WebhookEvent.from_bus(BusEvent.model_validate(bus))
    other = WebhookEvent.from_bus(BusEvent.model_validate({**bus, "id": "another-bus-event"}))
    assert event.id == again.id != other.id and uuid.UUID(event.id).version == 7
    assert (time_of_id(event.id), type_of_id(event.id)) == (event.time, "device-status-changed")
    assert id_of_bus_event(bus) == event.id  # what the intake and the internal API trace it as


def test_provisioned_body_has_menders_key_order_and_fields() -> None:
    event = WebhookEvent.from_bus(BusEvent.model_validate(_bus("dispatcher-device-provisioned.json")))
    body = event.body()
    assert body.startswith(
        b'{"id":"' + _id("dispatcher-device-provisioned.json") + b'","type":"device-provisioned","data":{'
    )
    decoded = json.loads(body)
    assert list(decoded) == ["id", "type", "data", "time"]
    assert list(decoded["data"]) == ["id", "status", "auth_sets", "created_ts"]
    assert list(decoded["data"]["auth_sets"][0]) == ["id", "device_id", "identity_data", "pubkey", "status", "ts"]
    assert list(decoded["data"]["auth_sets"][0]["identity_data"]) == ["mac", "sn"]  # Go sorts map keys
    assert decoded["time"] == "2026-01-01T10:00:00.123456Z"  # the detail's sub-second time wins
    assert b" " not in body.split(b'"pubkey"')[0]  # compact


def test_auth_set_defaults_follow_go_zero_values_and_only_ts_is_omitted() -> None:
    data = _bus("dispatcher-device-provisioned.json")
    data["detail"]["data"]["auth_sets"] = [{"id": "a1"}]
    event = WebhookEvent.from_bus(BusEvent.model_validate(data))
    auth_set = json.loads(event.body())["data"]["auth_sets"][0]
    assert auth_set == {"id": "a1", "device_id": "", "identity_data": None, "pubkey": "", "status": ""}


def test_empty_status_auth_sets_and_created_ts_are_left_out() -> None:
    data = _bus("dispatcher-device-provisioned.json")
    data["detail"]["data"] = {"id": "dev-9", "status": "", "auth_sets": []}
    event = WebhookEvent.from_bus(BusEvent.model_validate(data))
    assert json.loads(event.body())["data"] == {"id": "dev-9"}


def test_status_change_and_decommission_bodies() -> None:
    status = WebhookEvent.from_bus(BusEvent.model_validate(_bus("dispatcher-device-status-changed.json")))
    assert status.body() == (
        b'{"id":"' + _id("dispatcher-device-status-changed.json") + b'","type":"device-status-changed",'
        b'"data":{"id":"9c91e5fa-9dcb-451b-b4d8-d30e6b1e9266","status":"rejected"},"time":"2026-01-01T10:00:00.123456Z"}'
    )
    gone = WebhookEvent.from_bus(BusEvent.model_validate(_bus("dispatcher-device-decommissioned.json")))
    assert json.loads(gone.body())["data"] == {"id": "9c91e5fa-9dcb-451b-b4d8-d30e6b1e9266"}


def test_envelope_time_is_used_when_the_detail_has_none() -> None:
    data = _bus("dispatcher-device-decommissioned.json")
    del data["detail"]["time"]
    event = WebhookEvent.from_bus(BusEvent.model_validate(data))
    assert json.loads(event.body())["time"] == "2026-01-01T10:00:00Z"


def test_html_characters_are_escaped_as_go_does() -> None:
    data = _bus("dispatcher-device-decommissioned.json")
    data["detail"]["data"]["id"] = "<dev>&\u2028"
    body = WebhookEvent.from_bus(BusEvent.model_validate(data)).body()
    assert b"\\u003cdev\\u003e\\u0026\\u2028" in body
    assert json.loads(body)["data"]["id"] == "<dev>&\u2028"


def test_times_keep_their_original_spelling_and_precision() -> None:
    data = _bus("dispatcher-device-provisioned.json")
    data["detail"]["data"]["created_ts"] = "2024-05-01T12:00:00.123456789+02:00"
    body = json.loads(WebhookEvent.from_bus(BusEvent.model_validate(data)).body())
    assert body["data"]["created_ts"] == "2024-05-01T12:00:00.123456789+02:00"


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d.pop("detail"),
        lambda d: d.update({"detail-type": "device-exploded"}),
        lambda d: d["detail"].pop("tenant_id"),
        lambda d: d["detail"]["data"].update({"status": "sleeping"}),
        lambda d: d.update({"time": "yesterday"}),
    ],
)
def test_malformed_bus_events_are_refused(mutate: Any) -> None:
    data = _bus("dispatcher-device-status-changed.json")
    mutate(data)
    with pytest.raises(ValidationError):
        WebhookEvent.from_bus(BusEvent.model_validate(data))


def _nested(depth: int) -> str:
    """A provision body whose nesting is ``depth`` levels, the innermost in identity_data."""
    inner = "[" * (depth - 4) + "1" + "]" * (depth - 4)
    return '{"id":"d","auth_sets":[{"identity_data":{"deep":' + inner + "}}]}"


@pytest.mark.parametrize(
    "document",
    [
        '{"id":"d","auth_sets":[{"identity_data":{"n":-9223372036854775808,"m":9223372036854775807,"f":1.5e308,'
        '"e":"\\ud83d\\ude00 caf\\u00e9 <&>","z":null,"b":[true,false],"u":"\\u2028"}}]}',
        _nested(MAX_JSON_DEPTH),
    ],
    ids=["every-kind-of-value", "nested-to-the-limit"],
)
def test_whatever_the_strict_reader_accepts_the_webhook_body_can_write(document: str) -> None:
    data = loads(document)
    bus = _bus("dispatcher-device-provisioned.json")
    bus["detail"]["data"] = data
    body = WebhookEvent.from_bus(BusEvent.model_validate(bus)).body()
    assert json.loads(body)["data"]["auth_sets"][0]["identity_data"] == data["auth_sets"][0]["identity_data"]


@pytest.mark.parametrize(
    ("document", "failure"),
    [
        ('{"x":NaN}', ValueError),
        ('{"x":1e400}', ValueError),
        ('{"x":"\\ud800"}', UnicodeEncodeError),
        ('{"\\udfff":1}', UnicodeEncodeError),
    ],
)
def test_what_pythons_json_reads_but_the_body_cannot_write_is_refused_by_the_strict_reader(
    document: str, failure: type[Exception]
) -> None:
    with pytest.raises(failure):
        dumpb(json.loads(document))  # what the dispatcher met, after the internal API had said 202
    with pytest.raises(JSONInputError):
        loads(document)


def test_nesting_one_level_past_the_limit_is_refused() -> None:
    loads(_nested(MAX_JSON_DEPTH))
    with pytest.raises(JSONInputError) as caught:
        loads(_nested(MAX_JSON_DEPTH + 1))
    assert str(caught.value) == f"nested more than {MAX_JSON_DEPTH} levels deep."


# ---------------------------------------------------------------- device-inventory-changed


def test_inventory_changed_body_is_menders_documented_shape() -> None:
    event = WebhookEvent.from_bus(BusEvent.model_validate(_bus("dispatcher-device-inventory-changed.json")))
    body = event.body()
    assert body.startswith(
        b'{"id":"' + _id("dispatcher-device-inventory-changed.json") + b'","type":"device-inventory-changed","data":'
        b'{"device_id":"1c251e63-ca93-41e2-ae39-97f402d93dd3","tenant_id":"tenant-1","inventory":'
        b'[{"name":"artifact_name","value":"large","scope":"inventory"},'
    )
    decoded = json.loads(body)
    assert list(decoded) == ["id", "type", "data", "time"]
    assert decoded["data"]["inventory"][4] == {
        "name": "os",
        "value": ["RelaxedOS", "Based GNU/Linux 11 (bullseye)"],
        "scope": "inventory",
    }


def test_inventory_data_takes_the_events_tenant_and_refuses_another() -> None:
    data = _bus("dispatcher-device-inventory-changed.json")
    del data["detail"]["data"]["tenant_id"]
    filled = WebhookEvent.from_bus(BusEvent.model_validate(data))
    assert filled.data["tenant_id"] == "tenant-1"
    assert list(filled.data) == ["device_id", "tenant_id", "inventory"]
    data["detail"]["data"]["tenant_id"] = "tenant-2"
    with pytest.raises(ValidationError, match="must be the event's tenant"):
        WebhookEvent.from_bus(BusEvent.model_validate(data))


@pytest.mark.parametrize(
    "value",
    [{"a": "b"}, True, None, ["a", 1], [["a"]]],
    ids=["object", "bool", "null", "mixed-list", "nested-list"],
)
def test_inventory_values_are_strings_numbers_or_lists_of_one_of_them(value: Any) -> None:
    data = _bus("dispatcher-device-inventory-changed.json")
    data["detail"]["data"]["inventory"][0]["value"] = value
    with pytest.raises(ValidationError):
        WebhookEvent.from_bus(BusEvent.model_validate(data))


def test_status_change_carries_only_what_current_mender_sends() -> None:
    # mender-server backend/services/iot-manager/app/app.go setDeviceStatus: DeviceEvent{ID, Status},
    # whose auth_sets and created_ts are omitempty: the body is {"id","status"} even if a producer adds more
    data = _bus("dispatcher-device-status-changed.json")
    data["detail"]["data"]["auth_sets"] = [{"id": "a1", "status": "rejected"}]
    data["detail"]["data"]["created_ts"] = "2026-01-01T09:00:00Z"
    event = WebhookEvent.from_bus(BusEvent.model_validate(data))
    assert json.loads(event.body())["data"] == {"id": "9c91e5fa-9dcb-451b-b4d8-d30e6b1e9266", "status": "rejected"}
