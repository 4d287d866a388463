"""Regression tests for what schemathesis found: hostile request input gets a clear 4xx, never a 500.

Each test drives the real handlers (``management.handle``, ``internal.handle``) with API Gateway
HTTP API events, as the deployed functions receive them.
"""

from __future__ import annotations

import base64
import copy
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from devicehooks.api import management
from devicehooks.handlers import internal as internal_handler
from devicehooks.handlers import management as management_handler
from tests.conftest import FakeContext, load_event
from tests.unit.test_management_api import Api

BASE = "/api/management/v1/iot-manager"
INTERNAL = "/api/internal/v1/iot-manager"


@pytest.fixture
def api() -> Iterator[Api]:
    client = Api()
    management.app.dependency_overrides[management.integration_service] = lambda: client.service
    management.app.dependency_overrides[management.event_service] = lambda: client.events
    yield client
    management.app.dependency_overrides.clear()


def _event(method: str, path: str, body: bytes, tenant: str = "tenant-1") -> dict[str, Any]:
    """A request whose body API Gateway base64-encoded, as it does for bytes that are not UTF-8."""
    event = copy.deepcopy(load_event("management-create-integration.json"))
    event["rawPath"] = path
    event["requestContext"]["http"]["method"] = method
    event["requestContext"]["http"]["path"] = path
    event["requestContext"]["authorizer"]["lambda"]["tenant_id"] = tenant
    event["headers"].pop("x-men-requestid")
    event.pop("pathParameters")
    event["body"], event["isBase64Encoded"] = base64.b64encode(body).decode(), True
    return event


def _answer(raw: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    assert raw["headers"]["Content-Type"] == "application/json; charset=utf-8"
    body = json.loads(raw["body"])
    assert set(body) == {"error", "request_id"}
    assert body["request_id"] == raw["headers"]["X-MEN-RequestID"]
    return raw["statusCode"], body


NOT_UTF8 = [b"\xe2l", b"\xa5", b"@V\xca\xa1u\x8a", b'{"provider": "webhook"\xff}']


@pytest.mark.parametrize("body", NOT_UTF8, ids=lambda b: b.hex())
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", f"{BASE}/integrations"),
        ("PUT", f"{BASE}/integrations/{uuid.UUID(int=1)}"),
        ("PUT", f"{BASE}/integrations/{uuid.UUID(int=1)}/credentials"),
        ("POST", f"{BASE}/events/{uuid.UUID(int=1)}/redeliver"),
    ],
)
def test_management_bodies_that_are_not_utf8_get_400_not_500(api: Api, method: str, path: str, body: bytes) -> None:
    status, answer = _answer(management_handler.handle(_event(method, path, body), FakeContext()))  # type: ignore[arg-type]
    assert status == 400, answer
    assert answer["error"].startswith("malformed request body: invalid JSON")


def test_invalid_utf8_inside_a_json_string_becomes_the_replacement_character_as_in_go(api: Api) -> None:
    body = (
        b'{"provider":"webhook","credentials":{"type":"http","http":{"url":"http://127.0.0.1:9000/hook"}},'
        b'"description":"caf\xe9"}'
    )
    raw = management_handler.handle(_event("POST", f"{BASE}/integrations", body), FakeContext())  # type: ignore[arg-type]
    assert raw["statusCode"] == 201, raw["body"]
    [created] = api.service.list_integrations("tenant-1")
    assert created.description == "caf\ufffd"


@pytest.mark.parametrize("body", NOT_UTF8, ids=lambda b: b.hex())
def test_internal_provision_bodies_that_are_not_utf8_get_400_not_500(body: bytes) -> None:
    event = _event("POST", f"{INTERNAL}/tenants/t1/devices", body)
    status, answer = _answer(internal_handler.handle(event, FakeContext()))  # type: ignore[arg-type]
    assert status == 400, answer
    assert answer["error"].startswith("malformed request body: ")


@pytest.mark.parametrize("body", NOT_UTF8, ids=lambda b: b.hex())
def test_internal_bulk_status_bodies_that_are_not_utf8_get_400_not_500(body: bytes) -> None:
    event = _event("PUT", f"{INTERNAL}/tenants/t1/bulk/devices/status/accepted", body)
    status, answer = _answer(internal_handler.handle(event, FakeContext()))  # type: ignore[arg-type]
    assert status == 400, answer
    assert answer["error"].startswith("invalid request body: ")


def test_a_body_gateway_marked_base64_but_not_base64_is_a_400(api: Api) -> None:
    event = _event("POST", f"{BASE}/integrations", b"")
    event["body"] = "not base64 at all!"
    status, answer = _answer(management_handler.handle(event, FakeContext()))  # type: ignore[arg-type]
    assert status == 400, answer


def _internal(method: str, path: str) -> dict[str, Any]:
    event = _event(method, path, b"")
    event["body"], event["isBase64Encoded"] = "", False
    del event["requestContext"]["authorizer"]
    return internal_handler.handle(event, FakeContext())  # type: ignore[arg-type]


def test_an_empty_device_id_is_no_route_and_the_document_says_device_ids_are_not_empty() -> None:
    status, answer = _answer(_internal("DELETE", f"{INTERNAL}/tenants/t1/devices/"))
    assert (status, answer["error"]) == (404, "not found")

    document = json.loads(_internal("GET", f"{INTERNAL}/openapi.json")["body"])
    operation = document["paths"][f"{INTERNAL}/tenants/{{tenant_id}}/devices/{{device_id}}"]["delete"]
    [device_id] = [p for p in operation["parameters"] if p["name"] == "device_id"]
    assert device_id["schema"]["minLength"] == 1
